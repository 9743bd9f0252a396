"""Person segmentation at run time: a frame shrunk and normalised, a runtime, optional flip-averaging.

The U-Net is small enough that on a CPU the per-frame overhead around it matters as much as the
network, so preprocessing works on the already-shrunk image, with normalisation folded into one
multiply-add. Which backend runs the network is ``deepbg_live.runtimes``' choice.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from deepbg_live.errors import UserError
from deepbg_live.geometry import long_side_size
from deepbg_live.preprocess import shrink, to_batch
from deepbg_live.prior import CutDetector, PreviousMask, neutral_prior, with_prior
from deepbg_live.runtimes import Backend, Precision, Runtime, open_runtime

# The network pads each side up to a multiple of its stride (at most 32) by reflection, which needs
# more pixels than it adds: a narrower input (a 1x1000 photo, an 8x1000 video) is padded here first.
MIN_INPUT_SIDE = 32


class Segmenter:
    """Frame in, person probability out, whatever the model file and device.

    ``model`` is a shipped model's name, a weights file, or a ``Runtime`` already opened by
    ``open_runtime`` (which then has its device, backend, precision and threads). ``fallback`` is a
    cheaper opened runtime that the live quality controller may switch ``runtime`` to; the segment
    thread reads ``runtime`` once per model call, and any model takes any input size, so a switch
    between frames (or between a frame's preprocessing and its model call) is safe.
    """

    def __init__(
        self,
        model: str | Path | Runtime | None = None,
        device: str = "auto",
        long_side: int | None = None,
        threads: int | None = None,
        backend: str | None = None,
        precision: str = "auto",
        flip_average: bool = False,
        fallback: Runtime | None = None,
        second_look: bool = True,
    ):
        if not isinstance(model, Runtime):
            model = open_runtime(model, device, backend, precision, threads)
        elif (device, threads, backend, precision) != ("auto", None, None, "auto"):
            raise ValueError("an opened runtime already has its device, threads, backend and precision")
        self.runtime = model
        self.fallback = fallback
        # People are left-right symmetric and the network is not quite: averaging a frame's
        # prediction with its mirror image's cancels part of its error, at twice the model time.
        self._flip_average = flip_average
        # A model that reads its previous mask but has none to read (a photo, a stream's first
        # frame, the frame after a cut) is run a second time with its own first answer, as a still
        # camera's next frame would be, and the two answers are averaged. On the validation photos
        # that gains 1.0 IoU points on mixed and 0.2-0.3 on selfies and full-body; the second
        # answer alone gains more there but loses 0.7 on small people in crowds (MODEL_CARD, "A
        # second look"). It costs one more model run, on one frame.
        self.second_look = second_look
        self.long_side = long_side or self.runtime.long_side

    @property
    def long_side(self) -> int:
        """The long side frames are shrunk to for the network.

        It may change between frames (the live quality controller lowers it): each frame reads it
        once, in ``preprocess``, and one attribute assignment is atomic, so a frame never mixes two.
        The ONNX models take any height and width (``OnnxRuntime`` refuses fixed ones).
        """
        return self._long_side

    @long_side.setter
    def long_side(self, value: int) -> None:
        if int(value) < 16:
            raise UserError(f"inference long side {int(value)} is too small; use at least 16")
        self._long_side = int(value)

    @property
    def flip_average(self) -> bool:
        return self._flip_average

    @property
    def backend(self) -> Backend:
        return self.runtime.name

    @property
    def precision(self) -> Precision:
        return self.runtime.precision

    def input_size(self, frame_width: int, frame_height: int) -> tuple[int, int]:
        """Model input ``(w, h)``: the frame scaled so its long side is ``long_side``.

        The aspect ratio is kept because the network was trained on undistorted people; a
        squashed 16:9 frame makes everyone look thin and costs accuracy.
        """
        return long_side_size(frame_width, frame_height, self.long_side)

    def preprocess(self, frame_bgr: np.ndarray) -> np.ndarray:
        """BGR frame to the normalised RGB NCHW float32 batch the network expects."""
        return to_batch(shrink(frame_bgr, self.input_size(frame_bgr.shape[1], frame_bgr.shape[0])))

    @property
    def takes_previous_mask(self) -> bool:
        """Whether the model now in use reads the previous frame's mask (``deepbg_live.prior``)."""
        return self.runtime.input_channels == 4

    def infer(self, batch: np.ndarray, prior: np.ndarray | None = None) -> np.ndarray:
        """Probability that each pixel is a person, ``(h, w)`` float32 in 0..1.

        ``prior`` is the previous-mask channel at the batch's size, for a model that takes one
        (``stream()`` keeps it). Without one (a photo), such a model gets the neutral channel and,
        with ``second_look``, then its own first answer; the two answers are averaged. A UserError
        if the model gives NaN: a broken model file would otherwise make a blank video.
        """
        runtime = self.runtime  # read once: the quality controller may swap it between frames
        if runtime.input_channels == 3:
            prob = self._look(runtime, batch)
        elif prior is not None:
            prob = self._look(runtime, batch, prior)
        else:
            prob = self._look(runtime, batch, neutral_prior(*batch.shape[-2:]))
            if self.second_look:
                prob = 0.5 * (prob + self._look(runtime, batch, prob))
        if not np.isfinite(prob).all():
            raise UserError("the model gave NaN or infinite values, not probabilities; check or re-export it")
        return prob

    def _look(self, runtime: Runtime, batch: np.ndarray, prior: np.ndarray | None = None) -> np.ndarray:
        """One (flip-averaged) run of ``runtime`` on ``batch``, with ``prior`` as a fourth channel if given."""
        height, width = batch.shape[-2:]
        if prior is not None:
            batch = with_prior(batch, prior)
        batch = _pad_to_min_side(batch)
        prob = _probability(runtime, batch)
        if self._flip_average:
            prob = 0.5 * (prob + _probability(runtime, batch[..., ::-1])[:, ::-1])
        return prob[:height, :width]

    def __call__(self, frame_bgr: np.ndarray) -> np.ndarray:
        """One photo's probability: no memory of any other frame."""
        return self.infer(self.preprocess(frame_bgr))

    def stream(self) -> SegmentStream:
        """A predictor for consecutive frames of one source, which feeds back the previous mask."""
        return SegmentStream(self)


class SegmentStream:
    """A ``Segmenter`` over one video or camera: a model that takes the previous mask is given its last.

    A model that takes none (such as the default ``realtime``, which the live controller may swap for
    ``fast``) is run as for photos, and the memory is dropped, so that a later switch does not see a
    stale mask. Every frame is checked for a cut, whatever the model: ``cut`` says whether the last
    frame began a new shot, which starts the memory afresh by itself (and tells the pipeline to
    reset its smoothers); ``reset()`` is for a new source.
    """

    def __init__(self, segmenter: Segmenter):
        self.segmenter = segmenter
        self.memory = PreviousMask()
        self.cuts = CutDetector()
        self.cut = False

    def reset(self) -> None:
        self.memory.reset()
        self.cuts.reset()
        self.cut = False

    def infer(self, frame_bgr: np.ndarray, batch: np.ndarray) -> np.ndarray:
        """The probability for ``frame_bgr``, whose preprocessed batch is ``batch``."""
        self.cut = self.cuts(frame_bgr)
        if not self.segmenter.takes_previous_mask:
            self.memory.reset()
            return self.segmenter.infer(batch)
        prior = self.memory.prior_for((batch.shape[-1], batch.shape[-2]), self.cut)
        prob = self.segmenter.infer(batch, prior)
        self.memory.remember(prob)
        return prob

    def __call__(self, frame_bgr: np.ndarray) -> np.ndarray:
        return self.infer(frame_bgr, self.segmenter.preprocess(frame_bgr))


def _probability(runtime: Runtime, batch: np.ndarray) -> np.ndarray:
    return runtime(np.ascontiguousarray(batch))[0, 0]


def _pad_to_min_side(batch: np.ndarray) -> np.ndarray:
    """``batch`` with its bottom and right edges repeated until both sides are at least ``MIN_INPUT_SIDE``."""
    pad_h, pad_w = (max(0, MIN_INPUT_SIDE - side) for side in batch.shape[-2:])
    if not pad_h and not pad_w:
        return batch
    return np.pad(batch, ((0, 0), (0, 0), (0, pad_h), (0, pad_w)), mode="edge")
