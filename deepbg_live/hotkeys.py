"""The preview window's keys: one mapping from key to ``Action``, and ``Hotkeys``, which carries them out."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING

import click
import cv2

from deepbg_live.composite import Background, BlurBackground, ColorBackground

if TYPE_CHECKING:  # the window imports this module for the key mapping
    from deepbg_live.outputs.preview import PreviewWindow
    from deepbg_live.pipeline import Pipeline, Result

PALETTE = ("#00ff00", "#0000ff", "#ffffff", "#0a4678", "#202020")  # colours the c key cycles through
BLUR_STEPS = (15, 31, 61)  # blur kernels the b key cycles through


class Action(str, Enum):
    """What a key asks for; the value is its name, as printed."""

    QUIT = "quit"
    BACKGROUND = "background"  # cycle the blur strengths
    COLOR = "color"  # cycle the colour palette
    IMAGE = "image"  # cycle the user's --image/--video backgrounds
    PAUSE = "pause"
    SNAPSHOT = "snapshot"
    STATS = "stats"  # toggle the FPS/latency overlay

    def __str__(self) -> str:
        return self.value


KEYS: dict[int, Action] = {
    ord("q"): Action.QUIT,
    27: Action.QUIT,  # Esc
    ord("b"): Action.BACKGROUND,
    ord("c"): Action.COLOR,
    ord("i"): Action.IMAGE,
    ord(" "): Action.PAUSE,
    ord("s"): Action.SNAPSHOT,
    ord("f"): Action.STATS,
}


def action_for(key: int) -> Action | None:
    """The action of a ``cv2.waitKey`` code (letters in either case), or None."""
    if key < 0:
        return None
    code = key & 0xFF
    return KEYS.get(code) or KEYS.get(ord(chr(code).lower()))


class Hotkeys:
    """The pipeline's controller while a preview shows: acts on the window's keys after each frame."""

    def __init__(
        self,
        pipeline: Pipeline,
        window: PreviewWindow,
        user_backgrounds: list[Background],
        stop: threading.Event | None = None,
    ):
        self.pipeline, self.window = pipeline, window
        self.user_backgrounds = user_backgrounds
        self.stop = stop  # a stop signal ends a pause too
        self.colour, self.blur, self.user = 0, 0, 0
        self.last: Result | None = None
        self.ticks: list[float] = []
        self._actions: dict[Action, Callable[[], None]] = {
            Action.COLOR: self.next_colour,
            Action.BACKGROUND: self.next_blur,
            Action.IMAGE: self.next_user_background,
            Action.SNAPSHOT: self.snapshot,
            Action.STATS: self.toggle_stats,
        }

    def __call__(self, result: Result) -> bool:
        """Handle the keys pressed since the last frame; False ends the run."""
        self.last = result
        self._update_overlay()
        action = self.window.poll_key()
        if action is Action.PAUSE:
            action = self.wait_while_paused()
        return self.handle(action)

    def wait_while_paused(self) -> Action | None:
        """Hold the current picture until space is pressed again (or a stop signal); other keys still act."""
        while True:
            if self.stop is not None and self.stop.is_set():
                return Action.QUIT
            action = self.window.poll_key(wait_ms=30)
            if action is Action.PAUSE:
                return None
            if action is Action.QUIT:
                return action
            if action is not None:
                self.handle(action)

    def handle(self, action: Action | None) -> bool:
        """Carry out ``action``; False means quit."""
        if action is Action.QUIT:
            return False
        if action in self._actions:
            self._actions[action]()
        return True

    def next_colour(self) -> None:
        self.colour = (self.colour + 1) % len(PALETTE)
        self.pipeline.background = ColorBackground(PALETTE[self.colour])

    def next_blur(self) -> None:
        self.blur = (self.blur + 1) % len(BLUR_STEPS)
        self.pipeline.background = BlurBackground(BLUR_STEPS[self.blur])

    def next_user_background(self) -> None:
        if not self.user_backgrounds:
            click.echo("no picture to show: start with --image FILE or --video FILE to use 'i'", err=True)
            return
        self.user = (self.user + 1) % len(self.user_backgrounds)
        self.pipeline.background = self.user_backgrounds[self.user]

    def snapshot(self) -> None:
        if self.last is None:
            return
        from deepbg_live.outputs.safety import write_new  # here: the outputs package imports this module

        path = Path(time.strftime("deepbg-snapshot-%Y%m%d-%H%M%S.png"))
        _, png = cv2.imencode(".png", self.last.image)
        try:
            path = write_new(path, png.data)  # never over an existing file: a second one gets "-2"
        except OSError as exc:
            click.echo(f"could not save a snapshot in the current folder ({exc.strerror})", err=True)
            return
        click.echo(f"saved {path}", err=True)

    def toggle_stats(self) -> None:
        self.window.show_stats = not self.window.show_stats

    def _update_overlay(self) -> None:
        now = time.perf_counter()
        self.ticks = [t for t in self.ticks if now - t < 1.0] + [now]
        latency = self.pipeline.stats.latencies[-1] if self.pipeline.stats.latencies else 0.0
        self.window.set_stats(len(self.ticks), latency)
