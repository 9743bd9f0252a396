"""The metric functions of ``evaluation.metrics`` against cases worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest

from evaluation.metrics import (
    all_metrics,
    boundary,
    boundary_f,
    dice,
    dtssd,
    flicker,
    iou,
    mad,
    mean_iou,
    pixel_accuracy,
)


def square(top: int = 10, left: int = 10, side: int = 10, size: int = 40) -> np.ndarray:
    mask = np.zeros((size, size), np.float32)
    mask[top : top + side, left : left + side] = 1.0
    return mask


def test_perfect_mask_scores_perfectly():
    truth = square()
    scores = all_metrics(truth, truth)
    assert scores == {"iou": 1.0, "miou": 1.0, "dice": 1.0, "pixel_acc": 1.0, "boundary_f": 1.0, "mad": 0.0}


def test_empty_prediction_of_empty_truth_is_a_perfect_match():
    empty = np.zeros((40, 40), np.float32)
    assert iou(empty, empty) == 1.0
    assert mean_iou(empty, empty) == 1.0
    assert dice(empty, empty) == 1.0
    assert boundary_f(empty, empty) == 1.0
    assert mad(empty, empty) == 0.0


def test_empty_prediction_of_a_person_scores_zero():
    empty, truth = np.zeros((40, 40), np.float32), square()
    assert iou(empty, truth) == 0.0
    assert dice(empty, truth) == 0.0
    assert boundary_f(empty, truth) == 0.0
    # Background IoU: 1500 true background pixels inside a predicted background of 1600.
    assert mean_iou(empty, truth) == pytest.approx((0 + 1500 / 1600) / 2)
    assert mad(empty, truth) == pytest.approx(100 / 1600)
    assert pixel_accuracy(empty, truth) == pytest.approx(1500 / 1600)


def test_mask_shifted_two_pixels_right():
    truth, pred = square(left=10), square(left=12)
    # Overlap 8x10 = 80; union 100 + 100 - 80 = 120.
    assert iou(pred, truth) == pytest.approx(80 / 120)
    assert dice(pred, truth) == pytest.approx(2 * 80 / 200)
    # Background: union of foregrounds is 120, so 1480 pixels are background in both, of 1520.
    assert mean_iou(pred, truth) == pytest.approx((80 / 120 + 1480 / 1520) / 2)
    assert mad(pred, truth) == pytest.approx(40 / 1600)
    assert pixel_accuracy(pred, truth) == pytest.approx(1 - 40 / 1600)


def test_boundary_f_of_shifted_mask_depends_on_tolerance():
    truth, pred = square(left=10), square(left=12)
    # 40x40 image: the tolerance rounds to a 1-pixel radius (a 3x3 cross). Of each 36-pixel ring,
    # 9 pixels of the top row are within reach of the other ring's top row, plus the side-column
    # pixel just below it (its upper neighbour is on the other's top row); likewise at the bottom.
    # The rest of the side columns are 2 px away. So precision = recall = 20 / 36.
    assert boundary(truth).sum() == 36
    assert boundary_f(pred, truth) == pytest.approx(20 / 36)
    # A 2-pixel radius (tolerance * diagonal = 2) covers the whole shift.
    assert boundary_f(pred, truth, tolerance=2 / np.hypot(40, 40)) == 1.0


def test_soft_alpha_mad_and_threshold():
    truth = square()
    alpha = truth * 0.8 + 0.1  # 0.9 on the person, 0.1 elsewhere: right side of 0.5 everywhere
    assert mad(alpha, truth) == pytest.approx(0.1)
    assert iou(alpha, truth) == 1.0


def test_constant_sequence_has_no_flicker():
    frames = [square()] * 5
    assert flicker(frames, frames) == 0.0
    assert dtssd(frames, frames) == 0.0


def test_flicker_of_alternating_alpha_on_a_still_truth():
    truth = [square()] * 4
    alphas = [np.full((40, 40), v, np.float32) for v in (0.2, 0.6, 0.2, 0.6)]
    assert flicker(alphas, truth) == pytest.approx(0.4)
    assert dtssd(alphas, truth) == pytest.approx(0.4)


def test_flicker_ignores_pixels_where_the_truth_changed():
    truths = [square(left=10 + t) for t in range(4)]  # the person moves one pixel a frame
    assert flicker(truths, truths) == 0.0  # following it exactly is not flicker...
    assert dtssd(truths, truths) == 0.0
    still = [truths[0]] * 4
    # ...and lagging behind is not flicker either, but dtSSD sees the missed motion: each step
    # changes 20 of 1600 pixels by 1, an RMS of sqrt(20 / 1600).
    assert flicker(still, truths) == 0.0
    assert dtssd(still, truths) == pytest.approx(np.sqrt(20 / 1600))


def test_single_frame_has_no_temporal_score():
    assert flicker([square()], [square()]) == 0.0
    assert dtssd([square()], [square()]) == 0.0
