"""Running the ``deepbg-live`` command in a subprocess, the way a user does, for tests."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def deepbg(*args: str, cwd: Path = ROOT, timeout: float = 180) -> subprocess.CompletedProcess:
    """``deepbg-live ARGS`` run to the end, with its output captured as text."""
    return subprocess.run(
        [sys.executable, "-m", "deepbg_live.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
