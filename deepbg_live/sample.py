"""The built-in sample: a short talking-head clip made from a public-domain portrait.

``samples/astronaut.jpg`` is NASA's portrait of Eileen Collins (public domain, as shipped by
scikit-image). The clip sways and zooms slowly, like a person in front of a webcam, and carries a
quiet tone so that audio passthrough can be seen (heard) working.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

PORTRAIT = Path(__file__).parent / "samples" / "astronaut.jpg"
SAMPLE_SIZE = (640, 480)
SAMPLE_FPS = 30
AUDIO_RATE = 44100
TONE_HZ = 330


def sample_frame(index: int, size: tuple[int, int] = SAMPLE_SIZE, fps: int = SAMPLE_FPS) -> np.ndarray:
    """Frame ``index`` of the sample: the portrait on a 4:3 canvas, gently swaying and zooming."""
    portrait = _portrait()
    width, height = size
    t = index / fps
    scale = height / portrait.shape[0] * (1.05 + 0.05 * np.sin(2 * np.pi * t / 5))
    angle = 2.0 * np.sin(2 * np.pi * t / 3)
    shift = 20 * np.sin(2 * np.pi * t / 4)
    matrix = cv2.getRotationMatrix2D((portrait.shape[1] / 2, portrait.shape[0] / 2), angle, scale)
    matrix[0, 2] += width / 2 - portrait.shape[1] / 2 + shift
    matrix[1, 2] += height / 2 - portrait.shape[0] / 2
    return cv2.warpAffine(portrait, matrix, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)


def make_sample_clip(path: str | Path, seconds: float = 5.0, size: tuple[int, int] = SAMPLE_SIZE) -> Path:
    """Write the sample as an H.264 + AAC mp4 and return its path."""
    from deepbg_live.outputs.video import write_clip  # PyAV only here: a sample frame needs OpenCV alone

    frames = (sample_frame(index, size) for index in range(round(seconds * SAMPLE_FPS)))
    return write_clip(path, frames, size, SAMPLE_FPS, audio=_tone(seconds), audio_rate=AUDIO_RATE)


def _tone(seconds: float) -> np.ndarray:
    t = np.arange(round(seconds * AUDIO_RATE)) / AUDIO_RATE
    return (0.2 * np.sin(2 * np.pi * TONE_HZ * t)).astype(np.float32)


_cache: dict[str, np.ndarray] = {}


def _portrait() -> np.ndarray:
    if "portrait" not in _cache:
        _cache["portrait"] = cv2.imread(str(PORTRAIT), cv2.IMREAD_COLOR)
    return _cache["portrait"]
