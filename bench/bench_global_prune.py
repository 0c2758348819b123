"""Benchmark: global magnitude pruning of a 25M-weight model against torch.nn.utils.prune.global_unstructured.

    python bench/bench_global_prune.py [--weights 25000000] [--sparsity 0.9]

Both compute masks that prune the ``sparsity`` fraction of smallest-|w| weights across all layers. Reported:
the time of each (best of 3 for ours; torch's one run, it is slow), the ratio, whether the masks are
identical, and, for scale, one plain pass over the weights (``p.sum()`` per layer).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402
from torch import nn  # noqa: E402
from torch.nn.utils import prune as torch_prune  # noqa: E402

from core.methods.masks import magnitude_masks  # noqa: E402


def build(total: int) -> nn.Module:
    """An MLP of 1024-wide Linear layers (plus one to make up the count), filled in place, seeded."""
    width = 1024
    layers = [nn.Linear(width, width, bias=False) for _ in range(total // (width * width))]
    model = nn.Sequential(*layers)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.02, generator=generator)
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", type=int, default=25_000_000)
    parser.add_argument("--sparsity", type=float, default=0.9)
    args = parser.parse_args()
    model = build(args.weights)
    n = sum(p.numel() for p in model.parameters())
    weights = {str(i): m.weight for i, m in enumerate(model)}

    plain = min(_time(lambda: [p.sum() for p in model.parameters()]) for _ in range(3))
    magnitude_masks(weights, args.sparsity, "global")  # warm-up: compile/load the counting kernel
    ours = min(_time(lambda: magnitude_masks(weights, args.sparsity, "global")) for _ in range(3))
    masks = magnitude_masks(weights, args.sparsity, "global")

    start = time.perf_counter()
    torch_prune.global_unstructured([(m, "weight") for m in model], pruning_method=torch_prune.L1Unstructured,
                                    amount=args.sparsity)
    theirs = time.perf_counter() - start
    identical = all(torch.equal(masks[str(i)], m.weight_mask.bool()) for i, m in enumerate(model))
    differing = sum(int((masks[str(i)] != m.weight_mask.bool()).sum()) for i, m in enumerate(model))

    print(f"model: {n:,} weights in {len(model)} Linear layers; sparsity {args.sparsity}")
    print(f"one plain pass (p.sum() per layer): {plain * 1e3:.1f} ms")
    print(f"prunescope magnitude_masks(global): {ours * 1e3:.1f} ms = {ours / plain:.1f} plain passes")
    print(f"torch.nn.utils.prune.global_unstructured: {theirs * 1e3:.0f} ms")
    print(f"speed-up: {theirs / ours:.1f}x (goal >= 20x); identical masks: {identical} ({differing} differ)")


def _time(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


if __name__ == "__main__":
    main()
