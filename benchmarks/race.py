"""Ours against the reference loop, file to file and live, each a child process (issue 17, item 5).

Each side is a fresh process over the same clip, so start-up is included, as a user running a
command sees it. CPU time is the child's own (user + system, every thread), from the kernel, so
it hardly depends on what else the machine runs; wall-clock fps does. The sides alternate (ours,
the reference, ours, ...) so that a change in load hits both alike, and each figure is the
median of the repeats. A one-frame clip measures each side's start-up alone, which is taken off
the live run to estimate its steady CPU share. Ours alone is also timed as a user first meets it
(issue 17's start-up goals): ``deepbg-live --help``, and one photo of the clip's size to a PNG.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path

import benchmarks
from benchmarks.reference_loop import GREEN_BGR
from benchmarks.timing import run_child

OURS, REFERENCE = "ours", "reference"
SIDES = (OURS, REFERENCE)
STARTUP, FILE, LIVE = "startup", "file", "live"
HELP, PHOTO = "help", "photo"  # ours alone: --help, and one photo to a PNG
# deepbg-live's closing line, which the reference loop copies: "300 frames at 47.1 fps, 2 dropped"
SUMMARY_LINE = re.compile(r"(\d+) frames? at [\d.]+ fps(?:, (\d+) dropped)?")
GREEN_HEX = "#{:02x}{:02x}{:02x}".format(*reversed(GREEN_BGR))


@dataclass(frozen=True)
class Race:
    clip: Path  # the clip both sides process, file to file and live
    one_frame_clip: Path  # the same scene, one frame: start-up alone
    photo: Path  # the same scene as a still image, for the one-photo job
    reference_model: Path
    out: Path  # a scratch folder for the outputs
    threads: int  # the reference's ONNX Runtime threads (ours takes its own default)
    repeats: int
    live: bool = True
    precision: str = "auto"  # ours, as deepbg-live --precision
    model: str | None = None  # ours, as deepbg-live --model [default: the shipped default]


def our_entry_point() -> list[str]:
    """The installed ``deepbg-live`` script beside this Python, as a user runs it."""
    script = shutil.which("deepbg-live", path=str(Path(sys.executable).parent))
    return [script] if script else [sys.executable, "-m", "deepbg_live.cli"]


def our_command(race: Race, clip: Path, output: Path, live: bool) -> list[str]:
    """``deepbg-live`` as a user types it: green background, the default model unless told."""
    command = our_entry_point()
    command += ["--input", str(clip), "--output", str(output), "--color", GREEN_HEX, "--no-progress"]
    command += ["--precision", race.precision] + (["--model", race.model] if race.model else [])
    return command + (["--realtime"] if live else [])


def reference_command(race: Race, clip: Path, output: Path, live: bool) -> list[str]:
    command = [sys.executable, "-m", "benchmarks.reference_loop", "--model", str(race.reference_model)]
    command += ["--input", str(clip), "--output", str(output), "--threads", str(race.threads)]
    return command + (["--realtime"] if live else [])


COMMANDS = {OURS: our_command, REFERENCE: reference_command}


def child_env() -> dict[str, str]:
    """This environment, with this checkout importable wherever the benchmark was started from."""
    root = str(Path(benchmarks.__file__).resolve().parent.parent)
    path = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": root + (os.pathsep + path if path else "")}


def measure(command: list[str]) -> dict:
    """One child run: frames, drops, fps and CPU, start-up included."""
    run = run_child(command, env=child_env())
    match = SUMMARY_LINE.search(run.stderr)
    if run.returncode != 0 or match is None:
        last = run.stderr.strip().splitlines()[-1:] or ["no output"]
        raise RuntimeError(f"`{shlex.join(command)}` exited {run.returncode}: {last[0]}")
    frames, dropped = int(match[1]), int(match[2] or 0)
    return {
        "frames": frames,
        "dropped": dropped,
        "wall_s": run.wall_s,
        "cpu_s": run.cpu_s,
        "fps": frames / run.wall_s,
        "cpu_ms_per_frame": 1000 * run.cpu_s / frames,
        "cpu_percent": 100 * run.cpu_s / run.wall_s,
        "peak_rss_mb": run.peak_rss_mb,
    }


def launch_commands(race: Race) -> dict[str, list[str]]:
    """Ours alone, as a user first meets it: the help text, and one photo (flip-averaged, as photos are)."""
    photo = our_command(race, race.photo, race.out / "race-photo.png", live=False)
    return {HELP: [*our_entry_point(), "--help"], PHOTO: photo}


def measure_launch(command: list[str]) -> dict:
    """Wall and CPU seconds and peak RSS of a command that must succeed."""
    run = run_child(command, env=child_env())
    if run.returncode != 0:
        last = run.stderr.strip().splitlines()[-1:] or ["no output"]
        raise RuntimeError(f"`{shlex.join(command)}` exited {run.returncode}: {last[0]}")
    return {"wall_s": run.wall_s, "cpu_s": run.cpu_s, "peak_rss_mb": run.peak_rss_mb}


def rounds(race: Race) -> list[tuple[str, Path, bool]]:
    """(mode, clip, paced) of each run in one repeat."""
    jobs = [(STARTUP, race.one_frame_clip, False), (FILE, race.clip, False)]
    return jobs + ([(LIVE, race.clip, True)] if race.live else [])


def run(race: Race) -> dict:
    """Every run, ours and the reference's alternated, then the medians and the ratios."""
    race.out.mkdir(parents=True, exist_ok=True)
    runs = []
    for repeat in range(race.repeats):
        for mode, clip, live in rounds(race):
            for side in SIDES:
                output = race.out / f"race-{side}-{mode}.mp4"
                row = measure(COMMANDS[side](race, clip, output, live))
                runs.append({"side": side, "mode": mode, "repeat": repeat, **row})
        for mode, command in launch_commands(race).items():
            runs.append({"side": OURS, "mode": mode, "repeat": repeat, **measure_launch(command)})
    summary = {mode: {side: median_of(runs, side, mode) for side in SIDES} for mode, _, _ in rounds(race)}
    if race.live:
        for side in SIDES:
            summary[LIVE][side]["steady_cpu_percent"] = steady_cpu_percent(runs, side)
    return {
        "clip": str(race.clip),
        "frames": summary[FILE][OURS]["frames"],
        "repeats": race.repeats,
        "reference_model": str(race.reference_model),
        "reference_threads": race.threads,
        "commands": {
            side: shlex.join(COMMANDS[side](race, race.clip, Path("out.mp4"), False)) for side in SIDES
        },
        "summary": summary,
        "ratios": ratios(summary),
        "launch": {mode: median_launch(runs, mode) for mode in (HELP, PHOTO)},
        "launch_commands": {mode: shlex.join(command) for mode, command in launch_commands(race).items()},
        "runs": runs,
    }


def median_of(runs: list[dict], side: str, mode: str) -> dict:
    rows = [r for r in runs if r["side"] == side and r["mode"] == mode]
    keys = ("frames", "dropped", "wall_s", "cpu_s", "fps", "cpu_ms_per_frame", "cpu_percent", "peak_rss_mb")
    return {key: statistics.median(r[key] for r in rows) for key in keys}


def median_launch(runs: list[dict], mode: str) -> dict:
    rows = [r for r in runs if r["mode"] == mode]
    return {key: statistics.median(r[key] for r in rows) for key in ("wall_s", "cpu_s", "peak_rss_mb")}


def steady_cpu_percent(runs: list[dict], side: str) -> float | None:
    """Live CPU share with start-up taken off: (CPU live - CPU start-up) / (wall live - wall start-up).

    Paired within each repeat, then the median. None when the live run did not measurably outlast
    start-up (a clip of a few frames, where the two differ by noise alone).
    """
    shares = []
    for repeat in sorted({r["repeat"] for r in runs}):
        live, start = (
            next(r for r in runs if (r["side"], r["mode"], r["repeat"]) == (side, mode, repeat))
            for mode in (LIVE, STARTUP)
        )
        wall, cpu = live["wall_s"] - start["wall_s"], live["cpu_s"] - start["cpu_s"]
        if wall > 0 and cpu > 0:
            shares.append(100 * cpu / wall)
    return statistics.median(shares) if shares else None


def ratios(summary: dict) -> dict[str, float | None]:
    """Ours over the reference: fps (goal >= 1.5), CPU per frame (goal <= 0.67), live CPU share."""

    def ratio(mode: str, key: str) -> float | None:
        ours, reference = summary[mode][OURS].get(key), summary[mode][REFERENCE].get(key)
        return None if ours is None or not reference else ours / reference

    result = {
        "file_fps": ratio(FILE, "fps"),
        "file_cpu_ms_per_frame": ratio(FILE, "cpu_ms_per_frame"),
        "startup_wall_s": ratio(STARTUP, "wall_s"),
    }
    if LIVE in summary:
        result |= {
            "live_cpu_percent": ratio(LIVE, "cpu_percent"),
            "live_steady_cpu_percent": ratio(LIVE, "steady_cpu_percent"),
        }
    return result
