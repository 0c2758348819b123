"""Benchmark: early exits on the residual CNN on Fashion-MNIST (issue 16), a table of thresholds.

    python bench/bench_exits_resnet.py                    # compress with the recipe, then sweep
    python bench/bench_exits_resnet.py --psz FILE.psz     # sweep a file made before

Compresses ``zoo:resnet8-fashion`` with ``resources/recipes/exits-resnet8-fashion.yaml`` (an exit after the
first basic block and one after the second), loads the ``.psz`` back, and for each row of thresholds (the
same normalised-entropy threshold at both exits, and the recipe's own, chosen on validation) measures on the
10,000 test images: the fraction leaving at each exit, overall accuracy, mean MACs per sample, and latency
of the exit model against the full model at batch 1 (``--images`` test images one at a time) and at batch
256 (4 batches): ms per call, the median of ``--repeats`` passes, the two models alternating in one run.
Fractions, accuracy and MACs come from the exits' outputs cached once (:func:`core.eval.exits.exit_stats`);
latency is of the model really routing with those thresholds.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from core.analysis.cost import count_macs  # noqa: E402
from core.eval.data import load_dataset, to_float  # noqa: E402
from core.eval.exits import compare_ms, exit_macs, exit_outputs, exit_stats  # noqa: E402
from core.io import load_model  # noqa: E402
from core.pipeline.apply import apply_recipe  # noqa: E402
from core.progress import run  # noqa: E402
from core.recipe import Recipe  # noqa: E402

RECIPE = ROOT / "resources" / "recipes" / "exits-resnet8-fashion.yaml"
SHARED = (0.0, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0)  # entropy: 0 nobody leaves early, 1 everyone leaves at exit 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--psz", help="a file made before (default: compress now with the recipe)")
    parser.add_argument("--out", default=str(Path(tempfile.gettempdir()) / "exits-resnet8-fashion.psz"))
    parser.add_argument("--images", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    started = time.perf_counter()
    data = load_dataset("fashion-mnist")
    original = load_model("zoo:resnet8-fashion").module.eval()
    path = Path(args.psz or args.out)
    if not args.psz:
        result = run(apply_recipe(Recipe.from_file(RECIPE), load_model("zoo:resnet8-fashion"), data))
        path.write_bytes(result.file_bytes)
        print(f"compressed in {time.perf_counter() - started:.0f} s: {path} ({len(result.file_bytes):,} bytes)")
        print("\n".join(result.notes))
    model = load_model(str(path)).module.eval()
    chosen = tuple(model.thresholds)
    arrays = exit_outputs(model, data.test)
    example = to_float(data.test.images[:1])
    macs = exit_macs(model, example)
    full_macs = count_macs(original, example).total
    with torch.no_grad():
        full_acc = float(torch.cat([original(x).argmax(1) == y for x, y in data.test.batches(1000)]).float().mean())
    images = [to_float(data.test.images[i:i + 1]) for i in range(args.images)]
    batches = [x for x, _ in data.test.batches(256, limit=1024)]
    load = os.getloadavg()[0]
    print(f"\nthreads {torch.get_num_threads()}, load average {load:.2f}; exits after {[s.after for s in model.specs]}, "
          f"MACs of leaving at each exit {macs[:-1]}, the full model {full_macs:,}; full model accuracy {full_acc:.2%}")
    print("\n| entropy thresholds | leave after layer1 / layer2 / at the end | accuracy | mean MACs | "
          "batch 1: full → exits (ms) | batch 256: full → exits (ms) |")
    print("|---|---|---|---|---|---|")
    rows = [(t, t) for t in SHARED] + [chosen]
    for row in rows:
        stats = exit_stats(arrays, list(row), model.criterion, macs)
        model.thresholds = [float(t) for t in row]
        one = compare_ms({"full": original, "exits": model}, images, args.repeats)
        big = compare_ms({"full": original, "exits": model}, batches, args.repeats)
        label = " / ".join(f"{t:.3f}" for t in row) + (" (the recipe's, on validation)" if row == chosen else "")
        print(f"| {label} | {' / '.join(f'{f:.1%}' for f in stats.fractions)} | {stats.overall:.2%} | "
              f"{stats.mean_macs / 1e6:.2f} M ({full_macs / stats.mean_macs:.2f}x fewer) | "
              f"{one['full']:.3f} → {one['exits']:.3f} ({one['full'] / one['exits']:.2f}x) | "
              f"{big['full']:.1f} → {big['exits']:.1f} ({big['full'] / big['exits']:.2f}x) |", flush=True)
    print(f"\nload average at the end {os.getloadavg()[0]:.2f}; {time.perf_counter() - started:.0f} s in all")


if __name__ == "__main__":
    main()
