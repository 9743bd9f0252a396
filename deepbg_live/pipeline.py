"""The video loop: capture → segmentation → refinement and compositing → outputs.

Each arrow is a bounded queue between threads, so the stages overlap on a multi-core CPU
(OpenCV, ONNX Runtime, torch and PyAV release the GIL while they work). Queues are short for
live sources, so latency never builds up; file sources never drop a frame.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

from deepbg_live.capture import Frame, Source, ThreadedReader
from deepbg_live.composite import Background, composite, mask_view, with_alpha
from deepbg_live.engine import Segmenter
from deepbg_live.refine import EdgeRefiner
from deepbg_live.smoothing import TemporalSmoother

STAGES = ("capture", "preprocess", "inference", "smoothing", "refine", "composite", "output")
HISTORY = 20_000  # timings kept per stage: enough for percentiles, bounded for hours-long sessions


@dataclass
class Stats:
    """Per-stage timings (ms), capture-to-output latency (ms) and frame counts of a run."""

    stages: dict[str, deque[float]] = field(
        default_factory=lambda: defaultdict(lambda: deque(maxlen=HISTORY))
    )
    latencies: deque[float] = field(default_factory=lambda: deque(maxlen=HISTORY))
    frames: int = 0
    dropped: int = 0
    started: float = field(default_factory=time.perf_counter)
    finished: float | None = None

    def add(self, stage: str, started: float) -> float:
        now = time.perf_counter()
        self.stages[stage].append((now - started) * 1000)
        return now

    @property
    def elapsed(self) -> float:
        return (self.finished or time.perf_counter()) - self.started

    def fps(self) -> float:
        return self.frames / self.elapsed if self.elapsed > 0 else 0.0

    def summary(self) -> dict[str, float]:
        out: dict[str, float] = {"frames": self.frames, "dropped": self.dropped, "fps": self.fps()}
        for stage in STAGES:
            if self.stages.get(stage):
                out[f"{stage}_p50_ms"] = float(np.percentile(self.stages[stage], 50))
                out[f"{stage}_p95_ms"] = float(np.percentile(self.stages[stage], 95))
        if self.latencies:
            out["latency_p50_ms"] = float(np.percentile(self.latencies, 50))
            out["latency_p95_ms"] = float(np.percentile(self.latencies, 95))
        return out


@dataclass
class Result:
    frame: Frame
    image: np.ndarray  # what the outputs receive: composited BGR, BGRA, or the mask view
    alpha: np.ndarray


_DONE = object()


class Worker(threading.Thread):
    """Applies ``fn`` to each item of ``upstream`` in its own thread, into a bounded queue."""

    def __init__(self, fn: Callable, upstream: Iterable, maxsize: int, stop: threading.Event, name: str):
        super().__init__(name=name, daemon=True)
        self.fn, self.upstream, self.stop_event = fn, upstream, stop
        self.queue: queue.Queue = queue.Queue(maxsize)
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            for item in self.upstream:
                if self.stop_event.is_set() or not self._put(self.fn(item)):
                    break
        except BaseException as error:  # re-raised in the consumer's thread
            self.error = error
        finally:
            self._put(_DONE, force=True)

    def _put(self, item: object, force: bool = False) -> bool:
        while not self.stop_event.is_set() or force:
            try:
                self.queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                if force and self.stop_event.is_set():
                    return False
        return False

    def __iter__(self) -> Iterator:
        while True:
            try:
                item = self.queue.get(timeout=0.1)
            except queue.Empty:
                if self.stop_event.is_set() and not self.is_alive():
                    return
                continue
            if item is _DONE:
                if self.error is not None:
                    raise self.error
                return
            yield item


class Pipeline:
    """Segments, refines and composites frames, and hands the results to the outputs.

    ``process()`` handles one frame synchronously; ``run()`` streams a whole source through
    threads. ``background`` may be swapped while running (the preview's hotkeys do that).
    """

    def __init__(
        self,
        segmenter: Segmenter,
        background: Background,
        sinks: Sequence = (),
        smoother: TemporalSmoother | None = None,
        refiner: EdgeRefiner | None = None,
        mode: str = "composite",  # "composite", "transparent" or "mask"
    ):
        self.segmenter = segmenter
        self.background = background
        self.sinks = list(sinks)
        self.smoother = smoother or TemporalSmoother(0.0)
        self.refiner = refiner or EdgeRefiner()
        self.mode = mode
        self.stats = Stats()

    def segment(self, frame: Frame) -> tuple[Frame, np.ndarray]:
        """Person probability at model resolution, smoothed over time."""
        t = time.perf_counter()
        batch = self.segmenter.preprocess(frame.image)
        t = self.stats.add("preprocess", t)
        prob = self.segmenter.infer(batch)
        t = self.stats.add("inference", t)
        prob = self.smoother(prob)
        self.stats.add("smoothing", t)
        return frame, prob

    def compose(self, item: tuple[Frame, np.ndarray]) -> Result:
        """Full-resolution soft alpha, then the picture the outputs receive."""
        frame, prob = item
        t = time.perf_counter()
        alpha = self.refiner(prob, frame.image)
        t = self.stats.add("refine", t)
        if self.mode == "transparent":
            image = with_alpha(frame.image, alpha)
        elif self.mode == "mask":
            image = mask_view(alpha)
        else:
            image = composite(frame.image, alpha, self.background.render(frame.image))
        self.stats.add("composite", t)
        return Result(frame, image, alpha)

    def process(self, frame: Frame) -> Result:
        return self.compose(self.segment(frame))

    def emit(self, result: Result) -> None:
        t = time.perf_counter()
        for sink in self.sinks:
            sink.write(result.frame, result.image, result.alpha)
        self.stats.add("output", t)
        self.stats.latencies.append((time.perf_counter() - result.frame.captured_at) * 1000)
        self.stats.frames += 1

    def results(
        self, source: Source, stop: threading.Event
    ) -> tuple[ThreadedReader, list[Worker], Iterator[Result]]:
        """Start the capture, segmentation and compositing threads; iterate their results."""
        depth = 1 if source.live else 4
        reader = ThreadedReader(source, maxsize=depth)
        captured = self._timed_capture(reader)
        segmented = Worker(self.segment, captured, depth, stop, "segment")
        composed = Worker(self.compose, segmented, depth, stop, "compose")
        segmented.start()
        composed.start()
        return reader, [segmented, composed], iter(composed)

    def _timed_capture(self, reader: ThreadedReader) -> Iterator[Frame]:
        for frame in reader:
            self.stats.stages["capture"].append(frame.capture_ms)
            yield frame

    def run(
        self, source: Source, progress: bool = False, controller: Callable[[Result], bool] | None = None
    ) -> Stats:
        """Stream ``source`` to the outputs until it ends, ``controller`` returns False, or Ctrl-C.

        The outputs are always closed on the way out, so files are finalised and playable.
        """
        self.stats = Stats()
        stop = threading.Event()
        reader, workers, results = self.results(source, stop)
        bar = _progress_bar(source, progress)
        try:
            for result in results:
                self.emit(result)
                bar.update(1)
                if controller is not None and not controller(result):
                    break
        finally:
            stop.set()
            reader.stop()
            # A worker still inside ONNX Runtime when the interpreter exits makes its C++ runtime
            # abort ("terminate called without an active exception") after Ctrl-C.
            for worker in workers:
                worker.join(timeout=5)
            self.stats.dropped = reader.dropped
            self.stats.finished = time.perf_counter()
            bar.close()
            for sink in self.sinks:
                sink.close()
        return self.stats


def _progress_bar(source: Source, enabled: bool):
    from tqdm import tqdm

    return tqdm(
        total=source.frame_count, unit="frame", disable=not enabled or source.live, dynamic_ncols=True
    )
