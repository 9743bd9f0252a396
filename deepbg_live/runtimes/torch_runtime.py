"""Eager torch: the CPU fallback when ONNX Runtime is missing, and fp16 on a CUDA GPU.

Both run channels_last (10-30% faster on a CPU here; what cuDNN's fp16 kernels want on a GPU).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from deepbg_live.errors import UserError, first_line
from deepbg_live.model import load_weights
from deepbg_live.runtimes.base import Backend, Precision, RuntimeOptions, sigmoid


def load_network(path: Path) -> torch.nn.Module:
    """Our weights, loaded safely (no pickled code), with any failure turned into a UserError."""
    try:
        net, _ = load_weights(path)
    except Exception as exc:  # safetensors/torch/json raise many types for a wrong file
        raise UserError(
            f"could not load model '{path}': {first_line(exc)}; pass a deepbg-live .safetensors/.pt "
            "model (see `python -m training`)"
        ) from exc
    return net


class TorchCpuRuntime:
    """A torch network on the CPU in fp32.

    Torch has one thread pool per process, so a thread count is applied to it only when one is
    asked for: ``threads=None`` leaves torch's own setting (and every other user of torch) alone.
    """

    name = Backend.TORCH_CPU
    precision = Precision.FP32

    def __init__(self, net: torch.nn.Module, threads: int | None = None):
        if threads:
            torch.set_num_threads(threads)
        self.net = net.eval().to(memory_format=torch.channels_last)
        self.long_side = net.config.long_side
        self.input_channels = net.config.in_channels

    @classmethod
    def from_network(cls, net: torch.nn.Module, options: RuntimeOptions) -> TorchCpuRuntime:
        return cls(net, options.threads)

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(batch).contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            return sigmoid(self.net(x).numpy())


class TorchCudaRuntime:
    """A torch network on the CUDA GPU, in fp16 (the product) or fp32 (for the benchmark's comparison)."""

    name = Backend.TORCH_CUDA

    def __init__(self, net: torch.nn.Module, precision: Precision = Precision.FP16):
        if precision not in (Precision.FP16, Precision.FP32):
            raise ValueError(f"torch-cuda runs fp16 or fp32, not {precision}")
        torch.backends.cudnn.benchmark = True  # frame size is fixed, so autotuning pays off
        self.precision = precision
        self._dtype = torch.float16 if precision is Precision.FP16 else torch.float32
        self.net = net.eval().to("cuda", dtype=self._dtype, memory_format=torch.channels_last)
        self.long_side = net.config.long_side
        self.input_channels = net.config.in_channels

    @classmethod
    def from_network(cls, net: torch.nn.Module, options: RuntimeOptions) -> TorchCudaRuntime:
        return cls(net)

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(batch).to("cuda", non_blocking=True).to(self._dtype)
        with torch.inference_mode():
            out = self.net(x.contiguous(memory_format=torch.channels_last))
        return sigmoid(out.float().cpu().numpy())
