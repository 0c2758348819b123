"""Reading which Python objects a pickle would call, without unpickling it (so without running any code).

Used only to tell the user *what* an untrusted pickle needs; whether it is safe is decided by
``torch.load(weights_only=True)``, which refuses anything outside PyTorch's allowlist.

A global is left out of the list only when its full dotted name is exactly one on PyTorch's weights-only
allowlist (``torch._utils._rebuild_tensor_v2``). Anything reached through such a name
(``torch._utils._rebuild_tensor_v2.__builtins__.get`` is ``eval``) is a different global and is listed. A
global whose name the scan cannot read from the stream (built by opcodes it does not follow) is listed as
unnamed rather than left out.
"""

from __future__ import annotations

import io
import pickletools
from pathlib import Path

from core.fileio import MB
from core.io.files import MAX_SCAN_BYTES, read_start, read_zip_members, zip_names

UNNAMED = "a global whose name is hidden in the pickle's opcodes"
_STRING_OPS = {"STRING", "BINSTRING", "SHORT_BINSTRING", "UNICODE", "BINUNICODE", "SHORT_BINUNICODE",
               "BINUNICODE8"}
_GET_OPS = {"GET", "BINGET", "LONG_BINGET"}
_MARK = object()


def _allowed() -> set[str]:
    try:
        from torch._weights_only_unpickler import _get_allowed_globals

        return set(_get_allowed_globals())
    except Exception:  # a private helper: without it, every global is listed
        return set()


def _globals_in_stream(data: bytes) -> list[str]:
    """Globals named by every pickle in ``data`` (a legacy torch.save file holds several in a row).

    The unpickler's stack is followed opcode by opcode (each opcode's declared pops and pushes), holding
    strings and memo entries only, so STACK_GLOBAL's module and name are the two values really on top.
    """
    found: list[str] = []
    stream = io.BytesIO(data)
    while stream.tell() < len(data):
        stack: list = []
        memo: dict[int, object] = {}
        try:
            for opcode, arg, _pos in pickletools.genops(stream):  # stops after the pickle's STOP
                name = opcode.name
                if name in ("GLOBAL", "INST"):
                    found.append(str(arg).replace(" ", "."))
                elif name == "STACK_GLOBAL":
                    module, attr = (stack[-2], stack[-1]) if len(stack) >= 2 else (None, None)
                    found.append(f"{module}.{attr}" if isinstance(module, str) and isinstance(attr, str)
                                 else UNNAMED)
                if name in ("PUT", "BINPUT", "LONG_BINPUT", "MEMOIZE"):  # they store the top, and leave it
                    memo[len(memo) if name == "MEMOIZE" else int(arg)] = stack[-1] if stack else None
                    continue
                pushed = (str(arg) if name in _STRING_OPS else memo.get(int(arg)) if name in _GET_OPS
                          else stack[-1] if name == "DUP" and stack else None)
                _pop(stack, opcode.stack_before)
                stack.extend(_MARK if kind is pickletools.markobject else pushed for kind in opcode.stack_after)
        except Exception:  # truncated or not a pickle: report what was read so far
            break
        if stream.tell() >= len(data) or data[stream.tell()] != 0x80:
            break
    return found


def _pop(stack: list, before: list) -> None:
    """Take off ``stack`` what an opcode pops: everything down to the mark for a stack slice, and the rest."""
    rest = len(before)
    if pickletools.stackslice in before:
        while stack and stack[-1] is not _MARK:
            stack.pop()
        if stack:
            stack.pop()
        rest -= 2  # the mark and the slice
    del stack[max(0, len(stack) - rest):]


def pickle_globals(path: str | Path) -> list[str]:
    """Distinct ``module.name`` globals a pickle (raw, or ``torch.save``'s zip) refers to, outside
    PyTorch's weights-only allowlist, in order of first appearance (every one: nothing is abridged)."""
    path = Path(path)
    if zip_names(path):
        data, cut = read_zip_members(path, ".pkl")  # data.pkl; TorchScript also constants.pkl
    else:
        data, cut = read_start(path)
    allowed = _allowed()
    result: list[str] = []
    for name in _globals_in_stream(data):
        name = name.replace("__builtin__.", "builtins.")  # protocol 2 spells the module the Python 2 way
        if name not in allowed and name not in result:
            result.append(name)
    if cut:
        result.append(f"whatever else it needs past its first {MAX_SCAN_BYTES // MB} MB (not read)")
    return result
