"""Frame sources and the capture thread: what the pipeline can rely on from each kind of input."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from deepbg_live import capture
from deepbg_live.capture import Frame, Paced, Source, open_source, reader
from deepbg_live.errors import UserError

from . import media

FRAMES, FPS, SIZE = 30, 30, (320, 240)


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return media.make_clip(tmp_path_factory.mktemp("clip") / "clip.mp4", frames=FRAMES, size=SIZE, fps=FPS)


# ------------------------------------------------------------------------------------------ video files


def test_video_file_source_reads_every_frame_with_pts_fps_and_size(clip: Path) -> None:
    with open_source(input=clip) as source:
        frames = list(source)
        assert (source.fps, source.size, source.frame_count) == (FPS, SIZE, FRAMES)
        assert source.temporal and not source.single_image and not source.live
        assert source.path == clip and source.audio_path == clip  # its sound can be carried over
    assert [f.index for f in frames] == list(range(FRAMES))
    assert [f.pts for f in frames] == pytest.approx([i / FPS for i in range(FRAMES)], abs=1e-3)
    assert all(f.image.shape == (240, 320, 3) and f.image.dtype == np.uint8 for f in frames)
    expected = media.clip_frame(17, SIZE, FRAMES).astype(int)
    assert np.abs(frames[17].image.astype(int) - expected).mean() < 6  # right frame, right colours (BGR)


def test_video_file_source_scales_frames_to_a_requested_size(clip: Path) -> None:
    with open_source(input=clip, size=(160, 120)) as source:
        first = next(iter(source))
    assert first.image.shape == (120, 160, 3)


def test_realtime_video_is_paced_at_its_frame_rate_like_a_camera(clip: Path) -> None:
    with open_source(input=clip, realtime=True) as source:
        assert isinstance(source, Paced) and source.live
        assert (source.fps, source.size, source.frame_count) == (FPS, SIZE, FRAMES)
        assert source.temporal and source.audio_path == clip  # still a video with its sound
        start = time.perf_counter()
        frames = list(source)
        elapsed = time.perf_counter() - start
    assert len(frames) == FRAMES
    assert 0.85 <= elapsed <= 1.6  # 30 frames at 30 fps: about one second, not as fast as decoding allows


def test_realtime_video_drops_frames_it_is_already_late_for(clip: Path) -> None:
    with open_source(input=clip, realtime=True) as source:
        got = []
        for frame in source:
            got.append(frame)
            time.sleep(0.1)  # a consumer at 10 fps pulling straight from a 30 fps source
    assert source.dropped > 0 and len(got) + source.dropped == FRAMES
    assert [f.index for f in got] == list(range(len(got)))  # renumbered in delivery order
    pts = [f.pts for f in got]
    assert pts == sorted(pts) and pts[-1] > 0.8  # the run kept the clip's clock


def test_realtime_does_not_apply_to_photos(tmp_path: Path) -> None:
    path = media.make_image(tmp_path / "photo.png")
    with open_source(input=path, realtime=True) as source:
        assert not isinstance(source, Paced) and not source.live
        assert len(list(source)) == 1


def test_realtime_reader_keeps_only_the_newest_frame_when_the_consumer_is_slow(clip: Path) -> None:
    with open_source(input=clip, realtime=True) as source:
        stage = reader(source)
        start = time.perf_counter()
        got = []
        for frame in stage:
            got.append(frame)
            time.sleep(0.1)  # a consumer at 10 fps behind a 30 fps source
        elapsed = time.perf_counter() - start
    dropped = stage.dropped + source.dropped  # replaced in the queue, or skipped late by the source
    assert dropped > 0
    assert len(got) + dropped == FRAMES
    assert elapsed < 1.6  # lag never built up: the run took the clip's duration, not 30 x 0.1 s
    pts = [f.pts for f in got]
    assert pts == sorted(pts) and pts[-1] > 0.8  # what arrived is recent and in order


def test_file_reader_never_drops_a_frame_even_when_the_consumer_is_slow(clip: Path) -> None:
    with open_source(input=clip) as source:
        stage = reader(source, depth=2)
        got = []
        for frame in stage:
            got.append(frame.index)
            assert frame.capture_ms >= 0
            time.sleep(0.005)
    assert got == list(range(FRAMES)) and stage.dropped == 0 and source.dropped == 0


def test_stop_ends_a_reader_thread_blocked_on_a_full_queue(clip: Path) -> None:
    with open_source(input=clip) as source:
        stage = reader(source, depth=1)
        next(iter(stage))
        time.sleep(0.2)  # the thread is now waiting for room in the queue
        start = time.perf_counter()
        stage.stop()
        stage.stop()  # idempotent
        assert time.perf_counter() - start < 1 and not stage.running
        assert list(stage) == []


def test_stop_ends_a_reader_thread_waiting_for_a_slow_realtime_frame(tmp_path: Path) -> None:
    for i in range(3):
        media.make_image(tmp_path / f"{i}.png")
    with open_source(input=tmp_path, sequence=True, realtime=True, fps=0.2) as source:  # a frame every 5 s
        stage = reader(source)
        next(iter(stage))
        start = time.perf_counter()
        stage.stop()
        assert time.perf_counter() - start < 1 and not stage.running


def test_closing_a_source_from_another_thread_ends_its_pacing_wait_at_once(tmp_path: Path) -> None:
    for i in range(3):
        media.make_image(tmp_path / f"{i}.png")
    with open_source(input=tmp_path, sequence=True, realtime=True, fps=0.2) as source:
        frames = iter(source)
        next(frames)
        threading.Timer(0.2, source.close).start()
        start = time.perf_counter()
        assert list(frames) == []  # the wait for the second frame ended with the close
        assert time.perf_counter() - start < 1
        source.close()  # idempotent


class _FailingSource(Source):
    temporal = True

    def _frames(self) -> Iterator[Frame]:
        for i in range(2):
            yield Frame(np.zeros((4, 4, 3), np.uint8), i, time.perf_counter(), None)
        raise UserError("disk vanished")


def test_reader_delivers_buffered_frames_then_reraises_the_capture_error() -> None:
    got = []
    with pytest.raises(UserError, match="disk vanished"), reader(_FailingSource()) as stage:
        for frame in stage:
            got.append(frame.index)
    assert got == [0, 1]


def test_missing_file_is_a_user_error_naming_it(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="nope.mp4"):
        open_source(input=tmp_path / "nope.mp4")


@pytest.mark.parametrize("content", [b"", b"this is not a video at all\n" * 100])
def test_empty_or_non_video_file_is_a_user_error_naming_it(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "bad.mp4"
    path.write_bytes(content)
    with pytest.raises(UserError, match="bad.mp4"):
        open_source(input=path)


def test_truncated_download_is_a_user_error_naming_it(tmp_path: Path, clip: Path) -> None:
    path = tmp_path / "cut.mp4"
    path.write_bytes(clip.read_bytes()[: clip.stat().st_size // 2])  # no index (moov) at the end
    with pytest.raises(UserError, match="cut.mp4"):
        open_source(input=path)


def test_video_with_zero_frames_is_a_user_error_naming_it(tmp_path: Path) -> None:
    path = media.make_clip(tmp_path / "zero.mkv", frames=0, audio=False)
    with pytest.raises(UserError, match="zero.mkv"):
        open_source(input=path)


def test_audio_only_file_is_a_user_error_naming_it(tmp_path: Path) -> None:
    path = media.make_clip(tmp_path / "sound.mkv", frames=10)
    path_audio = tmp_path / "sound.m4a"
    import av

    with av.open(str(path)) as src, av.open(str(path_audio), "w") as out:
        stream = out.add_stream_from_template(src.streams.audio[0])
        for packet in src.demux(src.streams.audio[0]):
            if packet.size:
                packet.stream = stream
                out.mux(packet)
    with pytest.raises(UserError, match="sound.m4a"):
        open_source(input=path_audio)


def test_corrupt_frame_in_the_middle_is_skipped_with_one_warning(
    tmp_path: Path, clip: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "damaged.mp4"
    path.write_bytes(clip.read_bytes())
    media.corrupt_middle(path, fraction=0.7, length=500)
    with caplog.at_level(logging.WARNING, logger="deepbg_live.capture"), open_source(input=path) as source:
        frames = list(source)
    assert 0 < len(frames) < FRAMES
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings and all("damaged.mp4" in w and "\n" not in w for w in warnings)


# ------------------------------------------------------------------------------------------ images


def test_image_file_gives_one_frame_named_after_the_file(tmp_path: Path) -> None:
    path = media.make_image(tmp_path / "portrait.jpg", size=(64, 48), color=(0, 0, 255))
    with open_source(input=path) as source:
        frames = list(source)
        assert (source.size, source.frame_count) == ((64, 48), 1)
        assert source.single_image and not source.temporal and source.audio_path is None
    assert len(frames) == 1 and frames[0].name == "portrait" and frames[0].pts is None
    assert frames[0].image[10, 10].tolist() == pytest.approx([0, 0, 255], abs=3)


def test_unreadable_image_file_is_a_user_error_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "broken.png"
    path.write_bytes(b"not a png")
    with pytest.raises(UserError, match="broken.png"):
        open_source(input=path)


def test_folder_gives_its_photos_in_natural_name_order_with_their_own_sizes(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    media.make_image(tmp_path / "img10.png", size=(30, 20))
    media.make_image(tmp_path / "img2.jpg", size=(40, 30))
    media.make_image(tmp_path / "img1.png", size=(50, 40))
    (tmp_path / "notes.txt").write_text("ignored")
    (tmp_path / "img5.png").write_bytes(b"corrupt")
    with caplog.at_level(logging.WARNING), open_source(input=tmp_path) as source:
        frames = list(source)
        assert not (source.single_image or source.temporal or source.live)  # independent photos
    assert [f.name for f in frames] == ["img1", "img2", "img10"]
    assert [f.image.shape[:2] for f in frames] == [(40, 50), (30, 40), (20, 30)]
    assert [f.index for f in frames] == [0, 1, 2]
    assert any("img5.png" in r.getMessage() for r in caplog.records)


def test_folder_as_sequence_is_video_with_a_frame_rate_and_one_size(tmp_path: Path) -> None:
    for i in range(3):
        media.make_image(tmp_path / f"frame_{i:03d}.png", size=(64, 48) if i != 1 else (32, 24))
    with open_source(input=tmp_path, sequence=True) as source:
        frames = list(source)
        assert (source.fps, source.size) == (30.0, (64, 48))
        assert source.temporal and not source.single_image and source.audio_path is None
    assert [f.image.shape for f in frames] == [(48, 64, 3)] * 3
    assert [f.pts for f in frames] == pytest.approx([0, 1 / 30, 2 / 30])
    assert [f.name for f in frames] == ["frame_000", "frame_001", "frame_002"]


def test_empty_folder_is_a_user_error_naming_it(tmp_path: Path) -> None:
    (tmp_path / "readme.txt").write_text("no images here")
    with pytest.raises(UserError, match=str(tmp_path.name)):
        open_source(input=tmp_path)


# ------------------------------------------------------------------------------------------ cameras


def test_camera_index_that_does_not_exist_fails_fast_with_a_user_error() -> None:
    result: dict[str, BaseException | None] = {}

    def attempt() -> None:
        try:
            open_source(camera="99").close()
            result["error"] = None
        except BaseException as exc:
            result["error"] = exc

    thread = threading.Thread(target=attempt, daemon=True)
    start = time.perf_counter()
    thread.start()
    thread.join(10)
    assert not thread.is_alive(), "opening a missing camera hung"
    assert time.perf_counter() - start < 5
    error = result["error"]
    assert isinstance(error, UserError) and "camera 99" in str(error) and "--camera 0" in str(error)
    assert "\n" not in str(error)


class _FakeCapture:
    """Stands in for cv2.VideoCapture: ``frames`` good reads, then failures."""

    frames = 3
    opened = True

    def __init__(self, *args: object) -> None:
        self.reads = 0

    def isOpened(self) -> bool:  # noqa: N802 - cv2's name
        return self.opened

    def set(self, *args: object) -> bool:
        return True

    def get(self, prop: int) -> float:
        return 25.0

    def read(self) -> tuple[bool, np.ndarray | None]:
        self.reads += 1
        if self.reads > self.frames:
            return False, None
        return True, np.full((48, 64, 3), self.reads, np.uint8)

    def release(self) -> None:
        pass


def test_camera_that_opens_but_delivers_no_frames_is_a_user_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_FakeCapture, "frames", 0)
    monkeypatch.setattr(capture.cv2, "VideoCapture", _FakeCapture)
    with pytest.raises(UserError, match="camera 2 .*no frames.*--camera 0"):
        open_source(camera=2)


def test_camera_frames_are_live_without_pts_and_a_lost_camera_is_a_user_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(capture.cv2, "VideoCapture", _FakeCapture)
    with open_source(camera="1") as source:
        assert (source.live, source.temporal, source.size, source.fps) == (True, True, (64, 48), 25.0)
        assert isinstance(source, capture.CameraSource) and source.audio_path is None
        got = []
        with pytest.raises(UserError, match="camera 1 stopped"):
            for frame in source:
                got.append(frame)
    assert [f.index for f in got] == [0, 1, 2] and all(f.pts is None for f in got)
    assert [int(f.image[0, 0, 0]) for f in got] == [1, 2, 3]


def test_camera_and_input_together_is_a_user_error(clip: Path) -> None:
    with pytest.raises(UserError, match="either"):
        open_source(camera=0, input=clip)


def test_a_missing_camera_is_never_told_to_try_itself(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("glob.glob", lambda pattern: [])  # a machine with no video devices at all
    with pytest.raises(UserError) as error:
        open_source(camera=0)
    assert "try --camera 1" in str(error.value) and "--camera 0" not in str(error.value)
