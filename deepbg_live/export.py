"""A torch network as a self-describing ONNX model: dynamic height and width, its config in the metadata.

``python -m training.export`` writes the shipped models' ``NAME.onnx`` this way (adding the SHA-256
of their weights), and the runtime exports a user's own weights file in memory the same way when
torch is installed. Torch's exporter needs the ``onnx`` package; the metadata is written without it.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import torch

from deepbg_live.errors import UserError
from deepbg_live.model_files import with_metadata

ONNX_OPSET = 17


def export_onnx(model: torch.nn.Module, path: str | Path | None = None) -> bytes:
    """``model`` as ONNX bytes, also written to ``path`` if given.

    The legacy TorchScript exporter is used (``dynamo=False``) because it needs no ``onnxscript``.
    Tracing bakes in Python branches, so the dummy input's sides are deliberately *not*
    multiples of the U-Net stride: that way the padding in ``pad_to_multiple`` is traced with
    dynamic amounts and any input size works.
    """
    model = model.eval()
    dummy = torch.zeros(1, model.config.in_channels, 120, 200)  # 120 % 16 == 8, 200 % 16 == 8
    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # deprecation notice and tracer warnings about the padding
        try:
            torch.onnx.export(
                model,
                (dummy,),
                buffer,
                input_names=["image"],
                output_names=["logits"],
                dynamic_axes={"image": {2: "height", 3: "width"}, "logits": {2: "height", 3: "width"}},
                opset_version=ONNX_OPSET,
                dynamo=False,
            )
        except torch.onnx.OnnxExporterError as exc:  # raised, among others, when onnx is missing
            raise UserError(f"could not export the model to ONNX: {exc}; `pip install onnx`") from exc
    config = model.config  # recorded so that an .onnx file is self-describing
    data = with_metadata(buffer.getvalue(), {"long_side": str(config.long_side), "config": config.name})
    if path is not None:
        Path(path).write_bytes(data)
    return data
