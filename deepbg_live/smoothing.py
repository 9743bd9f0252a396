"""Temporal smoothing of the person probability: steady on a still person, quick on motion.

A plain exponential moving average trades flicker for lag: strong smoothing makes the mask
trail behind a moving arm. Here the EMA weight is chosen per pixel from how much that pixel
changed, so small frame-to-frame jitter (model noise on a still person) is averaged away
while large changes (a real edge moving through the pixel) are followed at once. On top,
a pixel that is confidently person or background needs a bigger change before it is treated
as motion (hysteresis), which stops uncertain flicker from eating into solid regions.
It runs at model resolution (~192x108), so a handful of numpy ops cost well under 0.1 ms.
"""

from __future__ import annotations

import numpy as np


class TemporalSmoother:
    """Motion-adaptive EMA with confidence hysteresis; ``strength`` 0 is off, 1 is strongest.

    Per pixel, with ``s`` the previous output and ``x`` the new probability:
    ``d = |x - s| - band * confidence(s)``; ``w = clip(w_min + d / motion, w_min, 1)``;
    output ``s + w * (x - s)``. ``w_min`` (the EMA weight for still pixels) falls geometrically
    from 1 to 0.15 as strength rises (0.39 at the default 0.5); ``confidence(s) = |2s - 1|`` is 1 for a sure pixel, 0 at 0.5.
    """

    MOTION = 0.35  # a change this far beyond the hysteresis band is followed in one frame
    MIN_WEIGHT_AT_FULL_STRENGTH = 0.15
    BAND_AT_FULL_STRENGTH = 0.25  # extra change a fully confident pixel needs to count as motion

    def __init__(self, strength: float = 0.5):
        if not 0.0 <= strength <= 1.0:
            raise ValueError(f"smoothing strength must be between 0 and 1, got {strength}")
        self.strength = float(strength)
        self.min_weight = np.float32(self.MIN_WEIGHT_AT_FULL_STRENGTH**self.strength)
        self.band = np.float32(self.BAND_AT_FULL_STRENGTH * self.strength)
        self._state: np.ndarray | None = None

    def reset(self) -> None:
        """Forget the history, e.g. after a scene cut or a camera switch."""
        self._state = None

    def __call__(self, prob: np.ndarray) -> np.ndarray:
        if self.strength == 0.0:
            return prob
        x = np.clip(prob, 0.0, 1.0, dtype=np.float32)
        state = self._state
        if state is None or state.shape != x.shape:
            self._state = x
            return x.copy()
        diff = x - state
        weight = np.abs(diff)
        weight -= self.band * np.abs(2.0 * state - 1.0)  # hysteresis: sure pixels resist flips
        weight *= np.float32(1.0 / self.MOTION)
        weight += self.min_weight
        np.clip(weight, self.min_weight, 1.0, out=weight)
        diff *= weight
        state = state + diff
        self._state = state
        return state.copy()
