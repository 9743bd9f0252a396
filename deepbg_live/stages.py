"""One threaded stage: a function applied to each item of an upstream iterable, into a bounded queue.

The pipeline is a chain of stages (capture → segment → compose), so each link runs on its own thread
and they overlap on a multi-core CPU. A stage's queue policy says what a full queue means: ``BLOCK``
makes the producer wait (files: no frame is ever lost), ``LATEST`` drops the oldest item (live
sources: latency never builds up behind a slow consumer).
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from enum import Enum
from typing import Generic, TypeVar

In = TypeVar("In")
Out = TypeVar("Out")

STOP_TIMEOUT = 5.0  # seconds stop() waits for the thread; it only waits longer than a moment inside fn


class QueuePolicy(Enum):
    """What a stage does when its queue is full and a new item is ready."""

    BLOCK = "block"  # wait for room: every item arrives
    LATEST = "latest"  # drop the oldest queued item and count it: the consumer gets the newest


class Stage(Generic[In, Out]):
    """Applies ``fn`` to each item of ``upstream`` on its own thread; iterate the stage for the results.

    Iteration yields results in order and ends when ``upstream`` ends; an error raised by ``upstream``
    or ``fn`` is raised in the iterating thread, after the results before it. ``stop()`` ends the
    thread at once: it wakes the thread if it waits for room and calls ``on_stop`` so that a wait
    inside ``upstream`` ends too (``source.close`` for a Source; by default an upstream Stage is
    stopped, as this stage is its only consumer).
    """

    def __init__(
        self,
        fn: Callable[[In], Out],
        upstream: Iterable[In],
        *,
        maxsize: int = 1,
        policy: QueuePolicy = QueuePolicy.BLOCK,
        name: str = "stage",
        on_stop: Callable[[], None] | None = None,
    ):
        self.policy = policy
        self.maxsize = max(1, maxsize)
        self.dropped = 0  # items LATEST threw away unread
        self._fn, self._upstream = fn, upstream
        self._on_stop = on_stop or (upstream.stop if isinstance(upstream, Stage) else None)
        self._items: deque[Out] = deque()
        self._cond = threading.Condition()
        self._ended = False  # upstream is exhausted or failed: what is queued is all there will be
        self._stopped = False
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def _run(self) -> None:
        try:
            for item in self._upstream:
                if not self._put(self._fn(item)):
                    return
        except BaseException as error:  # re-raised in the consumer's thread, which decides what is fatal
            self._error = error
        finally:
            with self._cond:
                self._ended = True
                self._cond.notify_all()

    def _put(self, item: Out) -> bool:
        with self._cond:
            if self.policy is QueuePolicy.LATEST:
                while len(self._items) >= self.maxsize:
                    self._items.popleft()
                    self.dropped += 1
            else:
                while len(self._items) >= self.maxsize and not self._stopped:
                    self._cond.wait()
            if self._stopped:
                return False
            self._items.append(item)
            self._cond.notify_all()
            return True

    def __iter__(self) -> Iterator[Out]:
        while True:
            with self._cond:
                while not self._items and not self._ended and not self._stopped:
                    self._cond.wait(0.1)  # a timeout keeps Ctrl-C responsive in the main thread on Windows
                if self._stopped:
                    return
                if not self._items:
                    if self._error is not None:
                        raise self._error
                    return
                item = self._items.popleft()
                self._cond.notify_all()
            yield item

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """End the thread and wait for it (up to ``timeout``); what is still queued is discarded.

        Idempotent, and safe from any thread. Waiting matters: a thread still inside ONNX Runtime
        when the interpreter exits makes its C++ runtime abort ("terminate called ...") after Ctrl-C.
        """
        with self._cond:
            self._stopped = True
            self._items.clear()
            self._cond.notify_all()
        if self._on_stop is not None:
            self._on_stop()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def __enter__(self) -> Stage[In, Out]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
