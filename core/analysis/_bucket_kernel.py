"""The compiled kernel behind :func:`core.analysis.stats.raw_bucket_counts` for large models.

Imported lazily: numba compiles it on first use (then caches it on disk), so small models never pay for it.
It is single-threaded and releases the GIL; :mod:`core.analysis.stats` runs it on slices in a thread pool, which
keeps numba's own threading layer (and its spinning OpenMP threads, which starve torch) out of the process.
"""

from __future__ import annotations

import numba
import numpy as np

N_BUCKETS = 65536


@numba.njit(cache=True, nogil=True)
def top16_counts(bits: np.ndarray) -> np.ndarray:  # pragma: no cover - compiled
    """Histogram of ``bits >> 16`` over a uint32 array (the bfloat16 bit pattern of each float32)."""
    counts = np.zeros(N_BUCKETS, np.int64)
    for i in range(bits.size):
        counts[bits[i] >> np.uint32(16)] += 1
    return counts


@numba.njit(cache=True, nogil=True)
def pattern_counts(bits: np.ndarray) -> np.ndarray:  # pragma: no cover - compiled
    """Histogram of a uint16 array's values (the bit patterns of float16 or bfloat16 values), fewer than
    2**31 of them: counted in int32, half the table of int64 and so faster, then widened."""
    counts = np.zeros(N_BUCKETS, np.int32)
    for i in range(bits.size):
        counts[bits[i]] += 1
    return counts.astype(np.int64)


# ------------------------------------------------------------------------------------ derivation
# The same figures as core.analysis.stats.stats_from_counts computes with numpy (the reference; a test holds the two
# equal), as loops over the occupied span of magnitude buckets. numpy spends most of its time there in the
# overhead of ~60 small calls per layer (0.25 ms); compiled, a layer takes a few tens of microseconds, which
# matters because the derivation runs while the pool's threads count the next layers on the same cores.

FINITE = 0x7F80
SIGN = 0x8000


@numba.njit(cache=True, nogil=True)
def _linspace(start: float, stop: float, num: int) -> np.ndarray:  # pragma: no cover - compiled
    """numpy.linspace(start, stop, num), computed the way numpy computes it (same rounding)."""
    out = np.empty(num)
    step = (stop - start) / (num - 1)
    for i in range(num):
        out[i] = i * step + start
    out[num - 1] = stop
    return out


@numba.njit(cache=True, nogil=True)
def _locate(x: np.ndarray, lo: np.ndarray, hi: np.ndarray):  # pragma: no cover - compiled
    """core.analysis.stats._locate for ascending ``x``: one walk along the buckets instead of a binary search each."""
    index = np.empty(x.size, np.int64)
    inside = np.empty(x.size)
    i = 0
    last = hi.size - 1
    for j in range(x.size):
        while i < last and hi[i] <= x[j]:
            i += 1
        index[j] = i
        if x[j] >= hi[last]:
            inside[j] = 1.0
        else:
            f = (x[j] - lo[i]) / max(hi[i] - lo[i], 1e-300)
            inside[j] = min(max(f, 0.0), 1.0)
    return index, inside


@numba.njit(cache=True, nogil=True)
def _below(index: np.ndarray, inside: np.ndarray, cumulative: np.ndarray) -> np.ndarray:  # pragma: no cover
    out = np.empty(index.size)
    for j in range(index.size):
        i = index[j]
        before = cumulative[i - 1] if i > 0 else 0
        out[j] = before + (cumulative[i] - before) * inside[j]
    return out


@numba.njit(cache=True, nogil=True)
def _diff_rint(at: np.ndarray) -> np.ndarray:  # pragma: no cover - compiled
    out = np.empty(at.size - 1, np.int64)
    for j in range(out.size):
        out[j] = np.int64(np.rint(at[j + 1]) - np.rint(at[j]))
    return out


@numba.njit(cache=True, nogil=True)
def derive(raw: np.ndarray, lo_all: np.ndarray, hi_all: np.ndarray, mid_all: np.ndarray, bins: int,
           log_bins: int, near_zero_tol: float, log_decades: int):  # pragma: no cover - compiled
    """See core.analysis.stats.stats_from_counts; returns its figures as a tuple (stats assembles them)."""
    total = 0
    for h in range(raw.size):
        total += raw[h]
    first, last = 0, 0
    found = False
    for m in range(FINITE):
        if raw[m] != 0 or raw[SIGN + m] != 0:
            if not found:
                first, found = m, True
            last = m
    last = last + 1 if found else 1
    span = last - first
    positive = raw[first:last].copy()
    negative = raw[SIGN + first:SIGN + last].copy()
    magnitude = positive + negative
    lo, hi, mid = lo_all[first:last], hi_all[first:last], mid_all[first:last]
    pos_cumulative, neg_cumulative = np.cumsum(positive), np.cumsum(negative)
    magnitude_cumulative = pos_cumulative + neg_cumulative
    n_neg, n = neg_cumulative[span - 1], magnitude_cumulative[span - 1]
    zeros = magnitude[0] if first == 0 else 0
    mean = std = vmin = vmax = abs_max = 0.0
    edge = 1.0
    if n:
        signed = 0.0
        for m in range(span):
            signed += mid[m] * (positive[m] - negative[m])
        mean = signed / n
        square = 0.0
        for m in range(span):
            square += (mid[m] - mean) ** 2 * positive[m] + (mid[m] + mean) ** 2 * negative[m]
        std = np.sqrt(square / n)
        neg_first, neg_last, pos_first, pos_last = -1, -1, -1, -1
        for m in range(span):
            if negative[m]:
                neg_last = m
                if neg_first < 0:
                    neg_first = m
            if positive[m]:
                pos_last = m
                if pos_first < 0:
                    pos_first = m
        vmin = -mid[neg_last] if neg_last >= 0 else mid[pos_first]
        vmax = mid[pos_last] if pos_last >= 0 else -mid[neg_first]
        abs_max, edge = mid[span - 1], hi[span - 1]
    half = bins // 2
    x = _linspace(0.0, edge, half + 1)
    index, inside = _locate(x, lo, hi)
    neg_below, pos_below = _below(index, inside, neg_cumulative), _below(index, inside, pos_cumulative)
    signed_at = np.empty(2 * half + 1)
    for j in range(half):
        signed_at[j] = n_neg - neg_below[half - j]
    for j in range(half + 1):
        signed_at[half + j] = n_neg + pos_below[j]
    hist = _diff_rint(signed_at)
    abs_hist = _diff_rint(neg_below + pos_below)
    nonzero = n - zeros
    top_exp = np.ceil(np.log10(edge))
    if nonzero:
        k = 0
        if first == 0:
            k = 1
            while magnitude[k] == 0:
                k += 1
        bottom = max(np.floor(np.log10(lo[k])), top_exp - log_decades)
        log_edges = _linspace(bottom, top_exp, log_bins + 1)
        index, inside = _locate(10.0 ** log_edges, lo, hi)
        log_hist = _diff_rint(_below(index, inside, magnitude_cumulative))
        log_hist[0] += nonzero - log_hist.sum()
    else:
        log_edges = _linspace(top_exp - 8, top_exp, log_bins + 1)
        log_hist = np.zeros(log_bins, np.int64)
    near = 0.0
    if n:
        index, inside = _locate(np.array([near_zero_tol * abs_max * (1 + 1e-12)]), lo, hi)
        near = _below(index, inside, magnitude_cumulative)[0] / n
    return (total, zeros, total - n, vmin, vmax, mean, std, abs_max, near, x, hist, abs_hist, log_edges,
            log_hist, first, magnitude)
