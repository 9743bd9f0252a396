"""``python -m training.soup``: average the weights of several runs of one network.

Warm restarts of one run land in the same basin of the loss, so the mean of their weights is a
network too, and often a better one than any of them: a uniform "model soup" (Wortsman et al.,
2022), as stochastic weight averaging does along a single run. Batch-norm statistics are averaged
with the weights, which holds for runs this close; MODEL_CARD ("A soup of runs") has the scores.
The soup is an ordinary weights file: export and score it like any run's ``best.safetensors``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click
import torch

from deepbg_live.model import build_model, load_weights, save_weights


class SoupError(ValueError):
    """The files cannot be averaged into one network."""


def average_weights(paths: list[Path]) -> torch.nn.Module:
    """The network whose every float tensor is the mean of that tensor over ``paths``.

    Integer buffers (batch norm's step count) are taken from the first file. All files must hold
    the same network; their config names may differ (a probe config of the shipped shape).
    """
    if len(paths) < 2:
        raise SoupError("a soup needs at least two weights files")
    models = [load_weights(path)[0] for path in paths]
    for path, model in zip(paths[1:], models[1:], strict=True):
        if not model.config.same_network(models[0].config):
            raise SoupError(
                f"'{path}' is another network than '{paths[0]}'; only runs of one network average"
            )
    states = [model.state_dict() for model in models]
    mean = {}
    for key, first in states[0].items():
        if first.is_floating_point():
            mean[key] = torch.stack([state[key] for state in states]).mean(dim=0)
        else:
            mean[key] = first
    soup = build_model(models[0].config)
    soup.load_state_dict(mean)
    return soup.eval()


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("out", type=click.Path(dir_okay=False, path_type=Path))
@click.argument(
    "weights", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
def main(out: Path, weights: tuple[Path, ...]) -> None:
    """Write to OUT (.safetensors) the mean of the WEIGHTS files, e.g. each run's best.safetensors."""
    if out.suffix != ".safetensors" or out.resolve() in {path.resolve() for path in weights}:
        click.echo("Error: OUT must be a new .safetensors file, not one of the inputs", err=True)
        sys.exit(1)
    try:
        soup = average_weights(list(weights))
    except ValueError as exc:  # a SoupError, or a file that is not a deepbg-live model
        click.echo(f"Error: {exc}; nothing written", err=True)
        sys.exit(1)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_weights(soup, out, soup_of=", ".join(str(path) for path in weights))
    click.echo(f"wrote {out}: the mean of {len(weights)} runs")


if __name__ == "__main__":
    main()
