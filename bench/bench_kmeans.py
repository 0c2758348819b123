"""Benchmark: k-means weight sharing (k=32) on 1M trained weights against scikit-learn's KMeans.

    pip install scikit-learn   # only for this comparison; not a Prunescope dependency
    python bench/bench_kmeans.py

Weights: the first 1,000,000 weights of the shipped zoo models (LeNet-300-100 and LeNet-5 on MNIST and
Fashion-MNIST, in that order). Both start from the same linear initialisation (k points evenly spaced from
min to max, as in Deep Compression) and run Lloyd's algorithm; scikit-learn with ``n_init=1`` and its
default tolerance, ours to exact convergence. Reported: time (best of 3) and inertia of each.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from core.eval import zoo  # noqa: E402
from core.methods.codebooks import kmeans_1d  # noqa: E402


def trained_weights(count: int = 1_000_000) -> np.ndarray:
    values = []
    for name in ("lenet300", "lenet5", "lenet300-fashion", "lenet5-fashion"):
        model, _ = zoo.load_zoo_model(name)
        values += [p.detach().numpy().ravel() for n, p in model.named_parameters() if n.endswith("weight")]
    return np.concatenate(values)[:count].astype(np.float64)


def best(fn, repeats: int = 3):
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return min(times), result


def main() -> None:
    from sklearn.cluster import KMeans

    x = trained_weights()
    k = 32
    init = np.linspace(x.min(), x.max(), k)
    ours_time, ours = best(lambda: kmeans_1d(x, k, init=init))
    sk_time, sk = best(lambda: KMeans(n_clusters=k, init=init.reshape(-1, 1), n_init=1, random_state=0)
                       .fit(x.reshape(-1, 1)))
    print(f"{len(x):,} trained weights, k={k}, linear initialisation")
    print(f"prunescope kmeans_1d: {ours_time * 1e3:.0f} ms, inertia {ours.inertia:.6f}, {ours.iterations} iterations")
    print(f"scikit-learn KMeans:  {sk_time * 1e3:.0f} ms, inertia {sk.inertia_:.6f}, {sk.n_iter_} iterations")
    print(f"speed-up {sk_time / ours_time:.1f}x; inertia ratio (ours / theirs) {ours.inertia / sk.inertia_:.6f}")


if __name__ == "__main__":
    main()
