"""Benchmark: latency of the int8 model and of the structurally pruned model against the original.

    python bench/bench_latency.py

For LeNet-5 (MNIST) and the residual CNN (Fashion-MNIST or, without it, random inputs): the original float
model, an int8 model from static post-training quantization (``torch.ao`` x86 kernels, calibrated on 8
batches), and a copy with half of the output channels/neurons of every prunable layer removed through
Torch-Pruning (no fine-tuning: this measures speed, not accuracy). Median of 30 timed batches of 256 after
5 warm-up batches, all in one run; ratios are original / variant.
"""

from __future__ import annotations

import copy
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from core.methods import int8  # noqa: E402
from core.eval.data import dataset_available, load_dataset  # noqa: E402
from core.io import load_model  # noqa: E402
from core.progress import run  # noqa: E402
from core.methods.structured import prune_structured  # noqa: E402


def median_ms(model, x, runs: int = 30, warmup: int = 5) -> float:
    times = []
    with torch.inference_mode():
        for i in range(warmup + runs):
            start = time.perf_counter()
            model(x)
            if i >= warmup:
                times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def main() -> None:
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch 256")
    for name in ("lenet5", "resnet8-fashion"):
        loaded = load_model(f"zoo:{name}")
        data = load_dataset(loaded.dataset) if dataset_available(loaded.dataset) else load_dataset("mnist")
        x = next(data.test.batches(256))[0]
        original = loaded.module
        quantized = run(int8.convert(original, "static", x[:2], data, 8))
        pruned = copy.deepcopy(original)
        units = [n for n, m in pruned.named_modules() if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d))]
        prune_structured(pruned, x[:2], {n: 0.5 for n in units})
        params = (sum(p.numel() for p in original.parameters()), sum(p.numel() for p in pruned.parameters()))
        base = median_ms(original, x)
        q = median_ms(quantized, x)
        p = median_ms(pruned, x)
        print(f"{name}: original {base:.2f} ms; int8 static {q:.2f} ms ({base / q:.2f}x faster); "
              f"half the channels removed {p:.2f} ms ({base / p:.2f}x faster, {params[1]:,} of {params[0]:,} "
              "parameters)")


if __name__ == "__main__":
    main()
