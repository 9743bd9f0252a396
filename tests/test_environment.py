"""Nothing is written outside the output paths: HOME, the current folder and the temp folder stay as they were.

Each job runs the command in a subprocess, the way a user does, with HOME, the current folder and
TMPDIR each a fresh empty folder and no XDG_*_HOME, so that anything a library would put in
``~/.cache`` or ``~/.config`` (ONNX Runtime's telemetry queue, ``~/.cache/Microsoft/...``, for one)
lands where the test sees it. The inputs live in one folder and the outputs in another.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests import media

SAMPLE = "deepbg-live-sample.mp4"  # --demo's clip, cached in the temp folder as the README says


@dataclass
class Places:
    home: Path
    cwd: Path
    tmp: Path
    inputs: Path
    outputs: Path


@pytest.fixture
def places(tmp_path: Path) -> Places:
    folders = Places(*(tmp_path / name for name in ("home", "cwd", "tmp", "inputs", "outputs")))
    for folder in vars(folders).values():
        folder.mkdir()
    return folders


def everything_in(folder: Path) -> list[str]:
    """Every file and folder under ``folder``, hidden ones too, relative to it."""
    return sorted(str(path.relative_to(folder)) for path in folder.rglob("*"))


def deepbg_in(places: Places, *args: str) -> subprocess.CompletedProcess:
    env = {key: value for key, value in os.environ.items() if not key.startswith("XDG_")}
    env.update(HOME=str(places.home), TMPDIR=str(places.tmp))
    result = subprocess.run(
        [sys.executable, "-m", "deepbg_live", *args, "--no-progress"],
        cwd=places.cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    return result


def assert_untouched(places: Places, outputs: list[str], temp: list[str] = ()) -> None:
    assert everything_in(places.home) == []
    assert everything_in(places.cwd) == []
    assert everything_in(places.tmp) == sorted(temp)
    assert everything_in(places.outputs) == sorted(outputs)


@pytest.mark.slow
def test_a_photo_writes_its_output_and_nothing_else(places: Places) -> None:
    photo = media.make_image(places.inputs / "photo.jpg", (96, 72))
    deepbg_in(places, "--input", str(photo), "-o", str(places.outputs / "out.png"))
    assert_untouched(places, ["out.png"])


@pytest.mark.slow
def test_a_video_with_sound_and_its_masks_write_nothing_else(places: Places) -> None:
    clip = media.make_clip(places.inputs / "talk.mp4", frames=20, size=(160, 120))
    outputs = places.outputs
    deepbg_in(places, "--input", str(clip), "-o", str(outputs / "out.mp4"), "--save-mask", str(outputs / "m"))
    assert_untouched(places, ["m", *(f"m/{i:05d}.png" for i in range(20)), "out.mp4"])


@pytest.mark.slow
def test_a_folder_of_photos_writes_one_file_each_and_nothing_else(places: Places) -> None:
    for name in ("alice", "bob"):
        media.make_image(places.inputs / "photos" / f"{name}.png", (64, 48))
    deepbg_in(
        places, "--input", str(places.inputs / "photos"), "--transparent", "-o", str(places.outputs / "cut")
    )
    assert_untouched(places, ["cut", "cut/alice.png", "cut/bob.png"])


@pytest.mark.slow
def test_the_demo_caches_only_its_sample_in_the_temp_folder(places: Places) -> None:
    deepbg_in(places, "--demo", "-o", str(places.outputs / "demo.mp4"))
    assert_untouched(places, ["demo.mp4"], temp=[SAMPLE])
