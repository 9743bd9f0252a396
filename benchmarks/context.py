"""Settings shared by every part of a run, and the models under test (ours, or a stand-in)."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from deepbg_live.errors import UserError
from deepbg_live.runtimes import default_threads

if TYPE_CHECKING:
    from deepbg_live.refine import EdgeRefiner

DEFAULT_DATA_ROOT = Path("../shared/data")  # the shared layout, relative to a checkout
DEFAULT_OUT = Path("bench-out")


@dataclass(frozen=True)
class Contender:
    """One model in a comparison: its person probability, and how that becomes the frame's alpha.

    ``probability`` maps a BGR frame to the probability at the model's own resolution (what
    temporal smoothing works on), as for a photo. ``video``, if given, makes a fresh per-clip
    predictor that may remember earlier frames (a model fed its previous mask); the stateless
    ``probability`` is used for clips otherwise. ``refiner`` turns a probability into the frame's
    uint8 alpha, as the product's ``EdgeRefiner`` does; None means bilinear upsampling, as a plain
    wrapper does.
    """

    name: str
    probability: Callable[[np.ndarray], np.ndarray]
    refiner: EdgeRefiner | None = None
    video: Callable[[], Callable[[np.ndarray], np.ndarray]] | None = None

    def clip_probability(self) -> Callable[[np.ndarray], np.ndarray]:
        """The predictor for one new clip: it starts with no memory of any other."""
        return self.video() if self.video is not None else self.probability

    def alpha(self, frame_bgr: np.ndarray) -> np.ndarray:
        """Alpha in 0..1 for accuracy scoring (the harness upsamples an unrefined one bilinearly)."""
        prob = self.probability(frame_bgr)
        if self.refiner is None:
            return prob
        return self.refiner(prob, frame_bgr).astype(np.float32) / 255.0


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
        self.threads = self.threads or default_threads()

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
        from deepbg_live.model import DEFAULT_CONFIG, build_model, save_weights
        from deepbg_live.model_files import DEFAULT_WEIGHTS

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

    def segmenter(self, device: str = "cpu", backend: str | None = None, threads: int | None = None):
        """Our ``Segmenter``: on a CPU, ONNX Runtime with the run's thread count, unless told otherwise.

        One per device, backend and thread count, shared by the parts: loading converts the model to ONNX.
        """
        from deepbg_live.engine import Segmenter

        threads = threads or self.threads
        key = (device, backend, threads)
        if key not in self._segmenters:
            self._segmenters[key] = Segmenter(
                self.weights_path,
                device=device,
                threads=threads,
                backend=backend,
                precision=self.precision,
                flip_average=self.flip_average,
            )
        return self._segmenters[key]

    def live_segmenter(self):
        """Our ``Segmenter`` as a live job opens it (``open_live_runtime``): one thread, no spinning."""
        from deepbg_live.engine import Segmenter
        from deepbg_live.runtimes import open_live_runtime

        if "live" not in self._segmenters:
            runtime = open_live_runtime(self.weights_path, precision=self.precision)
            self._segmenters["live"] = Segmenter(runtime, flip_average=self.flip_average)
        return self._segmenters["live"]

    def ours(self) -> Contender:
        """Our model as users get it on video and cameras: the ``Segmenter``, then the ``EdgeRefiner``.

        Flip-averaging only with ``--flip-average``; the same path as ``training.evaluate --no-flip-average``.
        """
        from deepbg_live.refine import EdgeRefiner

        segmenter = self.segmenter()
        return Contender("ours", segmenter, EdgeRefiner(), video=segmenter.stream)
