"""A torch network as a self-describing ONNX model: dynamic height and width, its config in the metadata.

The runtime exports the shipped weights this way at start (so no .onnx copy can drift from them),
and ``python -m training.export`` writes the same bytes to disk.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import torch

ONNX_OPSET = 17


def export_onnx(model: torch.nn.Module, path: str | Path | None = None) -> bytes:
    """``model`` as ONNX bytes, also written to ``path`` if given.

    The legacy TorchScript exporter is used (``dynamo=False``) because it needs no extra package.
    Tracing bakes in Python branches, so the dummy input's sides are deliberately *not*
    multiples of the U-Net stride: that way the padding in ``pad_to_multiple`` is traced with
    dynamic amounts and any input size works.
    """
    model = model.eval()
    dummy = torch.zeros(1, 3, 120, 200)  # 120 % 16 == 8, 200 % 16 == 8
    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # deprecation notice and tracer warnings about the padding
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
    data = _add_metadata(buffer.getvalue(), model)
    if path is not None:
        Path(path).write_bytes(data)
    return data


def _add_metadata(data: bytes, model: torch.nn.Module) -> bytes:
    """Record the config and inference resolution so an .onnx file is self-describing."""
    try:
        import onnx
    except ImportError:  # the metadata is a convenience; a runtime install may lack onnx
        return data
    proto = onnx.load_from_string(data)
    config = model.config
    for key, value in {"long_side": str(config.long_side), "config": config.name}.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    return proto.SerializeToString()
