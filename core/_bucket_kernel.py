"""The compiled kernel behind :func:`core.stats.raw_bucket_counts` for large models.

Imported lazily: numba compiles it on first use (then caches it on disk), so small models never pay for it.
It is single-threaded and releases the GIL; :mod:`core.stats` runs it on slices in a thread pool, which
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
