"""The reference-model harness: each shared reference's input and output format is read right
(tiny generated ONNX models with a known answer, no real reference files needed), missing files
are only a note, the comparison reaches the report, and, where ../shared has the real files, they
find the astronaut that ours finds."""

from __future__ import annotations

import json
import warnings
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from click.testing import CliRunner
from torch import nn

from benchmarks import accuracy, reference, report, temporal
from benchmarks.__main__ import main
from benchmarks.context import Context
from evaluation.accuracy import prob_at
from tests.test_benchmarks import miniature_data, write_pair

SHARED = {settings.label: settings for settings in reference.SHARED_REFERENCES}
REAL_REFERENCES = Path(__file__).resolve().parents[2] / "shared" / "reference-models"
ASTRONAUT = Path(__file__).resolve().parents[1] / "deepbg_live" / "samples" / "astronaut.jpg"

# SINet's input statistics as ../shared/reference-models/README.md gives them, in BGR order:
# written out again here so that a slip in the harness's copy cannot hide.
README_SINET_MEAN_BGR = (102.890434, 111.25247, 126.91212)
README_SINET_STD_BGR = (62.93292, 62.82138, 66.355705)


class SelfieLike(nn.Module):
    """MediaPipe selfie's format: NHWC RGB / 255 in, NHWC probability out. Person = the red level."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[..., 0:1]


class MeetLike(nn.Module):
    """MediaPipe Meet's format: NHWC RGB / 255 in, NHWC (background, person) logits out."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        person_logit = 8 * (x[..., 0:1] - x[..., 2:3])  # red minus blue: a channel swap flips it
        return torch.cat([torch.zeros_like(person_logit), person_logit], dim=3)


class SinetLike(nn.Module):
    """SINet's format: NCHW BGR (x - mean) / (255 std) in, NCHW softmax (background, person) out.

    It undoes the README's normalisation, so person = the blue level / 255 only when the harness
    feeds BGR with exactly those statistics.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        blue = x[:, 0:1] * 255 * README_SINET_STD_BGR[0] + README_SINET_MEAN_BGR[0]  # back to 0..255
        person = blue / 255
        return torch.cat([1 - person, person], dim=1)


def export(module: nn.Module, input_shape: tuple[int, ...], path: Path) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy exporter's deprecation notice
        torch.onnx.export(module, (torch.zeros(input_shape),), str(path), dynamo=False, input_names=["x"])
    return path


# name: (tiny stand-in, its fixed input shape, the person probability it should give for a BGR image
# already at its input size)
FORMATS = {
    "mediapipe-selfie": (SelfieLike(), (1, 12, 16, 3), lambda bgr: bgr[..., 2] / 255),
    "mediapipe-meet": (
        MeetLike(),
        (1, 12, 16, 3),
        lambda bgr: 1 / (1 + np.exp(-8 * (bgr[..., 2] - bgr[..., 0]) / 255)),
    ),
    "sinet": (SinetLike(), (1, 3, 12, 16), lambda bgr: bgr[..., 0] / 255),
}


@pytest.fixture(scope="module")
def tiny_references(tmp_path_factory) -> Path:
    """A references folder like the shared one, holding tiny stand-ins under the real file names."""
    folder = tmp_path_factory.mktemp("references")
    for name, (module, shape, _) in FORMATS.items():
        export(module, shape, folder / SHARED[name].path)
    return folder


def block_frame(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A 48x24 BGR frame of 3x2 blocks, and the 16x12 image it squashes to with any interpolation.

    Every channel differs, so feeding the wrong channel order gives another answer.
    """
    small = np.random.default_rng(seed).integers(0, 256, (12, 16, 3), dtype=np.uint8)
    small[..., 0] //= 2  # blue darker than red almost everywhere: the Meet stand-in's logit varies
    return np.repeat(np.repeat(small, 2, axis=0), 3, axis=1), small.astype(np.float64)


@pytest.mark.parametrize("name", list(FORMATS))
def test_each_reference_format_gives_the_known_probability(name, tiny_references):
    settings = {s.label: s for s in reference.shared_references(tiny_references)[0]}[name]
    expected = FORMATS[name][2]
    model = reference.OnnxSegmenter(settings, threads=1)
    frame, small = block_frame()
    prob = model(frame)  # squashed from 48x24 (2:1) to the model's 16x12 (4:3)
    assert prob.shape == (12, 16) and prob.dtype == np.float32
    np.testing.assert_allclose(prob, expected(small), atol=1e-5)
    # The accuracy harness then upsamples it bilinearly to the frame.
    upsampled = cv2.resize(expected(small).astype(np.float32), (48, 24), interpolation=cv2.INTER_LINEAR)
    np.testing.assert_allclose(prob_at(prob, frame), upsampled, atol=1e-5)


def test_sinet_normalisation_is_the_readmes_in_bgr_order(tiny_references):
    model = reference.OnnxSegmenter(replace(SHARED["sinet"], path=str(tiny_references / "sinet.onnx")), 1)
    frame = np.empty((12, 16, 3), np.uint8)
    frame[:] = (10, 120, 240)  # B, G, R
    x = model.preprocess(frame)
    assert x.shape == (1, 3, 12, 16)
    bgr = (10, 120, 240)
    stats = zip(bgr, README_SINET_MEAN_BGR, README_SINET_STD_BGR, strict=True)
    expected = [(value - mean) / (255 * std) for value, mean, std in stats]
    np.testing.assert_allclose(x[0, :, 0, 0], expected, rtol=1e-5)


def test_two_class_probabilities_are_not_softmaxed_again():
    probabilities = np.array([[0.9, 0.5, 0.2]], np.float32)
    pair = np.stack([1 - probabilities, probabilities])[None]  # NCHW, channel 1 = person
    np.testing.assert_allclose(reference.to_probability(pair), probabilities, atol=1e-6)  # auto
    out = reference.to_probability(pair, kind=reference.Output.PROBABILITY)
    np.testing.assert_allclose(out, probabilities, atol=1e-6)


def test_missing_reference_files_are_skipped_with_one_note(tmp_path):
    found, note = reference.shared_references(tmp_path / "absent")
    assert found == [] and "--references" in note
    (tmp_path / "mediapipe_selfie.onnx").write_bytes(b"")
    found, note = reference.shared_references(tmp_path)
    assert [s.label for s in found] == ["mediapipe-selfie"]
    assert found[0].path == str(tmp_path / "mediapipe_selfie.onnx")
    assert "mediapipe_meet_landscape.onnx" in note and "sinet.onnx" in note


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory) -> Path:
    """Three photos (one in the validation split) and a 5-frame clip."""
    return miniature_data(tmp_path_factory.mktemp("data"), photos=3, clip_frames=5)


def test_reference_command_puts_ours_beside_every_shared_model(tmp_path, tiny_data, tiny_references):
    out = tmp_path / "bench"
    args = ["reference", "--quick", "--out", str(out), "--data-root", str(tiny_data)]
    args += ["--references", str(tiny_references), "--no-progress"]
    result = CliRunner().invoke(main, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    part = json.loads((out / "results.json").read_text())["reference"]
    rows = {row["model"]: row for row in part["comparison"]}
    assert list(rows) == ["ours", "mediapipe-selfie", "mediapipe-meet", "sinet"]
    for row in rows.values():
        assert set(row["iou"]) == {"portraits-tiny", "video-davis"}
        assert set(row["ms"]) == {"1", "2"} and all(ms > 0 for ms in row["ms"].values())
        assert row["flicker_still"]["off"] is not None and row["lag_frames"]["on"] is not None
    assert (
        rows["mediapipe-selfie"]["iou"]["portraits-tiny"] > 0.5
    )  # its 16x12 input still sees the red "person"
    text = (out / "report.md").read_text()
    assert "| ours |" in text and "| sinet |" in text and "IoU video-davis" in text
    assert "(reference_comparison.png)" in text and (out / "reference_comparison.png").stat().st_size > 1000


def test_reference_command_without_models_says_what_to_pass(tmp_path):
    args = ["reference", "--quick", "--out", str(tmp_path), "--references", str(tmp_path / "none")]
    result = CliRunner().invoke(main, args)
    assert result.exit_code != 0 and "MODEL_PATH" in str(result.exception)


def test_report_puts_every_model_in_one_table(tmp_path):
    row = {
        "iou": {"portraits": 0.9, "selfies": 0.8},
        "boundary_f": 0.7,
        "flicker_still": {"off": 0.002, "on": 0.001},
        "flicker_video": {"off": 0.006, "on": 0.005},
        "lag_frames": {"off": 0, "on": 1},
        "ms": {"1": 12.0, "2": 8.0},
    }
    part = {
        "models": {},
        "frame": "640x480",
        "latency": {"ours": [{"frame": "640x480", "threads": 1, "p50_ms": 12.0, "p95_ms": 13.0}]},
        "comparison": [{"model": "ours"} | row, {"model": "ref"} | row | {"iou": {"portraits": 0.95}}],
    }
    text = report.reference_section(part)
    assert "| model | IoU portraits | IoU selfies | boundary F |" in text
    assert "| ref | **0.95** | – |" in text and "2 / 1" in text  # best in bold; flicker x1e3 off / on
    assert report.plot_comparison(part, tmp_path / "c.png") and (tmp_path / "c.png").stat().st_size > 1000


@pytest.mark.skipif(not REAL_REFERENCES.is_dir(), reason="no ../shared/reference-models here")
def test_real_references_find_the_astronaut_that_ours_finds(tmp_path, capfd):
    """The real files through the reference part's steps, on one photo whose 'truth' is our mask."""
    frame = cv2.imread(str(ASTRONAUT))
    ctx = Context(out=tmp_path, quick=True, data_root=tmp_path / "data", threads=1, progress=False)
    ours = prob_at(ctx.segmenter()(frame), frame) > 0.5
    assert ours.mean() > 0.1
    write_pair(ctx.data_root / "portraits-astronaut", "astronaut", frame, ours.astype(np.uint8) * 255)
    settings, note = reference.shared_references(REAL_REFERENCES)
    assert note is None
    everyone = reference.contenders(ctx, reference.open_references(ctx, settings))
    scores = accuracy.run(ctx, contenders=everyone)
    stability = temporal.run(ctx, temporal.TemporalSettings(portraits=1, still_frames=3), everyone)
    latency = reference.frame_latency(
        reference.latency_models(ctx, settings), ["640x480"], threads=(1,), repeats=2, progress=False
    )
    rows = reference.comparison(scores, stability, latency)
    iou = {row["model"]: row["iou"]["portraits-astronaut"] for row in rows}
    assert list(iou) == ["ours", "mediapipe-selfie", "mediapipe-meet", "sinet"]
    assert iou["mediapipe-selfie"] > 0.7, iou
    assert min(iou.values()) > 0.5, iou  # every reference sees a person, SINet's BGR input included
    assert all(row["ms"]["1"] > 0 and row["flicker_still"]["on"] is not None for row in rows)
    assert "Initializer" not in capfd.readouterr().err  # SINet's harmless warnings are silenced


class FourChannelCounter:
    """A Runtime that reads the previous mask: counts its calls, answers 0.7 everywhere."""

    name = "onnxruntime"
    precision = "fp32"
    long_side = 64
    input_channels = 4

    def __init__(self):
        self.calls = 0

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        self.calls += 1
        return np.full((1, 1, *batch.shape[-2:]), 0.7, np.float32)


def test_ours_is_timed_as_on_video_one_look_a_frame_after_the_first(tmp_path, monkeypatch):
    from deepbg_live.engine import Segmenter

    runtime = FourChannelCounter()
    ctx = Context(out=tmp_path, quick=True, data_root=tmp_path / "data", threads=1, progress=False)
    monkeypatch.setattr(ctx, "segmenter", lambda threads=None: Segmenter(runtime))
    latency = reference.frame_latency(
        reference.latency_models(ctx, []), ["640x480"], threads=(1,), repeats=5, progress=False
    )
    frames = 3 + latency["ours"][0]["n"]  # the untimed warm-up calls, then the timed ones
    assert runtime.calls == frames + 1, "only the first frame, which has no history, gets a second look"
