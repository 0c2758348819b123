"""Replacing one layer of a model by a small block of new layers: the shared part of the architecture steps
(low rank, separable, shared filters) and of their structure ops.

A step replaces the layer named ``fc1`` by an ``nn.Sequential`` in its place, so the new layers are named
``fc1.0``, ``fc1.1`` (later steps name them so). Its structure op lists, per layer, what is needed to build
the same block with the right shapes on a fresh copy of the architecture; the file's tensors are decoded
into it afterwards. Every field an op carries is checked here before anything is built from it.
"""

from __future__ import annotations

import torch
from torch import nn

from core.format.structure import StructureError
from core.methods.codebooks import shared_of

QUANTIZED_FIRST = "changing the architecture must come before quantize"


def replace_module(model: nn.Module, name: str, new: nn.Module) -> None:
    """Put ``new`` in the place of the submodule ``name`` (a dotted path)."""
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, new)


def module_at(model: nn.Module, name, types: tuple[type, ...], what: str) -> nn.Module:
    """The submodule ``name`` if it is one of ``types``; StructureError naming it otherwise."""
    if not isinstance(name, str) or not name:
        raise StructureError(f"a {what} op names no layer")
    module = dict(model.named_modules()).get(name)
    if not isinstance(module, types):
        raise StructureError(f"a {what} op names {name!r}, which is not a "
                             f"{' or '.join(t.__name__ for t in types)} of this architecture")
    if shared_of(module) is not None:
        raise StructureError(f"{name} is quantized; {QUANTIZED_FIRST}")
    return module


def op_entries(op: dict, what: str) -> list[dict]:
    """The op's ``layers`` list of mappings, checked to be one."""
    entries = op.get("layers")
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise StructureError(f"a {what} op's layers must be a list of mappings")
    return entries


def op_int(entry: dict, key: str, low: int, high: int, what: str) -> int:
    """``entry[key]``, an integer in [low, high]; StructureError otherwise."""
    value = entry.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise StructureError(f"a {what} op's {key} must be an integer in [{low}, {high}]; got {value!r}")
    return value


def plain_weight(module: nn.Module) -> torch.Tensor:
    """The layer's weight as it computes with it (a pruned layer's masked values), detached, float32."""
    from core.methods.masks import weight_of

    return weight_of(module).detach().float()


def conv_like(conv: nn.Conv2d, in_channels: int, out_channels: int, kernel, stride, padding, dilation,
              groups: int = 1, bias: bool = False) -> nn.Conv2d:
    """A Conv2d on ``conv``'s device and dtype, with its padding mode."""
    weight = conv.weight
    return nn.Conv2d(in_channels, out_channels, kernel, stride, padding, dilation, groups, bias,
                     padding_mode=conv.padding_mode, device=weight.device, dtype=weight.dtype)
