"""The preview window: the result on screen with an FPS overlay and single-key controls, if a display exists.

``display_available()`` is the one answer to "can a window open here?", for the window and the doctor.
"""

from __future__ import annotations

import os
import re
import socket
import sys
from collections import deque

import cv2
import numpy as np

from deepbg_live.capture import Frame
from deepbg_live.errors import UserError
from deepbg_live.hotkeys import Action, action_for
from deepbg_live.outputs.base import SinkBase


def _x_server_reachable(display: str) -> bool:
    """Connect to the X server's socket: a stale DISPLAY would make OpenCV's Qt abort the process."""
    match = re.fullmatch(r"(?P<host>[^:]*):(?P<num>\d+)(?:\.\d+)?", display)
    if not match:
        return True  # a form we don't parse (e.g. XQuartz's launchd path): let Qt try
    host, num = match["host"], int(match["num"])
    try:
        if host in ("", "unix"):
            for address in (f"/tmp/.X11-unix/X{num}", f"\0/tmp/.X11-unix/X{num}"):
                with socket.socket(socket.AF_UNIX) as sock:
                    sock.settimeout(1)
                    if sock.connect_ex(address) == 0:
                        return True
            return False
        with socket.create_connection((host, 6000 + num), timeout=1):
            return True
    except OSError:
        return False


def display_available() -> bool:
    """Whether a window can be opened: always on Windows/macOS, with a reachable X server on Linux.

    Wayland counts only through XWayland, which sets DISPLAY: the opencv-python wheels ship Qt with
    just its X11 (xcb) platform plugin, so WAYLAND_DISPLAY alone promises a window that cannot open.
    """
    if sys.platform in ("win32", "darwin"):
        return True
    display = os.environ.get("DISPLAY", "")
    return bool(display) and _x_server_reachable(display)


_CHECKER_CACHE: dict[tuple[int, int], np.ndarray] = {}


def _checkerboard(w: int, h: int, cell: int = 16) -> np.ndarray:
    key = (w, h)
    if key not in _CHECKER_CACHE:
        yy, xx = np.mgrid[0:h, 0:w]
        light = ((yy // cell + xx // cell) % 2).astype(bool)
        board = np.where(light[..., None], np.uint8(200), np.uint8(150)).astype(np.uint8)
        _CHECKER_CACHE.clear()
        _CHECKER_CACHE[key] = np.repeat(board, 3, axis=2)
    return _CHECKER_CACHE[key]


def _over_checkerboard(bgra: np.ndarray) -> np.ndarray:
    """Show transparency the way image editors do."""
    h, w = bgra.shape[:2]
    board = _checkerboard(w, h)
    a = cv2.cvtColor(bgra[:, :, 3], cv2.COLOR_GRAY2BGR)
    fg = cv2.multiply(bgra[:, :, :3], a, scale=1 / 255)
    bg = cv2.multiply(board, cv2.bitwise_not(a), scale=1 / 255)
    return cv2.add(fg, bg)


def overlay_text(fps: float, latency_ms: float, quality: str | None = None) -> str:
    """The overlay's line: frame rate, latency and, when the live quality adapts, its level."""
    text = f"{fps:5.1f} fps  {latency_ms:5.0f} ms"
    return f"{text}  {quality}" if quality else text


class PreviewWindow(SinkBase):
    """An OpenCV window with an FPS/latency overlay and single-key controls (see ``hotkeys.KEYS``)."""

    def __init__(self, title: str = "deepbg-live", show_stats: bool = True):
        if not display_available():
            raise UserError("no display found: use --no-window, or run under xvfb-run")
        self.title = title
        self.show_stats = show_stats
        self._fps: float | None = None
        self._latency: float | None = None
        self._quality: str | None = None
        self._actions: deque[Action] = deque()
        self._shown = False
        self._polled_since_show = True
        self._closed = False
        cv2.namedWindow(title, cv2.WINDOW_NORMAL | cv2.WINDOW_KEEPRATIO | cv2.WINDOW_GUI_NORMAL)

    def set_stats(self, fps: float, latency_ms: float) -> None:
        self._fps, self._latency = fps, latency_ms

    def set_quality(self, quality: str) -> None:
        """The live quality level the overlay shows, e.g. "q 75%"; the quality controller sets it on each change."""
        self._quality = quality

    def _overlay(self, image: np.ndarray) -> np.ndarray:
        if not self.show_stats or self._fps is None:
            return image
        image = image.copy()
        text = overlay_text(self._fps, self._latency or 0.0, self._quality)
        scale = max(0.5, image.shape[0] / 720)
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
        cv2.rectangle(image, (0, 0), (tw + 16, th + base + 16), (0, 0, 0), -1)
        cv2.putText(
            image, text, (8, th + 8), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA
        )
        return image

    def write(self, frame: Frame, image: np.ndarray, alpha: np.ndarray) -> None:
        """Show the frame and service the GUI once (the window only repaints while keys are polled)."""
        if self._closed or self._user_closed():
            return
        if image.ndim == 3 and image.shape[2] == 4:
            image = _over_checkerboard(image)
        if not self._shown:  # start at 1:1 (up to 1280 wide); the user can resize, keeping the aspect
            h, w = image.shape[:2]
            scale = min(1.0, 1280 / w)
            cv2.resizeWindow(self.title, round(w * scale), round(h * scale))
        cv2.imshow(self.title, self._overlay(image))
        self._shown = True
        self._queue_key(cv2.waitKey(1))
        self._polled_since_show = False

    def _user_closed(self) -> bool:
        if self._shown and cv2.getWindowProperty(self.title, cv2.WND_PROP_VISIBLE) < 1:
            self._closed = True
            self._actions.append(Action.QUIT)
            return True
        return False

    def _queue_key(self, key: int) -> None:
        action = action_for(key)
        if action is not None:
            self._actions.append(action)

    def poll_key(self, wait_ms: int = 1) -> Action | None:
        """Next user action, or None; the caller acts on it (for ``STATS``: toggle ``show_stats``).

        While paused, poll with ``wait_ms`` around 30 so the loop sleeps in the GUI instead of spinning.
        """
        if not self._actions and not self._closed:
            # nothing written since the last poll (e.g. paused): pump the GUI here, or it freezes
            if self._polled_since_show:
                self._queue_key(cv2.waitKey(max(1, wait_ms)))
            self._polled_since_show = True
            self._user_closed()
        return self._actions.popleft() if self._actions else None

    def close(self) -> None:
        if self._closed and not self._shown:
            return
        self._closed = True
        if self._shown:
            self._shown = False
            try:
                cv2.destroyWindow(self.title)
                cv2.waitKey(1)  # let the GUI thread actually unmap it
            except cv2.error:
                pass
