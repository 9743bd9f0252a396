"""Part 4: temporal stability, with smoothing off and on, on real video and on static-camera clips.

Real video: the DAVIS clips of the shared data (people moving, masks on every frame). Static
camera: clips made here from still portraits with a slow sub-pixel sway, sensor noise and
exposure drift; the mask is warped with exactly the same transform as the image, so the truth
is known to the pixel. A perfect model has zero flicker on the still clips.

Flicker (mean |delta alpha| where the truth did not change) and dtSSD come from
``evaluation.metrics``; IoU, MAD and the best-matching truth delay ("lag") show what smoothing
costs on moving people.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from benchmarks.context import Contender, Context
from evaluation.accuracy import prob_at
from evaluation.layout import Pair, find_pairs, shared_data_folders, split_pairs
from evaluation.metrics import dtssd, flicker, iou, mad

# The static-camera clip: slow enough that every step between frames is well under a pixel.
SWAY_PIXELS = 1.5  # amplitude of the horizontal sway
SWAY_PERIOD = 90  # frames per sway cycle (3 s at 30 fps): at most 0.1 px per frame
SWAY_DEGREES = 0.2  # a little roll as well, so edges move in every direction
NOISE_SIGMA = 3.0  # sensor noise, in 0..255 levels, new every frame
EXPOSURE_DRIFT = 0.06  # +-6% gain, one cycle over two sway periods
STILL_LONG_SIDE = 640  # stills are scaled to a webcam-like size


@dataclass
class TemporalSettings:
    davis_clips: list[str] = field(default_factory=list)  # [] = every clip in <data-root>/video-davis
    davis_frames: int = 0  # 0 = whole clips
    portraits: int = 3  # stills (from the validation split) turned into static-camera clips
    still_frames: int = 90
    strength: float | None = None  # smoothing strength when on; None = the runtime's default
    refine: bool = True  # each model's own edge refiner, if it has one (ours: the runtime's; both variants)

    @classmethod
    def for_mode(cls, quick: bool) -> TemporalSettings:
        if quick:
            # every clip, each short: a chart of two clips said little about a model
            return cls(davis_frames=16, portraits=2, still_frames=30)
        return cls()


@dataclass
class Sequence:
    name: str
    moving: bool  # real motion (a video clip), or a static camera with synthetic sway (a still)
    frames: Callable[[], Iterator[tuple[np.ndarray, np.ndarray]]]  # (BGR frame, uint8 truth)
    length: int

    @property
    def kind(self) -> str:
        """The report's label for the group this clip is averaged in."""
        return "video" if self.moving else "still"


# --- the clips --------------------------------------------------------------------------------


def davis_sequences(root: Path, clips: list[str], max_frames: int) -> list[Sequence]:
    """Real clips with a mask per frame, read lazily so long clips need little memory."""
    folder = root / "video-davis"
    if not folder.is_dir():
        return []
    available = sorted(c.name for c in folder.iterdir() if (c / "images").is_dir())
    chosen = [c for c in clips if c in available] or (available[:1] if clips else available)
    sequences = []
    for clip in chosen:
        pairs = find_pairs(folder / clip / "images", folder / clip / "masks")[: max_frames or None]
        sequences.append(Sequence(f"davis/{clip}", True, lambda pairs=pairs: _read_pairs(pairs), len(pairs)))
    return sequences


def _read_pairs(pairs: list[Pair]) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    for pair in pairs:
        yield cv2.imread(str(pair.image), cv2.IMREAD_COLOR), cv2.imread(str(pair.mask), cv2.IMREAD_GRAYSCALE)


def portrait_pairs(root: Path, count: int) -> list[Pair]:
    """Validation stills to animate, portraits first (the most webcam-like)."""
    if count <= 0 or not root.is_dir():
        return []
    photos = [(label, path) for label, path in shared_data_folders(root) if "/" not in label]
    val = split_pairs(photos)[1]
    val.sort(key=lambda p: not p.source.startswith("portrait"))
    return val[:count]


def sway_matrix(t: int, width: int, height: int) -> np.ndarray:
    """The camera's 2x3 affine transform at frame ``t``: slow sway and roll about the centre."""
    phase = 2 * math.pi * t / SWAY_PERIOD
    angle = SWAY_DEGREES * math.sin(phase / 1.7)
    matrix = cv2.getRotationMatrix2D((width / 2, height / 2), angle, 1.0)
    matrix[0, 2] += SWAY_PIXELS * math.sin(phase)
    matrix[1, 2] += 0.5 * SWAY_PIXELS * math.sin(phase / 1.3 + 1.0)
    return matrix


def _warp(image: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    size = (image.shape[1], image.shape[0])
    return cv2.warpAffine(image, matrix, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


def camera_frame(image: np.ndarray, t: int, rng: np.random.Generator) -> np.ndarray:
    """Frame ``t`` of a static camera filming ``image``: sway, exposure drift and sensor noise."""
    moved = _warp(image.astype(np.float32), sway_matrix(t, image.shape[1], image.shape[0]))
    moved *= 1.0 + EXPOSURE_DRIFT * math.sin(math.pi * t / SWAY_PERIOD)
    moved += rng.normal(0.0, NOISE_SIGMA, moved.shape).astype(np.float32)
    return np.clip(moved, 0, 255).astype(np.uint8)


def still_frame(
    image: np.ndarray, mask: np.ndarray, t: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Frame ``t`` of a static-camera clip of ``image`` and its truth, moved exactly alike.

    The truth is warped by the same matrix (no noise or gain) and kept as 8-bit, like a mask file.
    """
    return camera_frame(image, t, rng), _warp(mask, sway_matrix(t, mask.shape[1], mask.shape[0]))


def still_sequence(pair: Pair, frames: int, seed: int = 0) -> Sequence:
    image = cv2.imread(str(pair.image), cv2.IMREAD_COLOR)
    mask = cv2.imread(str(pair.mask), cv2.IMREAD_GRAYSCALE)
    scale = min(1.0, STILL_LONG_SIDE / max(image.shape[:2]))
    size = (round(image.shape[1] * scale), round(image.shape[0] * scale))
    image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    mask = cv2.resize(mask, size, interpolation=cv2.INTER_AREA)

    def generate() -> Iterator[tuple[np.ndarray, np.ndarray]]:
        rng = np.random.default_rng(seed)  # same noise for every model and variant
        for t in range(frames):
            yield still_frame(image, mask, t, rng)

    return Sequence(f"still/{pair.image.stem}", False, generate, frames)


# --- scoring ----------------------------------------------------------------------------------


def lag_frames(alphas: list[np.ndarray], truths: list[np.ndarray], max_lag: int = 3) -> int:
    """The truth delay (in frames) that best matches the alphas: 0 = no lag."""
    if len(alphas) <= max_lag + 1:
        return 0
    errors = [
        np.mean([mad(alphas[t], truths[t - lag]) for t in range(max_lag, len(alphas))])
        for lag in range(max_lag + 1)
    ]
    return int(np.argmin(errors))


def stability(
    alphas: list[np.ndarray], truths: list[np.ndarray], moving: bool = True
) -> dict[str, float | None]:
    """Every temporal figure of one variant; inputs are uint8 (0..255) to keep memory low.

    Flicker, dtSSD and MAD are linear in the scale (the "truth did not change" test compares
    equal values either way), so computing on 0..255 and dividing by 255 is exact. Lag is only
    measurable when the person really moves (``moving``); a sub-pixel sway cannot show it.
    """
    return {
        "flicker": flicker(alphas, truths) / 255.0,
        "dtssd": dtssd(alphas, truths) / 255.0,
        "iou": float(np.mean([iou(a > 127, t > 127) for a, t in zip(alphas, truths, strict=True)])),
        "mad": float(np.mean([mad(a, t) for a, t in zip(alphas, truths, strict=True)])) / 255.0,
        "lag_frames": lag_frames(alphas, truths) if moving else None,
    }


def bilinear_alpha(prob: np.ndarray, frame: np.ndarray) -> np.ndarray:
    """Model-resolution probability -> uint8 alpha at frame size, upsampled bilinearly."""
    return np.round(prob_at(prob, frame) * 255).astype(np.uint8)


def score_sequence(contender: Contender, sequence: Sequence, settings: TemporalSettings) -> dict:
    """Run the model once per frame, then score the same probabilities with smoothing off and on."""
    from deepbg_live.smoothing import TemporalSmoother

    strength = settings.strength if settings.strength is not None else TemporalSmoother().strength
    # (probability smoother, refined-alpha smoother), as the runtime's Pipeline pairs them
    variants = {
        name: (TemporalSmoother(s), TemporalSmoother(s)) for name, s in (("off", 0.0), ("on", strength))
    }
    refiner = contender.refiner if settings.refine else None
    alphas: dict[str, list[np.ndarray]] = {name: [] for name in variants}
    truths = []
    probability = contender.clip_probability()
    for frame, truth in sequence.frames():
        prob = probability(frame)
        for name, (smoother, alpha_smoother) in variants.items():
            smoothed = smoother(prob)
            alpha = refiner(smoothed, frame, alpha_smoother) if refiner else bilinear_alpha(smoothed, frame)
            alphas[name].append(alpha)
        truths.append(truth)
    scores = {name: stability(alphas[name], truths, sequence.moving) for name in variants}
    return scores | {"strength": strength}


def run(
    ctx: Context, settings: TemporalSettings | None = None, contenders: list[Contender] | None = None
) -> dict:
    settings = settings or TemporalSettings.for_mode(ctx.quick)
    sequences = davis_sequences(ctx.data_root, settings.davis_clips, settings.davis_frames)
    sequences += [
        still_sequence(p, settings.still_frames) for p in portrait_pairs(ctx.data_root, settings.portraits)
    ]
    if not sequences:
        ctx.note(f"Temporal: no video-davis clips or stills under {ctx.data_root}; nothing measured.")
    contenders = contenders or [ctx.ours()]
    rows = []
    jobs = [(contender, seq) for contender in contenders for seq in sequences]
    for contender, sequence in tqdm(jobs, desc="temporal", disable=not ctx.progress):
        scores = score_sequence(contender, sequence, settings)
        rows.append(
            {
                "model": contender.name,
                "sequence": sequence.name,
                "kind": sequence.kind,
                "frames": sequence.length,
                **scores,
            }
        )
    return {"settings": asdict(settings), "rows": rows, "summary": summarise_rows(rows)}


def summarise_rows(rows: list[dict]) -> dict:
    """Mean of each figure per model, clip kind and variant."""
    summary: dict = {}
    for model in sorted({r["model"] for r in rows}):
        for kind in sorted({r["kind"] for r in rows}):
            group = [r for r in rows if r["model"] == model and r["kind"] == kind]
            if not group:
                continue
            summary.setdefault(model, {})[kind] = {
                variant: {key: mean_or_none([r[variant][key] for r in group]) for key in group[0][variant]}
                for variant in ("off", "on")
            }
    return summary


def mean_or_none(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return float(np.mean(present)) if present else None
