"""A compact copy of the shared data layout, for training on a machine that cannot see ``../shared``.

``python -m training.pack --out .pack/data`` writes every labelled pair as training reads it
(``read_pair``, and ``load_backgrounds``), the photo as WebP and the mask as lossless PNG, under the
same folder and file names. So the copy has the same pairs and the same validation split, and
``python -m training --data-root .pack/data`` trains on what it would have read from the originals,
less the WebP loss. The backgrounds and the distractor cut-outs come along the same way, and the data
README (its licences) beside them. A GPU machine lent for minutes takes a 64 MiB working tree, and
the originals are 250 MB; MODEL_CARD.md ("Training on a lent GPU") has the whole recipe.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import click
import cv2
import numpy as np
from tqdm import tqdm

from evaluation.layout import (
    BACKGROUNDS,
    DISTRACTOR_IMAGES,
    DISTRACTOR_MASKS,
    DISTRACTORS,
    Pair,
    find_pairs,
    read_pair,
    shared_data_folders,
)
from training.data import load_backgrounds

PHOTO_SUFFIX = ".webp"
MASK_SUFFIX = ".png"


@dataclass
class PackSummary:
    pairs: int  # labelled photos and video frames
    cutouts: int  # distractor objects
    backgrounds: int
    bytes: int


def pack(root: Path, out: Path, quality: int = 75, progress: bool = True) -> PackSummary:
    """Write the compact copy of the layout in ``root`` to ``out``, which must not exist yet.

    It is written under a hidden name beside ``out`` and renamed once complete, so a stopped run
    leaves no half copy that could pass for the data (the next run starts that one afresh).
    """
    root, final = Path(root), Path(out)
    if final.exists():
        raise click.ClickException(f"{final} already exists; give a new folder, so nothing is overwritten")
    out = final.with_name(f".{final.name}.partial")
    shutil.rmtree(out, ignore_errors=True)
    jobs, cutouts = _pair_jobs(root, out)
    for pair, images, masks in tqdm(jobs, desc="packing pairs", disable=not progress, leave=False):
        image, mask = read_pair(pair)
        _write(images / (pair.image.stem + PHOTO_SUFFIX), cv2.cvtColor(image, cv2.COLOR_RGB2BGR), quality)
        _write(masks / (pair.mask.stem + MASK_SUFFIX), mask, quality)
    backgrounds = load_backgrounds(root / BACKGROUNDS)  # as training loads them: sorted, at CACHE_LONG_SIDE
    for index, picture in enumerate(backgrounds):  # numbered in the same order, which is all training reads
        _write(
            out / BACKGROUNDS / f"{index:05d}{PHOTO_SUFFIX}",
            cv2.cvtColor(picture, cv2.COLOR_RGB2BGR),
            quality,
        )
    if (root / "README.md").is_file():
        shutil.copyfile(root / "README.md", out / "README.md")
    size = sum(path.stat().st_size for path in out.rglob("*") if path.is_file())
    out.rename(final)
    return PackSummary(len(jobs) - cutouts, cutouts, len(backgrounds), size)


def _pair_jobs(root: Path, out: Path) -> tuple[list[tuple[Pair, Path, Path]], int]:
    """Each pair with the folders its copies go to, the distractors last, and how many of those there are."""
    jobs = []
    for _, folder in shared_data_folders(root):
        copy = out / folder.relative_to(root)
        jobs += [
            (pair, copy / "images", copy / "masks")
            for pair in find_pairs(folder / "images", folder / "masks")
        ]
    folder, images, masks = root / DISTRACTORS, DISTRACTOR_IMAGES, DISTRACTOR_MASKS
    if not (folder / images).is_dir():
        return jobs, 0
    copy = out / folder.relative_to(root)
    cutouts = [(pair, copy / images, copy / masks) for pair in find_pairs(folder / images, folder / masks)]
    return jobs + cutouts, len(cutouts)


def _write(path: Path, picture: np.ndarray, quality: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    params = (
        [cv2.IMWRITE_WEBP_QUALITY, quality]
        if path.suffix == PHOTO_SUFFIX
        else [cv2.IMWRITE_PNG_COMPRESSION, 9]
    )
    if not cv2.imwrite(str(path), picture, params):
        raise click.ClickException(f"cannot write {path}; check the space and permissions there")


@click.command()
@click.option(
    "--data-root",
    default="../shared/data",
    show_default=True,
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    help="The shared data layout to copy.",
)
@click.option("--out", required=True, type=click.Path(path_type=Path), help="A new folder for the copy.")
@click.option(
    "--quality",
    default=75,
    show_default=True,
    type=click.IntRange(1, 100),
    help="WebP quality of the photos.",
)
@click.option("--no-progress", is_flag=True, help="Hide the progress bar.")
def main(data_root: Path, out: Path, quality: int, no_progress: bool) -> None:
    """Write a compact copy of the shared data layout, to train elsewhere with --data-root OUT."""
    summary = pack(data_root, out, quality, progress=not no_progress)
    click.echo(
        f"{out}: {summary.pairs} pairs, {summary.cutouts} cut-outs and {summary.backgrounds} backgrounds, "
        f"{summary.bytes / 2**20:.1f} MiB"
    )


if __name__ == "__main__":
    main()
