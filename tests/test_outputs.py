"""Outputs: files must reopen in a player with the right content, the window and virtual camera must fail politely,
and every sink is closed by the ``with`` that opened it."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import cv2  # isort: split

import numpy as np
import pytest

from deepbg_live.capture import Frame, open_source
from deepbg_live.errors import UserError
from deepbg_live.outputs import (
    FolderSink,
    ImageFileSink,
    MaskSink,
    PreviewWindow,
    Sink,
    VideoFileSink,
    VirtualCameraSink,
    display_available,
    write_clip,
)
from deepbg_live.outputs.vcam import MODPROBE, driver_hint
from deepbg_live.shutdown import INTERRUPTED

from . import media

FRAMES, FPS, SIZE = 30, 30, (320, 240)
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return media.make_clip(tmp_path_factory.mktemp("clip") / "clip.mp4", frames=FRAMES, size=SIZE, fps=FPS)


def _half_alpha(size: tuple[int, int] = SIZE) -> np.ndarray:
    alpha = np.zeros((size[1], size[0]), np.uint8)
    alpha[:, size[0] // 2 :] = 255
    return alpha


def _transcode(clip: Path, out: Path, limit: int | None = None, **kwargs: object) -> None:
    """Run the clip through a VideoFileSink the way the pipeline does; ``limit`` stops early (Ctrl-C)."""
    with open_source(input=clip) as source:
        sink = VideoFileSink(out, source.fps, source.size, audio_from=source.path, **kwargs)
        try:
            for frame in source:
                if limit is not None and frame.index >= limit:
                    raise KeyboardInterrupt
                image = frame.image
                if kwargs.get("transparent"):
                    image = np.dstack([image, _half_alpha()])
                sink.write(frame, image, _half_alpha())
        except KeyboardInterrupt:
            pass
        finally:
            sink.close()
            sink.close()  # idempotent


# ------------------------------------------------------------------------------------------ the Sink shape


def test_every_output_is_a_sink(tmp_path: Path, fake_cam: type[FakeCamBackend]) -> None:
    opened = [
        ImageFileSink(tmp_path / "one.png"),
        FolderSink(tmp_path / "frames"),
        MaskSink(tmp_path / "masks"),
        VideoFileSink(tmp_path / "out.mp4", 30, (64, 48)),
        VirtualCameraSink(64, 48, 30, backend="fake"),
    ]
    for sink in opened:
        with sink as entered:
            assert entered is sink and isinstance(sink, Sink)
    assert issubclass(PreviewWindow, Sink)


def test_a_sink_in_with_is_closed_on_the_way_out_even_when_the_body_raises(tmp_path: Path) -> None:
    out = tmp_path / "crashed.mp4"
    image, alpha = np.zeros((48, 64, 3), np.uint8), np.zeros((48, 64), np.uint8)
    with pytest.raises(RuntimeError, match="boom"), VideoFileSink(out, 30, (64, 48)) as sink:
        for i in range(5):
            sink.write(Frame(image, i, 0.0, None), image, alpha)
        raise RuntimeError("boom")
    # a failed job keeps its frames, finished and playable, under a name that says it is incomplete
    assert media.probe(tmp_path / "crashed.partial.mp4").frames == 5
    assert not out.exists()
    with pytest.raises(RuntimeError, match="after close"):
        sink.write(Frame(image, 5, 0.0, None), image, alpha)


def test_opening_a_sink_leaves_the_signal_handlers_alone(tmp_path: Path) -> None:
    before = signal.getsignal(signal.SIGTERM)
    with VideoFileSink(tmp_path / "out.mp4", 30, (64, 48)):
        assert signal.getsignal(signal.SIGTERM) is before  # signals belong to deepbg_live.shutdown


# ------------------------------------------------------------------------------------------ video files


@pytest.mark.parametrize(("name", "video", "audio"), [("out.mp4", "h264", "aac"), ("out.mov", "h264", "aac"),
                                                       ("out.mkv", "h264", "aac"), ("out.webm", "vp9", "opus")])  # fmt: skip
def test_video_sink_output_reopens_with_every_frame_the_input_duration_and_its_audio(
    tmp_path: Path, clip: Path, name: str, video: str, audio: str
) -> None:
    out = tmp_path / name
    _transcode(clip, out)
    info = media.probe(out)
    assert (info.video_codec, info.frames, info.width, info.height) == (video, FRAMES, *SIZE)
    assert info.pix_fmt == "yuv420p"  # what every player and browser can show
    assert info.duration == pytest.approx(FRAMES / FPS, abs=0.01)
    assert info.audio_codec == audio
    assert info.audio_duration == pytest.approx(FRAMES / FPS, abs=0.05)


def test_video_sink_output_frames_match_the_input_frames(tmp_path: Path, clip: Path) -> None:
    out = tmp_path / "out.mp4"
    _transcode(clip, out)
    with open_source(input=out) as source:
        frames = list(source)
    expected = media.clip_frame(20, SIZE, FRAMES).astype(int)
    assert np.abs(frames[20].image.astype(int) - expected).mean() < 8
    assert [f.pts for f in frames] == pytest.approx([i / FPS for i in range(FRAMES)], abs=1e-3)


def test_mp4_output_has_its_index_up_front_so_it_streams(tmp_path: Path, clip: Path) -> None:
    out = tmp_path / "out.mp4"
    _transcode(clip, out)
    head = out.read_bytes()
    assert 0 <= head.find(b"moov") < head.find(b"mdat")


def test_video_sink_without_an_audio_source_writes_video_only(tmp_path: Path) -> None:
    silent = media.make_clip(tmp_path / "silent.mp4", frames=10, audio=False)
    out = tmp_path / "out.mp4"
    _transcode(silent, out)
    info = media.probe(out)
    assert info.frames == 10 and info.audio_codec is None


def test_file_closed_after_part_of_the_frames_is_playable_with_audio_cut_to_match(
    tmp_path: Path, clip: Path
) -> None:
    out = tmp_path / "partial.mp4"
    _transcode(clip, out, limit=12)
    info = media.probe(out)
    assert info.frames == 12
    assert info.duration == pytest.approx(12 / FPS, abs=0.01)
    assert info.audio_duration == pytest.approx(12 / FPS, abs=0.05)


def test_sigterm_while_encoding_still_leaves_a_playable_file(tmp_path: Path, clip: Path) -> None:
    out = tmp_path / "killed.mp4"
    # a program the way both command lines are built: GracefulShutdown around it, sinks in `with`
    script = textwrap.dedent(f"""
        import sys, time, numpy as np
        from deepbg_live.capture import Frame
        from deepbg_live.outputs import VideoFileSink
        from deepbg_live.shutdown import INTERRUPTED, GracefulShutdown
        try:
            with GracefulShutdown(), VideoFileSink({str(out)!r}, 30, (160, 120), audio_from={str(clip)!r}) as sink:
                image, alpha = np.full((120, 160, 3), 90, np.uint8), np.zeros((120, 160), np.uint8)
                for i in range(100000):
                    sink.write(Frame(image, i, time.perf_counter(), None), image, alpha)
                    if i == 10:
                        print("writing", flush=True)
                    time.sleep(0.01)
        except KeyboardInterrupt:
            sys.exit(INTERRUPTED)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "writing"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == INTERRUPTED  # stopped through the clean path, not killed by the signal
    finally:
        proc.kill()
    info = media.probe(out)
    assert info.video_codec == "h264" and info.frames > 10
    assert info.audio_duration == pytest.approx(info.duration, abs=0.05)


def test_live_video_timestamps_follow_the_capture_clock_so_dropped_frames_keep_real_duration(
    tmp_path: Path,
) -> None:
    out = tmp_path / "live.mp4"
    sink = VideoFileSink(out, 30, (64, 48), live=True)
    image, alpha = np.zeros((48, 64, 3), np.uint8), np.zeros((48, 64), np.uint8)
    for i, t in enumerate([0.0, 1 / 30, 5 / 30, 6 / 30, 29 / 30]):  # a camera that lost frames
        sink.write(Frame(image, i, 100.0 + t, None), image, alpha)
    sink.close()
    info = media.probe(out)
    assert info.frames == 5 and info.duration == pytest.approx(1.0, abs=0.01)


def x264_settings(path: Path) -> str:
    """The option string x264 writes into every H.264 stream it makes (an SEI message)."""
    data = path.read_bytes()
    start = data.index(b"x264 - core")
    return data[start : data.index(b"\x00", start)].decode("ascii", "replace")


@pytest.mark.parametrize(
    ("live", "threads", "expected"),
    [(True, None, "threads=1"), (False, 2, "threads=2"), (True, 3, "threads=3")],
)
def test_a_live_video_encodes_on_one_x264_thread_unless_told_otherwise(
    tmp_path: Path, live: bool, threads: int | None, expected: str
) -> None:
    out = tmp_path / "threads.mp4"
    image = np.zeros((240, 320, 3), np.uint8)  # x264 clamps the threads of a smaller picture to one
    with VideoFileSink(out, 30, (320, 240), live=live, threads=threads) as sink:
        for i in range(3):
            sink.write(Frame(image, i, i / 30, None), image, None)
    assert f" {expected} " in x264_settings(out)


def test_odd_frame_sizes_are_encoded_by_dropping_the_odd_row_and_column(tmp_path: Path) -> None:
    out = tmp_path / "odd.mp4"
    sink = VideoFileSink(out, 25, (65, 49))
    for i in range(3):
        sink.write(
            Frame(np.zeros((49, 65, 3), np.uint8), i, 0.0, None), np.zeros((49, 65, 3), np.uint8), None
        )
    sink.close()
    info = media.probe(out)
    assert (info.width, info.height, info.frames) == (64, 48, 3)


@pytest.mark.parametrize("name", ["alpha.webm", "alpha.mov"])
def test_transparent_video_keeps_the_alpha_channel(tmp_path: Path, clip: Path, name: str) -> None:
    out = tmp_path / name
    _transcode(clip, out, transparent=True)
    frames = media.decode_bgra(out)
    assert len(frames) == FRAMES
    alpha = frames[10][:, :, 3]
    assert alpha[:, : SIZE[0] // 2 - 8].max() < 10 and alpha[:, SIZE[0] // 2 + 8 :].min() > 245
    assert media.probe(out).audio_codec is not None
    assert media.probe(out).video_codec == {"alpha.webm": "vp9", "alpha.mov": "prores"}[name]


def test_transparent_output_to_a_format_without_alpha_is_a_user_error(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"out\.mp4.*\.webm"):
        VideoFileSink(tmp_path / "out.mp4", 30, SIZE, transparent=True)


def test_unknown_video_extension_is_a_user_error(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"out\.xyz"):
        VideoFileSink(tmp_path / "out.xyz", 30, SIZE)


def test_output_over_the_input_is_refused(clip: Path) -> None:
    with pytest.raises(UserError, match="overwrite"):
        VideoFileSink(clip, 30, SIZE, audio_from=clip)


def test_write_clip_encodes_every_frame_and_the_tone_as_h264_and_aac(tmp_path: Path) -> None:
    frames = (media.clip_frame(i, SIZE, 15) for i in range(15))
    out = write_clip(tmp_path / "clip.mp4", frames, SIZE, 15, audio=media.tone(48000), audio_rate=48000)
    info = media.probe(out)
    assert (info.video_codec, info.pix_fmt, info.frames, info.width, info.height) == (
        "h264",
        "yuv420p",
        15,
        *SIZE,
    )
    assert info.duration == pytest.approx(1.0, abs=0.01)
    assert info.audio_codec == "aac" and info.audio_duration == pytest.approx(1.0, abs=0.05)


# ------------------------------------------------------------------------------------------ images


def _frame(index: int = 0, name: str | None = None, size: tuple[int, int] = (40, 30)) -> Frame:
    return Frame(np.zeros((size[1], size[0], 3), np.uint8), index, time.perf_counter(), None, name)


def test_image_sink_writes_png_with_alpha_when_transparent(tmp_path: Path) -> None:
    out = tmp_path / "sub" / "cutout.png"
    sink = ImageFileSink(out, transparent=True)
    bgra = np.dstack([np.full((30, 40, 3), 200, np.uint8), _half_alpha((40, 30))])
    sink.write(_frame(), bgra, bgra[:, :, 3])
    sink.close()
    back = cv2.imread(str(out), cv2.IMREAD_UNCHANGED)
    assert back.shape == (30, 40, 4) and np.array_equal(back, bgra)


def test_image_sink_refuses_transparency_in_a_jpeg(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"\.jpg.*\.png"):
        ImageFileSink(tmp_path / "cutout.jpg", transparent=True)


def test_folder_sink_names_files_after_the_input_image_or_the_frame_index(tmp_path: Path) -> None:
    sink = FolderSink(tmp_path / "out", suffix=".jpg")
    image = np.zeros((30, 40, 3), np.uint8)
    for frame in [_frame(0, "beach"), _frame(1, "beach"), _frame(7)]:
        sink.write(frame, image, image[:, :, 0])
    sink.close()
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "00007.jpg",
        "beach.jpg",
        "beach_00001.jpg",
    ]


def test_mask_sink_writes_the_alpha_as_8bit_png_named_like_the_input(tmp_path: Path) -> None:
    sink = MaskSink(tmp_path / "masks")
    alpha = _half_alpha((40, 30))
    sink.write(_frame(0, "portrait"), np.zeros((30, 40, 3), np.uint8), alpha)
    sink.write(_frame(3), np.zeros((30, 40, 3), np.uint8), alpha)
    sink.close()
    assert sorted(p.name for p in (tmp_path / "masks").iterdir()) == ["00003.png", "portrait.png"]
    back = cv2.imread(str(tmp_path / "masks" / "portrait.png"), cv2.IMREAD_UNCHANGED)
    assert back.dtype == np.uint8 and back.ndim == 2 and np.array_equal(back, alpha)


# ------------------------------------------------------------------------------------------ preview window


_OPEN_WINDOW = "from deepbg_live.outputs import PreviewWindow; PreviewWindow()"


@pytest.mark.parametrize("display", [None, ":987"])
def test_preview_window_without_a_display_is_a_user_error_not_a_crash(display: str | None) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    if display:
        env["DISPLAY"] = display  # set, but no X server behind it
    code = (
        f"from deepbg_live.errors import UserError\ntry:\n {_OPEN_WINDOW}\nexcept UserError as e:\n print(e)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr  # not -6 (SIGABRT from Qt)
    assert result.stdout.strip() == "no display found: use --no-window, or run under xvfb-run"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="X11 and Wayland are Linux's")
def test_wayland_without_xwayland_is_no_display_since_opencv_windows_need_x11(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.setenv("WAYLAND_DISPLAY", "wayland-0")
    assert not display_available()


def test_a_running_x_server_is_a_display(monkeypatch: pytest.MonkeyPatch, xvfb: str) -> None:
    monkeypatch.setenv("DISPLAY", xvfb)
    assert display_available()


_SHOW_RED = """
import sys, time, numpy as np
from deepbg_live.outputs import PreviewWindow
window = PreviewWindow(show_stats=True)
window.set_stats(29.5, 41.0)
image = np.zeros((240, 320, 3), np.uint8)
image[:] = (30, 30, 220)  # BGR red
for i in range(10):
    window.write(None, image, None)
print("shown", flush=True)
end = time.time() + 30
while time.time() < end:
    action = window.poll_key()
    if action:
        print(action, flush=True)
        if action == "quit":
            break
    time.sleep(0.02)
window.close()
"""


def test_preview_window_shows_the_frame_and_maps_keys_to_actions(xvfb: str) -> None:
    env = {**os.environ, "DISPLAY": xvfb}
    proc = subprocess.Popen(
        [sys.executable, "-c", _SHOW_RED],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout.readline().strip() == "shown"
        time.sleep(0.3)
        screen = media.screenshot(xvfb)
        red = np.abs(screen.astype(int) - (30, 30, 220)).sum(axis=2) < 30
        assert red.sum() > 0.8 * 320 * 240  # the frame is on screen, at least at its own size
        if shutil.which("xdotool"):
            window = subprocess.run(
                ["xdotool", "search", "--name", "deepbg-live"], env=env, capture_output=True, text=True
            )
            subprocess.run(
                ["xdotool", "windowfocus", "--sync", window.stdout.split()[-1]], env=env, check=True
            )
            actions = []
            for key in ["b", "c", "i", "space", "s", "f", "q"]:
                subprocess.run(["xdotool", "key", key], env=env, check=True)
                actions.append(proc.stdout.readline().strip())
            assert actions == ["background", "color", "image", "pause", "snapshot", "stats", "quit"]
            assert proc.wait(10) == 0
    finally:
        proc.kill()
        proc.wait()


# ------------------------------------------------------------------------------------------ virtual camera


class FakeCamBackend:
    """A pyvirtualcam backend that records what it receives (see notes/measured-facts.md)."""

    sent: list[np.ndarray] = []

    def __init__(self, *, width: int, height: int, fps: float, fourcc: int, device: str | None, **kw: object):
        self.shape = (height, width)

    def send(self, frame: np.ndarray) -> None:
        FakeCamBackend.sent.append(frame.copy())

    def close(self) -> None:
        pass

    def device(self) -> str:
        return "fake-cam"

    def native_fourcc(self) -> None:
        return None


@pytest.fixture
def fake_cam() -> type[FakeCamBackend]:
    import pyvirtualcam

    pyvirtualcam.register_backend("fake", FakeCamBackend)
    FakeCamBackend.sent = []
    return FakeCamBackend


@pytest.mark.parametrize("fmt", ["RGB", "BGR", "I420", "NV12", "YUYV"])
def test_virtual_camera_receives_each_frame_in_its_pixel_format(
    fake_cam: type[FakeCamBackend], fmt: str
) -> None:
    sink = VirtualCameraSink(64, 48, 30, fmt=fmt, backend="fake")
    assert sink.device == "fake-cam"
    image = np.zeros((48, 64, 3), np.uint8)
    image[:] = (255, 0, 0)  # BGR blue
    for i in range(3):
        sink.write(_frame(i, size=(64, 48)), image, image[:, :, 0])
    sink.close()
    sink.close()
    sizes = {"RGB": 64 * 48 * 3, "BGR": 64 * 48 * 3, "I420": 64 * 48 * 3 // 2, "NV12": 64 * 48 * 3 // 2}
    assert len(fake_cam.sent) == 3 and fake_cam.sent[0].size == sizes.get(fmt, 64 * 48 * 2)
    if fmt == "RGB":
        assert fake_cam.sent[0][:3].tolist() == [0, 0, 255]  # channels swapped for the camera
    if fmt == "BGR":
        assert fake_cam.sent[0][:3].tolist() == [255, 0, 0]


def test_virtual_camera_scales_frames_of_another_size(fake_cam: type[FakeCamBackend]) -> None:
    sink = VirtualCameraSink(64, 48, 30, fmt="BGR", backend="fake")
    sink.write(_frame(0, size=(128, 96)), np.zeros((96, 128, 3), np.uint8), np.zeros((96, 128), np.uint8))
    sink.close()
    assert fake_cam.sent[0].size == 64 * 48 * 3


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="v4l2loopback is the Linux backend")
def test_virtual_camera_without_a_device_is_a_user_error_explaining_v4l2loopback() -> None:
    if any(Path("/sys/class/video4linux").glob("video*/name")):
        names = [p.read_text() for p in Path("/sys/class/video4linux").glob("video*/name")]
        if any("loopback" in n.lower() or "dummy" in n.lower() for n in names):
            pytest.skip("a loopback device exists on this machine")
    with pytest.raises(UserError) as caught:
        VirtualCameraSink(64, 48, 30, backend="v4l2loopback")
    message = str(caught.value)
    assert "v4l2loopback" in message and "modprobe" in message and "\n" not in message


class BrokenCamBackend(FakeCamBackend):
    """A backend whose device cannot be opened, as OBS's is when OBS was never installed."""

    def __init__(self, **kw: object):
        raise RuntimeError("'obs' backend: virtual camera output could not be started")


def test_a_virtual_camera_that_cannot_open_prints_one_line_and_nothing_else(capfd) -> None:
    import pyvirtualcam

    pyvirtualcam.register_backend("broken", BrokenCamBackend)
    with pytest.raises(UserError) as raised:
        VirtualCameraSink(64, 48, 30, backend="broken")
    import gc

    gc.collect()
    assert "could not be started" in str(raised.value) and len(str(raised.value).splitlines()) == 1
    assert "Exception ignored" not in capfd.readouterr().err


@pytest.mark.parametrize(
    ("backend", "platform", "advice"),
    [
        (None, "linux", MODPROBE),
        ("v4l2loopback", "linux", MODPROBE),
        ("obs", "linux", "only on Windows and macOS"),
        ("obs", "win32", "OBS Studio"),
        (None, "darwin", "OBS Studio"),
        ("unitycapture", "win32", "Unity Capture"),
        ("v4l2loopback", "darwin", "only on Linux"),
    ],
)
def test_the_virtual_camera_advice_fits_the_backend_and_the_os(backend, platform, advice) -> None:
    assert advice in driver_hint(backend, platform)


def test_the_modprobe_line_is_the_readmes() -> None:
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    assert MODPROBE.removeprefix("sudo ") in readme
