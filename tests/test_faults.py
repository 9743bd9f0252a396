"""Fault injection: a full disk, SIGKILL, hang-ups, repeated signals, and hostile or unwritable paths.

Each test breaks something on purpose and checks the promises of the README's "What is guaranteed":
an input is never changed, an existing output is only replaced by a complete one, every frame
finished before a fault stays in a playable file, and each failure is one line with a documented
exit status (0 done, 1 a write failed part way, 2 refused, 130 stopped).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import cv2  # isort: split

import av
import numpy as np
import pytest

from deepbg_live.capture import open_source
from deepbg_live.cli import Options, run
from deepbg_live.errors import UserError, WriteFailed
from deepbg_live.outputs import VideoFileSink
from deepbg_live.outputs.safety import PartialFile
from deepbg_live.outputs.video import KEYFRAME_SECONDS
from deepbg_live.shutdown import INTERRUPTED
from tests import media
from tests.test_cli import red_is_person_model

ROOT = Path(__file__).resolve().parents[1]
FPS = 30
FRAGMENT = round(FPS * KEYFRAME_SECONDS)  # frames per fragment (a keyframe starts each)
ABORTS = ("Traceback", "terminate called", "Aborted", "core dumped")


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return red_is_person_model(tmp_path_factory.mktemp("model") / "red.onnx")


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Ten seconds with sound: long enough to stop part way, at any moment."""
    folder = tmp_path_factory.mktemp("clip")
    return media.make_clip(folder / "talk.mp4", frames=10 * FPS, size=(320, 240), fps=FPS)


@pytest.fixture(scope="module")
def short_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return media.make_clip(
        tmp_path_factory.mktemp("short") / "short.mp4", frames=20, size=(160, 120), fps=FPS
    )


def checksum(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def frames_in(path: Path) -> int:
    """Decode every frame, as a player would; any decoding error fails the test."""
    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(video=0))


def start(*args: str, cwd: Path = ROOT, preexec=None) -> subprocess.Popen:
    """The CLI as a foreground job (a job started with '&' from a script inherits an ignored SIGINT)."""

    def foreground() -> None:
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        if preexec is not None:
            preexec()

    return subprocess.Popen(
        [sys.executable, "-m", "deepbg_live.cli", *args, "--no-progress"],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=foreground,
    )


def finish(process: subprocess.Popen, timeout: float = 90) -> tuple[int, str]:
    _, stderr = process.communicate(timeout=timeout)
    return process.returncode, stderr


def one_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert not any(word in stderr for word in ABORTS), stderr
    return lines[0]


def wait_for_frames(masks: Path, count: int, process: subprocess.Popen, timeout: float = 60) -> int:
    """Wait until the job has written ``count`` frames (its --save-mask files say how many)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done = len(list(masks.glob("*.png"))) if masks.exists() else 0
        if done >= count:
            return done
        assert process.poll() is None, process.communicate()[1]
        time.sleep(0.02)
    raise AssertionError(f"the job did not reach {count} frames in {timeout} s")


def video_job(clip: Path, out: Path, model: Path, masks: Path, *extra: str) -> subprocess.Popen:
    return start(
        "--input", str(clip), "-o", str(out), "--save-mask", str(masks), "--model", str(model), *extra
    )


def partial_of(out: Path) -> Path:
    return out.with_name(f"{out.stem}.partial{out.suffix}")


# ------------------------------------------------------------------------------------------ overlaps


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    folder = tmp_path / "photos"
    for name in ("alice", "bob"):
        media.make_image(folder / f"{name}.png", (64, 48))
    return folder


def _overlap_cases(tmp: Path, clip: Path, photos: Path) -> dict[str, tuple[dict, Path]]:
    """Options that point an output at an input, and the input that must come through unchanged."""
    video = tmp / "talk.mp4"
    shutil.copy(clip, video)
    os.link(video, tmp / "hardlink.mp4")
    (tmp / "symlink.mp4").symlink_to(video)
    background = media.make_image(tmp / "beach.png", (64, 48))
    photo = photos / "alice.png"
    return {
        "hard link": ({"input_path": video, "output": tmp / "hardlink.mp4"}, video),
        "symlink": ({"input_path": video, "output": tmp / "symlink.mp4"}, video),
        "image over itself": ({"input_path": photo, "output": photo}, photo),
        "output in the input folder": ({"input_path": photos, "output": photos / "cut"}, photo),
        "masks in the input folder": ({"input_path": photos, "output": tmp / "cut", "save_mask": photos}, photo),
        "masks beside the input": ({"input_path": video, "output": tmp / "o.mp4", "save_mask": tmp}, video),
        "image background as output": ({"input_path": video, "image": background, "output": background}, background),
        "video background as output": ({"input_path": photos, "sequence": True, "video": video, "output": video}, video),
        "output and masks the same folder": ({"input_path": photos, "output": tmp / "x", "save_mask": tmp / "x"}, photo),
    }  # fmt: skip


OVERLAPS = [
    "hard link",
    "symlink",
    "image over itself",
    "output in the input folder",
    "masks in the input folder",
    "masks beside the input",
    "image background as output",
    "video background as output",
    "output and masks the same folder",
]


@pytest.mark.parametrize("case", OVERLAPS)
def test_an_output_that_overlaps_an_input_is_refused_before_anything_is_opened(
    tmp_path: Path, clip: Path, photos: Path, case: str
) -> None:
    options, protected = _overlap_cases(tmp_path, clip, photos)[case]
    before = {path: checksum(path) for path in (*photos.iterdir(), tmp_path / "talk.mp4", protected)}
    listing = sorted(p.name for p in tmp_path.rglob("*"))
    with pytest.raises(UserError) as refused:
        run(Options(**{k: str(v) if isinstance(v, Path) else v for k, v in options.items()}, model="missing"))
    assert "\n" not in str(refused.value)
    assert "--model" not in str(refused.value)  # refused before the model was even looked for
    assert {path: checksum(path) for path in before} == before
    assert sorted(p.name for p in tmp_path.rglob("*")) == listing  # not even a folder was made


def test_snapshots_are_refused_inside_an_input_folder(photos: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(photos)
    with pytest.raises(UserError, match="snapshot.*--no-window"):
        run(Options(input_path=str(photos), output=str(photos.parent / "cut"), window=True, model="missing"))


def test_the_cli_refuses_a_hard_link_of_the_input_in_one_line_with_status_2(
    tmp_path: Path, clip: Path
) -> None:
    video = tmp_path / "talk.mp4"
    shutil.copy(clip, video)
    os.link(video, tmp_path / "out.mp4")
    before = checksum(video)
    status, stderr = finish(start("--input", str(video), "-o", str(tmp_path / "out.mp4")))
    assert status == 2
    assert "would overwrite the --input file" in one_line(stderr)
    assert checksum(video) == before


@pytest.mark.parametrize("name", ["file:talk.mp4", "pipe:1.mp4", "take2:final.mp4"])
def test_a_name_with_a_protocol_prefix_is_a_plain_file_name(
    tmp_path: Path, short_clip: Path, model: Path, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    shutil.copy(short_clip, tmp_path / "talk.mp4")
    before = checksum(tmp_path / "talk.mp4")
    monkeypatch.chdir(tmp_path)
    run(Options(input_path="talk.mp4", output=name, model=str(model), progress=False))
    assert checksum(tmp_path / "talk.mp4") == before  # file:talk.mp4 is not talk.mp4
    assert frames_in(tmp_path / name) == 20  # the file of that very name, next to it


# ------------------------------------------------------------------------------------------ unwritable


@contextlib.contextmanager
def mounted_tmpfs(folder: Path, options: str) -> Iterator[None]:
    """A tmpfs mounted on ``folder`` for the block (root only); the test is skipped if mounting fails."""
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs with {options} here ({mounted.stderr.strip()!r})")
    try:
        yield
    finally:
        subprocess.run(["umount", str(folder)], check=False)


@pytest.fixture
def read_only(tmp_path: Path) -> Iterator[Path]:
    """A read-only folder: a read-only mount when root (permissions do not bind root), else chmod."""
    folder = tmp_path / "ro"
    folder.mkdir()
    if os.geteuid() != 0:
        folder.chmod(0o555)
        yield folder
        folder.chmod(0o755)
        return
    with mounted_tmpfs(folder, "ro,size=64k"):
        yield folder


def _folder(path: Path) -> Path:
    path.mkdir()
    return path


def _unwritable(tmp: Path, read_only: Path) -> dict[str, dict]:
    (tmp / "a-file").write_text("not a folder")
    return {
        "read-only folder": {"output": read_only / "out.mp4"},
        "read-only image folder": {"output": read_only / "out.png", "photo": True},
        "read-only mask folder": {"output": tmp / "ok.mp4", "save_mask": read_only / "masks"},
        "parent is a file": {"output": tmp / "a-file" / "out.mp4"},
        "mask folder under a file": {"output": tmp / "ok.mp4", "save_mask": tmp / "a-file" / "masks"},
        "name over 255 bytes": {"output": tmp / ("x" * 300 + ".mp4")},
        "image name over 255 bytes": {"output": tmp / ("x" * 300 + ".png"), "photo": True},
        "output is a folder": {"output": _folder(tmp / "taken.mp4")},
    }


@pytest.mark.parametrize("case", ["read-only folder", "read-only image folder", "read-only mask folder",
                                  "parent is a file", "mask folder under a file", "name over 255 bytes",
                                  "image name over 255 bytes", "output is a folder"])  # fmt: skip
def test_an_output_that_cannot_be_written_is_one_line_before_any_frame(
    tmp_path: Path, short_clip: Path, model: Path, read_only: Path, case: str
) -> None:
    options = _unwritable(tmp_path, read_only)[case]
    source = media.make_image(tmp_path / "photo.png", (64, 48)) if options.pop("photo", False) else short_clip
    options = {k: str(v) for k, v in options.items()}
    with pytest.raises(UserError) as refused:
        run(Options(input_path=str(source), model=str(model), progress=False, **options))
    assert not isinstance(refused.value, WriteFailed)  # refused (status 2), not failed part way
    assert "\n" not in str(refused.value) and len(str(refused.value)) < 600
    assert not list(tmp_path.rglob("*.partial*"))


def test_the_cli_says_a_read_only_output_in_one_line(
    tmp_path: Path, short_clip: Path, model: Path, read_only: Path
) -> None:
    status, stderr = finish(
        start("--input", str(short_clip), "-o", str(read_only / "o.mp4"), "--model", str(model))
    )
    assert status == 2
    assert str(read_only / "o.mp4") in one_line(stderr)


# ------------------------------------------------------------------------------------------ full disk


def _full_after(monkeypatch: pytest.MonkeyPatch, limit: int) -> None:
    """Every partial video file fails with ENOSPC once it would grow past ``limit`` bytes."""
    write = PartialFile.write

    def full(self: PartialFile, data: bytes) -> int:
        if self.tell() + len(data) > limit:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return write(self, data)

    monkeypatch.setattr(PartialFile, "write", full)


@pytest.mark.parametrize("name", ["out.mp4", "out.mov", "out.mkv", "out.webm"])
def test_a_full_disk_stops_the_job_and_keeps_whole_fragments_playable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    out = tmp_path / name
    out.write_bytes(b"last week's finished video")
    silent = media.make_clip(tmp_path / "silent.mp4", frames=10 * FPS, size=(320, 240), fps=FPS, audio=False)
    _full_after(monkeypatch, 20_000)
    written = 0
    with (
        pytest.raises(WriteFailed) as failed,
        open_source(input=silent) as source,
        VideoFileSink(out, source.fps, source.size) as sink,
    ):
        for frame in source:
            sink.write(frame, frame.image, None)
            written += 1
    message = str(failed.value)
    assert "the disk is full" in message and partial_of(out).name in message and "\n" not in message
    assert out.read_bytes() == b"last week's finished video"  # replaced only by a complete file
    kept = frames_in(partial_of(out))  # plays to its end, no torn fragment
    assert 0 < kept <= written
    if name in ("out.mp4", "out.mov"):
        assert kept % FRAGMENT == 0  # whole fragments: one per keyframe, each KEYFRAME_SECONDS long


def test_a_full_disk_through_the_cli_is_status_1_and_one_line(
    tmp_path: Path, clip: Path, model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "out.mp4"
    _full_after(monkeypatch, 40_000)
    with pytest.raises(WriteFailed, match="disk is full") as failed:
        run(Options(input_path=str(clip), output=str(out), model=str(model), progress=False))
    assert "\n" not in str(failed.value)
    assert frames_in(partial_of(out)) > 0 and not out.exists()


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 64 KB file system (a tmpfs), where root may mount one: room for a second or two of video."""
    folder = tmp_path / "small"
    folder.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    with mounted_tmpfs(folder, "size=64k"):
        yield folder


@pytest.mark.slow
def test_a_real_full_disk_keeps_what_was_written_and_says_so(
    tmp_path: Path, clip: Path, model: Path, small_disk: Path
) -> None:
    out = small_disk / "out.mp4"
    status, stderr = finish(start("--input", str(clip), "-o", str(out), "--model", str(model)))
    assert status == 1
    line = one_line(stderr)
    assert "the disk is full" in line and "out.partial.mp4" in line
    assert frames_in(partial_of(out)) % FRAGMENT == 0 < frames_in(partial_of(out))


def _limit_file_size(limit: int):
    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # so a write past it fails with EFBIG instead

    return apply


@pytest.mark.slow
def test_any_other_write_error_is_status_1_one_line_and_keeps_the_fragments(
    tmp_path: Path, clip: Path, model: Path
) -> None:
    out = tmp_path / "out.mp4"
    out.write_bytes(b"keep me")
    status, stderr = finish(
        start("--input", str(clip), "-o", str(out), "--model", str(model), preexec=_limit_file_size(60_000))
    )
    assert status == 1
    assert "File too large" in one_line(stderr)
    assert out.read_bytes() == b"keep me"
    assert frames_in(partial_of(out)) % FRAGMENT == 0 < frames_in(partial_of(out))


def test_an_image_that_cannot_be_written_leaves_the_existing_file_as_it_was(
    tmp_path: Path, model: Path
) -> None:
    photo = tmp_path / "photo.png"
    cv2.imwrite(str(photo), np.random.default_rng(0).integers(0, 255, (480, 640, 3), np.uint8))
    out = tmp_path / "out.png"
    out.write_bytes(b"an earlier result")
    status, stderr = finish(
        start("--input", str(photo), "-o", str(out), "--model", str(model), preexec=_limit_file_size(50_000))
    )
    assert status == 1 and "File too large" in one_line(stderr)
    assert out.read_bytes() == b"an earlier result"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.png", "photo.png"]  # no temporary file left


# ------------------------------------------------------------------------------------------ signals


@pytest.mark.slow
@pytest.mark.parametrize("moment", [2 * FRAGMENT, 4 * FRAGMENT + 7, 7 * FRAGMENT + 15])
def test_sigkill_at_any_moment_leaves_every_fragment_finished_before_it(
    tmp_path: Path, clip: Path, model: Path, moment: int
) -> None:
    out, masks = tmp_path / "out.mp4", tmp_path / "masks"
    process = video_job(clip, out, model, masks)
    done = wait_for_frames(masks, moment, process)
    process.kill()
    finish(process)
    kept = frames_in(partial_of(out))  # the partial name: a killed job never gets the real one
    # encoded up to `done`; the encoder holds a few frames back, and the last fragment is unfinished
    assert kept >= done - 2 * FRAGMENT
    assert kept % FRAGMENT == 0 and not out.exists()


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGHUP, signal.SIGTERM, signal.SIGINT])
def test_a_stop_signal_finishes_the_file_and_exits_130(
    tmp_path: Path, clip: Path, model: Path, sig: int
) -> None:
    out, masks = tmp_path / "out.mp4", tmp_path / "masks"
    process = video_job(clip, out, model, masks)
    done = wait_for_frames(masks, FRAGMENT + 5, process)
    process.send_signal(sig)
    status, stderr = finish(process)
    assert status == INTERRUPTED
    assert not any(word in stderr for word in ABORTS), stderr
    assert "stopped after" in stderr
    assert frames_in(out) >= done and not partial_of(out).exists()  # finished: every frame, its real name
    assert media.probe(out).audio_codec == "aac"


@pytest.mark.slow
def test_a_second_signal_says_shutdown_is_under_way_and_changes_nothing_else(
    tmp_path: Path, clip: Path, model: Path
) -> None:
    out, masks = tmp_path / "out.mp4", tmp_path / "masks"
    process = video_job(clip, out, model, masks)
    wait_for_frames(masks, FRAGMENT, process)
    process.send_signal(signal.SIGINT)
    process.send_signal(signal.SIGTERM)  # a different signal, so the two cannot merge into one
    status, stderr = finish(process)
    assert status == INTERRUPTED
    assert "stopping: finishing what was done" in stderr
    assert not any(word in stderr for word in ABORTS), stderr
    assert frames_in(out) >= FRAGMENT


@pytest.mark.slow
def test_a_third_signal_quits_at_once_and_the_partial_file_plays(
    tmp_path: Path, clip: Path, model: Path
) -> None:
    out, masks = tmp_path / "out.mp4", tmp_path / "masks"
    process = video_job(clip, out, model, masks)
    done = wait_for_frames(masks, 3 * FRAGMENT, process)
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):  # three signals: none merges with another
        process.send_signal(sig)
    status, stderr = finish(process)
    assert status == INTERRUPTED
    assert "quitting at once" in stderr
    assert not any(word in stderr for word in ABORTS), stderr
    kept = out if out.exists() else partial_of(out)  # a clean stop can still win the race to finish
    assert frames_in(kept) >= done - 2 * FRAGMENT


def test_ctrl_c_while_starting_up_exits_130_without_a_traceback(
    monkeypatch: pytest.MonkeyPatch, short_clip: Path
) -> None:
    from click.testing import CliRunner

    from deepbg_live import cli

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt  # what Ctrl-C does while the model loads

    monkeypatch.setattr(cli, "open_runtime", interrupted)
    result = CliRunner().invoke(cli.main, ["--input", str(short_clip), "-o", "x.mp4"])
    assert result.exit_code == INTERRUPTED and result.output == ""


# The console script as pyproject.toml declares it, run with one import slowed down, so that a signal
# is sure to land while the command line is still loading (about half a second in a real start).
_SLOW_START = """
import sys, time
from importlib.abc import MetaPathFinder

class SlowClick(MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "click":  # the CLI's first heavy import
            print("importing", flush=True)
            time.sleep(60)
        return None

sys.meta_path.insert(0, SlowClick())
module, function = sys.argv[1].split(":")
sys.argv[1:] = sys.argv[2:]
getattr(__import__(module, fromlist=[function]), function)()
"""


def console_script() -> str:
    import tomllib

    with open(ROOT / "pyproject.toml", "rb") as file:
        return tomllib.load(file)["project"]["scripts"]["deepbg-live"]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_a_stop_signal_while_the_command_loads_exits_130_in_silence(short_clip: Path, sig: int) -> None:
    def foreground() -> None:
        signal.signal(signal.SIGINT, signal.SIG_DFL)

    process = subprocess.Popen(
        [sys.executable, "-c", _SLOW_START, console_script(), "--input", str(short_clip), "-o", "x.mp4"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=foreground,
    )
    assert process.stdout.readline() == "importing\n"
    process.send_signal(sig)
    status, stderr = finish(process, timeout=30)
    assert status == INTERRUPTED
    assert stderr.strip() == "" and not any(word in stderr for word in ABORTS), stderr
    assert not (ROOT / "x.mp4").exists()


def test_the_console_script_and_python_m_run_the_command() -> None:
    module, function = console_script().split(":")
    for command in (
        [sys.executable, "-c", f"from {module} import {function}; {function}()", "--help"],
        [sys.executable, "-m", "deepbg_live", "--help"],
    ):
        result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert result.returncode == 0 and "--input" in result.stdout, result.stderr


def test_a_stop_signal_that_breaks_a_compiled_import_is_130_not_a_missing_package(
    monkeypatch: pytest.MonkeyPatch, short_clip: Path, model: Path
) -> None:
    from click.testing import CliRunner

    from deepbg_live import cli, runtimes

    def interrupted_import(name: str) -> None:
        try:
            os.kill(os.getpid(), signal.SIGINT)  # GracefulShutdown's handler raises here, or in the sleep
            time.sleep(5)
        except KeyboardInterrupt as exc:  # what pybind11 makes of it while ONNX Runtime loads
            raise ImportError("initialization failed") from exc

    monkeypatch.setattr(runtimes, "import_module", interrupted_import)
    result = CliRunner().invoke(cli.main, ["--input", str(short_clip), "-o", "x.mp4", "--model", str(model)])
    assert result.exit_code == INTERRUPTED and result.output == ""
