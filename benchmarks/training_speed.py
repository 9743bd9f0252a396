"""Part 5: training throughput: images per second of one optimiser step, per config.

The step is the training loop's (channels_last, BCE + Dice, AdamW) on random tensors, so this
measures the network's forward and backward cost, not data loading or augmentation.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
from tqdm import tqdm

from benchmarks.context import Context
from benchmarks.timing import summarise, time_calls
from deepbg_live.model import CONFIGS, DEFAULT_CONFIG, build_model
from training.train import segmentation_loss


@dataclass
class TrainingSpeedSettings:
    configs: list[str] = field(default_factory=lambda: list(CONFIGS))
    batch_size: int = 16
    crop: int = 128
    steps: int = 10
    warmup: int = 2
    budget_s: float = 60.0  # per config: the original 31M-parameter U-Net takes seconds per step

    @classmethod
    def for_mode(cls, quick: bool) -> TrainingSpeedSettings:
        if quick:
            return cls(configs=[DEFAULT_CONFIG], batch_size=8, steps=3, warmup=1, budget_s=10.0)
        return cls()


def training_step(config: str, batch_size: int, crop: int, device: str):
    """A closure running one full training step (forward, loss, backward, AdamW update)."""
    model = build_model(config).to(device, memory_format=torch.channels_last).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(0)
    channels = CONFIGS[config].in_channels  # 4 for a model that also reads its previous mask
    images = torch.randn(batch_size, channels, crop, crop, generator=generator)
    images = images.to(device).contiguous(memory_format=torch.channels_last)
    masks = (torch.rand(batch_size, 1, crop, crop, generator=generator) > 0.5).float().to(device)

    def step() -> None:
        with torch.autocast(device, dtype=torch.float16, enabled=device == "cuda"):
            loss = segmentation_loss(model(images).float(), masks)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if device == "cuda":
            torch.cuda.synchronize()

    return step


def run(ctx: Context, settings: TrainingSpeedSettings | None = None) -> dict:
    settings = settings or TrainingSpeedSettings.for_mode(ctx.quick)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.set_num_threads(ctx.threads)
    rows = []
    for config in tqdm(settings.configs, desc="training speed", disable=not ctx.progress):
        step = training_step(config, settings.batch_size, settings.crop, device)
        samples = time_calls(step, settings.steps, settings.warmup, settings.budget_s, min_repeats=2)
        stats = summarise(samples)
        rows.append({"config": config, "images_per_s": settings.batch_size * 1000 / stats["p50_ms"], **stats})
    return {"settings": asdict(settings), "device": device, "threads": ctx.threads, "rows": rows}
