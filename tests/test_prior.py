"""The previous-mask channel: what a model that takes one is fed, frame after frame."""

import numpy as np
import pytest

from deepbg_live.prior import NEUTRAL, PreviousMask, neutral_prior, with_prior


def frame(level: int, size=(64, 48)) -> np.ndarray:
    """A BGR frame with a bright square on a flat background; ``level`` sets the background."""
    width, height = size
    image = np.full((height, width, 3), level, np.uint8)
    image[10:30, 20:40] = 230
    return image


def probability(value: float, size=(32, 24)) -> np.ndarray:
    return np.full(size[::-1], value, np.float32)


def test_a_new_stream_gets_the_neutral_channel():
    prior = PreviousMask().prior_for(frame(40), (32, 24))
    assert prior.shape == (24, 32) and prior.dtype == np.float32
    assert np.all(prior == NEUTRAL)


def test_the_next_frame_gets_the_last_answer():
    memory = PreviousMask()
    memory.prior_for(frame(40), (32, 24))
    memory.remember(probability(0.9))
    assert np.all(memory.prior_for(frame(42), (32, 24)) == np.float32(0.9))


def test_a_cut_to_another_picture_gets_the_neutral_channel():
    memory = PreviousMask()
    memory.prior_for(frame(40), (32, 24))
    memory.remember(probability(0.9))
    assert np.all(memory.prior_for(frame(200), (32, 24)) == NEUTRAL)


def test_reset_forgets_the_stream():
    memory = PreviousMask()
    memory.prior_for(frame(40), (32, 24))
    memory.remember(probability(0.9))
    memory.reset()
    assert np.all(memory.prior_for(frame(40), (32, 24)) == NEUTRAL)


def test_a_new_input_size_gets_the_last_answer_resized():
    memory = PreviousMask()
    answer = probability(0.1)
    answer[:, 16:] = 0.9
    memory.prior_for(frame(40), (32, 24))
    memory.remember(answer)
    prior = memory.prior_for(frame(40), (16, 12))
    assert prior.shape == (12, 16)
    assert prior[:, :6].max() < 0.2 and prior[:, 10:].min() > 0.8


@pytest.mark.parametrize("height, width", [(24, 32), (17, 9)])
def test_the_channel_is_appended_after_rgb(height, width):
    batch = np.zeros((1, 3, height, width), np.float32)
    joined = with_prior(batch, neutral_prior(height, width))
    assert joined.shape == (1, 4, height, width) and joined.dtype == np.float32
    assert np.all(joined[:, 3] == NEUTRAL) and np.all(joined[:, :3] == 0)
