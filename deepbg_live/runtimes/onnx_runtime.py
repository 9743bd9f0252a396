"""ONNX Runtime: the CPU default, for the fp32 and int8 exports beside the weights and any .onnx file.

The U-Net is small enough that per-call overhead matters, and ONNX Runtime is 1.5-4x faster than
eager torch on a CPU here (shared/notes/measured-facts.md). Torch is imported only to export a
network handed to ``from_network``. This is the one module that imports ONNX Runtime.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

# ONNX Runtime 1.32 appends a telemetry event (device id, OS, CPU model) to a database in the
# user's home on every import; only this variable, set before the import, stops it.
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
import onnxruntime as ort  # noqa: E402

from deepbg_live.errors import UserError, first_line
from deepbg_live.model_files import onnx_metadata
from deepbg_live.runtimes.base import (
    Backend,
    Device,
    Precision,
    RuntimeOptions,
    default_threads,
    sigmoid,
)

FALLBACK_LONG_SIDE = 192  # for .onnx files that carry no "long_side" metadata


def create_session(
    model: bytes | str | Path,
    threads: int | None = None,
    *,
    cuda: bool = False,
    spinning: bool = True,
    quiet: bool = False,
) -> ort.InferenceSession:
    """An inference session for an ONNX model: the one place session options are set.

    ``spinning`` lets idle worker threads busy-wait for the next run (ONNX Runtime's default):
    lower latency per call, at the price of CPU time the other stages could use. ``quiet`` logs
    errors only, for third-party files whose harmless warnings would bury the output.
    """
    options = ort.SessionOptions()
    if quiet:
        options.log_severity_level = 3  # 0 verbose ... 2 warning (the default), 3 error
    options.intra_op_num_threads = threads or default_threads()
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    providers = ["CPUExecutionProvider"]
    if cuda and "CUDAExecutionProvider" in ort.get_available_providers():
        providers.insert(0, "CUDAExecutionProvider")
    source = model if isinstance(model, bytes) else str(model)
    try:
        return ort.InferenceSession(source, sess_options=options, providers=providers)
    except Exception as exc:  # ORT raises several unrelated types for a bad file
        name = "" if isinstance(model, bytes) else f" '{model}'"
        raise UserError(
            f"could not load the ONNX model{name}: {first_line(exc)}; check or re-export it"
        ) from exc


class OnnxRuntime:
    """An ONNX model run by ONNX Runtime (on the CPU, or its CUDA provider when asked and installed)."""

    name = Backend.ONNXRUNTIME

    def __init__(self, model: bytes, options: RuntimeOptions, long_side: int | None = None):
        """``long_side`` overrides the one the model's metadata records."""
        metadata = onnx_metadata(model)
        self.precision = _precision(metadata)
        self.long_side = long_side or _long_side(metadata)
        self.session = create_session(
            model, options.threads, cuda=options.device is Device.CUDA, spinning=options.spinning
        )
        self._input, self.input_channels = _checked_input(self.session)

    @classmethod
    def from_network(cls, net, options: RuntimeOptions) -> OnnxRuntime:
        """Run a torch network (a user's weights without an export beside them), exported now."""
        from deepbg_live.export import export_onnx

        return cls(export_onnx(net), options, long_side=net.config.long_side)

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        return sigmoid(self.session.run(None, {self._input: batch})[0])


_FLOATS = ("tensor(float)", "tensor(float16)")
_INPUT_CHANNELS = (3, 4)  # RGB, or RGB and the previous mask


def _checked_input(session: ort.InferenceSession) -> tuple[str, int]:
    """The name and channel count of the model's one input, once its signature is one ``Segmenter`` feeds.

    One float32 input (N, 3, H, W), or (N, 4, H, W) with the previous mask, and one float output
    (N, 1, H, W), H and W free: anything else would fail at the first frame, after a camera turned
    on or an output file was created. A file that leaves the channels unnamed is taken as RGB.
    """
    inputs, outputs = session.get_inputs(), session.get_outputs()
    if len(inputs) != 1 or len(outputs) != 1:
        _refuse(f"it has {len(inputs)} inputs and {len(outputs)} outputs, not one of each")
    (image,), (logits,) = inputs, outputs
    if image.type != "tensor(float)":
        _refuse(f"its input is {image.type}, not tensor(float)")
    channels = image.shape[1] if len(image.shape) == 4 and isinstance(image.shape[1], int) else 3
    if channels not in _INPUT_CHANNELS or not _is_map(image.shape, channels):
        _refuse(f"its input has shape {image.shape}, not (N, 3, H, W) with H and W free")
    if logits.type not in _FLOATS or not _is_map(logits.shape, 1):
        _refuse(f"its output is {logits.type} of shape {logits.shape}, not float (N, 1, H, W)")
    return image.name, channels


def _is_map(shape: list[int | str | None], channels: int) -> bool:
    """Whether an ONNX shape can be (N, channels, H, W) for any H and W; an unknown shape ([]) can."""
    if not shape:
        return True
    if len(shape) != 4:
        return False
    _, depth, height, width = shape
    return (not isinstance(depth, int) or depth == channels) and not any(
        isinstance(side, int) for side in (height, width)
    )


def _refuse(reason: str) -> None:
    raise UserError(
        f"the ONNX model does not fit: {reason}; export it with one float input (N, 3, H, W) and one "
        "output (N, 1, H, W), H and W dynamic"
    )


def _precision(metadata: dict[str, str]) -> Precision:
    """The arithmetic a model file records (``training.quantize`` writes "int8"); fp32 if none."""
    value = metadata.get("precision", Precision.FP32.value)
    if value not in (Precision.FP32, Precision.FP16, Precision.INT8):
        raise UserError(f"the ONNX model records an unknown precision '{value}'; re-export it")
    return Precision(value)


def _long_side(metadata: dict[str, str]) -> int:
    """The inference long side an exported model records, or the fallback for files without one."""
    try:
        return int(metadata.get("long_side", FALLBACK_LONG_SIDE))
    except ValueError:
        return FALLBACK_LONG_SIDE
