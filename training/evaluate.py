"""``python -m training.evaluate``: accuracy of a model on image/mask folders, per folder.

Inference goes through the runtime's own ``Segmenter`` and ``EdgeRefiner``, so the numbers
describe what users get, not a training-time shortcut. By default that is what ``deepbg-live``
does with a photo; ``--no-flip-average`` scores the video and camera path. Scoring is the
evaluation layer's accuracy harness, shared with ``python -m benchmarks accuracy``, so the two
cannot disagree.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path

import click
import numpy as np

from deepbg_live.engine import Segmenter
from deepbg_live.errors import UserError
from deepbg_live.model_files import model_option_help
from deepbg_live.refine import EdgeRefiner
from deepbg_live.runtimes import PRECISIONS
from evaluation.accuracy import evaluate
from evaluation.layout import DatasetError, Pair, find_pairs, shared_data_folders, split_pairs


def runtime_predictor(
    segmenter: Segmenter, refiner: EdgeRefiner | None
) -> Callable[[np.ndarray], np.ndarray]:
    """Frame in, person probability out, as the runtime computes it (refined alpha if asked)."""
    if refiner is None:
        return segmenter
    return lambda frame: refiner(segmenter(frame), frame).astype(np.float32) / 255.0


def split_sample(data_root: Path, training: bool = False, every: int = 1) -> list[Pair]:
    """Every ``every``-th pair of each folder's validation split, or its training split."""
    train, val = split_pairs(shared_data_folders(data_root))
    chosen = train if training else val
    by_folder: dict[str, list[Pair]] = {}
    for pair in chosen:
        by_folder.setdefault(pair.source, []).append(pair)
    return [pair for folder in by_folder.values() for pair in folder[::every]]


@click.command(context_settings={"show_default": True})
@click.option(
    "--images",
    type=click.Path(file_okay=False, path_type=Path),
    multiple=True,
    help="Image folder (repeatable).",
)
@click.option(
    "--masks",
    type=click.Path(file_okay=False, path_type=Path),
    multiple=True,
    help="Mask folder for each --images.",
)
@click.option(
    "--data-root",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Evaluate a fixed split of this shared data layout (--split).",
)
@click.option(
    "--split",
    type=click.Choice(["validation", "training"]),
    default="validation",
    help="Which split of --data-root: the training one measures fit (training IoU near validation "
    "IoU, both low, means underfitting, not overfitting).",
)
@click.option(
    "--every",
    type=click.IntRange(min=1),
    default=1,
    help="Score every Nth pair of each --data-root folder (a quick sample of the training split).",
)
@click.option(
    "--model",
    default=None,
    help=model_option_help(),
)
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto")
@click.option("--long-side", type=int, default=None, help="Inference resolution [default: the model's].")
@click.option(
    "--precision",
    type=click.Choice(list(PRECISIONS)),
    default="auto",
    help="CPU arithmetic, as deepbg-live --precision (auto: int8 where the model ships it).",
)
@click.option(
    "--flip-average/--no-flip-average",
    default=True,
    help="Average with the mirrored frame, as deepbg-live does for photos (--no-flip-average: as for video).",
)
@click.option(
    "--second-look/--no-second-look",
    default=True,
    help="Run a model that reads its previous mask again with its own first answer, as deepbg-live "
    "does for a photo or a stream's first frame (--no-second-look: the neutral channel only).",
)
@click.option(
    "--refine/--no-refine",
    default=True,
    help="Score the guided-filter alpha, as deepbg-live does (--no-refine: the bilinear one).",
)
@click.option(
    "--json-out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Also write the results here.",
)
def main(
    images,
    masks,
    data_root,
    split,
    every,
    model,
    device,
    long_side,
    precision,
    flip_average,
    second_look,
    refine,
    json_out,
) -> None:
    """Report IoU, Dice, boundary F and MAD per folder of image/mask pairs."""
    try:
        if len(images) != len(masks):
            raise click.UsageError("give one --masks for each --images")
        pairs = [
            pair
            for i, m in zip(images, masks, strict=True)
            for pair in find_pairs(i, m, source=Path(i).parent.name or str(i))
        ]
        if data_root:
            pairs += split_sample(data_root, training=split == "training", every=every)
        if not pairs:
            raise click.UsageError("nothing to evaluate: give --images/--masks or --data-root")
        segmenter = Segmenter(
            model,
            device=device,
            long_side=long_side,
            precision=precision,
            flip_average=flip_average,
            second_look=second_look,
        )
        predict = runtime_predictor(segmenter, EdgeRefiner() if refine else None)
        results = evaluate(predict, pairs, name="evaluating")["per_dataset"]
    except (DatasetError, UserError) as error:
        click.echo(f"Error: {error}", err=True)
        sys.exit(2)
    click.echo(
        f"model: {model or 'shipped'}  backend: {segmenter.backend} ({segmenter.precision})  "
        f"long side: {segmenter.long_side}  flip-average: {'on' if flip_average else 'off'}  "
        f"second look: {'on' if second_look else 'off'}  refine: {'on' if refine else 'off'}"
    )
    click.echo(f"{'folder':<22}{'pairs':>6}{'IoU':>8}{'mIoU':>8}{'Dice':>8}{'BF':>8}{'MAD':>8}")
    for name, r in results.items():
        click.echo(
            f"{name:<22}{r['pairs']:>6}{r['iou']:>8.4f}{r['miou']:>8.4f}{r['dice']:>8.4f}{r['boundary_f']:>8.4f}{r['mad']:>8.4f}"
        )
    if json_out:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
