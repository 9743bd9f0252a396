"""The training loop: resumable, seeded, distributed-ready, logged to wandb and a local report."""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F

from deepbg_live.model import CONFIGS, ModelConfig, build_model, load_weights, normalise, save_weights
from deepbg_live.prior import NEUTRAL
from evaluation import layout
from evaluation.metrics import all_metrics
from training import data as D
from training.report import RunLogger
from training.teacher import Teacher, distillation_loss

DEFAULT_LOSS = "bce-dice"  # trains well from scratch; "bce-lovasz" is for fine-tuning


@dataclass
class TrainConfig:
    """Everything a run depends on; saved in each checkpoint so ``--resume`` needs no flags."""

    out: str = "runs/realtime"
    data_root: str | None = "../shared/data"
    images: list[str] = field(default_factory=list)  # extra or replacement image folders
    masks: list[str] = field(default_factory=list)
    val_images: list[str] = field(default_factory=list)
    val_masks: list[str] = field(default_factory=list)
    backgrounds: str | None = None
    model: str = "realtime"
    init: str | None = None  # start from these weights (fine-tuning) instead of random ones
    epochs: int = 60
    batch_size: int = 16
    crop: int = 128
    final_crop: int = 192  # the last ``final_fraction`` of epochs trains at this crop
    final_fraction: float = 0.15
    optimizer: str = "adamw"  # "adamw" (cosine with warm-up) or "adam" (the original's, with StepLR)
    lr: float = 3e-3
    weight_decay: float = 1e-4
    step_lr_every: int = 3  # epochs per StepLR decay, original preset only
    composite_p: float = 0.3
    occlude_p: float = 0.0  # share of samples with a background blob held across the person
    distractors: str | None = None  # object cut-outs [default: DATA_ROOT/objects-davis]
    distractor_p: float = 0.3  # share of samples with an animal or vehicle pasted beside the person
    copy_paste_p: float = 0.0  # share of the samples not composited that are pasted onto another photo
    # share of the samples with a perturbed previous mask given the model's own answer instead
    self_prior_p: float = 0.0
    repeat: dict[str, int] = field(default_factory=dict)  # training folder -> copies per epoch (0 drops it)
    loss: str = DEFAULT_LOSS  # a key of LOSSES
    boundary_weight: float = 0.0  # extra BCE weight in the band around the true outline
    teacher: str | None = None  # an exported ONNX model whose soft masks are distilled (training.teacher)
    distill_weight: float = 1.0  # the distillation term's weight beside the loss on the truth
    seed: int = 0
    threads: int = 2
    workers: int = 0
    checkpoint_minutes: float = 5.0
    max_minutes: float = 0.0  # stop cleanly after this long (0: no limit)
    fit_minutes: float = 0.0  # after the first epoch, set ``epochs`` so the whole run takes about this long
    wandb: str = "offline"
    samples_per_epoch: int = 0  # 0: the whole training set each epoch
    val_limit: int = 0  # 0: the whole validation split

    @property
    def model_config(self) -> ModelConfig:
        return CONFIGS[self.model]


PRESETS = {
    # The original project's recipe: 10 epochs, Adam at 1e-4 with StepLR, batch 16.
    "original": dict(epochs=10, optimizer="adam", lr=1e-4, batch_size=16, crop=256, final_crop=256),
}


def dice_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Soft Dice over the whole batch: per-crop Dice would punish crops that hold no person."""
    prob = torch.sigmoid(logits)
    return 1 - (2 * (prob * target).sum() + 1) / (prob.sum() + target.sum() + 1)


def lovasz_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-image Lovász extension of 1 - IoU (Berman et al., CVPR 2018), averaged over the batch.

    Mean per-image IoU is what we are judged on, and unlike a batch-wide Dice it makes one
    photo's large false blob cost as much as that photo's share of the score. Errors are
    ``|mask - probability|``, so the output stays a probability, as the runtime expects.
    """
    prob = torch.sigmoid(logits).flatten(1)
    truth = (target > 0.5).flatten(1).to(prob.dtype)
    errors, order = torch.sort((truth - prob).abs(), dim=1, descending=True)
    return (errors * lovasz_weights(torch.gather(truth, 1, order))).sum(1).mean()


def lovasz_weights(sorted_truth: torch.Tensor) -> torch.Tensor:
    """How much 1 - IoU grows as each pixel, in descending-error order, becomes wrong."""
    positives = sorted_truth.sum(1, keepdim=True)
    intersection = positives - sorted_truth.cumsum(1)
    union = positives + (1 - sorted_truth).cumsum(1)
    jaccard = 1 - intersection / union
    return torch.cat([jaccard[:, :1], jaccard[:, 1:] - jaccard[:, :-1]], dim=1)


BOUNDARY_BAND = 7  # px across: the band around the true outline that ``boundary_weight`` favours


def boundary_band(target: torch.Tensor, width: int = BOUNDARY_BAND) -> torch.Tensor:
    """1 where the truth changes within ``width // 2`` pixels (the outline and its sides), else 0."""
    grown = F.max_pool2d(target, width, stride=1, padding=width // 2)
    shrunk = -F.max_pool2d(-target, width, stride=1, padding=width // 2)
    return (grown - shrunk > 0.5).to(target.dtype)


def segmentation_loss(
    logits: torch.Tensor, target: torch.Tensor, kind: str = DEFAULT_LOSS, boundary_weight: float = 0.0
) -> torch.Tensor:
    """BCE for per-pixel calibration plus an overlap term, which does not let the background dominate.

    ``bce-dice`` trains from scratch well; ``bce-lovasz`` is for fine-tuning towards per-image IoU.
    ``boundary_weight`` makes a wrong pixel near the true outline cost ``1 + boundary_weight`` times
    as much in the BCE: edges are a sliver of the pixels but most of what a viewer sees of a mask.
    """
    weight = 1 + boundary_weight * boundary_band(target) if boundary_weight else None
    bce = F.binary_cross_entropy_with_logits(logits, target, weight=weight)
    return bce + LOSSES[kind](logits, target)


LOSSES = {"bce-dice": dice_loss, "bce-lovasz": lovasz_loss}


def epochs_for_minutes(cfg: TrainConfig, first_epoch_s: float) -> int:
    """How many epochs of the first one's pace fit in ``cfg.fit_minutes``, the final crop's counted at its pixels.

    A schedule cut short by ``max_minutes`` never reaches its low learning rates; one sized to the
    time it has does, whatever the machine (a lent GPU's pace is known only once it runs).
    """
    slowdown = 1 - cfg.final_fraction + cfg.final_fraction * (cfg.final_crop / cfg.crop) ** 2
    return max(1, math.floor(cfg.fit_minutes * 60 / (first_epoch_s * slowdown)))


def learning_rate(cfg: TrainConfig, step: int, total_steps: int, steps_per_epoch: int) -> float:
    if cfg.optimizer == "adam":
        return cfg.lr * 0.5 ** (step // (steps_per_epoch * cfg.step_lr_every))
    warmup = min(500, total_steps // 20)
    if step < warmup:
        return cfg.lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, total_steps - warmup)
    return cfg.lr * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


class Distributed:
    """Rank and world size under torchrun; a single process otherwise."""

    def __init__(self):
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        if self.world > 1 and not dist.is_initialized():
            dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")

    @property
    def main(self) -> bool:
        return self.rank == 0

    def device(self) -> torch.device:
        if torch.cuda.is_available():
            torch.cuda.set_device(self.local_rank)
            return torch.device("cuda", self.local_rank)
        return torch.device("cpu")

    def wrap(self, model: torch.nn.Module) -> torch.nn.Module:
        if self.world == 1:
            return model
        ids = [self.local_rank] if torch.cuda.is_available() else None
        return torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)

    def mean(self, value: float) -> float:
        if self.world == 1:
            return value
        tensor = torch.tensor([value], dtype=torch.float64)
        dist.all_reduce(tensor)
        return float(tensor.item()) / self.world

    def close(self) -> None:
        if self.world > 1 and dist.is_initialized():
            dist.destroy_process_group()


def load_splits(cfg: TrainConfig) -> tuple[list[layout.Pair], list[layout.Pair]]:
    train, val = [], []
    if cfg.data_root:
        train, val = layout.split_pairs(layout.shared_data_folders(Path(cfg.data_root)))
    for images, masks in zip(cfg.images, cfg.masks, strict=True):
        train += layout.find_pairs(Path(images), Path(masks), source=Path(images).parent.name)
    for images, masks in zip(cfg.val_images, cfg.val_masks, strict=True):
        val += layout.find_pairs(Path(images), Path(masks), source=Path(images).parent.name)
    if not train:
        raise layout.DatasetError("no training pairs: give --data-root or --images/--masks")
    return train, val


class Trainer:
    """Owns the model, optimiser and position in the run; ``run()`` trains to the last epoch."""

    def __init__(self, cfg: TrainConfig, resume: bool = False):
        self.cfg = cfg
        self.out = Path(cfg.out)
        self.dist = Distributed()
        torch.manual_seed(cfg.seed)
        if self.dist.device().type == "cpu":
            torch.set_num_threads(cfg.threads)
        self.device = self.dist.device()
        self.model = build_model(cfg.model_config).to(self.device, memory_format=torch.channels_last)
        self.net = self.dist.wrap(self.model)
        self.optimizer = self.make_optimizer()
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.device.type == "cuda")
        self.epoch, self.batch, self.step, self.best_iou = 0, 0, 0, -1.0
        self.wandb_id = ""
        if resume:
            self.load_checkpoint(self.out / "last.pt")
        elif cfg.init:
            self.load_initial_weights(Path(cfg.init))
        self.teacher = Teacher(Path(cfg.teacher), threads=cfg.threads) if cfg.teacher else None
        self.out.mkdir(parents=True, exist_ok=True)
        train_pairs, self.val_pairs = load_splits(cfg)
        if cfg.val_limit:
            self.val_pairs = self.val_pairs[:: max(1, len(self.val_pairs) // cfg.val_limit)][: cfg.val_limit]
        show = self.dist.main
        self.dataset = D.SegmentationDataset(
            D.cache_pairs(D.repeat_by_source(train_pairs, cfg.repeat), progress=show),
            D.load_backgrounds(self._data_folder(cfg.backgrounds, layout.BACKGROUNDS)),
            crop=cfg.crop,
            long_side=cfg.model_config.long_side,
            seed=cfg.seed,
            composite_p=cfg.composite_p,
            occlude_p=cfg.occlude_p,
            distractors=D.load_distractors(self._data_folder(cfg.distractors, layout.DISTRACTORS)),
            distractor_p=cfg.distractor_p,
            copy_paste_p=cfg.copy_paste_p,
            previous_mask=cfg.model_config.previous_mask,
        )
        self.val_samples = D.cache_pairs(self.val_pairs, progress=show)
        self.logger = RunLogger(self.out, cfg, self.wandb_id, enabled=self.dist.main)
        self.wandb_id = self.logger.run_id

    def _data_folder(self, given: str | None, shared_name: str) -> Path | None:
        """A folder given on the command line, else the shared layout's, else none."""
        if given:
            return Path(given)
        return Path(self.cfg.data_root) / shared_name if self.cfg.data_root else None

    def make_optimizer(self) -> torch.optim.Optimizer:
        if self.cfg.optimizer == "adam":
            return torch.optim.Adam(self.model.parameters(), lr=self.cfg.lr)
        return torch.optim.AdamW(self.model.parameters(), lr=self.cfg.lr, weight_decay=self.cfg.weight_decay)

    @property
    def samples_per_epoch(self) -> int:
        return self.cfg.samples_per_epoch or len(self.dataset)

    @property
    def steps_per_epoch(self) -> int:
        return self.samples_per_epoch // (self.cfg.batch_size * self.dist.world)

    def crop_for(self, epoch: int) -> int:
        final_epochs = round(self.cfg.epochs * self.cfg.final_fraction)
        return self.cfg.final_crop if epoch >= self.cfg.epochs - final_epochs else self.cfg.crop

    def epoch_indices(self, epoch: int) -> list[int]:
        """This rank's sample order for ``epoch``: a seeded permutation, sharded by rank."""
        rng = np.random.default_rng([self.cfg.seed, epoch])
        order = rng.permutation(len(self.dataset))
        order = np.resize(order, self.samples_per_epoch)
        per_rank = self.steps_per_epoch * self.cfg.batch_size
        return order[self.dist.rank * per_rank : (self.dist.rank + 1) * per_rank].tolist()

    def batches(self, epoch: int, first_batch: int):
        self.dataset.epoch = epoch
        self.dataset.crop = self.crop_for(epoch)
        indices = self.epoch_indices(epoch)[first_batch * self.cfg.batch_size :]
        sampler = [indices[i : i + self.cfg.batch_size] for i in range(0, len(indices), self.cfg.batch_size)]
        return torch.utils.data.DataLoader(
            self.dataset, batch_sampler=sampler, num_workers=self.cfg.workers, persistent_workers=False
        )

    def train_step(self, images: torch.Tensor, masks: torch.Tensor) -> float:
        total = self.cfg.epochs * self.steps_per_epoch
        for group in self.optimizer.param_groups:
            group["lr"] = learning_rate(self.cfg, self.step, total, self.steps_per_epoch)
        images = images.to(self.device, memory_format=torch.channels_last, non_blocking=True)
        masks = masks.to(self.device, non_blocking=True)
        if self.cfg.self_prior_p and self.model.config.previous_mask:
            images = self.with_own_answers(images)
        soft = self.teacher(images) if self.teacher else None
        with self.autocast():
            logits = self.net(images).float()
        loss = segmentation_loss(logits, masks, self.cfg.loss, self.cfg.boundary_weight)
        if soft is not None:
            loss = loss + self.cfg.distill_weight * distillation_loss(logits, soft, masks)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.step += 1
        return float(loss.item())

    def with_own_answers(self, images: torch.Tensor) -> torch.Tensor:
        """``images`` with a ``self_prior_p`` share of their perturbed previous masks replaced by the
        model's own answer to the image given the neutral channel.

        That is what the runtime feeds it on a photo's second look and on a still camera's next
        frame: the perturbed truth teaches it to follow a hint, this teaches it to mend its own
        mistakes. The first answer is computed as at run time (eval mode) and carries no gradient.
        Samples with the neutral channel keep it, so the first look still trains as often.
        """
        perturbed = (images[:, 3] != NEUTRAL).flatten(1).any(1).cpu().numpy()
        draws = np.random.default_rng([self.cfg.seed, self.step]).random(len(images))
        chosen = torch.from_numpy(np.flatnonzero(perturbed & (draws < self.cfg.self_prior_p))).to(
            images.device
        )
        if not len(chosen):
            return images
        first = images[chosen].clone()
        first[:, 3] = NEUTRAL
        self.model.eval()
        with torch.no_grad(), self.autocast():
            answers = torch.sigmoid(self.net(first).float())
        self.model.train()
        images = images.clone()
        images[chosen, 3] = answers[:, 0].to(images.dtype)
        return images

    def autocast(self) -> torch.autocast:
        return torch.autocast(self.device.type, dtype=torch.float16, enabled=self.device.type == "cuda")

    def run(self, until_epoch: int | None = None) -> dict:
        """Train until ``cfg.epochs`` (or ``until_epoch``, or ``cfg.max_minutes``); return the last metrics.

        Ctrl-C (or SIGTERM, which ``python -m training`` turns into Ctrl-C) saves ``last.pt`` first.
        """
        try:
            return self._run(until_epoch)
        except KeyboardInterrupt:
            self.save_checkpoint("last.pt")
            raise

    def _run(self, until_epoch: int | None) -> dict:
        started = last_save = time.monotonic()
        metrics: dict = {}
        from tqdm import tqdm

        while self.epoch < min(self.cfg.epochs, until_epoch or self.cfg.epochs):
            self.model.train()
            losses = []
            bar = tqdm(
                self.batches(self.epoch, self.batch),
                total=self.steps_per_epoch,
                initial=self.batch,
                desc=f"epoch {self.epoch + 1}/{self.cfg.epochs}",
                disable=not self.dist.main,
                leave=False,
            )
            for images, masks in bar:
                losses.append(self.train_step(images, masks))
                self.batch += 1
                bar.set_postfix(loss=f"{np.mean(losses[-20:]):.4f}")
                if self.step % 25 == 0:
                    self.logger.log(
                        {"train/loss": np.mean(losses[-25:]), "lr": self.optimizer.param_groups[0]["lr"]},
                        self.step,
                    )
                if time.monotonic() - last_save > self.cfg.checkpoint_minutes * 60:
                    self.save_checkpoint("last.pt")
                    last_save = time.monotonic()
                if self.cfg.max_minutes and time.monotonic() - started > self.cfg.max_minutes * 60:
                    self.save_checkpoint("last.pt")
                    return metrics
            metrics = self.end_epoch(float(self.dist.mean(np.mean(losses) if losses else 0.0)))
            if self.epoch == 1 and self.cfg.fit_minutes:
                self.fit_to_minutes(float(self.dist.mean(time.monotonic() - started)))
            last_save = time.monotonic()
        if self.epoch >= self.cfg.epochs:
            self.logger.finish()
        return metrics

    def fit_to_minutes(self, first_epoch_s: float) -> None:
        """Size the run to ``cfg.fit_minutes`` from the first epoch's time (the mean over ranks, so all agree)."""
        epochs = epochs_for_minutes(self.cfg, first_epoch_s)
        self.cfg = replace(self.cfg, epochs=epochs, fit_minutes=0.0)  # stored so: a resumed run keeps it
        self.save_checkpoint("last.pt")
        if self.dist.main:
            print(f"first epoch {first_epoch_s:.0f} s: {epochs} epochs fit the run's minutes")

    def end_epoch(self, train_loss: float) -> dict:
        metrics = {"train/epoch_loss": train_loss, **self.validate()}
        self.epoch += 1
        self.batch = 0
        if self.dist.main:
            improved = metrics.get("val/iou", 0.0) > self.best_iou
            if improved:
                self.best_iou = metrics["val/iou"]
            self.save_checkpoint("last.pt")
            if improved:
                self.save_checkpoint("best.pt")
                save_weights(
                    self.model,
                    self.out / "best.safetensors",
                    epoch=str(self.epoch),
                    val_iou=f"{self.best_iou:.4f}",
                )
            self.logger.log({**metrics, "epoch": self.epoch}, self.step, images=self.sample_grid())
            self.logger.write_report()
            print(
                json.dumps(
                    {"epoch": self.epoch, "step": self.step, **{k: round(v, 4) for k, v in metrics.items()}}
                ),
                flush=True,
            )
        return metrics

    @torch.no_grad()
    def predict(self, image: np.ndarray) -> np.ndarray:
        """Person probability for one RGB image, at the runtime's inference scale, as for a photo.

        A model that takes the previous mask is given the neutral channel, then its own answer, and
        the two answers are averaged (the runtime's second look, ``deepbg_live.engine.Segmenter``).
        """
        self.model.eval()
        small = layout.resize_long_side(image, self.cfg.model_config.long_side, cv2.INTER_AREA)
        x = normalise(small).to(self.device, memory_format=torch.channels_last)
        if self.model.config.previous_mask:
            first = torch.sigmoid(self.model(torch.cat([x, torch.full_like(x[:, :1], NEUTRAL)], dim=1)))
            prob = 0.5 * (first + torch.sigmoid(self.model(torch.cat([x, first], dim=1))))
        else:
            prob = torch.sigmoid(self.model(x))
        prob = prob[0, 0].float().cpu().numpy()
        return cv2.resize(prob, (image.shape[1], image.shape[0]), interpolation=cv2.INTER_LINEAR)

    def validate(self) -> dict:
        if not self.val_samples or not self.dist.main:
            return {}
        per_source: dict[str, list[dict]] = {}
        losses = []
        for pair, (image, mask) in zip(self.val_pairs, self.val_samples, strict=True):
            prob = self.predict(image)
            truth = mask.astype(np.float32) / 255.0
            per_source.setdefault(pair.source, []).append(all_metrics(prob, truth))
            p = np.clip(prob, 1e-6, 1 - 1e-6)
            losses.append(float(-(truth * np.log(p) + (1 - truth) * np.log(1 - p)).mean()))
        metrics = {"val/loss": float(np.mean(losses))}
        everything = [m for ms in per_source.values() for m in ms]
        for key in everything[0]:
            metrics[f"val/{key}"] = float(np.mean([m[key] for m in everything]))
        for source, ms in per_source.items():
            metrics[f"val/{source}/iou"] = float(np.mean([m["iou"] for m in ms]))
        return metrics

    def sample_grid(self, count: int = 6) -> np.ndarray | None:
        """Image | truth | prediction rows for a fixed set of validation images."""
        if not self.val_samples:
            return None
        picks = self.val_samples[:: max(1, len(self.val_samples) // count)][:count]
        rows = []
        for image, mask in picks:
            small = layout.resize_long_side(image, 160, cv2.INTER_AREA)
            truth = layout.resize_long_side(mask, 160, cv2.INTER_AREA)
            pred = (self.predict(small) * 255).astype(np.uint8)
            tile = [small, np.repeat(truth[..., None], 3, 2), np.repeat(pred[..., None], 3, 2)]
            row = np.concatenate(tile, axis=1)
            rows.append(np.pad(row, ((0, 0), (0, 480 - row.shape[1]), (0, 0)))[:, :480])
        return np.concatenate(rows, axis=0)

    def save_checkpoint(self, name: str) -> None:
        if not self.dist.main:
            return
        checkpoint = {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
            "epoch": self.epoch,
            "batch": self.batch,
            "step": self.step,
            "best_iou": self.best_iou,
            "config": json.dumps(asdict(self.cfg.model_config)),
            "train_config": json.dumps(asdict(self.cfg)),
            "wandb_id": self.wandb_id,
        }
        tmp = self.out / f".{name}.tmp"
        torch.save(checkpoint, tmp)
        tmp.replace(self.out / name)  # atomic: a kill mid-write never corrupts the checkpoint

    def load_initial_weights(self, path: Path) -> None:
        # A model may grow parts that start computing nothing new (``can_grow_into``): weights
        # without them still load, and only those new parts start untrained.
        start, _ = load_weights(path)
        if not can_grow_into(start.config, self.model.config):
            raise layout.DatasetError(
                f"{path} holds a {start.config.name!r} model, not {self.cfg.model!r}; pass --model"
            )
        self.model.load_state_dict(grown_weights(start.state_dict(), self.model.state_dict()), strict=False)

    def load_checkpoint(self, path: Path) -> None:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        self.model.load_state_dict(checkpoint["model"])
        self.optimizer.load_state_dict(checkpoint["optimizer"])
        self.scaler.load_state_dict(checkpoint["scaler"])
        self.epoch, self.batch = checkpoint["epoch"], checkpoint["batch"]
        self.step, self.best_iou = checkpoint["step"], checkpoint["best_iou"]
        self.wandb_id = checkpoint["wandb_id"]


def can_grow_into(start: ModelConfig, target: ModelConfig) -> bool:
    """Whether ``target`` is ``start`` plus only parts that begin computing nothing new.

    Those are a context block, bottleneck blocks, a previous-mask input, more inverted-residual
    blocks at the end of a MobileUNet stage, and wider MobileUNet stages or expansions (see
    ``grown_weights``). The inference resolution may differ: fine-tuning at a new ``long_side``
    keeps every weight.
    """
    grown = replace(
        start,
        name="",
        long_side=target.long_side,
        context=target.context,
        bottleneck_blocks=target.bottleneck_blocks,
        previous_mask=target.previous_mask,
        stage_depths=target.stage_depths,
        widths=target.widths,
        expansion=target.expansion,
    )
    return (
        grown == replace(target, name="")
        and at_least(target.stage_depths, start.stage_depths)
        and at_least(target.widths, start.widths)
        and target.expansion >= start.expansion
        and target.context >= start.context
        and target.bottleneck_blocks >= start.bottleneck_blocks
        and target.previous_mask >= start.previous_mask
    )


def at_least(new: tuple[int, ...], old: tuple[int, ...]) -> bool:
    return len(new) == len(old) and all(n >= o for n, o in zip(new, old, strict=True))


def grown_weights(start: dict[str, torch.Tensor], target: dict[str, torch.Tensor]) -> dict:
    """``start``'s weights embedded in ``target``'s larger tensors, where a tensor grew.

    Each old tensor fills the leading slice of its new one. A convolution's new input channels
    (an extra input, or a wider layer before it) get zero weight in its old output channels, so
    every old channel computes exactly what it did; new output channels keep their fresh
    initialisation, and only layers that ignore them read them. The grown network gives
    ``start``'s answer until training teaches it to use the new channels.
    """
    grown = dict(start)
    for key, weight in start.items():
        wanted = target.get(key)
        if wanted is None or wanted.shape == weight.shape:
            continue
        embedded = wanted.detach().clone()
        embedded[tuple(slice(0, n) for n in weight.shape)] = weight
        if weight.ndim >= 2:
            embedded[: weight.shape[0], weight.shape[1] :] = 0
        grown[key] = embedded
    return grown


def read_config(path: Path) -> TrainConfig:
    """The ``TrainConfig`` stored in a checkpoint (for ``--resume``)."""
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    return TrainConfig(**json.loads(checkpoint["train_config"]))
