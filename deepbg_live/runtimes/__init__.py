"""Runtimes: one class per backend behind a registry, and ``open_runtime``, where the choice is made.

- ``OnnxRuntime`` (``onnx_runtime``): the CPU default; it runs the ONNX exports beside the weights
  (every shipped model has them), or a user's own weights exported in memory.
- ``TorchCpuRuntime`` (``torch_runtime``): eager torch, for a user's weights where torch is
  installed but cannot export them (no ``onnx`` package).
- ``TorchCudaRuntime`` (``torch_runtime``): fp16 on a CUDA GPU.

Each backend's module imports its library at the top and is imported only once chosen, so that
running ONNX Runtime never loads torch, and torch is an optional extra.
"""

from __future__ import annotations

import ast
import sys
import warnings
from importlib import import_module
from importlib.util import find_spec
from pathlib import Path

from deepbg_live.errors import UserError
from deepbg_live.model_files import (
    check_model_file,
    fp32_path,
    int8_path,
    is_onnx,
    is_shipped,
    made_from,
    model_path,
    read_model_file,
)
from deepbg_live.runtimes.base import (
    PRECISIONS,
    Backend,
    Device,
    Precision,
    Runtime,
    RuntimeOptions,
    default_threads,
    parse_choice,
    sigmoid,
)

__all__ = [
    "PRECISIONS",
    "Backend",
    "Device",
    "Precision",
    "Runtime",
    "RuntimeOptions",
    "default_threads",
    "open_runtime",
    "resolve_device",
    "runtime_class",
    "sigmoid",
]

# backend -> (module, class); every class runs a torch network given to ``from_network(net, options)``
RUNTIMES: dict[Backend, tuple[str, str]] = {
    Backend.ONNXRUNTIME: ("deepbg_live.runtimes.onnx_runtime", "OnnxRuntime"),
    Backend.TORCH_CPU: ("deepbg_live.runtimes.torch_runtime", "TorchCpuRuntime"),
    Backend.TORCH_CUDA: ("deepbg_live.runtimes.torch_runtime", "TorchCudaRuntime"),
}


def runtime_class(backend: Backend) -> type:
    """The class that runs ``backend``, imported now; a missing package is a UserError naming it."""
    module, name = RUNTIMES[backend]
    try:
        return getattr(import_module(module), name)
    except ImportError as exc:
        missing = exc.name or "a package"
        raise UserError(
            f"the {backend} backend needs {missing}, which is not installed; `pip install {missing}` "
            "or choose another backend"
        ) from exc


def resolve_device(device: Device | str) -> Device:
    """Map the user's ``--device`` choice to the device we will really use."""
    device = parse_choice(Device, device, "device")
    if device is Device.CUDA and not _cuda_available():
        if not _installed("torch"):
            raise UserError(
                "--device cuda needs PyTorch with CUDA, which is not installed; "
                "`pip install 'deepbg-live[cuda]'` (or PyTorch's CUDA build), or use --device cpu"
            )
        raise UserError(
            "--device cuda was requested but no CUDA GPU is available; use --device cpu "
            "(or install a CUDA build of PyTorch)"
        )
    if device is Device.AUTO:
        return Device.CUDA if _cuda_available() else Device.CPU
    return device


# ONNX Runtime threads for a live job, whose goal is CPU-seconds, not wall time: the sample played at
# 30 fps cost 3-25% more CPU per frame with 2 threads than with 1, spinning off, and 65-80% more
# spinning on (2 AVX2 cores beside a training run, issue 17). With 1 thread nothing spins.
LIVE_THREADS = 1

# File jobs use every thread but do not spin either. Spinning ONNX Runtime threads take the cores
# that decoding, refinement and x264 need in the same process: the 300-frame 640x480 sample, file
# to file on 2 idle AMD EPYC cores, took 4.3 s and 7.6 CPU-s for run 14 with spinning off against 4.8-5.9 s
# and 9.2-11.6 CPU-s with it on, and 2.2 s / 4.0 CPU-s against 2.8-3.0 s / 5.3-5.7 for v2-4
# (session 15, README "Performance").


def open_live_runtime(
    model: str | Path | None = None,
    device: Device | str = Device.AUTO,
    precision: Precision | str = Precision.AUTO,
) -> Runtime:
    """``open_runtime`` for frames that come paced (a camera, ``--realtime``): idle threads must not spin.

    Spinning is ONNX Runtime's default, and between paced frames it burns CPU that a video call
    beside us needs (127% against 50% of a core, issue 17).
    """
    return open_runtime(model, device, precision=precision, threads=LIVE_THREADS, spinning=False)


def open_runtime(
    model: str | Path | None = None,
    device: Device | str = Device.AUTO,
    backend: Backend | str | None = None,
    precision: Precision | str = Precision.AUTO,
    threads: int | None = None,
    spinning: bool = False,
) -> Runtime:
    """The runtime for ``--model`` on ``--device``: every backend and precision choice is made here.

    - An ``.onnx`` file runs on ONNX Runtime, in the precision it records.
    - Weights run on ONNX Runtime by default (torch fp16 on a GPU), as the export beside them that
      records exactly their SHA-256: ``NAME.int8.onnx`` on a CPU unless ``precision`` is fp32,
      else ``NAME.onnx``. A shipped model always has its exports: a stale or missing one is an
      error saying to reinstall. A user's stale one is skipped with a warning, and never loaded.
    - A user's weights without an export need torch: exported in memory for ONNX Runtime (which
      needs the ``onnx`` package too; without it they run on torch-cpu), or run by ``backend``.
    """
    device = resolve_device(device)
    precision = parse_choice(Precision, precision, "precision", PRECISIONS)
    path = model_path(model)
    default = backend is None
    backend = _default_backend(path, device) if default else parse_choice(Backend, backend, "backend")
    _check_backend(backend, path)
    check_model_file(path, is_default=model is None)
    options = RuntimeOptions(device, threads, spinning)
    if is_onnx(path):
        return _onnx_file(path, precision, options)
    if precision is Precision.INT8 and (backend is not Backend.ONNXRUNTIME or device is not Device.CPU):
        raise UserError("int8 runs only on the CPU with ONNX Runtime; use --precision auto or fp32")
    if backend is Backend.ONNXRUNTIME:
        export = _export_beside(path, precision, device)
        if export is not None:
            return runtime_class(Backend.ONNXRUNTIME)(export, options)
        if default and _installed("torch") and not _installed("onnx"):
            backend = Backend.TORCH_CPU  # torch runs the weights, but cannot export them without onnx
    network = _load_network(path)
    return runtime_class(backend).from_network(network, options)


def _default_backend(path: Path, device: Device) -> Backend:
    return Backend.TORCH_CUDA if device is Device.CUDA and not is_onnx(path) else Backend.ONNXRUNTIME


def _check_backend(backend: Backend, path: Path) -> None:
    if is_onnx(path) and backend is not Backend.ONNXRUNTIME:
        raise UserError(
            f"backend '{backend}' cannot run an .onnx model; use a .safetensors/.pt model "
            "or the onnxruntime backend"
        )
    if backend is Backend.TORCH_CUDA and not _cuda_available():
        raise UserError("backend torch-cuda needs a CUDA GPU and none is available; use --device cpu")


def _onnx_file(path: Path, precision: Precision, options: RuntimeOptions) -> Runtime:
    runtime = runtime_class(Backend.ONNXRUNTIME)(read_model_file(path), options)
    if precision not in (Precision.AUTO, runtime.precision):
        raise UserError(
            f"'{path}' is an {runtime.precision} model, not {precision}; use --precision auto with it"
        )
    return runtime


def _export_beside(weights: Path, precision: Precision, device: Device) -> bytes | None:
    """The ONNX export of ``weights`` for ONNX Runtime to run, or None to export them in memory.

    int8 on a CPU unless fp32 is asked for (int8 is a CPU speed-up; on a GPU fp32 is faster),
    else fp32.
    """
    if precision is not Precision.FP32 and device is Device.CPU:
        int8 = _matching_export(weights, Precision.INT8, required=precision is Precision.INT8)
        if int8 is not None:
            return int8
    return _matching_export(weights, Precision.FP32, required=is_shipped(weights))


def _matching_export(weights: Path, precision: Precision, required: bool) -> bytes | None:
    """The ``precision`` export beside ``weights`` if it records exactly their SHA-256, else None.

    A shipped model's stale or missing export is a broken install. A user's stale export is skipped
    with a warning (an error when ``required``); a missing one is an error only when ``required``.
    """
    path = int8_path(weights) if precision is Precision.INT8 else fp32_path(weights)
    shipped = is_shipped(weights)
    if not path.is_file():
        if required:
            raise UserError(_missing_export(path, weights, precision, shipped))
        return None
    data = read_model_file(path)
    if _records_weights(data, weights):
        return data
    if shipped:
        raise UserError(
            f"'{path}' was not made from the shipped weights '{weights.name}' (or is damaged); "
            "reinstall deepbg-live"
        )
    message = f"'{path}' was made from other weights than '{weights}' (or is damaged); re-export it"
    if required:
        raise UserError(message + ", or use --precision auto")
    meanwhile = "running in fp32" if precision is Precision.INT8 else "exporting the weights in memory"
    warnings.warn(f"{message}; {meanwhile} meanwhile", stacklevel=4)
    return None


def _missing_export(path: Path, weights: Path, precision: Precision, shipped: bool) -> str:
    if shipped and precision is Precision.INT8:
        return (
            f"the shipped model '{weights.stem}' has no int8 version ('{path.name}'); "
            "use --precision auto or fp32"
        )
    if shipped:
        return f"the shipped model's ONNX file '{path}' is missing; reinstall deepbg-live"
    return (
        f"no int8 model '{path.name}' beside '{weights}'; make one with "
        "`python -m training.export WEIGHTS --calibrate DATA_ROOT`, or use --precision auto"
    )


def _records_weights(model: bytes, weights: Path) -> bool:
    try:
        return made_from(model, weights)
    except UserError:  # not an ONNX file at all
        return False


def _load_network(path: Path):
    """The torch network in a weights file that has no ONNX export to run instead."""
    if not _installed("torch"):
        raise UserError(
            f"running '{path}' needs torch, which is not installed: export it once with "
            f"`python -m training.export {path} --out DIR` (in a checkout, with torch) and pass "
            "--model DIR/NAME.onnx, or install torch (`pip install 'deepbg-live[cuda]'`)"
        )
    from deepbg_live.runtimes.torch_runtime import load_network

    return load_network(path)


def _installed(package: str) -> bool:
    """Whether ``package`` can be imported, found without importing it (torch takes seconds)."""
    try:
        return find_spec(package) is not None
    except (ImportError, ValueError):  # an import hook refused it, or a stub without a spec
        return False


def _cuda_available() -> bool:
    """Whether torch sees a CUDA (or ROCm) GPU.

    Importing torch costs seconds, so it is imported only if its build can have a GPU at all.
    """
    if sys.modules.get("torch") is None and not _torch_build_has_gpu():
        return False
    import torch

    return torch.cuda.is_available()


def _torch_build_has_gpu() -> bool:
    """False for no torch or a CPU-only build, read from ``torch/version.py`` without importing torch."""
    try:
        spec = find_spec("torch")
    except (ImportError, ValueError):
        return False
    if spec is None or not spec.submodule_search_locations:
        return False
    try:
        tree = ast.parse((Path(spec.submodule_search_locations[0]) / "version.py").read_text())
    except (OSError, SyntaxError, UnicodeDecodeError):
        return True  # cannot tell: ask torch itself
    values = {
        node.target.id: node.value.value if isinstance(node.value, ast.Constant) else "unknown"
        for node in tree.body
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
    }
    # A CPU build records `cuda: Optional[str] = None` and the same for `hip`; a GPU build a
    # version string in one of them. Another layout means: ask torch itself.
    return values.get("cuda", "unknown") is not None or values.get("hip") is not None
