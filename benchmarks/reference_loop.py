"""The reference loop: what a plain MediaPipe background script does to a video (issue 17).

One thread, one frame at a time: decode (the product's own capture path, so decoding costs the
same), MediaPipe selfie on ONNX Runtime, a bilinear upsample of its mask to the frame, a float
composite onto flat green, and the product's own encoder (``VideoFileSink``, so the preset and
crf are ours: superfast for a file, ultrafast with ``--realtime``). The pipeline part runs it as a
child process beside ``deepbg-live``, so both pay their start-up and are timed the same way.

python -m benchmarks.reference_loop --model ../shared/reference-models/mediapipe_selfie.onnx \
    --input clip.mp4 --output out.mp4 [--realtime] [--threads 2]
"""

from __future__ import annotations

import sys
import time
from dataclasses import replace
from pathlib import Path

import click
import cv2
import numpy as np

from benchmarks.reference import SHARED_REFERENCES, OnnxSegmenter
from deepbg_live.errors import UserError
from deepbg_live.runtimes import default_threads

REFERENCE_NAME = "mediapipe-selfie"  # the model behind most Python background-replacement scripts
GREEN_BGR = (0, 255, 0)  # deepbg-live --color '#00ff00', the same flat background on both sides


SELFIE = next(r for r in SHARED_REFERENCES if r.label == REFERENCE_NAME)  # its layout and output


def selfie_path(folder: Path) -> Path | None:
    """MediaPipe selfie's file in the shared reference folder, or None when it is not there."""
    path = Path(folder) / SELFIE.path
    return path if path.is_file() else None


def composite_on_colour(frame: np.ndarray, prob: np.ndarray, colour_bgr: tuple[int, int, int]) -> np.ndarray:
    """The plain script's blend: the probability upsampled bilinearly, then a float mix with a colour."""
    height, width = frame.shape[:2]
    alpha = cv2.resize(prob, (width, height), interpolation=cv2.INTER_LINEAR)[:, :, None]
    return (frame * alpha + np.asarray(colour_bgr, np.float32) * (1.0 - alpha)).astype(np.uint8)


def run_loop(model: OnnxSegmenter, clip: Path, output: Path, realtime: bool) -> tuple[int, int, float]:
    """Frames written, frames dropped (late, with ``realtime``) and fps of one pass over ``clip``."""
    from deepbg_live.capture import open_source
    from deepbg_live.outputs import VideoFileSink

    frames = 0
    started = time.perf_counter()
    with open_source(input=str(clip), realtime=realtime) as source:
        with VideoFileSink(output, source.fps, source.size, live=source.live) as sink:
            for frame in source:
                image = composite_on_colour(frame.image, model(frame.image), GREEN_BGR)
                sink.write(frame, image, None)
                frames += 1
        dropped = source.dropped
    return frames, dropped, frames / (time.perf_counter() - started)


@click.command()
@click.option("--model", "model_path", required=True, type=click.Path(dir_okay=False, exists=True))
@click.option("--input", "clip", required=True, type=click.Path(dir_okay=False, exists=True))
@click.option("--output", required=True, type=click.Path(dir_okay=False))
@click.option("--realtime", is_flag=True, help="Pace the file at its frame rate, as deepbg-live --realtime.")
@click.option("--threads", type=click.IntRange(1), default=None, help="ONNX Runtime threads.")
def main(model_path: str, clip: str, output: str, realtime: bool, threads: int | None) -> None:
    """Run the reference loop over a clip; prints the same summary line as deepbg-live."""
    model = OnnxSegmenter(replace(SELFIE, path=model_path), threads or default_threads())
    frames, dropped, fps = run_loop(model, Path(clip), Path(output), realtime)
    dropped_text = f", {dropped} dropped" if dropped else ""
    click.echo(f"{frames} frames at {fps:.1f} fps{dropped_text}", err=True)


if __name__ == "__main__":
    try:
        main(standalone_mode=True)
    except UserError as error:
        click.echo(f"error: {error}", err=True)
        sys.exit(2)
