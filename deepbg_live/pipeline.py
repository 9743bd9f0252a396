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

import numpy as np

from deepbg_live.capture import Frame, Source, reader
from deepbg_live.composite import Background, composite, mask_view, with_alpha
from deepbg_live.engine import Segmenter
from deepbg_live.outputs import Sink
from deepbg_live.refine import EdgeRefiner
from deepbg_live.smoothing import TemporalSmoother
from deepbg_live.stages import Stage

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


class OutputMode(Enum):
    """What the outputs receive."""

    COMPOSITE = "composite"  # the person over the new background (BGR)
    TRANSPARENT = "transparent"  # the person with an alpha channel (BGRA)
    MASK = "mask"  # the alpha itself, for checking the segmentation


@dataclass
class Result:
    frame: Frame
    image: np.ndarray  # what the outputs receive: composited BGR, BGRA, or the mask view
    alpha: np.ndarray


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
        if self.mode is OutputMode.TRANSPARENT:
            image = with_alpha(frame.image, alpha)
        elif self.mode is OutputMode.MASK:
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

    def _segment_captured(self, frame: Frame) -> tuple[Frame, np.ndarray]:
        self.stats.stages["capture"].append(frame.capture_ms)
        return self.segment(frame)

    def run(
        self,
        source: Source,
        progress: bool = False,
        controller: Callable[[Result], bool] | None = None,
        stop: threading.Event | None = None,
    ) -> Stats:
        """Stream ``source`` to the outputs until it ends, ``controller`` returns False, or ``stop`` is set.

        ``stop`` is read between frames (``GracefulShutdown.polling()`` sets it on a signal), so a
        frame is always written whole. ``source`` is played once and closed on the way out; no thread
        outlives the call. The outputs stay open: whoever built them closes them (``with``), so files
        are finalised.
        """
        self.stats = Stats()
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
                if controller is not None and not controller(result):
                    break
        finally:
            # Stopping the last stage stops the chain back to the source and joins every thread: one
            # still inside ONNX Runtime at interpreter exit would abort the process after Ctrl-C.
            results.stop()
            self.stats.dropped = capture.dropped + source.dropped
            self.stats.finished = time.perf_counter()
            bar.close()
        return self.stats


def _progress_bar(source: Source, enabled: bool):
    from tqdm import tqdm

    return tqdm(
        total=source.frame_count, unit="frame", disable=not enabled or source.live, dynamic_ncols=True
    )
