"""Automatic allocation against uniform allocation, at three file sizes, without fine-tuning (and with it).

    python -m bench.bench_allocate [--models lenet5,resnet8-fashion] [--ratios 20,40,60] [--finetune]

For each model, every prunable layer alone at every (sparsity, bits) option is measured once on the
validation split (:func:`core.analysis.allocate.measure_options`). For each ratio, *uniform* is the best
(by test accuracy, which favours it) of one sparsity and one bits for every layer: for each bits value, the
smallest uniform sparsity whose file fits (bisection on the encoder's own price), each run and measured.
*Allocated* is the knapsack's choice for a file of at most uniform's measured bytes. Both are real
compressed files written by the pipeline (prune + k-means + Huffman, no fine-tuning) and measured on the
whole test split. ``--finetune`` also runs both with fine-tuning (prune, 2 epochs, k-means with 1 epoch of
codebook training) at the middle ratio on the first model. Goal (issue 15): allocated's accuracy at least
uniform's at the same or smaller bytes.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace

import torch

from core.analysis import allocate as alloc
from core.eval.data import load_dataset
from core.eval.evaluate import saved_size_bytes
from core.io import load_model
from core.methods.coding import Encode
from core.methods.finetune import FineTune
from core.methods.magnitude import PruneMagnitude
from core.methods.quantize import Quantize
from core.pipeline.apply import apply_recipe
from core.progress import run
from core.recipe import Recipe

GRIDS = {"lenet5": (alloc.SPARSITIES, alloc.BITS),
         "resnet8-fashion": ((0.0, 0.5, 0.7, 0.8, 0.9, 0.95, 0.98), (8, 5, 4, 3, 2, 1))}
DATA = {"lenet5": "mnist", "resnet8-fashion": "fashion-mnist", "lenet300": "mnist"}


def base_recipe(finetune: bool) -> Recipe:
    if not finetune:
        return Recipe(steps=(PruneMagnitude(sparsity=0.5), Quantize(bits=5), Encode()), name="prune-kmeans-huffman")
    return Recipe(steps=(PruneMagnitude(sparsity=0.5), FineTune(epochs=2, lr=0.01), Quantize(bits=5, finetune_epochs=1),
                         Encode()), name="prune-finetune-kmeans-huffman")


def uniform_recipe(base: Recipe, sparsity: float, bits: int) -> Recipe:
    steps = tuple(replace(s, sparsity=sparsity) if s.kind == "prune_magnitude" else
                  replace(s, bits=bits) if s.kind == "quantize" else s for s in base.steps)
    return replace(base, steps=steps, name=f"uniform {sparsity:.3f} x {bits} bits")


def uniform_sparsity(model, base: Recipe, table: alloc.OptionTable, bits: int, budget: int) -> float | None:
    """The smallest sparsity that, with ``bits`` in every layer, makes a file of at most ``budget`` bytes."""
    def price(s: float) -> int:
        choice = {n: alloc.Option((("sparsity", s), ("bits", bits)), 0, 0.0) for n in table.options}
        return alloc.exact_bytes(model, base, table, choice)
    low, high = 0.0, 0.995
    if price(high) > budget:
        return None
    for _ in range(14):
        middle = (low + high) / 2
        low, high = (low, middle) if price(middle) <= budget else (middle, high)
    return high


def settings(choice: dict) -> str:
    return " ".join(f"{n} {o.value('sparsity'):.2f}/{o.value('bits'):g}" for n, o in choice.items())


def measured(recipe: Recipe, loaded, data) -> tuple[int, float]:
    result = run(apply_recipe(recipe, loaded, data, measure_before=False))
    return result.compressed_bytes, result.after.test.accuracy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="lenet5,resnet8-fashion")
    parser.add_argument("--ratios", default="20,40,60")
    parser.add_argument("--limit", type=int, default=2000, help="validation examples per option")
    parser.add_argument("--finetune", action="store_true")
    args = parser.parse_args()
    ratios = [float(r) for r in args.ratios.split(",")]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; {args.limit} validation examples per "
          f"option; test accuracy on the whole test split")
    for k, name in enumerate(args.models.split(",")):
        loaded, data = load_model(f"zoo:{name}"), load_dataset(DATA[name])
        sparsities, bits = GRIDS.get(name, (alloc.SPARSITIES, alloc.BITS))
        base = base_recipe(False)
        start = time.perf_counter()
        table = run(alloc.measure_options(loaded, data, base, sparsities, bits, args.limit))
        original = saved_size_bytes(loaded.module)
        print(f"\n{name}: {len(table.options)} layers x {len(sparsities) * len(bits)} options measured in "
              f"{time.perf_counter() - start:.0f} s; original {original:,} bytes; validation top-1 "
              f"{table.baseline:.2%}")
        print("| target | uniform (best of bits) | bytes | test top-1 | allocated | bytes | test top-1 | predicted |")
        print("|---|---|---|---|---|---|---|---|")
        for ratio in ratios:
            budget = int(original / ratio)
            candidates = []
            for b in bits:
                s = uniform_sparsity(loaded.module, base, table, b, budget)
                if s is not None:
                    recipe = uniform_recipe(base, s, b)
                    candidates.append((*measured(recipe, loaded, data), s, b))
            if not candidates:
                print(f"| {ratio:g}x ({budget:,} B) | no uniform setting fits | | | | | | |", flush=True)
                continue
            u_bytes, u_acc, u_s, u_b = max(candidates, key=lambda c: c[1])
            choice, _ = alloc.fit(table, u_bytes, None, "knapsack",
                                  lambda c: alloc.exact_bytes(loaded.module, base, table, c))
            a_bytes, a_acc = measured(alloc.recipe_for(base, table, choice), loaded, data)
            print(f"| {ratio:g}x ({budget:,} B) | {u_s:.1%} sparse, {u_b} bits | {u_bytes:,} | {u_acc:.2%} | "
                  f"{settings(choice)} | "
                  f"{a_bytes:,} | {a_acc:.2%} | {table.predicted_metric(choice):.2%} |", flush=True)
            if args.finetune and k == 0 and ratio == ratios[len(ratios) // 2]:
                tuned = base_recipe(True)
                fu = measured(uniform_recipe(tuned, u_s, u_b), loaded, data)
                tuned_table = replace(table, axes=alloc.allocatable_axes(tuned, loaded.module, sparsities, bits))
                fa = measured(alloc.recipe_for(tuned, tuned_table, choice), loaded, data)
                print(f"| {ratio:g}x, fine-tuned | same | {fu[0]:,} | {fu[1]:.2%} | same | {fa[0]:,} | {fa[1]:.2%} | |",
                      flush=True)


if __name__ == "__main__":
    main()
