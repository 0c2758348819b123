"""Files in and out: every input is checked before it is read, every output before any work, and every save
is atomic.

Reading: :func:`check_input` is the one check every loader, the recipe reader and the data loader run on a
path before opening it. It refuses, in one line, what is not a regular file (FIFOs, devices, sockets), what
lives under ``/proc`` or ``/sys`` (files there claim to be empty and can be endless), and a file over the
size its kind may have. :func:`read_input` then reads at most that many bytes, from a descriptor opened
without blocking, so a file swapped for a FIFO after the check cannot hang the read.

Writing: :func:`check_output_file` refuses, before any work, an output path that is a folder, a device or
FIFO (never replaced, even as root), under ``/proc``, ``/sys`` or ``/dev``, or in a folder that cannot be
written. :func:`atomic_write` and :func:`write_together` write to hidden temporary files beside the target
(``.NAME.prunescope-PID-XXXX.tmp``) and rename them over it, removing them on every exception. The
temporaries being written are listed (:func:`remove_live_temps`), so the command line's Ctrl+C handler
removes them before it exits, and the renames of :func:`write_together` are one critical section it waits
for (:func:`defer_while_writing`). A temporary left by a process that was killed (SIGKILL cannot be
handled) is removed by the next write to the same name once its process is gone.
"""

from __future__ import annotations

import contextlib
import os
import re
import stat
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import BinaryIO

from core.errors import PrunescopeError, one_line, os_error_line

KB, MB, GB = 1 << 10, 1 << 20, 1 << 30
SYSTEM_ROOTS = (Path("/proc"), Path("/sys"))
"""Pseudo-file systems: their files report a size of 0 and may never end; nothing is read from them."""
NO_WRITE_ROOTS = (*SYSTEM_ROOTS, Path("/dev"))


class FileAccessError(PrunescopeError):
    """A path that cannot be read or written as asked: missing, special, too large, or not permitted."""


def _size_text(n: int) -> str:
    for unit, size in (("GB", GB), ("MB", MB), ("KB", KB)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} bytes"


def _under(path: Path, roots) -> Path | None:
    return next((root for root in roots if root == path or root in path.parents), None)


def _stat(path: Path, what: str, error: type[PrunescopeError]) -> os.stat_result:
    try:
        return os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        raise error(one_line(f"{path}: no such file or folder")) from None
    except PermissionError:
        raise error(one_line(f"{path}: not readable (permission denied)")) from None
    except ValueError:  # an embedded NUL byte
        raise error(one_line(f"{path!r}: not a valid file name")) from None
    except OSError as exc:
        raise error(one_line(f"{what} {os_error_line(exc)}")) from None


def check_input(path: str | os.PathLike, limit: int, what: str = "file", folder_ok: bool = False,
                error: type[PrunescopeError] = FileAccessError) -> os.stat_result:
    """The stat of ``path`` if it may be read: a regular file of at most ``limit`` bytes (or, with
    ``folder_ok``, a folder), readable, outside ``/proc`` and ``/sys``. Otherwise ``error``, one line."""
    path = Path(path)
    st = _stat(path, what, error)
    try:
        resolved = path.resolve()
    except (OSError, RuntimeError):
        resolved = path
    root = _under(resolved, SYSTEM_ROOTS)
    if root is not None:
        raise error(one_line(f"{path}: a system file under {root}; Prunescope reads only ordinary files"))
    if stat.S_ISDIR(st.st_mode):
        if not folder_ok:
            raise error(one_line(f"{path}: a folder, not a {what}"))
    elif not stat.S_ISREG(st.st_mode):
        kind = ("a FIFO (named pipe)" if stat.S_ISFIFO(st.st_mode) else "a socket" if stat.S_ISSOCK(st.st_mode)
                else "a device")
        raise error(one_line(f"{path}: {kind}, not a {what}; Prunescope reads only ordinary files"))
    elif st.st_size > limit:
        raise error(one_line(f"{path}: {_size_text(st.st_size)}, larger than any {what} Prunescope reads "
                             f"({_size_text(limit)} at most)"))
    if not os.access(path, os.R_OK | (os.X_OK if stat.S_ISDIR(st.st_mode) else 0)):
        raise error(one_line(f"{path}: not readable (permission denied)"))
    return st


def read_input(path: str | os.PathLike, limit: int, what: str = "file",
               error: type[PrunescopeError] = FileAccessError) -> bytes:
    """The bytes of a file that passes :func:`check_input`, reading no more than ``limit`` bytes."""
    path = Path(path)
    check_input(path, limit, what, error=error)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise error(one_line(f"{path}: cannot open ({exc.strerror})")) from None
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):  # swapped for something else since the check
            raise error(one_line(f"{path}: not an ordinary file; Prunescope reads only ordinary files"))
        try:
            data = f.read(limit + 1)
        except OSError as exc:
            raise error(one_line(f"{path}: cannot read ({exc.strerror})")) from None
    if len(data) > limit:
        raise error(one_line(f"{path}: larger than any {what} Prunescope reads ({_size_text(limit)} at most)"))
    return data


def read_input_text(path: str | os.PathLike, limit: int, what: str = "file",
                    error: type[PrunescopeError] = FileAccessError) -> str:
    """:func:`read_input` decoded as UTF-8; a file that is not UTF-8 is refused in one line."""
    data = read_input(path, limit, what, error)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise error(one_line(f"{path}: not UTF-8 text (byte {exc.start} is 0x{data[exc.start]:02x}); save the "
                             f"{what} as UTF-8")) from None


# ------------------------------------------------------------------------------------------------ writing

def _existing_ancestor(path: Path) -> Path:
    for parent in path.parents:
        if os.path.lexists(parent):
            return parent
    return Path(".")


def check_output_file(path: str | os.PathLike, what: str = "output",
                      error: type[PrunescopeError] = FileAccessError) -> None:
    """Refuse, before any work, a path that cannot take a new file: a folder, a device or FIFO (never
    replaced), anything under ``/proc``, ``/sys`` or ``/dev``, or a place whose folder cannot be written."""
    path = Path(path).expanduser()
    try:
        resolved = path.resolve()
    except (OSError, RuntimeError):
        resolved = path.absolute()
    except ValueError:
        raise error(one_line(f"{what} {path!r}: not a valid file name")) from None
    if "\0" in str(path):
        raise error(one_line(f"{what} {path!r}: not a valid file name"))
    root = _under(resolved, NO_WRITE_ROOTS)
    if root is not None:
        raise error(one_line(f"{what} {path}: under {root}; choose a file in an ordinary folder"))
    try:
        st = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        st = None
    except OSError as exc:
        raise error(one_line(f"{what} {os_error_line(exc)}")) from None
    if st is not None:
        if stat.S_ISDIR(st.st_mode):
            raise error(one_line(f"{what} {path}: a folder; give a file name"))
        if not stat.S_ISREG(st.st_mode):
            raise error(one_line(f"{what} {path}: not an ordinary file (a device, FIFO or socket); it is never "
                                 "replaced: choose another path"))
    check_output_folder(path.parent, what, error)


def check_output_folder(folder: str | os.PathLike, what: str = "output",
                        error: type[PrunescopeError] = FileAccessError) -> None:
    """Refuse a folder that cannot be created or written into (tried with a nameless temporary file)."""
    folder = Path(folder).expanduser()
    if _under(folder.absolute(), NO_WRITE_ROOTS) is not None:
        raise error(one_line(f"{what} {folder}: a system folder; choose an ordinary folder"))
    existing = folder if os.path.lexists(folder) else _existing_ancestor(folder)
    if not existing.is_dir():
        raise error(one_line(f"{what} {folder}: {existing} is not a folder"))
    try:
        tempfile.TemporaryFile(dir=existing).close()
    except OSError as exc:
        raise error(one_line(f"{what} {folder}: cannot write there ({exc.strerror})")) from None


_live: set[str] = set()
_critical = 0
_pending: list = []


def remove_live_temps() -> None:
    """Remove every temporary file this process is writing (for an exit that skips ``finally`` blocks)."""
    for tmp in list(_live):
        with contextlib.suppress(OSError):
            os.unlink(tmp)


def defer_while_writing(action) -> bool:
    """If renames that must happen together are under way, run ``action`` when they are done and return
    True; otherwise return False (the caller acts now)."""
    if _critical:
        _pending.append(action)
        return True
    return False


@contextlib.contextmanager
def _renaming() -> Iterator[None]:
    global _critical
    _critical += 1
    try:
        yield
    finally:
        _critical -= 1
        while not _critical and _pending:
            _pending.pop(0)()


def _temp_prefix(path: Path, stem: bool = False) -> str:
    return f".{path.stem if stem else path.name}.prunescope-{os.getpid()}-"


_TEMP = re.compile(r"\.(?P<name>.+)\.prunescope-(?P<pid>\d+)-[^/]*$")


def remove_stale_temps(path: str | os.PathLike) -> None:
    """Remove the temporaries that writes of ``path`` left behind in processes that no longer run (a
    SIGKILL); those of running processes (another save in progress) are kept."""
    path = Path(path)
    try:
        entries = list(os.scandir(path.parent))
    except OSError:
        return
    for entry in entries:
        match = _TEMP.match(entry.name)
        if not match or match["name"] not in (path.name, path.stem) or int(match["pid"]) == os.getpid():
            continue
        try:
            os.kill(int(match["pid"]), 0)
            continue  # still running
        except ProcessLookupError:
            pass
        except (PermissionError, OverflowError):
            continue
        with contextlib.suppress(OSError):
            os.unlink(entry.path)


def _unlink(path) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike) -> Iterator[BinaryIO]:
    """Open a temporary file beside ``path`` for binary writing; on success, fsync and rename it over ``path``.

    On any error (Ctrl+C included) the temporary file is removed and ``path`` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(path)
    fd, tmp = tempfile.mkstemp(prefix=_temp_prefix(path), suffix=".tmp", dir=path.parent)
    _live.add(tmp)
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, _mode_for(path))  # mkstemp makes 0600 files; keep the mode a plain write would give
        os.replace(tmp, path)
    except BaseException:
        _unlink(tmp)
        raise
    finally:
        _live.discard(tmp)


def write_together(files: Mapping[str | os.PathLike, bytes]) -> None:
    """Write several files so that they appear together or not at all (a compressed file and its report).

    Each is written to a temporary beside it and fsynced; then all are renamed into place. If anything
    fails before the last rename, the files already renamed are put back as they were (a file that existed
    before is restored from a hard link kept meanwhile) and every temporary is removed. The renames (and
    their undoing) are one critical section: a Ctrl+C at the command line waits for its end.
    """
    temps: list[tuple[Path, str]] = []
    backups: dict[Path, str | None] = {}
    try:
        for target, data in files.items():
            target = Path(target)
            target.parent.mkdir(parents=True, exist_ok=True)
            remove_stale_temps(target)
            fd, tmp = tempfile.mkstemp(prefix=_temp_prefix(target), suffix=".tmp", dir=target.parent)
            temps.append((target, tmp))
            _live.add(tmp)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, _mode_for(target))
        with _renaming():
            try:
                _rename_all(temps, backups)
            except BaseException:
                for target, backup in backups.items():  # undo the renames already made
                    with contextlib.suppress(OSError):
                        if backup is None:
                            _unlink(target)
                        else:
                            os.replace(backup, target)
                raise
            finally:
                for backup in backups.values():
                    if backup is not None:
                        _unlink(backup)
                        _live.discard(backup)
    finally:
        for _, tmp in temps:
            _unlink(tmp)  # those renamed are gone already
            _live.discard(tmp)


def _rename_all(temps: list[tuple[Path, str]], backups: dict[Path, str | None]) -> None:
    for target, tmp in temps:
        backup = None
        if os.path.lexists(target):
            backup = tempfile.mktemp(prefix=_temp_prefix(target), suffix=".old.tmp", dir=target.parent)
            os.link(target, backup)
            _live.add(backup)
        backups[target] = backup
        os.replace(tmp, target)


def _mode_for(path: Path) -> int:
    """The existing file's permissions, or what a new file gets under the current umask."""
    try:
        return os.stat(path).st_mode & 0o777
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary path beside ``path`` for a writer that wants a file name; renamed over ``path`` on success.

    The temporary name keeps ``path``'s suffix, for writers that choose a format by it.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(path)
    fd, tmp = tempfile.mkstemp(prefix=_temp_prefix(path, stem=True), suffix=path.suffix, dir=path.parent)
    os.close(fd)
    _live.add(tmp)
    try:
        yield Path(tmp)
        os.chmod(tmp, _mode_for(path))
        os.replace(tmp, path)
    except BaseException:
        _unlink(tmp)
        raise
    finally:
        _live.discard(tmp)


__all__ = ["FileAccessError", "atomic_path", "atomic_write", "check_input", "check_output_file",
           "check_output_folder", "defer_while_writing", "read_input", "read_input_text", "remove_live_temps",
           "remove_stale_temps", "write_together"]
