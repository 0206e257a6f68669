"""File output that is complete or absent: every file ganport writes appears whole, validated, or not at all.

Every OS error on the way (full disk, read-only file system, permissions) becomes one OutputError that names the
path the user asked for, never the hidden temporary.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import glob
import math
import os
import re
import shutil
import stat
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np

from ganport.errors import GanportError, OutputError

_TEMPORARY_MARK = ".tmp"
# A folder being replaced waits under this mark until its successor is in place (see _put_in_place).
_BACKUP_MARK = ".old"
_WRITER_PID = re.compile(r"\.(\d+)-[0-9a-f]{8}\.(?:tmp|old)")
_ADVICE = {
    errno.ENOSPC: "free some space or write somewhere else",
    errno.EDQUOT: "free some space or write somewhere else",
    errno.EROFS: "the file system is read-only: write somewhere else",
    errno.EACCES: "check its permissions or write somewhere else",
    errno.EPERM: "check its permissions or write somewhere else",
    errno.ENOTDIR: "a parent of it is a file, not a folder: choose another path",
    errno.EISDIR: "it is a folder: name a file",
    errno.ENAMETOOLONG: "choose a shorter path",
}


def describe_os_error(error: OSError, path: str | Path | None = None, option: str | None = None) -> str:
    """One line: which path, what the system said, and what to do (with which option). Temporaries are named by
    their target."""
    named = path if path is not None else error.filename
    reason = error.strerror or str(error) or type(error).__name__
    advice = _ADVICE.get(error.errno, "write somewhere else")
    return f"cannot write {named}: {reason}; {advice}{f' (pass another {option})' if option else ''}."


@contextlib.contextmanager
def output_errors(path: str | Path, option: str | None = None) -> Iterator[None]:
    """Turn any OSError raised while writing `path` into an OutputError naming `path`."""
    try:
        yield
    except OutputError:
        raise
    except OSError as error:
        raise OutputError(describe_os_error(error, path, option)) from error


def _temporary_for(path: Path) -> Path:
    # The pid lets a later writer tell a dead process's leftover from a live writer's file.
    return path.with_name(f".{path.stem}.{os.getpid()}-{uuid.uuid4().hex[:8]}{_TEMPORARY_MARK}{path.suffix}")


def _backup_for(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}{_BACKUP_MARK}")


def _writer_alive(temporary: Path) -> bool:
    found = _WRITER_PID.search(temporary.name)
    if found is None:  # an older ganport's temporary, without a pid: nobody is writing it any more
        return False
    pid = int(found.group(1))
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, but another user's
        return True
    return True


def _remove_dead_writers(candidates: Iterator[Path]) -> list[Path]:
    removed = []
    for leftover in candidates:
        # folders only when named by atomic_folder (with the writer's pid): nothing else of a user's is ever removed
        ours = leftover.is_file() or (leftover.is_dir() and _WRITER_PID.search(leftover.name) is not None)
        if not ours or _writer_alive(leftover):
            continue
        with contextlib.suppress(OSError):
            if leftover.is_dir():
                shutil.rmtree(leftover)
            else:
                leftover.unlink()
            removed.append(leftover)
    return removed


def remove_stale_temporaries(path: Path) -> list[Path]:
    """Delete temporaries of `path` left by processes that died (kill -9, power loss) before renaming them."""
    return _remove_dead_writers(
        path.parent.glob(f".{glob.escape(path.stem)}.*{_TEMPORARY_MARK}{glob.escape(path.suffix)}")
    )


def _recover_backups(path: Path) -> None:
    """A writer killed between moving the old `path` aside and renaming its successor into place left the old one as
    a backup: it goes back to `path` when nothing took that place, and is deleted only when something did."""
    for backup in path.parent.glob(f".{glob.escape(path.name)}.*{_BACKUP_MARK}"):
        if _WRITER_PID.search(backup.name) is None or _writer_alive(backup):
            continue
        with contextlib.suppress(OSError):
            if not path.exists():
                os.replace(backup, path)
            elif backup.is_dir():
                shutil.rmtree(backup)
            else:
                backup.unlink()


def remove_stale_temporaries_in(folder: Path) -> list[Path]:
    """Delete every dead writer's temporary anywhere under `folder` (a run folder at start-up)."""
    return _remove_dead_writers(folder.rglob(f".*{_TEMPORARY_MARK}*"))


def _fsync(path: Path, directory: bool = False) -> None:
    descriptor = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if directory else 0))
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it onto `path` only if the block succeeds.

    The block writes and validates the temporary; its bytes reach the disk (fsync) before the rename, so a crash
    leaves the old file or the new one, never a torn one. The temporary keeps `path`'s suffix, because writers such
    as Keras and h5py choose the format by it. Any failure deletes the temporary; a clean-up that fails too (a
    read-only file system) never hides the first error.
    """
    path = Path(path)
    with output_errors(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(path)
        temporary = _temporary_for(path)
        try:
            yield temporary
            _fsync(temporary)
            os.replace(temporary, path)
            with contextlib.suppress(OSError):  # some file systems cannot fsync a folder; the rename happened
                _fsync(path.parent, directory=True)
        finally:
            with contextlib.suppress(OSError):
                temporary.unlink(missing_ok=True)


def _put_in_place(new: Path, path: Path) -> None:
    """Rename `new` onto `path` in one step when it can be. A folder cannot be renamed onto a non-empty one: the old
    one moves aside under a backup name first, which _recover_backups restores (never deletes) while `path` is
    missing, and it is deleted once `new` is in place."""
    if not (new.is_dir() and path.exists()):
        os.replace(new, path)
        return
    backup = _backup_for(path)
    os.replace(path, backup)
    os.replace(new, path)
    shutil.rmtree(backup, ignore_errors=True)


@contextlib.contextmanager
def staged_entries(folder: str | Path, names: Sequence[str]) -> Iterator[Path]:
    """Yield a temporary folder inside `folder`; if the block succeeds, each of `names` written there replaces the
    entry of that name in `folder`, whole (a Triton model's version folder and its config), and nothing else in
    `folder` is touched: other entries, the user's files, stay."""
    folder = Path(folder)
    with output_errors(folder):
        folder.mkdir(parents=True, exist_ok=True)
        staging_name = folder / "staging"
        remove_stale_temporaries(staging_name)
        for name in names:
            _recover_backups(folder / name)
        staging = _temporary_for(staging_name)
        try:
            staging.mkdir()
            yield staging
            for name in names:
                _put_in_place(staging / name, folder / name)
            with contextlib.suppress(OSError):
                _fsync(folder, directory=True)
        finally:
            shutil.rmtree(staging, ignore_errors=True)


@contextlib.contextmanager
def exclusive(lock_file: Path, busy: Callable[[str], GanportError], remove: bool = False) -> Iterator[None]:
    """Hold an exclusive lock on `lock_file` (created if missing) or raise `busy(holder)` at once, where holder
    names the process that has it; with `remove`, the file is deleted when done. flock is released by the kernel
    when a process dies, so kill -9 never leaves the lock held.

    A lock taken on a file that its holder deleted meanwhile is no lock: the inode is checked after locking."""
    descriptor = os.open(lock_file, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        if os.fstat(descriptor).st_ino != os.stat(lock_file).st_ino:
            raise BlockingIOError
    except (BlockingIOError, FileNotFoundError):
        holder = os.pread(descriptor, 32, 0).decode(errors="replace").strip() or "another process"
        os.close(descriptor)
        raise busy(f"process {holder}") from None
    try:
        os.ftruncate(descriptor, 0)
        os.pwrite(descriptor, str(os.getpid()).encode(), 0)
        yield
    finally:
        if remove:  # while still held: nobody can take a lock on it that the deletion would void unseen
            with contextlib.suppress(OSError):
                lock_file.unlink()
        os.close(descriptor)


def write_text_atomically(path: str | Path, text: str) -> None:
    with atomic_path(path) as temporary:
        temporary.write_text(text)


def _probe(folder: Path, stem: str) -> None:
    """Create the folder and an empty file in it, then remove the file: what writing there will need."""
    folder.mkdir(parents=True, exist_ok=True)
    probe = _temporary_for(folder / stem)
    try:
        probe.write_bytes(b"")
    finally:
        with contextlib.suppress(OSError):
            probe.unlink(missing_ok=True)


def ensure_writable(path: str | Path, option: str) -> Path:
    """Fail now, before minutes of work, if `path` cannot be created: makes its folder and probes it with a file."""
    path = Path(path)
    with output_errors(path, option):
        if path.is_dir():
            raise OutputError(f"cannot write {path}: it is a folder; pass a file name to {option}.")
        _probe(path.parent, path.name)
    return path


def ensure_writable_folder(folder: str | Path, option: str) -> Path:
    """Like ensure_writable, for a folder that will receive several files."""
    folder = Path(folder)
    with output_errors(folder, option):
        if folder.exists() and not folder.is_dir():
            raise OutputError(f"cannot write into {folder}: it is a file; pass a folder to {option}.")
        _probe(folder, "probe")
    return folder


def file_problem(path: Path) -> str | None:
    """Why `path` cannot be read as a file, in words ("does not exist", "is a folder", ...), or None when it can."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return "is a broken symbolic link" if path.is_symlink() else "does not exist"
    except OSError as error:
        if error.errno == errno.ELOOP:
            return "is a symbolic link loop"
        return f"cannot be read ({error.strerror})"
    if stat.S_ISDIR(mode):
        return "is a folder, not a file"
    if not stat.S_ISREG(mode):
        if stat.S_ISFIFO(mode):
            return "is a named pipe, not a regular file"
        return f"is {'a device' if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else 'a socket'}, not a regular file"
    return None


def size_text(count: int) -> str:
    for unit, scale in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if count >= scale:
            return f"{count / scale:.1f} {unit}"
    return f"{count} bytes"


def require_free_space(path: str | Path, needed: int) -> None:
    """Refuse up front when the file system holding `path` cannot take `needed` more bytes."""
    path = Path(path)
    folder = next((parent for parent in (path, *path.parents) if parent.is_dir()), Path.cwd())
    free = shutil.disk_usage(folder).free
    if needed > free:
        raise OutputError(
            f"cannot write {path}: it needs {size_text(needed)} but {folder} has {size_text(free)} free; "
            "free some space, write somewhere else, or ask for fewer images."
        )


@contextlib.contextmanager
def npy_stream(path: str | Path, shape: tuple[int, ...], dtype: np.dtype) -> Iterator[Callable[[np.ndarray], None]]:
    """Write a .npy file of `shape` batch by batch, so memory is bounded by a batch, not by the whole array.

    numpy has no appending writer: its format module writes the header and the rows follow as raw C-order bytes.
    Yields `append(batch)`; the file is renamed into place only when exactly `shape` was written.
    """
    dtype = np.dtype(dtype)
    needed = math.prod(shape) * dtype.itemsize  # Python integers: no -n can overflow past the free-space check
    require_free_space(path, needed)
    written = 0
    with atomic_path(path) as temporary, temporary.open("wb") as stream:
        header = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": tuple(shape)}
        np.lib.format.write_array_header_1_0(stream, header)

        def append(batch: np.ndarray) -> None:
            nonlocal written
            data = np.ascontiguousarray(batch, dtype=dtype)
            stream.write(data.tobytes())
            written += data.nbytes

        yield append
        if written != needed:
            raise OutputError(f"cannot write {path}: {written} of {needed} bytes were produced.")
        stream.flush()
