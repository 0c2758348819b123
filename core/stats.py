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
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from core.progress import Progress, Task

N_BUCKETS = 65536
KERNEL_MIN_ELEMENTS = 1 << 21  # models (or tensors) smaller than this are counted by torch: no JIT to wait for
CHUNK = 1 << 20  # elements per torch chunk: bounds temporary memory to a few MB
NEAR_ZERO_TOL = 0.01  # "near zero": |w| <= 1% of the layer's largest |w|


# --------------------------------------------------------------------------------------------- buckets

@dataclass(frozen=True)
class Histogram:
    """``counts[i]`` values fell in ``[edges[i], edges[i + 1])``; ``log`` means the edges are log10 values."""

    edges: np.ndarray
    counts: np.ndarray
    log: bool = False



FINITE = 0x7F80  # magnitude buckets 0 .. 0x7F7F hold finite values; the rest hold inf and NaN
SIGN = 0x8000  # raw bucket h holds +|m| for h < SIGN, and -|m| for h = SIGN + m


@functools.lru_cache(maxsize=1)
def _magnitude_table() -> tuple[np.ndarray, np.ndarray]:
    """For magnitude bucket m (0 .. FINITE-1): the |value| range [lo, hi) it holds, ascending."""
    m = np.arange(FINITE + 1, dtype=np.uint32)
    edges = (m << 16).view(np.float32).astype(np.float64)
    edges[-1] = edges[-2] * (1 + 2.0 ** -7)  # the top finite bucket's upper edge is inf as a float32
    return edges[:-1], edges[1:]


@functools.lru_cache(maxsize=1)
def _signed_table() -> tuple[np.ndarray, np.ndarray]:
    """Value ranges [lo, hi) of the 2 * FINITE signed buckets in ascending order (see :func:`_split`)."""
    lo, hi = _magnitude_table()
    return np.concatenate([-hi[::-1], lo]), np.concatenate([-lo[::-1], hi])


def _split(raw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Raw counts -> (signed counts in value order, |w| counts), finite values only."""
    positive, negative = raw[:FINITE], raw[SIGN:SIGN + FINITE]
    return np.concatenate([negative[::-1], positive]), positive + negative


def _cdf(x: np.ndarray, lo: np.ndarray, hi: np.ndarray, cumulative: np.ndarray) -> np.ndarray:
    """Count of values below each ``x``: buckets [lo, hi) ascending, mass uniform within a bucket."""
    i = np.clip(np.searchsorted(hi, x, side="right"), 0, len(hi) - 1)
    inside = np.clip((x - lo[i]) / np.maximum(hi[i] - lo[i], 1e-300), 0.0, 1.0)
    before = np.where(i > 0, cumulative[np.maximum(i - 1, 0)], 0)
    within = cumulative[i] - before
    return np.where(x >= hi[-1], cumulative[-1], before + within * inside)


def _histogram(edges: np.ndarray, lo: np.ndarray, hi: np.ndarray, cumulative: np.ndarray,
               log: bool = False) -> Histogram:
    at = _cdf(10.0 ** edges if log else edges, lo, hi, cumulative)
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


@functools.lru_cache(maxsize=1)
def _pool() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=max(1, torch.get_num_threads()), thread_name_prefix="buckets")


def _kernel_counts(kernel, bits: np.ndarray) -> np.ndarray:
    workers = _pool()._max_workers
    if workers == 1 or bits.size < CHUNK // 4:
        return kernel(bits)
    return sum(_pool().map(kernel, np.array_split(bits, workers)))


def _dense(t: torch.Tensor) -> bool:
    """Whether ``t`` covers one gap-free block of its storage (any dimension order, no overlap)."""
    expected = 1
    for d in sorted(range(t.ndim), key=t.stride):
        if t.shape[d] != 1:
            if t.stride(d) != expected:
                return False
            expected *= t.shape[d]
    return True


def raw_bucket_counts(tensor: torch.Tensor, use_kernel: bool | None = None) -> np.ndarray:
    """Exact counts ``(65536,)`` of ``tensor``'s values by the top 16 bits of their float32 bit pattern.

    Reads the tensor in place (no copy of a contiguous float32 tensor). ``use_kernel`` forces (True) or
    forbids (False) the compiled kernel; by default it runs for tensors of ``KERNEL_MIN_ELEMENTS`` or more.
    It only ever runs on contiguous CPU float32 tensors; torch counts all others, on their own device.
    """
    t = tensor.detach()
    if not t.is_contiguous():
        if _dense(t):  # e.g. channels_last: the same values, stored in another order
            t = t.as_strided((t.numel(),), (1,), t.storage_offset())
        else:  # a strided view: count contiguous copies of bounded slices
            rows = max(1, CHUNK // max(1, t[0].numel())) if t.ndim else 1
            return sum((raw_bucket_counts(t[i:i + rows].contiguous(), use_kernel) for i in range(0, len(t), rows)),
                       np.zeros(N_BUCKETS, np.int64))
    flat = t.reshape(-1)
    if use_kernel is None:
        use_kernel = flat.numel() >= KERNEL_MIN_ELEMENTS
    kernel = _kernel() if use_kernel and flat.device.type == "cpu" and flat.dtype == torch.float32 else None
    if kernel is None:
        return _torch_counts(flat)
    return _kernel_counts(kernel, flat.numpy().view(np.uint32))


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
    first_bucket: int  # |w| counts of magnitude buckets first_bucket, first_bucket + 1, ... (finite only)
    magnitude_counts: np.ndarray

    @property
    def sparsity(self) -> float:
        return self.zeros / self.count if self.count else 0.0

    @functools.cached_property
    def _magnitudes(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        lo, hi = _magnitude_table()
        span = slice(self.first_bucket, self.first_bucket + len(self.magnitude_counts))
        return lo[span], hi[span], np.cumsum(self.magnitude_counts)

    def dense_magnitude_counts(self) -> np.ndarray:
        """|w| counts over all finite magnitude buckets (``(FINITE,)``), to add layers together."""
        dense = np.zeros(FINITE, np.int64)
        dense[self.first_bucket:self.first_bucket + len(self.magnitude_counts)] = self.magnitude_counts
        return dense

    def fraction_below(self, threshold: float) -> float:
        """Fraction of weights with |w| below ``threshold`` (uniform within a 0.8%-wide bucket)."""
        if not self.count or not len(self.magnitude_counts):
            return 0.0
        lo, hi, cumulative = self._magnitudes
        return float(_cdf(np.array([threshold]), lo, hi, cumulative)[0]) / self.count

    def threshold_for(self, fraction: float) -> float:
        """The |w| threshold with ``fraction`` of the weights below it (inverse of :meth:`fraction_below`)."""
        lo, hi, cumulative = self._magnitudes
        if fraction <= 0 or not len(cumulative) or cumulative[-1] == 0:
            return 0.0
        target = min(fraction, 1.0) * cumulative[-1]
        i = min(int(np.searchsorted(cumulative, target)), len(cumulative) - 1)
        before = cumulative[i - 1] if i else 0
        return float(lo[i] + (hi[i] - lo[i]) * (target - before) / max(cumulative[i] - before, 1))


def stats_from_counts(name: str, raw_counts: np.ndarray, bins: int = 128, log_bins: int = 64,
                      near_zero_tol: float = NEAR_ZERO_TOL, log_decades: int = 10) -> WeightStats:
    """Summaries and histograms from raw bucket counts (see :func:`raw_bucket_counts`).

    Histogram bins split a bucket that straddles their edge in proportion to the overlap. The log10|w|
    histogram spans at most ``log_decades`` decades below the largest |w|; its first bin holds the rest.
    Every step works on fixed 65,536-long arrays, whatever the layer's size.
    """
    raw = np.asarray(raw_counts, dtype=np.int64)
    signed, magnitude = _split(raw)
    total, n = int(raw.sum()), int(magnitude.sum())
    zeros = int(magnitude[0])  # +0 and -0 (and denormals below 1e-40, which weights never are)
    # work only on the span of occupied magnitude buckets (a few thousand), not all 65,536
    occupied = np.flatnonzero(magnitude)
    first, last = (int(occupied[0]), int(occupied[-1]) + 1) if n else (0, 1)
    m_lo, m_hi = (a[first:last] for a in _magnitude_table())
    magnitude = magnitude[first:last]
    s_lo, s_hi = (a[FINITE - last:FINITE + last] for a in _signed_table())
    signed = signed[FINITE - last:FINITE + last]
    if n:
        mid = (s_lo + s_hi) / 2
        mean = float(np.dot(mid, signed) / n)
        std = float(np.sqrt(max(np.dot((mid - mean) ** 2, signed) / n, 0.0)))
        nonempty = np.flatnonzero(signed)
        vmin, vmax = float(mid[nonempty[0]]), float(mid[nonempty[-1]])
        abs_max, edge = float((m_lo[-1] + m_hi[-1]) / 2), float(m_hi[-1])
    else:
        mean = std = vmin = vmax = abs_max = 0.0
        edge = 1.0
    half = bins // 2
    signed_cumulative, magnitude_cumulative = np.cumsum(signed), np.cumsum(magnitude)
    hist = _histogram(np.linspace(-edge, edge, 2 * half + 1), s_lo, s_hi, signed_cumulative)
    abs_hist = _histogram(np.linspace(0.0, edge, half + 1), m_lo, m_hi, magnitude_cumulative)
    nonzero = n - zeros
    top_exp = np.ceil(np.log10(edge))
    if nonzero:
        smallest = m_lo[int(np.flatnonzero(magnitude[1:] if first == 0 else magnitude)[0]) + (first == 0)]
        bottom = max(np.floor(np.log10(smallest)), top_exp - log_decades)
        log_hist = _histogram(np.linspace(bottom, top_exp, log_bins + 1), m_lo, m_hi, magnitude_cumulative,
                              log=True)
        log_hist.counts[0] += nonzero - int(log_hist.counts.sum())  # everything below the range
    else:
        log_hist = Histogram(np.linspace(top_exp - 8, top_exp, log_bins + 1), np.zeros(log_bins, np.int64), True)
    near = float(_cdf(np.array([near_zero_tol * abs_max * (1 + 1e-12)]), m_lo, m_hi,
                      magnitude_cumulative)[0]) / n if n else 0.0
    return WeightStats(name, total, zeros, total - n, vmin, vmax, mean, std, abs_max, near,
                       hist, abs_hist, log_hist, first, magnitude)


def bins_for(count: int, most: int = 128) -> int:
    """Histogram bins for ``count`` weights: about 2 sqrt(count), even, between 16 and ``most``."""
    return int(np.clip(2 * round(np.sqrt(count)), 16, most)) // 2 * 2


def layer_weights(module: nn.Module) -> list[torch.Tensor]:
    """The tensors whose statistics describe a layer: its ``weight``, or else all its own parameters."""
    weight = getattr(module, "weight", None)
    if isinstance(weight, torch.Tensor) and weight.numel():
        return [weight]
    return [p for p in module.parameters(recurse=False) if p.numel()]


def weight_stats(model: nn.Module, names: Iterable[str] | None = None, bins: int = 128,
                 use_kernel: bool | None = None) -> Task[dict[str, WeightStats]]:
    """Weight statistics of every layer with parameters (or of the layers ``names``), in model order.

    Histograms get at most ``bins`` bins, fewer for small layers (:func:`bins_for`). Yields
    :class:`Progress` in units of weights counted; returns ``{qualified name: WeightStats}``.
    """
    modules = dict(model.named_modules())
    wanted = list(names) if names is not None else [n for n, m in modules.items()
                                                     if next(m.parameters(recurse=False), None) is not None]
    tensors = {name: layer_weights(modules[name]) for name in wanted}
    total = sum(t.numel() for ts in tensors.values() for t in ts)
    if use_kernel is None:  # one choice per model: a large model's small layers use the kernel too
        use_kernel = total >= KERNEL_MIN_ELEMENTS
    done = 0
    results: dict[str, WeightStats] = {}
    for name, ts in tensors.items():
        counts = np.zeros(N_BUCKETS, np.int64)
        for t in ts:
            counts += raw_bucket_counts(t, use_kernel)
            done += t.numel()
        results[name] = stats_from_counts(name, counts, bins_for(int(counts.sum()), bins))
        yield Progress("weights", done, total, name)
    return results


def threshold_of_counts(counts: np.ndarray, k: float) -> float:
    """The |w| below which ``k`` weights lie, from dense magnitude counts (uniform within a bucket)."""
    cumulative = np.cumsum(counts)
    if k <= 0 or cumulative[-1] == 0:
        return 0.0
    lo, hi = _magnitude_table()
    k = min(k, float(cumulative[-1]))
    i = int(np.searchsorted(cumulative, k))
    before = cumulative[i - 1] if i else 0
    return float(lo[i] + (hi[i] - lo[i]) * (k - before) / max(cumulative[i] - before, 1))
