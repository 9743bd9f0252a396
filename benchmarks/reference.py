"""Part 6: any ONNX person-segmentation model, run through the same harness as ours.

Models differ in layout (NCHW or NHWC), input size (fixed or dynamic), normalisation and output
(one probability or logit channel, or two channels for a softmax). Whatever the file states is
used; the rest comes from flags, with 0..1 RGB as the default (MediaPipe's selfie model).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from benchmarks import accuracy, temporal
from benchmarks.context import Context
from benchmarks.timing import summarise, time_calls
from deepbg_live.errors import UserError
from deepbg_live.preprocess import NORM_MEAN, NORM_STD

NORMALISATIONS = {
    # name: (mean, std) applied to RGB in 0..1
    "unit": ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0)),  # 0..1
    "signed": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),  # -1..1
    "imagenet": (NORM_MEAN, NORM_STD),
}
DEFAULT_LONG_SIDE = 256  # for models with a dynamic input size and no --input-size
SIZE_MULTIPLE = 32  # dynamic sizes are rounded to this; most encoders downsample 32x


@dataclass
class ReferenceSettings:
    path: str
    input_size: tuple[int, int] | None = None  # (w, h); needed only when the model's is dynamic
    norm: str = "unit"
    layout: str = "auto"  # "auto", "nchw" or "nhwc"
    bgr: bool = False  # feed BGR instead of RGB
    person_channel: int = 1  # which softmax channel is "person" for two-channel outputs
    name: str = ""


def parse_size(text: str | None) -> tuple[int, int] | None:
    """'256x144' -> (256, 144); a single number is a square."""
    if not text:
        return None
    try:
        parts = [int(p) for p in text.lower().split("x")]
    except ValueError:
        raise UserError(f"cannot read size '{text}'; write WIDTHxHEIGHT, e.g. 256x144") from None
    if len(parts) == 1:
        parts *= 2
    if len(parts) != 2 or min(parts) < 1:
        raise UserError(f"cannot read size '{text}'; write WIDTHxHEIGHT, e.g. 256x144")
    return parts[0], parts[1]


def detect_layout(shape: list) -> str:
    """NCHW when the second axis has 3 channels, NHWC when the last one does."""
    if len(shape) != 4:
        raise UserError(f"the reference model's input has shape {shape}; expected a 4-D image batch")
    if shape[1] == 3:
        return "nchw"
    if shape[3] == 3:
        return "nhwc"
    raise UserError(f"cannot tell the layout of input shape {shape}; pass --layout nchw or nhwc")


def fixed_size(shape: list, layout: str) -> tuple[int, int] | None:
    """The (w, h) a model insists on, or None when height or width is dynamic."""
    height, width = (shape[2], shape[3]) if layout == "nchw" else (shape[1], shape[2])
    if isinstance(height, int) and isinstance(width, int) and height > 0 and width > 0:
        return width, height
    return None


def dynamic_size(frame_w: int, frame_h: int, long_side: int = DEFAULT_LONG_SIDE) -> tuple[int, int]:
    """The frame's aspect at ``long_side``, rounded to ``SIZE_MULTIPLE``."""
    scale = long_side / max(frame_w, frame_h)

    def side(n: int) -> int:
        return max(SIZE_MULTIPLE, round(n * scale / SIZE_MULTIPLE) * SIZE_MULTIPLE)

    return side(frame_w), side(frame_h)


def to_probability(output: np.ndarray, person_channel: int = 1) -> np.ndarray:
    """Any common segmentation output for one image -> person probability (h, w) in 0..1."""
    out = np.asarray(output, dtype=np.float32)
    while out.ndim > 3 and out.shape[0] == 1:
        out = out[0]  # drop the batch axis
    if out.ndim == 3:
        channel_axis = 0 if out.shape[0] <= 2 < out.shape[-1] else -1
        out = np.moveaxis(out, channel_axis, 0)
        if out.shape[0] == 2:
            # Two classes: softmax; subtracting the max keeps exp() finite.
            exp = np.exp(out - out.max(axis=0, keepdims=True))
            return (exp[person_channel] / exp.sum(axis=0)).astype(np.float32)
        out = out[0]
    if out.ndim != 2:
        raise UserError(f"cannot read a mask from an output of shape {output.shape}")
    if out.min() < 0.0 or out.max() > 1.0:  # logits, not probabilities
        out = 1.0 / (1.0 + np.exp(-np.clip(out, -30, 30)))
    return out.astype(np.float32)


class OnnxSegmenter:
    """BGR frame -> person probability at the model's resolution, for any ONNX segmentation model."""

    def __init__(self, settings: ReferenceSettings, threads: int = 2):
        import onnxruntime as ort

        path = Path(settings.path)
        if not path.is_file():
            raise UserError(f"reference model '{path}' not found; pass the path of an .onnx file")
        if settings.norm not in NORMALISATIONS:
            raise UserError(
                f"unknown normalisation '{settings.norm}'; choose from {', '.join(NORMALISATIONS)}"
            )
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        try:
            self.session = ort.InferenceSession(
                str(path), sess_options=options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # ORT raises several unrelated types for a bad file
            raise UserError(
                f"could not load reference model '{path}': {str(exc).splitlines()[0][:200]}"
            ) from exc
        node = self.session.get_inputs()[0]
        self.input_name = node.name
        self.input_dtype = np.float16 if "float16" in node.type else np.float32
        self.layout = settings.layout if settings.layout != "auto" else detect_layout(node.shape)
        self.fixed_size = fixed_size(node.shape, self.layout)
        self.settings = settings
        mean, std = NORMALISATIONS[settings.norm]
        self.scale = (1.0 / (255.0 * np.asarray(std))).astype(np.float32)
        self.offset = (-np.asarray(mean) / np.asarray(std)).astype(np.float32)
        self.name = settings.name or path.stem

    def input_size(self, frame_w: int, frame_h: int) -> tuple[int, int]:
        return self.fixed_size or self.settings.input_size or dynamic_size(frame_w, frame_h)

    def describe(self) -> dict:
        return {
            "name": self.name,
            "path": self.settings.path,
            "layout": self.layout,
            "input": "dynamic" if self.fixed_size is None else "{}x{}".format(*self.fixed_size),
            "norm": self.settings.norm,
            "channels": "BGR" if self.settings.bgr else "RGB",
        }

    def preprocess(self, frame_bgr: np.ndarray) -> np.ndarray:
        size = self.input_size(frame_bgr.shape[1], frame_bgr.shape[0])
        small = cv2.resize(frame_bgr, size, interpolation=cv2.INTER_AREA)
        if self.settings.bgr:  # scale and offset are in RGB order
            x = small.astype(np.float32) * self.scale[::-1] + self.offset[::-1]
        else:
            x = small[:, :, ::-1].astype(np.float32) * self.scale + self.offset
        if self.layout == "nchw":
            x = x.transpose(2, 0, 1)
        return np.ascontiguousarray(x[None], dtype=self.input_dtype)

    def __call__(self, frame_bgr: np.ndarray) -> np.ndarray:
        output = self.session.run(None, {self.input_name: self.preprocess(frame_bgr)})[0]
        return to_probability(output, self.settings.person_channel)


LATENCY_SIZES = {"640x480": (640, 480), "1280x720": (1280, 720)}


def sample_frame(width: int, height: int) -> np.ndarray:
    """A textured BGR frame: speed hardly depends on content, but a flat frame could flatter."""
    rng = np.random.default_rng(0)
    ramp = np.linspace(0, 255, width, dtype=np.float32)[None, :, None]
    frame = ramp + rng.normal(0, 20, (height, width, 3))
    return np.clip(frame, 0, 255).astype(np.uint8)


def frame_latency(predictors: dict, sizes: list[str], repeats: int, progress: bool = True) -> dict:
    """ms per frame (preprocess + inference) of each predictor at each size, BGR frame in."""
    results: dict = {}
    jobs = [(name, size) for name in predictors for size in sizes]
    for name, size in tqdm(jobs, desc="reference latency", disable=not progress, leave=False):
        frame = sample_frame(*LATENCY_SIZES[size])
        samples = time_calls(lambda p=predictors[name], f=frame: p(f), repeats, warmup=3, budget_s=20.0)
        results.setdefault(name, {})[size] = summarise(samples)
    return results


def run(ctx: Context, settings: ReferenceSettings, quality: bool = True) -> dict:
    """The reference model beside ours: latency, and (unless the suite scores it elsewhere)
    accuracy and temporal stability."""
    reference = OnnxSegmenter(settings, threads=ctx.threads)
    predictors = {"ours": ctx.segmenter(), reference.name: reference}
    sizes = list(LATENCY_SIZES)[:1] if ctx.quick else list(LATENCY_SIZES)
    result = {
        "settings": asdict(settings),
        "model": reference.describe(),
        "latency": frame_latency(predictors, sizes, repeats=20 if ctx.quick else 100, progress=ctx.progress),
    }
    if quality:
        result["accuracy"] = accuracy.run(ctx, predictors=predictors)
        result["temporal"] = temporal.run(ctx, predictors=predictors)
    return result
