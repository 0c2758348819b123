"""Structure ops: the changes to a model's architecture a compressed file records, replayed when it loads.

A compressed file stores weights for the architecture as the recipe left it. To rebuild it, the file lists
the structural changes as ops, in order: ``{"op": KIND, ...}``. Each kind of op is registered by the method
that makes it (``torch_pruning``: units removed through Torch-Pruning, in :mod:`core.methods.structured`);
:func:`replay` applies the ops to a fresh copy of the original architecture. Factorised, separable and
shared layers (``low_rank``, ``separable``, ``share_filters``) are further kinds, added the same way; a kind
may also register a check of the weights decoded into the rebuilt model (:func:`check_decoded`).

Files of format version 1 and 2 recorded one flat Torch-Pruning history instead; :func:`ops_from_file`
reads that as one ``torch_pruning`` op.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from core import plugins
from core.errors import PrunescopeError


class StructureError(PrunescopeError):
    """A structural change cannot be made or replayed (unknown layer or op, unit out of range, the model's
    output layer, a recorded structure that does not fit the architecture)."""


Replay = Callable[[nn.Module, object, dict], None]
"""``replay(model, example, op)``: apply one op to ``model`` in place (``example``: an input batch)."""

Check = Callable[[nn.Module, dict], None]
"""``check(model, op)``: raise StructureError if the weights decoded into the rebuilt ``model`` do not fit
``op`` (an index a layer computes with that is out of range, say); called once the file is decoded."""

_OPS: dict[str, Replay] = {}
_CHECKS: dict[str, Check] = {}


def register_op(kind: str, replay_op: Replay, check: Check | None = None) -> None:
    """Register how ops of ``kind`` are replayed, and optionally how the decoded weights are checked
    against them (once per kind; re-registering replaces it)."""
    if not kind or not isinstance(kind, str):
        raise ValueError(f"a structure op needs a name; got {kind!r}")
    _OPS[kind] = replay_op
    if check is not None:
        _CHECKS[kind] = check
    else:
        _CHECKS.pop(kind, None)


def known_ops() -> list[str]:
    plugins.discover()
    return list(_OPS)


def validate_ops(ops) -> list[dict]:
    """``ops`` if it is a list of ops of registered kinds; StructureError naming the first bad one."""
    plugins.discover()
    if not isinstance(ops, list):
        raise StructureError(f"the recorded structure must be a list of ops; got {type(ops).__name__}")
    for i, op in enumerate(ops):
        if not isinstance(op, dict) or not isinstance(op.get("op"), str):
            raise StructureError(f"structure op {i} is not a mapping with an 'op' name")
        if op["op"] not in _OPS:
            raise StructureError(f"structure op {i} is {op['op']!r}, which this Prunescope does not know "
                                 f"(known: {', '.join(_OPS) or 'none'})")
    return ops


def replay(model: nn.Module, example, ops: list[dict]) -> None:
    """Apply ``ops`` in order to ``model`` (a fresh copy of the architecture they were recorded on)."""
    for op in validate_ops(ops):
        _OPS[op["op"]](model, example, op)


def check_decoded(model: nn.Module, ops: list[dict]) -> None:
    """Check the weights decoded into ``model`` (rebuilt by :func:`replay` from ``ops``) against the ops
    whose kinds registered a check; StructureError if a decoded tensor does not fit its op."""
    for op in validate_ops(ops):
        check = _CHECKS.get(op["op"])
        if check is not None:
            check(model, op)


def ops_from_file(structure, version: int) -> list[dict]:
    """The ops a file's header records: version 3 stores ops; versions 1 and 2 one Torch-Pruning history."""
    if version >= 3:
        return validate_ops(structure if structure is not None else [])
    if not structure:
        return []
    if not isinstance(structure, list):
        raise StructureError("the recorded structure must be a list")
    return [{"op": "torch_pruning", "history": structure}]
