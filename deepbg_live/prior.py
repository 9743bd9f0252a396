"""The previous frame's mask, fed back to a model that takes one (``ModelConfig.previous_mask``).

Google Meet's segmentation model sees its own last output as a fourth input channel: where the
person was a moment ago is strong evidence of where they are now, which steadies edges and stops
background blobs from blinking. The network is trained with perturbed copies of the truth in that
channel (shifted, grown, shrunk, holed; ``training.data.previous_mask_perturbation``) and with the
neutral value everywhere, so that it learns to use the hint without trusting it blindly.

A photo, the first frame of a stream and the first frame after a cut have no history. The
segmenter then looks twice: first with the neutral channel, then with its own first answer, which
is what a still camera's second frame gets (``deepbg_live.engine.Segmenter``).
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


class CutDetector:
    """Notices a cut: each frame is compared with the last by a small grey thumbnail.

    ``detector(frame)`` is True when the thumbnail's mean absolute change exceeds ``threshold``
    (a new shot, or another video spliced on), False for the first frame and for ordinary motion.
    """

    def __init__(self, threshold: float = CUT_THRESHOLD):
        self.threshold = threshold
        self._thumbnail: np.ndarray | None = None

    def reset(self) -> None:
        self._thumbnail = None

    def __call__(self, frame_bgr: np.ndarray) -> bool:
        thumbnail = _thumbnail(frame_bgr)
        last, self._thumbnail = self._thumbnail, thumbnail
        return last is not None and float(cv2.absdiff(thumbnail, last).mean()) > self.threshold


class PreviousMask:
    """One stream's memory of the model's last probability.

    For each frame, ``prior_for(size, cut)`` gives the channel at the model's input size (None
    when there is no history: a new stream, or a cut, which ``CutDetector`` tells), and
    ``remember(probability)`` then stores the model's answer for that frame. ``reset()``
    forgets, for a new source.
    """

    def __init__(self):
        self._probability: np.ndarray | None = None

    def reset(self) -> None:
        self._probability = None

    def prior_for(self, size: tuple[int, int], cut: bool = False) -> np.ndarray | None:
        """The previous-mask channel at the model input ``size`` ``(w, h)``, or None: no history."""
        width, height = size
        if self._probability is None or cut:
            self._probability = None
            return None
        if self._probability.shape != (height, width):  # the adaptive controller changed the input size
            return cv2.resize(self._probability, (width, height), interpolation=cv2.INTER_LINEAR)
        return self._probability

    def remember(self, probability: np.ndarray) -> None:
        """The model's answer for the frame last given to ``prior_for``."""
        self._probability = probability


def _thumbnail(frame_bgr: np.ndarray) -> np.ndarray:
    # Grey first: shrinking one channel with INTER_AREA is faster than shrinking three (0.26 ms
    # against 0.35 at 640x480, both steps included).
    grey = frame_bgr if frame_bgr.ndim == 2 else cv2.cvtColor(frame_bgr[:, :, :3], cv2.COLOR_BGR2GRAY)
    return cv2.resize(grey, _THUMBNAIL, interpolation=cv2.INTER_AREA)
