"""Video files: a picture track, plus the input's audio, in the format the suffix names.

The codec choices are data: ``CONTAINERS`` says, for each file suffix, which ``VideoFormat`` it gets
for opaque and for transparent video, which audio codecs it takes as they are, and how its muxer
writes the file so that a crash leaves it playable: fragmented MP4/MOV and Matroska clusters, one
per keyframe, a keyframe every ``KEYFRAME_SECONDS``.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

from deepbg_live.capture import Frame
from deepbg_live.errors import UserError, WriteFailed
from deepbg_live.formats import literal
from deepbg_live.outputs.audio import AudioCopier, write_waveform
from deepbg_live.outputs.base import SinkBase
from deepbg_live.outputs.safety import (
    Input,
    Output,
    PartialFile,
    check_paths,
    make_folder,
    truncate_to_whole_boxes,
    write_failed,
)

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
# ProRes 4444, what editors expect for alpha: 30 MB for the 5 s 640x480 sample with a soft matte,
# against 54 MB in QuickTime Animation (qtrle), which also reached 318 MB for 10 s of a noisy camera.
PRORES_4444 = VideoFormat("prores_ks", "yuva444p10le", (("profile", "4444"),), alpha=True)

# A live job's x264 runs on one thread: it never cost more CPU than x264's own count (1.5x the
# cores) and each extra frame thread delays the output by a frame. Files keep x264's own count,
# which can use idle cores (measured by ``python -m benchmarks cpu-choices``).
LIVE_X264_THREADS = 1


KEYFRAME_SECONDS = 1.0  # a keyframe, so a fragment or cluster, this often: what a crash can cost at most

# Each fragment is written whole as its keyframe ends it, its index with it, and the (empty) index
# at the start still lets players start before the download ends, as faststart did.
# delay_moov holds that index back until the first fragment is cut (nothing a crash could keep is
# lost: the first fragment isn't whole before then), so it can carry each track's edit list: the
# offset that starts x264's B-frame-delayed video and AAC's 1024 priming samples both at 0, with
# the zero duration that CMAF prescribes for fragments. Without it the muxer shifts every track by
# the larger delay and stretches each first sample back to 0: the video began 2 frames after the
# audio, and with bf=0 the audio's 21 ms alone still moved every frame after the first. (bf=0 would
# also cost 39% more bytes at crf 23 on the sample.) negative_cts_offsets and use_editlist without
# delay_moov changed nothing (FFmpeg 8.1).
_FRAGMENTED = (("movflags", "frag_keyframe+empty_moov+default_base_moof+delay_moov"),)
# Matroska writes a cluster as it closes; closing one at each keyframe bounds what a crash can cost.
_CLUSTERS = (("cluster_time_limit", str(round(KEYFRAME_SECONDS * 1000))),)


@dataclass(frozen=True)
class Container:
    """What one file type holds: its video formats, the audio codecs it takes as they are, its muxer."""

    muxer: str  # FFmpeg's name for it: the file is handed over as a file object, never as a name
    opaque: VideoFormat
    transparent: VideoFormat | None  # None: the container can't store alpha
    audio_codecs: tuple[str, ...]  # copied untouched; anything else is transcoded to ``audio_encoder``
    audio_encoder: str = "aac"
    muxer_options: tuple[tuple[str, str], ...] = _CLUSTERS  # how it stays playable after a crash
    torn_end: bool = False  # a fragment cut part way is reported as invalid data, so trim it off


_MP4_AUDIO = ("aac", "mp3", "alac", "ac3", "eac3")  # not Opus: QuickTime and Windows players reject it in MP4
_MKV_AUDIO = ("aac", "mp3", "opus", "vorbis", "flac", "ac3", "eac3", "alac", "pcm_s16le")
CONTAINERS = {
    ".mp4": Container("mp4", H264, None, _MP4_AUDIO, muxer_options=_FRAGMENTED, torn_end=True),
    ".m4v": Container("ipod", H264, None, _MP4_AUDIO, muxer_options=_FRAGMENTED, torn_end=True),
    ".mov": Container(
        "mov",
        H264,
        PRORES_4444,
        (*_MP4_AUDIO, "pcm_s16le", "pcm_s24le"),
        muxer_options=_FRAGMENTED,
        torn_end=True,
    ),
    ".mkv": Container("matroska", H264, VP9_ALPHA, _MKV_AUDIO),
    ".webm": Container("webm", VP9, VP9_ALPHA, ("opus", "vorbis"), audio_encoder="libopus"),
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


_TICKS_PER_FRAME = 100  # the output's time base divides a frame this finely (see VideoFileSink._add_video)


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
    keyframe_every: int | None = None,
    threads: int | None = None,
) -> av.VideoStream:
    stream = out.add_stream(fmt.codec, rate=rate)
    stream.width, stream.height, stream.pix_fmt = size[0], size[1], fmt.pixel_format
    if keyframe_every is not None:
        stream.codec_context.gop_size = keyframe_every
    if threads is not None:
        stream.codec_context.thread_count = threads
    options = dict(fmt.options)
    if fmt is H264:
        options.update({"preset": preset} if preset else {})
        options.update({"crf": str(crf)} if crf is not None else {})
    if options:
        stream.options = options
    return stream


class VideoFileSink(SinkBase):
    """Encode to a playable file: H.264 (or VP9/Animation with alpha), input audio kept.

    Frame timestamps come from ``frame.pts`` when known (files, variable frame rate included: exact
    sync with the audio), else from the capture clock when ``live`` (a camera that dropped frames
    still yields a real-time-length video), else from ``frame.index``. Audio is muxed alongside the
    video as it is written, so a file closed early (Ctrl-C) holds audio up to exactly where the video
    stops.

    The file is written as ``NAME.partial.EXT`` and renamed to ``path`` by ``close()``; a failed job
    (``abandon()``, or a write error, raised as WriteFailed) keeps it under the partial name, cut
    back to its last whole fragment, and leaves any existing file at ``path`` as it was.

    ``threads`` is the encoder's thread count: None gives a live job ``LIVE_X264_THREADS`` and a
    file the encoder's own choice; 0 always means the encoder's own choice.
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
        threads: int | None = None,
    ):
        self.path = Path(path)
        self.transparent = transparent
        self.live = live
        self.size = (int(size[0]), int(size[1]))
        self.rate = _rate(fps)
        self.container, fmt = choose_format(self.path, transparent)
        if audio_from is not None:
            check_paths([Input(Path(audio_from))], [Output(self.path)])
        make_folder(self.path.parent)
        self.file = PartialFile(self.path)  # the video is written here, and gets its name when complete
        try:
            self._out = av.open(
                self.file, "w", format=self.container.muxer, options=dict(self.container.muxer_options)
            )
            preset = preset or ("ultrafast" if live else "superfast")
            if threads is None and live:
                threads = LIVE_X264_THREADS
            self._video = self._add_video(fmt, preset, crf, threads)
            self._audio = self._audio_copier(audio_from, self.container) if audio_from else None
        except BaseException:
            self.file.discard()
            raise
        self._last_n = -1  # the last frame's time, in ticks
        self._t0: float | None = None
        self._closed = False

    def _audio_copier(self, source: Path, container: Container) -> AudioCopier | None:
        try:
            return AudioCopier(Path(source), self._out, container.audio_codecs, container.audio_encoder)
        except (av.error.FFmpegError, ValueError, KeyError) as exc:  # an exotic codec or layout
            log.warning("%s: could not carry the audio over (%s); the output has no sound", source, exc)
            return None

    def _add_video(self, fmt: VideoFormat, preset: str, crf: int, threads: int | None) -> av.VideoStream:
        w, h = self.size
        if fmt.pixel_format.startswith("yuv"):  # 4:2:0 needs even dimensions; drop the odd last row/column
            w, h = w - w % 2, h - h % 2
        self._enc_size = (w, h)
        keyframe_every = max(1, round(self.rate * KEYFRAME_SECONDS))
        stream = _add_video(self._out, fmt, (w, h), self.rate, preset, crf, keyframe_every, threads)
        if fmt.pixel_format == "yuva420p":
            # tells WebM readers (browsers, libvpx) to use the alpha plane
            stream.metadata["alpha_mode"] = "1"
        if fmt.pixel_format == "yuv420p":
            # cv2's BGR->I420 is BT.601 limited range; say so, or HD players assume BT.709
            ctx = stream.codec_context
            ctx.colorspace, ctx.color_primaries, ctx.color_trc, ctx.color_range = 6, 6, 6, 1
        # Ticks of 1/100 frame, so a file's frames keep their own times: a variable frame rate stays
        # in step with its sound. MPEG-4 Part 2 refuses a time base finer than 1/65535 s.
        self._ticks = 1 if fmt is MPEG4 else _TICKS_PER_FRAME
        self._time_base = 1 / (self.rate * self._ticks)
        stream.time_base = stream.codec_context.time_base = self._time_base
        return stream

    def _timestamp(self, frame: Frame) -> int:
        """Position in ticks, strictly increasing, so repeats and clock jitter never collide.

        A frame with a media time keeps it; camera-clock and index times lie on the 1/fps grid.
        """
        if frame.pts is not None:
            return max(round(frame.pts * self.rate * self._ticks), self._last_n + 1)
        if self.live:
            if self._t0 is None:
                self._t0 = frame.captured_at
            n = round((frame.captured_at - self._t0) * self.rate)
        else:
            n = frame.index
        return max(int(n), self._last_n // self._ticks + 1) * self._ticks

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
        try:
            self._out.mux(self._video.encode(vf))
            self._last_n = n
            if self._audio:
                self._audio.copy_until(self.duration)
        except (OSError, av.error.FFmpegError) as exc:  # a full disk, a lost drive: stop, keep what is done
            raise self._failed(exc) from None

    @property
    def duration(self) -> float:
        """Seconds of video written so far (end of the last frame)."""
        return float((self._last_n + self._ticks) / (self.rate * self._ticks))

    def close(self) -> None:
        """Flush the encoder, finish the audio and the file, and give it its name (replacing any file there).

        A write that fails here raises WriteFailed, keeping the file under its partial name.
        """
        if self._closed:
            return
        self._closed = True
        try:
            self._finish()
        except (OSError, av.error.FFmpegError) as exc:
            raise self._failed(exc) from None
        if self._last_n < 0:
            self.file.discard()  # an empty container would just confuse players
            return
        try:
            self.file.commit()
        except OSError as exc:
            raise self._failed(exc) from None

    def abandon(self) -> None:
        """After a failure elsewhere: finish what can be, and keep the file under its partial name."""
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(OSError, av.error.FFmpegError):  # the fragments finished before still play
            self._finish()
        if self._keep() is not None:
            log.warning("%s: the job failed; kept what was finished in %s", self.path, self.file.partial)

    def _finish(self) -> None:
        """Flush the encoder, end the audio at the video's end, and write the trailer; the container closes."""
        try:
            if self._last_n >= 0:
                self._out.mux(self._video.encode())
                if self._audio:
                    self._audio.finish(self.duration)
        finally:
            try:
                self._out.close()
            finally:
                if self._audio:
                    self._audio.close()

    def _failed(self, exc: Exception) -> WriteFailed:
        """Stop writing after ``exc``: keep the whole fragments under the partial name, and say so."""
        if not self._closed:
            self._closed = True
            # the trailer cannot be written either; the fragments before it play without it
            with contextlib.suppress(OSError, av.error.FFmpegError):
                self._out.close()
            if self._audio:
                self._audio.close()
        return write_failed(self.path, exc, kept=self._keep())

    def _keep(self) -> Path | None:
        """Close the partial file, trimmed to whole fragments; None (and no file) if no frame in it plays."""
        self.file.close()
        if self.container.torn_end:
            with contextlib.suppress(OSError):
                truncate_to_whole_boxes(self.file.partial)
        if self._last_n < 0 or not _plays(self.file.partial):
            self.file.discard()
            return None
        return self.file.partial


def _plays(path: Path) -> bool:
    """Whether a player would show at least one frame of ``path``."""
    try:
        with av.open(literal(path)) as container:
            return next(container.decode(video=0), None) is not None
    except (av.error.FFmpegError, OSError, IndexError):
        return False


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
    make_folder(path.parent)
    container, fmt = choose_format(path, transparent=False)
    rate = _rate(fps)
    file = PartialFile(path)
    try:
        with av.open(file, "w", format=container.muxer) as out:  # a plain file: the index at the end
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
        file.commit()
    except BaseException:
        file.discard()
        raise
    return path
