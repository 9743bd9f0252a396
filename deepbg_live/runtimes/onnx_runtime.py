"""ONNX Runtime: the CPU default, for fp32 models exported at load time and for int8 exports.

The U-Net is small enough that per-call overhead matters, and ONNX Runtime is 1.5-4x faster than
eager torch on a CPU here (shared/notes/measured-facts.md). Torch is imported only to export a
network handed to ``from_network``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort

from deepbg_live.errors import UserError
from deepbg_live.model_files import onnx_metadata
from deepbg_live.runtimes.base import (
    Backend,
    Device,
    Precision,
    RuntimeOptions,
    default_threads,
    first_line,
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
        self._input = self.session.get_inputs()[0].name

    @classmethod
    def from_network(cls, net, options: RuntimeOptions) -> OnnxRuntime:
        """Run a torch network, exported now so that no .onnx copy can drift from its weights."""
        from deepbg_live.export import export_onnx

        return cls(export_onnx(net), options, long_side=net.config.long_side)

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        return sigmoid(self.session.run(None, {self._input: batch})[0])


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
