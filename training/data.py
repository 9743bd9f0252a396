"""Training samples: an in-memory cache of the pairs, compositing, distractors and augmentation.

Which files are pairs, and which of them validate, is the evaluation layer's
(``evaluation.layout``); this module turns training pairs into augmented crops.
"""

from __future__ import annotations

import random
from pathlib import Path

import albumentations as A
import cv2
import numpy as np
import torch

from deepbg_live.composite import blend
from deepbg_live.formats import IMAGE_EXTENSIONS
from deepbg_live.model import normalise
from deepbg_live.prior import NEUTRAL
from evaluation.layout import (
    CACHE_LONG_SIDE,
    DISTRACTOR_IMAGES,
    DISTRACTOR_MASKS,
    DatasetError,
    Pair,
    find_pairs,
    read_pair,
    resize_long_side,
)


def load_backgrounds(folder: Path | None) -> list[np.ndarray]:
    """RGB backgrounds for compositing; an empty list when there is no folder."""
    if folder is None or not Path(folder).is_dir():
        return []
    backgrounds = []
    for path in sorted(Path(folder).iterdir()):
        image = cv2.imread(str(path), cv2.IMREAD_COLOR) if path.suffix.lower() in IMAGE_EXTENSIONS else None
        if image is not None:
            backgrounds.append(
                resize_long_side(cv2.cvtColor(image, cv2.COLOR_BGR2RGB), CACHE_LONG_SIDE, cv2.INTER_AREA)
            )
    return backgrounds


def photometric_augmentation() -> A.Compose:
    """Colour, webcam noise, compression and blur: the camera-side variation."""
    return A.Compose(
        [
            A.HorizontalFlip(p=0.5),
            A.Affine(
                rotate=(-15, 15), shear=(-5, 5), scale=(0.9, 1.1), border_mode=cv2.BORDER_REFLECT_101, p=0.5
            ),
            A.ColorJitter(brightness=0.3, contrast=0.3, saturation=0.3, hue=0.03, p=0.6),
            A.RandomBrightnessContrast(p=0.3),
            A.RandomGamma(p=0.2),
            A.OneOf([A.GaussNoise(std_range=(0.02, 0.08)), A.ISONoise()], p=0.3),
            A.OneOf([A.MotionBlur(blur_limit=(3, 7)), A.Blur(blur_limit=(3, 5)), A.GaussianBlur()], p=0.25),
            A.ImageCompression(quality_range=(40, 95), p=0.3),
            A.ToGray(p=0.03),
        ]
    )


# Share of samples whose previous-mask channel is neutral, as for a photo or a stream's first frame:
# the model must stay good without the hint, not only with it.
PREVIOUS_MASK_NEUTRAL_P = 0.3


def previous_mask_perturbation() -> A.Compose:
    """Last frame's answer, made from this frame's truth: moved, grown or shrunk, holed, blotted, soft.

    Motion between frames is the shift and turn; the model's own errors are the grown or shrunk
    outline, the missing chunks (a lost hand) and the extra blobs (a chair kept). Blur matches the
    soft probabilities the runtime feeds back.
    """
    return A.Compose(
        [
            A.Affine(
                translate_percent=(-0.05, 0.05),
                scale=(0.93, 1.07),
                rotate=(-6, 6),
                border_mode=cv2.BORDER_REPLICATE,
                p=0.9,
            ),
            A.OneOf(
                [
                    A.Morphological(scale=(2, 7), operation="dilation"),
                    A.Morphological(scale=(2, 7), operation="erosion"),
                ],
                p=0.5,
            ),
            A.CoarseDropout(
                num_holes_range=(1, 3),
                hole_height_range=(0.05, 0.25),
                hole_width_range=(0.05, 0.25),
                fill=0,
                p=0.3,
            ),
            A.CoarseDropout(
                num_holes_range=(1, 3),
                hole_height_range=(0.05, 0.2),
                hole_width_range=(0.05, 0.2),
                fill=255,
                p=0.2,
            ),
            A.GaussianBlur(blur_limit=(3, 11), p=1.0),  # always: the fed-back answer is never a hard copy
        ]
    )


class SegmentationDataset(torch.utils.data.Dataset):
    """Cached pairs, scaled and cropped around the inference scale, then augmented.

    Each sample is drawn from a generator seeded by ``(seed, epoch, index)``, so a resumed run
    sees exactly the samples it would have seen without interruption.
    """

    def __init__(
        self,
        samples: list[tuple[np.ndarray, np.ndarray]],
        backgrounds: list[np.ndarray],
        crop: int,
        long_side: int,
        seed: int = 0,
        composite_p: float = 0.3,
        occlude_p: float = 0.0,
        distractors: list[tuple[np.ndarray, np.ndarray]] | None = None,
        distractor_p: float = 0.0,
        copy_paste_p: float = 0.0,
        previous_mask: bool = False,
    ):
        """``previous_mask``: add the fourth input channel (``ModelConfig.previous_mask``)."""
        self.samples = samples
        self.backgrounds = backgrounds
        self.crop = crop
        self.long_side = long_side
        self.seed = seed
        self.composite_p = composite_p if backgrounds else 0.0
        self.occlude_p = occlude_p if backgrounds else 0.0
        self.distractors = distractors or []
        self.distractor_p = distractor_p if self.distractors else 0.0
        self.copy_paste_p = copy_paste_p if len(samples) > 1 else 0.0
        self.epoch = 0
        self.augment = photometric_augmentation()
        self.perturb = previous_mask_perturbation() if previous_mask else None

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        rng = random.Random(hash((self.seed, self.epoch, index)))
        image, mask = self.samples[index]
        if rng.random() < self.composite_p:
            image = composite_on(image, mask, rng.choice(self.backgrounds), rng)
        # Never both: a new background would hide the other photo's people, who stay in the label.
        elif self.copy_paste_p and rng.random() < self.copy_paste_p:
            image, mask = paste_onto_photo(image, mask, self._other_sample(index, rng), rng)
        if rng.random() < self.occlude_p:
            image, mask = occlude(image, mask, rng.choice(self.backgrounds), rng)
        if rng.random() < self.distractor_p:
            image, mask = paste_distractor(image, mask, rng.choice(self.distractors), rng)
        image, mask = self.scale_and_crop(image, mask, rng)
        self.augment.set_random_seed(rng.randrange(2**31))
        out = self.augment(image=image, mask=mask)
        target = torch.from_numpy(out["mask"]).float().div_(255.0)[None]
        image = normalise(out["image"])[0]
        if self.perturb is not None:
            image = torch.cat([image, self.previous_mask(out["mask"], rng)[None]])
        return image, target

    def _other_sample(self, index: int, rng: random.Random) -> tuple[np.ndarray, np.ndarray]:
        other = rng.randrange(len(self.samples) - 1)
        return self.samples[other + (other >= index)]

    def previous_mask(self, mask: np.ndarray, rng: random.Random) -> torch.Tensor:
        """The previous-mask channel for a sample whose truth is ``mask``: neutral, or a perturbed copy."""
        if rng.random() < PREVIOUS_MASK_NEUTRAL_P:
            return torch.full(mask.shape, NEUTRAL)
        self.perturb.set_random_seed(rng.randrange(2**31))
        return torch.from_numpy(self.perturb(image=mask)["image"]).float().div_(255.0)

    def scale_and_crop(self, image: np.ndarray, mask: np.ndarray, rng: random.Random):
        # The person should appear at about the size the runtime will show the model (the
        # frame's long side resized to ``long_side``); larger scales yield close-ups.
        scale = self.long_side * np.exp(rng.uniform(np.log(0.7), np.log(1.8))) / max(image.shape[:2])
        size = (max(1, round(image.shape[1] * scale)), max(1, round(image.shape[0] * scale)))
        image = cv2.resize(image, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
        mask = cv2.resize(mask, size, interpolation=cv2.INTER_LINEAR)
        pad_h, pad_w = max(0, self.crop - size[1]), max(0, self.crop - size[0])
        if pad_h or pad_w:
            image = cv2.copyMakeBorder(image, 0, pad_h, 0, pad_w, cv2.BORDER_REFLECT_101)
            mask = cv2.copyMakeBorder(mask, 0, pad_h, 0, pad_w, cv2.BORDER_REFLECT_101)
        top = rng.randint(0, image.shape[0] - self.crop)
        left = rng.randint(0, image.shape[1] - self.crop)
        window = (slice(top, top + self.crop), slice(left, left + self.crop))
        return np.ascontiguousarray(image[window]), np.ascontiguousarray(mask[window])


def composite_on(
    image: np.ndarray, mask: np.ndarray, background: np.ndarray, rng: random.Random
) -> np.ndarray:
    """Paste the person in ``image`` onto ``background`` (cover-fitted), with a soft edge."""
    (bg,) = cover_fit([background], image.shape[:2], rng)
    return blend(image, bg, soft_edge(mask))


def paste_onto_photo(
    image: np.ndarray, mask: np.ndarray, other: tuple[np.ndarray, np.ndarray], rng: random.Random
) -> tuple[np.ndarray, np.ndarray]:
    """Paste the person in ``image`` onto another training photo, whose own people stay person.

    Simple copy-paste (Ghiasi et al., 2021): real indoor and outdoor scenes behind the person, far
    more varied than the background folder, and scenes with several people. The label is the union
    of both photos' people, with the pasted person in front.
    """
    other_image, other_mask = cover_fit(list(other), image.shape[:2], rng)
    alpha = soft_edge(mask)
    # Where the pasted person covers a fraction alpha of a pixel, that fraction is person; the
    # rest shows the other photo. As in composite_on, the pasted person's own label stays as it was.
    union = blend(np.full_like(mask, 255), other_mask, alpha)
    return blend(image, other_image, alpha), np.maximum(mask, union)


def soft_edge(mask: np.ndarray) -> np.ndarray:
    """The alpha a pasted person is blended with: its mask, a pixel softer at the outline."""
    return cv2.GaussianBlur(mask, (3, 3), 0)


def cover_fit(pictures: list[np.ndarray], size: tuple[int, int], rng: random.Random) -> list[np.ndarray]:
    """One random ``size`` (h, w) window of same-sized ``pictures``, scaled up to cover it."""
    height, width = size
    source_h, source_w = pictures[0].shape[:2]
    scale = max(height / source_h, width / source_w) * rng.uniform(1.0, 1.5)
    scaled = (int(np.ceil(source_w * scale)), int(np.ceil(source_h * scale)))
    top = rng.randint(0, scaled[1] - height)
    left = rng.randint(0, scaled[0] - width)
    return [cv2.resize(p, scaled)[top : top + height, left : left + width] for p in pictures]


def occluder_shape(size: int, rng: random.Random) -> np.ndarray:
    """A random star-shaped blob filling a ``size`` square: 0-255 alpha with a slightly soft edge."""
    corners = rng.randint(5, 10)
    angles = np.sort([rng.uniform(0, 2 * np.pi) for _ in range(corners)])
    radii = np.array([rng.uniform(0.25, 0.5) for _ in range(corners)]) * size
    centre = size / 2
    points = np.stack([centre + radii * np.cos(angles), centre + radii * np.sin(angles)], axis=1)
    shape = np.zeros((size, size), np.uint8)
    cv2.fillPoly(shape, [np.round(points).astype(np.int32)], 255, lineType=cv2.LINE_AA)
    return cv2.GaussianBlur(shape, (3, 3), 0)


def occlude(
    image: np.ndarray, mask: np.ndarray, texture: np.ndarray, rng: random.Random
) -> tuple[np.ndarray, np.ndarray]:
    """Hold a non-person object in front of the person: a blob of ``texture`` across their outline.

    The blob is labelled background wherever it covers, meant to teach that things held beside
    or in front of a person (a pet, a plate) are not part of them. Scenery blobs did not fix
    those misses here (run 11 in MODEL_CARD.md), so ``--occlude-p`` is off by default.
    """
    height, width = image.shape[:2]
    size = max(8, round(min(height, width) * rng.uniform(0.2, 0.5)))
    alpha = occluder_shape(size, rng)
    patch_top = rng.randint(0, max(0, texture.shape[0] - size))
    patch_left = rng.randint(0, max(0, texture.shape[1] - size))
    patch = cv2.resize(texture[patch_top : patch_top + size, patch_left : patch_left + size], (size, size))
    centre_y, centre_x = _point_on_outline(mask, rng)
    top, left = centre_y - size // 2, centre_x - size // 2
    # A blob centred near the frame's edge hangs over it; only its part inside the frame is drawn.
    y0, x0 = max(0, top), max(0, left)
    y1, x1 = min(height, top + size), min(width, left + size)
    if y1 <= y0 or x1 <= x0:
        return image, mask
    cover = alpha[y0 - top : y1 - top, x0 - left : x1 - left]
    blob = patch[y0 - top : y1 - top, x0 - left : x1 - left]
    image, mask = image.copy(), mask.copy()
    image[y0:y1, x0:x1] = blend(blob, image[y0:y1, x0:x1], cover)
    person = mask[y0:y1, x0:x1]
    mask[y0:y1, x0:x1] = blend(np.zeros_like(person), person, cover)
    return image, mask


def load_distractors(folder: Path | None) -> list[tuple[np.ndarray, np.ndarray]]:
    """Object cut-outs (RGB, 0-255 object alpha) from ``object-images/`` and ``object-masks/``.

    An empty list when there is no folder, so training without them needs no flag.
    """
    if folder is None or not (Path(folder) / DISTRACTOR_IMAGES).is_dir():
        return []
    pairs = find_pairs(Path(folder) / DISTRACTOR_IMAGES, Path(folder) / DISTRACTOR_MASKS)
    return [read_pair(pair) for pair in pairs]


def paste_distractor(
    image: np.ndarray, mask: np.ndarray, distractor: tuple[np.ndarray, np.ndarray], rng: random.Random
) -> tuple[np.ndarray, np.ndarray]:
    """Paste an animal or vehicle beside, behind or in front of the person, labelled background.

    In front, it hides the person where it covers them; behind, the person hides it. Either way
    the label can only lose person pixels, never gain them: the object is never the person.
    """
    cutout, alpha = distractor
    height, width = image.shape[:2]
    in_front = rng.random() < 0.4
    # Something held or passing in front is smaller than what stands behind; neither hides a whole face.
    scale = height * (rng.uniform(0.2, 0.55) if in_front else rng.uniform(0.3, 1.0)) / cutout.shape[0]
    size = (max(2, round(cutout.shape[1] * scale)), max(2, round(cutout.shape[0] * scale)))
    cutout, alpha = cv2.resize(cutout, size), cv2.resize(alpha, size)
    if rng.random() < 0.5:
        cutout, alpha = np.ascontiguousarray(cutout[:, ::-1]), np.ascontiguousarray(alpha[:, ::-1])
    top, left = _distractor_corner(mask, size, rng)
    y0, x0, y1, x1 = max(0, top), max(0, left), min(height, top + size[1]), min(width, left + size[0])
    if y1 <= y0 or x1 <= x0:
        return image, mask
    cover = alpha[y0 - top : y1 - top, x0 - left : x1 - left]
    person = mask[y0:y1, x0:x1]
    if not in_front:  # the person hides the object where they overlap
        cover = blend(np.zeros_like(cover), cover, person)
    image, mask = image.copy(), mask.copy()
    image[y0:y1, x0:x1] = blend(
        cutout[y0 - top : y1 - top, x0 - left : x1 - left], image[y0:y1, x0:x1], cover
    )
    if in_front:
        mask[y0:y1, x0:x1] = blend(np.zeros_like(person), person, cover)
    return image, mask


def _distractor_corner(mask: np.ndarray, size: tuple[int, int], rng: random.Random) -> tuple[int, int]:
    """Top-left corner for a ``size`` object next to the person: touching their side or overlapping it."""
    height, width = mask.shape
    ys, xs = np.nonzero(mask > 127)
    if len(xs) == 0:
        return rng.randint(0, max(0, height - size[1])), rng.randint(0, max(0, width - size[0]))
    side = xs.min() if rng.random() < 0.5 else xs.max()
    left = side - round(size[0] * rng.uniform(0.2, 0.8))
    top = height - size[1] - round(rng.uniform(-0.3, 0.5) * size[1])  # resting low in the frame
    return top, left


def _point_on_outline(mask: np.ndarray, rng: random.Random) -> tuple[int, int]:
    """A random pixel on the person's outline, or anywhere when the mask is empty or full."""
    person = mask > 127
    outline = person ^ cv2.erode(person.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    ys, xs = np.nonzero(outline)
    if len(ys) == 0:
        return rng.randrange(mask.shape[0]), rng.randrange(mask.shape[1])
    pick = rng.randrange(len(ys))
    return int(ys[pick]), int(xs[pick])


def cache_pairs(pairs: list[Pair], long_side: int = CACHE_LONG_SIDE, progress: bool = True):
    """Read every pair once into memory; reading JPEGs each epoch would cost more than training.

    A pair listed more than once (see ``repeat_by_source``) is read once and its arrays shared.
    """
    from tqdm import tqdm

    cache: dict[Pair, tuple[np.ndarray, np.ndarray]] = {}
    for pair in tqdm(pairs, desc="loading pairs", disable=not progress, leave=False):
        if pair not in cache:
            cache[pair] = read_pair(pair, long_side)
    return [cache[pair] for pair in pairs]


def repeat_by_source(pairs: list[Pair], repeat: dict[str, int]) -> list[Pair]:
    """``pairs`` with each source folder's pairs listed ``repeat[source]`` times (default once).

    A folder repeated 0 times is left out before anything is read; each copy of a repeated pair
    draws its own crop and augmentation.
    """
    sources = sorted({pair.source for pair in pairs})
    unknown = sorted(set(repeat) - set(sources))
    if unknown:
        raise DatasetError(
            f"--repeat names {', '.join(unknown)}, but the training folders are {', '.join(sources)}"
        )
    if any(count < 0 for count in repeat.values()):
        raise DatasetError("--repeat counts must be 0 or more")
    repeated = [pair for pair in pairs for _ in range(repeat.get(pair.source, 1))]
    if not repeated:
        raise DatasetError("--repeat dropped every training pair")
    return repeated
