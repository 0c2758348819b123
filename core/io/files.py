"""Telling model files apart by their first bytes and their zip entries, without loading them."""

from __future__ import annotations

import zipfile
from pathlib import Path


def path_bytes(path: Path) -> int:
    """Bytes of a file, or of every file under a folder."""
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


def zip_names(path: Path) -> list[str]:
    """The entries of a zip archive (torch.save, TorchScript and torch.export files are zips); [] otherwise."""
    try:
        with zipfile.ZipFile(path) as archive:
            return archive.namelist()
    except (zipfile.BadZipFile, OSError):
        return []


def head(path: Path, n: int = 8) -> bytes:
    """The first ``n`` bytes of a file (b"" if it cannot be read)."""
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
