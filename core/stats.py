"""Per-layer weight statistics from one pass over the weights, without copying the model.

Each layer's weights are counted once into 65,536 buckets keyed by the top 16 bits of each float32 (its
bfloat16 truncation: sign, exponent, 7 mantissa bits). The counts are exact; every histogram and summary
here is derived from them: histograms of w, |w| and log10|w| at any binning, min/max/mean/std (each value
taken at its bucket's midpoint, so within 0.4% of the true value), the fraction of weights near zero, and
the fraction below any pruning threshold. Large CPU float32 tensors are counted by a compiled kernel
(:mod:`core._bucket_kernel`, numba); others by torch in bounded chunks, on whatever device they live.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from core.progress import Progress, Task

N_BUCKETS = 65536
KERNEL_MIN_ELEMENTS = 1 << 21  # below this, torch is as fast as the compiled kernel and needs no JIT
CHUNK = 1 << 20  # elements per torch chunk: bounds temporary memory to a few MB
NEAR_ZERO_TOL = 0.01  # "near zero": |w| <= 1% of the layer's largest |w|


# --------------------------------------------------------------------------------------------- buckets

@dataclass(frozen=True)
class Histogram:
    """``counts[i]`` values fell in ``[edges[i], edges[i + 1])``; ``log`` means the edges are log10 values."""

    edges: np.ndarray
    counts: np.ndarray
    log: bool = False



@functools.lru_cache(maxsize=1)
def _bucket_table() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per raw bucket h (the top 16 bits): the |value| range [lo, hi) it holds, and whether it is finite."""
    mag = np.arange(N_BUCKETS, dtype=np.uint32) & 0x7FFF
    finite = (mag & 0x7F80) != 0x7F80
    with np.errstate(invalid="ignore", over="ignore"):
        lo = (mag << 16).view(np.float32).astype(np.float64)
        hi = (np.where(finite, mag + 1, mag) << 16).view(np.float32).astype(np.float64)
    hi = np.where(np.isfinite(hi), hi, lo * (1 + 2.0 ** -7))  # the top finite bucket's edge is inf
    return np.where(finite, lo, np.nan), np.where(finite, hi, np.nan), finite


def _cdf(x: np.ndarray, lo: np.ndarray, hi: np.ndarray, cumulative: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Count of values below each ``x``, from buckets [lo, hi) sorted ascending, mass uniform within a bucket."""
    i = np.clip(np.searchsorted(hi, x, side="right"), 0, len(hi) - 1)
    inside = np.clip((x - lo[i]) / np.maximum(hi[i] - lo[i], 1e-300), 0.0, 1.0)
    return np.where(x >= hi[-1], cumulative[-1], cumulative[i] - counts[i] + counts[i] * inside)


def _fold_signs(ids: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Merge each +/- bucket pair into one |w| bucket; returns finite magnitude buckets in ascending order."""
    _, _, finite = _bucket_table()
    keep = finite[ids]
    m_ids, where = np.unique(ids[keep] & 0x7FFF, return_inverse=True)
    return m_ids, np.bincount(where, weights=counts[keep], minlength=len(m_ids)).astype(np.int64)


def _histogram(edges: np.ndarray, lo, hi, counts, log: bool = False) -> Histogram:
    if not len(counts):
        return Histogram(edges, np.zeros(len(edges) - 1, np.int64), log)
    cumulative = np.cumsum(counts)
    at = _cdf(10.0 ** edges if log else edges, lo, hi, cumulative, counts.astype(np.float64))
    return Histogram(edges, np.diff(np.rint(at)).astype(np.int64), log)


def _torch_counts(flat: torch.Tensor) -> np.ndarray:
    counts = torch.zeros(N_BUCKETS, dtype=torch.int64, device=flat.device)
    for start in range(0, flat.numel(), CHUNK):
        chunk = flat[start:start + CHUNK]
        if chunk.dtype != torch.float32:
            chunk = chunk.to(torch.float32)
        top = (chunk.view(torch.int32) >> 16) & 0xFFFF
        counts += torch.bincount(top.to(torch.int64), minlength=N_BUCKETS)
    return counts.cpu().numpy()


@functools.lru_cache(maxsize=1)
def _kernel():
    try:
        from core._bucket_kernel import top16_counts
    except ImportError:  # numba missing: torch does it, slower
        return None
    return top16_counts


def raw_bucket_counts(tensor: torch.Tensor, use_kernel: bool | None = None) -> np.ndarray:
    """Exact counts ``(65536,)`` of ``tensor``'s values by the top 16 bits of their float32 bit pattern.

    Reads the tensor in place (no copy of a contiguous float32 tensor). ``use_kernel`` forces (True) or
    forbids (False) the compiled kernel; by default it runs for large CPU float32 tensors.
    """
    t = tensor.detach()
    if not t.is_contiguous():
        return sum((raw_bucket_counts(part, use_kernel) for part in t.unbind(0)),
                   np.zeros(N_BUCKETS, np.int64))
    flat = t.reshape(-1)
    eligible = flat.device.type == "cpu" and flat.dtype == torch.float32
    if use_kernel is None:
        use_kernel = eligible and flat.numel() >= KERNEL_MIN_ELEMENTS
    kernel = _kernel() if use_kernel and eligible else None
    if kernel is None:
        return _torch_counts(flat)
    return kernel(flat.numpy().view(np.uint32), max(1, torch.get_num_threads()))


# --------------------------------------------------------------------------------------------- results

@dataclass(frozen=True)
class WeightStats:
    """Statistics of one layer's weights (``count`` values), all derived from exact bucket counts."""

    name: str
    count: int
    zeros: int
    nonfinite: int
    min: float
    max: float
    mean: float
    std: float
    abs_max: float
    near_zero: float
    hist: Histogram
    abs_hist: Histogram
    log_hist: Histogram
    bucket_ids: np.ndarray  # non-empty raw buckets (int64), and their counts
    bucket_counts: np.ndarray

    @property
    def sparsity(self) -> float:
        return self.zeros / self.count if self.count else 0.0

    @functools.cached_property
    def _magnitudes(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        lo, hi, _ = _bucket_table()
        ids, counts = _fold_signs(self.bucket_ids, self.bucket_counts)
        return lo[ids], hi[ids], np.cumsum(counts), counts.astype(np.float64)

    def fraction_below(self, threshold: float) -> float:
        """Fraction of weights with |w| below ``threshold`` (uniform within a 0.8%-wide bucket)."""
        lo, hi, cumulative, counts = self._magnitudes
        if not self.count or not len(lo):
            return 0.0
        return float(_cdf(np.array([threshold]), lo, hi, cumulative, counts)[0]) / self.count

    def threshold_for(self, fraction: float) -> float:
        """The |w| threshold with ``fraction`` of the weights below it (inverse of :meth:`fraction_below`)."""
        lo, hi, cumulative, counts = self._magnitudes
        if fraction <= 0 or not len(lo):
            return 0.0
        target = min(fraction, 1.0) * cumulative[-1]
        i = min(int(np.searchsorted(cumulative, target)), len(lo) - 1)
        inside = (target - (cumulative[i] - counts[i])) / counts[i]
        return float(lo[i] + (hi[i] - lo[i]) * inside)


def stats_from_counts(name: str, raw_counts: np.ndarray, bins: int = 128, log_bins: int = 64,
                      near_zero_tol: float = NEAR_ZERO_TOL, log_decades: int = 10) -> WeightStats:
    """Summaries and histograms from raw bucket counts (see :func:`raw_bucket_counts`).

    Histogram bins split a bucket that straddles their edge in proportion to the overlap. The log10|w|
    histogram spans at most ``log_decades`` decades below the largest |w|; its first bin holds the rest.
    """
    lo, hi, finite = _bucket_table()
    ids = np.flatnonzero(raw_counts)
    ids = ids[finite[ids]]
    counts = raw_counts[ids].astype(np.int64)
    total, n = int(raw_counts.sum()), int(counts.sum())
    negative = ids >= 0x8000
    mags = (lo[ids] + hi[ids]) / 2
    values = np.where(negative, -mags, mags)
    zeros = int(counts[lo[ids] == 0].sum())  # +0 and -0 (and denormals below 1e-40, which weights never are)
    if n:
        mean = float(np.dot(values, counts) / n)
        std = float(np.sqrt(max(np.dot((values - mean) ** 2, counts) / n, 0.0)))
        vmin, vmax, abs_max, edge = float(values.min()), float(values.max()), float(mags.max()), float(hi[ids].max())
    else:
        mean = std = vmin = vmax = abs_max = edge = 0.0
    edge = edge if edge > 0 else 1.0
    # signed buckets in value order: a negative bucket [lo, hi) in |w| is (-hi, -lo] in w
    s_lo = np.where(negative, -hi[ids], lo[ids])
    s_hi = np.where(negative, -lo[ids], hi[ids])
    order = np.argsort(s_lo, kind="stable")
    half = bins // 2
    hist = _histogram(np.linspace(-edge, edge, 2 * half + 1), s_lo[order], s_hi[order], counts[order])
    m_ids, m_counts = _fold_signs(ids, counts)
    abs_hist = _histogram(np.linspace(0.0, edge, half + 1), lo[m_ids], hi[m_ids], m_counts)
    nonzero = lo[m_ids] > 0
    if nonzero.any():
        top = np.ceil(np.log10(edge))
        bottom = max(np.floor(np.log10(lo[m_ids][nonzero].min())), top - log_decades)
        log_edges = np.linspace(bottom, top, log_bins + 1)
        log_hist = _histogram(log_edges, lo[m_ids][nonzero], hi[m_ids][nonzero], m_counts[nonzero], log=True)
        log_hist.counts[0] += int(m_counts[nonzero].sum()) - int(log_hist.counts.sum())  # all below the range
    else:
        log_hist = Histogram(np.linspace(-8, 0, log_bins + 1), np.zeros(log_bins, np.int64), log=True)
    near = float(counts[mags <= near_zero_tol * abs_max].sum()) / n if n else 0.0
    return WeightStats(name, total, zeros, total - n, vmin, vmax, mean, std, abs_max, near,
                       hist, abs_hist, log_hist, ids, counts)


def layer_weights(module: nn.Module) -> list[torch.Tensor]:
    """The tensors whose statistics describe a layer: its ``weight``, or else all its own parameters."""
    weight = getattr(module, "weight", None)
    if isinstance(weight, torch.Tensor) and weight.numel():
        return [weight]
    return [p for p in module.parameters(recurse=False) if p.numel()]


def weight_stats(model: nn.Module, names: Iterable[str] | None = None, bins: int = 128,
                 use_kernel: bool | None = None) -> Task[dict[str, WeightStats]]:
    """Weight statistics of every layer with parameters (or of the layers ``names``), in model order.

    Yields :class:`Progress` in units of weights counted; returns ``{qualified name: WeightStats}``.
    """
    modules = dict(model.named_modules())
    wanted = list(names) if names is not None else [n for n, m in modules.items()
                                                     if next(m.parameters(recurse=False), None) is not None]
    tensors = {name: layer_weights(modules[name]) for name in wanted}
    total = sum(t.numel() for ts in tensors.values() for t in ts)
    done = 0
    results: dict[str, WeightStats] = {}
    for name, ts in tensors.items():
        counts = np.zeros(N_BUCKETS, np.int64)
        for t in ts:
            counts += raw_bucket_counts(t, use_kernel)
            done += t.numel()
        results[name] = stats_from_counts(name, counts, bins)
        yield Progress("weights", done, total, name)
    return results
