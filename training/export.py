"""``python -m training.export``: ship a trained model as ONNX (CPU backend) and fp16 safetensors.

The ONNX file is checked numerically against torch before anything is written to its final path.
"""

from __future__ import annotations

import io
import sys
from pathlib import Path

import click
import numpy as np
import torch

from deepbg_live.engine import export_onnx
from deepbg_live.model import load_weights, save_weights

WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "deepbg_live" / "weights"
TOLERANCE = 1e-4  # max |logit difference| between ONNX Runtime and torch


def onnx_max_error(onnx_bytes: bytes, model: torch.nn.Module, sizes=((144, 192), (97, 131))) -> float:
    """Largest logit difference between ONNX Runtime and torch on random inputs of a few sizes."""
    import onnxruntime as ort

    session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    worst = 0.0
    for height, width in sizes:
        x = torch.randn(1, 3, height, width)
        with torch.no_grad():
            expected = model(x).numpy()
        got = session.run(None, {"image": x.numpy()})[0]
        worst = max(worst, float(np.abs(expected - got).max()))
    return worst


@click.command(context_settings={"show_default": True})
@click.argument("checkpoint", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=WEIGHTS_DIR,
    help="Folder to write into.",
)
@click.option("--name", default=None, help="File stem [default: the model config's name].")
def main(checkpoint: Path, out: Path, name: str | None) -> None:
    """Export CHECKPOINT (best.safetensors or a .pt from a run) to NAME.onnx and NAME.safetensors (fp16)."""
    model, metadata = load_weights(checkpoint)
    name = name or model.config.name
    buffer = io.BytesIO()
    export_onnx(model, buffer)
    error = onnx_max_error(buffer.getvalue(), model)
    if error > TOLERANCE:
        click.echo(
            f"Error: ONNX differs from torch by {error:.2e} (> {TOLERANCE:.0e}); nothing written", err=True
        )
        sys.exit(1)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.onnx").write_bytes(buffer.getvalue())
    keep = {k: v for k, v in metadata.items() if k != "config"}
    save_weights(model, out / f"{name}.safetensors", half=True, **keep)
    click.echo(f"wrote {out / name}.onnx and {name}.safetensors (fp16); ONNX max logit error {error:.1e}")


if __name__ == "__main__":
    main()
