"""``python -m training.export``: ship a trained model as fp16 safetensors, and write its ONNX.

The package ships only the safetensors file: the runtime exports ONNX from it in memory at start,
so the two can never drift apart. The ONNX file written here is for other tools and for
``deepbg-live --model NAME.onnx``. It is checked numerically against torch before anything is
written.
"""

from __future__ import annotations

import dataclasses
import io
import sys
from pathlib import Path

import click
import numpy as np
import torch

from deepbg_live.engine import WEIGHTS_DIR, export_onnx
from deepbg_live.model import CONFIGS, ModelConfig, load_weights, save_weights

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


def relabel(config: ModelConfig, target: ModelConfig) -> ModelConfig:
    """``target`` if it describes the same network as ``config`` (all but the name); else exit."""
    if dataclasses.replace(config, name=target.name) != target:
        click.echo(f"Error: the weights are a {config}, not a {target}; nothing written", err=True)
        sys.exit(1)
    return target


@click.command(context_settings={"show_default": True})
@click.argument("checkpoint", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=WEIGHTS_DIR,
    help="Folder to write into.",
)
@click.option("--name", default=None, help="File stem [default: the model config's name].")
@click.option(
    "--onnx-out",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Folder for NAME.onnx [default: the checkpoint's folder].",
)
@click.option(
    "--config",
    "config_name",
    type=click.Choice(sorted(CONFIGS)),
    default=None,
    help="Relabel the weights as this config, which must have the same shape (a probe config "
    "that becomes a shipped one).",
)
def main(
    checkpoint: Path, out: Path, name: str | None, onnx_out: Path | None, config_name: str | None
) -> None:
    """Export CHECKPOINT (best.safetensors or a .pt from a run) to NAME.safetensors (fp16) and NAME.onnx."""
    model, metadata = load_weights(checkpoint)
    if config_name:
        model.config = relabel(model.config, CONFIGS[config_name])
    name = name or model.config.name
    onnx_out = onnx_out or checkpoint.parent
    buffer = io.BytesIO()
    export_onnx(model, buffer)
    error = onnx_max_error(buffer.getvalue(), model)
    if error > TOLERANCE:
        click.echo(
            f"Error: ONNX differs from torch by {error:.2e} (> {TOLERANCE:.0e}); nothing written", err=True
        )
        sys.exit(1)
    out.mkdir(parents=True, exist_ok=True)
    onnx_out.mkdir(parents=True, exist_ok=True)
    (onnx_out / f"{name}.onnx").write_bytes(buffer.getvalue())
    keep = {k: v for k, v in metadata.items() if k != "config"}
    save_weights(model, out / f"{name}.safetensors", half=True, **keep)
    click.echo(
        f"wrote {out / name}.safetensors (fp16) and {onnx_out / name}.onnx; ONNX max logit error {error:.1e}"
    )


if __name__ == "__main__":
    main()
