"""``python -m training.evaluate``: accuracy of a model on image/mask folders, per folder.

Inference goes through the runtime's own ``Segmenter`` (and optionally its ``EdgeRefiner``), so
the numbers describe what users get, not a training-time shortcut.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click
import cv2
import numpy as np
from tqdm import tqdm

from deepbg_live.engine import Segmenter
from deepbg_live.errors import UserError
from deepbg_live.refine import EdgeRefiner
from training.data import DatasetError, Pair, find_pairs, shared_data_folders, split_pairs
from training.metrics import all_metrics


def evaluate_pairs(
    segmenter: Segmenter, pairs: list[Pair], refiner: EdgeRefiner | None = None
) -> dict[str, float]:
    """Mean of every metric over ``pairs``, predicting at full resolution like the runtime."""
    rows = []
    for pair in tqdm(pairs, desc="evaluating", leave=False):
        frame = cv2.imread(str(pair.image), cv2.IMREAD_COLOR)
        truth = cv2.imread(str(pair.mask), cv2.IMREAD_GRAYSCALE)
        if frame is None or truth is None:
            raise DatasetError(f"cannot read {pair.image if frame is None else pair.mask}")
        prob = segmenter(frame)
        if refiner is not None:
            alpha = refiner(prob, frame).astype(np.float32) / 255.0
        else:
            alpha = cv2.resize(prob, (frame.shape[1], frame.shape[0]), interpolation=cv2.INTER_LINEAR)
        rows.append(all_metrics(alpha, truth.astype(np.float32) / 255.0))
    return {key: float(np.mean([row[key] for row in rows])) for key in rows[0]} | {"pairs": len(rows)}


def validation_folders(data_root: Path) -> dict[str, list[Pair]]:
    """The fixed validation split of the shared data, grouped by source folder."""
    _, val = split_pairs(shared_data_folders(data_root))
    groups: dict[str, list[Pair]] = {}
    for pair in val:
        groups.setdefault(pair.source, []).append(pair)
    return groups


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
    help="Evaluate the fixed validation split of this shared data layout.",
)
@click.option(
    "--model", default=None, help="Weights (.safetensors, .pt or .onnx) [default: the shipped model]."
)
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto")
@click.option("--long-side", type=int, default=None, help="Inference resolution [default: the model's].")
@click.option(
    "--refine/--no-refine", default=False, help="Score the guided-filter alpha instead of the bilinear one."
)
@click.option(
    "--json-out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Also write the results here.",
)
def main(images, masks, data_root, model, device, long_side, refine, json_out) -> None:
    """Report IoU, Dice, boundary F and MAD per folder of image/mask pairs."""
    try:
        if len(images) != len(masks):
            raise click.UsageError("give one --masks for each --images")
        groups = {Path(i).parent.name or str(i): find_pairs(i, m) for i, m in zip(images, masks, strict=True)}
        if data_root:
            groups |= validation_folders(data_root)
        if not groups:
            raise click.UsageError("nothing to evaluate: give --images/--masks or --data-root")
        segmenter = Segmenter(model, device=device, long_side=long_side)
        refiner = EdgeRefiner() if refine else None
        results = {name: evaluate_pairs(segmenter, pairs, refiner) for name, pairs in groups.items()}
    except (DatasetError, UserError) as error:
        click.echo(f"Error: {error}", err=True)
        sys.exit(2)
    click.echo(f"model: {model or 'shipped'}  backend: {segmenter.backend}  long side: {segmenter.long_side}")
    click.echo(f"{'folder':<22}{'pairs':>6}{'IoU':>8}{'mIoU':>8}{'Dice':>8}{'BF':>8}{'MAD':>8}")
    for name, r in results.items():
        click.echo(
            f"{name:<22}{r['pairs']:>6}{r['iou']:>8.4f}{r['miou']:>8.4f}{r['dice']:>8.4f}{r['boundary_f']:>8.4f}{r['mad']:>8.4f}"
        )
    if json_out:
        json_out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
