"""Still pictures, read safely: the size checked in the header before decoding, and 3-channel BGR out.

Apart from the video decoder, so that compositing and the training data need OpenCV alone.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from .errors import UserError
from .image_header import MAX_PIXELS, pixel_size


def as_bgr(image: np.ndarray) -> np.ndarray:
    """Decoded images may be grey or carry alpha; the pipeline works on 3-channel BGR."""
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    return image


def check_pixels(path: Path, width: int, height: int, max_pixels: int) -> None:
    """A UserError when a ``width`` x ``height`` picture is over the pixel limit."""
    if width * height > max_pixels:
        raise UserError(
            f"{path}: {width}x{height} is {width * height / 1e6:.0f} MP, over the {max_pixels / 1e6:g} MP "
            "limit; shrink it, or raise the limit with --max-pixels"
        )


def read_image(path: Path, max_pixels: int = MAX_PIXELS) -> np.ndarray | None:
    """Read an image as BGR, or None if it is unreadable; a UserError if it is over ``max_pixels``.

    The size is read from the header first, so a small file that declares a huge picture is refused
    before anything is allocated. Via imdecode so non-ASCII paths work on Windows too.
    """
    try:
        data = np.fromfile(str(path), np.uint8)
    except OSError:
        return None
    size = pixel_size(data.data)
    if size is None:
        return None
    check_pixels(path, *size, max_pixels)
    return cv2.imdecode(data, cv2.IMREAD_COLOR)
