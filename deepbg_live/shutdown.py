"""Stopping on request: a stop signal sets a flag, and the work loop stops at its next safe point.

The one place signals are handled. Each command line (``deepbg-live``, ``python -m training``) enters
``GracefulShutdown`` once around its work. Ctrl-C (SIGINT), SIGTERM and SIGHUP (a closed terminal or
SSH session) all mean "stop": the first one sets ``stop`` and, outside ``polling()``, raises
KeyboardInterrupt so that start-up (or training, which saves ``last.pt`` on the way out) unwinds
through ``with`` and ``finally``. Inside ``polling()`` nothing is raised: the video loop reads the
flag between frames, so an interrupt never lands between an encode and its mux. A second signal
says that shutdown is under way; a third ends the process at once with ``INTERRUPTED``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

INTERRUPTED = 130  # the shell's status for a job stopped by Ctrl-C; every stop signal reports the same
STOP_SIGNALS = tuple(
    getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name)
)  # Windows has no SIGHUP
FORCE_AFTER = 3  # the signal that ends the process without waiting for the clean-up
UNDER_WAY = "stopping: finishing what was done; press Ctrl-C again to quit at once\n"


class GracefulShutdown:
    """While entered, ``signals`` set ``stop``; the first one also raises KeyboardInterrupt outside ``polling()``.

    The previous handlers are put back on exit. Off the main thread, where Python cannot set signal
    handlers, it changes nothing (and ``stop`` is only set by ``request()``).
    """

    def __init__(self, signals: tuple[signal.Signals, ...] = STOP_SIGNALS):
        self.signals = signals
        self.stop = threading.Event()
        self._received = 0
        self._raise = True
        self._previous: dict[signal.Signals, object] = {}

    @property
    def requested(self) -> bool:
        return self.stop.is_set()

    def request(self) -> None:
        """Ask the loop to stop, as a first signal does (without raising)."""
        self.stop.set()

    @contextmanager
    def polling(self) -> Iterator[threading.Event]:
        """A block whose loop reads the flag it yields: signals only set it, nothing is raised inside."""
        raising, self._raise = self._raise, False
        try:
            yield self.stop
        finally:
            self._raise = raising

    def __enter__(self) -> GracefulShutdown:
        if threading.current_thread() is threading.main_thread():
            for signum in self.signals:
                # An ignored signal was the user's choice (`nohup` ignores SIGHUP so that a closed
                # terminal leaves the job running): keep it ignored.
                if signal.getsignal(signum) is not signal.SIG_IGN:
                    self._previous[signum] = signal.signal(signum, self._on_signal)
        return self

    def __exit__(self, *exc: object) -> None:
        for signum, handler in self._previous.items():
            # None: the old handler was not set from Python; the default is the closest we can restore
            signal.signal(signum, signal.SIG_DFL if handler is None else handler)
        self._previous.clear()

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if signum == getattr(signal, "SIGHUP", None):
            _detach_from_terminal()
        self._received += 1
        if self._received >= FORCE_AFTER:
            _force_exit()
        if self._received > 1:
            _say(UNDER_WAY)  # the clean-up is what the first signal asked for: let it finish
            return
        self.stop.set()
        if self._raise:
            raise KeyboardInterrupt


def _say(text: str) -> None:
    """Write to stderr from a signal handler: straight to the descriptor, never into a busy buffer."""
    with contextlib.suppress(OSError):  # stderr went with the terminal
        os.write(2, text.encode())


def _detach_from_terminal() -> None:
    """After a hang-up the terminal is gone, and writing to it fails: send what follows to /dev/null.

    Otherwise the progress bar or the closing message would raise while the output is being
    finished. Output redirected to a file or a pipe is left alone.
    """
    null = os.open(os.devnull, os.O_WRONLY)
    for fd in (1, 2):
        if os.isatty(fd):
            os.dup2(null, fd)
    os.close(null)


def _force_exit() -> None:
    """Exit now: outputs keep what they already hold (a video, every fragment finished so far)."""
    _say("quitting at once; the output keeps what was finished before now\n")
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):  # a buffer in use by the interrupted code, or a closed terminal
            stream.flush()
    os._exit(INTERRUPTED)  # no atexit, no C++ destructors: nothing that could abort half way
