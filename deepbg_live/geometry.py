"""Sizes: the one definition of "resize to a long side", and of a ``WIDTHxHEIGHT`` string.

Torch-free, so the refiner, the evaluation layer and the command line can use it without
importing the network.
"""

from __future__ import annotations


def long_side_size(width: int, height: int, long_side: int) -> tuple[int, int]:
    """``(w, h)`` scaled so the longer side is ``long_side``, keeping the aspect ratio.

    Training, inference and refinement all use it, so the scale the model was trained at is
    exactly the scale it runs at.
    """
    scale = long_side / max(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def parse_size(text: str) -> tuple[int, int]:
    """``"1280x720"`` (any case) to ``(1280, 720)``; ValueError for anything else or a side below 1."""
    parts = text.strip().lower().split("x")
    if len(parts) != 2 or not all(part.strip().isdigit() for part in parts):
        raise ValueError(f"{text!r} is not WIDTHxHEIGHT, for example 1280x720")
    width, height = (int(part) for part in parts)
    if width < 1 or height < 1:
        raise ValueError(f"{text!r} has a side below 1")
    return width, height
