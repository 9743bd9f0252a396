"""The CUDA fp16 path in one short run: does it agree with the CPU, and how fast is a 1080p frame?

``python -m benchmarks.cuda_check --out cuda.json`` is the first thing to run on a lent GPU
(MODEL_CARD.md, "Training on a lent GPU"). For each shipped model it checks that ``--device cuda``
opens torch in fp16 and that its probabilities match torch fp32 on the CPU, then times what
issue 17's GPU goal counts, "model plus compositing" at 1920x1080 (preprocess, the network, the
guided-filter refiner and the uint8 composite onto a colour), as the live loop runs it, one frame
after another. It needs neither PyAV nor a video file, so it runs where only torch is installed.
"""

from __future__ import annotations

import json
from collections import deque
from pathlib import Path

import click
import numpy as np

from benchmarks.timing import summarise, time_calls
from deepbg_live.composite import ColorBackground, composite
from deepbg_live.engine import Segmenter
from deepbg_live.errors import UserError
from deepbg_live.model_files import shipped_models
from deepbg_live.refine import EdgeRefiner
from deepbg_live.runtimes.base import Backend
from deepbg_live.sample import sample_frame

FULL_HD = (1920, 1080)
AGREEMENT = 1e-2  # largest |fp16 - fp32| probability allowed, as tests/test_engine.py allows


def check_model(name: str, device: str, repeats: int, size: tuple[int, int] = FULL_HD) -> dict:
    """Agreement with the CPU and the per-frame time of model plus compositing, for one shipped model."""
    frame = sample_frame(0, size)
    on_device = Segmenter(name, device=device)
    # the same weights in fp32 on the CPU, through torch so that no ONNX file is needed
    on_cpu = Segmenter(name, device="cpu", backend=Backend.TORCH_CPU)
    difference = float(np.abs(on_device(frame) - on_cpu(frame)).max())
    stream, refiner, background = on_device.stream(), EdgeRefiner(), ColorBackground()
    alive = deque(maxlen=4)  # keep a few results alive, as the live loop does, so no timing pays page faults

    def one_frame() -> None:
        alive.append(composite(frame, refiner(stream(frame), frame), background.render(frame)))

    timing = summarise(time_calls(one_frame, repeats, warmup=10))
    return {
        "model": name,
        "backend": on_device.backend,
        "precision": on_device.precision,
        "max_difference_from_cpu_fp32": difference,
        "agrees": difference <= AGREEMENT,
        "frame": f"{size[0]}x{size[1]}",
        "model_plus_compositing": timing,
        "fps": 1000.0 / timing["p50_ms"],
    }


@click.command()
@click.option(
    "--out", type=click.Path(dir_okay=False, path_type=Path), help="Also write the results here as JSON."
)
@click.option(
    "--repeats", default=300, show_default=True, type=click.IntRange(1), help="Timed frames per model."
)
def main(out: Path | None, repeats: int) -> None:
    """Check and time the CUDA fp16 path of every shipped model; exit 1 if one disagrees with the CPU."""
    try:
        rows = [check_model(name, "cuda", repeats) for name in shipped_models()]
    except UserError as exc:  # no CUDA here, for one
        raise click.ClickException(str(exc)) from None
    text = json.dumps(rows, indent=2)
    click.echo(text)
    if out:
        out.write_text(text + "\n")
    if not all(row["agrees"] for row in rows):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
