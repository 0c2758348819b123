"""The inventory and weight statistics of weights read from disk one tensor at a time, with no architecture.

Tensors are grouped into layers by name, as a model's modules own them: ``a.b.weight`` and ``a.b.bias`` are
layer ``a.b``. A layer's statistics are those of its ``weight`` (else of all its tensors), the tensors
:func:`core.analysis.stats.layer_weights` picks for a module; its parameters, bytes (at each tensor's stored
dtype) and sparsity count all its tensors. A file does not say which tensors are buffers, so every one counts.

Each tensor is read in slices of whole rows of at most :data:`CHUNK_ELEMENTS` values. A float16 or bfloat16
slice is counted by its 16-bit patterns, which say exactly which float32 bucket each value widens to; other
dtypes are widened to float32 a slice at a time: no tensor gets a whole float32 copy. The bucket
counts (:func:`~core.analysis.stats.raw_bucket_counts`) are exact and derived by
:func:`~core.analysis.stats.stats_from_counts`, so every figure equals what
:func:`~core.analysis.stats.weight_stats` gives for the same tensors in memory.
"""

from __future__ import annotations

import numpy as np
import torch

from core.analysis.inventory import Inventory, LayerInfo, kept_fraction
from core.analysis.stats import KERNEL_MIN_ELEMENTS, N_BUCKETS, SIGN, WeightStats, bins_for, pattern_counts, \
    raw_bucket_counts, stats_from_counts, widen_counts
from core.io.base import TensorEntry, WeightsSource
from core.progress import Progress, Task

STREAMED_TYPE = "weights"
"""The type a streamed layer shows: the file names no module class."""
CHUNK_ELEMENTS = 1 << 24  # values per slice read: 32 MB of float16, 64 MB of float32 (or of a widening)
SIXTEEN_BIT = {"float16": torch.float16, "bfloat16": torch.bfloat16}


def streamed_layers(entries: tuple[TensorEntry, ...]) -> dict[str, list[TensorEntry]]:
    """Layer name -> its tensors, in file order (a tensor ``a.b.weight`` belongs to layer ``a.b``)."""
    layers: dict[str, list[TensorEntry]] = {}
    for entry in entries:
        layers.setdefault(entry.name.rpartition(".")[0], []).append(entry)
    return layers


def _counted(tensors: list[TensorEntry]) -> list[TensorEntry]:
    """The tensors a layer's statistics describe: its non-empty ``weight``, or else all its non-empty ones."""
    weight = [e for e in tensors if e.name.rpartition(".")[2] == "weight" and e.numel]
    return weight or [e for e in tensors if e.numel]


def _layer_info(name: str, tensors: list[TensorEntry], zeros: int) -> LayerInfo:
    weight = next((e for e in tensors if e.name.rpartition(".")[2] == "weight"), tensors[0])
    params = sum(e.numel for e in tensors)
    return LayerInfo(name, STREAMED_TYPE, weight.shape, params, sum(e.end - e.start for e in tensors),
                     1.0 - kept_fraction(zeros, params) if params else 0.0,
                     "/".join(sorted({e.dtype for e in tensors})))


def _read_counts(source: WeightsSource, entry: TensorEntry, use_kernel: bool, done: int,
                 total: int) -> Task[tuple[np.ndarray, int]]:
    """One tensor's raw bucket counts and exact zero count, read a slice at a time. A float16 or bfloat16
    slice is counted by its bit patterns in place (:func:`~core.analysis.stats.pattern_counts`); any other is
    widened to float32 a slice at a time, and its zeros counted only where the bucket of zero is occupied."""
    patterns = np.zeros(N_BUCKETS, np.int64) if entry.dtype in SIXTEEN_BIT else None
    counts, zeros = np.zeros(N_BUCKETS, np.int64), 0
    for chunk in source.chunks(entry, CHUNK_ELEMENTS):
        if patterns is not None:
            np.add(patterns, pattern_counts(chunk), out=patterns)
        else:
            wide = chunk if chunk.dtype == torch.float32 else chunk.to(torch.float32)
            part = raw_bucket_counts(wide, use_kernel)
            if part[0] or part[SIGN]:  # +0, -0 and float32 denormals: count the exact zeros
                zeros += chunk.numel() - int(torch.count_nonzero(chunk if chunk.dtype == torch.float64 else wide))
            np.add(counts, part, out=counts)
            del wide
        done += chunk.numel()
        del chunk  # the slice goes before the next is read
        yield Progress("weights", done, total, entry.name)
    if patterns is not None:
        return widen_counts(patterns, SIXTEEN_BIT[entry.dtype]), int(patterns[0] + patterns[SIGN])
    return counts, zeros


def streamed_stats(source: WeightsSource, bins: int = 128) -> Task[tuple[Inventory, dict[str, WeightStats]]]:
    """The inventory and per-layer :class:`WeightStats` of ``source``, each tensor read once, in file order.

    Yields :class:`Progress` in values read (every tensor's); returns ``(inventory, {layer: stats})``."""
    layers = streamed_layers(source.entries)
    counted = {name: _counted(tensors) for name, tensors in layers.items()}
    # one choice for the whole file, as weight_stats makes it for a model
    use_kernel = sum(e.numel for es in counted.values() for e in es) >= KERNEL_MIN_ELEMENTS
    total, done = sum(e.numel for e in source.entries), 0
    infos, stats, all_zeros = [], {}, 0
    for name, tensors in layers.items():
        counts, zeros = np.zeros(N_BUCKETS, np.int64), 0
        for entry in tensors:
            tensor_counts, tensor_zeros = yield from _read_counts(source, entry, use_kernel, done, total)
            done += entry.numel
            zeros += tensor_zeros
            if entry in counted[name]:
                np.add(counts, tensor_counts, out=counts)
        infos.append(_layer_info(name, tensors, zeros))
        all_zeros += zeros
        stats[name] = stats_from_counts(name, counts, bins_for(sum(e.numel for e in counted[name]), bins),
                                        compiled=use_kernel)
    inventory = Inventory(tuple(infos), total, sum(e.end - e.start for e in source.entries), all_zeros)
    return inventory, stats
