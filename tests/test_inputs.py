"""Hostile and unusual inputs: each is read correctly or refused in one line, never a crash or a hang.

Phone rotation, joined .ts files, variable frame rate, tiny frames, cover-art audio, named pipes,
decompression bombs, out-of-range options and ONNX models of the wrong shape. All media are generated
here, deterministically.
"""

from __future__ import annotations

import logging
import os
import struct
import subprocess
import sys
import threading
import zlib
from collections.abc import Callable, Sequence
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper

from deepbg_live.capture import Frame, Timeline, open_source, upright
from deepbg_live.cli import main
from deepbg_live.engine import Segmenter
from deepbg_live.errors import UserError
from deepbg_live.image_header import pixel_size
from deepbg_live.outputs import VideoFileSink
from deepbg_live.outputs.audio import write_waveform
from deepbg_live.runtimes import open_runtime
from tests import media
from tests.cli import deepbg

ROOT = Path(__file__).resolve().parent.parent
GREEN, RED, BLUE = (40, 160, 40), (30, 30, 220), (255, 0, 0)
RATE = 48000

# ------------------------------------------------------------------------------------------ helpers


def one_line(stderr: str) -> str:
    """The only non-blank line of ``stderr``; fails if there is a traceback or more than one line."""
    assert "Traceback" not in stderr, stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    return lines[0]


def onnx_model(
    path: Path, nodes: list, inputs: list, outputs: list, weights: Sequence[onnx.TensorProto] = ()
) -> Path:
    graph = helper.make_graph(nodes, "m", inputs, outputs, list(weights))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


def image_in(shape: list | None = None, dtype: int = TensorProto.FLOAT, name: str = "image"):
    return helper.make_tensor_value_info(name, dtype, [1, 3, None, None] if shape is None else shape)


def logits_out(shape: list | None = None):
    return helper.make_tensor_value_info(
        "logits", TensorProto.FLOAT, [1, 1, None, None] if shape is None else shape
    )


def conv_model(path: Path, weight: Sequence[float], channels_in: int = 3) -> Path:
    """logits = a 1x1 convolution of the image: ``[40, -40, 0]`` calls red a person (the input is RGB)."""
    channels_out = len(weight) // channels_in
    w = helper.make_tensor("w", TensorProto.FLOAT, [channels_out, channels_in, 1, 1], list(weight))
    inp = image_in([1, channels_in, None, None])
    out = logits_out([1, channels_out, None, None])
    return onnx_model(path, [helper.make_node("Conv", ["image", "w"], ["logits"])], [inp], [out], [w])


@pytest.fixture(scope="module")
def red_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return conv_model(tmp_path_factory.mktemp("model") / "red.onnx", [40.0, -40.0, 0.0])


def encode(
    path: Path,
    images: Sequence[np.ndarray],
    times: Sequence[float],
    *,
    audio_seconds: float | None = None,
    fmt: str | None = None,
    rotation: int = 0,
) -> Path:
    """H.264 frames at exact ``times`` (a 1/90000 time base), plus an optional AAC tone."""
    h, w = images[0].shape[:2]
    with av.open(str(path), "w", format=fmt) as out:
        video = out.add_stream("libx264", rate=30)
        video.width, video.height, video.pix_fmt = w, h, "yuv420p"
        video.codec_context.time_base = Fraction(1, 90000)
        if rotation:
            video.set_display_rotation(rotation)
        sound = out.add_stream("aac", rate=RATE, layout="mono") if audio_seconds else None
        for image, t in zip(images, times, strict=True):
            frame = av.VideoFrame.from_ndarray(image, format="bgr24")
            frame.pts, frame.time_base = round(t * 90000), Fraction(1, 90000)
            out.mux(video.encode(frame))
        out.mux(video.encode())
        if sound is not None:
            write_waveform(out, sound, media.tone(round(audio_seconds * RATE)))
    return path


def clip_images(frames: int, size: tuple[int, int] = (64, 48)) -> list[np.ndarray]:
    return [media.clip_frame(i, size, frames) for i in range(frames)]


def edge_marked(size: tuple[int, int] = (64, 48)) -> np.ndarray:
    """A green frame whose left 16 columns are red: where they end up shows how the frame was turned."""
    image = np.empty((size[1], size[0], 3), np.uint8)
    image[:] = GREEN
    image[:, :16] = RED
    return image


def red_edge(image: np.ndarray) -> str:
    """Which edge of ``image`` is red: top, bottom, left or right."""
    red = np.abs(image.astype(int) - RED).sum(axis=2) < 60
    edges = {
        "top": red[:8].mean(),
        "bottom": red[-8:].mean(),
        "left": red[:, :8].mean(),
        "right": red[:, -8:].mean(),
    }
    return max(edges, key=edges.get)


def within(seconds: float, call: Callable[[], object]) -> BaseException | None:
    """Run ``call`` on a thread; fail if it is still running after ``seconds``; return what it raised."""
    raised: list[BaseException | None] = [None]

    def target() -> None:
        try:
            call()
        except BaseException as exc:  # handed back to the test
            raised[0] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"still running after {seconds} s: it hangs"
    return raised[0]


# ------------------------------------------------------------------------------------------ rotation


def test_upright_turns_by_the_display_rotation_counter_clockwise_to_the_nearest_quarter() -> None:
    image = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    assert np.array_equal(upright(image, 0), image)
    assert np.array_equal(upright(image, 90), np.rot90(image, 1))  # np.rot90 turns counter-clockwise
    assert np.array_equal(upright(image, -90), np.rot90(image, -1))
    assert np.array_equal(upright(image, 270), np.rot90(image, -1))
    assert np.array_equal(upright(image, 180), np.rot90(image, 2))
    assert np.array_equal(upright(image, -180), np.rot90(image, 2))
    assert np.array_equal(upright(image, 88.5), np.rot90(image, 1))


@pytest.mark.parametrize(("rotation", "edge"), [(-90, "top"), (90, "bottom"), (180, "right"), (0, "left")])
def test_a_video_with_rotation_metadata_is_read_upright(tmp_path: Path, rotation: int, edge: str) -> None:
    path = encode(tmp_path / "phone.mp4", [edge_marked()] * 3, [0, 1 / 30, 2 / 30], rotation=rotation)
    with open_source(input=path) as source:
        frames = list(source)
        turned = rotation % 180 != 0
        assert source.size == ((48, 64) if turned else (64, 48))
    assert all(f.image.shape[:2] == source.size[::-1] for f in frames)
    assert red_edge(frames[0].image) == edge


def test_a_requested_size_applies_to_the_upright_frame(tmp_path: Path) -> None:
    path = encode(tmp_path / "phone.mp4", [edge_marked()] * 2, [0, 1 / 30], rotation=-90)
    with open_source(input=path, size=(24, 32)) as source:
        first = next(iter(source))
    assert first.image.shape[:2] == (32, 24) and red_edge(first.image) == "top"


def test_a_phone_video_is_segmented_and_written_upright(tmp_path: Path, red_model: Path) -> None:
    path = encode(tmp_path / "phone.mp4", [edge_marked()] * 5, [i / 30 for i in range(5)], rotation=-90)
    out = tmp_path / "out.mp4"
    result = deepbg("--input", str(path), "-o", str(out), "--model", str(red_model), "--color", "blue",
                    "--smoothing", "0", "--no-refine", "--no-progress")  # fmt: skip
    assert result.returncode == 0, result.stderr
    with av.open(str(out)) as container:
        frame = next(container.decode(video=0))
        assert frame.rotation == 0  # the pixels are upright; no display matrix left to apply twice
        image = frame.to_ndarray(format="bgr24")
    assert image.shape[:2] == (64, 48)
    assert red_edge(image) == "top"  # the person (red) is where the viewer sees it ...
    assert np.abs(image[-16:].astype(int) - BLUE).mean() < 30  # ... and the rest got the new background


# ------------------------------------------------------------------------------------------ timestamps


def test_timeline_continues_after_a_jump_back_and_after_a_long_jump_forward() -> None:
    timeline = Timeline(step=0.1, max_gap=10.0)
    times = [timeline(t) for t in (0.0, 0.1, 0.2, 0.0, 0.1, 50.0, 50.1)]
    assert times == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6])


def test_timeline_keeps_real_gaps_and_lets_small_jitter_through() -> None:
    timeline = Timeline(step=0.1, tolerance=0.05)
    assert [timeline(t) for t in (0.0, 0.1, 5.0, 4.98)] == pytest.approx([0.0, 0.1, 5.0, 4.98])
    assert timeline(1.0, duration=0.2) == pytest.approx(5.08)  # a jump back continues after the last item


def test_timeline_uses_each_items_duration() -> None:
    timeline = Timeline(step=0.1)
    assert [timeline(t, 0.5) for t in (0.0, 0.5, 0.0)] == pytest.approx([0.0, 0.5, 1.0])


@pytest.fixture(scope="module")
def joined_ts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two 1 s MPEG-TS recordings concatenated byte for byte: the second's timestamps start again."""
    folder = tmp_path_factory.mktemp("ts")
    parts = [
        encode(
            folder / f"part{i}.ts",
            clip_images(30),
            [j / 30 for j in range(30)],
            audio_seconds=1.0,
            fmt="mpegts",
        )
        for i in range(2)
    ]
    joined = folder / "joined.ts"
    joined.write_bytes(b"".join(p.read_bytes() for p in parts))
    return joined


def test_joined_ts_files_give_every_frame_with_continuous_timestamps(joined_ts: Path) -> None:
    with open_source(input=joined_ts) as source:
        pts = [f.pts for f in source]
    assert len(pts) == 60
    assert pts == pytest.approx([i / 30 for i in range(60)], abs=1e-3)


@pytest.mark.parametrize("suffix", [".mp4", ".webm"])  # the audio copied (AAC), and transcoded (Opus)
def test_joined_ts_files_are_processed_to_the_end_with_their_sound(
    tmp_path: Path, red_model: Path, joined_ts: Path, suffix: str
) -> None:
    out = tmp_path / f"out{suffix}"
    result = deepbg("--input", str(joined_ts), "-o", str(out), "--model", str(red_model), "--no-progress")
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    info = media.probe(out)
    assert info.frames == 60 and info.duration == pytest.approx(2.0, abs=0.04)
    assert info.audio_duration == pytest.approx(2.0, abs=0.06)


def frame_times(path: Path) -> list[float]:
    """Each frame's presentation time, counted from the first frame's."""
    with av.open(str(path)) as container:
        times = [float(f.time) for f in container.decode(video=0)]
    return [t - times[0] for t in times]


def test_variable_frame_rate_video_keeps_its_frame_times_and_stays_with_its_sound(tmp_path: Path) -> None:
    # 60 fps for half a second, then 15 fps for two: the mean rate (24 fps) fits neither part
    times = [i / 60 for i in range(30)] + [0.5 + i / 15 for i in range(30)]
    path = encode(tmp_path / "vfr.mp4", clip_images(60), times, audio_seconds=2.5)
    out = tmp_path / "out.mp4"
    with (
        open_source(input=path) as source,
        VideoFileSink(out, source.fps, source.size, audio_from=path) as sink,
    ):
        read = []
        for frame in source:
            read.append(frame.pts)
            sink.write(frame, frame.image, np.full(frame.image.shape[:2], 255, np.uint8))
    assert read == pytest.approx(times, abs=1e-3)
    written, audio_start = timeline(out)
    assert audio_start == pytest.approx(0, abs=1e-3)
    assert written == pytest.approx(times, abs=1e-3)  # not 0.7 s late, as on a fixed 1/fps grid
    info = media.probe(out)
    assert info.audio_duration == pytest.approx(2.5, abs=0.06)


def test_frames_without_media_times_stay_on_the_frame_grid(tmp_path: Path) -> None:
    out = tmp_path / "grid.mp4"
    image = media.clip_frame(0, (64, 48))
    with VideoFileSink(out, 25, (64, 48)) as sink:
        for i in range(5):
            sink.write(Frame(image, i, 0.0, None), image, np.full((48, 64), 255, np.uint8))
    assert frame_times(out) == pytest.approx([i / 25 for i in range(5)])


def timeline(path: Path) -> tuple[list[float], float]:
    """Each frame's presentation time and the audio's start, in seconds from the file's start.

    The audio's start is where its first sample plays: an edit list, or a codec delay, hides the
    encoder's priming samples before it.
    """
    with av.open(str(path)) as container:
        zero = (container.start_time or 0) / av.time_base
        audio = container.streams.audio[0]
        audio_start = float(audio.start_time * audio.time_base) - zero
        times = [float(f.time) - zero for f in container.decode(video=0)]
    return times, audio_start


# Matroska is left out: FFmpeg writes no codec delay for AAC there, so its priming packet starts the
# file, and the video (and the first real sample) 21 ms later, still in step with each other.
@pytest.mark.parametrize("suffix", [".mp4", ".mov", ".m4v", ".webm"])
def test_the_first_frame_starts_with_the_sound(tmp_path: Path, red_model: Path, suffix: str) -> None:
    # x264's B-frames hold the first frame's decoding 2 frames back, and AAC's priming samples start
    # the audio 21 ms before its first sample: neither may move the picture off the sound
    clip = media.make_clip(tmp_path / "talk.mp4", frames=30, size=(64, 48))
    out = tmp_path / f"out{suffix}"
    result = deepbg("--input", str(clip), "-o", str(out), "--model", str(red_model), "--no-progress")
    assert result.returncode == 0, result.stderr
    times, audio_start = timeline(out)
    assert audio_start == pytest.approx(0, abs=1e-3)
    assert times == pytest.approx([i / 30 for i in range(30)], abs=1e-3)  # each frame at its own time


# ------------------------------------------------------------------------------------------ tiny frames


@pytest.mark.parametrize("shape", [(1, 1000), (8, 1000), (1000, 3), (1, 1)])
def test_tiny_frames_are_segmented_at_their_own_size(shape: tuple[int, int]) -> None:
    segment = Segmenter("fast")
    frame = np.full((*shape, 3), 120, np.uint8)
    prob = segment(frame)
    w, h = segment.input_size(shape[1], shape[0])
    assert prob.shape == (h, w) and np.isfinite(prob).all()


def test_a_one_pixel_high_image_is_processed(tmp_path: Path) -> None:
    path = media.make_image(tmp_path / "line.png", size=(1000, 1))
    out = tmp_path / "out.png"
    result = deepbg("--input", str(path), "-o", str(out), "--model", "fast")
    assert result.returncode == 0, result.stderr
    assert cv2.imread(str(out)).shape[:2] == (1, 1000)


def test_an_eight_pixel_high_video_is_processed(tmp_path: Path) -> None:
    path = encode(tmp_path / "strip.mp4", clip_images(10, (1000, 8)), [i / 30 for i in range(10)])
    out = tmp_path / "out.mp4"
    result = deepbg("--input", str(path), "-o", str(out), "--model", "fast", "--no-progress")
    assert result.returncode == 0, result.stderr
    info = media.probe(out)
    assert (info.frames, info.width, info.height) == (10, 1000, 8)


# ------------------------------------------------------------------------------------------ not a video


def cover_art_audio(path: Path) -> Path:
    """A song with its album cover: an audio stream plus a one-picture 'video' stream marked attached_pic."""
    m4a = path.suffix == ".m4a"
    with av.open(str(path), "w", format="mp4" if m4a else None) as out:  # "ipod", m4a's default, takes no PNG
        sound = out.add_stream("aac" if m4a else "libmp3lame", rate=RATE, layout="mono")
        cover = out.add_stream("png")
        cover.width, cover.height, cover.pix_fmt = 32, 32, "rgb24"
        cover.disposition = av.stream.Disposition.attached_pic
        ok, png = cv2.imencode(".png", np.full((32, 32, 3), 200, np.uint8))
        packet = av.Packet(png.tobytes())
        packet.stream, packet.pts, packet.dts, packet.time_base = cover, 0, 0, Fraction(1, 90000)
        out.mux(packet)
        write_waveform(out, sound, media.tone(RATE))
    return path


@pytest.mark.parametrize("name", ["song.m4a", "song.mp3"])
def test_audio_with_cover_art_is_refused_in_one_clear_line(tmp_path: Path, name: str) -> None:
    path = cover_art_audio(tmp_path / name)
    with pytest.raises(UserError, match=f"{name}: has no video, only audio and cover art"):
        open_source(input=path)
    result = deepbg("--input", str(path), "-o", str(tmp_path / "out.mp4"))
    assert result.returncode == 2 and "only audio and cover art" in one_line(result.stderr)
    assert not (tmp_path / "out.mp4").exists()


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes are POSIX")
@pytest.mark.parametrize("name", ["stream.mp4", "stream.png"])
def test_a_named_pipe_without_a_writer_is_refused_without_hanging(tmp_path: Path, name: str) -> None:
    fifo = tmp_path / name
    os.mkfifo(fifo)
    error = within(10, lambda: open_source(input=fifo))
    assert isinstance(error, UserError) and "pipe" in str(error) and name in str(error)
    result = deepbg("--input", str(fifo), "-o", str(tmp_path / "out.mp4"), timeout=30)
    assert result.returncode == 2 and "pipe" in one_line(result.stderr)


# ------------------------------------------------------------------------------------------ options


@pytest.mark.parametrize(
    "args",
    [
        ["--smoothing", "nan"],
        ["--smoothing", "inf"],
        ["--smoothing", "1.5"],
        ["--fps", "-5"],
        ["--fps", "nan"],
        ["--fps", "inf"],
        ["--fps", "0"],
        ["--sequence", "--fps", "-5"],
        ["--sequence", "--fps", "nan"],
        ["--size", "1x1"],
        ["--size", "15x720"],
        ["--size", "99999x720"],
        ["--size", "big"],
        ["--feather", "-1"],
        ["--feather", "nan"],
        ["--blur", "0"],
        ["--blur", "-3"],
        ["--blur", "nan"],
        ["--vcam-fps", "nan"],
        ["--vcam-fps", "-30"],
        ["--vcam-fps", "inf"],
        ["--max-pixels", "0"],
        ["--max-pixels", "lots"],
    ],
)
def test_each_bad_number_is_refused_in_one_line_with_exit_2(tmp_path: Path, args: list[str]) -> None:
    result = CliRunner().invoke(main, ["--input", str(tmp_path), "-o", str(tmp_path / "o.mp4"), *args])
    assert result.exit_code == 2, result.output
    line = one_line(result.output)
    assert line.startswith("Error:") and args[-2] in line


def test_a_size_over_the_pixel_limit_is_refused_before_a_camera_opens() -> None:
    with pytest.raises(UserError, match="--max-pixels"):
        open_source(camera=99, size=(16000, 16000))


def test_a_sequence_frame_rate_from_python_is_checked_too(tmp_path: Path) -> None:
    media.make_image(tmp_path / "0.png")
    for fps in (float("nan"), -5.0, float("inf")):
        with pytest.raises(UserError, match="frame rate"):
            open_source(input=tmp_path, sequence=True, fps=fps)


# ------------------------------------------------------------------------------------------ model files


def hostile_models(folder: Path) -> dict[str, Path]:
    red = [40.0, -40.0, 0.0]
    cast = helper.make_node("Cast", ["raw"], ["image"], to=TensorProto.FLOAT)
    w = helper.make_tensor("w", TensorProto.FLOAT, [1, 3, 1, 1], red)
    conv = helper.make_node("Conv", ["image", "w"], ["logits"])
    scaled = helper.make_node("Mul", ["conv", "gain"], ["logits"])
    return {
        "fixed size": onnx_model(
            folder / "fixed.onnx", [conv], [image_in([1, 3, 256, 256])], [logits_out()], [w]
        ),
        "uint8 input": onnx_model(
            folder / "uint8.onnx",
            [cast, conv],
            [image_in(dtype=TensorProto.UINT8, name="raw")],
            [logits_out()],
            [w],
        ),
        "two inputs": onnx_model(
            folder / "two.onnx",
            [helper.make_node("Conv", ["image", "w"], ["conv"]), scaled],
            [image_in(), helper.make_tensor_value_info("gain", TensorProto.FLOAT, [1])],
            [logits_out()],
            [w],
        ),
        "one channel in": conv_model(folder / "grey.onnx", [1.0], channels_in=1),
        "two channels out": conv_model(folder / "two_out.onnx", red * 2),
    }


@pytest.mark.parametrize(
    "kind", ["fixed size", "uint8 input", "two inputs", "one channel in", "two channels out"]
)
def test_an_onnx_model_of_the_wrong_signature_is_refused_at_load(tmp_path: Path, kind: str) -> None:
    path = hostile_models(tmp_path)[kind]
    with pytest.raises(UserError, match="does not fit") as error:
        open_runtime(str(path))
    assert "\n" not in str(error.value)


def test_a_refused_model_stops_the_run_before_any_output_is_made(tmp_path: Path) -> None:
    clip = media.make_clip(tmp_path / "clip.mp4", frames=3, size=(64, 48))
    out = tmp_path / "out.mp4"
    result = deepbg(
        "--input", str(clip), "-o", str(out), "--model", str(hostile_models(tmp_path)["fixed size"])
    )
    assert result.returncode == 2 and "does not fit" in one_line(result.stderr)
    assert not out.exists()


def test_a_model_that_gives_nan_is_one_line_not_a_blank_video(tmp_path: Path) -> None:
    nan_model = conv_model(tmp_path / "nan.onnx", [float("nan")] * 3)
    with pytest.raises(UserError, match="NaN"):
        Segmenter(open_runtime(str(nan_model)))(media.clip_frame(0, (64, 48)))
    clip = media.make_clip(tmp_path / "clip.mp4", frames=3, size=(64, 48))
    result = deepbg(
        "--input", str(clip), "-o", str(tmp_path / "out.mp4"), "--model", str(nan_model), "--no-progress"
    )
    assert result.returncode == 2 and "NaN" in one_line(result.stderr)


# ------------------------------------------------------------------------------------------ pixel limits


def blank_png(path: Path, width: int, height: int) -> Path:
    """A valid greyscale PNG of black pixels, written without ever holding them: 30000x30000 is ~0.9 MB.

    Each block of rows compresses to the same bytes after a full flush, so one block is compressed
    and repeated; the Adler-32 of n zero bytes is (n mod 65521) << 16 | 1.
    """
    rows = next(r for r in (100, 10, 1) if height % r == 0)
    deflate = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = deflate.compress(bytes(width + 1) * rows) + deflate.flush(zlib.Z_FULL_FLUSH)
    raw = (width + 1) * height
    stream = (
        b"\x78\x01" + block * (height // rows) + deflate.flush() + struct.pack(">I", (raw % 65521) << 16 | 1)
    )

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", stream) + chunk(b"IEND", b"")
    )
    return path


def test_the_blank_png_helper_writes_a_real_png(tmp_path: Path) -> None:
    image = cv2.imread(str(blank_png(tmp_path / "small.png", 300, 200)))
    assert image.shape == (200, 300, 3) and image.max() == 0


@pytest.mark.parametrize("ext", [".png", ".jpg", ".bmp", ".webp", ".tif"])
def test_pixel_size_reads_each_accepted_format_from_its_header(ext: str) -> None:
    for channels in (1, 3, 4) if ext != ".jpg" else (1, 3):
        ok, data = cv2.imencode(ext, np.zeros((37, 53, channels), np.uint8).squeeze())
        assert ok and pixel_size(data.tobytes()) == (53, 37)


def test_pixel_size_reads_lossless_webp_and_progressive_jpeg() -> None:
    image = np.zeros((37, 53, 3), np.uint8)
    for ext, params in (
        (".webp", [cv2.IMWRITE_WEBP_QUALITY, 101]),
        (".jpg", [cv2.IMWRITE_JPEG_PROGRESSIVE, 1]),
    ):
        assert pixel_size(cv2.imencode(ext, image, params)[1].tobytes()) == (53, 37)


@pytest.mark.parametrize(
    "data", [b"", b"not an image", b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff\xe0\x00\x10", b"BM"]
)
def test_pixel_size_is_none_for_anything_else(data: bytes) -> None:
    assert pixel_size(data) is None


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="peak memory is read from Linux's /proc")
def test_a_png_bomb_is_refused_without_decoding_it(tmp_path: Path) -> None:
    bomb = blank_png(tmp_path / "bomb.png", 30000, 30000)  # ~0.9 MB that decodes to 2.7 GB of BGR
    assert bomb.stat().st_size < 2_000_000
    script = (
        "import re, sys\n"
        "from deepbg_live.capture import open_source\n"
        "from deepbg_live.errors import UserError\n"
        "try:\n"
        "    open_source(input=sys.argv[1])\n"
        "except UserError as error:\n"
        "    print(error)\n"
        # VmHWM, not ru_maxrss: Linux carries the forking parent's (pytest's) peak into ru_maxrss
        "print(int(re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read())[1]) // 1024)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script, str(bomb)], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    *said, peak_mib = result.stdout.strip().splitlines()
    assert any("30000x30000" in line and "--max-pixels" in line for line in said), result.stdout
    assert int(peak_mib) < 500, result.stdout  # the imports alone; decoding would take at least 900 MB


def test_the_pixel_limit_applies_to_images_folders_and_videos_and_can_be_raised(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    photo = media.make_image(tmp_path / "photos" / "a.png", size=(64, 48))
    media.make_image(tmp_path / "photos" / "b.png", size=(20, 10))
    clip = media.make_clip(tmp_path / "clip.mp4", frames=2, size=(64, 48), audio=False)
    with pytest.raises(UserError, match="a.png: 64x48 .* --max-pixels"):
        open_source(input=photo, max_pixels=1000)
    with pytest.raises(UserError, match="clip.mp4: 64x48 .* --max-pixels"):
        open_source(input=clip, max_pixels=1000)
    with caplog.at_level(logging.WARNING), open_source(input=photo.parent, max_pixels=1000) as folder:
        assert [f.name for f in folder] == ["b"]  # the big one is skipped, with a warning naming it
    assert any("a.png" in r.getMessage() for r in caplog.records)
    with open_source(input=photo, max_pixels=64 * 48) as source:
        assert source.size == (64, 48)


def test_max_pixels_on_the_command_line(tmp_path: Path) -> None:
    photo = media.make_image(tmp_path / "a.png", size=(64, 48))
    result = deepbg("--input", str(photo), "-o", str(tmp_path / "out.png"), "--max-pixels", "1000")
    assert result.returncode == 2 and "--max-pixels" in one_line(result.stderr)
