"""File types and names: the image extensions deepbg-live reads, and how FFmpeg is given a path.

One set of extensions for the runtime, training and benchmarks; one rule for paths, so that a
file named ``file:talk.mp4`` or ``pipe:1.mp4`` is always that file, never an FFmpeg protocol.
"""

import os

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff"})


def literal(path: str | os.PathLike[str]) -> str:
    """The path as FFmpeg must be given it: absolute, so ``file:x`` or ``pipe:1`` is never a protocol."""
    return os.path.abspath(os.fspath(path))
