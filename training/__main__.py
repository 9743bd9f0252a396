"""``python -m training``: train a U-Net on image/mask pairs (see ``--help``)."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import click

from deepbg_live.model import CONFIGS
from deepbg_live.shutdown import INTERRUPTED, GracefulShutdown
from evaluation.layout import DatasetError
from training.train import LOSSES, PRESETS, TrainConfig, Trainer, read_config

DEFAULTS = TrainConfig()


@click.command(context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
@click.option("--out", default=DEFAULTS.out, help="Run folder: checkpoints, history, report, wandb files.")
@click.option(
    "--data-root",
    default=DEFAULTS.data_root,
    help="Shared data layout to train on; '' to use only --images/--masks.",
)
@click.option(
    "--images", multiple=True, help="A folder of training images (repeatable, paired with --masks)."
)
@click.option("--masks", multiple=True, help="The folder of masks for the matching --images.")
@click.option("--val-images", multiple=True, help="Extra validation images folder (paired with --val-masks).")
@click.option("--val-masks", multiple=True, help="The masks for the matching --val-images.")
@click.option(
    "--backgrounds",
    default=None,
    help="Folder of person-free backgrounds to composite onto [default: DATA_ROOT/backgrounds].",
)
@click.option("--model", type=click.Choice(sorted(CONFIGS)), default=DEFAULTS.model, help="U-Net config.")
@click.option("--init", default=None, help="Start from these weights (.safetensors or .pt) to fine-tune.")
@click.option(
    "--preset",
    type=click.Choice(sorted(PRESETS)),
    default=None,
    help="A named recipe; 'original' is the original project's.",
)
@click.option(
    "--epochs",
    type=int,
    default=DEFAULTS.epochs,
    help="Epochs in the whole run (the LR schedule spans them).",
)
@click.option("--batch-size", type=int, default=DEFAULTS.batch_size, help="Batch size per process.")
@click.option("--crop", type=int, default=DEFAULTS.crop, help="Square training crop, in pixels.")
@click.option(
    "--final-crop",
    type=int,
    default=DEFAULTS.final_crop,
    help="Crop for the last --final-fraction of epochs.",
)
@click.option(
    "--final-fraction",
    type=float,
    default=DEFAULTS.final_fraction,
    help="Share of epochs trained at --final-crop.",
)
@click.option(
    "--optimizer",
    type=click.Choice(["adamw", "adam"]),
    default=DEFAULTS.optimizer,
    help="adamw: cosine schedule; adam: StepLR.",
)
@click.option("--lr", type=float, default=DEFAULTS.lr, help="Peak learning rate.")
@click.option(
    "--composite-p",
    type=float,
    default=DEFAULTS.composite_p,
    help="Share of samples pasted onto a background image.",
)
@click.option(
    "--occlude-p",
    type=float,
    default=DEFAULTS.occlude_p,
    help="Share of samples with a blob of background texture held across the person's outline "
    "(labelled background); meant against held pets and props taken for the person, but off by "
    "default: it did not fix them on our data (MODEL_CARD.md, run 11).",
)
@click.option(
    "--distractors",
    default=None,
    help="Folder of object cut-outs (object-images/, object-masks/) pasted beside people as "
    "background [default: DATA_ROOT/objects-davis].",
)
@click.option(
    "--distractor-p",
    type=float,
    default=DEFAULTS.distractor_p,
    help="Share of samples with an animal or vehicle pasted beside, behind or in front of the person.",
)
@click.option(
    "--copy-paste-p",
    type=click.FloatRange(0, 1),
    default=DEFAULTS.copy_paste_p,
    help="Share of the samples not composited onto a background that are pasted onto another training "
    "photo instead (its people stay person): real scenes behind people, and groups. Off by default: "
    "it cost `fast` accuracy on portraits and selfies (MODEL_CARD.md, run v2-15).",
)
@click.option(
    "--self-prior-p",
    type=click.FloatRange(0, 1),
    default=DEFAULTS.self_prior_p,
    help="Share of the samples with a perturbed previous mask that get the model's own answer to them "
    "instead (computed with the neutral channel): what a photo's second look and a still camera's next "
    "frame feed it. For models that take the previous mask.",
)
@click.option(
    "--repeat",
    multiple=True,
    metavar="FOLDER=N",
    help="Use this training folder's pairs N times per epoch (0 leaves it out); repeatable.",
)
@click.option(
    "--loss",
    type=click.Choice(sorted(LOSSES)),
    default=DEFAULTS.loss,
    help="BCE plus batch Dice, or plus per-image Lovász IoU (for fine-tuning).",
)
@click.option(
    "--boundary-weight",
    type=click.FloatRange(0, 100),
    default=DEFAULTS.boundary_weight,
    help="Extra BCE weight for pixels within 3 px of the true outline (a boundary-aware loss; 0: off).",
)
@click.option(
    "--teacher",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="Distil this exported ONNX model's soft masks (e.g. deepbg_live/weights/realtime.int8.onnx).",
)
@click.option(
    "--distill-weight",
    type=click.FloatRange(0, 100),
    default=DEFAULTS.distill_weight,
    help="Weight of the distillation term beside the loss on the truth (with --teacher).",
)
@click.option(
    "--seed", type=int, default=DEFAULTS.seed, help="Seed for weights, sample order and augmentation."
)
@click.option("--threads", type=int, default=DEFAULTS.threads, help="CPU threads for torch.")
@click.option("--workers", type=int, default=DEFAULTS.workers, help="DataLoader worker processes.")
@click.option(
    "--checkpoint-minutes",
    type=float,
    default=DEFAULTS.checkpoint_minutes,
    help="Save last.pt at least this often.",
)
@click.option(
    "--max-minutes",
    type=float,
    default=DEFAULTS.max_minutes,
    help="Stop cleanly after this long (0: no limit).",
)
@click.option(
    "--fit-minutes",
    type=click.FloatRange(0),
    default=DEFAULTS.fit_minutes,
    help="Size the run to about this long: after the first epoch, --epochs becomes what fits at its pace "
    "(0: off). Unlike --max-minutes, the learning-rate schedule still runs its whole course.",
)
@click.option(
    "--samples-per-epoch", type=int, default=DEFAULTS.samples_per_epoch, help="0: the whole training set."
)
@click.option(
    "--val-limit", type=int, default=DEFAULTS.val_limit, help="Validate on at most this many pairs (0: all)."
)
@click.option(
    "--wandb",
    "wandb_mode",
    type=click.Choice(["offline", "online", "disabled"]),
    default=DEFAULTS.wandb,
    help="offline needs no network; sync later with `wandb sync OUT/wandb`.",
)
@click.option(
    "--resume",
    is_flag=True,
    help="Continue the run in --out from last.pt, with its stored settings; --epochs may extend it.",
)
def main(preset, resume, wandb_mode, images, masks, val_images, val_masks, repeat, **options):
    """Train the segmentation U-Net, checkpointing often so it can be stopped and resumed."""
    out = Path(options["out"])
    try:
        if resume:
            if not (out / "last.pt").exists():
                raise click.ClickException(f"nothing to resume: {out / 'last.pt'} does not exist")
            cfg = read_config(out / "last.pt")
            cfg = dataclasses.replace(
                cfg, out=str(out), max_minutes=options["max_minutes"], threads=options["threads"]
            )
            if _given_on_command_line("epochs"):
                # extending a run stretches its cosine schedule from the current step onwards
                cfg = dataclasses.replace(cfg, epochs=options["epochs"])
        else:
            if len(images) != len(masks) or len(val_images) != len(val_masks):
                raise click.ClickException(
                    "give one --masks for each --images (and --val-masks for each --val-images)"
                )
            values = {**options, **PRESETS.get(preset, {})}
            cfg = TrainConfig(
                **values,
                wandb=wandb_mode,
                images=list(images),
                masks=list(masks),
                val_images=list(val_images),
                val_masks=list(val_masks),
                repeat=_parse_repeat(repeat),
            )
            cfg.data_root = cfg.data_root or None
        # Ctrl-C, SIGTERM or SIGHUP unwinds, which saves last.pt first; a second signal leaves that
        # save alone, a third quits at once (the previous last.pt stays whole: it is saved atomically)
        with GracefulShutdown():
            Trainer(cfg, resume=resume).run()
    except KeyboardInterrupt:
        click.echo(f"interrupted; resume with: python -m training --out {out} --resume", err=True)
        sys.exit(INTERRUPTED)
    except DatasetError as error:
        click.echo(f"Error: {error}", err=True)
        sys.exit(2)


def _parse_repeat(values: tuple[str, ...]) -> dict[str, int]:
    repeat = {}
    for value in values:
        name, _, count = value.partition("=")
        if not name or not count.isdigit():
            raise click.ClickException(f"--repeat {value!r} is not FOLDER=N, for example portraits-eg2016=2")
        repeat[name] = int(count)
    return repeat


def _given_on_command_line(name: str) -> bool:
    source = click.get_current_context().get_parameter_source(name)
    return source is click.core.ParameterSource.COMMANDLINE


if __name__ == "__main__":
    main()
