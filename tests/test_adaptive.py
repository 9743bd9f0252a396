"""Adaptive live quality: the controller's decisions on a fake clock, and the pipeline under a slowed runtime."""

from __future__ import annotations

import time
from dataclasses import replace
from itertools import pairwise

import numpy as np
import pytest

from deepbg_live import adaptive as adaptive_module
from deepbg_live import cli, runtimes
from deepbg_live.adaptive import LADDER, LADDER_WITH_FALLBACK, AdaptiveConfig, Level, QualityController
from deepbg_live.capture import open_source
from deepbg_live.composite import ColorBackground
from deepbg_live.engine import Segmenter
from deepbg_live.errors import UserError
from deepbg_live.model import CONFIGS
from deepbg_live.outputs.preview import overlay_text
from deepbg_live.pipeline import Pipeline
from deepbg_live.runtimes import Backend, Precision, Runtime
from tests.media import make_clip
from tests.test_cli import red_is_person_model
from tests.test_pipeline import Recorder

FPS = 30
BUDGET_MS = 1000 / FPS


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def controller(config: AdaptiveConfig | None = None) -> tuple[QualityController, FakeClock]:
    clock = FakeClock()
    return QualityController(FPS, config or AdaptiveConfig(), clock=clock), clock


def feed(
    quality: QualityController, clock: FakeClock, work_ms: float, seconds: float, dropped: int = 0
) -> None:
    """Frames at the controller's rate for ``seconds``, each ``work_ms`` of work, ``dropped`` frames so far."""
    for _ in range(round(seconds * FPS)):
        clock.now += 1 / FPS
        quality.observe(work_ms, dropped)


def test_levels_shrink_the_long_side_to_multiples_of_the_networks_stride() -> None:
    assert [level.long_side(224) for level in LADDER] == [224, 160, 112]
    assert [level.long_side(192) for level in LADDER] == [192, 144, 96]
    assert Level(0.1).long_side(224) == 32  # the engine would pad anything smaller up to 32
    labels = ["q 100%", "q 75%", "q 100% fast", "q 75% fast", "q 50% fast"]
    assert [level.label for level in LADDER_WITH_FALLBACK] == labels


def test_a_config_with_crossed_thresholds_is_refused() -> None:
    with pytest.raises(ValueError, match="low < high"):
        AdaptiveConfig(low=0.9, high=0.8)


def test_work_over_budget_steps_down_only_after_the_patience() -> None:
    quality, clock = controller(AdaptiveConfig(down_after=0.5))
    feed(quality, clock, 1.2 * BUDGET_MS, 0.4)
    assert quality.level == Level(1.0)
    feed(quality, clock, 1.2 * BUDGET_MS, 0.2)
    assert quality.level == Level(0.75)
    feed(quality, clock, 1.2 * BUDGET_MS, 5)
    assert quality.level == Level(0.5)  # the last level: nothing below it
    assert [level for _, level in quality.changes] == [Level(0.75), Level(0.5)]


def test_one_slow_frame_among_fast_ones_changes_nothing() -> None:
    quality, clock = controller()
    for _ in range(10):
        feed(quality, clock, 0.5 * BUDGET_MS, 1)
        feed(quality, clock, 6 * BUDGET_MS, 1 / FPS)  # a hiccup: six budgets in one frame
    assert quality.changes == []


def test_headroom_steps_back_up_after_its_patience() -> None:
    quality, clock = controller(AdaptiveConfig(up_after=3.0))
    feed(quality, clock, 2 * BUDGET_MS, 2)
    assert quality.level == Level(0.5)
    # The average takes about 0.6 s to fall under the threshold, and then the patience begins.
    feed(quality, clock, 0.2 * BUDGET_MS, 3.5)
    assert quality.level == Level(0.5)
    feed(quality, clock, 0.2 * BUDGET_MS, 0.3)
    assert quality.level == Level(0.75)
    feed(quality, clock, 0.2 * BUDGET_MS, 3.1)
    assert quality.level == Level(1.0)
    assert quality.lowest == Level(0.5)


def test_work_between_the_thresholds_keeps_the_level() -> None:
    quality, clock = controller()
    feed(quality, clock, 0.7 * BUDGET_MS, 60)
    assert quality.changes == []


def test_a_level_that_does_not_fit_is_retried_ever_more_rarely() -> None:
    # Full quality is over budget, the next level well under it: without backing off, the controller
    # would go up and down every few seconds.
    config = AdaptiveConfig(up_after=3.0, max_up_after=48.0)
    quality, clock = controller(config)
    cost = {Level(1.0): 1.2 * BUDGET_MS, Level(0.75): 0.3 * BUDGET_MS, Level(0.5): 0.2 * BUDGET_MS}
    for _ in range(round(120 * FPS)):
        clock.now += 1 / FPS
        quality.observe(cost[quality.level])
    ups = [at for at, level in quality.changes if level == Level(1.0)]
    waits = np.diff(ups)
    assert len(ups) <= 5 and all(later > 1.8 * earlier for earlier, later in pairwise(waits))
    assert quality.lowest == Level(0.75)  # the level that fits was never left for a lower one


def test_a_step_up_that_holds_resets_the_patience() -> None:
    quality, clock = controller(AdaptiveConfig(up_after=3.0))
    for _ in range(3):  # a step down, then two failed probes: the patience grows 3 -> 6 -> 12 s
        feed(quality, clock, 1.2 * BUDGET_MS, 0.6)
        while quality.level != Level(1.0):
            feed(quality, clock, 0.3 * BUDGET_MS, 1 / FPS)
    feed(quality, clock, 0.6 * BUDGET_MS, 30)  # the CPU freed up: full quality holds for a while
    feed(quality, clock, 1.2 * BUDGET_MS, 0.8)
    assert quality.level == Level(0.75)
    feed(quality, clock, 0.3 * BUDGET_MS, 3.7)  # 0.6 s for the average to fall, then the patience
    assert quality.level == Level(1.0)  # back after the base patience, not 12 s


def test_frames_dropped_all_the_same_step_down_though_the_work_fits() -> None:
    quality, clock = controller()
    dropped = 0
    for frame in range(round(20 * FPS)):  # one frame in 20 dropped: decoding or encoding is starved
        clock.now += 1 / FPS
        dropped += frame % 20 == 19
        quality.observe(0.6 * BUDGET_MS, dropped)
    assert quality.level == Level(0.5)


def test_one_or_two_dropped_frames_change_nothing_but_delay_the_step_up() -> None:
    quality, clock = controller(AdaptiveConfig(up_after=3.0))
    feed(quality, clock, 2 * BUDGET_MS, 0.6)
    assert quality.level == Level(0.75)
    feed(quality, clock, 0.2 * BUDGET_MS, 2.5)
    feed(quality, clock, 0.2 * BUDGET_MS, 0.5, dropped=1)
    feed(quality, clock, 0.2 * BUDGET_MS, 1.0, dropped=2)
    # 4 s of headroom, but 1 s since the last drop: the patience restarted, and two drops are no trend
    assert quality.level == Level(0.75)
    feed(quality, clock, 0.2 * BUDGET_MS, 2.5, dropped=2)
    assert quality.level == Level(1.0)


def test_each_change_is_announced_with_its_level() -> None:
    seen: list[Level] = []
    clock = FakeClock()
    quality = QualityController(FPS, clock=clock, on_change=seen.append)
    feed(quality, clock, 2 * BUDGET_MS, 1.2)
    assert seen == [Level(0.75), Level(0.5)]


def test_the_overlay_shows_the_quality_level_when_there_is_one() -> None:
    assert overlay_text(29.5, 41.0, "q 75%") == " 29.5 fps     41 ms  q 75%"
    assert overlay_text(29.5, 41.0) == " 29.5 fps     41 ms"


# ------------------------------------------------------------------------------------ in the pipeline


class SlowRuntime:
    """A Runtime whose time grows with its input's area, as a network's does: ``full_ms`` at ``long_side``.

    After ``slow_calls`` calls (if given) it answers at once, as when the CPU frees up.
    """

    name = Backend.ONNXRUNTIME
    precision = Precision.FP32
    input_channels = 3

    def __init__(self, full_ms: float, long_side: int = 160, slow_calls: int | None = None):
        self.full_ms, self.long_side, self.slow_calls = full_ms, long_side, slow_calls
        self.sides: list[int] = []

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        height, width = batch.shape[-2:]
        self.sides.append(max(height, width))
        if self.slow_calls is None or len(self.sides) <= self.slow_calls:
            time.sleep(self.full_ms / 1000 * (max(height, width) / self.long_side) ** 2)
        return np.full((1, 1, height, width), 0.5, np.float32)


TEST_CONFIG = AdaptiveConfig(down_after=0.2, up_after=0.5)
CLIP_FPS = 10  # a budget of 100 ms: wide margins for a contended machine


def run_live(
    clip, runtime: SlowRuntime, quality: QualityController | None, realtime: bool = True, fallback=None
):
    segmenter = Segmenter(runtime, fallback=fallback)
    with open_source(input=clip, realtime=realtime) as source:
        stats = Pipeline(segmenter, ColorBackground(), [Recorder(keep_images=False)]).run(
            source, quality=quality
        )
    # restored for whoever runs the segmenter next
    assert segmenter.runtime is runtime and segmenter.long_side == runtime.long_side
    return stats


def test_the_slowed_runtime_is_a_runtime() -> None:
    assert isinstance(SlowRuntime(1.0), Runtime)


def test_a_slowed_runtime_steps_the_quality_down_and_its_recovery_back_up(tmp_path) -> None:
    clip = make_clip(tmp_path / "c.mp4", frames=50, size=(160, 120), fps=CLIP_FPS, audio=False)
    # 220 ms at full size, 141 ms at 0.75 (over the 100 ms budget), 55 ms at 0.5 (inside it); then fast.
    runtime = SlowRuntime(220, slow_calls=16)
    quality = QualityController(CLIP_FPS, TEST_CONFIG)
    run_live(clip, runtime, quality)
    assert [level for _, level in quality.changes] == [Level(0.75), Level(0.5), Level(0.75), Level(1.0)]
    assert {128, 80} <= set(runtime.sides) and runtime.sides[-1] == 160


def test_adapting_drops_fewer_frames_than_not(tmp_path) -> None:
    clip = make_clip(tmp_path / "c.mp4", frames=40, size=(160, 120), fps=CLIP_FPS, audio=False)
    fixed = run_live(clip, SlowRuntime(220), None)
    quality = QualityController(CLIP_FPS, TEST_CONFIG)
    adapted = run_live(clip, SlowRuntime(220), quality)
    assert quality.level == Level(0.5)
    assert fixed.dropped > 10  # about half the frames: each takes over two budgets
    assert adapted.dropped < fixed.dropped / 2


FALLBACK_CONFIG = AdaptiveConfig(LADDER_WITH_FALLBACK, down_after=0.2, up_after=30)


def test_below_three_quarters_of_the_default_the_cheaper_model_takes_over_and_shrinks_in_turn(
    tmp_path,
) -> None:
    clip = make_clip(tmp_path / "c.mp4", frames=40, size=(160, 120), fps=CLIP_FPS, audio=False)
    # The default is over the 100 ms budget at 160 and 128; the fallback at its 128 and 96, not at 64.
    runtime, fallback = SlowRuntime(400), SlowRuntime(200, long_side=128)
    quality = QualityController(CLIP_FPS, FALLBACK_CONFIG)
    run_live(clip, runtime, quality, fallback=fallback)
    assert [level for _, level in quality.changes] == list(LADDER_WITH_FALLBACK[1:])
    assert set(runtime.sides) == {160, 128}  # never half size: the fallback at full size beats that
    # the frame being shrunk when the switch came reaches the fallback at the default's 128 (any
    # model takes any size); every later one is sized for the fallback
    assert {128, 96, 64} <= set(fallback.sides) and fallback.sides[-1] == 64


class SlowVideoRuntime(SlowRuntime):
    """A ``SlowRuntime`` that reads the previous mask, as the shipped ``fast`` does; answers 0.8."""

    input_channels = 4

    def __init__(self, full_ms: float, long_side: int = 160):
        super().__init__(full_ms, long_side)
        self.priors: list[float] = []

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        assert batch.shape[1] == 4
        self.priors.append(float(batch[0, 3].mean()))
        return np.full_like(super().__call__(batch), 0.8)


def test_a_fallback_that_reads_the_previous_mask_starts_neutral_then_sees_its_own(tmp_path) -> None:
    clip = make_clip(tmp_path / "c.mp4", frames=40, size=(160, 120), fps=CLIP_FPS, audio=False)
    runtime, fallback = SlowRuntime(400), SlowVideoRuntime(200, long_side=128)
    run_live(clip, runtime, QualityController(CLIP_FPS, FALLBACK_CONFIG), fallback=fallback)
    assert len(fallback.priors) > 2
    # the default model (3 channels) left no memory behind: the first fallback frame is neutral
    assert fallback.priors[0] == pytest.approx(0.5) and fallback.priors[1:] == pytest.approx(
        [0.8] * (len(fallback.priors) - 1)
    )


def test_a_file_source_never_changes_the_level(tmp_path) -> None:
    clip = make_clip(tmp_path / "c.mp4", frames=8, size=(160, 120), fps=CLIP_FPS, audio=False)
    runtime = SlowRuntime(150)
    quality = QualityController(CLIP_FPS, TEST_CONFIG)
    stats = run_live(clip, runtime, quality, realtime=False)
    assert stats.frames == 8 and quality.changes == [] and quality.load is None  # never even consulted
    assert set(runtime.sides) == {160}


# ---------------------------------------------------------------------------------- the command line


@pytest.fixture(scope="module")
def red_model(tmp_path_factory):
    return red_is_person_model(tmp_path_factory.mktemp("model") / "red.onnx")


def _opened_runtimes(monkeypatch) -> list:
    opened = []
    real = cli.open_runtime

    def spy(*args, **kwargs):
        opened.append(real(*args, **kwargs))
        return opened[-1]

    monkeypatch.setattr(cli, "open_runtime", spy)
    monkeypatch.setattr(runtimes, "open_runtime", spy)  # what open_live_runtime calls
    return opened


def _session_options(runtime) -> tuple[str, int]:
    options = runtime.session.get_session_options()
    return options.get_session_config_entry("session.intra_op.allow_spinning"), options.intra_op_num_threads


def test_live_jobs_run_one_thread_and_file_jobs_every_thread_and_neither_spins(
    tmp_path, red_model, monkeypatch
):
    clip = make_clip(tmp_path / "c.mp4", frames=6, size=(96, 64), fps=30, audio=False)
    opened = _opened_runtimes(monkeypatch)
    common = {"input_path": str(clip), "model": str(red_model), "progress": False}
    cli.run(cli.Options(**common, realtime=True, output=str(tmp_path / "live.mp4")))
    cli.run(cli.Options(**common, output=str(tmp_path / "file.mp4")))
    live, offline = (_session_options(runtime) for runtime in opened)
    assert live == ("0", runtimes.LIVE_THREADS) and runtimes.LIVE_THREADS == 1
    assert offline == ("0", runtimes.default_threads())


@pytest.mark.parametrize("adaptive", [None, False])
def test_a_live_job_on_the_default_model_opens_the_cheaper_one_to_fall_back_to(
    tmp_path, monkeypatch, adaptive
):
    clip = make_clip(tmp_path / "c.mp4", frames=4, size=(96, 64), fps=30, audio=False)
    opened = _opened_runtimes(monkeypatch)
    out = str(tmp_path / "o.mp4")
    cli.run(cli.Options(input_path=str(clip), realtime=True, output=out, progress=False, adaptive=adaptive))
    if adaptive is False:
        assert len(opened) == 1
    else:
        default, fallback = opened
        assert fallback.long_side == CONFIGS["fast"].long_side != default.long_side  # the shipped `fast`
        assert _session_options(fallback) == ("0", runtimes.LIVE_THREADS)


def test_adaptive_is_refused_for_a_file_job(tmp_path, red_model):
    clip = make_clip(tmp_path / "c.mp4", frames=3, size=(96, 64), fps=30, audio=False)
    options = cli.Options(
        input_path=str(clip), model=str(red_model), output=str(tmp_path / "o.mp4"), adaptive=True
    )
    with pytest.raises(UserError, match="--adaptive applies to live sources only"):
        cli.run(options)


@pytest.mark.parametrize("adaptive", [None, False])
def test_a_live_job_adapts_unless_told_not_to(tmp_path, monkeypatch, capsys, adaptive):
    clip = make_clip(tmp_path / "c.mp4", frames=25, size=(160, 120), fps=CLIP_FPS, audio=False)
    monkeypatch.setattr(cli, "open_live_runtime", lambda *args, **kwargs: SlowRuntime(220))
    made: list[QualityController] = []

    class Recording(QualityController):
        def __init__(self, fps, config, **kwargs):
            super().__init__(fps, replace(config, down_after=0.2, up_after=0.5), **kwargs)
            made.append(self)

    monkeypatch.setattr(adaptive_module, "QualityController", Recording)  # run() imports it from there
    out = str(tmp_path / "o.mp4")
    cli.run(cli.Options(input_path=str(clip), realtime=True, output=out, progress=False, adaptive=adaptive))
    if adaptive is False:
        assert made == [] and "quality" not in capsys.readouterr().err
    else:
        assert made[0].changes and "quality down to q 50%" in capsys.readouterr().err
