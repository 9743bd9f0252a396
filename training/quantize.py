"""Static int8 quantisation of an exported U-Net: 1.7-1.9x as fast on a CPU here, same masks.

Static, not dynamic: dynamic int8 is 4-8x *slower* than fp32 here, because it requantises every
activation on the fly (shared/notes/measured-facts.md). Static QDQ with per-channel weights fixes
the activation ranges once, from calibration frames that go through the runtime's own
preprocessing, and ONNX Runtime then runs fused int8 convolutions.
"""

from __future__ import annotations

import random
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

import cv2
import numpy as np

from deepbg_live.model_files import WEIGHTS_SHA256
from deepbg_live.prior import neutral_prior, with_prior
from deepbg_live.runtimes.onnx_runtime import create_session
from evaluation.layout import Pair, read_pair
from evaluation.metrics import iou

CALIBRATION_FRAMES = 64


def calibration_batches(
    pairs: list[Pair],
    preprocess: Callable[[np.ndarray], np.ndarray],
    count: int = CALIBRATION_FRAMES,
    seed: int = 0,
    previous_mask: bool = False,
) -> list[np.ndarray]:
    """``count`` of the photos in ``pairs``, picked with a fixed seed, as the network's input batches.

    ``preprocess`` is ``Segmenter.preprocess``, so calibration sees exactly what inference sees. With
    ``previous_mask``, every other batch carries its photo's blurred truth as the previous mask (as
    on video) and the rest the neutral one (as for photos), so both ranges are calibrated.
    """
    chosen = random.Random(seed).sample(pairs, min(count, len(pairs)))
    batches = []
    for i, pair in enumerate(chosen):
        rgb, mask = read_pair(pair, long_side=None)
        batch = preprocess(np.ascontiguousarray(rgb[:, :, ::-1]))  # read_pair gives RGB; a camera BGR
        if previous_mask:
            height, width = batch.shape[-2:]
            truth = cv2.GaussianBlur(cv2.resize(mask, (width, height)), (0, 0), 2).astype(np.float32) / 255
            batch = with_prior(batch, truth if i % 2 else neutral_prior(height, width))
        batches.append(batch)
    return batches


def quantize_int8(onnx_bytes: bytes, batches: Iterable[np.ndarray], weights_sha256: str = "") -> bytes:
    """The int8 (QDQ) version of an fp32 ONNX model, with its metadata kept.

    ``weights_sha256`` names the weights file it was made from, so the runtime can refuse an int8
    file that has drifted from them.
    """
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Frames(CalibrationDataReader):
        def __init__(self) -> None:
            self.frames = iter(batches)

        def get_next(self) -> dict | None:
            batch = next(self.frames, None)
            return None if batch is None else {"image": batch}

    with tempfile.TemporaryDirectory() as tmp:
        fp32, prepared, int8 = (Path(tmp) / name for name in ("fp32.onnx", "prep.onnx", "int8.onnx"))
        fp32.write_bytes(onnx_bytes)
        # Symbolic shape inference cannot follow the traced padding arithmetic; ONNX's own can.
        quant_pre_process(str(fp32), str(prepared), skip_symbolic_shape=True)
        quantize_static(
            str(prepared),
            str(int8),
            Frames(),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            # 7-bit weights: CPUs without VNNI multiply u8 by s8 into int16 pairs (VPMADDUBSW),
            # which saturates for 8-bit weights; 255 * 63 * 2 fits, so masks match on every CPU.
            reduce_range=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
        )
        model = onnx.load(str(int8))
    source = onnx.load_from_string(onnx_bytes)
    own = {"precision": "int8", WEIGHTS_SHA256: weights_sha256}  # replace the source's, never duplicate
    del model.metadata_props[:]
    for entry in source.metadata_props:
        if entry.key not in own:
            model.metadata_props.add(key=entry.key, value=entry.value)
    for key, value in own.items():
        if value:
            model.metadata_props.add(key=key, value=value)
    return model.SerializeToString()


def mask_agreement(fp32_bytes: bytes, int8_bytes: bytes, batches: Iterable[np.ndarray]) -> float:
    """Mean IoU between the fp32 and int8 person masks (probability > 0.5) over ``batches``."""
    sessions = [create_session(data) for data in (fp32_bytes, int8_bytes)]
    scores = []
    for batch in batches:
        fp32_mask, int8_mask = (session.run(None, {"image": batch})[0] > 0 for session in sessions)
        scores.append(iou(int8_mask, fp32_mask))
    return float(np.mean(scores))
