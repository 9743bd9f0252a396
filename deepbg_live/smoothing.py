"""Temporal smoothing of the person probability: steady on a still person, quick on motion.

A plain exponential moving average trades flicker for lag: strong smoothing makes the mask
trail behind a moving arm. Here the EMA weight is chosen per pixel from how much that pixel
changed, so small frame-to-frame jitter (model noise on a still person) is averaged away
while large changes (a real edge moving through the pixel) are followed at once. On top,
a pixel that is confidently person or background needs a bigger change before it is treated
as motion (hysteresis), which stops uncertain flicker from eating into solid regions.
It runs at model resolution (~192x108), so a handful of numpy ops cost well under 0.1 ms.

Given the frame as a guide (the refiner does, for the refined alpha), still pixels are held harder
where the frame itself did not change: there a changing alpha is the model's or the guided filter's
noise, never the scene's.
"""

from __future__ import annotations

import cv2
import numpy as np


class TemporalSmoother:
    """Motion-adaptive EMA with confidence hysteresis; ``strength`` 0 is off, 1 is strongest.

    Per pixel, with ``s`` the previous output and ``x`` the new probability:
    ``d = |x - s| - band * confidence(s)``; ``w = clip(w_min + d / motion, w_min, 1)``;
    output ``s + w * (x - s)``. ``w_min`` (the EMA weight for still pixels) falls geometrically
    from 1 to 0.15 as strength rises (0.39 at the default 0.5); ``confidence(s) = |2s - 1|`` is 1 for a sure pixel, 0 at 0.5.
    With a ``guide`` frame, ``w_min`` falls further, to ``w_still`` (0.05 at the default), where
    the guide's local brightness changed by less than ``SCENE_CHANGE``.
    """

    MOTION = 0.35  # a change this far beyond the hysteresis band is followed in one frame
    MIN_WEIGHT_AT_FULL_STRENGTH = 0.15
    BAND_AT_FULL_STRENGTH = 0.25  # extra change a fully confident pixel needs to count as motion
    STILL_WEIGHT_AT_FULL_STRENGTH = 0.0025  # w_still: 0.05 at the default strength
    # a change of local mean brightness (5x5 pixels, so that sensor noise averages out) this large
    # counts fully as the scene moving; MODEL_CARD, "A frame-guided floor", has the sweep
    SCENE_CHANGE = np.float32(8.0 / 255.0)
    GUIDE_WINDOW = (5, 5)

    def __init__(self, strength: float = 0.5):
        if not 0.0 <= strength <= 1.0:
            raise ValueError(f"smoothing strength must be between 0 and 1, got {strength}")
        self.strength = float(strength)
        self.min_weight = np.float32(self.MIN_WEIGHT_AT_FULL_STRENGTH**self.strength)
        self.still_weight = np.float32(self.STILL_WEIGHT_AT_FULL_STRENGTH**self.strength)
        self.band = np.float32(self.BAND_AT_FULL_STRENGTH * self.strength)
        self._state: np.ndarray | None = None
        self._guide: np.ndarray | None = None

    def reset(self) -> None:
        """Forget the history, e.g. after a scene cut or a camera switch."""
        self._state = self._guide = None

    def __call__(self, prob: np.ndarray, guide: np.ndarray | None = None) -> np.ndarray:
        """The smoothed ``prob``; ``guide``, if given, is the frame as grey 0..1 float32 of the same shape."""
        if self.strength == 0.0:
            return prob
        x = np.clip(prob, 0.0, 1.0, dtype=np.float32)
        if guide is not None and guide.shape != x.shape:
            raise ValueError(f"the guide's shape {guide.shape} is not the probability's {x.shape}")
        floor = self._weight_floor(guide)
        state = self._state
        if state is None or state.shape != x.shape:
            self._state = x
            return x.copy()
        diff = x - state
        weight = np.abs(diff)
        weight -= self.band * np.abs(2.0 * state - 1.0)  # hysteresis: sure pixels resist flips
        weight *= np.float32(1.0 / self.MOTION)
        weight += floor
        np.clip(weight, floor, 1.0, out=weight)
        diff *= weight
        state = state + diff
        self._state = state
        return state.copy()

    def _weight_floor(self, guide: np.ndarray | None) -> np.ndarray | np.float32:
        """``w_min``, or per pixel from ``w_still`` (the guide unchanged) up to ``w_min`` (it moved)."""
        local = None if guide is None else cv2.blur(guide.astype(np.float32, copy=False), self.GUIDE_WINDOW)
        previous, self._guide = self._guide, local
        if local is None or previous is None or previous.shape != local.shape:
            return self.min_weight
        moved = cv2.absdiff(local, previous)
        moved *= np.float32(1.0 / self.SCENE_CHANGE)
        np.minimum(moved, 1.0, out=moved)
        moved *= self.min_weight - self.still_weight
        moved += self.still_weight
        return moved
