"""``python -m benchmarks``: the whole suite, or one part as a sub-command.

python -m benchmarks --quick --out bench-out          # everything, in about 3 minutes
python -m benchmarks model --configs realtime,depthwise8
python -m benchmarks pipeline --quick                # ours beside a plain MediaPipe loop, too
python -m benchmarks cpu-choices --quick             # spinning, threads and x264 presets in CPU-ms
python -m benchmarks reference                       # ours beside every shared reference model
python -m benchmarks reference selfie.onnx --norm unit
"""

from __future__ import annotations

import dataclasses
import functools
import sys
import time
from collections.abc import Callable
from pathlib import Path

import click

from benchmarks.context import DEFAULT_DATA_ROOT, DEFAULT_OUT, Contender, Context
from benchmarks.reference import DEFAULT_REFERENCES, NORMALISATIONS, Layout, ReferenceSettings
from deepbg_live.errors import UserError


def split_list(value: str | None) -> list[str] | None:
    return [item.strip() for item in value.split(",") if item.strip()] if value else None


def common_options(command: Callable) -> Callable:
    """Options every command takes; on a sub-command they override the group's."""
    options = [
        click.option(
            "--quick/--full",
            default=None,
            help="Quick mode (~3 min, for CI and a first look) or full (releases).",
        ),
        click.option(
            "--out",
            type=click.Path(file_okay=False, path_type=Path),
            help=f"Results folder [default: {DEFAULT_OUT}].",
        ),
        click.option(
            "--weights",
            type=click.Path(dir_okay=False),
            help="Our model (.safetensors/.pt) [default: the shipped weights].",
        ),
        click.option(
            "--data-root",
            type=click.Path(file_okay=False, path_type=Path),
            help=f"Shared data layout [default: {DEFAULT_DATA_ROOT}].",
        ),
        click.option(
            "--threads", type=click.IntRange(1), help="CPU threads for inference [default: cores, at most 4]."
        ),
        click.option(
            "--precision",
            type=click.Choice(["auto", "fp32", "int8"]),
            help="Our model's CPU arithmetic, as deepbg-live --precision [default: auto].",
        ),
        click.option(
            "--flip-average",
            is_flag=True,
            default=None,
            help="Our model also segments the mirrored frame, as deepbg-live --flip-average.",
        ),
        click.option("--no-progress", is_flag=True, default=None, help="Hide progress bars."),
    ]
    return functools.reduce(lambda cmd, option: option(cmd), reversed(options), command)


def make_context(click_ctx: click.Context, **given: object) -> Context:
    """Merge a sub-command's common options over the group's into a ``Context``."""
    merged = {**(click_ctx.obj or {}), **{k: v for k, v in given.items() if v is not None}}
    return Context(
        out=merged.get("out") or DEFAULT_OUT,
        quick=bool(merged.get("quick")),
        weights=merged.get("weights"),
        data_root=merged.get("data_root") or DEFAULT_DATA_ROOT,
        threads=merged.get("threads"),
        precision=merged.get("precision") or "auto",
        flip_average=bool(merged.get("flip_average")),
        progress=not merged.get("no_progress"),
    )


def override(settings: object, **values: object) -> object:
    """``settings`` with every value that was actually given on the command line replaced."""
    return dataclasses.replace(settings, **{k: v for k, v in values.items() if v is not None})


def run_parts(ctx: Context, parts: dict[str, Callable[[], dict]]) -> None:
    """Run each part, saving results and report after each one so a failure keeps the rest."""
    from benchmarks.report import write_all
    from benchmarks.system import system_info

    started = time.perf_counter()
    results: dict = {"meta": {}}
    seconds: dict[str, float] = {}
    system = system_info()
    try:
        for name, part in parts.items():
            click.echo(f"== {name}", err=True)
            part_started = time.perf_counter()
            results[name] = part()
            seconds[name] = round(time.perf_counter() - part_started, 1)
            results["meta"] = {
                "system": system,
                "quick": ctx.quick,
                "threads": ctx.threads,
                "precision": ctx.precision,
                "flip_average": ctx.flip_average,
                "weights": ctx.weights_label,
                "notes": ctx.notes,
                "duration_s": time.perf_counter() - started,
                "part_seconds": seconds,
            }
            report = write_all(results, ctx.out)
    finally:
        ctx.cleanup()
    click.echo(f"report: {report}  ({time.perf_counter() - started:.0f} s: {seconds})", err=True)


# --- part runners: settings for the mode, then the command line's overrides --------------------


def model_part(
    ctx: Context,
    configs: list[str] | None = None,
    sizes: list[str] | None = None,
    backends: list[str] | None = None,
):
    from benchmarks import model_speed

    settings = model_speed.ModelSpeedSettings.for_mode(ctx.quick)
    long_sides = [int(s) for s in sizes] if sizes else None
    settings = override(settings, configs=configs, long_sides=long_sides, backends=backends)
    return lambda: model_speed.run(ctx, settings)


def pipeline_part(
    ctx: Context,
    resolutions: list[str] | None = None,
    clip: str | None = None,
    frames: int | None = None,
    reference_loop: bool = True,
    references_dir: Path | None = None,
):
    from benchmarks import pipeline_speed

    settings = pipeline_speed.PipelineSettings.for_mode(ctx.quick)
    references = str(references_dir) if references_dir else None
    settings = override(
        settings,
        resolutions=resolutions,
        clip=clip,
        frames=frames,
        reference_loop=reference_loop,
        references=references,
    )
    return lambda: pipeline_speed.run(ctx, settings)


def cpu_choices_part(ctx: Context, clip: str | None = None):
    from benchmarks import cpu_choices, pipeline_speed

    settings = override(pipeline_speed.PipelineSettings.for_mode(ctx.quick), clip=clip)
    return lambda: cpu_choices.run(ctx, settings)


Contenders = Callable[[], list[Contender]]  # opened only when the part runs


def accuracy_part(ctx: Context, contenders: Contenders | None = None, **folders: str | None):
    from benchmarks import accuracy

    settings = override(accuracy.AccuracySettings.for_mode(ctx.quick), **folders)
    return lambda: accuracy.run(ctx, settings, contenders() if contenders else None)


def temporal_part(ctx: Context, contenders: Contenders | None = None, strength: float | None = None):
    from benchmarks import temporal

    settings = override(temporal.TemporalSettings.for_mode(ctx.quick), strength=strength)
    return lambda: temporal.run(ctx, settings, contenders() if contenders else None)


def training_part(ctx: Context, configs: list[str] | None = None):
    from benchmarks import training_speed

    settings = override(training_speed.TrainingSpeedSettings.for_mode(ctx.quick), configs=configs)
    return lambda: training_speed.run(ctx, settings)


def reference_settings(
    path: str, input_size: str | None, norm: str, layout: str, bgr: bool, name: str | None = None
) -> ReferenceSettings:
    from benchmarks.reference import parse_size

    return ReferenceSettings(
        path=path,
        input_size=parse_size(input_size),
        norm=norm,
        layout=Layout(layout),
        bgr=bgr,
        name=name or "",
    )


def shared_references(ctx: Context, folder: Path | None) -> list[ReferenceSettings]:
    """The shared reference models found in ``folder``; the report notes any that are missing."""
    from benchmarks import reference

    found, note = reference.shared_references(folder or DEFAULT_REFERENCES)
    if note:
        ctx.note(note)
    return found


def check_configs(configs: list[str] | None) -> list[str] | None:
    from deepbg_live.model import CONFIGS

    unknown = [c for c in configs or [] if c not in CONFIGS]
    if unknown:
        raise click.BadParameter(
            f"unknown config(s) {', '.join(unknown)}; choose from {', '.join(CONFIGS)}",
            param_hint="--configs",
        )
    return configs


NORM_CHOICE = click.Choice(list(NORMALISATIONS))
LAYOUT_CHOICE = click.Choice([layout.value for layout in Layout])
REFERENCES_OPTION = click.option(
    "--references",
    "references_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help=f"Folder of the shared reference models; missing ones are skipped [default: {DEFAULT_REFERENCES}].",
)


# --- the commands -----------------------------------------------------------------------------


@click.group(invoke_without_command=True)
@common_options
@click.option("--configs", help="Model configs for the model and training parts, comma-separated.")
@click.option("--resolutions", help="Pipeline resolutions, e.g. 640x480,1280x720.")
@click.option(
    "--clip",
    type=click.Path(dir_okay=False, exists=True),
    help="A video for the pipeline part [default: generated].",
)
@click.option(
    "--reference",
    "reference_path",
    type=click.Path(dir_okay=False, exists=True),
    help="An ONNX model to compare with ours.",
)
@click.option("--reference-size", help="Its input size WxH, when the model's is dynamic.")
@click.option(
    "--reference-norm", type=NORM_CHOICE, default="unit", show_default=True, help="Its input normalisation."
)
@click.option("--reference-layout", type=LAYOUT_CHOICE, default="auto", show_default=True)
@click.option("--reference-bgr", is_flag=True, help="Feed it BGR instead of RGB.")
@REFERENCES_OPTION
@click.pass_context
def main(
    click_ctx,
    configs,
    resolutions,
    clip,
    reference_path,
    reference_size,
    reference_norm,
    reference_layout,
    reference_bgr,
    references_dir,
    **common,
):
    """Speed and quality benchmarks. Without a sub-command, runs every part."""
    click_ctx.obj = common | {"references_dir": references_dir}
    if click_ctx.invoked_subcommand is not None:
        return
    from benchmarks import reference

    ctx = make_context(click_ctx)
    configs = check_configs(split_list(configs))
    references = shared_references(ctx, references_dir)
    if reference_path:
        references.append(
            reference_settings(
                reference_path, reference_size, reference_norm, reference_layout, reference_bgr
            )
        )
    # The accuracy and temporal parts score the references beside ours; the reference part
    # adds their speed and puts everything side by side.
    contenders = functools.cache(
        lambda: reference.contenders(ctx, reference.open_references(ctx, references))
    )
    scored_accuracy = functools.cache(accuracy_part(ctx, contenders if references else None))
    scored_temporal = functools.cache(temporal_part(ctx, contenders if references else None))
    skipped = skipped_parts(ctx, references_dir)
    race = "reference-loop" not in skipped
    parts = {
        "model": model_part(ctx, configs),
        "pipeline": pipeline_part(ctx, split_list(resolutions), clip, None, race, references_dir),
        "cpu_choices": cpu_choices_part(ctx, clip),
        "accuracy": scored_accuracy,
        "temporal": scored_temporal,
        "training": training_part(ctx, configs),
    }
    if references:
        parts["reference"] = lambda: reference.run(ctx, references, scored_accuracy(), scored_temporal())
    announce_skipped(ctx, parts, skipped)
    run_parts(ctx, parts)


SUB_PARTS = {"reference-loop": "pipeline"}  # a piece of a part, skipped on its own


def skipped_parts(ctx: Context, references_dir: Path | None = None) -> dict[str, str]:
    """The parts (and pieces of parts) this checkout cannot run, and why: a user's clone has no
    shared data or reference models, maybe no torch."""
    import importlib.util

    from benchmarks.reference_loop import SELFIE, selfie_path

    skipped = {}
    if not ctx.data_root.is_dir():
        reason = f"no labelled data at {ctx.data_root}; pass --data-root DIR for it"
        skipped |= {"accuracy": reason, "temporal": reason, "reference": reason}
    folder = references_dir or DEFAULT_REFERENCES
    if selfie_path(folder) is None:
        skipped["reference-loop"] = f"no {SELFIE.path} in {folder}; pass --references DIR for it"
    if importlib.util.find_spec("torch") is None:
        skipped["training"] = "it needs torch; pip install -e '.[train]' for it"
    return skipped


def announce_skipped(ctx: Context, parts: dict[str, Callable[[], dict]], skipped: dict[str, str]) -> None:
    """Drop each skipped part from ``parts``, and say why, on the console and in the report."""
    for name, reason in skipped.items():
        if parts.pop(name, None) is not None or SUB_PARTS.get(name) in parts:
            click.echo(f"skipped {name}: {reason}", err=True)
            ctx.note(f"Skipped {name}: {reason}.")


@main.command()
@common_options
@click.option("--configs", help="Comma-separated model configs [default: all; quick: realtime].")
@click.option(
    "--sizes", help="Input long sides, e.g. 128,192,256 [default: 128,160,192,256; quick: the config's own]."
)
@click.option(
    "--backends",
    help="torch-cpu, onnxruntime, onnxruntime-int8, cuda-fp32, cuda-fp16 [default: all available].",
)
@click.pass_context
def model(click_ctx, configs, sizes, backends, **common):
    """Network alone: ms per frame (p50/p95), parameters and MACs."""
    ctx = make_context(click_ctx, **common)
    run_parts(
        ctx,
        {
            "model": model_part(
                ctx, check_configs(split_list(configs)), split_list(sizes), split_list(backends)
            )
        },
    )


@main.command()
@common_options
@click.option("--resolutions", help="Comma-separated WxH [default: 640x480,1280x720,1920x1080].")
@click.option(
    "--clip", type=click.Path(dir_okay=False, exists=True), help="A video to use [default: generated]."
)
@click.option("--frames", type=click.IntRange(2), help="Frames per resolution (file mode).")
@click.option(
    "--reference-loop/--no-reference-loop",
    default=True,
    show_default=True,
    help="Race deepbg-live against a plain MediaPipe loop, file to file and live (child processes).",
)
@REFERENCES_OPTION
@click.pass_context
def pipeline(click_ctx, resolutions, clip, frames, reference_loop, references_dir, **common):
    """End to end: per-stage time, fps, CPU, memory; live-paced latency and drops; ours against
    the reference loop (fps and CPU-per-frame ratios, start-up included)."""
    ctx = make_context(click_ctx, **common)
    folder = references_dir or (click_ctx.obj or {}).get("references_dir")
    skipped = {k: v for k, v in skipped_parts(ctx, folder).items() if k in SUB_PARTS}
    race = reference_loop and "reference-loop" not in skipped
    parts = {"pipeline": pipeline_part(ctx, split_list(resolutions), clip, frames, race, folder)}
    if reference_loop:
        announce_skipped(ctx, parts, skipped)
    run_parts(ctx, parts)


@main.command("cpu-choices")
@common_options
@click.option(
    "--clip", type=click.Path(dir_okay=False, exists=True), help="A video to use [default: generated]."
)
@click.pass_context
def cpu_choices(click_ctx, clip, **common):
    """CPU-ms per frame of the runtime's choices: ONNX Runtime spinning and threads, x264 presets."""
    ctx = make_context(click_ctx, **common)
    run_parts(ctx, {"cpu_choices": cpu_choices_part(ctx, clip)})


@main.command()
@common_options
@click.option(
    "--images",
    type=click.Path(file_okay=False, exists=True),
    help="Images folder [default: the validation split].",
)
@click.option(
    "--masks", type=click.Path(file_okay=False, exists=True), help="Masks folder (same file names)."
)
@click.pass_context
def accuracy(click_ctx, images, masks, **common):
    """IoU, mIoU, Dice, boundary F and MAD per dataset."""
    ctx = make_context(click_ctx, **common)
    run_parts(ctx, {"accuracy": accuracy_part(ctx, images=images, masks=masks)})


@main.command()
@common_options
@click.option(
    "--strength", type=click.FloatRange(0, 1), help="Smoothing strength when on [default: the runtime's]."
)
@click.pass_context
def temporal(click_ctx, strength, **common):
    """Flicker and dtSSD on video and static-camera clips, smoothing off and on."""
    ctx = make_context(click_ctx, **common)
    run_parts(ctx, {"temporal": temporal_part(ctx, strength=strength)})


@main.command()
@common_options
@click.option("--configs", help="Comma-separated model configs [default: all; quick: realtime].")
@click.pass_context
def training(click_ctx, configs, **common):
    """Images per second of one training step, per config."""
    ctx = make_context(click_ctx, **common)
    run_parts(ctx, {"training": training_part(ctx, check_configs(split_list(configs)))})


@main.command()
@common_options
@click.argument("model_path", type=click.Path(dir_okay=False, exists=True), required=False)
@REFERENCES_OPTION
@click.option("--input-size", help="WxH, for models with a dynamic input size [default: long side 256].")
@click.option(
    "--norm", type=NORM_CHOICE, default="unit", show_default=True, help="0..1, -1..1 or ImageNet mean/std."
)
@click.option("--layout", type=LAYOUT_CHOICE, default="auto", show_default=True)
@click.option("--bgr", is_flag=True, help="Feed BGR instead of RGB.")
@click.option("--name", help="Name in the report [default: the file name].")
@click.pass_context
def reference(click_ctx, model_path, references_dir, input_size, norm, layout, bgr, name, **common):
    """Ours beside an ONNX segmentation model (MODEL_PATH), or beside every shared reference model:
    accuracy per folder, temporal stability, and ms per frame at 1 and 2 threads."""
    from benchmarks import reference as reference_module

    ctx = make_context(click_ctx, **common)
    if model_path:
        references = [reference_settings(model_path, input_size, norm, layout, bgr, name)]
    else:
        folder = references_dir or (click_ctx.obj or {}).get("references_dir")
        references = shared_references(ctx, folder)
        if not references:
            raise UserError(
                f"no reference models in {folder or DEFAULT_REFERENCES}; pass an .onnx MODEL_PATH "
                "or --references DIR"
            )
    run_parts(ctx, {"reference": lambda: reference_module.run(ctx, references)})


def entry() -> None:
    try:
        main(standalone_mode=True)
    except UserError as error:
        click.echo(f"error: {error}", err=True)
        sys.exit(2)


if __name__ == "__main__":
    entry()
