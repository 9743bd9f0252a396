"""The previous frame's mask, fed back to a model that takes one (``ModelConfig.previous_mask``).

Google Meet's segmentation model sees its own last output as a fourth input channel: where the
person was a moment ago is strong evidence of where they are now, which steadies edges and stops
background blobs from blinking. The network is trained with perturbed copies of the truth in that
channel (shifted, grown, shrunk, holed; ``training.data.previous_mask_perturbation``) and with the
neutral value everywhere, so that it learns to use the hint without trusting it blindly.

A photo, the first frame of a stream and the first frame after a cut get the neutral channel.
"""

from __future__ import annotations

import cv2
import numpy as np

NEUTRAL = 0.5  # "no idea": what a photo or a stream's first frame gets in the previous-mask channel
# A cut: the mean absolute change of a 32x24 grey thumbnail, in 0..255 levels. Between consecutive
# frames of the six DAVIS clips (dancers, a tennis serve) it is at most 10; from the last frame of
# one clip to the first of another, 35 to 69 (median 50).
CUT_THRESHOLD = 20.0
_THUMBNAIL = (32, 24)


def neutral_prior(height: int, width: int) -> np.ndarray:
    """The previous-mask channel for a frame with no history, ``(h, w)`` float32."""
    return np.full((height, width), NEUTRAL, np.float32)


def with_prior(batch: np.ndarray, prior: np.ndarray) -> np.ndarray:
    """A normalised ``(1, 3, h, w)`` batch with the previous-mask channel appended: ``(1, 4, h, w)``."""
    return np.concatenate([batch, prior[None, None].astype(np.float32, copy=False)], axis=1)


class PreviousMask:
    """One stream's memory: the last probability, and a thumbnail of the last frame to notice cuts.

    For each frame, ``prior_for(frame, size)`` gives the channel at the model's input size, and
    ``remember(probability)`` then stores the model's answer for that frame. ``reset()`` forgets,
    for a new source; a cut or a change of size forgets by itself.
    """

    def __init__(self, cut_threshold: float = CUT_THRESHOLD):
        self.cut_threshold = cut_threshold
        self._probability: np.ndarray | None = None
        self._thumbnail: np.ndarray | None = None

    def reset(self) -> None:
        self._probability = self._thumbnail = None

    def prior_for(self, frame_bgr: np.ndarray, size: tuple[int, int]) -> np.ndarray:
        """The previous-mask channel for ``frame_bgr`` at the model input ``size`` ``(w, h)``."""
        width, height = size
        thumbnail = _thumbnail(frame_bgr)  # once per frame: kept to compare the next frame with
        cut = self._thumbnail is not None and self._changed(thumbnail)
        self._thumbnail = thumbnail
        if self._probability is None or cut:
            self._probability = None
            return neutral_prior(height, width)
        if self._probability.shape != (height, width):  # the adaptive controller changed the input size
            return cv2.resize(self._probability, (width, height), interpolation=cv2.INTER_LINEAR)
        return self._probability

    def remember(self, probability: np.ndarray) -> None:
        """The model's answer for the frame last given to ``prior_for``."""
        self._probability = probability

    def _changed(self, thumbnail: np.ndarray) -> bool:
        return float(cv2.absdiff(thumbnail, self._thumbnail).mean()) > self.cut_threshold


def _thumbnail(frame_bgr: np.ndarray) -> np.ndarray:
    grey = frame_bgr if frame_bgr.ndim == 2 else cv2.cvtColor(frame_bgr[:, :, :3], cv2.COLOR_BGR2GRAY)
    return cv2.resize(grey, _THUMBNAIL, interpolation=cv2.INTER_AREA)
