"""Runtimes: one class per backend behind a registry, and ``open_runtime``, where the choice is made.

- ``OnnxRuntime`` (``onnx_runtime``): the CPU default; fp32 exported at load time, or the int8
  file ``python -m training.export --calibrate`` writes beside the weights.
- ``TorchCpuRuntime`` (``torch_runtime``): eager torch, when ONNX Runtime is not installed.
- ``TorchCudaRuntime`` (``torch_runtime``): fp16 on a CUDA GPU.

Each backend's module imports its library at the top and is imported only once chosen, so that
running ONNX Runtime never loads torch.
"""

from __future__ import annotations

import warnings
from importlib import import_module
from pathlib import Path

from deepbg_live.errors import UserError
from deepbg_live.model_files import (
    check_model_file,
    int8_path,
    is_onnx,
    model_path,
    onnx_metadata,
    read_model_file,
    weights_digest,
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
        raise UserError(
            "--device cuda was requested but no CUDA GPU is available; use --device cpu "
            "(or install a CUDA build of PyTorch)"
        )
    if device is Device.AUTO:
        return Device.CUDA if _cuda_available() else Device.CPU
    return device


def open_runtime(
    model: str | Path | None = None,
    device: Device | str = Device.AUTO,
    backend: Backend | str | None = None,
    precision: Precision | str = Precision.AUTO,
    threads: int | None = None,
    spinning: bool = True,
) -> Runtime:
    """The runtime for ``--model`` on ``--device``: every backend and precision choice is made here.

    - An ``.onnx`` file runs on ONNX Runtime, in the precision it records.
    - Weights on a CPU with ONNX Runtime run as the ``NAME.int8.onnx`` beside them (unless
      ``precision`` is fp32) when it records exactly their SHA-256; a stale one is skipped with
      a warning, and never loaded.
    - Otherwise the network runs on ``backend``: by default ONNX Runtime on a CPU (torch if ONNX
      Runtime is missing) and fp16 torch on a GPU.
    """
    device = resolve_device(device)
    precision = parse_choice(Precision, precision, "precision", PRECISIONS)
    path = model_path(model)
    backend = _default_backend(path, device) if backend is None else parse_choice(Backend, backend, "backend")
    _check_backend(backend, path)
    check_model_file(path, is_default=model is None)
    options = RuntimeOptions(device, threads, spinning)
    if is_onnx(path):
        return _onnx_file(path, precision, options)
    int8 = _matching_int8(path, backend, device, precision)
    if int8 is not None:
        return runtime_class(Backend.ONNXRUNTIME)(int8, options)
    return runtime_class(backend).from_network(_load_network(path), options)


def _default_backend(path: Path, device: Device) -> Backend:
    if is_onnx(path):
        return Backend.ONNXRUNTIME
    if device is Device.CUDA:
        return Backend.TORCH_CUDA
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return Backend.TORCH_CPU
    return Backend.ONNXRUNTIME


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


def _matching_int8(weights: Path, backend: Backend, device: Device, precision: Precision) -> bytes | None:
    """The int8 export beside ``weights``, if wanted, usable here and made from exactly these weights.

    Only for ONNX Runtime on a CPU: int8 is a CPU speed-up, and on a GPU fp16 is faster.
    """
    if precision is Precision.FP32 or backend is not Backend.ONNXRUNTIME or device is not Device.CPU:
        if precision is Precision.INT8:
            raise UserError("int8 runs only on the CPU with ONNX Runtime; use --precision auto or fp32")
        return None
    path = int8_path(weights)
    if not path.is_file():
        if precision is Precision.INT8:
            raise UserError(
                f"no int8 model '{path.name}' beside '{weights}'; make one with "
                "`python -m training.export WEIGHTS --calibrate DATA_ROOT`, or use --precision auto"
            )
        return None
    data = read_model_file(path)
    if onnx_metadata(data).get("weights_sha256") == weights_digest(weights):
        return data
    message = f"'{path}' was made from other weights than '{weights}'; re-export it"
    if precision is Precision.INT8:
        raise UserError(message + ", or use --precision auto")
    warnings.warn(message + "; running in fp32 meanwhile", stacklevel=3)
    return None


def _load_network(path: Path):
    """The torch network in a weights file (torch is needed to run one, even on ONNX Runtime)."""
    try:
        from deepbg_live.runtimes.torch_runtime import load_network
    except ImportError as exc:
        raise UserError(
            f"running '{path}' needs torch, which is not installed; `pip install torch` or pass an .onnx model"
        ) from exc
    return load_network(path)


def _cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()
