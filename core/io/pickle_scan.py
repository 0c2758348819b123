"""Reading which Python objects a pickle would call, without unpickling it (so without running any code).

Used only to tell the user *what* an untrusted pickle needs; whether it is safe is decided by
``torch.load(weights_only=True)``, which refuses anything outside PyTorch's allowlist.
"""

from __future__ import annotations

import io
import pickletools
import zipfile
from pathlib import Path


def _allowed() -> set[str]:
    try:
        from torch._weights_only_unpickler import _get_allowed_globals

        return set(_get_allowed_globals())
    except Exception:  # a private helper: without it, every global is listed
        return set()


def _globals_in_stream(data: bytes) -> list[str]:
    """Globals named by every pickle in ``data`` (a legacy torch.save file holds several in a row)."""
    found: list[str] = []
    stream = io.BytesIO(data)
    while stream.tell() < len(data):
        strings: list[str] = []
        memo: dict[int, str] = {}
        try:
            for opcode, arg, _pos in pickletools.genops(stream):
                name = opcode.name
                if name in ("GLOBAL", "INST"):
                    found.append(str(arg).replace(" ", "."))
                elif name == "STACK_GLOBAL" and len(strings) >= 2:
                    found.append(f"{strings[-2]}.{strings[-1]}")
                elif (isinstance(arg, str) and "UNICODE" in name) or name in ("STRING", "BINSTRING",
                                                                              "SHORT_BINSTRING"):
                    strings.append(str(arg))
                elif name in ("BINPUT", "LONG_BINPUT", "PUT") and strings:
                    memo[int(arg)] = strings[-1]
                elif name == "MEMOIZE" and strings:
                    memo[len(memo)] = strings[-1]
                elif name in ("BINGET", "LONG_BINGET", "GET") and int(arg) in memo:
                    strings.append(memo[int(arg)])
        except Exception:  # truncated or not a pickle: report what was read so far
            break
        if stream.tell() >= len(data) or stream.getbuffer()[stream.tell()] not in (0x80,):
            break
    return found


def pickle_globals(path: str | Path) -> list[str]:
    """Distinct ``module.name`` globals a pickle (raw, or ``torch.save``'s zip) refers to, outside
    PyTorch's weights-only allowlist, in order of first appearance."""
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as archive:
            data = b"".join(archive.read(n) for n in archive.namelist() if n.endswith("data.pkl"))
    except (zipfile.BadZipFile, OSError):
        data = path.read_bytes()
    allowed = _allowed()
    result: list[str] = []
    for name in _globals_in_stream(data):
        name = name.replace("__builtin__.", "builtins.")  # protocol 2 spells the module the Python 2 way
        if name not in allowed and name not in result and not name.startswith("torch._utils._rebuild"):
            result.append(name)
    return result
