"""The threaded pipeline: order, completeness, live behaviour, errors and steady memory."""

from __future__ import annotations

import resource
import threading
import time

import numpy as np
import pytest

from deepbg_live.capture import Frame, open_source
from deepbg_live.composite import ColorBackground, composite
from deepbg_live.engine import Segmenter
from deepbg_live.outputs import SinkBase
from deepbg_live.pipeline import OutputMode, Pipeline, Stats
from deepbg_live.prior import CUT_THRESHOLD
from deepbg_live.smoothing import TemporalSmoother
from tests.media import SQUARE_BGR, clip_frame, make_clip
from tests.test_cli import red_is_person_model


class Recorder(SinkBase):
    """A sink that remembers what it was given."""

    def __init__(self, keep_images: bool = True):
        self.indices: list[int] = []
        self.images: list[np.ndarray] = []
        self.keep_images = keep_images
        self.closed = False

    def write(self, frame: Frame, image: np.ndarray, alpha: np.ndarray) -> None:
        self.indices.append(frame.index)
        if self.keep_images:
            self.images.append(image)

    def close(self) -> None:
        self.closed = True


@pytest.fixture(scope="module")
def segmenter(tmp_path_factory) -> Segmenter:
    return Segmenter(red_is_person_model(tmp_path_factory.mktemp("m") / "red.onnx"), threads=1)


def test_process_turns_the_person_into_itself_and_the_rest_into_the_background(segmenter):
    frame = Frame(clip_frame(10, (160, 120), 30), 0, time.perf_counter(), None)
    result = Pipeline(segmenter, ColorBackground("#0000ff")).process(frame)
    person = np.all(frame.image == SQUARE_BGR, axis=2)
    assert result.image.shape == frame.image.shape and result.alpha.shape == person.shape
    assert np.all(result.image[5, 5] == (255, 0, 0))
    assert result.alpha[person].mean() > 240 and result.alpha[~person].mean() < 40


def test_the_output_mode_picks_the_composite_the_cut_out_or_the_mask(segmenter):
    frame = Frame(clip_frame(10, (160, 120), 30), 0, time.perf_counter(), None)
    person = np.all(frame.image == SQUARE_BGR, axis=2)
    blue = ColorBackground("#0000ff")
    images = {mode: Pipeline(segmenter, blue, mode=mode).process(frame).image for mode in OutputMode}
    assert np.all(images[OutputMode.COMPOSITE][5, 5] == (255, 0, 0))
    cut_out = images[OutputMode.TRANSPARENT]
    assert cut_out.shape == (120, 160, 4) and np.array_equal(cut_out[..., :3], frame.image)
    assert cut_out[..., 3][person].mean() > 240 and cut_out[..., 3][~person].mean() < 40
    mask = images[OutputMode.MASK]
    assert mask.shape == (120, 160, 3) and mask[person].mean() > 240 and mask[~person].mean() < 40


def test_a_file_is_processed_completely_and_in_order(tmp_path, segmenter):
    clip = make_clip(tmp_path / "c.mp4", frames=40, size=(160, 120), audio=False)
    sink = Recorder()
    with open_source(input=clip) as source:
        stats = Pipeline(segmenter, ColorBackground(), [sink]).run(source)
    assert sink.indices == list(range(40))
    assert stats.frames == 40 and stats.dropped == 0


def test_run_leaves_the_outputs_open_for_whoever_opened_them(tmp_path, segmenter):
    clip = make_clip(tmp_path / "c.mp4", frames=5, size=(160, 120), audio=False)
    sink = Recorder()
    with open_source(input=clip) as source, sink:
        Pipeline(segmenter, ColorBackground(), [sink]).run(source)
        assert not sink.closed  # one source after another could feed the same outputs
    assert sink.closed


def test_stats_report_every_stage_and_the_latency(tmp_path, segmenter):
    clip = make_clip(tmp_path / "c.mp4", frames=10, size=(160, 120), audio=False)
    with open_source(input=clip) as source:
        summary = Pipeline(segmenter, ColorBackground(), [Recorder()]).run(source).summary()
    for stage in ("capture", "preprocess", "inference", "smoothing", "refine", "composite", "output"):
        assert summary[f"{stage}_p50_ms"] >= 0
    assert summary["latency_p95_ms"] >= summary["latency_p50_ms"] > 0
    assert summary["fps"] > 0


def test_stats_report_each_stages_cpu_time_apart_from_its_wall_time(tmp_path, segmenter, monkeypatch):
    clip = make_clip(tmp_path / "c.mp4", frames=5, size=(160, 120), audio=False)
    infer = segmenter.infer
    monkeypatch.setattr(segmenter, "infer", lambda batch: (time.sleep(0.05), infer(batch))[1])
    with open_source(input=clip) as source:
        summary = Pipeline(segmenter, ColorBackground(), [Recorder()]).run(source).summary()
    for stage in ("preprocess", "inference", "smoothing", "refine", "composite", "output"):
        assert summary[f"{stage}_cpu_p50_ms"] >= 0
    # a thread that sleeps uses no CPU: contention or waiting shows in wall time only
    assert summary["inference_p50_ms"] >= 50 > 10 > summary["inference_cpu_p50_ms"]


def test_a_slow_output_makes_a_live_source_drop_frames_instead_of_lagging(tmp_path, segmenter):
    clip = make_clip(tmp_path / "c.mp4", frames=45, size=(160, 120), fps=30, audio=False)

    class SlowSink(Recorder):
        def write(self, frame, image, alpha):
            time.sleep(0.1)  # a third of the camera's rate
            super().write(frame, image, alpha)

    with open_source(input=clip, realtime=True) as source:
        stats = Pipeline(segmenter, ColorBackground(), [SlowSink(keep_images=False)]).run(source)
    assert stats.dropped > 10
    # every shown frame is recent: lag does not accumulate over the clip
    assert np.percentile(stats.latencies, 90) < 600


def test_an_error_in_a_stage_reaches_the_caller_and_its_outputs_are_still_closed(tmp_path, segmenter):
    clip = make_clip(tmp_path / "c.mp4", frames=20, size=(160, 120), audio=False)

    class Broken(ColorBackground):
        def render(self, frame):
            raise RuntimeError("background failed")

    sink = Recorder()
    with pytest.raises(RuntimeError, match="background failed"), open_source(input=clip) as source, sink:
        Pipeline(segmenter, Broken(), [sink]).run(source)
    assert sink.closed
    assert not {t.name for t in threading.enumerate()} & {"segment", "compose", "deepbg-capture"}


def test_stopping_from_the_output_side_ends_the_run_promptly(tmp_path, segmenter):
    clip = make_clip(tmp_path / "c.mp4", frames=200, size=(160, 120), audio=False)
    sink = Recorder(keep_images=False)
    with open_source(input=clip) as source:
        started = time.perf_counter()
        Pipeline(segmenter, ColorBackground(), [sink]).run(
            source, controller=lambda result: result.frame.index < 9
        )
    assert sink.indices == list(range(10))
    assert time.perf_counter() - started < 10


def test_a_finished_run_leaves_no_stage_thread_running(tmp_path, segmenter, monkeypatch):
    # A thread still inside ONNX Runtime when the interpreter exits aborts the process after Ctrl-C.
    clip = make_clip(tmp_path / "c.mp4", frames=60, size=(160, 120), audio=False)
    infer = segmenter.infer
    monkeypatch.setattr(segmenter, "infer", lambda batch: (time.sleep(0.3), infer(batch))[1])
    with open_source(input=clip) as source:
        Pipeline(segmenter, ColorBackground(), [Recorder()]).run(
            source, controller=lambda result: result.frame.index < 1
        )
    running = {t.name for t in threading.enumerate()}
    assert not running & {"segment", "compose", "deepbg-capture"}


def test_the_summary_of_an_empty_run_is_zeroes():
    assert Stats().summary()["frames"] == 0


def _rss_mb() -> float:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * resource.getpagesize() / 2**20


@pytest.mark.slow
def test_two_thousand_frames_run_at_steady_memory(tmp_path, segmenter):
    clip = make_clip(tmp_path / "soak.mp4", frames=2000, size=(160, 120), fps=30, audio=False, noise=8)
    memory: dict[int, float] = {}

    class MemorySink(Recorder):
        def write(self, frame, image, alpha):
            if frame.index in (500, 1999):
                memory[frame.index] = _rss_mb()
            self.indices.append(frame.index)

    smoother = TemporalSmoother(0.5)
    with open_source(input=clip) as source:
        stats = Pipeline(segmenter, ColorBackground(), [MemorySink()], smoother=smoother).run(source)
    assert stats.frames == 2000
    assert memory[1999] - memory[500] < 25, f"memory grew from {memory[500]:.0f} to {memory[1999]:.0f} MB"


def test_the_package_exposes_the_small_public_api():
    import deepbg_live

    frame = clip_frame(3, (96, 64), 30)
    segmenter = deepbg_live.Segmenter(threads=1)
    alpha = deepbg_live.EdgeRefiner()(segmenter(frame), frame)
    out = composite(frame, alpha, deepbg_live.ColorBackground("green").render(frame))
    assert out.shape == frame.shape and alpha.dtype == np.uint8
    with pytest.raises(AttributeError):
        deepbg_live.NoSuchThing  # noqa: B018


def test_the_refined_alpha_is_smoothed_as_strongly_as_the_probability_and_both_forget_between_sources(
    tmp_path, segmenter
):
    frame = Frame(clip_frame(10, (160, 120), 30), 0, time.perf_counter(), None)
    pipeline = Pipeline(segmenter, ColorBackground(), smoother=TemporalSmoother(0.5))
    assert pipeline.alpha_smoother.strength == 0.5
    pipeline.process(frame)
    assert pipeline.alpha_smoother._state is not None
    clip = make_clip(tmp_path / "c.mp4", frames=3, size=(160, 120), audio=False)
    resets = []
    for name, smoother in (("probability", pipeline.smoother), ("alpha", pipeline.alpha_smoother)):
        original = smoother.reset
        smoother.reset = lambda name=name, original=original: (resets.append(name), original())[-1]
    with open_source(input=clip) as source:
        pipeline.run(source)
    assert sorted(resets) == ["alpha", "probability"]  # a new source blends with neither


def test_a_cut_starts_both_smoothers_afresh(segmenter):
    """The first frame of a new shot is what it would be with no past: no trace of the last shot."""
    dark = np.full((120, 160, 3), (40, 40, 48), np.uint8)  # person probability about 0.83
    bright = np.full((120, 160, 3), (200, 190, 200), np.uint8)  # about 0.66: a change smoothing holds back

    def first_frame_of_the_bright_shot(cut_threshold: float) -> np.ndarray:
        pipeline = Pipeline(segmenter, ColorBackground(), smoother=TemporalSmoother(0.5))
        pipeline._stream.cuts.threshold = cut_threshold
        for i in range(5):
            pipeline.process(Frame(dark, i, time.perf_counter(), None))
        return pipeline.process(Frame(bright, 5, time.perf_counter(), None)).alpha

    fresh = Pipeline(segmenter, ColorBackground(), smoother=TemporalSmoother(0.5))
    without_history = fresh.process(Frame(bright, 0, time.perf_counter(), None)).alpha
    assert np.array_equal(first_frame_of_the_bright_shot(CUT_THRESHOLD), without_history)
    unnoticed = first_frame_of_the_bright_shot(np.inf)
    assert unnoticed.mean() > without_history.mean() + 25, "an unnoticed cut would carry the dark shot over"


def test_without_smoothing_the_alpha_is_the_refiners_own(segmenter):
    frames = [Frame(clip_frame(i, (160, 120), 30), i, time.perf_counter(), None) for i in (0, 15)]
    pipeline = Pipeline(segmenter, ColorBackground())
    for frame in frames:
        result = pipeline.process(frame)
    assert np.array_equal(result.alpha, pipeline.refiner(segmenter(frames[1].image), frames[1].image))
