"""Telling model files apart by their first bytes and their zip entries, without loading them.

Every path a loader sees has passed :func:`check_model_path` (in :func:`~core.io.loading.load_model`): an
ordinary file or folder, of a size Prunescope reads. A zip's directory is checked against the archive's
real length before anything trusts it, so a member declaring gigabytes is refused, not read.
"""

from __future__ import annotations

import os
import stat
import warnings
import zipfile
from pathlib import Path

import torch

from core.errors import one_line
from core.fileio import GB, MB, check_input
from core.io.base import ModelLoadError

MAX_MODEL_BYTES = 256 * GB
"""The largest model file read (checkpoints are memory-mapped, one tensor at a time, where the format allows)."""
MAX_SCAN_BYTES = 256 * MB
"""How much of a pickle is read to list the globals it needs (a legacy torch.save file's pickles come first)."""
MAX_EXPANSION = 1032  # deflate's best ratio: a member can hold no more than this times its compressed size


def check_model_path(path: Path) -> None:
    """Refuse (ModelLoadError, one line) a path no loader may open: special files, /proc, oversized files."""
    st = check_input(path, MAX_MODEL_BYTES, "model file", folder_ok=True, error=ModelLoadError)
    if stat.S_ISDIR(st.st_mode):  # a model folder's files are read by other libraries: none may be special
        try:
            entries = list(os.scandir(path))
        except OSError as exc:
            raise ModelLoadError(one_line(f"{path}: cannot list the folder ({exc.strerror})")) from None
        for entry in entries:
            try:
                special = not (entry.is_file() or entry.is_dir())
            except OSError:
                special = True
            if special and os.path.lexists(entry.path) and (not entry.is_symlink() or os.path.exists(entry.path)):
                raise ModelLoadError(one_line(f"{path}: holds {entry.name}, which is not an ordinary file; "
                                              "Prunescope reads only ordinary files"))


def path_bytes(path: Path) -> int:
    """Bytes of a file, or of every file under a folder."""
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


def check_zip_directory(path: Path, archive: zipfile.ZipFile) -> None:
    """Refuse a zip whose directory declares members larger than the archive could hold."""
    length = path.stat().st_size
    for info in archive.infolist():
        bound = length if info.compress_type == zipfile.ZIP_STORED else info.compress_size * MAX_EXPANSION
        if info.compress_size > length or info.file_size > bound or info.header_offset > length:
            raise ModelLoadError(one_line(
                f"{path.name}: a corrupt zip archive (its directory says member {info.filename[:80]!r} holds "
                f"{info.file_size:,} bytes, in a file of {length:,})"))


def zip_names(path: Path) -> list[str]:
    """The entries of a zip archive (torch.save, TorchScript and torch.export files are zips); [] otherwise.
    A zip whose directory cannot be true raises ModelLoadError."""
    if not path.is_file():
        return []
    try:
        with zipfile.ZipFile(path) as archive:
            check_zip_directory(path, archive)
            return archive.namelist()
    except ModelLoadError:
        raise
    except (zipfile.BadZipFile, OSError, EOFError, ValueError):
        return []


def read_zip_members(path: Path, suffix: str, limit: int = MAX_SCAN_BYTES) -> tuple[bytes, bool]:
    """The members of a zip whose names end with ``suffix``, concatenated, at most ``limit`` bytes in all;
    and whether that cut them short."""
    try:
        with zipfile.ZipFile(path) as archive:
            check_zip_directory(path, archive)
            parts, left = [], limit
            for info in archive.infolist():
                if info.filename.endswith(suffix) and left > 0:
                    with archive.open(info) as member:
                        parts.append(member.read(left))
                    left -= len(parts[-1])
            total = sum(i.file_size for i in archive.infolist() if i.filename.endswith(suffix))
            return b"".join(parts), total > limit
    except ModelLoadError:
        raise
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError) as exc:
        raise ModelLoadError(one_line(f"{path.name}: a truncated or corrupt zip archive ({type(exc).__name__})")) \
            from None


def read_start(path: Path, limit: int = MAX_SCAN_BYTES) -> tuple[bytes, bool]:
    """The first ``limit`` bytes of an ordinary file, and whether the file is longer."""
    size = check_input(path, MAX_MODEL_BYTES, "model file", error=ModelLoadError).st_size
    try:
        with open(path, "rb") as f:
            return f.read(limit), size > limit
    except OSError as exc:
        raise ModelLoadError(one_line(f"{path}: cannot read ({exc.strerror})")) from None


def load_weights_only(path: Path, **kwargs):
    """``torch.load(path, weights_only=True)``, which runs no code, without the warning PyTorch prints for
    a pickle of protocol 4 or 5 (the load is refused or succeeds all the same; the user gets one line)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*pickle protocol", category=UserWarning)
        return torch.load(path, map_location="cpu", weights_only=True, **kwargs)


def head(path: Path, n: int = 8) -> bytes:
    """The first ``n`` bytes of an ordinary file (b"" if it cannot be read, or is not an ordinary file)."""
    if not path.is_file():
        return b""
    try:
        with open(path, "rb") as f:
            return f.read(n)
    except OSError:
        return b""


def is_pickle(path: Path) -> bool:
    """A zip written by ``torch.save`` (with ``data.pkl``, no TorchScript code), or a legacy raw pickle."""
    names = zip_names(path)
    if names:
        return any(n.endswith("/data.pkl") or n == "data.pkl" for n in names) and not any(
            "/code/" in n for n in names)
    start = head(path, 2)
    return len(start) == 2 and start[0] == 0x80 and 2 <= start[1] <= 5
