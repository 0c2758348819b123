"""One layer's weight at one setting of one method, for sensitivity analysis, and what it costs in the file.

Each method turns the layer's weight ``W`` into the weight the compressed layer computes with, and prices
that layer's tensor with the container's own byte account (:func:`core.format.container.price`):

- ``prune``: level = sparsity; the ``round(level * n)`` smallest magnitudes become zero
  (:func:`core.methods.masks.magnitude_masks`); priced as a pruned float tensor (``sparse_raw``).
- ``quantize``: level = bits; k-means (:func:`core.methods.codebooks.kmeans_shared`, the project's exact
  1-D k-means) or symmetric uniform levels; priced as a dense quantized tensor (codebook + Huffman codes).
- ``low_rank``: level = rank fraction; rank ``max(1, round(level * min(m, n)))`` of the layer's matrix
  (:func:`core.methods.low_rank.weight_matrix`). The layer computes with the product of the two SVD factors
  (equal, up to float rounding, to the two layers :func:`~core.methods.low_rank.factorise` makes); priced as
  the two factors stored raw. A rank at or above break-even, or a layer low rank does not apply to, is skipped.

A setting that leaves every weight as it was is skipped too: it measures nothing, so it must not read as
"robust".
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from core.format.container import WeightCode, price
from core.methods.codebooks import kmeans_shared, uniform_shared
from core.methods.low_rank import break_even, low_rank_targets, matrix_shape, weight_matrix
from core.methods.masks import magnitude_masks

METHODS = ("prune", "quantize", "low_rank")
QUANTIZERS = ("kmeans", "uniform")
DEFAULT_LEVELS = {"prune": (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95),
                  "quantize": (8, 7, 6, 5, 4, 3, 2, 1),
                  "low_rank": (0.05, 0.1, 0.2, 0.3, 0.4, 0.5)}
LEVEL_NAMES = {"prune": "sparsity", "quantize": "bits", "low_rank": "rank fraction"}


@dataclass(frozen=True)
class Setting:
    """A layer's weight at one level (None when the level is ``skipped``, with the reason) and its bytes."""

    weight: torch.Tensor | None
    bytes: int | None
    skipped: str | None = None


def check_level(method: str, level: float) -> str | None:
    """Why ``level`` is not a setting of ``method``, or None."""
    if method == "prune" and not 0.0 < level < 1.0:
        return f"a sparsity must be in (0, 1); got {level:g}"
    if method == "quantize" and (level != int(level) or not 1 <= level <= 8):
        return f"bits must be a whole number from 1 to 8; got {level:g}"
    if method == "low_rank" and not 0.0 < level <= 1.0:
        return f"a rank fraction must be in (0, 1]; got {level:g}"
    return None


def _tensor_bytes(name: str, tensor: torch.Tensor, code: WeightCode | None) -> int:
    return price({name: tensor}, {name: code} if code is not None else {}, {}).tensors[0].bytes


def original_bytes(name: str, weight: torch.Tensor) -> int:
    """The layer's weight stored uncompressed in the file (as the container stores a raw tensor)."""
    return _tensor_bytes(f"{name}.weight", weight, None)


def rank_at(module: nn.Module, fraction: float) -> int:
    """The rank a rank fraction stands for on ``module``'s matrix: ``max(1, round(fraction * min(m, n)))``."""
    m, n = matrix_shape(module)
    return max(1, round(fraction * min(m, n)))


def setting(name: str, module: nn.Module, weight: torch.Tensor, method: str, level: float,
            quantizer: str = "kmeans") -> Setting:
    """Layer ``name``'s weight (``weight``: its current value, float) at ``level`` of ``method``."""
    key = f"{name}.weight"
    if method == "prune":
        mask = magnitude_masks({key: weight}, float(level))[key]
        new = weight * mask
        cost = _tensor_bytes(key, weight, WeightCode(mask, None, None, new))
    elif method == "quantize":
        everything = torch.ones_like(weight, dtype=torch.bool)
        bits = int(level)
        if quantizer == "kmeans":
            codebook, codes = kmeans_shared(weight, everything, bits)
        else:
            codebook, codes = uniform_shared(weight, everything, bits, per_channel=False, symmetric=True)
        new = codebook[codes.int()].reshape(weight.shape)
        cost = _tensor_bytes(key, weight, WeightCode(None, codes, codebook, new))
    elif method == "low_rank":
        if "" not in low_rank_targets(module):  # the module itself is a target
            return Setting(None, None, "low rank applies to Linear and ungrouped Conv2d layers only")
        rank = rank_at(module, level)
        if rank >= break_even(module):
            return Setting(None, None, f"rank {rank} is at or above break-even {break_even(module):.1f}")
        u, s, vh = torch.linalg.svd(weight_matrix(module), full_matrices=False)
        left, right = u[:, :rank] * s[:rank], vh[:rank]
        new = (left @ right).reshape(weight.shape)
        cost = _tensor_bytes(f"{key}.0", right, None) + _tensor_bytes(f"{key}.1", left, None)
    else:
        raise ValueError(f"unknown method {method!r}")
    if torch.equal(new, weight):
        return Setting(None, None, "changes no weight")
    return Setting(new, cost)

