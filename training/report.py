"""Run logging: wandb panels plus a local report (history, curves and sample predictions)."""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np


class RunLogger:
    """Logs scalars and images to wandb (online, offline or disabled) and ``history.jsonl``."""

    def __init__(self, out: Path, cfg: Any, run_id: str = "", enabled: bool = True):
        self.out = Path(out)
        self.enabled = enabled
        self.history = self.out / "history.jsonl"
        self.run = None
        self.run_id = run_id
        if enabled and cfg.wandb != "disabled":
            import wandb

            os.environ.setdefault("WANDB_SILENT", "true")
            self.run = wandb.init(
                project="deepbg-live",
                dir=str(self.out),
                mode=cfg.wandb,
                id=run_id or None,
                resume="allow",
                config=asdict(cfg),
                name=self.out.name,
            )
            self.run_id = self.run.id

    def log(self, values: dict[str, float], step: int, images: np.ndarray | None = None) -> None:
        if not self.enabled:
            return
        values = {k: float(v) for k, v in values.items()}
        with self.history.open("a") as handle:
            handle.write(json.dumps({"step": step, **values}) + "\n")
        if self.run is not None:
            payload: dict[str, Any] = dict(values)
            if images is not None:
                import wandb

                payload["val/samples"] = wandb.Image(images, caption="image | truth | prediction")
            self.run.log(payload, step=step)
        if images is not None:
            import cv2

            cv2.imwrite(str(self.out / "samples.png"), cv2.cvtColor(images, cv2.COLOR_RGB2BGR))

    def write_report(self) -> None:
        """Curves as PNG and a short markdown summary, readable without wandb."""
        if self.enabled and self.history.exists():
            write_curves(read_history(self.history), self.out)

    def finish(self) -> None:
        if self.run is not None:
            self.run.finish()


def read_history(path: Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def write_curves(history: list[dict], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [
        ("loss", ["train/loss", "val/loss"]),
        (
            "IoU",
            ["val/iou"]
            + sorted({k for row in history for k in row if k.endswith("/iou") and k != "val/iou"}),
        ),
        ("Dice and pixel accuracy", ["val/dice", "val/pixel_acc"]),
        ("boundary F", ["val/boundary_f"]),
    ]
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4))
    for ax, (title, keys) in zip(axes, panels, strict=True):
        for key in keys:
            points = [(row["step"], row[key]) for row in history if key in row]
            if points:
                ax.plot(*zip(*points, strict=True), label=key, marker="." if len(points) < 50 else None)
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "curves.png", dpi=80)
    plt.close(fig)
    epochs = [row for row in history if "epoch" in row]
    if epochs:
        best = max(epochs, key=lambda row: row.get("val/iou", 0.0))
        lines = ["# Training report", "", f"Epochs done: {int(epochs[-1]['epoch'])}", ""]
        lines += ["| metric | last | best epoch |", "|---|---|---|"]
        for key in sorted(k for k in epochs[-1] if k.startswith("val/")):
            lines.append(f"| {key} | {epochs[-1][key]:.4f} | {best.get(key, float('nan')):.4f} |")
        lines += ["", "![curves](curves.png)", "", "![samples](samples.png)", ""]
        (out / "report.md").write_text("\n".join(lines))
