"""Instant previews of a recipe: kept fraction, threshold and an estimate of bytes per layer.

These run on every slider move, so they use only the weight statistics already computed (bucket counts),
never the weights: microseconds per layer, whatever the model's size. Sizes here are *estimates* (the
studio says so); the compressed file's real size comes from encoding it.

Estimated bits per kept weight: the codebook index (``bits``, or 32 for unquantized floats), plus, for a
pruned layer, the entropy of the gaps between kept weights if each weight were kept independently with
probability ``d``: ``(-(1-d) log2(1-d) - d log2 d) / d`` bits, which Huffman-coded relative indices approach.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from core.analysis.stats import WeightStats, threshold_of_counts
from core.recipe import Recipe, Step, kind_of


@dataclass(frozen=True)
class LayerPreview:
    name: str
    params: int
    kept: float  # fraction of weights kept
    threshold: float  # |w| below this is pruned (0: nothing pruned)
    bits: int  # bits per stored weight value (32: float)
    estimated_bytes: int


def index_bits(density: float) -> float:
    """Ideal bits per kept weight to store its position, at ``density`` kept (0 < density <= 1)."""
    if density >= 1.0 or density <= 0.0:
        return 0.0
    d = density
    return (-(1 - d) * math.log2(1 - d) - d * math.log2(d)) / d


def estimate_layer_bytes(params: int, kept: float, bits: int) -> int:
    stored = params * kept
    codebook = (2 ** bits) * 2 if bits < 16 else 0  # float16 codebook
    return int(math.ceil(stored * (bits + index_bits(kept)) / 8)) + codebook


def global_threshold(stats: Mapping[str, WeightStats], sparsity: float) -> float:
    """The one |w| threshold that prunes ``sparsity`` of all these layers' weights together: the layers'
    bucket counts add up (they share one bucket table), and the threshold is read off their sum."""
    total = sum(s.count for s in stats.values())
    if sparsity <= 0 or not total:
        return 0.0
    counts = sum(s.dense_magnitude_counts() for s in stats.values())
    return threshold_of_counts(counts, sparsity * total)


def preview(stats: Mapping[str, WeightStats], sparsity: Mapping[str, float], bits: Mapping[str, int],
            global_sparsity: float | None = None) -> dict[str, LayerPreview]:
    """Per layer: kept fraction, threshold and estimated bytes for the given per-layer sparsities and
    bits (``global_sparsity``: one threshold across all layers in ``stats`` instead)."""
    threshold = global_threshold(stats, global_sparsity) if global_sparsity is not None else None
    out = {}
    for name, s in stats.items():
        if threshold is not None:
            t = threshold
            kept = 1.0 - s.fraction_below(t)
        else:
            target = sparsity.get(name, 0.0)
            t = s.threshold_for(target) if target > 0 else 0.0
            kept = 1.0 - target
        b = bits.get(name, 32)
        out[name] = LayerPreview(name, s.count, kept, t, b, estimate_layer_bytes(s.count, kept, b))
    return out


@dataclass
class Plan:
    """What a recipe would leave of each layer with statistics, estimated from the statistics alone.

    Each step kind's ``preview(step, plan)`` (see :mod:`core.recipe.registry`) updates it: pruning lowers
    ``kept`` and raises ``threshold``, quantization sets ``bits``. Kinds without a preview leave it as it is.
    """

    stats: Mapping[str, WeightStats]
    kept: dict[str, float]
    threshold: dict[str, float]
    bits: dict[str, int]

    @classmethod
    def start(cls, stats: Mapping[str, WeightStats]) -> Plan:
        return cls(stats, {n: 1.0 for n in stats}, {n: 0.0 for n in stats}, {n: 32 for n in stats})

    def layers(self, step: Step) -> list[str]:
        """The layers with statistics that ``step`` selects (a pattern that matches none selects nothing
        here; the run refuses it)."""
        return step.select.select(list(self.stats))

    def prune_to(self, name: str, sparsity: float, threshold: float) -> None:
        """Record that ``name`` keeps at most ``1 - sparsity`` of its weights, those at or above ``threshold``
        (pruning an already pruned layer again keeps whichever is less)."""
        self.kept[name] = min(self.kept[name], 1.0 - sparsity)
        self.threshold[name] = max(self.threshold[name], threshold)


def preview_recipe(recipe: Recipe, stats: Mapping[str, WeightStats]) -> dict[str, LayerPreview]:
    """Per layer with statistics: what ``recipe`` would keep, its threshold, its bits and estimated bytes."""
    plan = Plan.start(stats)
    for step in recipe.steps:
        kind = kind_of(step)
        if kind.preview is not None:
            kind.preview(step, plan)
    return {n: LayerPreview(n, s.count, plan.kept[n], plan.threshold[n], plan.bits[n],
                            estimate_layer_bytes(s.count, plan.kept[n], plan.bits[n])) for n, s in stats.items()}
