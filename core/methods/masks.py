"""Unstructured magnitude pruning: masks that zero the smallest weights and stay in force while training.

The k-th smallest magnitude is found exactly without sorting: the weights' bucket counts (the same
one-pass counts :mod:`core.analysis.stats` uses) locate the bucket that holds it, and only that bucket's few
values are ranked. Exactly ``round(sparsity * n)`` weights are pruned; ties at the threshold are broken
by layer order, then position.

Masks are applied with ``torch.nn.utils.parametrize``: the layer's ``weight`` becomes ``original * mask``,
so gradients of pruned weights are zero and fine-tuning cannot revive them; ``bake`` makes it permanent.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
from torch import nn
from torch.nn.utils import parametrize

from core.analysis.stats import CHUNK, FINITE, SIGN, raw_bucket_counts


def prunable_layers(model: nn.Module) -> dict[str, nn.Module]:
    """Modules with a ``weight`` parameter of two or more dimensions (Linear, Conv, Embedding, ...)."""
    out = {}
    for name, module in model.named_modules():
        weight = weight_of(module)
        if weight is not None and weight.ndim >= 2:
            out[name] = module
    return out


def weight_of(module: nn.Module) -> torch.Tensor | None:
    """The layer's weight tensor as the model computes with it (through any parametrization)."""
    if parametrize.is_parametrized(module, "weight"):
        return module.weight
    weight = module._parameters.get("weight") if hasattr(module, "_parameters") else None
    return weight if isinstance(weight, torch.Tensor) else None


def _magnitude_counts(tensor: torch.Tensor) -> np.ndarray:
    raw = raw_bucket_counts(tensor)
    return raw[:FINITE] + raw[SIGN:SIGN + FINITE]


def _bucket_of(tensor: torch.Tensor) -> torch.Tensor:
    """Magnitude bucket (top 16 bits without the sign) of each element, as int32."""
    flat = tensor.detach().reshape(-1)
    if flat.dtype != torch.float32:
        flat = flat.float()
    return (flat.view(torch.int32) >> 16) & 0x7FFF


def kth_smallest_magnitude(tensors: list[torch.Tensor], k: int) -> tuple[float, int]:
    """The k-th smallest |w| over all ``tensors`` (1 <= k <= total), and how many |w| are strictly smaller."""
    counts = sum(_magnitude_counts(t) for t in tensors)
    cumulative = np.cumsum(counts)
    if not 1 <= k <= cumulative[-1]:
        raise ValueError(f"k={k} outside 1..{int(cumulative[-1])}")
    bucket = int(np.searchsorted(cumulative, k))
    before = int(cumulative[bucket - 1]) if bucket else 0
    candidates = []
    for t in tensors:
        flat = t.detach().reshape(-1)
        for start in range(0, flat.numel(), CHUNK):
            chunk = flat[start:start + CHUNK]
            candidates.append(chunk[_bucket_of(chunk) == bucket].abs().float())
    values = torch.cat(candidates)
    value = torch.kthvalue(values, k - before).values
    return float(value), before + int((values < value).sum())


def magnitude_masks(weights: Mapping[str, torch.Tensor], sparsity: float | Mapping[str, float],
                    scope: str = "layer") -> dict[str, torch.Tensor]:
    """Boolean keep-masks pruning the smallest-magnitude weights.

    ``scope="layer"``: each tensor loses ``round(sparsity[name] * numel)`` weights. ``scope="global"``:
    ``round(sparsity * total)`` weights go across all tensors under one threshold (``sparsity`` a float).
    """
    if scope == "global":
        if not isinstance(sparsity, (int, float)):
            raise ValueError("global pruning takes one sparsity for all layers")
        return _masks_below(dict(weights), round(sparsity * sum(w.numel() for w in weights.values())))
    masks = {}
    for name, w in weights.items():
        s = sparsity[name] if isinstance(sparsity, Mapping) else sparsity
        masks.update(_masks_below({name: w}, round(s * w.numel())))
    return masks


def _masks_below(weights: dict[str, torch.Tensor], k: int) -> dict[str, torch.Tensor]:
    if k <= 0:
        return {name: torch.ones_like(w, dtype=torch.bool) for name, w in weights.items()}
    threshold, smaller = kth_smallest_magnitude(list(weights.values()), k)
    ties_to_prune = k - smaller
    masks = {}
    for name, w in weights.items():
        flat = w.detach().reshape(-1)
        mask = torch.empty(flat.shape, dtype=torch.bool, device=flat.device)
        for start in range(0, flat.numel(), CHUNK):  # chunk by chunk: no |w| copy of a whole layer
            magnitude = flat[start:start + CHUNK].abs()
            mask[start:start + CHUNK] = magnitude > threshold
            # prune exactly k: of the weights equal to the threshold, the first ``ties_to_prune`` (in layer
            # order, then index order) go and every later one stays, in this layer and all the next ones
            ties = torch.nonzero(magnitude == threshold).reshape(-1) + start
            mask[ties[ties_to_prune:]] = True
            ties_to_prune -= min(ties_to_prune, len(ties))
        masks[name] = mask.reshape(w.shape)
    return masks


class Masked(nn.Module):
    """Parametrization: ``weight = original * mask`` (mask is a buffer, moved with the module)."""

    def __init__(self, mask: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("mask", mask.to(torch.bool), persistent=False)

    def forward(self, original: torch.Tensor) -> torch.Tensor:
        return original * self.mask


def apply_masks(model: nn.Module, masks: Mapping[str, torch.Tensor]) -> None:
    """Zero the pruned weights now and keep them zero: each masked layer's weight becomes original * mask.

    A layer already masked gets the intersection of its old and new mask.
    """
    modules = dict(model.named_modules())
    for name, mask in masks.items():
        module = modules[name]
        existing = current_mask(module)
        if existing is not None:
            existing.mul_(mask.to(existing.device))
            continue
        with torch.no_grad():
            module.weight.mul_(mask)
        # unsafe: Masked keeps shape and dtype, so the check (one more evaluation of the layer) is skipped
        parametrize.register_parametrization(module, "weight", Masked(mask.to(module.weight.device)), unsafe=True)


def current_mask(module: nn.Module) -> torch.Tensor | None:
    if not parametrize.is_parametrized(module, "weight"):
        return None
    for p in module.parametrizations["weight"]:
        if isinstance(p, Masked):
            return p.mask
    return None


def bake(model: nn.Module) -> None:
    """Make every parametrized weight a plain parameter again, keeping its current (masked) value."""
    for module in model.modules():
        if parametrize.is_parametrized(module):
            for tensor_name in list(module.parametrizations.keys()):
                parametrize.remove_parametrizations(module, tensor_name, leave_parametrized=True)
