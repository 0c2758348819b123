"""Sensitivity analysis: the fast suffix path against naive full re-evaluation, in one run.

    python -m bench.bench_sensitivity [--limit N] [--method prune|quantize|low_rank] [--batched-mib M]

On LeNet-5 (MNIST test subset) and the residual CNN (ResNet-8, Fashion-MNIST test subset), every prunable
layer at the method's default levels: times both ways, checks the curves are the same (largest difference
of any figure) and prints the ratio. Goal (issue 15): the fast way at least 3x faster. ``--batched-mib``:
also the fast way with several levels of a layer in one pass of at most M MiB
(:data:`core.analysis.sensitivity.BATCH_BYTES`). The load average is printed with each model's line: on
a shared machine the times mean little when it is high.
"""

from __future__ import annotations

import argparse
import os
import time

import torch

from core.analysis import sensitivity as sensitivity_module
from core.analysis.sensitivity import sensitivity
from core.eval.data import load_dataset
from core.io import load_model
from core.progress import run

MODELS = (("lenet5", "mnist"), ("resnet8-fashion", "fashion-mnist"))


def largest_difference(a, b) -> float:
    worst = 0.0
    for p, q in zip(a.points, b.points, strict=True):
        assert (p.layer, p.level, p.skipped, p.bytes) == (q.layer, q.level, q.skipped, q.bytes)
        for x, y in ((p.top1, q.top1), (p.top5, q.top5), (p.loss, q.loss), (p.metric, q.metric)):
            if x is not None:
                worst = max(worst, abs(x - y))
    return worst


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=1000, help="test examples per point")
    parser.add_argument("--method", default="prune", choices=("prune", "quantize", "low_rank"))
    parser.add_argument("--batched-mib", type=int, default=0, help="also time levels run together, M MiB a pass")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; method {args.method}, "
          f"{args.limit} test examples per point")
    ways = [("naive", "naive", 0), ("fast", "fast", 0)]
    if args.batched_mib:
        ways.append(("batched", "fast", args.batched_mib << 20))
    for name, data_name in MODELS:
        loaded, data = load_model(f"zoo:{name}"), load_dataset(data_name)
        times, results = {}, {}
        for label, mode, budget in ways:
            sensitivity_module.BATCH_BYTES = budget
            start = time.perf_counter()
            results[label] = run(sensitivity(loaded, data, args.method, limit=args.limit, mode=mode))
            times[label] = time.perf_counter() - start
        sensitivity_module.BATCH_BYTES = 0
        fast, naive = results["fast"], results["naive"]
        points = sum(p.skipped is None for p in fast.points)
        line = (f"{name:16s} {len(fast.paths)} layers x {len(fast.levels)} levels ({points} measured): "
                f"naive {times['naive']:.1f} s, fast {times['fast']:.1f} s, {times['naive'] / times['fast']:.2f}x; "
                f"largest difference {largest_difference(fast, naive):.1e}")
        if "batched" in results:
            line += (f"; batched {times['batched']:.1f} s, {times['naive'] / times['batched']:.2f}x, largest "
                     f"difference {largest_difference(results['batched'], naive):.1e}")
        print(f"{line}; paths {sorted(set(fast.paths.values()))}; load {' '.join(f'{v:.2f}' for v in os.getloadavg())}",
              flush=True)


if __name__ == "__main__":
    main()
