"""Part 3: mask quality on image/mask pairs: IoU, mIoU, Dice, boundary F and MAD, per dataset.

By default the pairs are the fixed validation split of the shared data (see ``evaluation.layout``);
any folder of images with same-named masks can be given instead. Images are scored at their
own resolution, the way a user sees the result; ours through its edge refiner, as on video.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from benchmarks.context import Contender, Context
from deepbg_live.errors import UserError
from evaluation.accuracy import evaluate, sample_per_source
from evaluation.layout import DatasetError, Pair, find_pairs, shared_data_folders, split_pairs


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


def run(
    ctx: Context, settings: AccuracySettings | None = None, contenders: list[Contender] | None = None
) -> dict:
    """Score each model (by default just ours) on the same pairs."""
    settings = settings or AccuracySettings.for_mode(ctx.quick)
    pairs = evaluation_pairs(ctx, settings)
    contenders = contenders or [ctx.ours()]
    models = {c.name: evaluate(c.alpha, pairs, c.name, ctx.progress) for c in contenders}
    return {"settings": asdict(settings), "pairs": len(pairs), "models": models}
