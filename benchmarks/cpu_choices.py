"""CPU per frame of the runtime's choices (issue 17, item 3), in CPU-ms so contention does not hide them.

- ONNX Runtime's intra-op spinning, on and off, with frames paced at 30 fps (a camera) and back to
  back (a file), at 1 and 2 threads: CPU-ms per frame of our model, next to its wall ms.
- x264 presets at crf 23 on the pipeline's clip, through the product's ``VideoFileSink``: CPU-ms
  per frame, wall ms per frame, bitrate, and the quality that buys (luma PSNR against the frames
  the encoder was given); and the product's two presets at one x264 thread and at x264's own count.

CPU is this process's (``time.process_time``: every thread, spinning ones included), measured
over the whole window, idle waits between paced frames too.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import av
import cv2
import numpy as np

from benchmarks.context import Context
from benchmarks.pipeline_speed import FPS, PipelineSettings, prepare_clip
from benchmarks.reference import LATENCY_THREADS
from benchmarks.timing import ResourceMeter, summarise

PRESETS = ("ultrafast", "superfast", "veryfast", "faster")
PRODUCT_PRESETS = ("ultrafast", "superfast")  # VideoFileSink's live and file defaults
X264_THREADS = (1, 0)  # 0: x264 picks (1.5x the cores, plus lookahead threads)
CRF = 23


@dataclass(frozen=True)
class ChoicesSettings:
    model_frames: int  # frames per spinning/threads row (paced rows take frames / 30 seconds)
    encode_frames: int  # frames of the clip each preset encodes

    @classmethod
    def for_mode(cls, quick: bool) -> ChoicesSettings:
        return cls(30, 40) if quick else cls(300, 300)


# --- ONNX Runtime: spinning and threads -------------------------------------------------------


def open_ours(ctx: Context, threads: int, spinning: bool):
    """Our model as the run's other parts open it, with a chosen thread count and spinning."""
    from deepbg_live.engine import Segmenter
    from deepbg_live.runtimes import open_runtime

    runtime = open_runtime(
        ctx.weights_path, "cpu", precision=ctx.precision, threads=threads, spinning=spinning
    )
    return Segmenter(runtime, flip_average=ctx.flip_average)


def model_cost(infer, frames: int, paced: bool, warmup: int = 3) -> dict:
    """Wall ms per call and CPU-ms per frame of ``infer()``, called ``frames`` times.

    Paced, each call waits for its slot at ``FPS``, and the window runs to the end of the last
    slot, so the idle time after every frame (where spinning threads burn CPU) is counted alike.
    """
    for _ in range(warmup):
        infer()
    interval = 1.0 / FPS if paced else 0.0
    samples = []
    with ResourceMeter() as meter:
        start = time.perf_counter()
        for i in range(frames):
            time.sleep(max(0.0, start + i * interval - time.perf_counter()))
            called = time.perf_counter()
            infer()
            samples.append((time.perf_counter() - called) * 1000)
        time.sleep(max(0.0, start + frames * interval - time.perf_counter()))
    stats = summarise(samples)
    return {
        "wall_p50_ms": stats["p50_ms"],
        "wall_p95_ms": stats["p95_ms"],
        "cpu_ms_per_frame": 1000 * meter.usage.cpu_s / frames,
        "cpu_percent": meter.usage.cpu_percent,
        "frames": frames,
    }


def runtime_rows(ctx: Context, frame: np.ndarray, frames: int) -> list[dict]:
    """One row per pacing, thread count and spinning (spinning means nothing on one thread)."""
    rows = []
    for paced in (True, False):
        for threads in LATENCY_THREADS:
            for spinning in (True, False) if threads > 1 else (True,):
                segmenter = open_ours(ctx, threads, spinning)
                batch = segmenter.preprocess(frame)
                # a video frame's one look, with the previous mask a stream would give it
                prior = segmenter.infer(batch) if segmenter.takes_previous_mask else None
                cost = model_cost(lambda s=segmenter, b=batch, p=prior: s.infer(b, p), frames, paced)
                rows.append({"paced": paced, "threads": threads, "spinning": spinning, **cost})
                del segmenter  # its threads go, so they cannot spin through the next row
    return rows


# --- x264 presets -----------------------------------------------------------------------------


def encode_cost(frames: list, fps: float, size: tuple[int, int], preset: str, path: Path) -> dict:
    """The sink's whole cost per frame (colour conversion, x264, muxing), its bitrate and quality."""
    from deepbg_live.outputs import VideoFileSink

    with ResourceMeter() as meter, VideoFileSink(path, fps, size, preset=preset, crf=CRF) as sink:
        for frame in frames:
            sink.write(frame, frame.image, None)
    size_bytes = path.stat().st_size
    return {
        "preset": preset,
        "cpu_ms_per_frame": 1000 * meter.usage.cpu_s / len(frames),
        "wall_ms_per_frame": 1000 * meter.usage.wall_s / len(frames),
        "kbit_s": size_bytes * 8 / 1000 / (len(frames) / fps),
        "bytes": size_bytes,
        "psnr_y_db": luma_psnr(path, [f.image for f in frames]),
    }


def luma_psnr(path: Path, originals: list[np.ndarray]) -> float:
    """PSNR (dB) of the file's luma against the originals' (BT.601, as the sink converts), over all frames."""
    errors = []
    with av.open(str(path)) as container:
        for decoded, original in zip(container.decode(video=0), originals, strict=False):
            height = original.shape[0]
            luma = decoded.to_ndarray(format="yuv420p")[:height].astype(np.float64)
            truth = cv2.cvtColor(original, cv2.COLOR_BGR2YUV_I420)[:height]
            errors.append(np.mean((luma - truth) ** 2))
    mse = float(np.mean(errors))
    return math.inf if mse == 0 else 10 * math.log10(255.0**2 / mse)


def x264_threads_cost(frames: list, fps: float, preset: str, threads: int, path: Path) -> dict:
    """The sink's cost per frame with x264 on ``threads`` (0: x264's own count, 1.5x the cores)."""
    from deepbg_live.outputs import VideoFileSink

    size = frames[0].image.shape[1::-1]
    with (
        ResourceMeter() as meter,
        VideoFileSink(path, fps, size, preset=preset, crf=CRF, threads=threads) as sink,
    ):
        for frame in frames:
            sink.write(frame, frame.image, None)
    return {
        "preset": preset,
        "threads": threads or "auto",
        "cpu_ms_per_frame": 1000 * meter.usage.cpu_s / len(frames),
        "wall_ms_per_frame": 1000 * meter.usage.wall_s / len(frames),
    }


def decoded_frames(clip: Path) -> tuple[list, float, tuple[int, int]]:
    """The clip's frames in memory (so decoding is not timed), its frame rate and size."""
    from deepbg_live.capture import open_source

    with open_source(input=str(clip)) as source:
        return list(source), source.fps, source.size


def x264_rows(ctx: Context, frames: list, fps: float, size: tuple[int, int]) -> list[dict]:
    return [encode_cost(frames, fps, size, p, ctx.scratch / f"x264-{p}.mp4") for p in PRESETS]


def x264_thread_rows(ctx: Context, frames: list, fps: float) -> list[dict]:
    """The product's two presets (live, file) at one thread and at x264's own count."""
    path = ctx.scratch / "x264-threads.mp4"
    return [x264_threads_cost(frames, fps, p, t, path) for p in PRODUCT_PRESETS for t in X264_THREADS]


def run(
    ctx: Context, pipeline: PipelineSettings | None = None, settings: ChoicesSettings | None = None
) -> dict:
    pipeline = pipeline or PipelineSettings.for_mode(ctx.quick)
    settings = settings or ChoicesSettings.for_mode(ctx.quick)
    resolution = pipeline.resolutions[0]
    clip = prepare_clip(resolution, settings.encode_frames, pipeline, ctx)
    frames, fps, size = decoded_frames(clip)
    return {
        "resolution": resolution,
        "fps": FPS,
        "crf": CRF,
        "model": runtime_rows(ctx, frames[0].image, settings.model_frames),
        "x264": x264_rows(ctx, frames, fps, size),
        "x264_threads": x264_thread_rows(ctx, frames, fps),
    }
