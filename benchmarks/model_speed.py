"""Part 1: the network alone, per config, backend and input size: ms per frame, params, MACs.

Each backend is timed through the runtime ``deepbg-live`` runs on it (``deepbg_live.runtimes``;
sigmoid and, on a GPU, the copy back included), so the figures are the product's. Inputs are
landscape 4:3 (a webcam's shape) with the given long side. Weights are random: the arithmetic,
and so the speed, does not depend on them. ``onnxruntime-int8`` is the same network quantised as
``training.export --calibrate`` does it, calibrated on random frames (which sets accuracy, not
speed).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from tqdm import tqdm

from benchmarks.context import Context
from benchmarks.flops import count_macs
from benchmarks.timing import summarise, time_calls
from deepbg_live.export import export_onnx
from deepbg_live.model import CONFIGS, DEFAULT_CONFIG, build_model, count_parameters
from deepbg_live.runtimes import Backend, Device, Precision, Runtime, RuntimeOptions, runtime_class

BACKENDS = ("torch-cpu", "onnxruntime", "onnxruntime-int8", "cuda-fp32", "cuda-fp16")
# this benchmark's names for the product's runtimes; int8 and cuda-fp32 are built in make_runtime
RUNTIME_BACKENDS = {
    "torch-cpu": Backend.TORCH_CPU,
    "onnxruntime": Backend.ONNXRUNTIME,
    "cuda-fp16": Backend.TORCH_CUDA,
}


@dataclass
class ModelSpeedSettings:
    configs: list[str] = field(default_factory=lambda: list(CONFIGS))
    long_sides: list[int] = field(default_factory=lambda: [128, 160, 192, 256])  # [] = each config's own
    backends: list[str] = field(default_factory=list)  # [] = every one available here
    repeats: int = 100
    warmup: int = 5
    budget_s: float = 15.0  # per measurement, so the 31M-parameter original cannot take minutes each

    @classmethod
    def for_mode(cls, quick: bool) -> ModelSpeedSettings:
        if quick:
            return cls(
                configs=[DEFAULT_CONFIG], long_sides=[], backends=[], repeats=20, warmup=3, budget_s=3.0
            )
        return cls()


def available_backends() -> list[str]:
    names = ["torch-cpu"]
    try:
        import onnxruntime  # noqa: F401

        names.append("onnxruntime")
    except ImportError:
        pass
    try:
        import onnx  # noqa: F401  (quantisation edits the graph with it)

        names += ["onnxruntime-int8"] if "onnxruntime" in names else []
    except ImportError:
        pass
    if torch.cuda.is_available():
        names += ["cuda-fp32", "cuda-fp16"]
    return names


def input_shape(long_side: int, channels: int = 3) -> tuple[int, int, int, int]:
    """NCHW batch of one 4:3 landscape frame whose long side is ``long_side`` (4 channels: the previous mask)."""
    return (1, channels, round(long_side * 3 / 4), long_side)


def make_runner(
    model: torch.nn.Module, backend: str, shape: tuple[int, ...], threads: int
) -> Callable[[], None]:
    """A no-argument function that runs one forward pass through the product's runtime for ``backend``."""
    batch = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    runtime = make_runtime(model, backend, batch, threads)
    return lambda: runtime(batch)


def make_runtime(model: torch.nn.Module, backend: str, batch: np.ndarray, threads: int) -> Runtime:
    """The runtime ``deepbg-live`` would run ``model`` on (int8 quantised as ``training.export`` does)."""
    options = RuntimeOptions(Device.CUDA if backend.startswith("cuda") else Device.CPU, threads)
    if backend == "onnxruntime-int8":
        from training.quantize import quantize_int8

        frames = np.random.default_rng(1).standard_normal((4, *batch.shape)).astype(np.float32)
        int8 = quantize_int8(export_onnx(model), list(frames))
        return runtime_class(Backend.ONNXRUNTIME)(int8, options)
    if backend == "cuda-fp32":  # not a product runtime: the comparison that shows what fp16 buys
        return runtime_class(Backend.TORCH_CUDA)(model, Precision.FP32)
    if backend not in RUNTIME_BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose from {BACKENDS}")
    return runtime_class(RUNTIME_BACKENDS[backend]).from_network(model, options)


def measure_model(
    config: str, backend: str, long_side: int, settings: ModelSpeedSettings, threads: int
) -> dict:
    """One row of the table: size, cost and latency of ``config`` on ``backend``."""
    model = build_model(config).eval()
    shape = input_shape(long_side, CONFIGS[config].in_channels)
    macs = count_macs(model, shape)
    samples = time_calls(
        make_runner(model, backend, shape, threads), settings.repeats, settings.warmup, settings.budget_s
    )
    return {
        "config": config,
        "backend": backend,
        "input": f"{shape[3]}x{shape[2]}",
        "params": count_parameters(model),
        "gmacs": macs / 1e9,
        "gflops": 2 * macs / 1e9,
        **summarise(samples),
        "samples_ms": [round(s, 3) for s in samples],
    }


def run(ctx: Context, settings: ModelSpeedSettings | None = None) -> dict:
    settings = settings or ModelSpeedSettings.for_mode(ctx.quick)
    backends = settings.backends or available_backends()
    jobs = [
        (config, backend, long_side)
        for config in settings.configs
        for long_side in (settings.long_sides or [CONFIGS[config].long_side])
        for backend in backends
    ]
    rows = []
    for config, backend, long_side in tqdm(jobs, desc="model speed", disable=not ctx.progress):
        rows.append(measure_model(config, backend, long_side, settings, ctx.threads))
    return {"settings": asdict(settings), "threads": ctx.threads, "rows": rows}
