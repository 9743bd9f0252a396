"""What every runtime is: the ``Runtime`` protocol, the choices that pick one, and the one sigmoid."""

from __future__ import annotations

import os
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING, Protocol, TypeVar, runtime_checkable

from deepbg_live.errors import UserError

if TYPE_CHECKING:  # numpy is imported where arrays are made, so that `deepbg-live --help` stays light
    import numpy as np


class Choice(str, Enum):
    """A choice spelled as on the command line: compares equal to, and prints as, its value."""

    def __str__(self) -> str:
        return self.value


class Backend(Choice):
    ONNXRUNTIME = "onnxruntime"
    TORCH_CPU = "torch-cpu"
    TORCH_CUDA = "torch-cuda"


class Device(Choice):
    AUTO = "auto"  # a request only: the CUDA GPU if there is one, else the CPU
    CPU = "cpu"
    CUDA = "cuda"


class Precision(Choice):
    AUTO = "auto"  # a request only: int8 where the model ships a matching int8 file, else fp32
    FP32 = "fp32"
    FP16 = "fp16"  # what a GPU runs; not a request
    INT8 = "int8"


PRECISIONS = tuple(p.value for p in (Precision.AUTO, Precision.FP32, Precision.INT8))  # --precision's values

C = TypeVar("C", bound=Choice)


def parse_choice(kind: type[C], value: str | C, what: str, allowed: tuple[str, ...] | None = None) -> C:
    """``value`` as a member of ``kind``, or a UserError naming the ``allowed`` values."""
    allowed = allowed or tuple(member.value for member in kind)
    if str(value).lower() not in allowed:
        raise UserError(f"unknown {what} '{value}'; choose one of {', '.join(allowed)}")
    return kind(str(value).lower())


def default_threads() -> int:
    """Threads for the network when none are asked for: up to 4, leaving cores to decoding and output."""
    return min(4, os.cpu_count() or 1)


@dataclass(frozen=True)
class RuntimeOptions:
    """How a runtime should run, whatever its backend; each backend uses the fields it has a use for."""

    device: Device = Device.CPU  # resolved: never AUTO
    threads: int | None = None  # None: default_threads() for ONNX Runtime; torch keeps its own setting
    # ONNX Runtime's idle threads busy-wait for the next frame (its own default, but not ours: the
    # spin steals the cores that decoding, refinement and the encoder run on: runtimes/__init__.py)
    spinning: bool = False


@runtime_checkable
class Runtime(Protocol):
    """One model on one backend: a normalised RGB batch in, person probabilities out.

    ``__call__`` takes a C-contiguous float32 ``(N, input_channels, H, W)`` batch and returns
    float32 ``(N, 1, H, W)`` probabilities in 0..1. ``input_channels`` is 3 (RGB) or 4 (RGB and the
    previous frame's mask, see ``deepbg_live.prior``). ``long_side`` is the inference resolution
    the model file records (its config's, or its ONNX metadata's).
    """

    name: Backend
    precision: Precision
    long_side: int
    input_channels: int

    def __call__(self, batch: np.ndarray) -> np.ndarray: ...


def sigmoid(logits: np.ndarray) -> np.ndarray:
    """Sigmoid via tanh: same values, no overflow warnings for very negative logits."""
    import numpy as np  # already loaded by whoever made ``logits``: a dictionary look-up

    return (0.5 + 0.5 * np.tanh(0.5 * logits, dtype=np.float32)).astype(np.float32, copy=False)
