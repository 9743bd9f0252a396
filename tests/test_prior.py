"""The previous-mask channel: what a model that takes one is fed, frame after frame."""

import numpy as np
import pytest

from deepbg_live.prior import NEUTRAL, CutDetector, PreviousMask, neutral_prior, with_prior


def frame(level: int, size=(64, 48)) -> np.ndarray:
    """A BGR frame with a bright square on a flat background; ``level`` sets the background."""
    width, height = size
    image = np.full((height, width, 3), level, np.uint8)
    image[10:30, 20:40] = 230
    return image


def probability(value: float, size=(32, 24)) -> np.ndarray:
    return np.full(size[::-1], value, np.float32)


def test_a_new_stream_has_no_previous_mask():
    assert PreviousMask().prior_for((32, 24)) is None


def test_the_next_frame_gets_the_last_answer():
    memory = PreviousMask()
    memory.prior_for((32, 24))
    memory.remember(probability(0.9))
    assert np.all(memory.prior_for((32, 24)) == np.float32(0.9))


def test_a_cut_has_no_previous_mask():
    memory = PreviousMask()
    memory.prior_for((32, 24))
    memory.remember(probability(0.9))
    assert memory.prior_for((32, 24), cut=True) is None
    assert memory.prior_for((32, 24)) is None, "the last shot's answer is forgotten"


def test_reset_forgets_the_stream():
    memory = PreviousMask()
    memory.prior_for((32, 24))
    memory.remember(probability(0.9))
    memory.reset()
    assert memory.prior_for((32, 24)) is None


def test_a_new_input_size_gets_the_last_answer_resized():
    memory = PreviousMask()
    answer = probability(0.1)
    answer[:, 16:] = 0.9
    memory.prior_for((32, 24))
    memory.remember(answer)
    prior = memory.prior_for((16, 12))
    assert prior.shape == (12, 16)
    assert prior[:, :6].max() < 0.2 and prior[:, 10:].min() > 0.8


def test_a_cut_is_a_change_of_picture_not_motion():
    cuts = CutDetector()
    assert not cuts(frame(40)), "the first frame follows nothing"
    assert not cuts(frame(42)), "a slight change is the same shot"
    cuts.reset()
    cuts(frame(40, size=(320, 240)))
    moved = frame(40, size=(320, 240))
    moved[10:30, 20:40] = 40
    moved[13:33, 24:44] = 230  # the square moves a few pixels
    assert not cuts(moved), "motion within the shot is no cut"
    assert cuts(frame(200)), "another picture is a cut"
    assert not cuts(frame(200)), "and the frame after it continues the new shot"


def test_a_reset_detector_starts_afresh():
    cuts = CutDetector()
    cuts(frame(40))
    cuts.reset()
    assert not cuts(frame(200)), "after a reset nothing came before"


def test_a_grey_frame_can_be_checked_for_cuts():
    cuts = CutDetector()
    assert not cuts(frame(40)[..., 0]) and cuts(frame(200)[..., 0])


@pytest.mark.parametrize("height, width", [(24, 32), (17, 9)])
def test_the_channel_is_appended_after_rgb(height, width):
    batch = np.zeros((1, 3, height, width), np.float32)
    joined = with_prior(batch, neutral_prior(height, width))
    assert joined.shape == (1, 4, height, width) and joined.dtype == np.float32
    assert np.all(joined[:, 3] == NEUTRAL) and np.all(joined[:, :3] == 0)
