"""The deepbg-live command end to end: real files in, real files out, one-line errors.

A hand-built ONNX "segmenter" that calls red pixels a person stands in for the trained model, so
these tests check the pipeline (decode, engine, compositing, encoding, audio) exactly, whatever
the shipped weights score.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import av
import cv2
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from deepbg_live.cli import Options, run
from deepbg_live.engine import Segmenter
from tests.cli import deepbg
from tests.media import SQUARE_BGR, clip_frame, make_clip, probe

ROOT = Path(__file__).resolve().parent.parent
BLUE_BGR = (255, 0, 0)


def red_is_person_model(path: Path) -> Path:
    """An ONNX model whose logit is 40 * (R - G) of the normalised input: red → person."""
    weight = helper.make_tensor("w", TensorProto.FLOAT, [1, 3, 1, 1], [40.0, -40.0, 0.0])
    conv = helper.make_node("Conv", ["image", "w"], ["logits"])
    graph = helper.make_graph(
        [conv], "red", [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, None, None])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 1, None, None])], [weight],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return red_is_person_model(tmp_path_factory.mktemp("model") / "red.onnx")


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return make_clip(
        tmp_path_factory.mktemp("clip") / "talk.mp4", frames=45, size=(320, 240), fps=30, audio=True
    )


def decoded_frames(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [f.to_ndarray(format="bgr24") for f in container.decode(video=0)]


def test_a_video_keeps_its_frames_duration_and_audio_and_gets_the_new_background(tmp_path, model, clip):
    out = tmp_path / "talk_bg.mp4"
    result = deepbg("--input", str(clip), "--output", str(out), "--color", "#0000ff", "--model", str(model),
                    "--smoothing", "0", "--no-progress")  # fmt: skip
    assert result.returncode == 0, result.stderr
    source, made = probe(clip), probe(out)
    assert made.frames == source.frames == 45
    assert made.duration == pytest.approx(source.duration, abs=0.04)
    assert made.video_codec == "h264" and made.pix_fmt == "yuv420p"
    assert made.audio_codec == "aac"
    assert made.audio_duration == pytest.approx(source.audio_duration, abs=0.05)

    frames = decoded_frames(out)
    for index in (0, 22, 44):
        truth = clip_frame(index, (320, 240), 45)
        person = np.all(truth == SQUARE_BGR, axis=2)
        inner = cv2.erode(person.astype(np.uint8), np.ones((9, 9), np.uint8)) > 0
        outer = cv2.dilate(person.astype(np.uint8), np.ones((9, 9), np.uint8)) == 0
        background = np.abs(frames[index][outer].astype(int) - BLUE_BGR).max(axis=1)
        kept = np.abs(frames[index][inner].astype(int) - SQUARE_BGR).max(axis=1)
        assert np.median(background) <= 12, "background should be the requested blue"
        assert np.median(kept) <= 12, "the person's pixels should be unchanged"


def test_a_single_image_gets_a_colour_background(tmp_path, model):
    photo = tmp_path / "photo.jpg"
    cv2.imwrite(str(photo), clip_frame(10, (160, 120), 30), [cv2.IMWRITE_JPEG_QUALITY, 100])
    out = tmp_path / "out.png"
    result = deepbg("--input", str(photo), "--color", "#0a4678", "--output", str(out), "--model", str(model))
    assert result.returncode == 0, result.stderr
    image = cv2.imread(str(out))
    assert image.shape == (120, 160, 3)
    assert tuple(int(v) for v in image[2, 2]) == pytest.approx((0x78, 0x46, 0x0A), abs=2)


def test_flip_average_changes_nothing_for_a_model_that_is_already_symmetric(tmp_path, model):
    photo = tmp_path / "photo.png"
    cv2.imwrite(str(photo), clip_frame(10, (160, 120), 30))
    outputs = []
    for flag in ("--flip-average", "--no-flip-average"):
        out = tmp_path / f"out{flag}.png"
        result = deepbg(
            "--input", str(photo), "--color", "green", "--output", str(out), "--model", str(model), flag
        )
        assert result.returncode == 0, result.stderr
        outputs.append(cv2.imread(str(out)).astype(int))
    assert np.abs(outputs[0] - outputs[1]).max() <= 1  # red-is-person is decided pixel by pixel


def test_photos_get_the_flip_average_by_default_and_video_does_not(tmp_path, model, clip, monkeypatch):
    seen: list[bool] = []
    infer = Segmenter.infer

    def recording_infer(self, batch):
        seen.append(self.flip_average)
        return infer(self, batch)

    def flip_average_used(source: Path, output: str) -> set[bool]:
        seen.clear()
        run(Options(input_path=str(source), output=str(tmp_path / output), model=str(model), progress=False))
        return set(seen)

    monkeypatch.setattr(Segmenter, "infer", recording_infer)
    photo = tmp_path / "photo.png"
    cv2.imwrite(str(photo), clip_frame(10, (160, 120), 30))
    assert flip_average_used(photo, "out.png") == {True}
    assert flip_average_used(clip, "out.mp4") == {False}


def test_a_folder_of_photos_becomes_a_folder_of_cutouts_and_masks_named_after_them(tmp_path, model):
    photos = tmp_path / "photos"
    photos.mkdir()
    for name in ("alice", "bob"):
        cv2.imwrite(str(photos / f"{name}.png"), clip_frame(5, (96, 64), 30))
    result = deepbg("--input", str(photos), "--transparent", "--output", str(tmp_path / "cut"),
                    "--save-mask", str(tmp_path / "masks"), "--model", str(model))  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in (tmp_path / "cut").iterdir()) == ["alice.png", "bob.png"]
    assert sorted(p.name for p in (tmp_path / "masks").iterdir()) == ["alice.png", "bob.png"]
    cutout = cv2.imread(str(tmp_path / "cut" / "alice.png"), cv2.IMREAD_UNCHANGED)
    assert cutout.shape[2] == 4 and cutout[0, 0, 3] == 0


def test_video_masks_are_numbered_from_zero(tmp_path, model, clip):
    result = deepbg(
        "--input", str(clip), "--save-mask", str(tmp_path / "m"), "--model", str(model), "--no-progress"
    )
    assert result.returncode == 0, result.stderr
    names = sorted(p.name for p in (tmp_path / "m").iterdir())
    assert names[:2] == ["00000.png", "00001.png"] and len(names) == 45


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--camera", "99", "--no-window", "-o", "x.mp4"], "camera 99"),
        (["--input", "does-not-exist.mp4", "-o", "x.mp4"], "does-not-exist.mp4"),
        (["--input", "{clip}", "--color", "notacolour", "-o", "x.mp4"], "notacolour"),
        (["--input", "{clip}", "--image", "missing.jpg", "-o", "x.mp4"], "missing.jpg"),
        (["--input", "{clip}", "--model", "missing.safetensors", "-o", "x.mp4"], "missing.safetensors"),
        (["--input", "{clip}", "--device", "cuda", "-o", "x.mp4"], "cuda"),
        (["--camera", "0", "--size", "big", "--no-window", "-o", "x.mp4"], "--size"),
        (["--input", "{clip}"], "--output"),
        # options that would otherwise be silently ignored or overruled
        (
            ["--input", "{clip}", "--transparent", "--image", "bg.jpg", "-o", "x.webm"],
            "--image would be ignored",
        ),
        (["--input", "{clip}", "--transparent", "--blur", "31", "-o", "x.webm"], "--blur would be ignored"),
        (["--input", "{clip}", "--transparent", "--show-mask", "-o", "x.webm"], "not both"),
        (["--input", "{clip}", "--color", "", "-o", "x.mp4"], "bad colour ''"),
        (["--input", "{clip}", "--blur", "0", "-o", "x.mp4"], "--blur"),
        (["--input", "{folder}", "-o", "one.png"], "name --output a folder ('one')"),
    ],
)
def test_bad_input_gives_one_line_and_a_nonzero_exit(tmp_path, clip, args, message):
    if "cuda" in args:
        import torch

        if torch.cuda.is_available():
            pytest.skip("this machine has CUDA")
    (tmp_path / "photos").mkdir()
    cv2.imwrite(str(tmp_path / "photos" / "a.png"), clip_frame(0, (64, 48)))
    args = [a.replace("{clip}", str(clip)).replace("{folder}", str(tmp_path / "photos")) for a in args]
    result = deepbg(*args, cwd=tmp_path)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert message in lines[0]


def test_one_photo_reports_what_it_wrote_and_no_frame_rate(tmp_path, model):
    photo = tmp_path / "photo.png"
    cv2.imwrite(str(photo), clip_frame(0, (64, 48)))
    result = deepbg("--input", str(photo), "-o", str(tmp_path / "out.png"), "--model", str(model))
    assert result.returncode == 0, result.stderr
    assert "fps" not in result.stderr and "frames" not in result.stderr and "wrote" in result.stderr


def test_an_empty_file_is_reported_not_crashed_on(tmp_path):
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    result = deepbg("--input", str(empty), "-o", str(tmp_path / "o.mp4"))
    assert result.returncode != 0 and "Traceback" not in result.stderr and "empty.mp4" in result.stderr


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupting_a_long_job_leaves_a_playable_file_with_what_was_done(tmp_path, model, sig):
    long_clip = make_clip(tmp_path / "long.mp4", frames=600, size=(320, 240), fps=30, audio=True)
    out = tmp_path / "partial.mp4"
    process = subprocess.Popen(
        [sys.executable, "-m", "deepbg_live.cli", "--input", str(long_clip), "-o", str(out), "--model", str(model),
         "--realtime", "--no-progress"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        # as a foreground job: one started with '&' from a script inherits an ignored SIGINT
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip
    deadline = time.time() + 60
    writing = out.with_name("partial.partial.mp4")  # its name until it is finished
    while time.time() < deadline and not writing.exists():
        time.sleep(0.1)
    time.sleep(2.0)  # --realtime plays at 30 fps, so about 60 frames are done by now
    process.send_signal(sig)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr  # interrupted, not aborted and not run to the end
    assert "Traceback" not in stderr
    info = probe(out)
    assert 0 < info.frames < 600
    assert info.audio_codec == "aac"


def test_the_help_lists_every_input_and_output():
    result = deepbg("--help")
    for flag in ("--camera", "--input", "--realtime", "--color", "--image", "--video", "--blur", "--transparent",
                 "--output", "--virtual-cam", "--save-mask", "--no-window", "--smoothing", "--feather", "--device"):  # fmt: skip
        assert flag in result.stdout


def test_the_preview_window_shows_the_composite_and_obeys_its_keys(tmp_path, model, xvfb):
    import shutil

    from tests.media import screenshot

    if shutil.which("xdotool") is None:
        pytest.skip("xdotool (package xdotool) is needed to press keys in the window")
    display = xvfb

    long_clip = make_clip(tmp_path / "long.mp4", frames=900, size=(320, 240), fps=30, audio=False)
    env = {**os.environ, "DISPLAY": display}
    process = subprocess.Popen(
        [sys.executable, "-m", "deepbg_live.cli", "--input", str(long_clip), "--realtime", "--window",
         "--color", "#0000ff", "--model", str(model)],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        window = ""
        deadline = time.time() + 60
        while not window and time.time() < deadline:
            found = subprocess.run(
                ["xdotool", "search", "--name", "deepbg-live"], env=env, capture_output=True, text=True
            )
            window = found.stdout.split()[-1] if found.stdout.split() else ""
            time.sleep(0.2)
        time.sleep(1.0)
        screen = screenshot(display)
        blue = np.abs(screen.astype(int) - BLUE_BGR).sum(axis=2) < 40
        red = np.abs(screen.astype(int) - SQUARE_BGR).sum(axis=2) < 60
        assert blue.sum() > 0.5 * 320 * 240, "the new background fills most of the window"
        assert red.sum() > 0.5 * 60 * 60, "the person (the red square) is shown over it"
        subprocess.run(["xdotool", "windowfocus", "--sync", window], env=env, check=True)
        subprocess.run(["xdotool", "key", "s"], env=env, check=True)
        time.sleep(0.5)
        subprocess.run(["xdotool", "key", "q"], env=env, check=True)
        assert process.wait(20) == 0
        assert list(tmp_path.glob("deepbg-snapshot-*.png")), "s saves a snapshot in the current folder"
    finally:
        process.kill()
        process.wait()


def test_the_virtual_camera_receives_every_composited_frame(tmp_path, model, clip):
    import pyvirtualcam

    from deepbg_live.cli import Options, run

    class FakeCamera:
        """Stands in for a v4l2loopback/OBS device, which CI machines cannot have."""

        frames: list[np.ndarray] = []

        def __init__(self, *, width, height, fps, fourcc, device, **kw):
            self.size = (width, height)

        def send(self, frame):
            FakeCamera.frames.append(frame.copy())

        def close(self):
            pass

        def device(self):
            return "fake"

        def native_fourcc(self):
            return None

    pyvirtualcam.register_backend("fake-cli", FakeCamera)
    run(Options(input_path=str(clip), virtual_cam=True, vcam_backend="fake-cli", vcam_format="BGR",
                color="#0000ff", model=str(model), smoothing=0.0, progress=False))  # fmt: skip
    assert len(FakeCamera.frames) == 45
    first = FakeCamera.frames[0].reshape(240, 320, 3)
    assert np.abs(first[5, 5].astype(int) - BLUE_BGR).max() <= 12  # background corner, in BGR


def test_the_picture_key_without_a_picture_says_how_to_get_one(capsys):
    from types import SimpleNamespace

    from deepbg_live.hotkeys import Action, Hotkeys

    pipeline = SimpleNamespace(background="green")
    keys = Hotkeys(pipeline, window=None, user_backgrounds=[])
    assert keys.handle(Action.IMAGE) is True
    assert pipeline.background == "green"
    assert "--image FILE" in capsys.readouterr().err


def test_a_damaged_cached_demo_sample_is_rebuilt(tmp_path, monkeypatch):
    import tempfile

    from deepbg_live import cli

    monkeypatch.setattr(tempfile, "gettempdir", lambda: str(tmp_path))
    (tmp_path / "deepbg-live-sample.mp4").write_bytes(b"not a video at all")
    sample = cli._demo_input()
    assert probe(sample).frames > 0
