"""The preview's keys: which key means what, and what each action does to the running pipeline."""

from __future__ import annotations

from collections import deque
from types import SimpleNamespace

import numpy as np

from deepbg_live.composite import BlurBackground, ColorBackground
from deepbg_live.hotkeys import BLUR_STEPS, PALETTE, Action, Hotkeys, action_for


class FakeWindow:
    """Answers poll_key from a script of actions; records the overlay it was given."""

    def __init__(self, *actions: Action | None):
        self.actions = deque(actions)
        self.show_stats = True
        self.stats: tuple[float, float] | None = None

    def poll_key(self, wait_ms: int = 1) -> Action | None:
        return self.actions.popleft() if self.actions else None

    def set_stats(self, fps: float, latency_ms: float) -> None:
        self.stats = (fps, latency_ms)


def _hotkeys(window: FakeWindow, user_backgrounds: list | None = None) -> Hotkeys:
    pipeline = SimpleNamespace(background=None, stats=SimpleNamespace(latencies=[12.0]))
    return Hotkeys(pipeline, window, user_backgrounds or [])


def _result() -> SimpleNamespace:
    return SimpleNamespace(image=np.zeros((4, 4, 3), np.uint8))


def test_keys_map_to_actions_in_either_case_and_others_to_nothing() -> None:
    assert [action_for(ord(k)) for k in "qbcis f"] == [
        Action.QUIT, Action.BACKGROUND, Action.COLOR, Action.IMAGE, Action.SNAPSHOT, Action.PAUSE, Action.STATS,
    ]  # fmt: skip
    assert action_for(27) is Action.QUIT and action_for(ord("C")) is Action.COLOR
    assert action_for(ord("x")) is None and action_for(-1) is None  # -1: no key pressed
    assert action_for(0x10000 | ord("b")) is Action.BACKGROUND  # modifier bits above the low byte


def test_colour_and_blur_keys_cycle_through_their_steps() -> None:
    keys = _hotkeys(FakeWindow())
    keys.handle(Action.COLOR)
    assert isinstance(keys.pipeline.background, ColorBackground)
    for _ in range(len(PALETTE) - 1):
        keys.handle(Action.COLOR)
    assert keys.colour == 0  # back to the start
    keys.handle(Action.BACKGROUND)
    assert isinstance(keys.pipeline.background, BlurBackground) and keys.blur == 1 % len(BLUR_STEPS)


def test_the_picture_key_cycles_the_users_backgrounds() -> None:
    first, second = ColorBackground("red"), ColorBackground("blue")
    keys = _hotkeys(FakeWindow(), [first, second])
    keys.handle(Action.IMAGE)
    assert keys.pipeline.background is second
    keys.handle(Action.IMAGE)
    assert keys.pipeline.background is first


def test_quit_ends_the_run_and_stats_toggles_the_overlay() -> None:
    window = FakeWindow(Action.STATS, Action.QUIT)
    keys = _hotkeys(window)
    assert keys(_result()) is True and window.show_stats is False
    assert window.stats == (1, 12.0)  # one frame this second, the last latency
    assert keys(_result()) is False


def test_pause_holds_until_pressed_again_while_other_keys_still_act() -> None:
    window = FakeWindow(Action.PAUSE, None, Action.COLOR, None, Action.PAUSE)
    keys = _hotkeys(window)
    assert keys(_result()) is True
    assert not window.actions and isinstance(keys.pipeline.background, ColorBackground)


def test_quit_while_paused_ends_the_run() -> None:
    assert _hotkeys(FakeWindow(Action.PAUSE, None, Action.QUIT))(_result()) is False
