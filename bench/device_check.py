"""Device check: one fine-tuning compression of a zoo model on a CUDA device and on the CPU.

    python bench/device_check.py [--model lenet300] [--epochs 3] [--half]

For a machine with a GPU (a few minutes there; the CPU run is the slow one). Runs the same recipe (90%
magnitude pruning, ``--epochs`` epochs of fine-tuning, 5-bit k-means with one epoch of codebook tuning,
Huffman coding) through ``apply_recipe`` with ``device=cuda`` and ``device=cpu`` and prints, for each, the
wall time, the test accuracy before and after, and the file's bytes. With ``--half`` the model is first
converted to float16. Without CUDA it says so and runs the CPU half only. No figure from it is recorded
anywhere: it is for looking at.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from core.devices import resolve_device  # noqa: E402
from core.eval.data import load_dataset  # noqa: E402
from core.io import load_model  # noqa: E402
from core.pipeline.apply import apply_recipe  # noqa: E402
from core.progress import run  # noqa: E402
from core.recipe import Recipe  # noqa: E402


def recipe(epochs: int) -> Recipe:
    return Recipe.from_dict({"name": "device-check", "seed": 0, "steps": [
        {"kind": "prune_magnitude", "sparsity": 0.9},
        {"kind": "finetune", "epochs": epochs, "lr": 0.02},
        {"kind": "quantize", "method": "kmeans", "bits": 5, "finetune_epochs": 1, "lr": 0.001},
        {"kind": "encode", "huffman": True}]})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="lenet300")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--half", action="store_true")
    args = parser.parse_args()
    devices = ["cuda", "cpu"] if torch.cuda.is_available() else ["cpu"]
    if devices == ["cpu"]:
        print("no CUDA device here (torch.cuda.is_available() is False): the CPU run only")
    for name in devices:
        loaded = load_model(f"zoo:{args.model}")
        if args.half:
            loaded.module.half()
        data = load_dataset(loaded.dataset)
        device = resolve_device(name)
        start = time.perf_counter()
        result = run(apply_recipe(recipe(args.epochs), loaded, data, device=device))
        seconds = time.perf_counter() - start
        print(f"{name:5s} {seconds:7.1f} s  accuracy {result.before.test.accuracy:.2%} -> "
              f"{result.after.test.accuracy:.2%}  {result.compressed_bytes:,} bytes  "
              f"({next(result.model.parameters()).dtype})", flush=True)


if __name__ == "__main__":
    main()
