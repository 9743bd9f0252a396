"""Part 3: mask quality on image/mask pairs: IoU, mIoU, Dice, boundary F and MAD, per dataset.

By default the pairs are the fixed validation split of the shared data (see ``training.data``);
any folder of images with same-named masks can be given instead. Images are scored at their
own resolution, the way a user sees the result.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from benchmarks.context import Context, prob_at
from deepbg_live.errors import UserError
from training.data import DatasetError, Pair, find_pairs, read_pair, shared_data_folders, split_pairs
from training.metrics import all_metrics

Predictor = Callable[[np.ndarray], np.ndarray]  # BGR frame -> person probability, any size


@dataclass
class AccuracySettings:
    images: str | None = None  # a folder of images; with ``masks``, replaces the validation split
    masks: str | None = None
    per_dataset: int = 0  # 0: every pair; else an evenly spaced sample of this many per dataset

    @classmethod
    def for_mode(cls, quick: bool, **overrides: object) -> AccuracySettings:
        return cls(per_dataset=8 if quick else 0, **overrides)


def evaluation_pairs(ctx: Context, settings: AccuracySettings) -> list[Pair]:
    """The pairs to score: the given folders, else the shared data's validation split."""
    try:
        if settings.images or settings.masks:
            if not (settings.images and settings.masks):
                raise UserError("give both --images and --masks, or neither (for the validation split)")
            pairs = find_pairs(
                Path(settings.images), Path(settings.masks), source=Path(settings.images).parent.name
            )
        else:
            pairs = split_pairs(shared_data_folders(ctx.data_root))[1]
    except DatasetError as exc:
        raise UserError(f"{exc}; pass --data-root, or --images and --masks") from exc
    return sample_per_source(pairs, settings.per_dataset)


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


def run(
    ctx: Context, settings: AccuracySettings | None = None, predictors: dict[str, Predictor] | None = None
) -> dict:
    """Score each predictor (by default just ours) on the same pairs."""
    settings = settings or AccuracySettings.for_mode(ctx.quick)
    pairs = evaluation_pairs(ctx, settings)
    predictors = predictors or {"ours": ctx.segmenter()}
    models = {name: evaluate(predict, pairs, name, ctx.progress) for name, predict in predictors.items()}
    return {"settings": asdict(settings), "pairs": len(pairs), "models": models}
