"""The compact copy of the data layout (`python -m training.pack`): what training reads, smaller."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import click
import cv2
import numpy as np
import pytest

from evaluation.layout import CACHE_LONG_SIDE, read_pair, shared_data_folders, split_pairs
from tests.test_training import ROOT, make_pairs, tiny_config
from training.data import load_backgrounds, load_distractors
from training.pack import pack


@pytest.fixture
def layout(tmp_path: Path) -> Path:
    """A small shared-data layout: a photo folder, two clips, backgrounds and distractors, larger than the cache."""
    root = tmp_path / "data"
    images, _ = make_pairs(root / "photos", count=23, size=(480, 360))
    for (
        path
    ) in images.iterdir():  # smooth, like a photo: make_pairs' pixel noise is lossy coding's worst case
        cv2.imwrite(
            str(path), cv2.GaussianBlur(cv2.imread(str(path)), (9, 9), 3), [cv2.IMWRITE_JPEG_QUALITY, 98]
        )
    make_pairs(root / "video-davis" / "lucia", count=3, size=(400, 300))
    make_pairs(root / "video-davis" / "hike", count=3, size=(400, 300))
    objects = root / "objects-davis"
    images, masks = make_pairs(objects / "x", count=2, size=(200, 150))
    images.rename(objects / "object-images")
    masks.rename(objects / "object-masks")
    (root / "backgrounds").mkdir()
    for i in range(2):
        cv2.imwrite(str(root / "backgrounds" / f"bg{i}.jpg"), np.full((600, 800, 3), 60 * i, np.uint8))
    (root / "README.md").write_text("licences\n")
    return root


def stems(pairs) -> list[tuple[str, str]]:
    return [(pair.source, pair.image.stem) for pair in pairs]


def test_the_copy_has_the_same_pairs_and_the_same_validation_split(layout, tmp_path):
    pack(layout, tmp_path / "pack", progress=False)
    original = split_pairs(shared_data_folders(layout))
    copy = split_pairs(shared_data_folders(tmp_path / "pack"))
    assert [stems(part) for part in copy] == [stems(part) for part in original]
    assert len(copy[1]) == 3 + 3  # every tenth photo (0, 10, 20) and the held-out clip


def test_training_reads_the_copy_as_it_reads_the_originals(layout, tmp_path):
    pack(layout, tmp_path / "pack", progress=False)
    folders = [shared_data_folders(root) for root in (layout, tmp_path / "pack")]
    for original, copy in zip(*(split_pairs(f)[0][:20] for f in folders), strict=True):  # the photos
        image, mask = read_pair(original)
        packed_image, packed_mask = read_pair(copy)
        assert max(packed_image.shape[:2]) == CACHE_LONG_SIDE
        np.testing.assert_array_equal(packed_mask, mask)  # masks are lossless
        assert np.abs(packed_image.astype(int) - image).mean() < 3  # photos lose a little to WebP


def test_backgrounds_distractors_and_the_licences_come_along(layout, tmp_path):
    pack(layout, tmp_path / "pack", progress=False)
    assert len(load_backgrounds(tmp_path / "pack" / "backgrounds")) == 2
    distractors = load_distractors(tmp_path / "pack" / "objects-davis")
    np.testing.assert_array_equal(distractors[1][1], load_distractors(layout / "objects-davis")[1][1])
    assert (tmp_path / "pack" / "README.md").read_text() == "licences\n"


def test_an_existing_folder_is_refused_and_left_alone(layout, tmp_path):
    (tmp_path / "pack").mkdir()
    (tmp_path / "pack" / "keep.txt").write_text("mine")
    with pytest.raises(click.ClickException, match="already exists"):
        pack(layout, tmp_path / "pack", progress=False)
    assert [p.name for p in (tmp_path / "pack").iterdir()] == ["keep.txt"]


def test_a_stopped_pack_leaves_no_half_copy(layout, tmp_path, monkeypatch):
    import training.pack as packing

    def fail(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(packing, "_write", fail)
    with pytest.raises(KeyboardInterrupt):
        pack(layout, tmp_path / "pack", progress=False)
    assert not (tmp_path / "pack").exists()
    monkeypatch.undo()
    pack(layout, tmp_path / "pack", progress=False)  # the next run starts afresh and finishes
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_a_run_trains_on_the_copy(layout, tmp_path):
    from training.train import Trainer

    pack(layout, tmp_path / "pack", progress=False)
    trainer = Trainer(tiny_config(tmp_path, data_root=str(tmp_path / "pack"), epochs=1))
    trainer.run()
    assert (tmp_path / "run" / "best.safetensors").is_file()


def test_the_command_says_what_it_wrote(layout, tmp_path):
    command = [
        sys.executable,
        "-m",
        "training.pack",
        "--data-root",
        str(layout),
        "--out",
        str(tmp_path / "pack"),
    ]
    result = subprocess.run([*command, "--no-progress"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "29 pairs, 2 cut-outs and 2 backgrounds" in result.stdout and "MiB" in result.stdout
