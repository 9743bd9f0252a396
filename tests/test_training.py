"""Training: data errors, a loss that goes down, exact resume, export and DDP on CPU."""

import json
import os
import random
import shutil
import socket
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from evaluation.layout import CACHE_LONG_SIDE, DatasetError, Pair, find_pairs, read_pair, split_pairs
from training.data import (
    SegmentationDataset,
    cache_pairs,
    occlude,
    paste_distractor,
    paste_onto_photo,
    repeat_by_source,
)
from training.train import LOSSES, TrainConfig, Trainer, epochs_for_minutes, lovasz_loss

ROOT = Path(__file__).resolve().parent.parent


def make_pairs(folder: Path, count: int = 12, size=(64, 48)) -> tuple[Path, Path]:
    """Synthetic 'people': a bright ellipse on a textured background, with its mask."""
    rng = np.random.default_rng(0)
    images, masks = folder / "images", folder / "masks"
    images.mkdir(parents=True)
    masks.mkdir(parents=True)
    width, height = size
    for i in range(count):
        image = rng.integers(0, 90, (height, width, 3), dtype=np.uint8)
        mask = np.zeros((height, width), np.uint8)
        centre = (int(rng.integers(20, width - 20)), int(rng.integers(15, height - 15)))
        cv2.ellipse(mask, centre, (12, 16), 0, 0, 360, 255, -1)
        image[mask > 0] = (200, 170, 150)
        cv2.imwrite(str(images / f"{i:03d}.jpg"), image)
        cv2.imwrite(str(masks / f"{i:03d}.png"), mask)
    return images, masks


def tiny_config(tmp_path: Path, **overrides) -> TrainConfig:
    images, masks = make_pairs(tmp_path / "data" / "toy")
    values = dict(
        out=str(tmp_path / "run"), data_root=str(tmp_path / "data"), model="depthwise8", epochs=3,
        batch_size=4, crop=48, final_crop=48, lr=3e-3, wandb="disabled", threads=1,
        composite_p=0.0, checkpoint_minutes=100,
    )  # fmt: skip
    values.update(overrides)
    return TrainConfig(**values)


def test_a_missing_mask_is_named_in_the_error(tmp_path):
    images, masks = make_pairs(tmp_path / "set", count=3)
    (masks / "001.png").unlink()
    with pytest.raises(DatasetError, match="001.jpg"):
        find_pairs(images, masks)


def test_a_size_mismatch_is_named_in_the_error(tmp_path):
    images, masks = make_pairs(tmp_path / "set", count=2)
    cv2.imwrite(str(masks / "000.png"), np.zeros((10, 10), np.uint8))
    with pytest.raises(DatasetError, match="size mismatch.*000"):
        read_pair(find_pairs(images, masks)[0])


def test_an_unreadable_image_is_named_in_the_error(tmp_path):
    images, masks = make_pairs(tmp_path / "set", count=2)
    (images / "001.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(DatasetError, match="cannot read image .*001.jpg"):
        read_pair(find_pairs(images, masks)[1])


def test_the_validation_split_is_every_tenth_photo_and_whole_held_out_clips(tmp_path):
    make_pairs(tmp_path / "photos", count=25)
    make_pairs(tmp_path / "video" / "lucia", count=4)
    make_pairs(tmp_path / "video" / "hike", count=4)
    folders = [
        ("photos", tmp_path / "photos"),
        ("video/lucia", tmp_path / "video/lucia"),
        ("video/hike", tmp_path / "video/hike"),
    ]
    train, val = split_pairs(folders)
    val_names = sorted(p.image.name for p in val if p.source == "photos")
    assert val_names == ["000.jpg", "010.jpg", "020.jpg"]
    assert sum(p.image.parent.parent.name == "lucia" for p in val) == 4
    assert not any(p.image.parent.parent.name == "lucia" for p in train)
    assert len(train) + len(val) == 33


def test_the_lovasz_loss_is_one_minus_each_images_iou_for_hard_predictions():
    torch.manual_seed(0)
    truth = (torch.rand(4, 1, 20, 20) > 0.5).float()
    predicted = (torch.rand(4, 1, 20, 20) > 0.3).float()
    logits = (predicted * 2 - 1) * 40  # sigmoid saturates to exactly 0 or 1
    intersection = (predicted * truth).flatten(1).sum(1)
    union = ((predicted + truth) > 0).float().flatten(1).sum(1)
    expected = (1 - intersection / union).mean()
    assert torch.isclose(lovasz_loss(logits, truth), expected, atol=1e-6)


def test_the_lovasz_loss_is_zero_only_for_a_perfect_prediction():
    truth = torch.zeros(1, 1, 8, 8)
    truth[..., 2:6, 2:6] = 1
    assert lovasz_loss((truth * 2 - 1) * 40, truth) < 1e-6
    assert lovasz_loss(torch.zeros(1, 1, 8, 8), truth) > 0.4


@pytest.mark.parametrize("loss", sorted(LOSSES))
def test_a_short_training_run_lowers_the_validation_loss(tmp_path, loss):
    cfg = tiny_config(tmp_path, epochs=4, samples_per_epoch=64, loss=loss)
    trainer = Trainer(cfg)
    trainer.run()
    history = [json.loads(line) for line in (Path(cfg.out) / "history.jsonl").read_text().splitlines()]
    # the validation loss is measured on the same fixed images every epoch, so it is the fair signal
    losses = [row["val/loss"] for row in history if "val/loss" in row]
    assert losses[-1] < 0.9 * losses[0]
    for name in ("last.pt", "best.pt", "best.safetensors", "curves.png", "samples.png", "report.md"):
        assert (Path(cfg.out) / name).exists(), name


def test_resume_continues_the_same_steps_and_optimizer_state(tmp_path):
    straight = Trainer(tiny_config(tmp_path / "a", epochs=2))
    straight.run()

    cfg = tiny_config(tmp_path / "b", epochs=2)
    first = Trainer(cfg)
    first.run(until_epoch=1)  # stopped after one epoch, as an interrupted session would be
    resumed = Trainer(cfg, resume=True)
    assert resumed.step == first.step and resumed.epoch == 1
    first_state = first.optimizer.state_dict()["state"]
    resumed_state = resumed.optimizer.state_dict()["state"]
    assert all(torch.equal(first_state[k]["exp_avg"], resumed_state[k]["exp_avg"]) for k in first_state)
    resumed.run()
    assert resumed.step == straight.step
    for key, value in straight.model.state_dict().items():
        assert torch.allclose(value.float(), resumed.model.state_dict()[key].float(), atol=1e-5), key


def test_resume_with_more_epochs_extends_the_run(tmp_path):
    tiny_config(tmp_path)  # writes the data
    run = [
        sys.executable, "-m", "training", "--out", str(tmp_path / "run"), "--data-root", str(tmp_path / "data"),
        "--model", "depthwise8", "--batch-size", "4", "--crop", "48", "--final-crop", "48",
        "--wandb", "disabled", "--threads", "1", "--composite-p", "0",
    ]  # fmt: skip
    first = subprocess.run([*run, "--epochs", "1"], cwd=ROOT, capture_output=True, text=True)
    assert first.returncode == 0, first.stderr[-2000:]
    extended = subprocess.run([*run, "--resume", "--epochs", "2"], cwd=ROOT, capture_output=True, text=True)
    assert extended.returncode == 0, extended.stderr[-2000:]
    checkpoint = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    assert checkpoint["epoch"] == 2
    assert json.loads(checkpoint["train_config"])["epochs"] == 2


def test_the_training_cli_explains_every_flag():
    result = subprocess.run(
        [sys.executable, "-m", "training", "--help"], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0
    for flag in ("--images", "--masks", "--epochs", "--out", "--wandb", "--resume", "--preset"):
        assert flag in result.stdout


def test_the_training_cli_reports_a_bad_folder_in_one_line(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "training", "--data-root", "", "--images", str(tmp_path / "nope"), "--masks", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "nope is not a folder" in result.stderr


def test_repeat_uses_a_folders_pairs_that_many_times_and_zero_leaves_it_out():
    a0, a1, b2, c3 = [Pair(Path(f"{n}.jpg"), Path(f"{n}.png"), source) for n, source in enumerate("aabc")]
    assert repeat_by_source([a0, a1, b2, c3], {}) == [a0, a1, b2, c3]
    assert repeat_by_source([a0, a1, b2, c3], {"a": 2, "c": 0}) == [a0, a0, a1, a1, b2]


def test_a_repeated_pair_is_read_once_and_its_arrays_shared(tmp_path):
    images, masks = make_pairs(tmp_path / "toy", count=2)
    first, second = find_pairs(images, masks)
    cached = cache_pairs([first, first, second], progress=False)
    assert cached[0] is cached[1] and cached[0] is not cached[2]
    assert np.array_equal(cached[0][1], read_pair(first, CACHE_LONG_SIDE)[1])


def person_on_plain_background() -> tuple[np.ndarray, np.ndarray]:
    image = np.full((120, 90, 3), 40, np.uint8)
    mask = np.zeros((120, 90), np.uint8)
    cv2.ellipse(mask, (45, 70), (25, 45), 0, 0, 360, 255, -1)
    image[mask > 0] = (200, 160, 140)
    return image, mask


def test_an_occluder_is_held_across_the_persons_outline_and_labelled_background():
    image, mask = person_on_plain_background()
    texture = np.full((50, 50, 3), (0, 0, 255), np.uint8)
    for seed in range(20):
        occluded, new_mask = occlude(image, mask, texture, random.Random(seed))
        covered = np.abs(occluded.astype(int) - texture[0, 0]).sum(axis=2) < 12  # wholly the blob's colour
        assert covered.any(), "the blob shows in the image"
        assert (covered & (mask > 127)).any() and (covered & (mask == 0)).any(), "it straddles the outline"
        assert (new_mask <= mask).all(), "an occluder never adds person"
        hidden_person = covered & (mask > 127)
        assert new_mask[hidden_person].max() < 0.1 * 255, "where the blob hides the person, it is background"
        assert new_mask.shape == mask.shape and occluded.dtype == np.uint8


def test_occlusion_is_reproducible_and_leaves_its_inputs_alone():
    image, mask = person_on_plain_background()
    before = image.copy(), mask.copy()
    texture = np.random.default_rng(0).integers(0, 255, (80, 60, 3), dtype=np.uint8)
    first = occlude(image, mask, texture, random.Random(7))
    second = occlude(image, mask, texture, random.Random(7))
    assert all(np.array_equal(a, b) for a, b in zip(first, second, strict=True))
    assert np.array_equal(image, before[0]) and np.array_equal(mask, before[1])


def dog_cutout() -> tuple[np.ndarray, np.ndarray]:
    """A blue blob on a box: the object's colours and its 0-255 object mask."""
    alpha = np.zeros((40, 60), np.uint8)
    cv2.ellipse(alpha, (30, 20), (26, 16), 0, 0, 360, 255, -1)
    return np.full((40, 60, 3), (0, 0, 255), np.uint8), alpha


def test_a_pasted_distractor_never_adds_person_pixels():
    image, mask = person_on_plain_background()
    for seed in range(40):
        pasted, new_mask = paste_distractor(image, mask, dog_cutout(), random.Random(seed))
        assert (new_mask <= mask).all(), "the object is background, wherever it lands"
        assert pasted.shape == image.shape and new_mask.shape == mask.shape


def test_a_distractor_shows_beside_the_person_and_in_front_hides_them():
    image, mask = person_on_plain_background()
    shown = hid_person = 0
    for seed in range(40):
        pasted, new_mask = paste_distractor(image, mask, dog_cutout(), random.Random(seed))
        blue = np.abs(pasted.astype(int) - (0, 0, 255)).sum(axis=2) < 12
        shown += bool(blue.any())
        hid_person += bool((new_mask < mask).any())
        assert new_mask[blue & (mask > 127)].max(initial=0) < 0.1 * 255, (
            "what the object covers is not person"
        )
    assert shown > 30, "most pastes land inside the frame"
    assert 5 < hid_person < 35, "it goes in front of the person in some samples and behind in others"


def test_distractor_pasting_is_reproducible_and_leaves_its_inputs_alone():
    image, mask = person_on_plain_background()
    before = image.copy(), mask.copy()
    first = paste_distractor(image, mask, dog_cutout(), random.Random(3))
    second = paste_distractor(image, mask, dog_cutout(), random.Random(3))
    assert all(np.array_equal(a, b) for a, b in zip(first, second, strict=True))
    assert np.array_equal(image, before[0]) and np.array_equal(mask, before[1])


def another_photo_with_a_person() -> tuple[np.ndarray, np.ndarray]:
    """A green scene, larger than the first photo, with its own person: a red bar on the left."""
    image = np.full((90, 70, 3), (0, 160, 0), np.uint8)
    mask = np.zeros((90, 70), np.uint8)
    image[:, :20], mask[:, :20] = (255, 0, 0), 255
    return image, mask


def test_a_person_pasted_onto_another_photo_keeps_both_photos_people_and_nothing_else():
    image, mask = person_on_plain_background()
    other_image, other_mask = another_photo_with_a_person()
    saw_other_person = 0
    for seed in range(20):
        pasted, new_mask = paste_onto_photo(image, mask, (other_image, other_mask), random.Random(seed))
        assert pasted.shape == image.shape and new_mask.shape == mask.shape
        assert (new_mask >= mask).all(), "the pasted person stays person"
        red = np.abs(pasted.astype(int) - (255, 0, 0)).sum(axis=2) < 12
        green = np.abs(pasted.astype(int) - (0, 160, 0)).sum(axis=2) < 12
        assert green.any(), "the other photo shows behind the person"
        assert new_mask[green].max() < 0.1 * 255, "its scenery is background"
        assert (new_mask[red] > 0.9 * 255).all(), "its person is person"
        saw_other_person += bool(red.any())
    assert saw_other_person > 5, "the other photo's person is in view in some samples"


def test_a_person_pasted_in_front_of_another_leaves_no_seam_in_the_label():
    image, mask = person_on_plain_background()
    crowd = np.full((90, 70, 3), (255, 0, 0), np.uint8), np.full((90, 70), 255, np.uint8)
    _, new_mask = paste_onto_photo(image, mask, crowd, random.Random(0))
    assert (new_mask == 255).all(), "person in front of person is person, outline included"


def test_pasting_onto_another_photo_is_reproducible_and_leaves_its_inputs_alone():
    image, mask = person_on_plain_background()
    other = another_photo_with_a_person()
    before = [a.copy() for a in (image, mask, *other)]
    first = paste_onto_photo(image, mask, other, random.Random(5))
    second = paste_onto_photo(image, mask, other, random.Random(5))
    assert all(np.array_equal(a, b) for a, b in zip(first, second, strict=True))
    assert all(np.array_equal(a, b) for a, b in zip((image, mask, *other), before, strict=True))


def test_the_dataset_pastes_onto_other_photos_only_when_asked():
    samples = [person_on_plain_background(), another_photo_with_a_person()]

    def labels(copy_paste_p: float) -> list[torch.Tensor]:
        dataset = SegmentationDataset(samples, [], crop=32, long_side=48, copy_paste_p=copy_paste_p)
        return [dataset[0][1] for dataset.epoch in range(12)]

    plain, pasted = labels(0.0), labels(1.0)
    assert any(not torch.equal(a, b) for a, b in zip(plain, pasted, strict=True))
    # Off, the sample stream is the one older recipes saw: the option draws no random numbers.
    assert all(torch.equal(a, b) for a, b in zip(plain, labels(0.0), strict=True))


def test_an_image_without_a_person_can_still_be_occluded():
    image = np.full((40, 30, 3), 90, np.uint8)
    occluded, mask = occlude(
        image, np.zeros((40, 30), np.uint8), np.zeros((10, 10, 3), np.uint8), random.Random(1)
    )
    assert not mask.any() and occluded.shape == image.shape


def test_repeat_names_an_unknown_folder_in_the_error():
    pairs = [Pair(Path("0.jpg"), Path("0.png"), "portraits")]
    with pytest.raises(DatasetError, match="potraits.*training folders are portraits"):
        repeat_by_source(pairs, {"potraits": 2})


def test_the_training_cli_reports_a_malformed_repeat_in_one_line():
    result = subprocess.run(
        [sys.executable, "-m", "training", "--repeat", "portraits"], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [
        "Error: --repeat 'portraits' is not FOLDER=N, for example portraits-eg2016=2"
    ]


def test_export_writes_onnx_that_matches_torch_and_fp16_weights(tmp_path):
    from deepbg_live.model import build_model, save_weights

    save_weights(build_model("depthwise8"), tmp_path / "trained.safetensors")
    result = subprocess.run(
        [sys.executable, "-m", "training.export", str(tmp_path / "trained.safetensors"), "--out", str(tmp_path / "w"), "--name", "m"],
        cwd=ROOT, capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "w" / "m.safetensors").exists()
    assert (tmp_path / "w" / "m.onnx").exists()  # beside the weights, tied to them by their hash


def photo_pairs(root: Path, count: int = 12) -> Path:
    """A shared-data layout of crops and flips of the bundled portrait (the masks are not used)."""
    photo = cv2.imread(str(ROOT / "deepbg_live" / "samples" / "astronaut.jpg"))
    images, masks = root / "people" / "images", root / "people" / "masks"
    images.mkdir(parents=True)
    masks.mkdir(parents=True)
    for i in range(count):
        crop = photo[i * 8 :, : photo.shape[1] - i * 8]
        crop = crop[:, ::-1] if i % 2 else crop
        cv2.imwrite(str(images / f"{i:03d}.jpg"), crop)
        cv2.imwrite(str(masks / f"{i:03d}.png"), np.zeros(crop.shape[:2], np.uint8))
    return root


@pytest.mark.slow
def test_export_calibrate_writes_an_int8_model_the_runtime_picks_up(tmp_path):
    from deepbg_live.engine import Segmenter
    from deepbg_live.model_files import DEFAULT_WEIGHTS

    shutil.copy(DEFAULT_WEIGHTS, tmp_path / "trained.safetensors")
    result = subprocess.run(
        [sys.executable, "-m", "training.export", str(tmp_path / "trained.safetensors"), "--out", str(tmp_path / "w"),
         "--name", "m", "--calibrate", str(photo_pairs(tmp_path / "data"))],
        cwd=tmp_path, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "int8 vs fp32 mask IoU" in result.stdout
    assert Segmenter(tmp_path / "w" / "m.safetensors", device="cpu").precision == "int8"
    # quantisation's scratch files stay out of the working folder
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "trained.safetensors", "w"]


def test_export_without_calibrate_says_the_old_int8_file_no_longer_matches(tmp_path):
    from deepbg_live.model import build_model, save_weights
    from deepbg_live.model_files import DEFAULT_WEIGHTS, INT8_SUFFIX

    save_weights(build_model("realtime"), tmp_path / "trained.safetensors")
    (tmp_path / "w").mkdir()
    shutil.copy(
        DEFAULT_WEIGHTS.with_name(DEFAULT_WEIGHTS.stem + INT8_SUFFIX), tmp_path / "w" / f"m{INT8_SUFFIX}"
    )
    result = subprocess.run(
        [sys.executable, "-m", "training.export", str(tmp_path / "trained.safetensors"), "--out", str(tmp_path / "w"), "--name", "m"],
        cwd=ROOT, capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "add --calibrate" in result.stdout


def test_export_relabels_a_probe_config_as_the_shipped_one_of_the_same_shape():
    import dataclasses

    from deepbg_live.model import CONFIGS
    from training.export import relabel

    probe = dataclasses.replace(CONFIGS["realtime"], name="classic16")
    assert relabel(probe, CONFIGS["realtime"]) == CONFIGS["realtime"]


def test_export_relabels_only_to_a_config_of_the_same_shape(tmp_path):
    from deepbg_live.model import build_model, load_weights, save_weights

    save_weights(build_model("depthwise8"), tmp_path / "probe.safetensors")
    export = [
        sys.executable,
        "-m",
        "training.export",
        str(tmp_path / "probe.safetensors"),
        "--out",
        str(tmp_path),
    ]
    refused = subprocess.run([*export, "--config", "depthwise16"], cwd=ROOT, capture_output=True, text=True)
    assert refused.returncode == 1 and "nothing written" in refused.stderr
    assert not (tmp_path / "depthwise16.safetensors").exists()
    same = subprocess.run([*export, "--config", "depthwise8"], cwd=ROOT, capture_output=True, text=True)
    assert same.returncode == 0, same.stderr
    assert load_weights(tmp_path / "depthwise8.safetensors")[0].config == build_model("depthwise8").config


def free_port() -> int:
    """A TCP port no one listens on now, so two suites running at once do not clash."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.slow
def test_ddp_trains_with_two_cpu_processes(tmp_path):
    tiny_config(tmp_path)  # writes the data
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={free_port()}", "-m", "training",
        "--out", str(tmp_path / "ddp"), "--data-root", str(tmp_path / "data"), "--model", "depthwise8", "--epochs", "1",
        "--batch-size", "2", "--crop", "48", "--final-crop", "48", "--wandb", "disabled", "--threads", "1", "--composite-p", "0",
    ]  # fmt: skip
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    checkpoint = torch.load(tmp_path / "ddp" / "last.pt", weights_only=True)
    assert checkpoint["epoch"] == 1
    # 10 training pairs, batch 2 per process, 2 processes: 2 steps, each seeing 4 samples
    assert checkpoint["step"] == 2


def test_a_run_sized_in_minutes_takes_as_many_epochs_as_fit_at_its_first_ones_pace(tmp_path):
    cfg = tiny_config(tmp_path, fit_minutes=0.5, crop=48, final_crop=48)
    assert epochs_for_minutes(cfg, first_epoch_s=10.0) == 3
    # the final crop's epochs count at their pixels: half the run at twice the side costs 2.5x
    assert epochs_for_minutes(replace(cfg, final_crop=96, final_fraction=0.5), first_epoch_s=2.0) == 6


def test_a_run_sized_in_minutes_runs_its_whole_schedule_and_keeps_the_size_on_resume(tmp_path):
    trainer = Trainer(tiny_config(tmp_path, epochs=50, fit_minutes=1e-4))  # 6 ms: less than any epoch
    trainer.run()
    assert (trainer.epoch, trainer.cfg.epochs) == (1, 1)
    stored = json.loads(torch.load(tmp_path / "run" / "last.pt", weights_only=True)["train_config"])
    assert (stored["epochs"], stored["fit_minutes"]) == (1, 0.0)


def test_fine_tuning_starts_from_the_given_weights(tmp_path):
    from deepbg_live.model import build_model, save_weights

    start = build_model("depthwise8")
    torch.nn.init.constant_(start.head.bias, 0.75)
    save_weights(start, tmp_path / "start.safetensors")
    trainer = Trainer(tiny_config(tmp_path, init=str(tmp_path / "start.safetensors")))
    assert torch.allclose(trainer.model.head.bias, torch.tensor([0.75]))


def test_fine_tuning_may_add_identity_blocks_to_weights_trained_without_them(tmp_path):
    from dataclasses import replace

    from deepbg_live.model import CONFIGS, UNet, save_weights

    start = UNet(replace(CONFIGS["realtime"], context=False, bottleneck_blocks=0))
    torch.nn.init.constant_(start.head.bias, 0.75)
    save_weights(start, tmp_path / "start.safetensors")
    trainer = Trainer(tiny_config(tmp_path, model="realtime", init=str(tmp_path / "start.safetensors")))
    assert torch.allclose(trainer.model.head.bias, torch.tensor([0.75]))


def test_fine_tuning_never_drops_trained_blocks():
    from dataclasses import replace

    from deepbg_live.model import CONFIGS
    from training.train import can_grow_into

    plain = replace(CONFIGS["realtime"], context=False, bottleneck_blocks=0)
    deep = replace(plain, bottleneck_blocks=2)
    assert can_grow_into(plain, deep)
    assert not can_grow_into(deep, plain)
    assert not can_grow_into(replace(plain, context=True), plain)
    assert not can_grow_into(plain, replace(deep, base=8))


def test_fine_tuning_may_deepen_mobile_stages_but_never_make_them_shallower():
    from dataclasses import replace

    from deepbg_live.model import CONFIGS
    from training.train import can_grow_into

    video, deep = CONFIGS["mobile-video"], CONFIGS["mobile-deep-video"]
    assert can_grow_into(video, deep)
    assert not can_grow_into(deep, video)
    assert not can_grow_into(video, replace(video, stage_depths=(1, 2, 6, 2)))  # one stage loses a block


def test_fine_tuning_may_widen_mobile_stages_but_never_narrow_them():
    from dataclasses import replace

    from deepbg_live.model import CONFIGS
    from training.train import can_grow_into

    video, broad = CONFIGS["mobile-video"], CONFIGS["mobile-broad-video"]
    assert can_grow_into(video, broad)
    assert can_grow_into(video, replace(video, expansion=6))
    assert not can_grow_into(broad, video)
    assert not can_grow_into(video, replace(broad, widths=(16, 32, 48, 80, 80)))  # one stage narrower


def test_a_widened_network_starts_by_giving_the_narrow_networks_answer(tmp_path):
    from deepbg_live.model import CONFIGS, MobileUNet, save_weights

    torch.manual_seed(0)
    narrow = MobileUNet(CONFIGS["mobile"])
    for module in narrow.modules():  # trained-looking BN, so that no layer starts as a no-op
        if isinstance(module, torch.nn.BatchNorm2d):
            torch.nn.init.uniform_(module.weight, 0.5, 1.5)
            torch.nn.init.uniform_(module.bias, -0.2, 0.2)
    save_weights(narrow.eval(), tmp_path / "narrow.safetensors")
    # wider at every stage and with a 4th input: the previous mask
    trainer = Trainer(
        tiny_config(tmp_path, model="mobile-broad-video", init=str(tmp_path / "narrow.safetensors"))
    )
    frame = torch.rand(2, 3, 70, 90)
    prior = torch.rand(2, 1, 70, 90)
    with torch.no_grad():
        expected = narrow(frame)
        got = trainer.model.eval()(torch.cat([frame, prior], dim=1))
    assert got.shape == expected.shape
    assert torch.allclose(got, expected, atol=1e-5)


def test_fine_tuning_may_change_the_inference_resolution():
    from dataclasses import replace

    from deepbg_live.model import CONFIGS
    from training.train import can_grow_into

    config = CONFIGS["realtime"]
    assert can_grow_into(replace(config, long_side=config.long_side - 32), config)


def test_fine_tuning_refuses_weights_of_another_shape(tmp_path):
    from deepbg_live.model import build_model, save_weights

    save_weights(build_model("realtime"), tmp_path / "other.safetensors")
    with pytest.raises(DatasetError, match="realtime"):
        Trainer(tiny_config(tmp_path, init=str(tmp_path / "other.safetensors")))


def test_evaluate_reports_every_metric_for_each_folder(tmp_path):
    from deepbg_live.model import build_model, save_weights

    images, masks = make_pairs(tmp_path / "toy", count=4)
    save_weights(build_model("depthwise8"), tmp_path / "m.safetensors")
    result = subprocess.run(
        [sys.executable, "-m", "training.evaluate", "--images", str(images), "--masks", str(masks),
         "--model", str(tmp_path / "m.safetensors"), "--refine", "--json-out", str(tmp_path / "r.json")],
        cwd=ROOT, capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    scores = json.loads((tmp_path / "r.json").read_text())["toy"]
    assert scores["pairs"] == 4
    assert set(scores) >= {"iou", "miou", "dice", "boundary_f", "mad"}


def test_evaluate_samples_the_training_split_to_measure_fit(tmp_path):
    from evaluation.layout import VAL_EVERY, is_validation
    from training.evaluate import split_sample

    for folder in ("alpha", "beta"):
        make_pairs(tmp_path / "data" / folder, count=4 * VAL_EVERY)
    training = split_sample(tmp_path / "data", training=True, every=3)
    validation = split_sample(tmp_path / "data", training=False)

    train_count = 4 * VAL_EVERY - 4
    assert sorted({p.source for p in training}) == ["alpha", "beta"]
    assert len(training) == 2 * len(range(0, train_count, 3))
    assert len(validation) == 2 * 4
    assert not {p.image for p in training} & {p.image for p in validation}
    names = sorted(p.image.name for p in validation if p.source == "alpha")
    assert all(is_validation("alpha", int(Path(n).stem)) for n in names)


def recording(cls, made: list):
    """``cls``'s constructor, also appending each object it makes to ``made``."""

    def make(*args, **kwargs):
        made.append(cls(*args, **kwargs))
        return made[-1]

    return make


@pytest.mark.parametrize(
    ("flags", "flip_average", "refined", "second_look"),
    [([], True, True, True), (["--no-flip-average"], False, True, True), (["--no-refine"], True, False, True)]
    + [(["--no-second-look"], True, True, False)],
)
def test_evaluate_scores_what_deepbg_live_gives_a_photo_unless_told_otherwise(
    tmp_path, monkeypatch, flags, flip_average, refined, second_look
):
    from click.testing import CliRunner

    import training.evaluate as evaluate_cli
    from deepbg_live.model import build_model, save_weights

    images, masks = make_pairs(tmp_path / "toy", count=2)
    model = tmp_path / "m.safetensors"
    save_weights(build_model("depthwise8"), model)
    segmenters, refiners = [], []
    monkeypatch.setattr(evaluate_cli, "Segmenter", recording(evaluate_cli.Segmenter, segmenters))
    monkeypatch.setattr(evaluate_cli, "EdgeRefiner", recording(evaluate_cli.EdgeRefiner, refiners))
    args = ["--images", str(images), "--masks", str(masks), "--model", str(model), *flags]
    result = CliRunner().invoke(evaluate_cli.main, args)
    assert result.exit_code == 0, result.output
    assert [s.flip_average for s in segmenters] == [flip_average]
    assert [s.second_look for s in segmenters] == [second_look]
    assert len(refiners) == int(refined)


def test_a_previous_mask_model_grown_from_rgb_weights_first_computes_what_they_did(tmp_path):
    from deepbg_live.model import build_model, save_weights

    start = build_model("mobile").eval()
    save_weights(start, tmp_path / "start.safetensors")
    trainer = Trainer(tiny_config(tmp_path, model="mobile-video", init=str(tmp_path / "start.safetensors")))
    grown = trainer.model.eval()
    image = torch.randn(1, 3, 40, 56)
    with torch.no_grad():
        before = start(image)
        after = grown(torch.cat([image, torch.rand(1, 1, 40, 56)], 1))
    assert torch.allclose(before, after, atol=1e-6)


def batch_with_priors(neutral: list[bool], size=(48, 48)) -> torch.Tensor:
    """RGB noise with a fourth channel: neutral where asked, else a rough copy of some truth."""
    from deepbg_live.prior import NEUTRAL

    images = torch.randn(len(neutral), 4, *size)
    images[:, 3] = (torch.rand(len(neutral), *size) > 0.5).float()
    images[torch.tensor(neutral), 3] = NEUTRAL
    return images


def test_a_self_prior_replaces_perturbed_masks_with_the_models_own_answer(tmp_path):
    from deepbg_live.prior import NEUTRAL

    trainer = Trainer(tiny_config(tmp_path, model="mobile-video", self_prior_p=1.0))
    images = batch_with_priors([True, False, True, False])
    given = images.clone()
    fed = trainer.with_own_answers(images)
    assert torch.equal(images, given), "the batch it was given is left alone"
    assert trainer.model.training, "the model is back in training mode"
    first = images.clone()
    first[:, 3] = NEUTRAL
    with torch.no_grad():
        own = torch.sigmoid(trainer.model.eval()(first))[:, 0]
    assert torch.equal(fed[:, :3], images[:, :3])
    assert torch.equal(fed[[0, 2]], images[[0, 2]]), "the neutral samples still train the first look"
    assert torch.allclose(fed[[1, 3], 3], own[[1, 3]], atol=1e-6)


def test_without_a_self_prior_share_a_step_trains_on_the_batch_as_given(tmp_path, monkeypatch):
    trainer = Trainer(tiny_config(tmp_path, model="mobile-video"))
    seen = []
    monkeypatch.setattr(trainer, "net", lambda x: seen.append(x.clone()) or trainer.model(x))
    images = batch_with_priors([False, False])
    trainer.train_step(images, torch.zeros(2, 1, 48, 48))
    assert len(seen) == 1 and torch.equal(seen[0], images)


def test_the_training_time_score_looks_at_each_photo_twice_as_the_runtime_does(tmp_path, monkeypatch):
    from deepbg_live.prior import NEUTRAL

    trainer = Trainer(tiny_config(tmp_path, model="mobile-video"))
    calls = []
    trainer.model.register_forward_hook(
        lambda _, x, out: calls.append((x[0][0, 3], torch.sigmoid(out)[0, 0]))
    )
    trainer.predict(np.zeros((48, 64, 3), np.uint8))
    assert len(calls) == 2
    assert torch.all(calls[0][0] == NEUTRAL)
    assert torch.allclose(calls[1][0], calls[0][1])


def test_previous_mask_samples_carry_a_neutral_or_perturbed_copy_of_the_truth():
    from deepbg_live.prior import NEUTRAL
    from training.data import PREVIOUS_MASK_NEUTRAL_P, SegmentationDataset

    image, mask = person_on_plain_background()
    dataset = SegmentationDataset([(image, mask)] * 60, [], crop=64, long_side=64, previous_mask=True)
    neutral, agreements = 0, []
    for index in range(len(dataset)):
        x, target = dataset[index]
        assert x.shape == (4, 64, 64) and target.shape == (1, 64, 64)
        prior = x[3]
        if torch.all(prior == NEUTRAL):
            neutral += 1
            continue
        assert prior.min() >= 0 and prior.max() <= 1
        hit, truth = prior > 0.5, target[0] > 0.5
        agreements.append(float((hit & truth).sum() / (hit | truth).sum().clamp(min=1)))
        assert not torch.equal(prior, target[0]), "a copy of the truth would teach the model to copy it"
    assert abs(neutral / len(dataset) - PREVIOUS_MASK_NEUTRAL_P) < 0.2
    assert np.median(agreements) > 0.5, "the perturbed copy still says roughly where the person is"


def test_the_boundary_band_marks_the_outline_and_not_the_inside_or_far_background():
    from training.train import boundary_band

    target = torch.zeros(1, 1, 40, 40)
    target[..., 10:30, 10:30] = 1
    band = boundary_band(target)[0, 0]
    assert band[10, 20] == 1 and band[9, 20] == 1 and band[12, 20] == 1  # on and beside the edge
    assert band[20, 20] == 0 and band[2, 2] == 0  # deep inside, far outside


def test_a_boundary_weight_makes_errors_at_the_outline_cost_more_and_others_the_same():
    from training.train import segmentation_loss

    target = torch.zeros(1, 1, 40, 40)
    target[..., 10:30, 10:30] = 1
    confident = torch.where(target > 0.5, 8.0, -8.0)
    at_edge, far = confident.clone(), confident.clone()
    at_edge[..., 10, 12:28] = -8.0  # the top row of the person lost
    far[..., 35, 12:28] = 8.0  # a background streak kept, as many pixels
    for wrong in (at_edge, far):
        plain = segmentation_loss(wrong, target, "bce-dice")
        weighted = segmentation_loss(wrong, target, "bce-dice", boundary_weight=4.0)
        if wrong is at_edge:
            assert weighted > plain * 1.5
        else:
            assert torch.isclose(weighted, plain, rtol=0.05)


TEACHER_ONNX = ROOT / "deepbg_live" / "weights" / "realtime.int8.onnx"  # the RGB model runs distil from


def test_the_teacher_gives_the_runtimes_probabilities_for_the_rgb_channels_of_each_crop():
    from deepbg_live.runtimes.base import RuntimeOptions
    from deepbg_live.runtimes.onnx_runtime import OnnxRuntime
    from training.teacher import Teacher

    batch = torch.randn(3, 4, 64, 48)  # RGB and a previous-mask channel the teacher must not see
    soft = Teacher(TEACHER_ONNX)(batch)
    runtime = OnnxRuntime(TEACHER_ONNX.read_bytes(), RuntimeOptions(threads=1))
    assert soft.shape == (3, 1, 64, 48)
    assert soft.min() >= 0 and soft.max() <= 1
    for i in range(3):
        expected = runtime(np.ascontiguousarray(batch[i : i + 1, :3].numpy()))
        np.testing.assert_allclose(soft[i : i + 1].numpy(), expected, atol=1e-5)


def test_distillation_pulls_towards_the_teachers_soft_edges():
    from training.teacher import distillation_loss

    truth = torch.tensor([[[[1.0, 0.0]]]])
    teacher = torch.tensor([[[[0.8, 0.3]]]])  # agrees with the truth, less sure than it
    like_teacher = torch.logit(teacher)
    like_truth = torch.tensor([[[[8.0, -8.0]]]])
    assert distillation_loss(like_teacher, teacher, truth) < distillation_loss(like_truth, teacher, truth)


def test_distillation_ignores_pixels_where_the_teacher_contradicts_the_truth():
    from training.teacher import distillation_loss

    truth = torch.tensor([[[[1.0, 0.0, 0.0]]]])
    teacher = torch.tensor([[[[0.9, 0.1, 0.95]]]])  # the last pixel: a chair the teacher keeps
    keeps_chair = torch.tensor([[[[2.0, -2.0, 6.0]]]])
    drops_chair = torch.tensor([[[[2.0, -2.0, -6.0]]]])
    assert torch.isclose(
        distillation_loss(keeps_chair, teacher, truth), distillation_loss(drops_chair, teacher, truth)
    )


def test_a_run_with_a_teacher_trains_and_resumes_with_it(tmp_path):
    cfg = tiny_config(tmp_path, epochs=2, samples_per_epoch=32, teacher=str(TEACHER_ONNX), distill_weight=1.0)
    Trainer(cfg, resume=False).run(until_epoch=1)
    resumed = Trainer(cfg, resume=True)
    assert resumed.teacher is not None and resumed.cfg.teacher == str(TEACHER_ONNX)
    resumed.run()
    history = [json.loads(line) for line in (Path(cfg.out) / "history.jsonl").read_text().splitlines()]
    assert [row["epoch"] for row in history if "val/loss" in row] == [1, 2]
