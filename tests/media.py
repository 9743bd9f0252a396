"""Synthetic test media, generated on the fly so the tests need no fixtures on disk or network.

Everything is deterministic: ``clip_frame(i, ...)`` is exactly what frame ``i`` of ``make_clip`` showed
before encoding, so tests can compare decoded frames against it (allowing for H.264 loss).
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

# cv2 must be loaded before av: PyAV bundles its own libxcb, and if that one is loaded first
# OpenCV's Qt window hangs forever in namedWindow (measured with opencv-python 5.0 + av 18).
import cv2  # isort: split

import av
import numpy as np

from deepbg_live.outputs.video import write_clip

BACKGROUND_BGR = (40, 160, 40)  # green
SQUARE_BGR = (30, 30, 220)  # red
AUDIO_RATE = 48000
TONE_HZ = 440.0


def clip_frame(i: int, size: tuple[int, int] = (320, 240), frames: int = 30) -> np.ndarray:
    """Frame ``i`` of the test clip: a red square sliding left to right over a green field."""
    w, h = size
    img = np.empty((h, w, 3), np.uint8)
    img[:] = BACKGROUND_BGR
    side = max(4, min(w, h) // 4)
    x = int((w - side) * i / max(1, frames - 1))
    y = (h - side) // 2
    img[y : y + side, x : x + side] = SQUARE_BGR
    return img


def tone(samples: int, start: int = 0, rate: int = AUDIO_RATE) -> np.ndarray:
    """A quiet sine tone, float32 in [-0.5, 0.5], continuing from sample ``start``."""
    t = (np.arange(samples) + start) / rate
    return (0.5 * np.sin(2 * np.pi * TONE_HZ * t)).astype(np.float32)


def make_clip(
    path: str | Path,
    frames: int = 30,
    size: tuple[int, int] = (320, 240),
    fps: float = 30,
    audio: bool = True,
    *,
    noise: float = 0.0,
) -> Path:
    """Write a short clip (H.264 + AAC in .mp4/.mkv) with a moving square and, optionally, a sine tone.

    ``noise`` (pixel std-dev) adds texture so encoders and decoders work at a realistic bitrate
    (benchmarks); tests leave it at 0 so frames stay comparable with ``clip_frame``.
    """
    rng = np.random.default_rng(0)

    def images() -> Iterator[np.ndarray]:
        for i in range(frames):
            img = clip_frame(i, size, frames)
            if noise:
                img = np.clip(img + rng.normal(0, noise, img.shape), 0, 255).astype(np.uint8)
            yield img

    sound = tone(round(frames / fps * AUDIO_RATE)) if audio else None
    return write_clip(path, images(), size, fps, audio=sound, audio_rate=AUDIO_RATE, preset="ultrafast")


def make_image(
    path: str | Path, size: tuple[int, int] = (64, 48), color: tuple[int, int, int] = (0, 0, 255)
) -> Path:
    """Write a solid-colour image (format from the extension)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    img = np.empty((size[1], size[0], 3), np.uint8)
    img[:] = color
    ok, buf = cv2.imencode(path.suffix, img)
    assert ok, path
    path.write_bytes(buf.tobytes())
    return path


def corrupt_middle(path: str | Path, fraction: float = 0.5, length: int = 2000, seed: int = 1) -> Path:
    """Overwrite ``length`` bytes in the middle of a file with random garbage (a damaged download)."""
    path = Path(path)
    data = bytearray(path.read_bytes())
    start = int(len(data) * fraction)
    data[start : start + length] = np.random.default_rng(seed).integers(0, 256, length, np.uint8).tobytes()
    path.write_bytes(bytes(data))
    return path


@dataclass
class MediaInfo:
    """What a player would see when it opens a file: enough to assert on outputs."""

    video_codec: str
    frames: int
    width: int
    height: int
    duration: float  # seconds, from the first frame's start to the last frame's end
    pix_fmt: str
    audio_codec: str | None = None
    audio_duration: float | None = None  # seconds of decoded samples


def probe(path: str | Path) -> MediaInfo:
    """Decode a whole file (video and audio) and report what is really in it, not what the header claims."""
    with av.open(str(path)) as c:
        v = c.streams.video[0]
        times = [f.time for f in c.decode(v)]
        rate = float(
            v.base_rate or v.guessed_rate or v.average_rate or 30
        )  # r_frame_rate: the grid, not the mean
        info = MediaInfo(
            video_codec=v.codec_context.name,
            frames=len(times),
            width=v.codec_context.width,
            height=v.codec_context.height,
            duration=(max(times) - min(times) + 1 / rate) if times else 0.0,
            pix_fmt=v.codec_context.pix_fmt,
        )
    with av.open(str(path)) as c:
        if c.streams.audio:
            a = c.streams.audio[0]
            info.audio_codec = a.codec_context.name
            info.audio_duration = sum(f.samples for f in c.decode(a)) / a.codec_context.sample_rate
    return info


# ------------------------------------------------------------------------------------------ X display helpers


def start_xvfb(size: tuple[int, int] = (800, 600)) -> tuple[subprocess.Popen, str] | None:
    """Start Xvfb on a free display number; returns (process, ":N"), or None if Xvfb isn't installed.

    ``-displayfd`` makes the server pick a free number and report it, so parallel runs never collide.
    """
    if shutil.which("Xvfb") is None:
        return None
    read_fd, write_fd = os.pipe()
    proc = subprocess.Popen(
        ["Xvfb", "-displayfd", str(write_fd), "-screen", "0", f"{size[0]}x{size[1]}x24", "-nolisten", "tcp"],
        pass_fds=(write_fd,),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    os.close(write_fd)
    with os.fdopen(read_fd) as pipe:
        number = pipe.readline().strip()
    if not number:
        proc.kill()
        proc.wait()
        return None
    return proc, f":{number}"


def screenshot(display: str) -> np.ndarray:
    """Grab the whole X screen as BGR with ``xwd`` (package x11-apps) and decode its XWD dump here."""
    data = subprocess.run(
        ["xwd", "-root", "-silent", "-display", display], check=True, capture_output=True, timeout=20
    ).stdout
    return decode_xwd(data)


def decode_xwd(data: bytes) -> np.ndarray:
    """Decode a TrueColor/DirectColor ZPixmap XWD dump (what Xvfb at depth 24 produces) to BGR.

    Once a Qt client has run, xwd switches from 4-byte to packed 3-byte pixels (still padded to
    4 bytes per pixel per line), so honour bits_per_pixel and bytes_per_line separately.
    """
    fields = struct.unpack(">25I", data[:100])
    header_size, width, height, byte_order = fields[0], fields[4], fields[5], fields[7]
    bits_per_pixel, bytes_per_line, ncolors, masks = fields[11], fields[12], fields[19], fields[14:17]
    stride = bits_per_pixel // 8
    assert stride in (3, 4), f"unsupported XWD pixel size {stride} bytes"
    raw = np.frombuffer(data, np.uint8, count=height * bytes_per_line, offset=header_size + 12 * ncolors)
    raw = raw.reshape(height, bytes_per_line)[:, : width * stride].reshape(height, width, stride)
    weights = 256 ** np.arange(stride, dtype=np.uint32)
    if byte_order != 0:  # MSBFirst
        weights = weights[::-1]
    pixels = (raw.astype(np.uint32) * weights).sum(axis=2, dtype=np.uint32)
    channels = [((pixels & m) >> _shift(m)).astype(np.uint8) for m in masks]  # red, green, blue
    return np.dstack(channels[::-1])


def _shift(mask: int) -> int:
    return (mask & -mask).bit_length() - 1


def decode_bgra(path: str | Path) -> list[np.ndarray]:
    """All frames as BGRA. VP9 alpha lives in side data only libvpx's decoder reads (FFmpeg's native one drops it)."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        if stream.codec_context.name != "vp9":
            return [f.to_ndarray(format="bgra") for f in container.decode(stream)]
        decoder = av.CodecContext.create("libvpx-vp9", "r")
        # demux() ends with an empty packet, which also flushes the decoder
        frames = [f for packet in container.demux(stream) for f in decoder.decode(packet)]
        return [f.to_ndarray(format="bgra") for f in frames]
