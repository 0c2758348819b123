"""Per-layer weight statistics from one pass over the weights, without copying the model.

Each layer's weights are counted once into 65,536 buckets keyed by the top 16 bits of each float32 (its
bfloat16 truncation: sign, exponent, 7 mantissa bits). The counts are exact; every histogram and summary
here is derived from them: histograms of w, |w| and log10|w| at any binning, min/max/mean/std (each value
taken at its bucket's midpoint, so within 0.4% of the true value), the fraction of weights near zero, and
the fraction below any pruning threshold. Large CPU float32 tensors are counted by a compiled kernel
(:mod:`core.analysis._bucket_kernel`, numba); others by torch in bounded chunks, on whatever device they live.
"""

from __future__ import annotations

import functools
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from core.progress import Progress, Task

N_BUCKETS = 65536
KERNEL_MIN_ELEMENTS = 1 << 21  # models (or tensors) smaller than this are counted by torch: no JIT to wait for
CHUNK = 1 << 20  # elements per torch chunk: bounds temporary memory to a few MB
KERNEL_PIECE = 1 << 23  # most values the kernel counts in one call (about 3 ms)
AHEAD = 8  # most kernel pieces queued or running ahead of the layer being summarised
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
def _magnitude_midpoints() -> np.ndarray:
    """Each magnitude bucket's midpoint: the value every weight in it is taken at."""
    lo, hi = _magnitude_table()
    return (lo + hi) / 2


def _first_last(counts: np.ndarray) -> tuple[int, int] | None:
    """Indices of the first and the last non-zero count, or None when all are zero."""
    used = counts != 0
    first = int(used.argmax())
    if not used[first]:
        return None
    return first, len(used) - 1 - int(used[::-1].argmax())


def _locate(x: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each ``x``: the bucket of [lo, hi) (ascending) it falls in, and how far into it (0 to 1)."""
    i = np.clip(np.searchsorted(hi, x, side="right"), 0, len(hi) - 1)
    inside = np.clip((x - lo[i]) / np.maximum(hi[i] - lo[i], 1e-300), 0.0, 1.0)
    return i, np.where(x >= hi[-1], 1.0, inside)


def _below(i: np.ndarray, inside: np.ndarray, cumulative: np.ndarray) -> np.ndarray:
    """Count below the points located by :func:`_locate`, mass uniform within a bucket."""
    before = np.where(i > 0, cumulative[np.maximum(i - 1, 0)], 0)
    return before + (cumulative[i] - before) * inside


def _cdf(x: np.ndarray, lo: np.ndarray, hi: np.ndarray, cumulative: np.ndarray) -> np.ndarray:
    """Count of values below each ``x``: buckets [lo, hi) ascending, mass uniform within a bucket."""
    return _below(*_locate(x, lo, hi), cumulative)


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
def _compiled():
    """The compiled module (:mod:`core.analysis._bucket_kernel`), or None without numba."""
    try:
        from core.analysis import _bucket_kernel
    except ImportError:  # numba missing: torch counts and numpy derives, slower
        return None
    return _bucket_kernel


def _kernel():
    compiled = _compiled()
    return compiled.top16_counts if compiled is not None else None


def warm_up() -> None:
    """Load the compiled kernel and derivation now (numba: from its on-disk cache, or compiling them).

    Loading holds the interpreter lock for up to a tenth of a second; the studio does it before its
    window shows, so that the first statistics pass does not stall the UI.
    """
    if _compiled() is not None:
        _kernel()(np.zeros(1, np.uint32))
        _compiled().pattern_counts(np.zeros(1, np.uint16))
        stats_from_counts("", np.zeros(N_BUCKETS, np.int64), compiled=True)


@functools.lru_cache(maxsize=1)
def _pool() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=max(1, torch.get_num_threads()), thread_name_prefix="buckets")


def _dense(t: torch.Tensor) -> bool:
    """Whether ``t`` covers one gap-free block of its storage (any dimension order, no overlap)."""
    expected = 1
    for d in sorted(range(t.ndim), key=t.stride):
        if t.shape[d] != 1:
            if t.stride(d) != expected:
                return False
            expected *= t.shape[d]
    return True


def _flat(tensor: torch.Tensor) -> torch.Tensor | None:
    """``tensor``'s values as a 1-D view of its storage (no copy), or None for a view with gaps."""
    t = tensor.detach()
    if t.is_contiguous():
        return t.reshape(-1)
    if _dense(t):  # e.g. channels_last: the same values, stored in another order
        return t.as_strided((t.numel(),), (1,), t.storage_offset())
    return None


def _kernel_pieces(flat: torch.Tensor, use_kernel: bool | None) -> list[np.ndarray] | None:
    """uint32 views of ``flat``'s values in pieces for the pool's threads; None when torch counts it.

    Pieces hold at most ``KERNEL_PIECE`` values, so counting ahead stays fine-grained and a cancelled pass
    stops soon; a large tensor gives every thread a share.
    """
    if use_kernel is None:
        use_kernel = flat.numel() >= KERNEL_MIN_ELEMENTS
    if not use_kernel or flat.device.type != "cpu" or flat.dtype != torch.float32 or _kernel() is None:
        return None
    bits = flat.numpy().view(np.uint32)
    workers = _pool()._max_workers
    if bits.size < CHUNK // 4 or workers == 1 and bits.size <= KERNEL_PIECE:
        return [bits]
    parts = -(-bits.size // KERNEL_PIECE)
    return np.array_split(bits, -(-parts // workers) * workers)


def raw_bucket_counts(tensor: torch.Tensor, use_kernel: bool | None = None) -> np.ndarray:
    """Exact counts ``(65536,)`` of ``tensor``'s values by the top 16 bits of their float32 bit pattern.

    Reads the tensor in place (no copy of a contiguous float32 tensor). ``use_kernel`` forces (True) or
    forbids (False) the compiled kernel; by default it runs for tensors of ``KERNEL_MIN_ELEMENTS`` or more.
    It only ever runs on contiguous CPU float32 tensors; torch counts all others, on their own device.
    """
    flat = _flat(tensor)
    if flat is None:  # a strided view: count contiguous copies of bounded slices
        t = tensor.detach()
        rows = max(1, CHUNK // max(1, t[0].numel())) if t.ndim else 1
        return sum((raw_bucket_counts(t[i:i + rows].contiguous(), use_kernel) for i in range(0, len(t), rows)),
                   np.zeros(N_BUCKETS, np.int64))
    pieces = _kernel_pieces(flat, use_kernel)
    if pieces is None:
        return _torch_counts(flat)
    if len(pieces) == 1:
        return _kernel()(pieces[0])
    return sum(_pool().map(_kernel(), pieces))


@functools.lru_cache(maxsize=2)
def _widened(dtype: torch.dtype) -> np.ndarray:
    """For each 16-bit pattern of ``dtype`` (float16, bfloat16): the raw bucket its float32 value falls in."""
    patterns = torch.from_numpy(np.arange(N_BUCKETS, dtype=np.uint16).view(np.int16)).view(dtype)
    return ((patterns.to(torch.float32).view(torch.int32) >> 16) & 0xFFFF).numpy().astype(np.intp)


def pattern_counts(tensor: torch.Tensor) -> np.ndarray:
    """Counts ``(65536,)`` of a contiguous CPU float16 or bfloat16 tensor's bit patterns, read in place: no
    float32 copy. :func:`widen_counts` turns them into the raw bucket counts of the values."""
    bits = tensor.detach().reshape(-1).view(torch.int16).numpy().view(np.uint16)
    if _compiled() is None:
        return np.bincount(bits, minlength=N_BUCKETS)
    workers = _pool()._max_workers  # pieces of at most KERNEL_PIECE values: the kernel counts in int32
    parts = max(workers if bits.size >= CHUNK else 1, -(-bits.size // KERNEL_PIECE))
    return sum(_pool().map(_compiled().pattern_counts, np.array_split(bits, parts)))


def widen_counts(patterns: np.ndarray, dtype: torch.dtype) -> np.ndarray:
    """The raw bucket counts (:func:`raw_bucket_counts`) of values whose ``dtype`` bit patterns
    :func:`pattern_counts` counted: the same exact counts, as if each value had been widened to float32."""
    counts = np.zeros(N_BUCKETS, np.int64)
    np.add.at(counts, _widened(dtype), patterns)
    return counts


def _counted_ahead(tensors: dict[str, list[torch.Tensor]], use_kernel: bool) -> Iterator[tuple[str, np.ndarray]]:
    """``(name, raw counts)`` per layer, in order, while the pool already counts the next layers.

    At most ``AHEAD`` pieces wait or run at a time (each result is 512 KB); when the consumer stops early,
    those not started are cancelled. Tensors the kernel does not take are counted here, in turn.
    """
    pool = _pool()
    queue = iter(tensors.items())
    waiting: deque[tuple[str, list]] = deque()
    in_flight = 0

    def start() -> bool:
        nonlocal in_flight
        item = next(queue, None)
        if item is None:
            return False
        name, ts = item
        jobs: list = []
        for t in ts:
            flat = _flat(t)
            pieces = _kernel_pieces(flat, use_kernel) if flat is not None else None
            if pieces is None:
                jobs.append(raw_bucket_counts(t, use_kernel))
            else:
                jobs += [pool.submit(_kernel(), piece) for piece in pieces]
                in_flight += len(pieces)
        waiting.append((name, jobs))
        return True

    try:
        while waiting or start():
            while in_flight < AHEAD and start():
                pass
            name, jobs = waiting.popleft()
            counts = None  # the first result, a fresh array, takes the others in place: no allocation here
            for job in jobs:
                if isinstance(job, Future):
                    job = job.result()
                    in_flight -= 1
                counts = job if counts is None else np.add(counts, job, out=counts)
            yield name, counts if counts is not None else np.zeros(N_BUCKETS, np.int64)
    finally:
        for _, jobs in waiting:
            for job in jobs:
                if isinstance(job, Future):
                    job.cancel()



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
                      near_zero_tol: float = NEAR_ZERO_TOL, log_decades: int = 10,
                      compiled: bool = False) -> WeightStats:
    """Summaries and histograms from raw bucket counts (see :func:`raw_bucket_counts`).

    Histogram bins split a bucket that straddles their edge in proportion to the overlap. The log10|w|
    histogram spans at most ``log_decades`` decades below the largest |w|; its first bin holds the rest.
    Everything after locating the occupied buckets works on that span of magnitude buckets only (a few
    thousand for trained weights), positive and negative values apart: a value's sign flips its position
    in the w histogram, not its magnitude bucket.

    ``compiled`` derives the same figures with :func:`core.analysis._bucket_kernel.derive` (numba; a few tens of
    microseconds a layer against a quarter of a millisecond here) when numba is there; large models use it.
    """
    raw = np.asarray(raw_counts, dtype=np.int64)
    if compiled and _compiled() is not None:
        (total, zeros, nonfinite, vmin, vmax, mean, std, abs_max, near, x, hist, abs_hist, log_edges, log_hist,
         first, magnitude) = _compiled().derive(raw, *_magnitude_table(), _magnitude_midpoints(), bins, log_bins,
                                                near_zero_tol, log_decades)
        return WeightStats(name, int(total), int(zeros), int(nonfinite), float(vmin), float(vmax), float(mean),
                           float(std), float(abs_max), float(near),
                           Histogram(np.concatenate([-x[:0:-1], x]), hist), Histogram(x, abs_hist),
                           Histogram(log_edges, log_hist, True), int(first), magnitude)
    positive, negative = raw[:FINITE], raw[SIGN:SIGN + FINITE]
    total = int(raw.sum())
    occupied = _first_last(positive | negative)  # counts are never negative
    first, last = (occupied[0], occupied[1] + 1) if occupied else (0, 1)
    positive, negative = positive[first:last], negative[first:last]
    magnitude = positive + negative
    m_lo, m_hi = (a[first:last] for a in _magnitude_table())
    pos_cumulative, neg_cumulative = np.cumsum(positive), np.cumsum(negative)
    magnitude_cumulative = pos_cumulative + neg_cumulative
    n_neg, n = int(neg_cumulative[-1]), int(magnitude_cumulative[-1])
    zeros = int(magnitude[0]) if first == 0 else 0  # +0 and -0 (and denormals below 1e-40)
    if n:
        mid = _magnitude_midpoints()[first:last]
        mean = float(np.dot(mid, positive - negative) / n)
        std = float(np.sqrt((np.dot((mid - mean) ** 2, positive) + np.dot((mid + mean) ** 2, negative)) / n))
        neg_used, pos_used = _first_last(negative), _first_last(positive)
        vmin = -float(mid[neg_used[1]]) if neg_used else float(mid[pos_used[0]])
        vmax = float(mid[pos_used[1]]) if pos_used else -float(mid[neg_used[0]])
        abs_max, edge = float(mid[-1]), float(m_hi[-1])
    else:
        mean = std = vmin = vmax = abs_max = 0.0
        edge = 1.0
    half = bins // 2
    # w histogram: below -x lie the negatives of |w| > x; below +x all negatives and the positives < x
    x = np.linspace(0.0, edge, half + 1)
    i, inside = _locate(x, m_lo, m_hi)
    neg_below, pos_below = _below(i, inside, neg_cumulative), _below(i, inside, pos_cumulative)
    signed_at = np.concatenate([(n_neg - neg_below)[:0:-1], n_neg + pos_below])
    hist = Histogram(np.concatenate([-x[:0:-1], x]), np.diff(np.rint(signed_at)).astype(np.int64))
    abs_hist = Histogram(x, np.diff(np.rint(neg_below + pos_below)).astype(np.int64))
    nonzero = n - zeros
    top_exp = np.ceil(np.log10(edge))
    if nonzero:
        smallest = m_lo[_first_last(magnitude[1:])[0] + 1 if first == 0 else 0]
        bottom = max(np.floor(np.log10(smallest)), top_exp - log_decades)
        log_edges = np.linspace(bottom, top_exp, log_bins + 1)
        log_hist = _histogram(log_edges, m_lo, m_hi, magnitude_cumulative, log=True)
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
    for name, counts in _counted_ahead(tensors, use_kernel):
        count = sum(t.numel() for t in tensors[name])
        done += count
        results[name] = stats_from_counts(name, counts, bins_for(count, bins), compiled=use_kernel)
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
