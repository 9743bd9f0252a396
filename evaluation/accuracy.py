"""The accuracy harness: score a predictor on image/mask pairs, per source folder.

Images are scored at their own resolution, the way a user sees the result. ``python -m
training.evaluate`` and ``python -m benchmarks accuracy`` both call ``evaluate``, so they cannot
disagree.
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np
from tqdm import tqdm

from evaluation.layout import Pair, read_pair
from evaluation.metrics import all_metrics

Predictor = Callable[[np.ndarray], np.ndarray]  # BGR frame -> person probability, any size


def prob_at(prob: np.ndarray, frame: np.ndarray) -> np.ndarray:
    """A model-resolution probability map resized to the frame (linear, as the runtime does)."""
    height, width = frame.shape[:2]
    if prob.shape[:2] == (height, width):
        return prob.astype(np.float32, copy=False)
    return cv2.resize(prob.astype(np.float32, copy=False), (width, height), interpolation=cv2.INTER_LINEAR)


def sample_per_source(pairs: list[Pair], count: int) -> list[Pair]:
    """Up to ``count`` evenly spaced pairs of each source (all of them when ``count`` is 0)."""
    if not count:
        return pairs
    by_source: dict[str, list[Pair]] = {}
    for pair in pairs:
        by_source.setdefault(pair.source, []).append(pair)
    chosen = []
    for group in by_source.values():
        step = max(1, len(group) // count)
        chosen += group[::step][:count]
    return chosen


def score_pair(predict: Predictor, pair: Pair) -> dict[str, float]:
    """Every metric of one pair, with the prediction made on the full-size BGR image."""
    rgb, mask = read_pair(pair, long_side=None)
    frame = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    alpha = prob_at(predict(frame), frame)
    return all_metrics(alpha, mask.astype(np.float32) / 255.0)


def mean_metrics(rows: list[dict[str, float]]) -> dict[str, float]:
    return {key: float(np.mean([row[key] for row in rows])) for key in rows[0]} | {"pairs": len(rows)}


def evaluate(predict: Predictor, pairs: list[Pair], name: str = "", progress: bool = True) -> dict:
    """Mean metrics per source folder and over all pairs."""
    per_source: dict[str, list[dict[str, float]]] = {}
    for pair in tqdm(pairs, desc=f"accuracy {name}".strip(), disable=not progress, leave=False):
        per_source.setdefault(pair.source, []).append(score_pair(predict, pair))
    everything = [row for rows in per_source.values() for row in rows]
    return {
        "per_dataset": {source: mean_metrics(rows) for source, rows in sorted(per_source.items())},
        "overall": mean_metrics(everything),
    }
