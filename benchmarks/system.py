"""What a result was measured on and with: hardware, library versions, command and commit."""

from __future__ import annotations

import os
import platform
import shlex
import subprocess
import sys
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

LIBRARIES = ("torch", "onnxruntime", "opencv-python", "opencv-python-headless", "numpy", "av", "onnx")


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def memory_total_gb() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024**2, 1)
    except OSError:
        pass
    return None


def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def accelerators() -> dict[str, object]:
    import torch

    info: dict[str, object] = {"cuda": torch.cuda.is_available()}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    try:
        import onnxruntime as ort

        info["onnxruntime_providers"] = ort.get_available_providers()
    except ImportError:
        pass
    return info


def git_commit() -> str | None:
    """The checkout's commit, with ``+dirty`` when files differ from it."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True
        )
    except (OSError, subprocess.CalledProcessError):
        return None
    return commit.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def command_line() -> str:
    """The command as the user would type it again (``python -m benchmarks ...``)."""
    program = "python -m benchmarks" if sys.argv and sys.argv[0].endswith("__main__.py") else sys.argv[0]
    return " ".join([program, *map(shlex.quote, sys.argv[1:])])


def system_info() -> dict[str, object]:
    """Everything needed to tell whether two results are comparable."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": command_line(),
        "commit": git_commit(),
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "cores": cores,
        "memory_gb": memory_total_gb(),
        # A busy machine (e.g. a training job) slows every figure; the load says how busy it was.
        "load_average_1m": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
        "libraries": library_versions(),
        **accelerators(),
    }
