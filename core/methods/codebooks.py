"""Shared weights: k-means weight sharing, uniform k-bit levels, binary and ternary weights.

Every method ends in the same form, :class:`Shared`: a codebook of levels (one per layer, or one per output
channel) and, for each weight, the index of its level; pruned weights stay exactly zero. ``Shared`` is a
parametrization, so the model computes with ``codebook[codes] * mask`` and training the model trains the
codebook: each centroid's gradient is the sum of its weights' gradients (Deep Compression, section 3.3).

k-means here is exact Lloyd iteration in one dimension, done on sorted values with prefix sums: each
iteration costs O(k log n) instead of O(n k), which is why it beats a general-purpose k-means.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn.utils import parametrize

from core.analysis.stats import CHUNK
from core.methods.masks import current_mask


@dataclass(frozen=True)
class KMeansResult:
    centroids: np.ndarray  # (k,) ascending
    inertia: float  # sum of squared distances to the assigned centroid
    iterations: int


def kmeans_1d(values: np.ndarray, k: int, init: np.ndarray | None = None, max_iter: int = 1000) -> KMeansResult:
    """Lloyd's k-means on 1-D ``values`` from ``init`` (default: ``k`` points spaced linearly from min to
    max), iterated until no assignment changes. Empty clusters keep their previous centroid."""
    x = np.sort(np.asarray(values, dtype=np.float64).ravel())
    if x.size == 0:
        raise ValueError("k-means of no values")
    centroids = np.linspace(x[0], x[-1], k) if init is None else np.sort(np.asarray(init, np.float64))
    prefix = np.concatenate([[0.0], np.cumsum(x)])
    prefix_sq = np.concatenate([[0.0], np.cumsum(x * x)])
    bounds = None
    for iteration in range(1, max_iter + 1):
        midpoints = (centroids[1:] + centroids[:-1]) / 2
        new_bounds = np.concatenate([[0], np.searchsorted(x, midpoints, side="right"), [x.size]])
        if bounds is not None and np.array_equal(new_bounds, bounds):
            break
        bounds = new_bounds
        counts = np.diff(bounds)
        sums = prefix[bounds[1:]] - prefix[bounds[:-1]]
        centroids = np.where(counts > 0, sums / np.maximum(counts, 1), centroids)
        order = np.argsort(centroids, kind="stable")
        centroids = centroids[order]
    counts = np.diff(bounds)
    sums = prefix[bounds[1:]] - prefix[bounds[:-1]]
    sums_sq = prefix_sq[bounds[1:]] - prefix_sq[bounds[:-1]]
    inertia = float(np.sum(sums_sq - 2 * centroids * sums + counts * centroids ** 2))
    return KMeansResult(centroids, max(inertia, 0.0), iteration)


def assign(values: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    """Index of the nearest level of an ascending ``codebook`` for each value (int64; see :func:`codes_of`)."""
    midpoints = (codebook[1:] + codebook[:-1]) / 2
    return torch.bucketize(values, midpoints.to(values.dtype))


def codes_of(values: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    """:func:`assign` as one byte per value (a codebook has at most 256 levels), without an int64 copy of the
    whole layer on the way."""
    midpoints = (codebook[1:] + codebook[:-1]) / 2
    flat = values.reshape(-1)
    out = torch.empty(flat.shape, dtype=torch.uint8, device=flat.device)
    for start in range(0, flat.numel(), CHUNK):
        out[start:start + CHUNK] = torch.bucketize(flat[start:start + CHUNK], midpoints.to(values.dtype),
                                                   out_int32=True)
    return out.reshape(values.shape)


class Shared(nn.Module):
    """Parametrization: ``weight = levels[codes] * mask``, where ``levels`` is the codebook (per tensor,
    shape ``(k,)``) or one codebook per output channel (shape ``(channels, k)``).

    Codes take one byte per weight (at most 256 levels). The float weights the codes were made from are
    not kept: :func:`quantize_layer` leaves a zero-stride placeholder as the parametrization's original,
    since a shared-weight layer's value is its codebook, codes and mask alone."""

    def __init__(self, codebook: torch.Tensor, codes: torch.Tensor, mask: torch.Tensor, method: str, bits: int,
                 trainable: bool = True) -> None:
        super().__init__()
        # a Parameter is shared as it is (one codebook for several layers: training it sums their gradients)
        self.codebook = (codebook if isinstance(codebook, nn.Parameter)
                         else nn.Parameter(codebook.clone().float(), requires_grad=trainable))
        if codebook.shape[-1] > 256:
            raise ValueError(f"a codebook of {codebook.shape[-1]} levels does not fit one byte per code")
        self.register_buffer("packed", codes.to(torch.uint8), persistent=False)
        self.register_buffer("mask", mask.to(torch.bool), persistent=False)
        self.method, self.bits = method, bits

    @property
    def codes(self) -> torch.Tensor:
        """Each weight's level index, as int64 (a new tensor: the encoder reads :attr:`packed`, one byte each)."""
        return self.packed.long()

    @property
    def per_channel(self) -> bool:
        return self.codebook.ndim == 2

    def forward(self, original: torch.Tensor) -> torch.Tensor:
        if self.per_channel:
            flat = self.packed.reshape(self.packed.shape[0], -1).long()
            values = torch.gather(self.codebook, 1, flat).reshape(self.packed.shape)
        else:
            values = self.codebook[self.packed.int()]  # uint8 would index as a mask
        # the levels stay float32 (they train); the layer computes in its own dtype (float16, bfloat16)
        return (values * self.mask).to(original.dtype)


def _kept(weight: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return weight.detach()[mask].float()


def kmeans_shared(weight: torch.Tensor, mask: torch.Tensor, bits: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Codebook (2**bits centroids, linear initialisation) and codes for the kept weights."""
    kept = _kept(weight, mask)
    k = min(2 ** bits, max(1, kept.numel()))
    result = kmeans_1d(kept.numpy(), k)
    codebook = torch.from_numpy(result.centroids).float()
    return codebook, codes_of(weight.detach().float(), codebook)


def uniform_shared(weight: torch.Tensor, mask: torch.Tensor, bits: int, per_channel: bool,
                   symmetric: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Evenly spaced levels: symmetric (2**(bits-1) - 1 steps each side of an exact zero; at 1 bit, +-the
    mean magnitude) or affine (2**bits levels from min to max, zero exactly representable), per tensor or
    per output channel."""
    w = (weight.detach().float() * mask)
    rows = w.reshape(w.shape[0], -1) if per_channel else w.reshape(1, -1)
    if symmetric and bits == 1:  # two levels, +-s: s is the mean magnitude of the kept weights, as binary
        kept = mask.reshape(rows.shape)
        scale = (rows.abs() * kept).sum(1) / kept.sum(1).clamp(min=1)
        levels = torch.stack([-scale, scale], 1)
    elif symmetric:
        half = max(2 ** (bits - 1) - 1, 1)
        scale = rows.abs().amax(1).clamp(min=1e-12) / half
        levels = torch.arange(-half, half + 1, dtype=torch.float32)[None, :] * scale[:, None]
    else:
        lo, hi = rows.amin(1).clamp(max=0.0), rows.amax(1).clamp(min=0.0)
        scale = ((hi - lo) / (2 ** bits - 1)).clamp(min=1e-12)
        zero_point = torch.round(-lo / scale)
        levels = (torch.arange(2 ** bits, dtype=torch.float32)[None, :] - zero_point[:, None]) * scale[:, None]
    codes = torch.stack([codes_of(r, lv) for r, lv in zip(rows, levels)]).reshape(w.shape)
    return (levels if per_channel else levels[0]), codes


def binary_shared(weight: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """BinaryConnect-style: +-alpha with alpha = mean |w| of the kept weights."""
    alpha = _kept(weight, mask).abs().mean() if mask.any() else torch.tensor(0.0)
    return torch.stack([-alpha, alpha]), (weight.detach() > 0).to(torch.uint8), mask


def ternary_shared(weight: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Ternary weight networks: weights within delta = 0.7 mean |w| become 0 (pruned), the rest +-alpha."""
    w = weight.detach().float()
    delta = 0.7 * _kept(w, mask).abs().mean() if mask.any() else torch.tensor(0.0)
    mask = mask & (w.abs() > delta)
    alpha = w[mask].abs().mean() if mask.any() else torch.tensor(0.0)
    return torch.stack([-alpha, alpha]), (w > 0).to(torch.uint8), mask


def _kmeans(weight, mask, bits, per_channel, symmetric):
    codebook, codes = kmeans_shared(weight, mask, bits)
    return codebook, codes, mask, bits


def _uniform(weight, mask, bits, per_channel, symmetric):
    codebook, codes = uniform_shared(weight, mask, bits, per_channel, symmetric)
    return codebook, codes, mask, bits


def _binary(weight, mask, bits, per_channel, symmetric):
    return (*binary_shared(weight, mask), 1)


def _ternary(weight, mask, bits, per_channel, symmetric):
    return (*ternary_shared(weight, mask), 1)  # the zeros are pruned positions; kept weights need one bit of sign


METHODS: dict[str, Callable] = {"uniform": _uniform, "kmeans": _kmeans, "binary": _binary, "ternary": _ternary}
"""How a layer's weights become shared levels: name -> ``f(weight, mask, bits, per_channel, symmetric)``
returning (codebook, codes, mask, bits per index)."""
TRAINABLE = {"kmeans", "binary", "ternary"}  # codebooks trained by fine-tuning (uniform levels are fixed)


def _unparametrized(module: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """The layer's weights as it computes with them (no copy) and its mask, its parametrizations removed
    (the new parametrization carries the mask on)."""
    mask = current_mask(module)
    mask = torch.ones_like(module.weight, dtype=torch.bool) if mask is None else mask.clone()
    if parametrize.is_parametrized(module, "weight"):
        parametrize.remove_parametrizations(module, "weight", leave_parametrized=True)
    return module.weight.detach(), mask


def quantize_layer(module: nn.Module, method: str, bits: int, per_channel: bool = False,
                   symmetric: bool = True) -> Shared:
    """Replace ``module.weight`` by shared weights (keeping any pruning mask); returns the parametrization."""
    if method not in METHODS:
        raise ValueError(f"unknown quantization method {method!r}")
    weight, mask = _unparametrized(module)
    codebook, codes, mask, bits_used = METHODS[method](weight, mask, bits, per_channel, symmetric)
    shared = Shared(codebook, codes, mask, method, bits_used, trainable=method in TRAINABLE)
    del weight, codes
    _install(module, shared)
    return shared


def quantize_layers_global(modules: list[nn.Module], bits: int) -> nn.Parameter:
    """k-means weight sharing with ONE codebook for all ``modules``: 2**bits centroids (linear initialisation)
    of the union of their kept weights; each layer's weights become indices into it. Returns the codebook:
    a single Parameter that every layer's :class:`Shared` holds, so fine-tuning trains it with the gradients
    of all the layers (and the file stores it once)."""
    if not modules:
        raise ValueError("a global codebook needs at least one layer")
    prepared = [_unparametrized(m) for m in modules]
    kept = torch.cat([_kept(w, mask) for w, mask in prepared])
    k = min(2 ** bits, max(1, kept.numel()))
    codebook = nn.Parameter(torch.from_numpy(kmeans_1d(kept.numpy(), k).centroids).float())
    del kept
    for module, (weight, mask) in zip(modules, prepared):
        _install(module, Shared(codebook, codes_of(weight.float(), codebook.detach()), mask, "kmeans", bits))
    return codebook


def _install(module: nn.Module, shared: Shared) -> None:
    parametrize.register_parametrization(module, "weight", shared, unsafe=True)
    original = module.parametrizations.weight.original  # unused by Shared: free its memory
    placeholder = torch.zeros((), dtype=original.dtype, device=original.device).expand(original.shape)
    # the layer stays as trainable as it was (Shared ignores the original, so it never gets a gradient)
    module.parametrizations.weight.original = nn.Parameter(placeholder, requires_grad=original.requires_grad)


class FakeQuant(nn.Module):
    """Parametrization for quantization-aware fine-tuning: the forward pass sees the uniformly quantized
    weights, the backward pass passes gradients straight through to the float weights."""

    def __init__(self, mask: torch.Tensor, bits: int, per_channel: bool, symmetric: bool) -> None:
        super().__init__()
        self.register_buffer("mask", mask.to(torch.bool), persistent=False)
        self.bits, self.per_channel, self.symmetric = bits, per_channel, symmetric

    def forward(self, original: torch.Tensor) -> torch.Tensor:
        w = original * self.mask
        levels, codes = uniform_shared(w, self.mask, self.bits, self.per_channel, self.symmetric)
        if self.per_channel:
            q = torch.gather(levels, 1, codes.reshape(codes.shape[0], -1).long()).reshape(w.shape)
        else:
            q = levels[codes.int()]
        return w + (q * self.mask - w).detach()


def fake_quantize_layer(module: nn.Module, bits: int, per_channel: bool, symmetric: bool) -> None:
    """Put a layer into quantization-aware training (see :class:`FakeQuant`), keeping its pruning mask."""
    mask = current_mask(module)
    mask = torch.ones_like(module.weight, dtype=torch.bool) if mask is None else mask.clone()
    if parametrize.is_parametrized(module, "weight"):
        parametrize.remove_parametrizations(module, "weight", leave_parametrized=True)
    parametrize.register_parametrization(module, "weight", FakeQuant(mask, bits, per_channel, symmetric))


def shared_of(module: nn.Module) -> Shared | None:
    if not parametrize.is_parametrized(module, "weight"):
        return None
    for p in module.parametrizations["weight"]:
        if isinstance(p, Shared):
            return p
    return None
