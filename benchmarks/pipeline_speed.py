"""Part 2: the whole pipeline on a clip at 640x480, 1280x720 and 1920x1080.

Two modes per resolution: "file" (as fast as possible, no frame dropped: sustained fps and
per-stage cost) and "live" (the file played as a 30 fps camera: capture-to-output latency and
dropped frames). The output is an H.264 file, so the output stage includes encoding.

The clip is generated (a still portrait filmed by a swaying, noisy static camera, encoded as
H.264) unless ``--clip`` names one, which is then re-encoded at each resolution.

Then the race (``benchmarks.race``): ``deepbg-live`` against a plain MediaPipe loop on the
first resolution's clip (640x480), each a child process, file to file and live, start-up included;
and ours alone for ``--help`` and one photo of that size.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import av
import cv2
import numpy as np
from tqdm import tqdm

from benchmarks import race
from benchmarks.context import Context
from benchmarks.reference import DEFAULT_REFERENCES
from benchmarks.reference_loop import selfie_path
from benchmarks.temporal import camera_frame, portrait_pairs
from benchmarks.timing import ResourceMeter, summarise
from deepbg_live.errors import UserError
from deepbg_live.geometry import long_side_size, parse_size

FPS = 30
RESOLUTIONS = ["640x480", "1280x720", "1920x1080"]


@dataclass
class PipelineSettings:
    resolutions: list[str] = field(default_factory=lambda: list(RESOLUTIONS))
    frames: int = 300  # per resolution, file mode
    live_frames: int = 300  # per resolution, live mode (10 s at 30 fps)
    live_all: bool = True  # live mode at every resolution; False: only at the first
    clip: str | None = None  # a video to use instead of the generated one
    background: str = "blur"  # "blur" (the costlier, realistic case) or "color"
    reference_loop: bool = True  # race ours against the reference loop (needs its model)
    references: str = str(DEFAULT_REFERENCES)  # the folder holding MediaPipe selfie
    race_frames: int = 300  # the 10-second clip of issue 17; start-up weighs more in a shorter one
    race_repeats: int = 3
    # MediaPipe takes about 3 ms a frame on one thread; a second one mostly spin-waits, which
    # would inflate the reference's CPU and flatter ours, so the reference gets one by default.
    race_reference_threads: int = 1

    @classmethod
    def for_mode(cls, quick: bool) -> PipelineSettings:
        if quick:
            return cls(frames=40, live_frames=60, live_all=False, race_frames=90, race_repeats=1)
        return cls()


# --- the input clip ---------------------------------------------------------------------------


def scene(width: int, height: int, ctx: Context) -> np.ndarray:
    """A BGR picture of a person for the generated clip: a real portrait when data is present."""
    pairs = portrait_pairs(ctx.data_root, 1)
    if not pairs:
        return synthetic_person(width, height)
    still = cv2.imread(str(pairs[0].image), cv2.IMREAD_COLOR)
    # Fit the portrait to the frame height and fill the sides with a blurred copy, like a phone video.
    backdrop = cv2.GaussianBlur(cv2.resize(still, (width, height)), (0, 0), 15)
    scale = height / still.shape[0]
    fitted = cv2.resize(
        still, (min(width, round(still.shape[1] * scale)), height), interpolation=cv2.INTER_AREA
    )
    left = (width - fitted.shape[1]) // 2
    backdrop[:, left : left + fitted.shape[1]] = fitted
    return backdrop


def synthetic_person(width: int, height: int) -> np.ndarray:
    """A head and shoulders over a gradient, for when there are no photos."""
    image = np.empty((height, width, 3), np.uint8)
    image[:] = np.linspace(60, 190, width, dtype=np.uint8)[None, :, None]
    cx, unit = width // 2, height // 8
    cv2.ellipse(image, (cx, 3 * unit), (unit, int(1.3 * unit)), 0, 0, 360, (120, 150, 210), -1)
    cv2.ellipse(image, (cx, 8 * unit), (3 * unit, 3 * unit), 0, 180, 360, (90, 60, 40), -1)
    return image


def generated_frames(width: int, height: int, count: int, ctx: Context) -> Iterator[np.ndarray]:
    base = scene(width, height, ctx)
    rng = np.random.default_rng(0)
    for t in range(count):
        yield camera_frame(base, t, rng)


def file_frames(path: Path, width: int, height: int, count: int) -> Iterator[np.ndarray]:
    with av.open(str(path)) as container:
        for i, frame in enumerate(container.decode(video=0)):
            if i >= count:
                break
            yield cv2.resize(frame.to_ndarray(format="bgr24"), (width, height), interpolation=cv2.INTER_AREA)


def prepare_clip(resolution: str, count: int, settings: PipelineSettings, ctx: Context) -> Path:
    """The input clip, encoded once as H.264 (as a phone or screen recorder would)."""
    from deepbg_live.outputs.video import write_clip

    width, height = parse_size(resolution)
    path = ctx.scratch / f"clip-{resolution}-{count}.mp4"
    if not path.exists():
        if settings.clip:
            frames = file_frames(Path(settings.clip), width, height, count)
        else:
            frames = generated_frames(width, height, count, ctx)
        write_clip(path, frames, (width, height), FPS, preset="veryfast")
    return path


def prepare_photo(clip: Path) -> Path:
    """The clip's first frame as a JPEG beside it: the one-photo job of the race."""
    path = clip.with_suffix(".jpg")
    if not path.exists():
        with av.open(str(clip)) as container:
            frame = next(container.decode(video=0)).to_ndarray(format="bgr24")
        cv2.imwrite(str(path), frame, [cv2.IMWRITE_JPEG_QUALITY, 92])
    return path


# --- running it -------------------------------------------------------------------------------


def make_background(kind: str):
    from deepbg_live.composite import BlurBackground, ColorBackground

    return BlurBackground() if kind == "blur" else ColorBackground()


def decode_times(clip: Path) -> list[float]:
    """ms to decode each frame of ``clip`` alone.

    The pipeline's own "capture" time runs from a frame being decoded to segmentation taking it,
    which in file mode is mostly queue wait; decoding is timed here on its own instead.
    """
    from deepbg_live.capture import open_source

    samples = []
    with open_source(input=str(clip)) as source:
        start = time.perf_counter()
        for _frame in source:
            now = time.perf_counter()
            samples.append((now - start) * 1000)
            start = now
    return samples


def run_once(
    clip: Path, resolution: str, live: bool, settings: PipelineSettings, ctx: Context, segmenter
) -> dict:
    """One pass of the real ``Pipeline`` over ``clip``; its stage timings plus CPU and memory.

    A live pass is a live job's: the segmenter from ``Context.live_segmenter`` and the adaptive
    quality ladder (without the fallback model, which only the shipped default has).
    """
    from deepbg_live.adaptive import LADDER, AdaptiveConfig, QualityController
    from deepbg_live.capture import open_source
    from deepbg_live.outputs import VideoFileSink
    from deepbg_live.pipeline import Pipeline
    from deepbg_live.refine import EdgeRefiner
    from deepbg_live.smoothing import TemporalSmoother

    width, height = parse_size(resolution)
    segmenter(np.zeros((height, width, 3), np.uint8))  # warm the backend outside the timing
    sink = VideoFileSink(ctx.scratch / f"out-{resolution}.mp4", fps=FPS, size=(width, height), live=live)
    pipeline = Pipeline(
        segmenter, make_background(settings.background), [sink], TemporalSmoother(), EdgeRefiner()
    )
    # the sink is closed (its trailer written) inside the meter, as part of the run's cost
    quality = QualityController(FPS, AdaptiveConfig(LADDER)) if live else None
    with open_source(input=str(clip), realtime=live) as source, ResourceMeter() as meter, sink:
        stats = pipeline.run(source, progress=ctx.progress and not live, quality=quality)
    decode = summarise(decode_times(clip))
    return {
        "resolution": resolution,
        "mode": "live" if live else "file",
        "decode_p50_ms": decode["p50_ms"],
        "decode_p95_ms": decode["p95_ms"],
        **stats.summary(),
        "cpu_percent": meter.usage.cpu_percent,
        "peak_rss_mb": meter.usage.peak_rss_mb,
        "peak_rss_is_process_lifetime": meter.usage.peak_is_process_lifetime,
        "wall_s": meter.usage.wall_s,
        "latencies_ms": [round(v, 2) for v in stats.latencies],
        "lowest_quality": quality.lowest.label if quality else None,
        "quality_changes": len(quality.changes) if quality else 0,
    }


def isolated_costs(resolution: str, repeats: int, long_side: int) -> dict:
    """Refinement and compositing alone, one thread, on a portrait frame: the 4 ms budget check.

    Results are kept alive for a few iterations, as in the real loop, so the timing does not
    include page-faulting freshly allocated output buffers on every call.
    """
    from collections import deque

    from benchmarks.timing import time_calls
    from deepbg_live.composite import BlurBackground, ColorBackground, composite
    from deepbg_live.refine import EdgeRefiner
    from deepbg_live.sample import sample_frame

    width, height = parse_size(resolution)
    frame = sample_frame(0, (width, height))
    small = long_side_size(width, height, long_side)  # the model's output for this frame
    prob = cv2.GaussianBlur(np.random.default_rng(0).random(small[::-1], dtype=np.float32), (0, 0), 4)
    refiner, alive = EdgeRefiner(), deque(maxlen=4)
    row = {"resolution": resolution}
    for name, background in (("color", ColorBackground()), ("blur", BlurBackground())):
        step = lambda bg=background: alive.append(composite(frame, refiner(prob, frame), bg.render(frame)))  # noqa: E731
        row[f"refine_composite_{name}"] = summarise(time_calls(step, repeats))
    row["refine"] = summarise(time_calls(lambda: alive.append(refiner(prob, frame)), repeats))
    return row


def race_reference(ctx: Context, settings: PipelineSettings) -> dict:
    """Ours against the reference loop on the race clip (``benchmarks.race``)."""
    model = selfie_path(Path(settings.references))
    if model is None:
        raise UserError(f"no reference model in {settings.references}; pass --references DIR")
    resolution = settings.resolutions[0]  # 640x480 unless told otherwise
    contest = race.Race(
        clip=prepare_clip(resolution, settings.race_frames, settings, ctx).resolve(),
        one_frame_clip=prepare_clip(resolution, 1, settings, ctx).resolve(),
        photo=prepare_photo(prepare_clip(resolution, 1, settings, ctx)).resolve(),
        reference_model=model.resolve(),
        out=(ctx.scratch / "race").resolve(),
        threads=settings.race_reference_threads,
        repeats=settings.race_repeats,
        precision=ctx.precision,
        model=str(Path(ctx.weights).resolve()) if ctx.weights else None,
    )
    return {"resolution": resolution, **race.run(contest)}


def run(ctx: Context, settings: PipelineSettings | None = None) -> dict:
    settings = settings or PipelineSettings.for_mode(ctx.quick)
    segmenter = ctx.segmenter(device="auto")
    jobs = [(r, False) for r in settings.resolutions]
    jobs += [(r, True) for r in (settings.resolutions if settings.live_all else settings.resolutions[:1])]
    rows = []
    for resolution, live in tqdm(jobs, desc="pipeline", disable=not ctx.progress):
        count = settings.live_frames if live else settings.frames
        clip = prepare_clip(resolution, count, settings, ctx)
        job_segmenter = ctx.live_segmenter() if live else segmenter
        rows.append(run_once(clip, resolution, live, settings, ctx, job_segmenter))
    isolated = [
        isolated_costs(r, 30 if ctx.quick else 200, segmenter.long_side) for r in settings.resolutions
    ]
    result = {
        "settings": asdict(settings),
        "isolated": isolated,
        "backend": segmenter.backend,
        "precision": segmenter.precision,
        "flip_average": segmenter.flip_average,
        "long_side": segmenter.long_side,
        "threads": ctx.threads,
        "rows": rows,
    }
    if settings.reference_loop:
        result["reference_loop"] = race_reference(ctx, settings)
    return result
