"""Settings shared by every part of a run, and the model under test (ours, or a stand-in)."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from deepbg_live.errors import UserError

DEFAULT_DATA_ROOT = Path("../shared/data")  # the shared layout, relative to a checkout
DEFAULT_OUT = Path("bench-out")


@dataclass
class Context:
    """What every benchmark part needs: where to write, how hard to try, which weights and data."""

    out: Path = DEFAULT_OUT
    quick: bool = False
    weights: str | None = None  # None: the shipped weights, else a random-init stand-in
    data_root: Path = DEFAULT_DATA_ROOT
    threads: int | None = None
    precision: str = "auto"  # our model's CPU arithmetic, as ``deepbg-live --precision``
    flip_average: bool = False  # our model also segments the mirrored frame
    progress: bool = True
    notes: list[str] = field(default_factory=list)  # caveats that belong in the report
    weights_label: str = "not used"  # what the report calls our model; set when it is loaded
    _segmenters: dict = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self.out = Path(self.out)
        self.data_root = Path(self.data_root)
        # Fixed, not "whatever torch picks", so two runs on one machine are comparable.
        self.threads = self.threads or min(4, os.cpu_count() or 1)

    def note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)

    @cached_property
    def scratch(self) -> Path:
        """A folder for generated clips and temporary models, removed by ``cleanup()``."""
        path = self.out / ".scratch"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def cleanup(self) -> None:
        shutil.rmtree(self.out / ".scratch", ignore_errors=True)

    @cached_property
    def weights_path(self) -> Path:
        """Our model file: ``--weights``, else the shipped weights, else a random-init stand-in."""
        from deepbg_live.engine import DEFAULT_WEIGHTS
        from deepbg_live.model import DEFAULT_CONFIG, build_model, save_weights

        if self.weights:
            path = Path(self.weights)
            if not path.is_file():
                raise UserError(f"weights file '{path}' not found; check --weights")
            self.weights_label = str(path)
            return path
        if DEFAULT_WEIGHTS.is_file():
            self.weights_label = str(DEFAULT_WEIGHTS)
            return DEFAULT_WEIGHTS
        self.note(
            f"No trained weights at {DEFAULT_WEIGHTS} and no --weights given: our model is a randomly "
            f"initialised '{DEFAULT_CONFIG}' U-Net. Speed figures are valid; accuracy and flicker are not."
        )
        self.weights_label = f"random-init '{DEFAULT_CONFIG}' (no trained weights)"
        path = self.scratch / "random-init.safetensors"
        save_weights(build_model(DEFAULT_CONFIG), path)
        return path

    def segmenter(self, device: str = "cpu", backend: str | None = None):
        """Our ``Segmenter`` with the run's thread count (on a CPU, ONNX Runtime unless told).

        One per device and backend, shared by the parts: loading converts the model to ONNX.
        """
        from deepbg_live.engine import Segmenter

        key = (device, backend)
        if key not in self._segmenters:
            self._segmenters[key] = Segmenter(
                self.weights_path,
                device=device,
                threads=self.threads,
                backend=backend,
                precision=self.precision,
                flip_average=self.flip_average,
            )
        return self._segmenters[key]
