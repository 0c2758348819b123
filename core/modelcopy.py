"""Copying a model without stalling other threads.

``copy.deepcopy`` copies a plain tensor (a buffer, a mask, a parametrization's cached value) through its
storage, and that copy holds the interpreter lock: a quarter of a second for a 100 MB model, during which
the studio's UI thread cannot run. :func:`clone_module` gives deepcopy torch-made clones of every parameter
and buffer first (torch copies them with the lock released) and lets deepcopy do the rest, so the copy is
the same.
"""

from __future__ import annotations

import copy
import itertools

import torch
from torch import nn


def _clone(t: torch.Tensor) -> torch.Tensor:
    data = t.detach().clone(memory_format=torch.preserve_format)
    if isinstance(t, nn.Parameter):
        return type(t)(data, t.requires_grad)
    return data.requires_grad_(t.requires_grad)


def clone_module(module: nn.Module) -> nn.Module:
    """``copy.deepcopy(module)``: new parameters and buffers with equal values, the same structure.

    A tensor reached twice (a tied weight) is cloned once and stays shared in the copy.
    """
    memo: dict[int, object] = {}
    for t in itertools.chain(module.parameters(), module.buffers()):
        if id(t) not in memo and t.layout == torch.strided and not t.is_quantized:
            memo[id(t)] = _clone(t)
    return copy.deepcopy(module, memo)
