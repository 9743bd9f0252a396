"""Output safety: no output may touch an input, and no file gets its name before it is complete.

Two rules, one module, used by every output:

- ``check_paths`` compares every input and output by device and inode before anything is opened,
  and refuses any overlap in one line. It catches hard links, symlinks, bind mounts and outputs that
  would land in an input folder. Paths are literal: ``file:talk.mp4`` is a file of that name, and
  FFmpeg is only ever given a file object or an absolute path (``literal``), never a protocol.
- Files are written under another name in the same folder and renamed into place: an image
  through a hidden temporary file (``write_atomically``), a video as ``NAME.partial.EXT``
  (``PartialFile``), which is kept, playable, if the job fails or is killed.
"""

from __future__ import annotations

import errno
import io
import os
import secrets
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from deepbg_live.errors import UserError, WriteFailed, os_reason

FileId = tuple[int, int]  # (st_dev, st_ino): the same file, whatever path reaches it
NAME_MAX = 255  # bytes in one file name on Linux, macOS and Windows file systems
_NEW_FILE = os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)  # never opens an existing file


# ------------------------------------------------------------------------------------------ overlaps


@dataclass(frozen=True)
class Input:
    """A file or folder the job reads, with the option that named it (for the message)."""

    path: Path
    option: str = "--input"


@dataclass(frozen=True)
class Output:
    """A file or folder the job writes. ``folder``: files appear inside it (``--save-mask DIR``).

    ``shares_folders``: only new, uniquely named files appear in it (snapshots), so it may hold
    inputs; it must still not be an input folder, whose next run would read what it gets.
    """

    path: Path
    option: str = "--output"
    folder: bool = False
    shares_folders: bool = False


def check_paths(inputs: Iterable[Input], outputs: Iterable[Output]) -> None:
    """Refuse, in one line, any output that is, or could overwrite, or would land among the inputs.

    An output is refused when it is an input file (by device and inode), when it is an input folder
    or lies inside one, when it is a folder that directly holds an input file, or when two outputs
    are the same path. Missing inputs are left to whoever opens them.
    """
    files, folders = _input_ids(inputs)
    seen: dict[str, Output] = {}
    for output in outputs:
        _check_output(output, files, folders)
        real = os.path.realpath(output.path)
        if real in seen:
            other = seen[real]
            raise UserError(
                f"{other.option} {other.path} and {output.option} {output.path} are the same path; "
                f"give them different names"
            )
        seen[real] = output


def _input_ids(inputs: Iterable[Input]) -> tuple[dict[FileId, Input], dict[FileId, Input]]:
    """The inputs' files and folders by id; a folder's files count as inputs too."""
    files: dict[FileId, Input] = {}
    folders: dict[FileId, Input] = {}
    for item in inputs:
        info = _stat(item.path)
        if info is None:
            continue
        if stat.S_ISDIR(info.st_mode):
            folders[_id(info)] = item
            for child in _children(item.path):
                files.setdefault(child[0], Input(child[1], item.option))
        else:
            files[_id(info)] = item
    return files, folders


def _check_output(output: Output, files: dict[FileId, Input], folders: dict[FileId, Input]) -> None:
    info = _stat(output.path)
    if info is not None and _id(info) in files and not output.shares_folders:
        source = files[_id(info)]
        raise UserError(
            f"{output.option} {output.path} would overwrite the {source.option} file {source.path} "
            f"(the same file on disk); choose another {output.option} name"
        )
    for folder in _self_and_ancestors(output.path):
        if _id(folder[1]) in folders:
            source = folders[_id(folder[1])]
            what = "is" if folder[0] == Path(os.path.realpath(output.path)) else "is inside"
            fix = (
                "run from another folder or use --no-window" if output.shares_folders else "write outside it"
            )
            raise UserError(
                f"{output.option} {output.path} {what} the {source.option} folder {source.path}, "
                f"whose files would mix with the inputs; {fix}"
            )
    if output.folder and not output.shares_folders and info is not None and stat.S_ISDIR(info.st_mode):
        for child_id, child in _children(output.path):
            if child_id in files:
                source = files[child_id]
                raise UserError(
                    f"{output.option} {output.path} holds the {source.option} file {child.name}, "
                    f"which it could overwrite; choose an empty or separate folder"
                )


def _self_and_ancestors(path: Path) -> Iterable[tuple[Path, os.stat_result]]:
    """The path's real location and every existing folder above it, with their stat results."""
    real = Path(os.path.realpath(path))
    for candidate in (real, *real.parents):
        info = _stat(candidate)
        if info is not None and stat.S_ISDIR(info.st_mode):
            yield candidate, info


def _children(folder: Path) -> list[tuple[FileId, Path]]:
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return []
    found = []
    for entry in entries:
        info = _stat(Path(entry.path))
        if info is not None and not stat.S_ISDIR(info.st_mode):
            found.append((_id(info), Path(entry.path)))
    return found


def _stat(path: Path) -> os.stat_result | None:
    try:
        return os.stat(path)  # follows symlinks: a link to an input is that input
    except (OSError, ValueError):  # missing, unreadable, or a name the OS cannot hold
        return None


def _id(info: os.stat_result) -> FileId:
    return info.st_dev, info.st_ino


# ------------------------------------------------------------------------------------------ folders


def check_name(path: Path, option: str = "--output") -> None:
    """Refuse a name the file system cannot hold, before a ``stat`` of it fails with a traceback."""
    for part in path.parts:
        if len(os.fsencode(part)) > NAME_MAX:
            raise UserError(
                f"{option} {path}: a name in it is longer than {NAME_MAX} bytes; choose a shorter one"
            )


def make_folder(folder: Path, option: str = "--output") -> None:
    """``mkdir -p``, or a one-line UserError that says why not (read-only, a file in the way, ...)."""
    check_name(folder, option)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(
            f"{option} {folder}: cannot create the folder ({_reason(exc)}); {_fix(exc)}"
        ) from None


def check_writable(folder: Path, option: str = "--output") -> None:
    """Create and delete a file in ``folder``, so that a read-only place is refused before any work."""
    try:
        fd, name = _create_hidden(folder)
    except OSError as exc:
        raise UserError(f"{option} {folder}: cannot write there ({_reason(exc)}); {_fix(exc)}") from None
    os.close(fd)
    os.unlink(name)


def _reason(exc: Exception) -> str:
    code = getattr(exc, "errno", None)
    if code == errno.ENOSPC:
        return "the disk is full"
    if code == errno.ENAMETOOLONG:
        return f"a name is longer than {NAME_MAX} bytes"
    if code in (errno.EEXIST, errno.ENOTDIR):
        return "a file is in the way of a folder"
    return os_reason(exc)


def _fix(exc: Exception) -> str:
    code = getattr(exc, "errno", None)
    if code == errno.ENOSPC:
        return "free some space and run again"
    if code == errno.ENAMETOOLONG:
        return "choose a shorter name"
    return "choose a writable place"


def write_failed(path: Path, exc: Exception, kept: Path | None = None) -> WriteFailed:
    """The one line for a write that failed part way; ``kept``: where what was written survives."""
    what = f"; kept what was finished in {kept}" if kept is not None else ""
    unchanged = f"; the existing {path.name} was left as it was" if kept is not None and path.exists() else ""
    return WriteFailed(f"{path}: could not write ({_reason(exc)}){what}{unchanged}; {_fix(exc)}")


# ------------------------------------------------------------------------------------------ whole files


def write_atomically(path: Path, data: bytes | memoryview) -> None:
    """Write ``data`` to ``path`` through a hidden temporary file beside it, renamed into place.

    An existing file keeps its content until the new one is complete (and then its permissions);
    a replaced file is synced first, so even a power cut leaves one or the other. Errors are OSError.
    """
    folder = path.parent
    fd, temporary = _create_hidden(folder)
    try:
        previous = _stat(path)
        with os.fdopen(fd, "wb") as file:
            file.write(data)
            if previous is not None:
                os.fchmod(file.fileno(), stat.S_IMODE(previous.st_mode))
                file.flush()
                os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def write_new(path: Path, data: bytes | memoryview) -> Path:
    """Write ``data`` as a new file: ``path``, or ``path`` with ``-2``, ``-3`` ... when that exists."""
    for candidate in _numbered(path):
        try:
            fd = os.open(candidate, _NEW_FILE, 0o666)
        except FileExistsError:
            continue
        try:
            with os.fdopen(fd, "wb") as file:
                file.write(data)
        except BaseException:
            candidate.unlink(missing_ok=True)
            raise
        return candidate
    raise AssertionError("unreachable")


def _create_hidden(folder: Path, suffix: str = ".tmp") -> tuple[int, str]:
    """A new hidden file in ``folder``: a short name, so that a long final name still fits beside it."""
    while True:
        name = os.path.join(folder, f".deepbg-{secrets.token_hex(4)}{suffix}")
        try:
            return os.open(name, _NEW_FILE, 0o666), name
        except FileExistsError:
            continue


def _numbered(path: Path, tag: str = "") -> Iterable[Path]:
    yield path.with_name(f"{path.stem}{tag}{path.suffix}")
    n = 2
    while True:
        yield path.with_name(f"{path.stem}{tag}-{n}{path.suffix}")
        n += 1


# ------------------------------------------------------------------------------------------ partial files


class PartialFile(io.FileIO):
    """A video being written: ``NAME.partial.EXT`` beside ``NAME.EXT``, renamed to it by ``commit()``.

    Created exclusively, so it never opens an existing file (a leftover of an earlier crash gets
    ``NAME.partial-2.EXT``). Writes are unbuffered and whole: what the muxer has written is in the
    file even if the process is killed, and FFmpeg, which ignores short writes, never loses bytes.
    """

    def __init__(self, path: Path):
        self.target = Path(path)
        fd, self.partial = self._create()
        super().__init__(fd, "r+b")  # readable too: the MP4 and Matroska muxers seek back and reread

    def _create(self) -> tuple[int, Path]:
        target = self.target
        check_name(target)
        if target.is_dir():
            raise UserError(f"{target}: is a folder; give a file name such as {target / 'out.mp4'}")
        try:
            for candidate in _numbered(target, ".partial"):
                try:
                    return os.open(candidate, _NEW_FILE, 0o666), candidate
                except FileExistsError:
                    continue
                except OSError as exc:
                    if exc.errno != errno.ENAMETOOLONG:
                        raise
                    break  # the final name fits, only ".partial" made it too long: use a short one
            fd, name = _create_hidden(target.parent, target.suffix)
            return fd, Path(name)
        except OSError as exc:
            raise UserError(f"{target}: cannot create the file ({_reason(exc)}); {_fix(exc)}") from None

    def write(self, data: bytes | memoryview) -> int:
        view = memoryview(data).cast("B")
        done = 0
        while done < len(view):
            done += super().write(view[done:])
        return done

    def commit(self) -> None:
        """Sync and close the file, then give it its real name (replacing any file there). OSError on failure."""
        os.fsync(self.fileno())
        self.close()
        os.replace(self.partial, self.target)

    def discard(self) -> None:
        """Close and delete it: nothing worth keeping was written."""
        self.close()
        self.partial.unlink(missing_ok=True)


def truncate_to_whole_boxes(path: Path) -> None:
    """Cut a fragmented MP4/MOV back to its last complete fragment, so it plays to the end without errors.

    A write that failed part way (a full disk) leaves half a fragment; FFmpeg's demuxer reads the
    whole fragments before it and then reports the torn one as invalid data.
    """
    size = path.stat().st_size
    good = position = 0
    with open(path, "rb") as file:
        while position + 8 <= size:
            file.seek(position)
            length, kind = int.from_bytes(file.read(4), "big"), file.read(4)
            if length == 1:
                length = int.from_bytes(file.read(8), "big")  # a 64-bit size follows
            if length < 8 or position + length > size:
                break
            position += length
            if kind != b"moof":  # a fragment's header without its data is not a whole fragment
                good = position
    if good < size:
        os.truncate(path, good)
