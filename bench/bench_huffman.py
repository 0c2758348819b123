"""Benchmark: Huffman-coded size against the symbols' Shannon entropy, on real compression streams.

    python bench/bench_huffman.py

Streams: the symbol streams of LeNet-300-100 and LeNet-5 pruned by magnitude (92%; 66% of conv1 kept) and
shared by k-means (6 bits; 8 for convolutions), exactly as the compressed file stores them
(``container.quantized_streams``): codebook indices and relative indices for a sparse layer, one codebook
index or zero symbol per position for a layer that keeps most of its weights. For each stream: its Shannon entropy H (bits), the table the file stores (4 bits per symbol of
the alphabet), and the Huffman stream's bits; goal: coded <= 1.01 x (H + table).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from core.format import container, huffman  # noqa: E402
from core.io import load_model  # noqa: E402
from core.pipeline.encoding import weight_codes  # noqa: E402
from core.methods.masks import apply_masks, magnitude_masks, prunable_layers  # noqa: E402
from core.methods.codebooks import quantize_layer  # noqa: E402


def streams(name: str):
    model = load_model(f"zoo:{name}").module
    layers = prunable_layers(model)
    masks = magnitude_masks({n: m.weight for n, m in layers.items()},
                            {n: 0.34 if n == "conv1" else 0.92 for n in layers})
    apply_masks(model, masks)
    for n, layer in layers.items():
        quantize_layer(layer, "kmeans", 8 if n.startswith("conv") else 6)
    for tensor, code in weight_codes(model).items():
        encoding, _bits, layer_streams = container.quantized_streams(code, code.values.numel(), True)
        for kind, (symbols, alphabet, _counts) in zip(("weights", "indices"), layer_streams):
            yield f"{name}.{tensor} {kind} ({encoding})", symbols, alphabet


def main() -> None:
    worst = 0.0
    total_coded = total_bound = 0
    print(f"{'stream':34s} {'symbols':>8s} {'entropy':>10s} {'table':>6s} {'coded':>10s} {'coded/(H+table)':>16s}")
    for label, symbols, alphabet in [s for name in ("lenet300", "lenet5") for s in streams(name)]:
        counts = np.bincount(symbols, minlength=alphabet)
        entropy = huffman.entropy_bits(counts)
        table = alphabet * 4
        coded = huffman.encode(symbols, huffman.code_lengths(counts))[1]
        ratio = coded / (entropy + table)
        worst = max(worst, ratio)
        total_coded += coded
        total_bound += entropy + table
        print(f"{label:34s} {len(symbols):>8,} {entropy:>10,.0f} {table:>6,} {coded:>10,} {ratio:>16.4f}")
    print(f"all streams: coded / (entropy + table) = {total_coded / total_bound:.4f}; worst stream {worst:.4f} "
          "(goal <= 1.01)")


if __name__ == "__main__":
    main()
