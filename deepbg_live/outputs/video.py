"""Video files: a constant-frame-rate picture track, plus the input's audio, in the format the suffix names.

The codec choices are data: ``CONTAINERS`` says, for each file suffix, which ``VideoFormat`` it gets
for opaque and for transparent video, and which audio codecs it takes as they are.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

from deepbg_live.capture import Frame
from deepbg_live.errors import UserError
from deepbg_live.outputs.audio import AudioCopier, write_waveform
from deepbg_live.outputs.base import SinkBase

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class VideoFormat:
    """How the picture is encoded: an FFmpeg encoder, its pixel format, and its fixed options."""

    codec: str
    pixel_format: str
    options: tuple[tuple[str, str], ...] = ()
    alpha: bool = False


_VP9_OPTIONS = (("deadline", "realtime"), ("cpu-used", "8"), ("row-mt", "1"), ("crf", "32"), ("b", "0"))

H264 = VideoFormat("libx264", "yuv420p")  # its preset and crf are the writer's arguments
MPEG4 = VideoFormat("mpeg4", "yuv420p", (("qscale", "3"),))  # only where PyAV lacks libx264
VP9 = VideoFormat("libvpx-vp9", "yuv420p", _VP9_OPTIONS)
VP9_ALPHA = VideoFormat("libvpx-vp9", "yuva420p", _VP9_OPTIONS, alpha=True)
# QuickTime "Animation": lossless, and 8x faster to encode than ProRes 4444 here
ANIMATION = VideoFormat("qtrle", "argb", alpha=True)


@dataclass(frozen=True)
class Container:
    """What one file type holds: its video formats, and the audio codecs it takes as they are."""

    opaque: VideoFormat
    transparent: VideoFormat | None  # None: the container can't store alpha
    audio_codecs: tuple[str, ...]  # copied untouched; anything else is transcoded to ``audio_encoder``
    audio_encoder: str = "aac"
    faststart: bool = False  # index before the data (MP4 family), so players start before the download ends


_MP4_AUDIO = ("aac", "mp3", "alac", "ac3", "eac3")  # not Opus: QuickTime and Windows players reject it in MP4
CONTAINERS = {
    ".mp4": Container(H264, None, _MP4_AUDIO, faststart=True),
    ".m4v": Container(H264, None, _MP4_AUDIO, faststart=True),
    ".mov": Container(H264, ANIMATION, (*_MP4_AUDIO, "pcm_s16le", "pcm_s24le"), faststart=True),
    ".mkv": Container(
        H264, VP9_ALPHA, ("aac", "mp3", "opus", "vorbis", "flac", "ac3", "eac3", "alac", "pcm_s16le")
    ),
    ".webm": Container(VP9, VP9_ALPHA, ("opus", "vorbis"), audio_encoder="libopus"),
}


def choose_format(path: Path, transparent: bool) -> tuple[Container, VideoFormat]:
    """The container a file name asks for and the video format to write into it; a UserError if none fits."""
    ext = path.suffix.lower()
    container = CONTAINERS.get(ext)
    if container is None:
        raise UserError(f"{path}: unsupported video type {ext or '(none)'}; use .mp4, .mov, .mkv or .webm")
    fmt = container.transparent if transparent else container.opaque
    if fmt is None:
        raise UserError(f"{path}: {ext} can't store transparency; use a .webm (VP9) or .mov (Animation) name")
    if fmt is H264 and "libx264" not in av.codecs_available:
        log.warning("libx264 is not available in this PyAV build; writing MPEG-4 Part 2 (larger files)")
        return container, MPEG4
    return container, fmt


def _rate(fps: float) -> Fraction:
    """29.97 -> 30000/1001: NTSC rates are exact fractions, and the time base must be exact for CFR."""
    return Fraction(fps).limit_denominator(1001)


def _add_video(
    out: av.container.OutputContainer,
    fmt: VideoFormat,
    size: tuple[int, int],
    rate: Fraction,
    preset: str | None,
    crf: int | None = None,
) -> av.VideoStream:
    stream = out.add_stream(fmt.codec, rate=rate)
    stream.width, stream.height, stream.pix_fmt = size[0], size[1], fmt.pixel_format
    options = dict(fmt.options)
    if fmt is H264:
        options.update({"preset": preset} if preset else {})
        options.update({"crf": str(crf)} if crf is not None else {})
    if options:
        stream.options = options
    return stream


class VideoFileSink(SinkBase):
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
        container, fmt = choose_format(self.path, transparent)
        if audio_from is not None and Path(audio_from).resolve() == self.path.resolve():
            raise UserError(f"{self.path}: output would overwrite the input; choose another --output name")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._out = self._open_output(container)
        self._video = self._add_video(fmt, preset or ("ultrafast" if live else "superfast"), crf)
        self._audio = self._audio_copier(audio_from, container) if audio_from else None
        self._last_n = -1
        self._t0: float | None = None
        self._closed = False

    def _audio_copier(self, source: Path, container: Container) -> AudioCopier | None:
        try:
            return AudioCopier(Path(source), self._out, container.audio_codecs, container.audio_encoder)
        except (av.error.FFmpegError, ValueError, KeyError) as exc:  # an exotic codec or layout
            log.warning("%s: could not carry the audio over (%s); the output has no sound", source, exc)
            return None

    def _open_output(self, container: Container) -> av.container.OutputContainer:
        options = {"movflags": "+faststart"} if container.faststart else {}
        try:
            return av.open(str(self.path), "w", options=options)
        except (av.error.FFmpegError, OSError) as exc:
            raise UserError(
                f"{self.path}: could not create the video ({exc}); check the folder is writable"
            ) from None

    def _add_video(self, fmt: VideoFormat, preset: str, crf: int) -> av.VideoStream:
        w, h = self.size
        if fmt.pixel_format.startswith("yuv"):  # 4:2:0 needs even dimensions; drop the odd last row/column
            w, h = w - w % 2, h - h % 2
        self._enc_size = (w, h)
        stream = _add_video(self._out, fmt, (w, h), self.rate, preset, crf)
        if fmt.pixel_format == "yuva420p":
            # tells WebM readers (browsers, libvpx) to use the alpha plane
            stream.metadata["alpha_mode"] = "1"
        if fmt.pixel_format == "yuv420p":
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
        if self._audio:
            self._audio.copy_until(self.duration)

    @property
    def duration(self) -> float:
        """Seconds of video written so far (end of the last frame)."""
        return float((self._last_n + 1) / self.rate)

    def close(self) -> None:
        """Flush the encoder, finish the audio at the video's end, and write the trailer (index, faststart)."""
        if self._closed:
            return
        self._closed = True
        wrote_any = self._last_n >= 0
        try:
            if wrote_any:
                self._out.mux(self._video.encode())
                if self._audio:
                    self._audio.finish(self.duration)
        finally:
            self._out.close()
            if self._audio:
                self._audio.close()
        if not wrote_any:
            self.path.unlink(missing_ok=True)  # an empty container would just confuse players


def write_clip(
    path: str | Path,
    frames: Iterable[np.ndarray],
    size: tuple[int, int],
    fps: float,
    *,
    audio: np.ndarray | None = None,
    audio_rate: int = 48000,
    preset: str | None = None,
) -> Path:
    """Encode BGR frames (and an optional mono float32 waveform) into a clip, in the suffix's opaque format.

    For the built-in sample and for test and benchmark media: H.264 yuv420p in .mp4/.mov/.mkv (x264's
    default ``preset`` unless given), frame ``i`` at ``i / fps`` seconds.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    container, fmt = choose_format(path, transparent=False)
    rate = _rate(fps)
    with av.open(str(path), "w") as out:
        video = _add_video(out, fmt, size, rate, preset)
        sound = None
        if audio is not None:
            sound = out.add_stream(container.audio_encoder, rate=audio_rate, layout="mono")
        for i, image in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(image, format="bgr24")
            frame.pts, frame.time_base = i, 1 / rate
            out.mux(video.encode(frame))
        out.mux(video.encode())
        if sound is not None:
            write_waveform(out, sound, audio)
    return path
