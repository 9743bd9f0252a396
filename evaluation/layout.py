"""The labelled data layout: image/mask pairs, the shared folders and the fixed validation split.

Every pair is ``images/NAME.jpg`` with ``masks/NAME.png`` (255 = person). The validation split is
fixed and documented in the README: in every photo folder, each pair whose index in name order
is a multiple of 10 is for validation; of the video clips, all of ``lucia`` is (neighbouring
frames are near-duplicates, so a whole clip is held out).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from deepbg_live.formats import IMAGE_EXTENSIONS
from deepbg_live.geometry import long_side_size

VAL_EVERY = 10
VAL_CLIPS = {"lucia"}
CACHE_LONG_SIDE = 320  # pairs are kept in memory at this size; training scales are below it
# the unlabelled folders beside the labelled ones: person-free backgrounds, and object cut-outs
# (an animal or a vehicle, whose mask marks the object) that training pastes in as background
BACKGROUNDS = "backgrounds"
DISTRACTORS = "objects-davis"
DISTRACTOR_IMAGES, DISTRACTOR_MASKS = "object-images", "object-masks"


class DatasetError(ValueError):
    """A problem with the training data, with the offending file named in the message."""


@dataclass(frozen=True)
class Pair:
    image: Path
    mask: Path
    source: str  # folder label used for per-folder metrics, e.g. "portraits-eg2016"


def find_pairs(images_dir: Path, masks_dir: Path, source: str | None = None) -> list[Pair]:
    """Pair every image in ``images_dir`` with the mask of the same stem in ``masks_dir``."""
    images_dir, masks_dir = Path(images_dir), Path(masks_dir)
    for folder in (images_dir, masks_dir):
        if not folder.is_dir():
            raise DatasetError(f"{folder} is not a folder")
    masks = {p.stem: p for p in masks_dir.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS}
    pairs = []
    for image in sorted(images_dir.iterdir()):
        if image.suffix.lower() not in IMAGE_EXTENSIONS:
            continue
        if image.stem not in masks:
            raise DatasetError(f"{image} has no mask named {image.stem}.* in {masks_dir}")
        pairs.append(Pair(image, masks[image.stem], source or images_dir.parent.name))
    if not pairs:
        raise DatasetError(f"{images_dir} holds no images ({', '.join(sorted(IMAGE_EXTENSIONS))})")
    return pairs


def shared_data_folders(root: Path) -> list[tuple[str, Path]]:
    """The labelled folders of the shared data layout: ``(label, folder with images/ masks/)``."""
    root = Path(root)
    folders = []
    for child in sorted(root.iterdir()):
        if (child / "images").is_dir():
            folders.append((child.name, child))
        elif child.is_dir() and child.name != BACKGROUNDS:
            clips = sorted(c for c in child.iterdir() if (c / "images").is_dir())
            folders += [(f"{child.name}/{clip.name}", clip) for clip in clips]
    if not folders:
        raise DatasetError(f"{root} holds no folders with images/ and masks/ inside")
    return folders


def is_validation(label: str, index: int) -> bool:
    """The fixed validation rule (see the module docstring)."""
    clip = label.split("/")[-1]
    if "/" in label:
        return clip in VAL_CLIPS
    return index % VAL_EVERY == 0


def split_pairs(folders: list[tuple[str, Path]]) -> tuple[list[Pair], list[Pair]]:
    """Find the pairs of each folder and divide them into training and validation lists."""
    train, val = [], []
    for label, folder in folders:
        pairs = find_pairs(folder / "images", folder / "masks", source=label.split("/")[0])
        for index, pair in enumerate(pairs):
            (val if is_validation(label, index) else train).append(pair)
    return train, val


def read_pair(pair: Pair, long_side: int | None = CACHE_LONG_SIDE) -> tuple[np.ndarray, np.ndarray]:
    """Read one pair as RGB uint8 and a {0, 255} uint8 mask, resized to ``long_side``."""
    image = cv2.imread(str(pair.image), cv2.IMREAD_COLOR)
    if image is None:
        raise DatasetError(f"cannot read image {pair.image}")
    mask = cv2.imread(str(pair.mask), cv2.IMREAD_GRAYSCALE)
    if mask is None:
        raise DatasetError(f"cannot read mask {pair.mask}")
    if image.shape[:2] != mask.shape:
        raise DatasetError(
            f"size mismatch: {pair.image} is {image.shape[1]}x{image.shape[0]} but "
            f"{pair.mask} is {mask.shape[1]}x{mask.shape[0]}"
        )
    image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    if long_side:
        image = resize_long_side(image, long_side, cv2.INTER_AREA)
        mask = resize_long_side(mask, long_side, cv2.INTER_AREA)
    return image, mask


def resize_long_side(image: np.ndarray, long_side: int, interpolation: int) -> np.ndarray:
    size = long_side_size(image.shape[1], image.shape[0], long_side)
    return cv2.resize(image, size, interpolation=interpolation)
