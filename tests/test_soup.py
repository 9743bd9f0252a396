"""``python -m training.soup``: the mean of several runs of one network, as one weights file."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from deepbg_live.model import build_model, load_weights, save_weights
from training.soup import SoupError, average_weights

ROOT = Path(__file__).resolve().parent.parent


def run_of(config: str, seed: int, path: Path) -> Path:
    """A 'run': the network with its own random weights and batch-norm statistics."""
    torch.manual_seed(seed)
    model = build_model(config)
    for name, buffer in model.named_buffers():
        if buffer.is_floating_point():
            buffer.uniform_(0.5, 1.5) if name.endswith("running_var") else buffer.normal_()
    save_weights(model, path)
    return path


def test_every_float_tensor_of_the_soup_is_the_mean_of_the_runs(tmp_path):
    paths = [run_of("depthwise8", seed, tmp_path / f"run{seed}.safetensors") for seed in range(3)]
    states = [load_weights(path)[0].state_dict() for path in paths]
    soup = average_weights(paths).state_dict()
    assert soup.keys() == states[0].keys()
    for key, value in soup.items():
        if value.is_floating_point():
            torch.testing.assert_close(value, sum(state[key] for state in states) / 3)
        else:
            assert torch.equal(value, states[0][key])


def test_a_soup_of_one_run_with_itself_computes_what_the_run_did(tmp_path):
    path = run_of("mobile-video", 0, tmp_path / "run.safetensors")
    x = torch.rand(1, 4, 64, 96)
    with torch.no_grad():
        torch.testing.assert_close(average_weights([path, path])(x), load_weights(path)[0](x))


def test_runs_of_different_networks_are_refused(tmp_path):
    paths = [
        run_of("depthwise8", 0, tmp_path / "a.safetensors"),
        run_of("depthwise16", 0, tmp_path / "b.safetensors"),
    ]
    with pytest.raises(SoupError, match="another network"):
        average_weights(paths)


def test_the_command_writes_a_loadable_soup_and_refuses_to_overwrite_an_input(tmp_path):
    paths = [str(run_of("depthwise8", seed, tmp_path / f"run{seed}.safetensors")) for seed in range(2)]
    command = [sys.executable, "-m", "training.soup"]
    done = subprocess.run(
        [*command, str(tmp_path / "soup.safetensors"), *paths], cwd=ROOT, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    soup, metadata = load_weights(tmp_path / "soup.safetensors")
    assert soup.config == build_model("depthwise8").config and metadata["soup_of"] == ", ".join(paths)
    before = Path(paths[0]).read_bytes()
    refused = subprocess.run([*command, paths[0], *paths], cwd=ROOT, capture_output=True, text=True)
    assert refused.returncode == 1 and refused.stderr.count("\n") == 1 and "Traceback" not in refused.stderr
    assert Path(paths[0]).read_bytes() == before
