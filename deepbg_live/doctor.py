"""``python -m deepbg_live.doctor``: check this installation, and repair the OpenCV clash.

Every shipped model is loaded and run once in each precision on each backend that is installed,
so a damaged or stale model file shows up here rather than in the middle of a call.

opencv-python (with windows) and opencv-python-headless (which albumentations requires for
training) both install the same ``cv2`` folder, and whichever pip installs last wins. If the
headless build won, the preview window cannot open. ``--fix-opencv`` puts the GUI build back on
top, at the same version, without touching anything else.
"""

from __future__ import annotations

import subprocess
import sys
from importlib import metadata

import click


def opencv_has_gui() -> bool:
    """True when the imported ``cv2`` was built with a window toolkit (Qt, GTK, Win32 or Cocoa)."""
    import cv2

    for line in cv2.getBuildInformation().splitlines():
        if line.strip().startswith("GUI:"):
            return line.split(":", 1)[1].strip().upper() not in ("", "NONE", "NO")
    return False


def installed_version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def restore_gui_opencv() -> bool:
    """Reinstall the GUI build over the headless one; True if ``cv2`` has a GUI afterwards."""
    version = installed_version("opencv-python")
    spec = f"opencv-python=={version}" if version else "opencv-python"
    command = [sys.executable, "-m", "pip", "install", "-q", "--force-reinstall", "--no-deps", spec]
    return subprocess.run(command).returncode == 0 and _gui_in_fresh_process()


def _gui_in_fresh_process() -> bool:
    code = "from deepbg_live.doctor import opencv_has_gui; raise SystemExit(0 if opencv_has_gui() else 1)"
    return subprocess.run([sys.executable, "-c", code]).returncode == 0


Check = tuple[str, bool, str]  # (what was checked, passed, detail)


def report() -> list[Check]:
    """(check, passed, detail) for each part of the installation, then for each shipped model."""
    return [*installation_checks(), *model_checks()]


def installation_checks() -> list[Check]:
    """The packages, the GPU and the display: what the shipped models need around them."""
    import numpy

    rows = [("numpy", True, numpy.__version__)]
    import cv2

    gui = opencv_has_gui()
    rows.append(("opencv with windows", gui, cv2.__version__ if gui else "headless build; run --fix-opencv"))
    try:
        from deepbg_live.runtimes.onnx_runtime import ort

        rows.append(("onnxruntime (the CPU backend)", True, ort.__version__))
    except ImportError:
        rows.append(("onnxruntime (the CPU backend)", False, "not installed; reinstall deepbg-live"))
    without_torch = (
        "not installed: not needed for the shipped models on a CPU; "
        "`pip install 'deepbg-live[cuda]'` for a GPU or your own .safetensors/.pt weights"
    )
    rows.append(("torch (optional)", True, installed_version("torch") or without_torch))
    gpu = _cuda_gpu_name()
    rows.append(("CUDA GPU", gpu is not None, gpu or "none; --device cpu is used"))
    from deepbg_live.outputs.preview import display_available

    display = display_available()
    rows.append(
        (
            "display for the preview window",
            display,
            "found" if display else "none (Wayland needs XWayland); use --no-window or xvfb-run",
        )
    )
    return rows


def model_checks() -> list[Check]:
    """Every shipped model in every precision on every backend here, loaded and run once.

    First, what the default gives on a CPU: int8, unless its file is missing or stale.
    """
    from deepbg_live.model_files import shipped_models

    rows = [_cpu_precision_row()]
    for name in shipped_models():
        for backend, device, precision in _combinations(name):
            rows.append(
                (f"model {name}, {precision} on {backend}", *_try_model(name, backend, device, precision))
            )
    return rows


def _combinations(name: str) -> list[tuple[str, str, str]]:
    """(backend, device, precision) for each way this installation offers to run shipped model ``name``."""
    from deepbg_live.model_files import int8_path, model_path

    combinations = [("onnxruntime", "cpu", "fp32")]
    if int8_path(model_path(name)).exists():
        combinations.append(("onnxruntime", "cpu", "int8"))
    if installed_version("torch"):
        combinations.append(("torch-cpu", "cpu", "fp32"))
    if _cuda_gpu_name() is not None:
        combinations.append(("torch-cuda", "cuda", "fp16"))
    return combinations


def _try_model(name: str, backend: str, device: str, precision: str) -> tuple[bool, str]:
    """Open the model as asked and segment one small blank frame: (passed, detail)."""
    import numpy as np

    from deepbg_live.errors import UserError
    from deepbg_live.runtimes import open_runtime

    asked = "auto" if precision == "fp16" else precision  # a GPU runs fp16 when asked for auto
    try:
        runtime = open_runtime(name, device=device, backend=backend, precision=asked)
        out = runtime(np.zeros((1, runtime.input_channels, 48, 64), np.float32))  # 4: the previous mask
    except UserError as error:
        return False, str(error)
    except Exception as error:  # a broken file can fail anywhere in the library that reads it
        return False, f"{type(error).__name__}: {error}"
    if out.shape != (1, 1, 48, 64) or runtime.precision != precision:
        return False, f"ran as {runtime.precision}, giving shape {out.shape}"
    return True, "loads and runs"


def _cuda_gpu_name() -> str | None:
    """The CUDA GPU torch would use, or None (also without torch)."""
    from deepbg_live.runtimes import resolve_device

    if resolve_device("auto") != "cuda":
        return None
    import torch

    return torch.cuda.get_device_name(0)


def _cpu_precision_row() -> Check:
    """Whether the default model really runs in int8 on this CPU (what users get, not a file check)."""
    from deepbg_live.errors import UserError
    from deepbg_live.runtimes import open_runtime

    try:
        precision = open_runtime(device="cpu").precision
    except UserError as error:
        return ("int8 CPU model", False, str(error))
    if precision == "int8":
        return ("int8 CPU model", True, "in use (1.7-1.9x as fast as fp32 on our test machine)")
    return (
        "int8 CPU model",
        False,
        "not in use, so the model runs in fp32, 1.7-1.9x slower; reinstall deepbg-live",
    )


@click.command()
@click.option("--fix-opencv", is_flag=True, help="If the headless OpenCV build won, put the GUI build back.")
def main(fix_opencv: bool) -> None:
    """Check the installation: OpenCV windows, backends, GPU, display and every shipped model.

    Each shipped model is loaded and run in every precision on every backend here; the exit
    status is 1 if one of them fails.
    """
    if fix_opencv and not opencv_has_gui():
        click.echo("opencv-python-headless has replaced the GUI build of cv2; reinstalling opencv-python ...")
        if not restore_gui_opencv():
            click.echo(
                "Error: could not restore the GUI build of OpenCV; reinstall opencv-python by hand", err=True
            )
            sys.exit(1)
        return
    models = model_checks()
    for name, passed, detail in [*installation_checks(), *models]:
        click.echo(f"{'ok ' if passed else '-- '} {name}: {detail}")
    if not all(passed for _, passed, _ in models):
        sys.exit(1)


if __name__ == "__main__":
    main()
