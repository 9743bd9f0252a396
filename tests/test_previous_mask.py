"""A model that takes the previous frame's mask: what the engine and the pipeline feed it."""

from __future__ import annotations

import numpy as np

from deepbg_live.capture import open_source
from deepbg_live.composite import ColorBackground
from deepbg_live.engine import Segmenter
from deepbg_live.pipeline import Pipeline
from deepbg_live.prior import NEUTRAL
from deepbg_live.runtimes import Backend, Precision
from tests.media import make_clip, make_image


class PriorRecorder:
    """A 4-channel Runtime that records the previous-mask channel it gets and answers 0.15, 0.25, ...

    Never NEUTRAL (0.5), so that a fed-back answer is told apart from the neutral channel.
    """

    name = Backend.ONNXRUNTIME
    precision = Precision.FP32
    long_side = 64
    input_channels = 4

    def __init__(self):
        self.priors: list[np.ndarray] = []

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        assert batch.shape[1] == 4
        self.priors.append(batch[0, 3].copy())
        answer = 0.05 + 0.1 * (len(self.priors) % 9)
        return np.full((1, 1, *batch.shape[-2:]), answer, np.float32)


def scene(level: int = 60) -> np.ndarray:
    image = np.full((48, 64, 3), level, np.uint8)
    image[10:40, 20:44] = 220
    return image


def is_neutral(prior: np.ndarray) -> bool:
    return bool(np.all(prior == np.float32(NEUTRAL)))


def first_answers(count: int) -> list[float]:
    """What ``PriorRecorder`` answers to its first ``count`` calls."""
    return [np.float32(0.05 + 0.1 * ((i + 1) % 9)) for i in range(count)]


def test_a_photo_is_looked_at_twice_first_neutral_then_with_its_own_first_answer():
    runtime = PriorRecorder()
    answer = Segmenter(runtime)(scene())
    first, second = first_answers(2)
    assert len(runtime.priors) == 2
    assert is_neutral(runtime.priors[0])
    assert np.all(runtime.priors[1] == first)
    np.testing.assert_allclose(answer, (first + second) / 2, err_msg="the two looks' answers averaged")


def test_without_the_second_look_a_photo_gets_only_the_neutral_channel():
    runtime = PriorRecorder()
    Segmenter(runtime, second_look=False)(scene())
    assert len(runtime.priors) == 1 and is_neutral(runtime.priors[0])


def test_a_stream_feeds_each_frame_the_answer_for_the_one_before():
    runtime = PriorRecorder()
    stream = Segmenter(runtime).stream()
    answers = [stream(scene(60 + i)) for i in range(3)]
    assert len(runtime.priors) == 4, "two looks at the first frame, which has no history; one after"
    np.testing.assert_array_equal(runtime.priors[2], answers[0])
    np.testing.assert_array_equal(runtime.priors[3], answers[1])


def test_a_stream_starts_afresh_at_a_cut_and_after_reset():
    runtime = PriorRecorder()
    stream = Segmenter(runtime).stream()
    stream(scene(60))
    stream(scene(250 - 60))  # another shot: two looks again, the first neutral
    assert len(runtime.priors) == 4 and is_neutral(runtime.priors[2])
    assert not is_neutral(runtime.priors[3])
    stream(scene(250 - 60))
    assert len(runtime.priors) == 5 and not is_neutral(runtime.priors[4])
    stream.reset()
    stream(scene(250 - 60))
    assert is_neutral(runtime.priors[5])


def test_a_photo_never_sees_another_frames_answer():
    runtime = PriorRecorder()
    segmenter = Segmenter(runtime)
    segmenter.stream()(scene())
    for _ in range(2):
        segmenter(scene())
    answers = first_answers(6)
    assert is_neutral(runtime.priors[2]) and np.all(runtime.priors[3] == answers[2])
    assert is_neutral(runtime.priors[4]) and np.all(runtime.priors[5] == answers[4])


def test_a_flip_averaged_frame_gets_its_previous_mask_mirrored_too():
    runtime = PriorRecorder()
    stream = Segmenter(runtime, flip_average=True).stream()
    stream(scene())  # two looks, each of a frame and its mirror image
    previous = np.linspace(0, 1, 64, dtype=np.float32)[None].repeat(48, 0)
    stream.memory.remember(previous)  # as if the first frame had given this answer
    stream(scene())
    np.testing.assert_array_equal(runtime.priors[4], previous)
    np.testing.assert_array_equal(runtime.priors[5], previous[:, ::-1])


def test_the_pipeline_feeds_back_masks_along_a_video(tmp_path):
    runtime = PriorRecorder()
    clip = make_clip(tmp_path / "clip.mp4", frames=6, size=(64, 48), audio=False)
    with open_source(input=clip) as source:
        Pipeline(Segmenter(runtime), ColorBackground()).run(source)
    assert is_neutral(runtime.priors[0])
    assert not any(is_neutral(prior) for prior in runtime.priors[1:])


def test_the_pipeline_starts_every_photo_of_a_folder_from_the_neutral_mask(tmp_path):
    runtime = PriorRecorder()
    for i in range(3):
        make_image(tmp_path / "photos" / f"{i}.png", color=(0, 0, 200))  # alike: no cut to notice
    with open_source(input=tmp_path / "photos") as source:
        Pipeline(Segmenter(runtime), ColorBackground()).run(source)
    answers = first_answers(6)
    assert len(runtime.priors) == 6, "two looks a photo"
    assert all(is_neutral(prior) for prior in runtime.priors[::2])
    assert all(
        np.all(prior == answer) for prior, answer in zip(runtime.priors[1::2], answers[::2], strict=True)
    )


def test_a_new_run_of_the_pipeline_starts_without_the_last_runs_mask(tmp_path):
    runtime = PriorRecorder()
    clip = make_clip(tmp_path / "clip.mp4", frames=3, size=(64, 48), audio=False)
    pipeline = Pipeline(Segmenter(runtime), ColorBackground())
    for _ in range(2):
        with open_source(input=clip) as source:
            pipeline.run(source)
    assert len(runtime.priors) == 8, "each run: two looks at its first frame, one at each of the others"
    assert is_neutral(runtime.priors[4])


def test_an_exported_previous_mask_model_runs_as_a_four_channel_onnx_model(tmp_path):
    from deepbg_live.export import export_onnx
    from deepbg_live.model import build_model
    from deepbg_live.runtimes import open_runtime

    export_onnx(build_model("mobile-video"), tmp_path / "video.onnx")
    segmenter = Segmenter(open_runtime(tmp_path / "video.onnx", threads=1))
    assert segmenter.takes_previous_mask
    stream = segmenter.stream()
    probabilities = [stream(scene()) for _ in range(2)]
    size = segmenter.input_size(64, 48)[::-1]
    assert all(p.shape == size and np.isfinite(p).all() for p in probabilities)
    assert not np.array_equal(probabilities[0], probabilities[1]), "the fed-back mask changed the answer"
