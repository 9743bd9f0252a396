"""TemporalSmoother: steadier masks on a still person, no lag when the person moves."""

from __future__ import annotations

import numpy as np
import pytest

from deepbg_live.smoothing import TemporalSmoother

SHAPE = (108, 192)


def person_mask(x0: int) -> np.ndarray:
    """A clean mask: a 'person' occupying columns x0..x0+60."""
    mask = np.zeros(SHAPE, np.float32)
    mask[20:, x0 : x0 + 60] = 1.0
    return mask


def noisy_frames(mask: np.ndarray, count: int, seed: int = 0) -> list[np.ndarray]:
    """The model's typical flicker: independent noise, strongest at mid probabilities."""
    rng = np.random.default_rng(seed)
    soft = np.clip(mask * 0.9 + 0.05, 0, 1)
    return [np.clip(soft + rng.normal(0, 0.12, SHAPE), 0, 1).astype(np.float32) for _ in range(count)]


def mean_frame_to_frame_change(frames: list[np.ndarray]) -> float:
    return float(np.mean([np.abs(b - a).mean() for a, b in zip(frames, frames[1:], strict=False)]))


def test_strength_zero_returns_the_input_unchanged():
    smoother = TemporalSmoother(0.0)
    for frame in noisy_frames(person_mask(50), 3):
        assert smoother(frame) is frame


@pytest.mark.parametrize("strength", [-0.1, 1.5])
def test_strength_outside_0_to_1_is_rejected(strength):
    with pytest.raises(ValueError):
        TemporalSmoother(strength)


def test_constant_input_gives_the_same_constant_output():
    smoother = TemporalSmoother(0.8)
    frame = np.full(SHAPE, 0.7, np.float32)
    for _ in range(5):
        out = smoother(frame)
        assert out.dtype == np.float32 and out.shape == SHAPE
        np.testing.assert_allclose(out, 0.7, atol=1e-6)


def test_a_noisy_still_mask_flickers_less_after_smoothing():
    frames = noisy_frames(person_mask(60), 30)
    smoother = TemporalSmoother(0.5)
    smoothed = [smoother(f) for f in frames]
    assert mean_frame_to_frame_change(smoothed[5:]) < 0.6 * mean_frame_to_frame_change(frames[5:])


def test_stronger_smoothing_is_steadier():
    frames = noisy_frames(person_mask(60), 30)
    changes = []
    for strength in (0.3, 0.6, 1.0):
        smoother = TemporalSmoother(strength)
        changes.append(mean_frame_to_frame_change([smoother(f) for f in frames][5:]))
    assert changes[0] > changes[1] > changes[2]


def test_a_person_who_moves_is_followed_within_a_few_frames():
    before, after = person_mask(30), person_mask(100)
    smoother = TemporalSmoother(1.0)  # even at full strength
    for _ in range(10):
        smoother(before)
    outputs = [smoother(after) for _ in range(3)]
    assert np.abs(outputs[0] - after).max() < 0.1  # a full flip is followed at once
    assert np.abs(outputs[-1] - after).max() < 0.01


def test_output_stays_in_0_to_1():
    smoother = TemporalSmoother(0.7)
    for frame in noisy_frames(person_mask(60), 10):
        out = smoother(frame * 1.2 - 0.1)  # slightly out-of-range input
        assert out.min() >= 0.0 and out.max() <= 1.0


def test_a_new_frame_size_resets_the_history():
    smoother = TemporalSmoother(0.9)
    smoother(np.zeros(SHAPE, np.float32))
    bigger = np.ones((144, 192), np.float32)
    np.testing.assert_array_equal(smoother(bigger), bigger)


def test_reset_forgets_the_previous_mask():
    smoother = TemporalSmoother(0.9)
    smoother(np.zeros(SHAPE, np.float32))
    smoother.reset()
    half = np.full(SHAPE, 0.5, np.float32)
    np.testing.assert_array_equal(smoother(half), half)


# --- with the frame as a guide (as the refiner smooths its alpha) ---------------------------


def still_scene(count: int, seed: int = 1) -> list[np.ndarray]:
    """A still grey frame with a little sensor noise: nothing in it moves."""
    rng = np.random.default_rng(seed)
    base = np.tile(np.linspace(0.2, 0.8, SHAPE[1], dtype=np.float32), (SHAPE[0], 1))
    return [(base + rng.normal(0, 3 / 255, SHAPE)).astype(np.float32) for _ in range(count)]


def jittery_alpha(count: int, seed: int = 2) -> list[np.ndarray]:
    """A still person's alpha with the guided filter's small noise on it."""
    rng = np.random.default_rng(seed)
    soft = np.clip(person_mask(60) * 0.9 + 0.05, 0, 1)
    return [np.clip(soft + rng.normal(0, 0.03, SHAPE), 0, 1).astype(np.float32) for _ in range(count)]


def test_a_still_guide_holds_small_alpha_noise_harder():
    alphas, scene = jittery_alpha(40), still_scene(40)
    plain, guided = TemporalSmoother(0.5), TemporalSmoother(0.5)
    without = [plain(a) for a in alphas][10:]
    with_guide = [guided(a, g) for a, g in zip(alphas, scene, strict=True)][10:]
    assert mean_frame_to_frame_change(with_guide) < 0.6 * mean_frame_to_frame_change(without)


def test_where_the_guide_changes_the_smoother_is_as_quick_as_without_one():
    alphas = jittery_alpha(6)
    moving = [np.full(SHAPE, i % 2, np.float32) for i in range(len(alphas))]  # lights off, on, off...
    plain, guided = TemporalSmoother(0.5), TemporalSmoother(0.5)
    for alpha, guide in zip(alphas, moving, strict=True):
        np.testing.assert_allclose(guided(alpha, guide), plain(alpha), atol=1e-6)


def test_a_person_who_moves_in_a_still_lit_scene_is_still_followed():
    smoother, scene = TemporalSmoother(1.0), still_scene(13)
    for guide in scene[:10]:
        smoother(person_mask(30), guide)
    after = person_mask(100)
    outputs = [smoother(after, guide) for guide in scene[10:]]
    assert np.abs(outputs[0] - after).max() < 0.1  # a full flip needs no help from the guide


def test_a_guide_of_another_shape_is_rejected():
    with pytest.raises(ValueError, match="guide"):
        TemporalSmoother(0.5)(person_mask(60), np.zeros((10, 10), np.float32))


def test_reset_forgets_the_previous_guide_too():
    smoother, scene = TemporalSmoother(0.9), still_scene(2)
    smoother(np.zeros(SHAPE, np.float32), scene[0])
    smoother.reset()
    half = np.full(SHAPE, 0.5, np.float32)
    np.testing.assert_array_equal(smoother(half, scene[1]), half)
