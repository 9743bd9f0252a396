"""The video loop: capture → segmentation → refinement and compositing → outputs.

Each arrow is a ``Stage``: a thread feeding a bounded queue, so the stages overlap on a multi-core
CPU (OpenCV, ONNX Runtime, torch and PyAV release the GIL while they work). Queues are short for
live sources, so latency never builds up; file sources never drop a frame.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import NamedTuple

import numpy as np

from deepbg_live.adaptive import Level, QualityController
from deepbg_live.capture import Frame, Source, reader
from deepbg_live.composite import Background, composite, mask_view, with_alpha
from deepbg_live.engine import Segmenter
from deepbg_live.outputs import Sink
from deepbg_live.refine import EdgeRefiner
from deepbg_live.runtimes import Runtime
from deepbg_live.smoothing import TemporalSmoother
from deepbg_live.stages import Stage

STAGES = ("capture", "preprocess", "inference", "smoothing", "refine", "composite", "output")
HISTORY = 20_000  # timings kept per stage: enough for percentiles, bounded for hours-long sessions


class Mark(NamedTuple):
    """A moment on both clocks a stage is timed by."""

    wall: float  # time.perf_counter()
    cpu: float  # time.thread_time(): the CPU time of the calling thread


def mark() -> Mark:
    return Mark(time.perf_counter(), time.thread_time())


@dataclass
class Stats:
    """Per-stage timings (wall and CPU ms), capture-to-output latency (ms) and frame counts of a run.

    Each stage runs on one thread (capture, segment, compose, and the caller's for the outputs), so
    a stage's CPU time is its thread's: it shows what a stage costs even when contention for the
    cores inflates its wall time. Two things are not in it. ONNX Runtime's extra intra-op threads
    run on their own threads; with one thread, the live default, inference runs on the calling
    thread and is counted whole. And capture is timed by the source, on wall time only.
    """

    stages: dict[str, deque[float]] = field(
        default_factory=lambda: defaultdict(lambda: deque(maxlen=HISTORY))
    )
    cpu: dict[str, deque[float]] = field(default_factory=lambda: defaultdict(lambda: deque(maxlen=HISTORY)))
    latencies: deque[float] = field(default_factory=lambda: deque(maxlen=HISTORY))
    frames: int = 0
    dropped: int = 0
    started: float = field(default_factory=time.perf_counter)
    finished: float | None = None

    def add(self, stage: str, started: Mark) -> Mark:
        """Record ``stage`` as having run from ``started`` until now, on this thread; returns now."""
        now = mark()
        self.stages[stage].append((now.wall - started.wall) * 1000)
        self.cpu[stage].append((now.cpu - started.cpu) * 1000)
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
            if self.cpu.get(stage):
                out[f"{stage}_cpu_p50_ms"] = float(np.percentile(self.cpu[stage], 50))
        if self.latencies:
            out["latency_p50_ms"] = float(np.percentile(self.latencies, 50))
            out["latency_p95_ms"] = float(np.percentile(self.latencies, 95))
        return out


class OutputMode(Enum):
    """What the outputs receive."""

    COMPOSITE = "composite"  # the person over the new background (BGR)
    TRANSPARENT = "transparent"  # the person with an alpha channel (BGRA)
    MASK = "mask"  # the alpha itself, for checking the segmentation


@dataclass
class Segmented:
    frame: Frame
    prob: np.ndarray  # person probability at model resolution, smoothed
    work_ms: float  # wall ms it took
    cut: bool = False  # the frame begins a new shot: nothing before it is blended into it


@dataclass
class Result:
    frame: Frame
    image: np.ndarray  # what the outputs receive: composited BGR, BGRA, or the mask view
    alpha: np.ndarray
    work_ms: float = 0.0  # wall ms in segmentation and compositing: what must fit in a live frame's budget
    long_side: int = 0  # the long side of the model input it was segmented at


class Pipeline:
    """Segments, refines and composites frames, and hands the results to the outputs.

    ``process()`` handles one frame synchronously; ``run()`` streams a whole source through
    threads. ``background`` may be swapped while running (the preview's hotkeys do that).
    """

    def __init__(
        self,
        segmenter: Segmenter,
        background: Background,
        sinks: Sequence[Sink] = (),
        smoother: TemporalSmoother | None = None,
        refiner: EdgeRefiner | None = None,
        mode: OutputMode = OutputMode.COMPOSITE,
    ):
        self.segmenter = segmenter
        self.background = background
        self.sinks = list(sinks)
        self.smoother = smoother or TemporalSmoother(0.0)
        self.refiner = refiner or EdgeRefiner()
        # the refined alpha is steadied too, as strongly: the refiner passes on the frame's noise
        self.alpha_smoother = TemporalSmoother(self.smoother.strength)
        self.mode = mode
        self.stats = Stats()
        # Frames given to process() are taken as one stream; run() starts a fresh one per source.
        self._stream = segmenter.stream()
        self._temporal = True

    def segment(self, frame: Frame) -> Segmented:
        """Person probability at model resolution, smoothed over time."""
        start = t = mark()
        batch = self.segmenter.preprocess(frame.image)
        t = self.stats.add("preprocess", t)
        prob = self._stream.infer(frame.image, batch)
        t = self.stats.add("inference", t)
        cut = self._stream.cut
        if cut:
            self.smoother.reset()  # or the last shot's person would linger, fading, in the new one
        prob = self.smoother(prob)
        t = self.stats.add("smoothing", t)
        return Segmented(frame, prob, (t.wall - start.wall) * 1000, cut)

    def compose(self, item: Segmented) -> Result:
        """Full-resolution soft alpha, then the picture the outputs receive."""
        frame = item.frame
        start = t = mark()
        if item.cut:
            self.alpha_smoother.reset()  # on this thread, which alone uses it
        alpha = self.refiner(item.prob, frame.image, self.alpha_smoother)
        t = self.stats.add("refine", t)
        if self.mode is OutputMode.TRANSPARENT:
            image = with_alpha(frame.image, alpha)
        elif self.mode is OutputMode.MASK:
            image = mask_view(alpha)
        else:
            image = composite(frame.image, alpha, self.background.render(frame.image))
        t = self.stats.add("composite", t)
        work_ms = item.work_ms + (t.wall - start.wall) * 1000
        return Result(frame, image, alpha, work_ms, max(item.prob.shape[:2]))

    def process(self, frame: Frame) -> Result:
        return self.compose(self.segment(frame))

    def emit(self, result: Result) -> None:
        t = mark()
        for sink in self.sinks:
            sink.write(result.frame, result.image, result.alpha)
        self.stats.add("output", t)
        self.stats.latencies.append((time.perf_counter() - result.frame.captured_at) * 1000)
        self.stats.frames += 1

    def _segment_captured(self, frame: Frame) -> Segmented:
        self.stats.stages["capture"].append(frame.capture_ms)
        if not self._temporal:
            self._stream.reset()  # independent photos: none is the previous frame of the next
        return self.segment(frame)

    def _adapt(
        self, quality: QualityController, result: Result, dropped: int, own: tuple[Runtime, int]
    ) -> None:
        """Let ``quality`` judge ``result`` (and the ``dropped`` count so far), and apply a new level.

        Frames still in flight from before a change were segmented at the old size, so they are
        not judged. ``own`` is the segmenter's runtime and long side before the run.
        """
        if result.long_side == self.segmenter.long_side and quality.observe(result.work_ms, dropped):
            self._apply(quality.level, own)

    def _apply(self, level: Level, own: tuple[Runtime, int]) -> None:
        """The segmenter's model and input size for ``level``; the segment thread reads each once per frame."""
        runtime, long_side = own
        fallback = self.segmenter.fallback
        if level.cheaper and fallback is not None:
            runtime, long_side = fallback, fallback.long_side
        self.segmenter.runtime = runtime
        self.segmenter.long_side = level.long_side(long_side)

    def run(
        self,
        source: Source,
        progress: bool = False,
        controller: Callable[[Result], bool] | None = None,
        stop: threading.Event | None = None,
        quality: QualityController | None = None,
    ) -> Stats:
        """Stream ``source`` to the outputs until it ends, ``controller`` returns False, or ``stop`` is set.

        ``stop`` is read between frames (``GracefulShutdown.polling()`` sets it on a signal), so a
        frame is always written whole. ``source`` is played once and closed on the way out; no thread
        outlives the call. The outputs stay open: whoever built them closes them (``with``), so files
        are finalised.

        ``quality`` lowers the model's input while a live source outruns the pipeline (see
        ``deepbg_live.adaptive``); a file source, which waits for every frame, never adapts. The
        segmenter's model and long side are back at its own when the call returns.
        """
        self.stats = Stats()
        self._stream, self._temporal = self.segmenter.stream(), source.temporal
        self.smoother.reset()  # a new source: neither smoother blends it with the last one
        self.alpha_smoother.reset()
        quality = quality if source.live else None
        own = self.segmenter.runtime, self.segmenter.long_side
        bar = _progress_bar(source, progress)
        depth = 1 if source.live else 4
        capture = reader(source, depth)
        segmented = Stage(self._segment_captured, capture, maxsize=depth, name="segment")
        results = Stage(self.compose, segmented, maxsize=depth, name="compose")
        try:
            for result in results:
                if stop is not None and stop.is_set():
                    break
                self.emit(result)
                bar.update(1)
                if quality is not None:
                    self._adapt(quality, result, capture.dropped + source.dropped, own)
                if controller is not None and not controller(result):
                    break
        finally:
            # Stopping the last stage stops the chain back to the source and joins every thread: one
            # still inside ONNX Runtime at interpreter exit would abort the process after Ctrl-C.
            results.stop()
            self.segmenter.runtime, self.segmenter.long_side = own
            self.stats.dropped = capture.dropped + source.dropped
            self.stats.finished = time.perf_counter()
            bar.close()
        return self.stats


def _progress_bar(source: Source, enabled: bool):
    from tqdm import tqdm

    return tqdm(
        total=source.frame_count, unit="frame", disable=not enabled or source.live, dynamic_ncols=True
    )
