"""Timing helpers: repeated calls with warm-up, percentiles, a CPU/memory meter for a block, and
a timed child process.

Only the standard library and numpy: the meter reads ``time.process_time`` for CPU and the
kernel's high-water mark of resident memory (``VmHWM``) for peak memory; a child's CPU time comes
from the kernel's accounting when it is reaped (``os.wait4``).
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

_STATUS = Path("/proc/self/status")
_LAUNCHER = Path(__file__).with_name("launch.py")
_CLEAR_REFS = Path("/proc/self/clear_refs")


def summarise(samples_ms: Sequence[float]) -> dict[str, float]:
    """p50, p95 and mean of a list of milliseconds (NaN when empty)."""
    if not len(samples_ms):
        return {"p50_ms": float("nan"), "p95_ms": float("nan"), "mean_ms": float("nan"), "n": 0}
    values = np.asarray(samples_ms, dtype=np.float64)
    return {
        "p50_ms": float(np.percentile(values, 50)),
        "p95_ms": float(np.percentile(values, 95)),
        "mean_ms": float(values.mean()),
        "n": int(values.size),
    }


def time_calls(
    fn: Callable[[], object],
    repeats: int,
    warmup: int = 3,
    budget_s: float | None = None,
    min_repeats: int = 10,
) -> list[float]:
    """Milliseconds of each of up to ``repeats`` calls of ``fn``, after ``warmup`` untimed calls.

    Warm-up matters: the first calls pay for memory allocation, ORT's kernel selection and
    cuDNN autotuning, none of which a running video loop sees. ``budget_s`` stops a slow model
    early (after at least ``min_repeats`` calls) so one big config cannot eat the whole run.
    """
    for _ in range(warmup):
        fn()
    samples: list[float] = []
    deadline = time.perf_counter() + budget_s if budget_s else float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1000)
        if start > deadline and len(samples) >= min_repeats:
            break
    return samples


def _reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS counter so each measured block gets its own peak (Linux)."""
    try:
        _CLEAR_REFS.write_text("5")
        return True
    except OSError:
        return False


def current_peak_rss_mb() -> float:
    """Peak resident memory in MiB: since the last reset on Linux, else since the process began."""
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


@dataclass
class Usage:
    wall_s: float = 0.0
    cpu_s: float = 0.0  # user + system, every thread of this process
    cpu_percent: float = 0.0  # 100 = one core fully busy
    peak_rss_mb: float = 0.0
    peak_is_process_lifetime: bool = False  # True when the peak could not be reset for this block


class ResourceMeter:
    """``with ResourceMeter() as meter: ...`` then ``meter.usage``: wall time, CPU % and peak memory.

    CPU counts every thread of this process (decode, inference, encode), which is what a user
    sees in a task manager.
    """

    def __enter__(self) -> ResourceMeter:
        self.usage = Usage()
        self._reset = _reset_peak_rss()
        self._wall = time.perf_counter()
        self._cpu = time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        wall = time.perf_counter() - self._wall
        cpu = time.process_time() - self._cpu
        self.usage = Usage(
            wall_s=wall,
            cpu_s=cpu,
            cpu_percent=100.0 * cpu / wall if wall > 0 else 0.0,
            peak_rss_mb=current_peak_rss_mb(),
            peak_is_process_lifetime=not self._reset,
        )


@dataclass(frozen=True)
class ChildRun:
    """One child process, start-up included: wall and CPU seconds, peak memory, and what it printed."""

    wall_s: float
    cpu_s: float  # user + system, every thread of the child
    peak_rss_mb: float  # the child's own high-water mark of resident memory
    returncode: int
    stderr: str


def run_child(command: Sequence[str], env: dict[str, str] | None = None) -> ChildRun:
    """Run ``command`` to its end and time it as a user would: from launch to exit.

    ``launch.py`` starts it and reaps it with ``os.wait4``, which returns the child's own resource
    use, so nothing else this process does (other threads, earlier children) is counted, and its
    peak memory is not this process's (see ``launch.py``). Linux and macOS.
    """
    with tempfile.TemporaryDirectory() as folder:
        result, errors = Path(folder) / "usage.json", Path(folder) / "stderr"
        with errors.open("wb") as stderr:
            launch = [sys.executable, str(_LAUNCHER), str(result), *command]
            returncode = subprocess.run(launch, stdout=subprocess.DEVNULL, stderr=stderr, env=env).returncode
        text = errors.read_bytes().decode(errors="replace")
        usage = json.loads(result.read_text()) if result.exists() else None
    if usage is None:
        raise RuntimeError(f"the launcher exited {returncode} without a result: {text.strip()[-300:]}")
    return ChildRun(usage["wall_s"], usage["cpu_s"], usage["peak_rss_mb"], usage["returncode"], text)
