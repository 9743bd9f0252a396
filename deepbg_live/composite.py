"""Backgrounds and blending: the last per-frame step, so it must stay in uint8 and OpenCV.

Blending a 720p frame costs 26 ms in numpy float32 but ~1.2 ms with ``cv2.multiply`` +
``cv2.add`` on uint8 (rounding error at most 1 level), so everything here stays in uint8.
Backgrounds that do not change with the frame are cached per frame size.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from pathlib import Path

import cv2
import numpy as np

from deepbg_live.colors import DEFAULT_COLOR, parse_color
from deepbg_live.errors import UserError
from deepbg_live.formats import literal
from deepbg_live.images import as_bgr, read_image


def cover_fit(image: np.ndarray, width: int, height: int, fast: bool = False) -> np.ndarray:
    """Scale ``image`` to cover ``width`` x ``height`` and centre-crop it: no bars, no squashing.

    The crop happens in source pixels first, so only the visible part is resized. ``fast``
    uses bilinear shrinking for per-frame use (1080p to 720p: INTER_AREA costs ~9 ms).
    """
    src_h, src_w = image.shape[:2]
    scale = max(width / src_w, height / src_h)
    crop_w = min(src_w, max(1, round(width / scale)))
    crop_h = min(src_h, max(1, round(height / scale)))
    x0 = (src_w - crop_w) // 2
    y0 = (src_h - crop_h) // 2
    crop = image[y0 : y0 + crop_h, x0 : x0 + crop_w]
    if (crop_w, crop_h) == (width, height):
        return np.ascontiguousarray(crop)
    shrinking = crop_w > width
    interpolation = cv2.INTER_AREA if shrinking and not fast else cv2.INTER_LINEAR
    return cv2.resize(crop, (width, height), interpolation=interpolation)


def _frozen(image: np.ndarray) -> np.ndarray:
    """Cached backgrounds are shared between frames; make accidental in-place edits fail loudly."""
    image.flags.writeable = False
    return image


class Background(ABC):
    """Something to put behind the person, rendered to the size of each frame."""

    name: str = "background"

    @abstractmethod
    def render(self, frame_bgr: np.ndarray) -> np.ndarray:
        """BGR uint8 image of the frame's size (may be a cached, read-only array)."""

    def close(self) -> None:  # noqa: B027 - deliberately optional to override
        """Release files or decoders; a no-op for backgrounds that hold none."""


class ColorBackground(Background):
    """A flat colour, e.g. green for chroma keying in OBS."""

    def __init__(self, color: str | tuple[int, int, int] = DEFAULT_COLOR):
        self.bgr = parse_color(color) if isinstance(color, str) else _check_bgr(color)
        self.name = f"colour {color}" if isinstance(color, str) else f"colour BGR{self.bgr}"
        self._cache: np.ndarray | None = None

    def render(self, frame_bgr: np.ndarray) -> np.ndarray:
        height, width = frame_bgr.shape[:2]
        if self._cache is None or self._cache.shape[:2] != (height, width):
            self._cache = _frozen(np.full((height, width, 3), self.bgr, dtype=np.uint8))
        return self._cache


def _check_bgr(color: tuple[int, int, int]) -> tuple[int, int, int]:
    values = tuple(int(c) for c in color)
    if len(values) != 3 or not all(0 <= c <= 255 for c in values):
        raise UserError(f"bad colour {color!r}: give three 0-255 values (B, G, R) or a name such as green")
    return values  # type: ignore[return-value]


def _require_file(path: Path, what: str) -> None:
    if not path.is_file():
        raise UserError(f"{what} '{path}' not found; check the path")


class ImageBackground(Background):
    """A still picture, cover-fitted to the frame (computed once per frame size)."""

    def __init__(self, path: str | Path):
        path = Path(path)
        _require_file(path, "background image")
        image = read_image(path)  # refuses a decompression bomb before decoding it
        if image is None or image.size == 0:
            raise UserError(
                f"could not read background image '{path}'; use a PNG, JPEG or other image OpenCV reads"
            )
        self.image = as_bgr(image)
        self.name = f"image {path.name}"
        self._cache: np.ndarray | None = None

    def render(self, frame_bgr: np.ndarray) -> np.ndarray:
        height, width = frame_bgr.shape[:2]
        if self._cache is None or self._cache.shape[:2] != (height, width):
            self._cache = _frozen(cover_fit(self.image, width, height))
        return self._cache


class VideoBackground(Background):
    """A video file played in a loop, one background frame per rendered frame."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        _require_file(self.path, "background video")
        self._capture = self._open()
        first = self._read()
        if first is None:
            self.close()
            raise UserError(
                f"background video '{self.path}' has no frames OpenCV can decode; try an MP4 file"
            )
        self._pending: np.ndarray | None = first
        self.name = f"video {self.path.name}"

    def _open(self) -> cv2.VideoCapture:
        capture = cv2.VideoCapture(literal(self.path))  # never read as an FFmpeg protocol
        if not capture.isOpened():
            raise UserError(
                f"could not open background video '{self.path}'; use a video file OpenCV can read (MP4)"
            )
        return capture

    def _read(self) -> np.ndarray | None:
        ok, frame = self._capture.read()
        return as_bgr(frame) if ok and frame is not None else None

    def _next_frame(self) -> np.ndarray:
        """The next frame, rewinding at the end (by reopening: seeking is unreliable for some codecs)."""
        if self._pending is not None:
            frame, self._pending = self._pending, None
            return frame
        frame = self._read()
        if frame is None:
            self._capture.release()
            self._capture = self._open()
            frame = self._read()
            if frame is None:
                raise UserError(f"background video '{self.path}' stopped decoding; try another file")
        return frame

    def render(self, frame_bgr: np.ndarray) -> np.ndarray:
        height, width = frame_bgr.shape[:2]
        return cover_fit(self._next_frame(), width, height, fast=True)

    def close(self) -> None:
        if self._capture is not None:
            self._capture.release()


class BlurBackground(Background):
    """The camera's own background, blurred; the blur runs at reduced size, which is ~4x cheaper.

    ``kernel`` is the Gaussian kernel size in frame pixels (bigger = blurrier).
    """

    def __init__(self, kernel: int = 31):
        if isinstance(kernel, bool) or not isinstance(kernel, int | np.integer) or kernel <= 0:
            raise UserError(f"blur kernel must be a positive whole number of pixels, got {kernel!r}; try 31")
        self.kernel = int(kernel)
        self.factor = 4 if kernel >= 12 else 2 if kernel >= 6 else 1
        self.name = f"blur {kernel}"

    def render(self, frame_bgr: np.ndarray) -> np.ndarray:
        height, width = frame_bgr.shape[:2]
        factor = self.factor
        small_size = (max(1, width // factor), max(1, height // factor))
        small = (
            frame_bgr if factor == 1 else cv2.resize(frame_bgr, small_size, interpolation=cv2.INTER_LINEAR)
        )
        small_kernel = max(1, round(self.kernel / factor)) | 1  # Gaussian kernels must be odd
        blurred = cv2.GaussianBlur(small, (small_kernel, small_kernel), 0)
        if factor == 1:
            return blurred
        return cv2.resize(blurred, (width, height), interpolation=cv2.INTER_LINEAR)


class _Scratch(threading.local):
    """Per-thread reusable buffers: allocating three fresh 2.7 MB arrays per 720p frame costs
    ~5 ms in page faults on a loaded machine, far more than the blend itself (~1 ms)."""

    def __init__(self) -> None:
        self.buffers: dict[tuple[int, ...], tuple[np.ndarray, np.ndarray, np.ndarray]] = {}

    def get(self, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if shape not in self.buffers:
            self.buffers.clear()  # one frame size at a time
            self.buffers[shape] = tuple(np.empty(shape, np.uint8) for _ in range(3))  # type: ignore[assignment]
        return self.buffers[shape]


_scratch = _Scratch()


def blend(front: np.ndarray, back: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """``front * alpha + back * (1 - alpha)`` in uint8, for any channel count, exact at alpha 0 and 255.

    ``alpha`` is 0-255 uint8 of the pictures' height and width. Each product is rounded
    separately, so mid-range alphas may be off by one level; the result never exceeds ``front``
    where ``back`` is 0 (what keeps a training label from gaining person pixels).
    """
    _check_blend(front, back, alpha)
    channels = 1 if front.ndim == 2 else front.shape[2]
    weights = alpha.copy() if channels == 1 else cv2.merge([alpha] * channels)
    return _mix(front, back, weights)


def composite(frame_bgr: np.ndarray, alpha: np.ndarray, background: np.ndarray) -> np.ndarray:
    """``blend`` for the video path: a BGR frame over its background, reusing scratch buffers.

    The result is a new array (callers may queue it), only the intermediates are reused.
    """
    _check_blend(frame_bgr, background, alpha)
    alpha3, person, behind = _scratch.get(frame_bgr.shape)
    cv2.cvtColor(alpha, cv2.COLOR_GRAY2BGR, dst=alpha3)
    return _mix(frame_bgr, background, alpha3, person, behind)


def _mix(
    front: np.ndarray,
    back: np.ndarray,
    weights: np.ndarray,
    person: np.ndarray | None = None,
    behind: np.ndarray | None = None,
) -> np.ndarray:
    """The blend itself, on per-channel weights, which it overwrites with their complement."""
    person = cv2.multiply(front, weights, dst=person, scale=1.0 / 255.0)
    cv2.bitwise_not(weights, dst=weights)
    behind = cv2.multiply(back, weights, dst=behind, scale=1.0 / 255.0)
    return cv2.add(person, behind)


def _check_blend(front: np.ndarray, back: np.ndarray, alpha: np.ndarray) -> None:
    if (
        front.shape != back.shape
        or alpha.shape != front.shape[:2]
        or not front.dtype == back.dtype == alpha.dtype == np.uint8
    ):
        raise ValueError(
            f"blending needs uint8 pictures and alpha of matching sizes, got {front.shape} {front.dtype}, "
            f"{back.shape} {back.dtype} and alpha {alpha.shape} {alpha.dtype}"
        )


def with_alpha(frame_bgr: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """BGRA for ``--transparent`` outputs: the person opaque, the background see-through."""
    bgra = cv2.cvtColor(frame_bgr, cv2.COLOR_BGR2BGRA)  # 10x faster than split + merge
    bgra[:, :, 3] = alpha
    return bgra


def mask_view(alpha: np.ndarray) -> np.ndarray:
    """The alpha as a grey BGR picture (person white), for ``--show-mask``."""
    return cv2.cvtColor(alpha, cv2.COLOR_GRAY2BGR)
