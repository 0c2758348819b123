"""Parameters, multiply-accumulates and latency of models and compressed files, side by side (the
architecture steps).

    python bench/arch_cost.py zoo:resnet8-fashion out/separable-resnet8/resnet8-fashion.psz [--latency]

For each model (any spec ``python main.py inspect`` takes): its parameters, and its MACs for one input of
its recorded shape, counted by :func:`core.analysis.cost.count_macs` (torch's ``FlopCounterMode``, MACs =
FLOPs / 2), the same count ``inspect`` and the reports give, and how many times fewer than the first model's.
``--latency`` also times each at batch 1 and batch 256 (zeros of the input shape) with the studio's and
``inspect``'s own measurement (:func:`core.eval.evaluate.latency`), all in this one run, in rounds that
alternate the models so a change in the machine's load falls on each alike; ratios are first / model.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from core.analysis.cost import count_macs  # noqa: E402
from core.eval.evaluate import latency  # noqa: E402
from core.io import load_model  # noqa: E402
from core.progress import run  # noqa: E402

BATCHES = (1, 256)
ROUNDS = 3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+")
    parser.add_argument("--latency", action="store_true", help="time each model at batch 1 and 256")
    args = parser.parse_args()
    models, first = {}, None  # first: (spec, MACs) of the first model; the others are compared with it
    for spec in args.models:
        loaded = load_model(spec)
        shape = tuple(loaded.input_shape or (1, 1, 28, 28))
        module = loaded.module.eval()
        params = sum(p.numel() for p in module.parameters())
        count = count_macs(module, torch.zeros((1, *shape[1:]))).total
        first = first or (spec, count)
        models[spec] = (module, shape)
        print(f"{spec}: {params:,} parameters, {count:,} MACs per input ({first[1] / count:.2f}x fewer than {first[0]})")
    if not args.latency:
        return
    print(f"latency on {torch.get_num_threads()} threads, median of {ROUNDS} alternating rounds, ms per batch:")
    for batch in BATCHES:
        medians = {spec: [] for spec in models}
        with torch.inference_mode():
            for _ in range(ROUNDS):
                for spec, (module, shape) in models.items():
                    medians[spec].append(run(latency(module, torch.zeros((batch, *shape[1:])))).median_ms)
        base = sorted(medians[args.models[0]])[ROUNDS // 2]
        for spec, values in medians.items():
            median = sorted(values)[ROUNDS // 2]
            print(f"  batch {batch:>3} {spec}: {median:.3f} ms (rounds {', '.join(f'{v:.3f}' for v in values)}; "
                  f"{base / median:.2f}x faster than {args.models[0]})")


if __name__ == "__main__":
    main()
