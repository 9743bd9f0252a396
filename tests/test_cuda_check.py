"""The prepared CUDA check (`python -m benchmarks.cuda_check`), exercised here on the CPU path."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from benchmarks.cuda_check import AGREEMENT, check_model
from tests.test_training import ROOT


def test_it_compares_with_cpu_fp32_and_times_model_plus_compositing():
    row = check_model("fast", "cpu", repeats=3, size=(320, 240))
    assert (row["backend"], row["precision"], row["frame"]) == ("onnxruntime", "int8", "320x240")
    assert 0.0 < row["max_difference_from_cpu_fp32"] < 0.5  # int8 against fp32: close, not equal
    assert row["agrees"] == (row["max_difference_from_cpu_fp32"] <= AGREEMENT)
    assert row["model_plus_compositing"]["n"] == 3 and row["fps"] > 0


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_without_cuda_it_says_so_in_one_line():
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.cuda_check"], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert "cuda" in result.stderr.lower()


def test_it_and_training_import_where_pyav_and_pyvirtualcam_are_missing():
    # a lent GPU machine has torch but not these, and carrying PyAV (37 MB) would crowd out the data
    blocker = (
        "import sys, importlib.abc\n"
        "class Missing(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path, target=None):\n"
        "        if name.split('.')[0] in {'av', 'pyvirtualcam', 'wandb'}:\n"
        "            raise ModuleNotFoundError(name)\n"
        "sys.meta_path.insert(0, Missing())\n"
        "import benchmarks.cuda_check, training.__main__, training.pack, training.evaluate\n"
    )
    result = subprocess.run([sys.executable, "-c", blocker], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-1500:]
