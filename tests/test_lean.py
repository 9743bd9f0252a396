"""The lean runtime: the shipped models run from their ONNX files without torch, and start-up is light.

Where torch must be absent, a subprocess runs the command line behind an import hook that refuses
torch, as in an install without it (`pip install deepbg-live`).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import pytest
from click.testing import CliRunner

from deepbg_live import doctor, model_files
from deepbg_live.errors import UserError
from deepbg_live.runtimes import open_runtime
from deepbg_live.sample import sample_frame

ROOT = Path(__file__).resolve().parent.parent
HEAVY = ("torch", "onnxruntime", "av", "cv2")

# `python -c WITHOUT ARGS...` runs the command line in a process where `import torch` (or any other
# package named in `blocked`) fails, the way it does where torch is not installed.
WITHOUT = """
import sys
blocked = {blocked!r}

class Refuse:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in blocked:
            raise ImportError(f"No module named {{name!r}}", name=name)

sys.meta_path.insert(0, Refuse())
from deepbg_live.cli import main
main()
"""


def deepbg_without(packages: tuple[str, ...], *args: str, env: dict | None = None, cwd: Path = ROOT):
    return subprocess.run(
        [sys.executable, "-c", WITHOUT.format(blocked=packages), *args],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def python(code: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True)


@pytest.fixture(scope="module")
def photo(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("photo") / "person.jpg"
    cv2.imwrite(str(path), sample_frame(0))  # 640x480, a real person
    return path


@pytest.fixture
def weights_copy(tmp_path, monkeypatch) -> Path:
    """A copy of the shipped weights folder standing in for the real one, which tests never modify."""
    folder = tmp_path / "weights"
    shutil.copytree(model_files.WEIGHTS_DIR, folder)
    monkeypatch.setattr(model_files, "WEIGHTS_DIR", folder)
    monkeypatch.setattr(model_files, "DEFAULT_WEIGHTS", folder / model_files.DEFAULT_WEIGHTS.name)
    return folder


# --- start-up ---------------------------------------------------------------------------------------


def test_importing_the_command_line_does_not_import_torch():
    result = python(
        "import sys, deepbg_live.cli; print(sorted(m for m in sys.modules if m.split('.')[0] == 'torch'))"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_help_imports_none_of_the_heavy_libraries():
    code = (
        "import atexit, sys\n"
        f"atexit.register(lambda: print(sorted(m for m in {HEAVY!r} if m in sys.modules)))\n"
        "from deepbg_live.cli import main\n"
        "main(['--help'])\n"
    )
    result = python(code)
    assert result.returncode == 0, result.stderr
    assert "--model" in result.stdout
    assert result.stdout.strip().splitlines()[-1] == "[]"


def test_opencv_is_still_loaded_before_pyav():
    # PyAV's bundled libxcb, loaded first, makes OpenCV's window hang; the package keeps the order
    result = python(
        "import sys, deepbg_live, av; names = list(sys.modules); print(names.index('cv2') < names.index('av'))"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "True"


def test_onnx_runtime_writes_no_telemetry_into_the_home_folder(photo, tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("XDG_CACHE_HOME", "ORT_DISABLE_TELEMETRY")}
    control = python("import onnxruntime", env={**env, "HOME": str(tmp_path / "control")})
    assert control.returncode == 0, control.stderr
    if not (tmp_path / "control" / ".cache" / "Microsoft").exists():
        pytest.skip("this ONNX Runtime writes no telemetry database at all")
    home = tmp_path / "home"
    home.mkdir()
    result = deepbg_without(
        (), "--input", str(photo), "--output", str(tmp_path / "out.png"), env={**env, "HOME": str(home)}
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "out.png").exists()
    assert not (home / ".cache" / "Microsoft").exists()


# --- the shipped models without torch ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "precision"), [("realtime", "fp32"), ("realtime", "int8"), ("fast", "fp32"), ("fast", "auto")]
)
def test_a_photo_runs_without_torch(photo, tmp_path, model, precision):
    out = tmp_path / "out.png"
    result = deepbg_without(
        ("torch",), "--input", str(photo), "--output", str(out), "--model", model, "--precision", precision
    )
    assert result.returncode == 0, result.stderr
    image = cv2.imread(str(out))
    assert image.shape == (480, 640, 3)
    assert (image != image[0, 0]).any(), "the person was kept in front of the background"


def test_a_shipped_model_missing_its_int8_file_says_so_and_auto_runs_it_in_fp32(weights_copy):
    (weights_copy / "fast.int8.onnx").unlink()
    with pytest.raises(UserError) as error:
        open_runtime("fast", device="cpu", precision="int8")
    assert str(error.value) == (
        "the shipped model 'fast' has no int8 version ('fast.int8.onnx'); use --precision auto or fp32"
    )
    assert open_runtime("fast", device="cpu", precision="auto").precision == "fp32"


def test_a_users_own_weights_without_torch_say_how_to_export_them_in_one_line(photo, tmp_path):
    own = tmp_path / "mine.safetensors"
    shutil.copy(model_files.model_path("fast"), own)  # weights, but no export beside them
    result = deepbg_without(
        ("torch",), "--input", str(photo), "-o", str(tmp_path / "o.png"), "--model", str(own)
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"Error: running '{own}' needs torch")
    assert f"python -m training.export {own} --out DIR" in line
    assert "pip install 'deepbg-live[cuda]'" in line


def test_a_users_own_weights_run_without_torch_from_an_export_beside_them(photo, tmp_path):
    for suffix in (".safetensors", ".onnx"):  # what `training.export --out tmp_path --name mine` writes
        shutil.copy(model_files.model_path("fast").with_suffix(suffix), tmp_path / f"mine{suffix}")
    out = tmp_path / "o.png"
    result = deepbg_without(
        ("torch",), "--input", str(photo), "-o", str(out), "--model", str(tmp_path / "mine.safetensors")
    )
    assert result.returncode == 0, result.stderr
    assert out.exists()


def test_cuda_without_torch_says_to_install_it_in_one_line(photo, tmp_path):
    result = deepbg_without(
        ("torch",), "--input", str(photo), "-o", str(tmp_path / "o.png"), "--device", "cuda"
    )
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert "--device cuda needs PyTorch with CUDA" in line and "pip install 'deepbg-live[cuda]'" in line


def test_with_torch_but_without_onnx_a_users_weights_run_on_torch(tmp_path):
    own = tmp_path / "mine.safetensors"
    shutil.copy(model_files.model_path("fast"), own)
    code = (
        "import sys\n"
        "class Refuse:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] == 'onnx': raise ImportError(name, name=name)\n"
        "sys.meta_path.insert(0, Refuse())\n"
        "from deepbg_live.runtimes import open_runtime\n"
        f"print(open_runtime({str(own)!r}, device='cpu').name, open_runtime('fast', device='cpu').name)\n"
    )
    result = python(code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["torch-cpu", "onnxruntime"]


# --- the shipped ONNX files -------------------------------------------------------------------------


@pytest.mark.parametrize("name", model_files.shipped_models())
def test_every_shipped_model_ships_onnx_made_from_its_weights(name):
    weights = model_files.model_path(name)
    exports = [model_files.fp32_path(weights)]
    if model_files.int8_path(weights).exists():
        exports.append(model_files.int8_path(weights))
    for path, precision in zip(exports, ("fp32", "int8"), strict=False):
        metadata = model_files.onnx_metadata(path.read_bytes())
        assert metadata["weights_sha256"] == model_files.weights_digest(weights), path.name
        assert metadata.get("precision", "fp32") == precision
        assert metadata["config"] == name


def test_a_shipped_model_never_exports_at_start_up(monkeypatch):
    from deepbg_live import export

    def refuse(*args, **kwargs):
        raise AssertionError("a shipped model was exported at start-up")

    monkeypatch.setattr(export, "export_onnx", refuse)
    for name in model_files.shipped_models():
        for precision in ("auto", "fp32"):
            runtime = open_runtime(name, device="cpu", precision=precision)
            assert runtime.name == "onnxruntime"


@pytest.mark.parametrize("broken", ["missing", "stale"])
def test_a_broken_shipped_export_is_an_error_saying_to_reinstall(weights_copy, broken):
    fp32, int8 = weights_copy / "fast.onnx", weights_copy / "realtime.int8.onnx"
    if broken == "missing":
        fp32.unlink()
    else:
        # each now records the other model's weights
        int8.write_bytes((weights_copy / "fast.int8.onnx").read_bytes())
        fp32.write_bytes((weights_copy / "realtime.onnx").read_bytes())
    with pytest.raises(UserError, match="reinstall deepbg-live"):
        open_runtime("fast", device="cpu", precision="fp32")
    if broken == "stale":
        with pytest.raises(UserError, match="reinstall deepbg-live"):
            open_runtime(device="cpu")


def test_the_doctor_tries_every_shipped_model_and_reports_a_broken_one(weights_copy):
    (weights_copy / "fast.onnx").write_bytes(b"\x0a\x03bad")  # damaged
    rows = {name: (passed, detail) for name, passed, detail in doctor.model_checks()}
    assert not rows["model fast, fp32 on onnxruntime"][0]
    assert "reinstall deepbg-live" in rows["model fast, fp32 on onnxruntime"][1]
    assert rows["model realtime, fp32 on onnxruntime"] == (True, "loads and runs")
    assert rows["model realtime, int8 on onnxruntime"] == (True, "loads and runs")
    assert rows["model fast, fp32 on torch-cpu"] == (True, "loads and runs")
    result = CliRunner().invoke(doctor.main, [])
    assert result.exit_code == 1
    assert "--  model fast, fp32 on onnxruntime" in result.output


def test_the_doctor_passes_every_shipped_model_here():
    rows = doctor.model_checks()
    assert [name for name, passed, _ in rows if not passed] == []
    names = {name for name, _, _ in rows}
    assert {"model realtime, int8 on onnxruntime", "model fast, fp32 on onnxruntime"} <= names


def test_exporting_a_shipped_file_in_place_leaves_its_weights_and_int8_file_as_they_are(tmp_path):
    shipped = model_files.model_path("realtime")
    weights, int8 = tmp_path / "m.safetensors", tmp_path / "m.int8.onnx"
    shutil.copy(shipped, weights)
    shutil.copy(model_files.int8_path(shipped), int8)
    before = weights.read_bytes()
    result = subprocess.run(
        [sys.executable, "-m", "training.export", str(weights), "--out", str(tmp_path), "--name", "m"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "note:" not in result.stdout  # the int8 file still matches
    assert weights.read_bytes() == before
    exported = (tmp_path / "m.onnx").read_bytes()
    assert model_files.made_from(exported, weights)
    assert model_files.onnx_metadata(exported) == model_files.onnx_metadata(
        model_files.fp32_path(shipped).read_bytes()
    )


def test_the_default_device_is_found_without_importing_a_cpu_only_torch():
    from deepbg_live import runtimes

    if runtimes._torch_build_has_gpu():
        pytest.skip("this torch is a GPU build, which must be asked whether it sees a GPU")
    result = python(
        "import sys; from deepbg_live.runtimes import open_runtime; runtime = open_runtime(); "
        "print(runtime.name, 'torch' in sys.modules)"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["onnxruntime", "False"]
