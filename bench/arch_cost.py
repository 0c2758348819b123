"""Parameters and multiply-accumulates of models and compressed files, side by side (the architecture steps).

    python bench/arch_cost.py zoo:resnet8-fashion out/separable-resnet8/resnet8-fashion.psz

For each model (any spec ``python main.py inspect`` takes): its parameters, and its MACs for one input of
its recorded shape, counted by ``torch.utils.flop_counter.FlopCounterMode`` (MACs = FLOPs / 2: every counted
op here is a matmul or a convolution), and how many times fewer than the first model's. Once ``core.analysis.cost.count_macs`` exists this is the same count.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

from core.io import load_model  # noqa: E402


def macs(model: torch.nn.Module, shape) -> int:
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.zeros((1, *shape[1:])))
    return counter.get_total_flops() // 2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+")
    args = parser.parse_args()
    first = None  # (spec, MACs) of the first model: the others are compared with it
    for spec in args.models:
        loaded = load_model(spec)
        shape = loaded.input_shape or (1, 1, 28, 28)
        params = sum(p.numel() for p in loaded.module.parameters())
        count = macs(loaded.module.eval(), shape)
        first = first or (spec, count)
        print(f"{spec}: {params:,} parameters, {count:,} MACs per input ({first[1] / count:.2f}x fewer than {first[0]})")


if __name__ == "__main__":
    main()
