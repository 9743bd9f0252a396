"""Segmentation metrics on numpy masks. Shared by training, evaluation and the benchmarks.

Hard masks are boolean (or anything where ``> 0.5`` means person on a 0..1 scale); alphas are
floats in 0..1. A pair of empty masks counts as a perfect match.
"""

from __future__ import annotations

import cv2
import numpy as np

BOUNDARY_TOLERANCE = 0.0075  # boundary F tolerance, as a fraction of the image diagonal


def _binary(mask: np.ndarray) -> np.ndarray:
    return mask > 0.5 if mask.dtype != bool else mask


def iou(pred: np.ndarray, true: np.ndarray) -> float:
    """Foreground intersection over union."""
    pred, true = _binary(pred), _binary(true)
    union = np.logical_or(pred, true).sum()
    return 1.0 if union == 0 else float(np.logical_and(pred, true).sum() / union)


def mean_iou(pred: np.ndarray, true: np.ndarray) -> float:
    """Mean of the person IoU and the background IoU."""
    pred, true = _binary(pred), _binary(true)
    return (iou(pred, true) + iou(~pred, ~true)) / 2


def dice(pred: np.ndarray, true: np.ndarray) -> float:
    pred, true = _binary(pred), _binary(true)
    total = pred.sum() + true.sum()
    return 1.0 if total == 0 else float(2 * np.logical_and(pred, true).sum() / total)


def pixel_accuracy(pred: np.ndarray, true: np.ndarray) -> float:
    return float((_binary(pred) == _binary(true)).mean())


def mad(alpha: np.ndarray, true: np.ndarray) -> float:
    """Mean absolute difference between a soft alpha and the truth, both on a 0..1 scale."""
    return float(np.abs(alpha.astype(np.float32) - true.astype(np.float32)).mean())


def boundary(mask: np.ndarray) -> np.ndarray:
    """The one-pixel-wide inner edge of a boolean mask."""
    mask = mask.astype(np.uint8)
    return (mask - cv2.erode(mask, np.ones((3, 3), np.uint8), borderType=cv2.BORDER_REPLICATE)) > 0


def boundary_f(pred: np.ndarray, true: np.ndarray, tolerance: float = BOUNDARY_TOLERANCE) -> float:
    """F-score of boundary pixels matched within ``tolerance * diagonal`` pixels (as in DAVIS)."""
    pred_edge, true_edge = boundary(_binary(pred)), boundary(_binary(true))
    if not pred_edge.any() and not true_edge.any():
        return 1.0
    if not pred_edge.any() or not true_edge.any():
        return 0.0
    radius = max(1, round(tolerance * np.hypot(*pred.shape[:2])))
    disk = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
    near_true = cv2.dilate(true_edge.astype(np.uint8), disk) > 0
    near_pred = cv2.dilate(pred_edge.astype(np.uint8), disk) > 0
    precision = (pred_edge & near_true).sum() / pred_edge.sum()
    recall = (true_edge & near_pred).sum() / true_edge.sum()
    return 0.0 if precision + recall == 0 else float(2 * precision * recall / (precision + recall))


def all_metrics(alpha: np.ndarray, true: np.ndarray) -> dict[str, float]:
    """Every metric for one soft prediction against one truth mask (both 0..1)."""
    pred, truth = alpha > 0.5, true > 0.5
    return {
        "iou": iou(pred, truth),
        "miou": mean_iou(pred, truth),
        "dice": dice(pred, truth),
        "pixel_acc": pixel_accuracy(pred, truth),
        "boundary_f": boundary_f(pred, truth),
        "mad": mad(alpha, true),
    }


def flicker(alphas: list[np.ndarray], truths: list[np.ndarray]) -> float:
    """Mean |alpha_t - alpha_{t-1}| over pixels whose truth did not change between the frames."""
    total, count = 0.0, 0
    for t in range(1, len(alphas)):
        steady = np.abs(truths[t].astype(np.float32) - truths[t - 1].astype(np.float32)) < 1e-6
        diff = np.abs(alphas[t].astype(np.float32) - alphas[t - 1].astype(np.float32))
        total += float(diff[steady].sum())
        count += int(steady.sum())
    return total / count if count else 0.0


def dtssd(alphas: list[np.ndarray], truths: list[np.ndarray]) -> float:
    """Temporal SSD of alpha changes against truth changes (the matting 'dtSSD'), mean over frames."""
    scores = []
    for t in range(1, len(alphas)):
        d_pred = alphas[t].astype(np.float32) - alphas[t - 1].astype(np.float32)
        d_true = truths[t].astype(np.float32) - truths[t - 1].astype(np.float32)
        scores.append(float(np.sqrt(np.mean((d_pred - d_true) ** 2))))
    return float(np.mean(scores)) if scores else 0.0
