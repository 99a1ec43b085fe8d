"""Safe file output: path checks before the work, atomic writes, target locks, stale temp cleanup.

Every file or folder this package writes goes through here, so that a crash, a kill or a full disk
never leaves a half-written file where the user's file was, and nothing the user did not create is
deleted:

* :func:`check_output_path` refuses a bad output path (missing folder, a folder, under a file,
  the input itself, an existing file without ``overwrite``) before any model work is done;
* :func:`atomic_write` writes into a hidden temporary file beside the target, fsyncs it and
  ``os.replace``\\ s it over the target; on an error the temporary file is removed and the target
  is unchanged;
* :func:`target_lock` serialises writers of one target (``fcntl.flock`` on ``.NAME.lock`` beside
  it, removed on release);
* temporary files and folders are named ``.NAME.tmp-<pid>-<start>-<random>`` after the process
  that made them, so a later writer of the same target removes them only once it can prove that
  process is gone (:func:`clean_stale_temp_files`, :func:`clean_stale_temp_folders`).
"""

from __future__ import annotations

import contextlib
import fcntl
import glob
import os
import re
import shutil
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable, Dict, Iterable, Iterator, List, Optional, Union

PathLike = Union[str, os.PathLike]

# A temporary folder of the converter from before temp names carried their owner: removed only
# once nothing in it has changed for this long (a conversion writes a shard every few seconds).
STALE_AGE_S = 3600.0


class OutputPathError(ValueError):
    """An output path that cannot or must not be written (reported as bad input)."""


class WriteError(OSError):
    """Writing an output failed (disk full, I/O error); the target was left as it was."""

    def __str__(self):
        return self.strerror or super().__str__()


class LockedError(ValueError):
    """Another process is writing the same target."""


# ------------------------------------------------------------------------------------ processes


def process_start(pid: int) -> int:
    """Start time of process ``pid`` in clock ticks since boot (Linux), or 0 where unknown."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
        return int(stat[stat.rindex(b")") + 2 :].split()[19])
    except (OSError, ValueError, IndexError):
        return 0


def owner_tag() -> str:
    """``<pid>-<start>`` of this process, the owner part of temporary names."""
    pid = os.getpid()
    return f"{pid}-{process_start(pid)}"


def process_gone(pid: int, start: int) -> bool:
    """True only when process ``pid`` (started at ``start``, 0 = unknown) provably no longer runs."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        pass
    if start:
        now = process_start(pid)
        return bool(now) and now != start  # the pid was reused by a later process
    return False


# ------------------------------------------------------------------------------------ temp names


def _temp_re(name: str):
    """Temporary and set-aside folders of target ``name`` as this module names them:
    ``.NAME.tmp-<pid>-<start>-<random>`` and ``.NAME.old-<pid>-<start>-<random>``, or the
    ``.NAME.tmp-XXXXXXXX`` of converters that did not name their process."""
    return re.compile(rf"^\.{re.escape(name)}\.(tmp|old)-(?:(\d+)-(\d+)-[A-Za-z0-9_]+|([A-Za-z0-9_]{{8}}))$")


# A temporary file of atomic_write: ``.NAME.tmp-<pid>-<start>-<8 random characters of mkstemp>``.
_TEMP_FILE = re.compile(r"^\.(.+)\.tmp-(\d+)-(\d+)-[a-z0-9_]{8}$")
NAME_MAX = 255  # bytes in one file name (ext4, APFS, NTFS and most others)


def _temp_name_part(name: str) -> str:
    """``name`` as it appears in its temporary files' names: cut (at a character) so that
    ``.NAME.tmp-<pid>-<start>-<8 random>`` fits in :data:`NAME_MAX` bytes, since a target whose
    name is legal must never fail for its temporary's name."""
    room = NAME_MAX - 1 - len(".tmp-") - 2 * 20 - 2 - 8  # the dot, the tag, pid and start, dashes, random
    raw = os.fsencode(name)
    if len(raw) <= room:
        return name
    cut = room
    while cut > 0 and (raw[cut] & 0xC0) == 0x80:  # not inside a UTF-8 character
        cut -= 1
    return os.fsdecode(raw[:cut])


def _temp_file_prefix(name: str) -> str:
    return f".{_temp_name_part(name)}.tmp-{owner_tag()}-"


def _newest_mtime(path: Path) -> float:
    newest = path.lstat().st_mtime
    with contextlib.suppress(OSError):
        for entry in os.scandir(path):
            newest = max(newest, entry.stat(follow_symlinks=False).st_mtime)
    return newest


def clean_stale_temp_folders(target: PathLike, ours: Callable[[Path], bool]) -> List[Path]:
    """Remove the temporary folders of ``target`` left by dead writers; return them.

    Call it holding :func:`target_lock` on ``target``: then no live writer can own one.  Only
    folders named like this module's temporaries of ``target`` and that ``ours`` recognises by
    their contents (what the writer writes, nothing else) are considered: those naming their
    owner process when it is provably gone, those of older converters (no owner in the name) once
    untouched for :data:`STALE_AGE_S`.  A ``.NAME.old-*`` folder (the previous version, moved
    aside while the new one was renamed in) is put back when ``target`` is missing, else removed.
    """
    target = Path(target)
    pattern = _temp_re(target.name)
    removed: List[Path] = []
    try:
        entries = sorted(os.scandir(target.parent), key=lambda e: e.name)
    except OSError:
        return removed
    for entry in entries:
        m = pattern.match(entry.name)
        if not m or not entry.is_dir(follow_symlinks=False):
            continue
        path = Path(entry.path)
        kind, pid, start, legacy = m.groups()
        if pid is not None:
            dead = process_gone(int(pid), int(start))
        else:
            dead = kind == "tmp" and time.time() - _newest_mtime(path) > STALE_AGE_S
        if not dead or not ours(path):
            continue
        if kind == "old" and not target.exists():
            os.rename(path, target)  # killed between moving the old version aside and renaming the new in
            continue
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path)
    return removed


_stale_files: Dict[str, Dict[str, List[str]]] = {}  # folder -> target name part -> stale temporary files


def clean_stale_temp_files(target: PathLike) -> List[Path]:
    """Remove the temporary files that :func:`atomic_write` left for ``target`` (same folder, same
    name) when their writer process is provably gone (killed mid-write); return them.  Nothing
    else is touched, whatever its name.  The folder is listed once per process, so that writing
    many files into one folder does not list it each time."""
    target = Path(os.path.realpath(target))
    folder = str(target.parent)
    stale = _stale_files.get(folder)
    if stale is None:
        stale = _stale_files[folder] = {}
        with contextlib.suppress(OSError):
            for entry in os.scandir(folder):
                m = _TEMP_FILE.match(entry.name)
                if m and entry.is_file(follow_symlinks=False) and process_gone(int(m.group(2)), int(m.group(3))):
                    stale.setdefault(m.group(1), []).append(entry.path)
    removed: List[Path] = []
    for path in stale.pop(_temp_name_part(target.name), []):
        with contextlib.suppress(OSError):
            os.unlink(path)
            removed.append(Path(path))
    return removed


def _temp_dir_prefix(target: Path) -> str:
    return f".{target.name}.tmp-{owner_tag()}-"


def make_temp_dir(target: PathLike) -> Path:
    """A new empty temporary folder beside ``target`` named after this process, with the
    permissions of an ordinary folder (``mkdtemp`` makes it private)."""
    target = Path(target)
    tmp = Path(tempfile.mkdtemp(prefix=_temp_dir_prefix(target), dir=target.parent))
    os.chmod(tmp, 0o777 & ~_umask())
    return tmp


def own_temp_dirs(target: PathLike) -> List[Path]:
    """This process's temporary folders of ``target`` (:func:`make_temp_dir`), found by name: for
    removing one whose path an interrupt kept from its maker."""
    target = Path(target)
    return sorted(target.parent.glob(glob.escape(_temp_dir_prefix(target)) + "*"))


def aside_name(target: PathLike) -> Path:
    """Where the old version of ``target`` goes while its replacement is renamed in."""
    target = Path(target)
    return target.with_name(f".{target.name}.old-{owner_tag()}-{os.urandom(3).hex()}")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# ------------------------------------------------------------------------------------ paths


def _describe_parent_problem(parent: Path) -> Optional[str]:
    probe = parent
    while not probe.exists() and probe != probe.parent:
        if probe.is_symlink():
            return f"{probe} is a broken link"
        probe = probe.parent
    if probe != parent:
        if probe.is_dir():
            return f"the folder {parent} does not exist (create it first)"
        return f"{probe} is a file, not a folder"
    if not parent.is_dir():
        return f"{parent} is a file, not a folder"
    if not os.access(parent, os.W_OK | os.X_OK):
        return f"the folder {parent} is not writable (permission denied)"
    return None


def check_output_path(
    path: PathLike,
    overwrite: bool = False,
    inputs: Iterable[PathLike] = (),
    extensions: Optional[Iterable[str]] = None,
    option: str = "-y/--overwrite",
) -> Path:
    """Check, before any work, that ``path`` can be written; return the file to write.

    Refused (``OutputPathError``): an unknown extension (when ``extensions`` is given), a missing
    or read-only folder, a path under a file, a folder, a device or other non-regular file, one
    of ``inputs`` (always, even with ``overwrite``), and an existing file unless ``overwrite``
    (a read-only existing file is refused even then).  A symlink is followed: its target is
    the file written.
    """
    given = Path(os.path.expanduser(os.fspath(path)))
    if extensions is not None and given.suffix.lower() not in tuple(extensions):
        raise OutputPathError(
            f"cannot tell the output format from {given.name!r}; use a {' '.join(sorted(extensions))} name."
        )
    real = Path(os.path.realpath(given))
    if len(os.fsencode(real.name)) > NAME_MAX:
        raise OutputPathError(f"cannot write {given}: the name is longer than {NAME_MAX} bytes; choose a shorter one.")
    problem = _describe_parent_problem(real.parent)
    if problem:
        raise OutputPathError(f"cannot write {given}: {problem}.")
    if real.is_dir():
        raise OutputPathError(f"cannot write {given}: it is a folder; name a file inside it.")
    if real.exists():
        if not real.is_file():
            raise OutputPathError(f"cannot write {given}: it exists and is not a regular file.")
        if any(_same_file(inp, real) for inp in inputs):
            raise OutputPathError(f"{given} is the input file; choose another output name.")
        if not overwrite:
            raise OutputPathError(f"{given} already exists; pass {option} to replace it, or choose another name.")
        if not os.access(real, os.W_OK) or not real.stat().st_mode & 0o222:  # root passes os.access
            raise OutputPathError(f"{given} is read-only; it is left as it is.")
    return real


def _same_file(a: PathLike, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except (OSError, ValueError, TypeError):
        return False


# ------------------------------------------------------------------------------------ atomic writes


@contextlib.contextmanager
def atomic_write(path: PathLike, mode: str = "w", encoding: Optional[str] = "utf-8") -> Iterator:
    """Open a temporary file beside ``path`` (``mode`` "w" or "wb"); on success it is flushed,
    fsynced and renamed over ``path`` (symlinks followed), on any error removed, ``path``
    untouched.  An OS error while writing is raised as :class:`WriteError` naming the file."""
    if mode not in ("w", "wb"):
        raise ValueError(f"mode must be 'w' or 'wb', got {mode!r}")
    given = Path(os.fspath(path))
    target = Path(os.path.realpath(given))
    if target.is_dir():
        raise IsADirectoryError(f"cannot write {given}: it is a folder")
    clean_stale_temp_files(target)
    try:
        fd, tmp = tempfile.mkstemp(prefix=_temp_file_prefix(target.name), dir=target.parent)
    except OSError as e:
        raise WriteError(e.errno, f"could not write {given}: {e.strerror} (the file is unchanged)") from None
    try:
        try:
            os.chmod(tmp, (target.stat().st_mode & 0o7777) if target.exists() else 0o666 & ~_umask())
            with os.fdopen(fd, mode, **({"encoding": encoding, "newline": ""} if "b" not in mode else {})) as f:
                yield f
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, target)
        except OSError as e:
            if isinstance(e, (IsADirectoryError, PermissionError, FileNotFoundError, NotADirectoryError)):
                raise
            raise WriteError(e.errno, f"could not write {given}: {e.strerror or e} (the file is unchanged)") from None
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(target.parent)


def _fsync_dir(folder: Path):
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def write_text_atomic(path: PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` with :func:`atomic_write`."""
    with atomic_write(path, "w") as f:
        f.write(text)
    return Path(path)


# ------------------------------------------------------------------------------------ locks

_locks_guard = threading.Lock()
_locks = {}  # lock path -> [threading.RLock, fd or None, depth]


def lock_path(target: PathLike) -> Path:
    target = Path(target)
    return target.with_name(f".{target.name}.lock")


def _holder(path: Path) -> str:
    with contextlib.suppress(OSError, ValueError):
        pid = int(path.read_text().split("-")[0])
        return f" (pid {pid})"
    return ""


def _flock(path: Path, wait: bool, on_wait: Optional[Callable[[str], None]]) -> int:
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise PermissionError(f"cannot write in {path.parent}: {e.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(path)
            if not wait:
                os.close(fd)
                raise LockedError(
                    f"another process{holder} is writing {path.with_name(path.name[1:-5])}; "
                    "try again when it has finished, or choose another output."
                ) from None
            if on_wait is not None:
                on_wait(holder)
                on_wait = None
            fcntl.flock(fd, fcntl.LOCK_EX)
        # the previous holder removes the file on release: a lock on a removed file locks nothing
        try:
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            os.ftruncate(fd, 0)
            os.write(fd, owner_tag().encode())
            return fd
        os.close(fd)


@contextlib.contextmanager
def target_lock(target: PathLike, wait: bool = False, on_wait: Optional[Callable[[str], None]] = None):
    """Hold an exclusive lock on ``target`` (a file ``.NAME.lock`` beside it, removed on release).

    Re-entrant within a process.  Another process holding it: wait for it when ``wait`` (calling
    ``on_wait(" (pid N)")`` once first), else raise :class:`LockedError`.  The kernel releases
    the lock of a killed process, so holding it proves no other writer of ``target`` is alive.
    """
    path = lock_path(Path(os.path.realpath(target)))
    with _locks_guard:
        entry = _locks.setdefault(path, [threading.RLock(), None, 0])
    if not entry[0].acquire(blocking=wait):
        raise LockedError(f"another thread is writing {target}; try again when it has finished.")
    try:
        if entry[2] == 0:
            entry[1] = _flock(path, wait, on_wait)
        entry[2] += 1
        try:
            yield path
        finally:
            entry[2] -= 1
            if entry[2] == 0:
                with contextlib.suppress(OSError):
                    os.unlink(path)
                os.close(entry[1])
                entry[1] = None
    finally:
        entry[0].release()


# ------------------------------------------------------------------------------------ signals


def exit_on_sigterm(message: Optional[str] = None) -> None:
    """Make SIGTERM unwind like Ctrl-C's KeyboardInterrupt but end with exit status 143, so the
    cleanup of temporary files runs (``finally`` blocks) and no traceback is printed.  Main
    thread of a command-line entry point only."""
    if threading.current_thread() is not threading.main_thread():
        return

    def handler(signum, frame):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second TERM must not cut the cleanup short
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        if message:
            print(message, file=sys.stderr, flush=True)
        raise SystemExit(128 + signal.SIGTERM)

    signal.signal(signal.SIGTERM, handler)


__all__ = [
    "LockedError",
    "OutputPathError",
    "WriteError",
    "atomic_write",
    "check_output_path",
    "clean_stale_temp_files",
    "clean_stale_temp_folders",
    "exit_on_sigterm",
    "make_temp_dir",
    "own_temp_dirs",
    "target_lock",
    "write_text_atomic",
]
