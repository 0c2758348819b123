"""Benchmark: per-layer weight statistics of a ~100M-parameter model, as ratios measured in one run.

    python bench/bench_stats.py [--params-scale 1.0] [--repeats 5] [--json out.json]

Measures, in a fresh process with the model built in place (no transient copies):
- time: all per-layer histograms and summaries (``core.analysis.stats.weight_stats``) / one plain pass over the same
  weights (``p.sum()`` for every parameter), best of ``--repeats`` each; goal at most 3x;
- memory: (model bytes + the most the process grew during the statistics pass) / model bytes; goal at
  most 1.3x. Growth is the larger of ``ru_maxrss`` and a 1 ms RSS sampler, against the RSS before the pass;
- for reference: ``torch.histc`` of |w| per layer (what a straightforward implementation does);
- the one-off cost of compiling the numba kernel (cached on disk afterwards), reported apart;
- with ``--breakdown``: the two parts timed apart (counting every layer's buckets on the pool; deriving
  the figures from counts already made), and the kernel's time per value on one thread and on the pool.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402
from torch import nn  # noqa: E402

from core.progress import run  # noqa: E402
from core.analysis.stats import weight_stats  # noqa: E402


class Block(nn.Module):
    def __init__(self, d: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)
        self.up = nn.Linear(d, 4 * d)
        self.down = nn.Linear(4 * d, d)


class Transformer100M(nn.Module):
    """A GPT-like stack (embedding + 5 blocks of d=1024): 95.8M parameters at scale 1."""

    def __init__(self, scale: float = 1.0) -> None:
        super().__init__()
        d = int(1024 * scale ** 0.5) // 64 * 64
        self.embed = nn.Embedding(32000, d)
        self.blocks = nn.ModuleList(Block(d) for _ in range(5))
        self.norm = nn.LayerNorm(d)


def build(scale: float) -> nn.Module:
    with torch.device("meta"):
        model = Transformer100M(scale)
    model = model.to_empty(device="cpu")
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.02, generator=generator)  # in place: no second copy ever exists
    return model


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def maxrss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def best_time(fn, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def peak_growth(fn) -> int:
    """The most RSS grew above its level before ``fn`` ran, while it ran."""
    before = rss_bytes()
    peak = [before]
    done = threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], rss_bytes())
            time.sleep(0.001)

    sampler = threading.Thread(target=sample, daemon=True)
    max_before = maxrss_bytes()
    sampler.start()
    try:
        fn()
    finally:
        done.set()
        sampler.join()
    growth_sampled = peak[0] - before
    growth_maxrss = maxrss_bytes() - max(max_before, before)
    return max(0, growth_sampled, growth_maxrss)


def breakdown(model: nn.Module, repeats: int) -> None:
    import numpy as np

    from core.analysis import stats

    modules = dict(model.named_modules())
    tensors = {n: stats.layer_weights(m) for n, m in modules.items() if next(m.parameters(recurse=False), None)
               is not None}
    counts = list(stats._counted_ahead(tensors, True))
    count_s = best_time(lambda: list(stats._counted_ahead(tensors, True)), repeats)
    derive_s = best_time(lambda: [stats.stats_from_counts(n, c, stats.bins_for(int(c.sum())), compiled=True)
                                       for n, c in counts],
                         repeats)
    bits = [stats._flat(t).numpy().view(np.uint32) for ts in tensors.values() for t in ts]
    values = sum(b.size for b in bits)
    one_thread = best_time(lambda: [stats._kernel()(b) for b in bits], repeats)
    print(f"counting alone, on the pool ({stats._pool()._max_workers} threads): {count_s * 1e3:.1f} ms "
          f"({count_s / values * 1e9:.2f} ns per value); on one thread: {one_thread * 1e3:.1f} ms "
          f"({one_thread / values * 1e9:.2f} ns per value)")
    print(f"deriving every layer's figures from its counts alone: {derive_s * 1e3:.1f} ms "
          f"({derive_s / len(counts) * 1e3:.2f} ms per layer)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params-scale", type=float, default=1.0)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", help="write the results here too")
    parser.add_argument("--breakdown", action="store_true", help="also time counting and deriving apart")
    args = parser.parse_args()

    model = build(args.params_scale)
    params = list(model.parameters())
    n = sum(p.numel() for p in params)
    model_bytes = sum(p.numel() * p.element_size() for p in params)

    start = time.perf_counter()
    run(weight_stats(nn.Linear(1, 1 << 21, bias=False)))  # compiles the kernel (or loads it from cache)
    first_call = time.perf_counter() - start

    stats_pass = lambda: run(weight_stats(model))  # noqa: E731
    memory_growth = peak_growth(stats_pass)  # first: nothing from the timing runs is left in the allocator yet
    plain = best_time(lambda: [p.sum() for p in params], args.repeats)
    stats = best_time(stats_pass, args.repeats)
    histc = best_time(lambda: [torch.histc(p.detach().abs(), 64) for p in params], args.repeats)
    result = {
        "command": "python bench/bench_stats.py " + " ".join(sys.argv[1:]),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
                   f"{torch.get_num_threads()} threads",
        "params": n, "model_bytes": model_bytes, "layers": len(run(weight_stats(model))),
        "plain_pass_s": plain, "stats_s": stats, "histc_abs_s": histc,
        "time_ratio": stats / plain, "histc_ratio": histc / plain,
        "memory_growth_bytes": memory_growth, "memory_ratio": (model_bytes + memory_growth) / model_bytes,
        "kernel_first_call_s": first_call,
    }
    print(f"model: {n:,} parameters, {model_bytes / 1e6:.0f} MB, {result['layers']} layers ({result['machine']})")
    print(f"one plain pass (p.sum() per parameter): {plain * 1e3:.1f} ms")
    print(f"all per-layer histograms + summaries:  {stats * 1e3:.1f} ms  -> {result['time_ratio']:.2f}x "
          f"(goal <= 3x)")
    print(f"reference, torch.histc(|w|) per layer:  {histc * 1e3:.1f} ms  -> {result['histc_ratio']:.2f}x")
    print(f"peak memory / model size: {result['memory_ratio']:.3f}x (goal <= 1.3x; grew "
          f"{memory_growth / 1e6:.1f} MB)")
    print(f"kernel first call (compile or cache load): {first_call:.1f} s")
    if args.breakdown:
        breakdown(model, args.repeats)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
