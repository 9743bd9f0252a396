"""Part 6: ours beside the models users run today, through the same accuracy, temporal and speed harness.

Any ONNX person-segmentation model can be compared. Models differ in layout (NCHW or NHWC), input
size (fixed or dynamic), channel order, normalisation and output (one channel or a two-class
pair, probabilities or logits). Whatever the file states is used; the rest comes from its
``ReferenceSettings``. The shared references (MediaPipe selfie, MediaPipe Meet, SINet) are
``SHARED_REFERENCES``, found in a folder (``../shared/reference-models`` in a checkout); users
have no such folder, so missing files are only a note in the report.

Each reference gets the frame squashed to its input size and its probability upsampled
bilinearly to the frame, as its usual wrappers do; ours goes through the product's video path
(``Context.ours``). They are for comparison only: the product never loads them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from benchmarks import accuracy, temporal
from benchmarks.context import Contender, Context
from benchmarks.timing import summarise, time_calls
from deepbg_live import geometry
from deepbg_live.errors import UserError
from deepbg_live.preprocess import NORM_MEAN, NORM_STD
from deepbg_live.runtimes import sigmoid
from deepbg_live.runtimes.base import Choice
from deepbg_live.runtimes.onnx_runtime import create_session

DEFAULT_REFERENCES = Path("../shared/reference-models")  # relative to a checkout, like the data root
Predictor = Callable[[np.ndarray], np.ndarray]  # BGR frame -> person probability

# SINet's statistics as its authors' OpenCV code applies them: 0..255 values in BGR order, and
# (x - mean) / std divided by 255 once more (their ToTensor's /255), so its inputs are tiny.
SINET_MEAN_BGR = (102.890434, 111.25247, 126.91212)
SINET_STD_BGR = (62.93292, 62.82138, 66.355705)

NORMALISATIONS = {
    # name: (mean, std) applied to RGB in 0..1, always in RGB order; BGR models get them reversed
    "unit": ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0)),  # 0..1
    "signed": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),  # -1..1
    "imagenet": (NORM_MEAN, NORM_STD),
    # (x - M) / (255 S) on 0..255 is (x / 255 - M / 255) / S on 0..1
    "sinet": (tuple(m / 255.0 for m in reversed(SINET_MEAN_BGR)), tuple(reversed(SINET_STD_BGR))),
}
DEFAULT_LONG_SIDE = 256  # for models with a dynamic input size and no --input-size
SIZE_MULTIPLE = 32  # dynamic sizes are rounded to this; most encoders downsample 32x


class Layout(Choice):
    AUTO = "auto"  # read from the input's shape: the axis with 3 channels
    NCHW = "nchw"
    NHWC = "nhwc"


class Output(Choice):
    """What the model's output holds; one channel or two (background, person) in either case."""

    AUTO = "auto"  # probabilities if every value is in 0..1 (and a pair sums to 1), else logits
    PROBABILITY = "probability"  # sigmoid or softmax already applied
    LOGITS = "logits"  # sigmoid (one channel) or softmax (two) still to apply


@dataclass(frozen=True)
class ReferenceSettings:
    path: str
    input_size: tuple[int, int] | None = None  # (w, h); needed only when the model's is dynamic
    norm: str = "unit"
    layout: Layout = Layout.AUTO
    bgr: bool = False  # feed BGR instead of RGB
    person_channel: int = 1  # which channel of a two-class output is "person"
    output: Output = Output.AUTO
    name: str = ""  # the report's name for it [default: the file's stem]

    @property
    def label(self) -> str:
        return self.name or Path(self.path).stem


# The models users of background tools run today, as the shared folder's README describes them.
SHARED_REFERENCES = (
    ReferenceSettings(
        "mediapipe_selfie.onnx", layout=Layout.NHWC, output=Output.PROBABILITY, name="mediapipe-selfie"
    ),
    ReferenceSettings(
        "mediapipe_meet_landscape.onnx", layout=Layout.NHWC, output=Output.LOGITS, name="mediapipe-meet"
    ),
    ReferenceSettings(
        "sinet.onnx", norm="sinet", layout=Layout.NCHW, bgr=True, output=Output.PROBABILITY, name="sinet"
    ),
)


def shared_references(folder: Path) -> tuple[list[ReferenceSettings], str | None]:
    """The shared references present in ``folder``, and a note naming any that are not."""
    folder = Path(folder)
    found = [replace(r, path=str(folder / r.path)) for r in SHARED_REFERENCES if (folder / r.path).is_file()]
    missing = [r.path for r in SHARED_REFERENCES if not (folder / r.path).is_file()]
    if not missing:
        return found, None
    if not folder.is_dir():
        return found, f"No reference models at {folder}; pass --references DIR to compare with them."
    return found, f"Reference models not found in {folder}, skipped: {', '.join(missing)}."


def parse_size(text: str | None) -> tuple[int, int] | None:
    """'256x144' -> (256, 144); a single number is a square (as model inputs often are)."""
    if not text:
        return None
    try:
        return geometry.parse_size(text if "x" in text.lower() else f"{text}x{text}")
    except ValueError:
        raise UserError(f"cannot read size '{text}'; write WIDTHxHEIGHT, e.g. 256x144") from None


def detect_layout(shape: list) -> Layout:
    """NCHW when the second axis has 3 channels, NHWC when the last one does."""
    if len(shape) != 4:
        raise UserError(f"the reference model's input has shape {shape}; expected a 4-D image batch")
    if shape[1] == 3:
        return Layout.NCHW
    if shape[3] == 3:
        return Layout.NHWC
    raise UserError(f"cannot tell the layout of input shape {shape}; pass --layout nchw or nhwc")


def fixed_size(shape: list, layout: Layout) -> tuple[int, int] | None:
    """The (w, h) a model insists on, or None when height or width is dynamic."""
    height, width = (shape[2], shape[3]) if layout == Layout.NCHW else (shape[1], shape[2])
    if isinstance(height, int) and isinstance(width, int) and height > 0 and width > 0:
        return width, height
    return None


def dynamic_size(frame_w: int, frame_h: int, long_side: int = DEFAULT_LONG_SIDE) -> tuple[int, int]:
    """The frame's aspect at ``long_side``, rounded to ``SIZE_MULTIPLE``."""
    scale = long_side / max(frame_w, frame_h)

    def side(n: int) -> int:
        return max(SIZE_MULTIPLE, round(n * scale / SIZE_MULTIPLE) * SIZE_MULTIPLE)

    return side(frame_w), side(frame_h)


def to_probability(output: np.ndarray, person_channel: int = 1, kind: Output = Output.AUTO) -> np.ndarray:
    """Any common segmentation output for one image -> person probability (h, w) in 0..1."""
    out = np.asarray(output, dtype=np.float32)
    while out.ndim > 3 and out.shape[0] == 1:
        out = out[0]  # drop the batch axis
    if out.ndim == 3:
        channel_axis = 0 if out.shape[0] <= 2 < out.shape[-1] else -1
        out = np.moveaxis(out, channel_axis, 0)
    elif out.ndim == 2:
        out = out[None]
    if out.ndim != 3 or out.shape[0] > 2:
        raise UserError(f"cannot read a mask from an output of shape {output.shape}")
    if kind == Output.AUTO:
        kind = Output.PROBABILITY if _looks_like_probability(out) else Output.LOGITS
    if out.shape[0] == 2:
        if kind == Output.PROBABILITY:
            return out[person_channel]
        # Two classes: softmax; subtracting the max keeps exp() finite.
        exp = np.exp(out - out.max(axis=0, keepdims=True))
        return (exp[person_channel] / exp.sum(axis=0)).astype(np.float32)
    return out[0] if kind == Output.PROBABILITY else sigmoid(out[0])


def _looks_like_probability(channels: np.ndarray) -> bool:
    in_range = channels.min() >= 0.0 and channels.max() <= 1.0
    return bool(in_range and (len(channels) == 1 or np.allclose(channels.sum(axis=0), 1.0, atol=1e-3)))


class OnnxSegmenter:
    """BGR frame -> person probability at the model's resolution, for any ONNX segmentation model."""

    def __init__(self, settings: ReferenceSettings, threads: int = 2):
        path = Path(settings.path)
        if not path.is_file():
            raise UserError(f"reference model '{path}' not found; pass the path of an .onnx file")
        if settings.norm not in NORMALISATIONS:
            raise UserError(
                f"unknown normalisation '{settings.norm}'; choose from {', '.join(NORMALISATIONS)}"
            )
        # The product's session settings; quiet, because SINet warns harmlessly about its initializers.
        self.session = create_session(path, threads, quiet=True)
        node = self.session.get_inputs()[0]
        self.input_name = node.name
        self.input_dtype = np.float16 if "float16" in node.type else np.float32
        self.layout = detect_layout(node.shape) if settings.layout == Layout.AUTO else Layout(settings.layout)
        self.fixed_size = fixed_size(node.shape, self.layout)
        self.settings = settings
        mean, std = (np.asarray(v, dtype=np.float64) for v in NORMALISATIONS[settings.norm])
        scale, offset = 1.0 / (255.0 * std), -mean / std  # x * scale + offset on 0..255, in RGB order
        if settings.bgr:
            scale, offset = scale[::-1], offset[::-1]
        self.scale, self.offset = scale.astype(np.float32), offset.astype(np.float32)
        self.name = settings.label

    def input_size(self, frame_w: int, frame_h: int) -> tuple[int, int]:
        return self.fixed_size or self.settings.input_size or dynamic_size(frame_w, frame_h)

    def describe(self) -> dict:
        return {
            "name": self.name,
            "path": self.settings.path,
            "layout": str(self.layout),
            "input": "dynamic" if self.fixed_size is None else "{}x{}".format(*self.fixed_size),
            "norm": self.settings.norm,
            "channels": "BGR" if self.settings.bgr else "RGB",
            "output": str(self.settings.output),
        }

    def preprocess(self, frame_bgr: np.ndarray) -> np.ndarray:
        """The frame squashed to the model's input (aspect not kept, as its wrappers do), normalised."""
        size = self.input_size(frame_bgr.shape[1], frame_bgr.shape[0])
        small = cv2.resize(frame_bgr, size, interpolation=cv2.INTER_AREA)
        channels = small if self.settings.bgr else small[:, :, ::-1]
        x = channels.astype(np.float32) * self.scale + self.offset
        if self.layout == Layout.NCHW:
            x = x.transpose(2, 0, 1)
        return np.ascontiguousarray(x[None], dtype=self.input_dtype)

    def __call__(self, frame_bgr: np.ndarray) -> np.ndarray:
        output = self.session.run(None, {self.input_name: self.preprocess(frame_bgr)})[0]
        return to_probability(output, self.settings.person_channel, self.settings.output)


def contenders(ctx: Context, models: list[OnnxSegmenter]) -> list[Contender]:
    """Ours, then each reference as its wrappers run it (bilinear upsampling, no refiner)."""
    return [ctx.ours(), *(Contender(model.name, model) for model in models)]


def open_references(ctx: Context, references: list[ReferenceSettings]) -> list[OnnxSegmenter]:
    """Each reference model, with the run's thread count."""
    return [OnnxSegmenter(settings, ctx.threads) for settings in references]


# --- speed ------------------------------------------------------------------------------------

LATENCY_SIZES = {"640x480": (640, 480), "1280x720": (1280, 720)}
LATENCY_THREADS = (1, 2)
COMPARISON_FRAME = "640x480"  # the frame size the comparison quotes


def sample_frame(width: int, height: int) -> np.ndarray:
    """A textured BGR frame: speed hardly depends on content, but a flat frame could flatter."""
    rng = np.random.default_rng(0)
    ramp = np.linspace(0, 255, width, dtype=np.float32)[None, :, None]
    frame = ramp + rng.normal(0, 20, (height, width, 3))
    return np.clip(frame, 0, 255).astype(np.uint8)


def frame_latency(
    models: dict[str, Callable[[int], Predictor]],
    sizes: list[str],
    threads: tuple[int, ...] = LATENCY_THREADS,
    repeats: int = 100,
    progress: bool = True,
) -> dict[str, list[dict]]:
    """ms per frame (preprocess + inference, BGR frame in) of each model at each size and thread count.

    ``models`` maps a name to a function that opens the model with a given number of threads.
    """
    results: dict[str, list[dict]] = {}
    jobs = [(name, count) for name in models for count in threads]
    for name, count in tqdm(jobs, desc="reference latency", disable=not progress, leave=False):
        predict = models[name](count)
        for size in sizes:
            frame = sample_frame(*LATENCY_SIZES[size])
            samples = time_calls(lambda p=predict, f=frame: p(f), repeats, warmup=3, budget_s=20.0)
            results.setdefault(name, []).append({"frame": size, "threads": count, **summarise(samples)})
    return results


def latency_models(
    ctx: Context, references: list[ReferenceSettings]
) -> dict[str, Callable[[int], Predictor]]:
    """Ours (the product's ``Segmenter`` and runtime) and each reference, openable at any thread count.

    Ours runs as a stream, as on video: after the first frame (whose second look a photo gets too),
    one look a frame, with the previous mask fed back and the check for a cut.
    """
    models: dict[str, Callable[[int], Predictor]] = {
        "ours": lambda count: ctx.segmenter(threads=count).stream()
    }
    for settings in references:
        models[settings.label] = lambda count, s=settings: OnnxSegmenter(s, count)
    return models


# --- the comparison ---------------------------------------------------------------------------


def comparison(accuracy_result: dict, temporal_result: dict, latency: dict[str, list[dict]]) -> list[dict]:
    """One row per model: per-folder IoU, boundary F, flicker, lag and ms per frame, side by side."""
    summary = temporal_result.get("summary", {})
    rows = []
    for name, scores in accuracy_result["models"].items():
        clips = summary.get(name, {})
        ms = {str(r["threads"]): r["p50_ms"] for r in latency.get(name, []) if r["frame"] == COMPARISON_FRAME}
        rows.append(
            {
                "model": name,
                "iou": {folder: m["iou"] for folder, m in scores["per_dataset"].items()},
                "boundary_f": scores["overall"]["boundary_f"],
                "flicker_still": _variants(clips.get("still"), "flicker"),
                "flicker_video": _variants(clips.get("video"), "flicker"),
                "lag_frames": _variants(clips.get("video"), "lag_frames"),
                "ms": ms,
            }
        )
    return rows


def _variants(clips: dict | None, key: str) -> dict[str, float | None]:
    """A figure with smoothing off and on, None where there were no such clips."""
    return {variant: (clips or {}).get(variant, {}).get(key) for variant in ("off", "on")}


def run(
    ctx: Context,
    references: list[ReferenceSettings],
    accuracy_result: dict | None = None,
    temporal_result: dict | None = None,
) -> dict:
    """Ours beside each reference: latency here; accuracy and temporal stability scored here
    unless the suite's own parts already scored every model (then pass their results)."""
    models = open_references(ctx, references)
    result: dict = {"models": {model.name: model.describe() for model in models}}
    if accuracy_result is None or temporal_result is None:
        everyone = contenders(ctx, models)
        accuracy_result = result["accuracy"] = accuracy.run(ctx, contenders=everyone)
        temporal_result = result["temporal"] = temporal.run(ctx, contenders=everyone)
    sizes = [COMPARISON_FRAME] if ctx.quick else list(LATENCY_SIZES)
    repeats = 20 if ctx.quick else 100
    result["latency"] = frame_latency(
        latency_models(ctx, references), sizes, repeats=repeats, progress=ctx.progress
    )
    result["frame"] = COMPARISON_FRAME
    result["comparison"] = comparison(accuracy_result, temporal_result, result["latency"])
    return result
