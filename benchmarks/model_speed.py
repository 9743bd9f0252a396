"""Part 1: the network alone, per config, backend and input size: ms per frame, params, MACs.

Inputs are landscape 4:3 (a webcam's shape) with the given long side. Weights are random: the
arithmetic, and so the speed, does not depend on them. ``onnxruntime-int8`` is the same network
quantised as ``training.export --calibrate`` does it, calibrated on random frames (which sets
accuracy, not speed).
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from tqdm import tqdm

from benchmarks.context import Context
from benchmarks.flops import count_macs
from benchmarks.timing import summarise, time_calls
from deepbg_live.model import CONFIGS, DEFAULT_CONFIG, build_model, count_parameters

BACKENDS = ("torch-cpu", "onnxruntime", "onnxruntime-int8", "cuda-fp32", "cuda-fp16")


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


def input_shape(long_side: int) -> tuple[int, int, int, int]:
    """NCHW batch of one 4:3 landscape frame whose long side is ``long_side``."""
    return (1, 3, round(long_side * 3 / 4), long_side)


def make_runner(
    model: torch.nn.Module, backend: str, shape: tuple[int, ...], threads: int
) -> Callable[[], None]:
    """A no-argument function that runs one forward pass the way ``backend`` would at run time."""
    batch = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    if backend in ("onnxruntime", "onnxruntime-int8"):
        return _onnxruntime_runner(model, batch, threads, int8=backend.endswith("int8"))
    if backend == "torch-cpu":
        torch.set_num_threads(threads)
        net = model.eval().to(memory_format=torch.channels_last)
        x = torch.from_numpy(batch).contiguous(memory_format=torch.channels_last)
        return lambda: _torch_forward(net, x)
    if backend in ("cuda-fp32", "cuda-fp16"):
        dtype = torch.float16 if backend == "cuda-fp16" else torch.float32
        torch.backends.cudnn.benchmark = True
        net = model.eval().to("cuda", dtype=dtype, memory_format=torch.channels_last)
        x = torch.from_numpy(batch).to("cuda", dtype=dtype).contiguous(memory_format=torch.channels_last)

        def run() -> None:
            _torch_forward(net, x)
            torch.cuda.synchronize()  # GPU calls return before the work is done

        return run
    raise ValueError(f"unknown backend {backend!r}; choose from {BACKENDS}")


def _torch_forward(net: torch.nn.Module, x: torch.Tensor) -> None:
    with torch.inference_mode():
        net(x)


def _onnxruntime_runner(
    model: torch.nn.Module, batch: np.ndarray, threads: int, int8: bool = False
) -> Callable[[], None]:
    import onnxruntime as ort

    from deepbg_live.engine import export_onnx

    buffer = io.BytesIO()
    export_onnx(model, buffer)  # the shipped export (dynamic size), so this is what users run
    data = buffer.getvalue()
    if int8:
        from training.quantize import quantize_int8

        frames = np.random.default_rng(1).standard_normal((4, *batch.shape)).astype(np.float32)
        data = quantize_int8(data, list(frames))
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(data, sess_options=options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return lambda: session.run(None, {name: batch})


def measure_model(
    config: str, backend: str, long_side: int, settings: ModelSpeedSettings, threads: int
) -> dict:
    """One row of the table: size, cost and latency of ``config`` on ``backend``."""
    model = build_model(config).eval()
    shape = input_shape(long_side)
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
