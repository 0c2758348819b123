"""One global k-means codebook against a codebook per layer, without training (seconds, not minutes).

LeNet-300-100 from the zoo, magnitude-pruned to Deep Compression's Table 2 fractions (fc1 keeps 8%, fc2 9%,
fc3 26%) with no fine-tuning, then k-means at each of ``--bits`` per layer and with ``scope: global``, then
Huffman coding. Prints the file's bytes (the encoded file's length, which is its size on disk) and the test
accuracy of the model decoded from it, for both scopes.

    python bench/bench_global_codebook.py --bits 4 5 6
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.eval.data import load_dataset  # noqa: E402
from core.io import load_model  # noqa: E402
from core.pipeline.apply import apply_recipe  # noqa: E402
from core.progress import run  # noqa: E402
from core.recipe import Recipe  # noqa: E402

RECIPE = """steps:
  - {{kind: prune_magnitude, sparsity: 0.92, overrides: {{fc2: 0.91, fc3: 0.74}}}}
  - {{kind: quantize, method: kmeans, bits: {bits}, scope: {scope}}}
  - {{kind: encode, huffman: true}}
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bits", type=int, nargs="+", default=[4, 5, 6])
    args = parser.parse_args()
    data = load_dataset("mnist")
    loaded = load_model("zoo:lenet300")
    print(f"{'bits':>4} {'scope':>6} {'file bytes':>10} {'codebook bytes':>14} {'accuracy':>8}")
    for bits in args.bits:
        for scope in ("layer", "global"):
            recipe = Recipe.from_text(RECIPE.format(bits=bits, scope=scope))
            result = run(apply_recipe(recipe, loaded, data, measure_before=False))
            books = sum(t.codebook_bytes for t in result.account.tensors)
            print(f"{bits:>4} {scope:>6} {result.compressed_bytes:>10,} {books:>14,} "
                  f"{result.after.test.accuracy:>8.2%}")


if __name__ == "__main__":
    main()
