"""Image files: one picture for a photo, one file per frame in a folder, and the mattes as greyscale PNGs.

Each file is written whole under a temporary name and renamed into place (``safety.write_atomically``),
so an existing file is never left half overwritten.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from deepbg_live.capture import Frame
from deepbg_live.errors import UserError
from deepbg_live.formats import IMAGE_EXTENSIONS
from deepbg_live.outputs.base import SinkBase
from deepbg_live.outputs.safety import check_name, check_writable, make_folder, write_atomically, write_failed

_ALPHA_IMAGE_EXTS = frozenset({".png", ".webp", ".tif", ".tiff"})  # those of IMAGE_EXTENSIONS with alpha


def _encode_to(path: Path, image: np.ndarray) -> None:
    """Encode in memory (non-ASCII paths work on Windows too), then write the file whole or not at all."""
    ok, buf = cv2.imencode(path.suffix or ".png", image)
    if not ok:
        raise UserError(f"{path}: could not encode the image; use a .png or .jpg name")
    try:
        write_atomically(path, buf.data)
    except OSError as exc:
        raise write_failed(path, exc) from None


def _check_image_ext(path: Path, transparent: bool) -> None:
    ext = path.suffix.lower()
    if ext not in IMAGE_EXTENSIONS:
        raise UserError(f"{path}: unsupported image type {ext or '(none)'}; use .png or .jpg")
    if transparent and ext not in _ALPHA_IMAGE_EXTS:
        raise UserError(f"{path}: {ext} can't store transparency; use a .png name")


def _as_writable(path: Path, image: np.ndarray) -> np.ndarray:
    if image.ndim == 3 and image.shape[2] == 4 and path.suffix.lower() not in _ALPHA_IMAGE_EXTS:
        raise UserError(f"{path}: {path.suffix} can't store transparency; use a .png name")
    return image


class ImageFileSink(SinkBase):
    """A single output image (the result for a single input photo); PNG keeps the alpha when transparent."""

    def __init__(self, path: str | Path, transparent: bool = False):
        self.path = Path(path)
        _check_image_ext(self.path, transparent)
        check_name(self.path)
        if self.path.is_dir():
            raise UserError(f"{self.path}: is a folder; give a file name such as {self.path / 'out.png'}")
        make_folder(self.path.parent)
        check_writable(self.path.parent)

    def write(self, frame: Frame, image: np.ndarray, alpha: np.ndarray) -> None:
        _encode_to(self.path, _as_writable(self.path, image))


class FolderSink(SinkBase):
    """One file per frame, named after the input image (folder inputs) or numbered (videos, cameras)."""

    def __init__(self, folder: str | Path, suffix: str = ".png", option: str = "--output"):
        self.folder = Path(folder)
        self.suffix = suffix if suffix.startswith(".") else f".{suffix}"
        _check_image_ext(Path("x" + self.suffix), False)
        make_folder(self.folder, option)
        check_writable(self.folder, option)
        self._used: set[str] = set()

    def _path(self, frame: Frame) -> Path:
        stem = frame.name if frame.name is not None else f"{frame.index:05d}"
        if stem in self._used:  # photo.jpg and photo.png in one folder must not overwrite each other
            stem = f"{stem}_{frame.index:05d}"
        self._used.add(stem)
        return self.folder / f"{stem}{self.suffix}"

    def write(self, frame: Frame, image: np.ndarray, alpha: np.ndarray) -> None:
        path = self._path(frame)
        _encode_to(path, _as_writable(path, image))


class MaskSink(FolderSink):
    """--save-mask: the matte as an 8-bit greyscale PNG per frame, for checking or reuse in an editor."""

    def __init__(self, folder: str | Path):
        super().__init__(folder, ".png", option="--save-mask")

    def write(self, frame: Frame, image: np.ndarray, alpha: np.ndarray) -> None:
        _encode_to(self._path(frame), np.ascontiguousarray(alpha, dtype=np.uint8))
