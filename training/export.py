"""``python -m training.export``: ship a trained model as fp16 safetensors, with its ONNX beside it.

``NAME.onnx`` (fp32) is what the runtime runs on a CPU, without torch. It is exported from the
fp16-rounded weights that ``NAME.safetensors`` holds, checked numerically against torch before
anything is written, and records the SHA-256 of ``NAME.safetensors``, so that the runtime uses it
only with exactly those weights.

With ``--calibrate DATA_ROOT`` it also writes ``NAME.int8.onnx``: a statically quantised copy,
1.7-1.9x as fast on a CPU here, tied to the weights the same way.

Given the file that already is ``NAME.safetensors`` in ``--out`` (a shipped model), it leaves the
weights byte for byte as they are and writes only the ONNX, so an int8 file beside them stays valid.
"""

from __future__ import annotations

import copy
import sys
from pathlib import Path

import click
import numpy as np
import torch

from deepbg_live.engine import Segmenter
from deepbg_live.export import export_onnx
from deepbg_live.model import CONFIGS, ModelConfig, load_weights, save_weights
from deepbg_live.model_files import (
    WEIGHTS_DIR,
    WEIGHTS_SHA256,
    fp32_path,
    int8_path,
    weights_digest,
    with_metadata,
)
from deepbg_live.runtimes.onnx_runtime import create_session
from deepbg_live.runtimes.torch_runtime import TorchCpuRuntime
from evaluation.layout import DatasetError, shared_data_folders, split_pairs
from training.quantize import calibration_batches, mask_agreement, quantize_int8

TOLERANCE = 1e-4  # max |logit difference| between ONNX Runtime and torch
MIN_INT8_AGREEMENT = 0.97  # mean IoU of int8 vs fp32 masks on held-out photos; refuse below this


def onnx_max_error(onnx_bytes: bytes, model: torch.nn.Module, sizes=((144, 192), (97, 131))) -> float:
    """Largest logit difference between ONNX Runtime and torch on random inputs of a few sizes."""
    session = create_session(onnx_bytes)
    worst = 0.0
    for height, width in sizes:
        x = torch.randn(1, model.config.in_channels, height, width)
        with torch.no_grad():
            expected = model(x).numpy()
        got = session.run(None, {"image": x.numpy()})[0]
        worst = max(worst, float(np.abs(expected - got).max()))
    return worst


def relabel(config: ModelConfig, target: ModelConfig) -> ModelConfig:
    """``target`` if it describes the same network as ``config`` (all but the name); else exit."""
    if not config.same_network(target):
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
    "--config",
    "config_name",
    type=click.Choice(sorted(CONFIGS)),
    default=None,
    help="Relabel the weights as this config, which must have the same shape (a probe config "
    "that becomes a shipped one).",
)
@click.option(
    "--calibrate",
    "data_root",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=None,
    help="Also write NAME.int8.onnx beside the weights, calibrated on the training photos of this "
    "shared data folder (for example ../shared/data) and checked on its validation photos.",
)
def main(
    checkpoint: Path,
    out: Path,
    name: str | None,
    config_name: str | None,
    data_root: Path | None,
) -> None:
    """Export CHECKPOINT (best.safetensors or a .pt from a run) to NAME.safetensors (fp16) and NAME.onnx."""
    model, metadata = load_weights(checkpoint)
    if config_name:
        model.config = relabel(model.config, CONFIGS[config_name])
    name = name or model.config.name
    weights = out / f"{name}.safetensors"
    keep_weights = config_name is None and weights.exists() and weights.samefile(checkpoint)
    shipped = copy.deepcopy(model).half().float()  # what NAME.safetensors holds
    onnx_bytes = export_onnx(shipped)
    error = onnx_max_error(onnx_bytes, shipped)
    if error > TOLERANCE:
        click.echo(
            f"Error: ONNX differs from torch by {error:.2e} (> {TOLERANCE:.0e}); nothing written", err=True
        )
        sys.exit(1)
    out.mkdir(parents=True, exist_ok=True)
    if not keep_weights:
        keep = {k: v for k, v in metadata.items() if k != "config"}
        save_weights(model, weights, half=True, **keep)
    fp32_path(weights).write_bytes(with_metadata(onnx_bytes, {WEIGHTS_SHA256: weights_digest(weights)}))
    written = "" if keep_weights else f"{weights} (fp16) and "
    click.echo(f"wrote {written}{fp32_path(weights)}; ONNX max logit error {error:.1e}")
    if data_root is not None:
        write_int8(weights, data_root)
    elif not keep_weights and (stale := int8_path(weights)).exists():
        click.echo(
            f"note: {stale} was made from the old weights, so the runtime will run "
            "fp32; add --calibrate DATA_ROOT to rebuild it"
        )


def write_int8(weights: Path, data_root: Path) -> None:
    """Quantise the shipped (fp16-rounded) weights and write NAME.int8.onnx beside them."""
    try:
        train_pairs, val_pairs = split_pairs(shared_data_folders(data_root))
    except DatasetError as exc:
        click.echo(f"Error: {exc}; pass --calibrate the shared data folder", err=True)
        sys.exit(1)
    net = load_weights(weights)[0]
    fp32 = export_onnx(net)
    # The runtime's own preprocessing, so calibration sees exactly what inference sees.
    preprocess = Segmenter(TorchCpuRuntime(net)).preprocess
    prior = net.config.previous_mask
    int8 = quantize_int8(
        fp32, calibration_batches(train_pairs, preprocess, previous_mask=prior), weights_digest(weights)
    )
    agreement = mask_agreement(fp32, int8, calibration_batches(val_pairs, preprocess, previous_mask=prior))
    if agreement < MIN_INT8_AGREEMENT:
        click.echo(
            f"Error: int8 masks agree with fp32 at IoU {agreement:.3f} (< {MIN_INT8_AGREEMENT}); "
            "no int8 file written",
            err=True,
        )
        sys.exit(1)
    path = int8_path(weights)
    path.write_bytes(int8)
    click.echo(f"wrote {path}; int8 vs fp32 mask IoU {agreement:.4f} on validation photos")


if __name__ == "__main__":
    main()
