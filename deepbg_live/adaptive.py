"""Adaptive live quality: a smaller model input, rather than dropped frames, when the CPU falls behind.

A live source (a camera, or a file played with ``--realtime``) delivers frames on its own clock, and
a frame the pipeline is not ready for is dropped. ``QualityController`` compares each frame's work,
its wall time in segmentation plus compositing, with the frame budget ``1 / fps``. When the smoothed
share (an EWMA) stays over ``AdaptiveConfig.high`` for ``down_after`` seconds, it steps down a ladder
of ``Level``s, each a smaller model input or a cheaper model where one is given (the shipped
``fast`` beside the default ``realtime``). Frames dropped all the same (decoding or
encoding starved of CPU, say) count too: it also steps down while the smoothed share of frames
that came after a drop stays over ``max_drops``. When the work share stays under ``low`` for
``up_after`` seconds without a drop, it steps back up. Three things keep it from oscillating: the
gap between the two thresholds, fresh averages after every change, and an up-patience that
doubles each time a step up is undone within it.

Only the model's input shrinks. The alpha is still refined against the full-resolution frame, so
edges follow the picture; what is lost is detail the network sees. Wall time, not CPU time, is what
counts: a busy CPU makes each stage wait for a core, and that is exactly when frames start to drop.

To watch it work, load the CPU with a busy loop per core and play a clip as a camera:

    python -c "while True: pass" & python -c "while True: pass" &
    deepbg-live --demo --realtime --window      # the overlay's "q 100%" falls to "q 75%", "q 100% fast"
    kill %1 %2                                  # and climbs back a few seconds later

Without a display, ``-o out.mp4`` in place of ``--window`` prints the lowest level reached at the end.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

from deepbg_live.engine import MIN_INPUT_SIDE

# The networks pad each side up to a multiple of their stride (16 for the shipped U-Nets), so a long
# side that is a multiple of it wastes no work on padding. Below MIN_INPUT_SIDE, the engine pads.
SIDE_STEP = 16


@dataclass(frozen=True)
class Level:
    """One step of the quality ladder: the model's input long side as a share of its own, and which model."""

    scale: float
    cheaper: bool = False  # run the cheaper fallback model (``Segmenter.fallback``) instead of the chosen one

    def long_side(self, full: int) -> int:
        """The input long side at this level for a model that runs at ``full``."""
        if self.scale >= 1.0:
            return full
        return max(MIN_INPUT_SIDE, SIDE_STEP * round(full * self.scale / SIDE_STEP))

    @property
    def label(self) -> str:
        """What the preview's overlay shows, e.g. "q 75%", or "q 50% fast" on the cheaper model."""
        return f"q {self.scale:.0%}" + (" fast" if self.cheaper else "")


# The model's time grows with its input's area: 0.75x the long side is about 0.56x the time, 0.5x a quarter.
LADDER = (Level(1.0), Level(0.75), Level(0.5))
# With a cheaper model, it takes over below 75% of the default's input. `realtime` at half its 224
# (4.4 ms, int8, 1 thread) costs twice `fast` at its full 256 (2.0 ms) and scores far worse (validation
# IoU on DAVIS frames 0.21 against 0.79, full-body 0.86 against 0.92); at 168, near its 75% level's
# 160, it scores about what `fast` does at 256, for 9.3 ms (session 18, MODEL_CARD "The live quality ladder").
LADDER_WITH_FALLBACK = (
    Level(1.0),
    Level(0.75),
    Level(1.0, cheaper=True),
    Level(0.75, cheaper=True),
    Level(0.5, cheaper=True),
)


@dataclass(frozen=True)
class AdaptiveConfig:
    """When the controller steps down and up; shares are of the frame budget ``1 / fps``."""

    levels: tuple[Level, ...] = LADDER
    high: float = 0.85  # step down when the smoothed work stays above this share...
    low: float = 0.45  # ...and up when it stays below this one: a level up costs up to ~1.8x the model time
    weight: float = 0.1  # the EWMA weight of each new frame: about the last 10 frames count
    down_after: float = 0.5  # seconds over ``high`` before a step down: a few frames, before drops pile up
    up_after: float = 3.0  # seconds under ``low`` before a step up
    max_up_after: float = 48.0  # the up-patience doubles after each failed step up, up to this
    # Step down also while the smoothed share of frames shown after a drop stays above this. Drops
    # are sparse, so their average is longer (about the last 50 frames): a steady 3% of frames
    # dropped, or three drops within 10 frames, keep it above; one or two drops never do.
    max_drops: float = 0.03
    drop_weight: float = 0.02

    def __post_init__(self) -> None:
        if not self.levels or not 0 < self.low < self.high or not 0 < min(self.weight, self.drop_weight) <= 1:
            raise ValueError("AdaptiveConfig needs levels, 0 < low < high and weights in (0, 1]")


class Zone(Enum):
    """Where the smoothed work share lies against the thresholds."""

    OVER = "over"  # above ``high``: falling behind
    INSIDE = "inside"  # between the thresholds: keep the level
    HEADROOM = "headroom"  # below ``low``: the next level up would fit


class QualityController:
    """Chooses the quality ``level`` from each frame's work and drops; ``observe`` is called once per frame.

    ``clock`` gives seconds (``time.perf_counter`` by default; tests pass a fake one). ``on_change``
    is called with the new level after each change, from the thread that calls ``observe``.
    ``changes`` records each change as ``(time, level)``.
    """

    def __init__(
        self,
        fps: float,
        config: AdaptiveConfig = AdaptiveConfig(),
        clock: Callable[[], float] = time.perf_counter,
        on_change: Callable[[Level], None] | None = None,
    ):
        self.config, self.clock, self.on_change = config, clock, on_change
        self.budget_ms = 1000.0 / fps
        self.index = 0
        self.load: float | None = None  # EWMA of work / budget since the last change
        self.drops = 0.0  # EWMA of "frames were dropped before this one" (1 or 0) since the last change
        self.changes: list[tuple[float, Level]] = []
        self._dropped = 0  # the source's dropped-frame count at the last observation
        self._zone: Zone | None = None
        self._since = clock()  # when the load entered its zone
        self._up_after = config.up_after
        self._last_up: float | None = None

    @property
    def level(self) -> Level:
        return self.config.levels[self.index]

    @property
    def lowest(self) -> Level:
        """The lowest level reached so far."""
        reached = [level for _, level in self.changes] + [self.config.levels[0]]
        return max(reached, key=self.config.levels.index)

    def observe(self, work_ms: float, dropped: int = 0) -> bool:
        """Take one frame's work (wall ms in segmentation and compositing) and the count of frames
        dropped so far in the run; True if the level changed."""
        now = self.clock()
        share = work_ms / self.budget_ms
        self.load = share if self.load is None else self.load + self.config.weight * (share - self.load)
        after_drop = dropped > self._dropped
        self._dropped = dropped
        self.drops += self.config.drop_weight * (float(after_drop) - self.drops)
        zone = self._zone_of(self.load, after_drop)
        if zone is not self._zone:
            self._zone, self._since = zone, now
        held = now - self._since
        if zone is Zone.OVER and held >= self.config.down_after and self.index < len(self.config.levels) - 1:
            self._step_down(now)
            return True
        if zone is Zone.HEADROOM and held >= self._up_after and self.index > 0:
            self._step(-1, now)
            self._last_up = now
            return True
        return False

    def _zone_of(self, load: float, after_drop: bool) -> Zone:
        if load > self.config.high or self.drops > self.config.max_drops:
            return Zone.OVER
        return Zone.HEADROOM if load < self.config.low and not after_drop else Zone.INSIDE

    def _step_down(self, now: float) -> None:
        # A step up undone within the patience was a probe that failed: wait longer before the next.
        failed = self._last_up is not None and now - self._last_up < self._up_after
        self._up_after = min(2 * self._up_after, self.config.max_up_after) if failed else self.config.up_after
        self._last_up = None
        self._step(+1, now)

    def _step(self, direction: int, now: float) -> None:
        self.index += direction
        self.load, self.drops = None, 0.0  # the old averages described the old level
        self._zone, self._since = None, now
        self.changes.append((now, self.level))
        if self.on_change is not None:
            self.on_change(self.level)
