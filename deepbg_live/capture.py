"""Frame sources: cameras, video files, images, folders and image sequences, all as one iterator of Frames.

Video files are decoded with PyAV (threaded) and converted to BGR with ``cv2.cvtColor``: as fast as
``cv2.VideoCapture`` (which has no threading knob) while also giving exact timestamps, the frame count,
and per-packet error handling, so one corrupt frame is skipped instead of ending the run.

What comes out can be relied on: frames upright (a phone's display rotation applied), media times that
only move forward (``Timeline``), no picture over ``MAX_PIXELS`` (read from the header, before
decoding), and never a wait on a named pipe.
"""

from __future__ import annotations

import glob
import logging
import math
import re
import stat
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

# cv2 must be loaded before av: PyAV bundles its own libxcb, and if that one is loaded first
# OpenCV's Qt window hangs forever in namedWindow (measured with opencv-python 5.0 + av 18).
import cv2  # isort: split

import av
import numpy as np

from .errors import UserError, os_reason
from .formats import IMAGE_EXTENSIONS, literal
from .image_header import MAX_PIXELS
from .images import as_bgr, check_pixels, read_image
from .stages import QueuePolicy, Stage

log = logging.getLogger(__name__)

DEFAULT_FPS = 30.0
_MAX_CAMERA_FAILURES = 25  # consecutive empty reads (about a second) before a camera counts as gone


@dataclass
class Frame:
    """One input frame plus what later stages need: order, latency start, media time, output name."""

    image: np.ndarray  # BGR uint8 (H, W, 3)
    index: int  # 0, 1, 2 ... in delivery order
    captured_at: float  # time.perf_counter() when the frame became available (for latency)
    pts: float | None  # media time in seconds (video files and sequences), else None
    name: str | None = None  # source file stem for image/folder inputs (for naming outputs)
    capture_ms: float = 0.0  # time spent obtaining it: decoding, or waiting for the camera or its due time


class Source:
    """Base class: iterate to get Frames. Subclasses implement ``_frames``; ``close()`` stops them.

    What a source is, for the stages after it, is said by its properties rather than a name:
    ``live`` (frames come on their own clock, so a slow consumer should get only the newest),
    ``temporal`` (frames are one scene over time: smoothing applies, mirrored averaging is off by
    default), ``single_image`` (one photo, written back as one image) and ``audio_path`` (the file
    whose sound an output can carry over).
    """

    fps: float = DEFAULT_FPS
    size: tuple[int, int] = (0, 0)  # (w, h)
    live: bool = False
    temporal: bool = False
    single_image: bool = False
    frame_count: int | None = None
    path: Path | None = None
    dropped: int = 0  # frames the source itself skipped because they were already late (Paced)

    def __init__(self) -> None:
        self._closed = threading.Event()
        self._lock = threading.Lock()  # close() from another thread must not free a decoder mid-read

    @property
    def audio_path(self) -> Path | None:
        """The input file to copy sound from (a video file; copied when it has a sound track), else None."""
        return None

    def __iter__(self) -> Iterator[Frame]:
        frames = self._frames()
        while True:
            started = time.perf_counter()
            frame = next(frames, None)
            if frame is None:
                return
            frame.capture_ms = (time.perf_counter() - started) * 1000
            yield frame

    def _frames(self) -> Iterator[Frame]:
        raise NotImplementedError

    def close(self) -> None:
        """Stop the frames, from any thread: a wait for the next frame ends at once. Idempotent."""
        self._closed.set()
        with self._lock:
            self._release()

    def _release(self) -> None:
        """Free the decoder or device; runs under the lock, possibly more than once."""

    def __enter__(self) -> Source:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        w, h = self.size
        return f"<{type(self).__name__} {w}x{h} @ {self.fps:.3g} fps>"


class Paced(Source):
    """A file source played like a camera (``--realtime``): at its frame rate, dropping late frames.

    Each frame waits until it is due; one already more than a frame late is skipped and counted in
    ``dropped``, so the run keeps the clip's clock however slow the machine.
    """

    live = True

    def __init__(self, source: Source):
        super().__init__()
        self.source = source
        self.fps, self.size, self.path = source.fps, source.size, source.path
        self.frame_count = source.frame_count
        self.temporal, self.single_image = source.temporal, source.single_image
        self.dropped = 0

    @property
    def audio_path(self) -> Path | None:
        return self.source.audio_path

    def _frames(self) -> Iterator[Frame]:
        start: float | None = None
        interval = 1.0 / self.fps
        index = 0
        for frame in self.source:
            due = frame.pts if frame.pts is not None else frame.index * interval
            now = time.perf_counter()
            if start is None:
                start = now - due
            wait = start + due - now
            if wait > 0:
                if self._closed.wait(wait):
                    return
            elif -wait > interval:
                self.dropped += 1
                continue
            frame.captured_at = time.perf_counter()
            frame.index = index
            index += 1
            yield frame

    def close(self) -> None:
        super().close()
        self.source.close()

    def __repr__(self) -> str:
        return f"<Paced {self.source!r}>"


# ----------------------------------------------------------------------------------------------- camera


def _parse_camera(camera: str | int) -> int | str:
    if isinstance(camera, int):
        return camera
    text = str(camera).strip()
    return int(text) if text.isdigit() else text


def _camera_backends(camera: int | str) -> list[int]:
    """Per-OS capture APIs, best first: DSHOW opens in a fraction of MSMF's time and honours size requests."""
    if isinstance(camera, str) and "://" in camera:  # rtsp:// or http:// IP camera
        return [cv2.CAP_FFMPEG]
    if sys.platform.startswith("linux"):
        return [cv2.CAP_V4L2]
    if sys.platform == "win32":
        return [cv2.CAP_DSHOW, cv2.CAP_MSMF]
    if sys.platform == "darwin":
        return [cv2.CAP_AVFOUNDATION]
    return [cv2.CAP_ANY]


def _camera_hint(camera: int | str) -> str:
    """What to try instead of ``camera``: the devices present on Linux, else another index."""
    found = sorted(glob.glob("/dev/video*")) if sys.platform.startswith("linux") else []
    if found:
        return f"the devices present are {', '.join(found)}; check it isn't in use by another app"
    other = "--camera 1" if camera == 0 else "--camera 0"
    return f"try {other}, and check it is plugged in, allowed and not in use by another app"


class CameraSource(Source):
    """A webcam or capture device via OpenCV; frames are live and a slow consumer only ever sees new ones."""

    live = True
    temporal = True

    def __init__(self, camera: str | int, size: tuple[int, int] | None = None, fps: float | None = None):
        super().__init__()
        self.camera = _parse_camera(camera)
        self._cap = self._open(size, fps)
        self._first = self._read_first()
        h, w = self._first.shape[:2]
        self.size = (w, h)
        self.fps = float(self._cap.get(cv2.CAP_PROP_FPS) or 0) or float(fps or DEFAULT_FPS)
        if size and tuple(size) != self.size:
            log.warning("camera %s delivers %dx%d instead of the requested %dx%d", self.camera, w, h, *size)

    def _open(self, size: tuple[int, int] | None, fps: float | None) -> cv2.VideoCapture:
        level = cv2.utils.logging.getLogLevel()
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)  # our message replaces its noise
        try:
            for api in _camera_backends(self.camera):
                cap = cv2.VideoCapture(self.camera, api)
                if cap.isOpened():
                    _request(cap, size, fps)
                    return cap
                cap.release()
        finally:
            cv2.utils.logging.setLogLevel(level)
        raise UserError(
            f"camera {self.camera} could not be opened: no such device or no permission; {_camera_hint(self.camera)}"
        )

    def _read_first(self) -> np.ndarray:
        for _ in range(_MAX_CAMERA_FAILURES):  # some cameras return a few empty frames while starting
            ok, image = self._cap.read()
            if ok and image is not None and image.size:
                return image
        self._cap.release()
        raise UserError(
            f"camera {self.camera} could not be opened: it delivered no frames; {_camera_hint(self.camera)}"
        )

    def _frames(self) -> Iterator[Frame]:
        image, failures, index = self._first, 0, 0
        self._first = None
        while not self._closed.is_set():
            if image is None:
                with self._lock:
                    ok, image = self._cap.read() if not self._closed.is_set() else (False, None)
                if self._closed.is_set():
                    return
                if not ok or image is None:
                    failures += 1
                    if failures >= _MAX_CAMERA_FAILURES:
                        raise UserError(
                            f"camera {self.camera} stopped delivering frames; check the cable or app using it"
                        )
                    image = None
                    continue
            failures = 0
            yield Frame(as_bgr(image), index, time.perf_counter(), None)
            index += 1
            image = None

    def _release(self) -> None:
        self._cap.release()


def _request(cap: cv2.VideoCapture, size: tuple[int, int] | None, fps: float | None) -> None:
    """Ask for a mode; MJPG is what most USB webcams need for 720p and above at full frame rate."""
    cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # fewer stale frames queued in the driver: lower latency
    if size:
        cap.set(cv2.CAP_PROP_FOURCC, cv2.VideoWriter_fourcc(*"MJPG"))
        cap.set(cv2.CAP_PROP_FRAME_WIDTH, size[0])
        cap.set(cv2.CAP_PROP_FRAME_HEIGHT, size[1])
    if fps:
        cap.set(cv2.CAP_PROP_FPS, fps)


# ----------------------------------------------------------------------------------------------- video

_MAX_TS_GAP = 10.0  # seconds: a longer jump forward in MPEG-TS is a join, not a pause (as in FFmpeg)
_ROTATIONS = {1: cv2.ROTATE_90_COUNTERCLOCKWISE, 2: cv2.ROTATE_180, 3: cv2.ROTATE_90_CLOCKWISE}


def _quarter_turns(degrees: float) -> int:
    return round(degrees / 90) % 4


def upright(image: np.ndarray, degrees: float) -> np.ndarray:
    """A frame turned as its display matrix says: ``degrees`` counter-clockwise, as ``VideoFrame.rotation``.

    Phones store portrait video as landscape pictures plus this rotation, so applying it is what
    lets the network see people standing up. Rounded to the nearest quarter turn.
    """
    turns = _quarter_turns(degrees)
    return cv2.rotate(image, _ROTATIONS[turns]) if turns else image


class Timeline:
    """One stream's media times made continuous, so that they only move forward.

    Where the times jump back (two .ts files joined, a recorder that restarted), or forward by more
    than ``max_gap``, the stream carries on from where its previous item ended. The video and the
    audio copy each keep one, so after a join both resume where they stopped, still in sync.
    ``tolerance`` lets a slightly early item through (decoders can jitter by less than a frame).
    """

    def __init__(self, step: float, max_gap: float = math.inf, tolerance: float = 0.0):
        self.step, self.max_gap, self.tolerance = step, max_gap, tolerance
        self._offset = 0.0  # seconds added to the stream's own times since its last discontinuity
        self._last: float | None = None
        self._end = 0.0  # where the last item ended

    @classmethod
    def of(cls, container: av.container.InputContainer, step: float, tolerance: float = 0.0) -> Timeline:
        """A timeline for a stream of ``container``: long jumps forward count only in formats with them."""
        discontinuous = bool(container.format.flags & av.format.Flags.ts_discont.value)
        return cls(step, _MAX_TS_GAP if discontinuous else math.inf, tolerance)

    def __call__(self, t: float, duration: float | None = None) -> float:
        """``t`` on the continuous timeline; the item lasts ``duration`` (else ``step``) seconds."""
        out = t + self._offset
        if self._last is not None and (out <= self._last - self.tolerance or out > self._end + self.max_gap):
            self._offset += self._end - out
            out = self._end
        self._last = out
        self._end = out + (duration or self.step)
        return out


class VideoSource(Source):
    """A video file decoded with PyAV; opening decodes the first frame so bad files fail before any work.

    Frames come upright (the display matrix applied) with continuous timestamps (``Timeline``), and
    pictures over ``max_pixels`` are refused before the decoder allocates them.
    """

    temporal = True

    def __init__(self, path: Path, size: tuple[int, int] | None = None, max_pixels: int = MAX_PIXELS):
        super().__init__()
        self.path = path
        self._resize = size
        self._container, self._stream = _open_video(path, max_pixels)
        self._stream.thread_type = "AUTO"
        self._start = self._stream.start_time or 0
        rate = self._stream.average_rate or self._stream.guessed_rate
        self.fps = float(rate) if rate else DEFAULT_FPS
        self.frame_count = self._stream.frames or None
        self._timeline = Timeline.of(self._container, 1 / self.fps, tolerance=0.5 / self.fps)
        self._decoded = self._decode()
        try:
            self._first = next(self._decoded)
        except StopIteration:
            self._container.close()
            raise UserError(
                f"{path}: contains no decodable video frames; check the file plays in a video player"
            ) from None
        h, w = self._first.image.shape[:2]
        self.size = (w, h)

    def _decode(self) -> Iterator[Frame]:
        """Decode packet by packet so a corrupt packet costs one warning, not the whole run."""
        index = skipped = 0
        try:
            for packet in self._container.demux(self._stream):
                try:
                    decoded = packet.decode()
                except av.error.FFmpegError as exc:
                    skipped += 1
                    if skipped <= 3:
                        log.warning(
                            "%s: skipped a corrupt frame near %.2fs (%s)",
                            self.path.name,
                            _time(packet),
                            exc.strerror,
                        )
                    continue
                for vf in decoded:
                    yield Frame(self._convert(vf), index, time.perf_counter(), self._pts(vf))
                    index += 1
        except av.error.FFmpegError as exc:  # the container itself is broken past this point
            log.warning(
                "%s: stopped reading after %d frames, the rest is unreadable (%s)", self.path.name, index, exc
            )
        if skipped > 3:
            log.warning("%s: skipped %d corrupt frames in total", self.path.name, skipped)

    def _pts(self, vf: av.VideoFrame) -> float | None:
        if vf.pts is None:
            return None
        return self._timeline(float((vf.pts - self._start) * vf.time_base))

    def _convert(self, vf: av.VideoFrame) -> np.ndarray:
        """yuv420p via cv2.cvtColor is ~2x faster than PyAV's swscale bgr24; other formats take swscale."""
        rotation = vf.rotation
        if self._resize:
            w, h = self._resize if _quarter_turns(rotation) % 2 == 0 else self._resize[::-1]
            image = vf.to_ndarray(format="bgr24", width=w, height=h, interpolation="AREA")
        elif vf.format.name == "yuv420p" and vf.width % 2 == 0 and vf.height % 2 == 0:
            image = cv2.cvtColor(vf.to_ndarray(format="yuv420p"), cv2.COLOR_YUV2BGR_I420)
        else:
            image = vf.to_ndarray(format="bgr24")
        return upright(image, rotation)

    def _frames(self) -> Iterator[Frame]:
        if self._first is None:
            raise RuntimeError("a VideoSource can be iterated only once; open the file again")
        first, self._first = self._first, None
        first.captured_at = time.perf_counter()
        yield first
        while True:
            with self._lock:
                frame = None if self._closed.is_set() else next(self._decoded, None)
            if frame is None:
                return
            yield frame

    @property
    def audio_path(self) -> Path | None:
        return self.path

    def _release(self) -> None:
        self._decoded.close()
        self._container.close()


def _time(packet: av.Packet) -> float:
    return float(packet.pts * packet.time_base) if packet.pts is not None and packet.time_base else 0.0


def _open_video(path: Path, max_pixels: int) -> tuple[av.container.InputContainer, av.VideoStream]:
    """The container and its picture stream, or a UserError (the container closed) saying what is wrong."""
    try:
        container = av.open(literal(path), "r")  # a name like file:x.mp4 is a file, not a protocol
    except (av.error.FFmpegError, OSError, UnicodeDecodeError) as exc:
        raise UserError(
            f"{path}: not a readable video ({os_reason(exc)}); check the file plays in a video player"
        ) from None
    try:
        stream = _picture_stream(container, path)
        check_pixels(path, stream.codec_context.width, stream.codec_context.height, max_pixels)
    except UserError:
        container.close()
        raise
    return container, stream


def _picture_stream(container: av.container.InputContainer, path: Path) -> av.VideoStream:
    """The first video stream that is not cover art (an attached picture is one still, not a video)."""
    attached = av.stream.Disposition.attached_pic
    for stream in container.streams.video:
        if not stream.disposition & attached:
            return stream
    if container.streams.video and container.streams.audio:
        raise UserError(f"{path}: has no video, only audio and cover art; give a video or image file")
    raise UserError(f"{path}: has no video stream; give a video or image file")


# ----------------------------------------------------------------------------------------------- images


def _natural_key(path: Path) -> list[object]:
    """frame2 before frame10, the way people and image-sequence tools number files."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", path.name)]


def _fit(image: np.ndarray, size: tuple[int, int] | None) -> np.ndarray:
    if size is None or (image.shape[1], image.shape[0]) == tuple(size):
        return image
    return cv2.resize(image, tuple(size), interpolation=cv2.INTER_AREA)


class _ImageFiles(Source):
    """Image files, one by one; an unreadable or oversized one after the first is skipped, with a warning."""

    def __init__(self, paths: list[Path], size: tuple[int, int] | None = None, max_pixels: int = MAX_PIXELS):
        super().__init__()
        self.paths = paths
        self.frame_count = len(paths)
        self._resize = size
        self._max_pixels = max_pixels
        self._first = self._read(paths[0], fatal=self.single_image)
        h, w = self._first.shape[:2] if self._first is not None else (0, 0)
        self.size = (w, h)

    def _read(self, path: Path, fatal: bool) -> np.ndarray | None:
        try:
            image = read_image(path, self._max_pixels)
        except UserError as error:
            if fatal:
                raise
            log.warning("%s; skipped", error)
            return None
        if image is None:
            if fatal:
                raise UserError(f"{path}: not a readable image; check the file opens in an image viewer")
            log.warning("%s: not a readable image, skipped", path)
            return None
        return _fit(image, self._resize)

    def _frames(self) -> Iterator[Frame]:
        index = 0
        for i, path in enumerate(self.paths):
            if self._closed.is_set():
                return
            image = self._first if i == 0 else self._read(path, fatal=False)
            if image is None:
                continue
            yield Frame(image, index, time.perf_counter(), self._pts(index), path.stem)
            index += 1
        if index == 0:
            raise UserError(f"{self.paths[0].parent}: none of the images could be read; check the files")

    def _pts(self, index: int) -> float | None:
        return None


class ImageSource(_ImageFiles):
    """One photo: a single frame, written back as one image."""

    single_image = True

    def __init__(self, path: Path, size: tuple[int, int] | None = None, max_pixels: int = MAX_PIXELS):
        super().__init__([path], size, max_pixels)


class FolderSource(_ImageFiles):
    """A folder of independent photos, each at its own size, written back as a folder."""


class SequenceSource(_ImageFiles):
    """A folder of numbered images played as video: one size and a frame rate, so it can become a clip."""

    temporal = True

    def __init__(
        self,
        paths: list[Path],
        size: tuple[int, int] | None = None,
        fps: float | None = None,
        max_pixels: int = MAX_PIXELS,
    ):
        super().__init__(paths, size, max_pixels)
        if self._first is None:
            raise UserError(f"{paths[0]}: first image of the sequence is unreadable; check the file")
        self._resize = self.size  # later frames of another size are scaled to the first one
        self.fps = DEFAULT_FPS if fps is None else float(fps)
        if not (math.isfinite(self.fps) and self.fps > 0):
            raise UserError(f"frame rate {fps!r} is not a positive number; give --fps such as 30")

    def _pts(self, index: int) -> float | None:
        return index / self.fps


def _folder_images(folder: Path) -> list[Path]:
    paths = [p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()]
    if not paths:
        exts = ", ".join(sorted(IMAGE_EXTENSIONS))
        raise UserError(f"{folder}: folder has no images ({exts}); point --input at a folder of images")
    return sorted(paths, key=_natural_key)


# ----------------------------------------------------------------------------------------------- factory


def open_source(
    camera: str | int | None = None,
    input: str | Path | None = None,
    *,
    sequence: bool = False,
    realtime: bool = False,
    size: tuple[int, int] | None = None,
    fps: float | None = None,
    max_pixels: int = MAX_PIXELS,
) -> Source:
    """Open whatever the user pointed at; with neither a camera nor an input, the default camera.

    ``max_pixels`` bounds every decoded picture (and a requested ``size``) in pixels.
    """
    if camera is not None and input is not None:
        raise UserError("give either --camera or --input, not both")
    if size is not None:
        check_pixels(Path("--size"), *size, max_pixels)
    if input is None:
        return CameraSource(0 if camera is None else camera, size, fps)
    source = _open_file(Path(input).expanduser(), sequence, size, fps, max_pixels)
    # photos have no clock to keep: --realtime paces only videos and sequences
    return Paced(source) if realtime and source.temporal else source


def _open_file(
    path: Path, sequence: bool, size: tuple[int, int] | None, fps: float | None, max_pixels: int
) -> Source:
    if not path.exists():
        raise UserError(f"{path}: no such file or folder; check the --input path")
    if path.is_dir():
        paths = _folder_images(path)
        if sequence:
            return SequenceSource(paths, size, fps, max_pixels)
        return FolderSource(paths, size, max_pixels)
    _require_regular(path)
    if path.suffix.lower() in IMAGE_EXTENSIONS:
        return ImageSource(path, size, max_pixels)
    if path.stat().st_size == 0:
        raise UserError(f"{path}: file is empty; check the --input path")
    return VideoSource(path, size, max_pixels)


def _require_regular(path: Path) -> None:
    """Refuse pipes, sockets and devices: opening a pipe with no writer would wait forever."""
    mode = path.stat().st_mode
    if stat.S_ISREG(mode):
        return
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        raise UserError(f"{path}: is a device, not a file; for a camera use --camera {path}")
    raise UserError(f"{path}: is a pipe or socket, not a file; save the stream to a file and give that")


# ----------------------------------------------------------------------------------------------- reader


def reader(source: Source, depth: int = 4) -> Stage[Frame, Frame]:
    """Capture on a thread so decoding or camera waits overlap with inference; ``stop()`` closes ``source``.

    Live sources keep only the newest frame (older ones are dropped and counted in the stage's
    ``dropped``), so latency never builds up behind a slow consumer; file sources block instead, so
    no frame is ever lost.
    """
    policy, maxsize = (QueuePolicy.LATEST, 1) if source.live else (QueuePolicy.BLOCK, depth)
    return Stage(_same, source, maxsize=maxsize, policy=policy, name="deepbg-capture", on_stop=source.close)


def _same(frame: Frame) -> Frame:
    return frame
