"""``python -m deepbg_live.doctor``: check this installation, and repair the OpenCV clash.

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


def report() -> list[tuple[str, bool, str]]:
    """(check, passed, detail) for each part of the installation."""
    import numpy

    rows = [("numpy", True, numpy.__version__)]
    import cv2

    gui = opencv_has_gui()
    rows.append(("opencv with windows", gui, cv2.__version__ if gui else "headless build; run --fix-opencv"))
    try:
        import onnxruntime

        rows.append(("onnxruntime (fast CPU backend)", True, onnxruntime.__version__))
    except ImportError:
        rows.append(
            ("onnxruntime (fast CPU backend)", False, "pip install onnxruntime; torch is used meanwhile")
        )
    import torch

    cuda = torch.cuda.is_available()
    rows.append(("torch", True, torch.__version__))
    rows.append(("CUDA GPU", cuda, torch.cuda.get_device_name(0) if cuda else "none; --device cpu is used"))
    from deepbg_live.outputs.preview import display_available

    display = display_available()
    rows.append(
        (
            "display for the preview window",
            display,
            "found" if display else "none (Wayland needs XWayland); use --no-window or xvfb-run",
        )
    )
    from deepbg_live.model_files import DEFAULT_WEIGHTS

    rows.append(("shipped model weights", DEFAULT_WEIGHTS.exists(), str(DEFAULT_WEIGHTS)))
    rows.append(_cpu_precision_row())
    return rows


def _cpu_precision_row() -> tuple[str, bool, str]:
    """Whether the default model really runs in int8 on this CPU (what users get, not a file check)."""
    import warnings

    from deepbg_live.errors import UserError
    from deepbg_live.runtimes import open_runtime

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a stale int8 file is reported in the row instead
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
    """Check the installation: OpenCV windows, backends, GPU, display and weights."""
    if fix_opencv and not opencv_has_gui():
        click.echo("opencv-python-headless has replaced the GUI build of cv2; reinstalling opencv-python ...")
        if not restore_gui_opencv():
            click.echo(
                "Error: could not restore the GUI build of OpenCV; reinstall opencv-python by hand", err=True
            )
            sys.exit(1)
        return
    for name, passed, detail in report():
        click.echo(f"{'ok ' if passed else '-- '} {name}: {detail}")


if __name__ == "__main__":
    main()
