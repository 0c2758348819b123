"""The compiled kernel behind :func:`core.stats.raw_bucket_counts` for large float32 tensors.

Imported lazily: numba compiles it on first use (then caches it on disk), so small models never pay for it.
"""

from __future__ import annotations

import numba
import numpy as np

N_BUCKETS = 65536


@numba.njit(parallel=True, cache=True, nogil=True)
def top16_counts(bits: np.ndarray, nthreads: int) -> np.ndarray:  # pragma: no cover - compiled
    """Histogram of ``bits >> 16`` over a uint32 array (the bfloat16 bit pattern of each float32)."""
    n = bits.size
    partial = np.zeros((nthreads, N_BUCKETS), np.int64)
    chunk = (n + nthreads - 1) // nthreads
    for t in numba.prange(nthreads):
        counts = partial[t]
        for i in range(t * chunk, min(n, (t + 1) * chunk)):
            counts[bits[i] >> np.uint32(16)] += 1
    return partial.sum(axis=0)
