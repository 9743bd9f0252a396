"""Outputs for composited frames: video/image files, mask folders, a preview window and a virtual camera.

Every sink has ``write(frame, image, alpha)`` and an idempotent ``close()``; ``image`` is BGR uint8, or
BGRA uint8 when the output is transparent, and ``alpha`` is the uint8 (H, W) matte.
"""

from __future__ import annotations

import atexit
import logging
import os
import re
import signal
import socket
import sys
import threading
from collections import deque
from fractions import Fraction
from pathlib import Path

# cv2 must be loaded before av: PyAV bundles its own libxcb, and if that one is loaded first
# OpenCV's Qt window hangs forever in namedWindow (measured with opencv-python 5.0 + av 18).
import cv2  # isort: split

import av
import numpy as np

from .capture import Frame
from .errors import UserError

log = logging.getLogger(__name__)

# ------------------------------------------------------------------------------------------ shutdown


_sigterm_installed = False


def _install_sigterm_handler() -> None:
    """Turn SIGTERM into SystemExit so ``finally``/atexit run and files get their trailer written.

    Only when nobody else claimed SIGTERM and we are on the main thread (the only place handlers can be set).
    """
    global _sigterm_installed
    if _sigterm_installed or threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _raise_exit)
    _sigterm_installed = True


def _raise_exit(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


# ------------------------------------------------------------------------------------------ images


def _encode_to(path: Path, image: np.ndarray, params: list[int] | None = None) -> None:
    """Write via imencode so non-ASCII paths work on Windows, and fail loudly instead of returning False."""
    ok, buf = cv2.imencode(path.suffix or ".png", image, params or [])
    if not ok:
        raise UserError(f"{path}: could not encode the image; use a .png or .jpg name")
    try:
        buf.tofile(str(path))
    except OSError as exc:
        raise UserError(
            f"{path}: could not write ({exc.strerror}); check the folder exists and is writable"
        ) from None


_ALPHA_IMAGE_EXTS = frozenset({".png", ".webp", ".tif", ".tiff"})
_IMAGE_EXTS = _ALPHA_IMAGE_EXTS | {".jpg", ".jpeg", ".bmp"}


def _check_image_ext(path: Path, transparent: bool) -> None:
    ext = path.suffix.lower()
    if ext not in _IMAGE_EXTS:
        raise UserError(f"{path}: unsupported image type {ext or '(none)'}; use .png or .jpg")
    if transparent and ext not in _ALPHA_IMAGE_EXTS:
        raise UserError(f"{path}: {ext} can't store transparency; use a .png name")


def _as_writable(path: Path, image: np.ndarray) -> np.ndarray:
    if image.ndim == 3 and image.shape[2] == 4 and path.suffix.lower() not in _ALPHA_IMAGE_EXTS:
        raise UserError(f"{path}: {path.suffix} can't store transparency; use a .png name")
    return image


class ImageFileSink:
    """A single output image (the result for a single input photo); PNG keeps the alpha when transparent."""

    def __init__(self, path: str | Path, transparent: bool = False):
        self.path = Path(path)
        _check_image_ext(self.path, transparent)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.written = 0

    def write(self, frame: Frame, image: np.ndarray, alpha: np.ndarray) -> None:
        _encode_to(self.path, _as_writable(self.path, image))
        self.written += 1

    def close(self) -> None:
        pass


class FolderSink:
    """One file per frame, named after the input image (folder inputs) or numbered (videos, cameras)."""

    def __init__(self, folder: str | Path, suffix: str = ".png"):
        self.folder = Path(folder)
        self.suffix = suffix if suffix.startswith(".") else f".{suffix}"
        _check_image_ext(Path("x" + self.suffix), False)
        self.folder.mkdir(parents=True, exist_ok=True)
        self._used: set[str] = set()
        self.written = 0

    def _path(self, frame: Frame) -> Path:
        stem = frame.name if frame.name is not None else f"{frame.index:05d}"
        if stem in self._used:  # photo.jpg and photo.png in one folder must not overwrite each other
            stem = f"{stem}_{frame.index:05d}"
        self._used.add(stem)
        return self.folder / f"{stem}{self.suffix}"

    def write(self, frame: Frame, image: np.ndarray, alpha: np.ndarray) -> None:
        path = self._path(frame)
        _encode_to(path, _as_writable(path, image))
        self.written += 1

    def close(self) -> None:
        pass


class MaskSink(FolderSink):
    """--save-mask: the matte as an 8-bit greyscale PNG per frame, for checking or reuse in an editor."""

    def __init__(self, folder: str | Path):
        super().__init__(folder, ".png")

    def write(self, frame: Frame, image: np.ndarray, alpha: np.ndarray) -> None:
        _encode_to(self._path(frame), np.ascontiguousarray(alpha, dtype=np.uint8))
        self.written += 1


# ------------------------------------------------------------------------------------------ video

# extension -> (codec, pix_fmt, codec options) for opaque and transparent output
_OPAQUE = {".webm": ("libvpx-vp9", "yuv420p")}
_ALPHA = {
    ".webm": ("libvpx-vp9", "yuva420p"),
    ".mkv": ("libvpx-vp9", "yuva420p"),
    ".mov": ("qtrle", "argb"),  # "Animation": lossless and 8x faster to encode than ProRes 4444 here
}
_VIDEO_EXTS = (".mp4", ".m4v", ".mov", ".mkv", ".webm")
_VP9_OPTIONS = {"deadline": "realtime", "cpu-used": "8", "row-mt": "1", "crf": "32", "b": "0"}
# audio codecs each container takes as-is; anything else is transcoded to the first codec listed
_AUDIO_OK = {
    ".mp4": ("aac", "mp3", "alac", "ac3", "eac3"),  # not Opus: QuickTime and Windows players reject it in MP4
    ".m4v": ("aac", "mp3", "alac", "ac3", "eac3"),
    ".mov": ("aac", "mp3", "alac", "ac3", "eac3", "pcm_s16le", "pcm_s24le"),
    ".mkv": ("aac", "mp3", "opus", "vorbis", "flac", "ac3", "eac3", "alac", "pcm_s16le"),
    ".webm": ("opus", "vorbis"),
}
_AUDIO_ENCODER = {"aac": "aac", "opus": "libopus"}


def _pick_video_codec(path: Path, transparent: bool) -> tuple[str, str]:
    ext = path.suffix.lower()
    if ext not in _VIDEO_EXTS:
        raise UserError(f"{path}: unsupported video type {ext or '(none)'}; use .mp4, .mov, .mkv or .webm")
    if transparent:
        if ext not in _ALPHA:
            raise UserError(
                f"{path}: {ext} can't store transparency; use a .webm (VP9) or .mov (Animation) name"
            )
        return _ALPHA[ext]
    if ext in _OPAQUE:
        return _OPAQUE[ext]
    if "libx264" in av.codecs_available:
        return "libx264", "yuv420p"
    log.warning("libx264 is not available in this PyAV build; writing MPEG-4 Part 2 (larger files)")
    return "mpeg4", "yuv420p"


def _rate(fps: float) -> Fraction:
    """29.97 -> 30000/1001: NTSC rates are exact fractions, and the time base must be exact for CFR."""
    return Fraction(fps).limit_denominator(1001)


class VideoFileSink:
    """Encode to a playable file: H.264 (or VP9/Animation with alpha) at constant frame rate, input audio kept.

    Frame timestamps come from ``frame.pts`` when known (files: exact sync with the audio), else from the
    capture clock when ``live`` (a camera that dropped frames still yields a real-time-length video),
    else from ``frame.index``. Audio is muxed alongside the video as it is written, so a file closed
    early (Ctrl-C) holds audio up to exactly where the video stops.
    """

    def __init__(
        self,
        path: str | Path,
        fps: float,
        size: tuple[int, int],
        audio_from: Path | None = None,
        transparent: bool = False,
        progress_total: int | None = None,
        *,
        live: bool = False,
        preset: str | None = None,
        crf: int = 23,
    ):
        self.path = Path(path)
        self.transparent = transparent
        self.live = live
        self.size = (int(size[0]), int(size[1]))
        self.rate = _rate(fps)
        codec, pix_fmt = _pick_video_codec(self.path, transparent)
        if audio_from is not None and Path(audio_from).resolve() == self.path.resolve():
            raise UserError(f"{self.path}: output would overwrite the input; choose another --output name")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._out = self._open_output()
        self._video = self._add_video(codec, pix_fmt, preset or ("ultrafast" if live else "superfast"), crf)
        self._audio = self._audio_copier(audio_from) if audio_from else None
        self._last_n = -1
        self._t0: float | None = None
        self._closed = False
        self.written = 0
        self._progress = _progress_bar(progress_total, self.path)
        _install_sigterm_handler()
        atexit.register(self.close)

    def _audio_copier(self, source: Path) -> _AudioCopier | None:
        try:
            return _AudioCopier(Path(source), self._out, self.path)
        except (av.error.FFmpegError, ValueError, KeyError) as exc:  # an exotic codec or layout
            log.warning("%s: could not carry the audio over (%s); the output has no sound", source, exc)
            return None

    def _open_output(self) -> av.container.OutputContainer:
        options = {"movflags": "+faststart"} if self.path.suffix.lower() in (".mp4", ".m4v", ".mov") else {}
        try:
            return av.open(str(self.path), "w", options=options)
        except (av.error.FFmpegError, OSError) as exc:
            raise UserError(
                f"{self.path}: could not create the video ({exc}); check the folder is writable"
            ) from None

    def _add_video(self, codec: str, pix_fmt: str, preset: str, crf: int) -> av.VideoStream:
        w, h = self.size
        if pix_fmt.startswith("yuv"):  # 4:2:0 needs even dimensions; drop the odd last row/column
            w, h = w - w % 2, h - h % 2
        self._enc_size = (w, h)
        stream = self._out.add_stream(codec, rate=self.rate)
        stream.width, stream.height, stream.pix_fmt = w, h, pix_fmt
        if codec == "libx264":
            stream.options = {"preset": preset, "crf": str(crf)}
        elif codec == "libvpx-vp9":
            stream.options = dict(_VP9_OPTIONS)
        elif codec == "mpeg4":
            stream.options = {"qscale": "3"}
        if pix_fmt == "yuva420p":
            # tells WebM readers (browsers, libvpx) to use the alpha plane
            stream.metadata["alpha_mode"] = "1"
        if pix_fmt == "yuv420p":
            # cv2's BGR->I420 is BT.601 limited range; say so, or HD players assume BT.709
            ctx = stream.codec_context
            ctx.colorspace, ctx.color_primaries, ctx.color_trc, ctx.color_range = 6, 6, 6, 1
        self._time_base = 1 / self.rate
        stream.time_base = self._time_base
        return stream

    def _timestamp(self, frame: Frame) -> int:
        """Position on the 1/fps grid; strictly increasing, so repeats and clock jitter never collide."""
        if frame.pts is not None:
            n = round(frame.pts * self.rate)
        elif self.live:
            if self._t0 is None:
                self._t0 = frame.captured_at
            n = round((frame.captured_at - self._t0) * self.rate)
        else:
            n = frame.index
        return max(int(n), self._last_n + 1)

    def _to_video_frame(self, image: np.ndarray, alpha: np.ndarray) -> av.VideoFrame:
        w, h = self._enc_size
        if image.shape[1] != self.size[0] or image.shape[0] != self.size[1]:
            image = cv2.resize(image, self.size, interpolation=cv2.INTER_AREA)
            if alpha is not None:
                alpha = cv2.resize(alpha, self.size, interpolation=cv2.INTER_AREA)
        image = image[:h, :w]
        if self.transparent:
            if image.shape[2] == 3:
                image = np.dstack([image, alpha[:h, :w]])
            return av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="bgra")
        if image.shape[2] == 4:
            image = image[:, :, :3]
        if self._video.pix_fmt == "yuv420p":  # cv2's SIMD conversion is 2-3x faster than swscale's
            return av.VideoFrame.from_ndarray(cv2.cvtColor(image, cv2.COLOR_BGR2YUV_I420), format="yuv420p")
        return av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="bgr24")

    def write(self, frame: Frame, image: np.ndarray, alpha: np.ndarray) -> None:
        if self._closed:
            raise RuntimeError(f"{self.path}: write() after close()")
        n = self._timestamp(frame)
        vf = self._to_video_frame(image, alpha)
        vf.pts = n
        vf.time_base = self._time_base  # not the stream's: the muxer changes that once the header is written
        self._out.mux(self._video.encode(vf))
        self._last_n = n
        self.written += 1
        if self._audio:
            self._audio.copy_until(float((n + 1) / self.rate))
        if self._progress is not None:
            self._progress.update(1)

    @property
    def duration(self) -> float:
        """Seconds of video written so far (end of the last frame)."""
        return float((self._last_n + 1) / self.rate)

    def close(self) -> None:
        """Flush the encoder, finish the audio at the video's end, and write the trailer (index, faststart)."""
        if self._closed:
            return
        self._closed = True
        atexit.unregister(self.close)
        try:
            if self.written:
                self._out.mux(self._video.encode())
                if self._audio:
                    self._audio.finish(self.duration)
        finally:
            self._out.close()
            if self._audio:
                self._audio.close()
            if self._progress is not None:
                self._progress.close()
        if not self.written:
            self.path.unlink(missing_ok=True)  # an empty container would just confuse players

    def __enter__(self) -> VideoFileSink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _progress_bar(total: int | None, path: Path):
    if not total:
        return None
    from tqdm import tqdm

    return tqdm(total=total, unit="frame", desc=path.name, leave=False, dynamic_ncols=True)


class _AudioCopier:
    """Carries the input's audio into the output, aligned to the video's first frame (time 0).

    Packets are copied untouched when the output container accepts the codec (no quality loss, no CPU),
    otherwise decoded and re-encoded to AAC (Opus for WebM).
    """

    def __init__(self, source: Path, out: av.container.OutputContainer, out_path: Path):
        self._in = None
        self._stream = None
        try:
            self._in = av.open(str(source))
        except (av.error.FFmpegError, OSError) as exc:
            log.warning("%s: could not read its audio (%s); the output has no sound", source, exc)
            return
        if not self._in.streams.audio:
            self._in.close()
            self._in = None
            return
        src = self._in.streams.audio[0]
        video = self._in.streams.video[0] if self._in.streams.video else None
        # the capture side reports video time relative to the video's first frame; audio follows suit
        self._zero = (
            float(video.start_time * video.time_base) if video and video.start_time is not None else 0.0
        )
        accepted = _AUDIO_OK.get(out_path.suffix.lower(), ())
        self._copy = src.codec_context.name in accepted
        if self._copy:
            self._stream = out.add_stream_from_template(src)
        else:
            name = _AUDIO_ENCODER["opus" if out_path.suffix.lower() == ".webm" else "aac"]
            rate = src.codec_context.sample_rate or 48000
            if name == "libopus" and rate not in (8000, 12000, 16000, 24000, 48000):
                rate = 48000
            layout = src.codec_context.layout.name if src.codec_context.channels <= 2 else "stereo"
            self._stream = out.add_stream(name, rate=rate, layout=layout)
        self._out = out
        self._packets = self._in.demux(src)
        self._pending: av.Packet | None = None
        self._done = False

    def copy_until(self, t: float) -> None:
        """Mux audio that starts before ``t`` seconds (the end of the last video frame written)."""
        if self._stream is None or self._done:
            return
        while True:
            packet = self._peek()
            if packet is None or self._start(packet) >= t:
                return
            self._pending = None
            self._mux(packet)

    def finish(self, t: float) -> None:
        self.copy_until(t)
        if self._stream is not None and not self._copy:
            self._out.mux(self._stream.encode(None))

    def _peek(self) -> av.Packet | None:
        pending = self._pending
        while pending is None:
            try:
                packet = next(self._packets)
            except (StopIteration, av.error.FFmpegError):
                self._done = True
                return None
            if packet.pts is not None and packet.size:  # the demuxer's final flush packet is empty
                pending = packet
        self._pending = pending
        return pending

    def _start(self, packet: av.Packet) -> float:
        return float(packet.pts * packet.time_base) - self._zero

    def _mux(self, packet: av.Packet) -> None:
        if self._copy:
            shift = round(self._zero / packet.time_base)
            packet.pts -= shift
            if packet.dts is not None:
                packet.dts -= shift
            packet.stream = self._stream
            self._out.mux(packet)
            return
        try:
            frames = packet.decode()
        except av.error.FFmpegError:
            return  # a corrupt audio packet: a click, not a reason to stop
        for af in frames:
            start = float(af.pts * af.time_base) - self._zero if af.pts is not None else 0.0
            if start < 0:
                continue
            af.pts = round(start * self._stream.codec_context.sample_rate)
            af.time_base = Fraction(1, self._stream.codec_context.sample_rate)
            self._out.mux(self._stream.encode(af))

    def close(self) -> None:
        if self._in is not None:
            self._in.close()
            self._in = None


# ------------------------------------------------------------------------------------------ preview


KEY_ACTIONS = {
    ord("q"): "quit",
    27: "quit",  # Esc
    ord("b"): "background",
    ord("c"): "color",
    ord("i"): "image",
    ord(" "): "pause",
    ord("s"): "snapshot",
    ord("f"): "stats",
}
KEY_HELP = "q/Esc quit  b background  c colour  i image  space pause  s snapshot  f stats"


def _x_server_reachable(display: str) -> bool:
    """Connect to the X server's socket: a stale DISPLAY would make OpenCV's Qt abort the process."""
    match = re.fullmatch(r"(?P<host>[^:]*):(?P<num>\d+)(?:\.\d+)?", display)
    if not match:
        return True  # a form we don't parse (e.g. XQuartz's launchd path): let Qt try
    host, num = match["host"], int(match["num"])
    try:
        if host in ("", "unix"):
            for address in (f"/tmp/.X11-unix/X{num}", f"\0/tmp/.X11-unix/X{num}"):
                with socket.socket(socket.AF_UNIX) as sock:
                    sock.settimeout(1)
                    if sock.connect_ex(address) == 0:
                        return True
            return False
        with socket.create_connection((host, 6000 + num), timeout=1):
            return True
    except OSError:
        return False


def display_available() -> bool:
    """Whether a window can be opened: always on Windows/macOS, with a reachable X server on Linux.

    OpenCV's Qt build only speaks X11, so Wayland sessions need XWayland (which sets DISPLAY).
    """
    if sys.platform in ("win32", "darwin"):
        return True
    display = os.environ.get("DISPLAY", "")
    return bool(display) and _x_server_reachable(display)


_CHECKER_CACHE: dict[tuple[int, int], np.ndarray] = {}


def _checkerboard(w: int, h: int, cell: int = 16) -> np.ndarray:
    key = (w, h)
    if key not in _CHECKER_CACHE:
        yy, xx = np.mgrid[0:h, 0:w]
        light = ((yy // cell + xx // cell) % 2).astype(bool)
        board = np.where(light[..., None], np.uint8(200), np.uint8(150)).astype(np.uint8)
        _CHECKER_CACHE.clear()
        _CHECKER_CACHE[key] = np.repeat(board, 3, axis=2)
    return _CHECKER_CACHE[key]


def _over_checkerboard(bgra: np.ndarray) -> np.ndarray:
    """Show transparency the way image editors do."""
    h, w = bgra.shape[:2]
    board = _checkerboard(w, h)
    a = cv2.cvtColor(bgra[:, :, 3], cv2.COLOR_GRAY2BGR)
    fg = cv2.multiply(bgra[:, :, :3], a, scale=1 / 255)
    bg = cv2.multiply(board, cv2.bitwise_not(a), scale=1 / 255)
    return cv2.add(fg, bg)


class PreviewWindow:
    """An OpenCV window with an FPS/latency overlay and single-key controls (see KEY_HELP)."""

    def __init__(self, title: str = "deepbg-live", show_stats: bool = True):
        if not display_available():
            raise UserError("no display found: use --no-window, or run under xvfb-run")
        self.title = title
        self.show_stats = show_stats
        self._fps: float | None = None
        self._latency: float | None = None
        self._actions: deque[str] = deque()
        self._shown = False
        self._polled_since_show = True
        self._closed = False
        cv2.namedWindow(title, cv2.WINDOW_NORMAL | cv2.WINDOW_KEEPRATIO | cv2.WINDOW_GUI_NORMAL)

    def set_stats(self, fps: float, latency_ms: float) -> None:
        self._fps, self._latency = fps, latency_ms

    def _overlay(self, image: np.ndarray) -> np.ndarray:
        if not self.show_stats or self._fps is None:
            return image
        image = image.copy()
        text = f"{self._fps:5.1f} fps  {self._latency or 0:5.0f} ms"
        scale = max(0.5, image.shape[0] / 720)
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
        cv2.rectangle(image, (0, 0), (tw + 16, th + base + 16), (0, 0, 0), -1)
        cv2.putText(
            image, text, (8, th + 8), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA
        )
        return image

    def write(self, frame: Frame, image: np.ndarray, alpha: np.ndarray) -> None:
        """Show the frame and service the GUI once (the window only repaints while keys are polled)."""
        if self._closed or self._user_closed():
            return
        if image.ndim == 3 and image.shape[2] == 4:
            image = _over_checkerboard(image)
        if not self._shown:  # start at 1:1 (up to 1280 wide); the user can resize, keeping the aspect
            h, w = image.shape[:2]
            scale = min(1.0, 1280 / w)
            cv2.resizeWindow(self.title, round(w * scale), round(h * scale))
        cv2.imshow(self.title, self._overlay(image))
        self._shown = True
        self._queue_key(cv2.waitKey(1))
        self._polled_since_show = False

    def _user_closed(self) -> bool:
        if self._shown and cv2.getWindowProperty(self.title, cv2.WND_PROP_VISIBLE) < 1:
            self._closed = True
            self._actions.append("quit")
            return True
        return False

    def _queue_key(self, key: int) -> None:
        if key < 0:
            return
        action = KEY_ACTIONS.get(key & 0xFF) or KEY_ACTIONS.get(ord(chr(key & 0xFF).lower()))
        if action:
            self._actions.append(action)

    def poll_key(self, wait_ms: int = 1) -> str | None:
        """Next user action, or None; the caller acts on it (for "stats": toggle ``show_stats``).

        While paused, poll with ``wait_ms`` around 30 so the loop sleeps in the GUI instead of spinning.
        """
        if not self._actions and not self._closed:
            # nothing written since the last poll (e.g. paused): pump the GUI here, or it freezes
            if self._polled_since_show:
                self._queue_key(cv2.waitKey(max(1, wait_ms)))
            self._polled_since_show = True
            self._user_closed()
        return self._actions.popleft() if self._actions else None

    def close(self) -> None:
        if self._closed and not self._shown:
            return
        self._closed = True
        if self._shown:
            self._shown = False
            try:
                cv2.destroyWindow(self.title)
                cv2.waitKey(1)  # let the GUI thread actually unmap it
            except cv2.error:
                pass


# ------------------------------------------------------------------------------------------ virtual camera


def _driver_hint() -> str:
    if sys.platform.startswith("linux"):
        return (
            "install v4l2loopback (package v4l2loopback-dkms) and run "
            '`sudo modprobe v4l2loopback exclusive_caps=1 card_label="deepbg-live"`'
        )
    return "install OBS Studio and start its Virtual Camera once (this registers the driver), then close OBS"


def _bgr_to(fmt: str, bgr: np.ndarray) -> np.ndarray:
    """Convert to the layout pyvirtualcam expects for ``fmt`` (planar YUV as flat bytes)."""
    if fmt == "BGR":
        return bgr
    if fmt == "RGB":
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    if fmt == "RGBA":
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGBA)
    if fmt == "GRAY":
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
    i420 = cv2.cvtColor(bgr, cv2.COLOR_BGR2YUV_I420)
    if fmt == "I420":
        return i420
    h, w = bgr.shape[:2]
    y, uv = i420[:h], i420[h:].reshape(2, -1)
    if fmt == "NV12":
        return np.concatenate([y.reshape(-1), uv.T.reshape(-1)])
    return _packed_422(bgr, fmt)


def _packed_422(bgr: np.ndarray, fmt: str) -> np.ndarray:
    """YUYV/UYVY: full-resolution luma, chroma averaged over horizontal pairs."""
    yuv = cv2.cvtColor(bgr, cv2.COLOR_BGR2YUV)
    h, w = yuv.shape[:2]
    y = yuv[:, :, 0]
    uv = yuv[:, :, 1:].reshape(h, w // 2, 2, 2).mean(axis=2).round().astype(np.uint8)
    out = np.empty((h, w // 2, 4), np.uint8)
    if fmt == "YUYV":
        out[..., 0], out[..., 1], out[..., 2], out[..., 3] = y[:, 0::2], uv[..., 0], y[:, 1::2], uv[..., 1]
    else:
        out[..., 0], out[..., 1], out[..., 2], out[..., 3] = uv[..., 0], y[:, 0::2], uv[..., 1], y[:, 1::2]
    return out


class VirtualCameraSink:
    """Feeds a virtual webcam (v4l2loopback, OBS, Unity Capture) so Zoom/Meet/Teams can pick us as a camera."""

    def __init__(
        self,
        width: int,
        height: int,
        fps: float,
        device: str | None = None,
        fmt: str = "RGB",
        backend: str | None = None,
    ):
        import pyvirtualcam

        self.fmt = fmt.upper()
        if self.fmt not in pyvirtualcam.PixelFormat.__members__:
            choices = ", ".join(pyvirtualcam.PixelFormat.__members__)
            raise UserError(f"virtual camera format {fmt!r} is not supported; use one of {choices}")
        self.size = (int(width), int(height))
        try:
            self._cam = pyvirtualcam.Camera(
                width, height, fps, fmt=pyvirtualcam.PixelFormat[self.fmt], device=device, backend=backend
            )
        except Exception as exc:  # pyvirtualcam raises RuntimeError/ValueError/OSError by backend
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise UserError(f"no virtual camera available ({reason}); {_driver_hint()}") from None
        self.device = self._cam.device
        self._closed = False

    def write(self, frame: Frame, image: np.ndarray, alpha: np.ndarray) -> None:
        if image.ndim == 3 and image.shape[2] == 4:  # cameras have no alpha: show the subject over black
            image = cv2.multiply(
                image[:, :, :3], cv2.cvtColor(image[:, :, 3], cv2.COLOR_GRAY2BGR), scale=1 / 255
            )
        if (image.shape[1], image.shape[0]) != self.size:
            image = cv2.resize(image, self.size, interpolation=cv2.INTER_AREA)
        self._cam.send(_bgr_to(self.fmt, image))

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._cam.close()
