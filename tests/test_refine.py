"""EdgeRefiner: a full-size uint8 alpha whose edges land on the frame's real edges."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from deepbg_live.refine import EdgeRefiner
from deepbg_live.smoothing import TemporalSmoother
from tests.test_smoothing import mean_frame_to_frame_change

HEIGHT, WIDTH = 360, 640


@pytest.fixture(scope="module")
def scene() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A bright 'person' (ellipse) on a dark, slightly noisy background, plus the low-res,
    blurry probability a small network would give for it, and the true full-res mask."""
    truth = np.zeros((HEIGHT, WIDTH), np.uint8)
    cv2.ellipse(truth, (320, 200), (120, 170), 0, 0, 360, 255, -1)
    rng = np.random.default_rng(0)
    frame = np.where(truth[..., None] > 0, np.uint8([200, 180, 170]), np.uint8([60, 70, 80]))
    frame = np.clip(frame + rng.normal(0, 5, frame.shape), 0, 255).astype(np.uint8)
    low = cv2.resize(truth, (192, 108), interpolation=cv2.INTER_AREA).astype(np.float32) / 255
    prob = cv2.GaussianBlur(low, (0, 0), 1.0)
    return frame, prob, truth


def edge_error(alpha: np.ndarray, truth: np.ndarray) -> float:
    """Mean |alpha - truth| in a 20-pixel band around the true edge, where refinement matters."""
    kernel = np.ones((21, 21), np.uint8)
    band = cv2.dilate(truth, kernel) != cv2.erode(truth, kernel)
    return float(np.abs(alpha.astype(np.float32) - truth)[band].mean())


@pytest.mark.parametrize("guided", [True, False])
def test_output_is_uint8_alpha_of_the_frame_size(scene, guided):
    frame, prob, _ = scene
    alpha = EdgeRefiner(guided=guided)(prob, frame)
    assert alpha.dtype == np.uint8
    assert alpha.shape == (HEIGHT, WIDTH)


def test_solid_regions_stay_fully_opaque_and_fully_transparent(scene):
    frame, prob, _ = scene
    alpha = EdgeRefiner()(prob, frame)
    assert alpha[200, 320] == 255  # centre of the person
    assert alpha[10, 10] == 0  # far corner of the background


def test_guided_edge_snaps_to_the_true_edge_better_than_bilinear(scene):
    frame, prob, truth = scene
    guided = edge_error(EdgeRefiner()(prob, frame), truth)
    bilinear = edge_error(EdgeRefiner(guided=False)(prob, frame), truth)
    assert guided < 0.5 * bilinear


def test_a_misplaced_mask_edge_is_pulled_onto_the_frame_edge(scene):
    frame, prob, truth = scene
    shifted = np.roll(prob, 1, axis=1)  # the network's edge one model pixel (~3 px) off
    guided = edge_error(EdgeRefiner()(shifted, frame), truth)
    bilinear = edge_error(EdgeRefiner(guided=False)(shifted, frame), truth)
    assert guided < 0.6 * bilinear


def test_unguided_is_plain_bilinear_upsampling(scene):
    frame, prob, _ = scene
    expected = cv2.resize(
        np.round(prob * 255).astype(np.uint8), (WIDTH, HEIGHT), interpolation=cv2.INTER_LINEAR
    )
    alpha = EdgeRefiner(guided=False)(prob, frame)
    assert np.abs(alpha.astype(int) - expected).max() <= 1


def test_feather_softens_the_edge(scene):
    frame, prob, _ = scene
    sharp = EdgeRefiner()(prob, frame)
    soft = EdgeRefiner(feather=12)(prob, frame)
    partial = lambda alpha: int(np.count_nonzero((alpha > 10) & (alpha < 245)))  # noqa: E731
    assert partial(soft) > 1.5 * partial(sharp)


def test_frames_of_any_aspect_ratio_work():
    frame = np.random.default_rng(3).integers(0, 256, (481, 359, 3), dtype=np.uint8)
    prob = np.random.default_rng(4).random((192, 143), dtype=np.float32)
    assert EdgeRefiner()(prob, frame).shape == (481, 359)


def test_bad_settings_are_rejected():
    with pytest.raises(ValueError):
        EdgeRefiner(radius=0)
    with pytest.raises(ValueError):
        EdgeRefiner(feather=-1)


def noisy_frames(frame: np.ndarray, count: int) -> list[np.ndarray]:
    """The same still scene with fresh sensor noise in every frame, as a webcam films it."""
    rng = np.random.default_rng(1)
    return [np.clip(frame + rng.normal(0, 4, frame.shape), 0, 255).astype(np.uint8) for _ in range(count)]


def mean_change(alphas: list[np.ndarray]) -> float:
    """Mean frame-to-frame change of uint8 alphas (as floats, so that differences do not wrap)."""
    return mean_frame_to_frame_change([a.astype(np.float32) for a in alphas])


def test_a_smoother_steadies_the_refined_alpha_of_a_still_noisy_scene(scene):
    frame, prob, _ = scene
    refiner, frames = EdgeRefiner(), noisy_frames(frame, 12)
    plain = [refiner(prob, f) for f in frames]
    smoother = TemporalSmoother(0.5)
    steadied = [refiner(prob, f, smoother) for f in frames]
    assert mean_change(steadied) < 0.7 * mean_change(plain)


def test_a_smoother_still_follows_a_person_who_moves(scene):
    frame, prob, truth = scene
    moved_frame, moved_truth = np.roll(frame, 60, axis=1), np.roll(truth, 60, axis=1)
    moved_prob = np.roll(prob, 18, axis=1)  # 60 frame pixels at the probability's 192 / 640 scale
    refiner, smoother = EdgeRefiner(), TemporalSmoother(0.5)
    refiner(prob, frame, smoother)
    followed = refiner(moved_prob, moved_frame, smoother)
    assert edge_error(followed, moved_truth) < 1.2 * edge_error(refiner(moved_prob, moved_frame), moved_truth)


def test_without_a_smoother_the_refiner_keeps_no_state(scene):
    frame, prob, _ = scene
    refiner = EdgeRefiner()
    first = refiner(prob, frame)
    refiner(np.roll(prob, 30, axis=1), np.roll(frame, 100, axis=1))
    assert np.array_equal(refiner(prob, frame), first)
