"""The layer inventory: every module that owns parameters, with its size, sparsity and dtype."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class LayerInfo:
    """One module that owns parameters directly (not through children).

    ``shape`` is its ``weight``'s shape (or its first parameter's); ``params`` and ``bytes`` count all its
    own parameters; ``sparsity`` is the fraction of them that are exactly zero.
    """

    name: str
    type: str
    shape: tuple[int, ...]
    params: int
    bytes: int
    sparsity: float
    dtype: str


@dataclass(frozen=True)
class Inventory:
    """All layers in model order, and totals over distinct parameters (shared ones counted once)."""

    layers: tuple[LayerInfo, ...]
    params: int
    bytes: int
    zeros: int

    @property
    def sparsity(self) -> float:
        return self.zeros / self.params if self.params else 0.0

    def layer(self, name: str) -> LayerInfo:
        for info in self.layers:
            if info.name == name:
                return info
        raise KeyError(name)


def kept_fraction(zeros: int, count: int) -> float:
    """The share of ``count`` values that are kept (not exactly zero): the one definition every view of a
    model (layer table, compare view, reports) uses, from its tensors' zero counts."""
    return 1.0 - zeros / count if count else 0.0


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def inventory(model: nn.Module, module_types: dict[str, str] | None = None) -> Inventory:
    """The layer inventory of ``model``. ``module_types`` overrides type names (see ``LoadedModel``)."""
    module_types = module_types or {}
    layers = []
    seen: set[int] = set()
    total_params = total_bytes = total_zeros = 0
    for name, module in model.named_modules():
        own = list(module.parameters(recurse=False))
        if not own:
            continue
        zeros = [p.numel() - int(torch.count_nonzero(p.detach())) for p in own]
        for p, z in zip(own, zeros):
            if id(p) not in seen:  # a parameter shared by two layers counts once in the totals
                seen.add(id(p))
                total_params += p.numel()
                total_bytes += p.numel() * p.element_size()
                total_zeros += z
        weight = getattr(module, "weight", None)
        shape = tuple((weight if isinstance(weight, torch.Tensor) else own[0]).shape)
        params = sum(p.numel() for p in own)
        type_name = module_types.get(name) or getattr(module, "original_name", None) or type(module).__name__
        layers.append(LayerInfo(name, type_name, shape, params, sum(p.numel() * p.element_size() for p in own),
                                1.0 - kept_fraction(sum(zeros), params) if params else 0.0,
                                "/".join(sorted({_dtype_name(p.dtype) for p in own}))))
    return Inventory(tuple(layers), total_params, total_bytes, total_zeros)
