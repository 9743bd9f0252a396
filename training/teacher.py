"""Distillation: a trained model's soft masks as a second target beside the truth.

The teacher is an exported ONNX file (a shipped ``deepbg_live/weights/*.onnx``, never a reference
model from ``../shared/reference-models``), run by ONNX Runtime on each training batch: on this
CPU the int8 export is about 3x faster than the same network in eager torch, so the teacher adds
a fraction of a student step instead of doubling it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from deepbg_live.runtimes.base import RuntimeOptions
from deepbg_live.runtimes.onnx_runtime import OnnxRuntime

DISAGREEMENT = 0.5  # a teacher pixel this far from the truth is a teacher error, not a soft edge


class Teacher:
    """Person probabilities from an ONNX model for a batch of normalised training crops."""

    def __init__(self, path: Path, threads: int = 1):
        self.runtime = OnnxRuntime(Path(path).read_bytes(), RuntimeOptions(threads=threads, spinning=False))
        if self.runtime.input_channels != 3:
            raise ValueError(
                f"the teacher {path} takes {self.runtime.input_channels} channels; give an RGB model"
            )

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """``(N, 1, H, W)`` probabilities for the RGB channels of a ``(N, C, H, W)`` student batch."""
        rgb = images[:, :3].detach().cpu().float().numpy()
        # one image a run: the shipped exports fix the batch at 1, as the runtime feeds them
        masks = [self.runtime(np.ascontiguousarray(rgb[i : i + 1])) for i in range(len(rgb))]
        return torch.from_numpy(np.concatenate(masks)).to(images.device)


def distillation_loss(logits: torch.Tensor, teacher: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """BCE towards the teacher's probabilities wherever the teacher agrees with the truth.

    The soft values carry what a hard mask cannot: how sure a trained model is at hair, hands and
    motion-blurred edges. Where the teacher is plainly wrong (a chair kept as person, a lost hand)
    the truth alone decides, so the student does not inherit the errors we distil to remove.
    """
    agrees = ((teacher - target).abs() < DISAGREEMENT).to(logits.dtype)
    per_pixel = F.binary_cross_entropy_with_logits(logits, teacher, reduction="none")
    return (per_pixel * agrees).sum() / agrees.sum().clamp(min=1.0)
