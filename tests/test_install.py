"""The installation: a preview-capable OpenCV, and a wheel that carries only the runtime."""

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from deepbg_live.doctor import opencv_has_gui

ROOT = Path(__file__).resolve().parent.parent


def test_the_installed_opencv_can_open_windows():
    # albumentations pulls in opencv-python-headless, which can silently replace the GUI build;
    # the documented install runs `python -m deepbg_live.doctor --fix-opencv` to prevent that.
    assert opencv_has_gui(), "cv2 is the headless build: run python -m deepbg_live.doctor --fix-opencv"


@pytest.mark.slow
def test_the_wheel_ships_only_the_runtime_package_its_weights_and_sample(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", str(ROOT), "-w", str(tmp_path)],
        capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    names = zipfile.ZipFile(next(tmp_path.glob("*.whl"))).namelist()
    top_level = {name.split("/")[0] for name in names if not name.split("/")[0].endswith(".dist-info")}
    assert top_level == {"deepbg_live"}
    assert "deepbg_live/samples/astronaut.jpg" in names
    weights = Path(ROOT / "deepbg_live" / "weights")
    shipped = [*weights.glob("*.safetensors"), *weights.glob("*.onnx")]
    assert any(path.name.endswith(".int8.onnx") for path in shipped)
    for path in weights.glob("*.safetensors"):  # every model as fp32 ONNX too, for a CPU without torch
        assert path.with_suffix(".onnx") in shipped
    for path in shipped:
        assert f"deepbg_live/weights/{path.name}" in names


def test_torch_is_an_extra_not_a_requirement():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert not [r for r in project["dependencies"] if r.startswith("torch")]
    for extra in ("cuda", "train"):
        assert any(r.startswith("torch") for r in project["optional-dependencies"][extra]), extra


def test_ci_runs_the_readmes_test_command_verbatim():
    readme = (ROOT / "README.md").read_text()
    command = next(line for line in readme.splitlines() if "pip install -e '.[train,dev]'" in line)
    setup_step = "python3 -m venv .venv && . .venv/bin/activate && "
    assert command.startswith(setup_step)
    assert command.removeprefix(setup_step) in (ROOT / ".ci" / "run").read_text().splitlines()


def test_the_doctor_reports_that_the_shipped_model_runs_in_int8():
    from deepbg_live.doctor import report

    checks = {name: (passed, detail) for name, passed, detail in report()}
    passed, detail = checks["int8 CPU model"]
    assert passed and detail.startswith("in use")
