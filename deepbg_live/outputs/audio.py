"""Sound in output files: the input's audio carried over (copied, or transcoded), or a generated waveform."""

from __future__ import annotations

import logging
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from deepbg_live.capture import Timeline
from deepbg_live.formats import literal

log = logging.getLogger(__name__)

_BLOCK = 1024  # samples per audio frame handed to the encoder
_OPUS_RATES = (8000, 12000, 16000, 24000, 48000)


class AudioCopier:
    """Carries the input's audio into the output, aligned to the video's first frame (time 0).

    Packets are copied untouched when their codec is in ``accepted`` (no quality loss, no CPU),
    otherwise decoded and re-encoded with ``encoder`` ("aac" or "libopus"). Their times are made
    continuous as the capture side makes the video's (``Timeline``), so a file whose timestamps
    reset (two .ts files joined) keeps its sound, in step.
    """

    def __init__(
        self, source: Path, out: av.container.OutputContainer, accepted: tuple[str, ...], encoder: str
    ):
        self._in = None
        self._stream = None
        try:
            self._in = av.open(literal(source))  # a name like file:x.mp4 is a file, not a protocol
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
        # AAC from MPEG-TS (ADTS) repeats its setup in each packet instead of once up front, where an
        # index written before the first packet (fragmented MP4) needs it: such a track is re-encoded.
        adts = src.codec_context.name == "aac" and not src.codec_context.extradata
        self._copy = src.codec_context.name in accepted and not adts
        if self._copy:
            self._stream = out.add_stream_from_template(src)
        else:
            rate = src.codec_context.sample_rate or 48000
            if encoder == "libopus" and rate not in _OPUS_RATES:
                rate = 48000
            layout = src.codec_context.layout.name if src.codec_context.channels <= 2 else "stereo"
            self._stream = out.add_stream(encoder, rate=rate, layout=layout)
        self._out = out
        self._packets = self._in.demux(src)
        frame = (src.codec_context.frame_size or _BLOCK) / (src.codec_context.sample_rate or 48000)
        self._timeline = Timeline.of(self._in, step=frame)
        self._pending: tuple[av.Packet, float] | None = None  # the next packet and its continuous start
        self._done = False

    def copy_until(self, t: float) -> None:
        """Mux audio that starts before ``t`` seconds (the end of the last video frame written)."""
        if self._stream is None or self._done:
            return
        while True:
            pending = self._peek()
            if pending is None or pending[1] >= t:
                return
            self._pending = None
            self._mux(*pending)

    def finish(self, t: float) -> None:
        self.copy_until(t)
        if self._stream is not None and not self._copy:
            self._out.mux(self._stream.encode(None))

    def _peek(self) -> tuple[av.Packet, float] | None:
        while self._pending is None:
            try:
                packet = next(self._packets)
            except (StopIteration, av.error.FFmpegError):
                self._done = True
                return None
            if packet.pts is not None and packet.size:  # the demuxer's final flush packet is empty
                start = float(packet.pts * packet.time_base) - self._zero
                duration = float(packet.duration * packet.time_base) if packet.duration else None
                self._pending = packet, self._timeline(start, duration)
        return self._pending

    def _mux(self, packet: av.Packet, start: float) -> None:
        shift = start - (float(packet.pts * packet.time_base) - self._zero)  # the timeline's correction
        if self._copy:
            ticks = round((shift - self._zero) / packet.time_base)
            packet.pts += ticks
            if packet.dts is not None:
                packet.dts += ticks
            packet.stream = self._stream
            self._out.mux(packet)
            return
        try:
            frames = packet.decode()
        except av.error.FFmpegError:
            return  # a corrupt audio packet: a click, not a reason to stop
        for af in frames:
            start = float(af.pts * af.time_base) - self._zero + shift if af.pts is not None else 0.0
            if start < 0:
                continue
            af.pts = round(start * self._stream.codec_context.sample_rate)
            af.time_base = Fraction(1, self._stream.codec_context.sample_rate)
            self._out.mux(self._stream.encode(af))

    def close(self) -> None:
        if self._in is not None:
            self._in.close()
            self._in = None


def write_waveform(out: av.container.OutputContainer, stream: av.AudioStream, wave: np.ndarray) -> None:
    """Encode a mono float32 waveform into ``stream`` (a mono track of ``out``), from time 0."""
    rate = stream.codec_context.sample_rate
    for start in range(0, len(wave), _BLOCK):
        block = av.AudioFrame.from_ndarray(wave[None, start : start + _BLOCK], format="fltp", layout="mono")
        block.sample_rate = rate
        block.pts = start
        block.time_base = Fraction(1, rate)
        out.mux(stream.encode(block))
    out.mux(stream.encode())
