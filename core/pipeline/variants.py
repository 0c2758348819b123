"""Variants: the original model and each compressed version of it, as plain data for comparing them.

A :class:`Variant` holds what the trade-off plot, the compare view and the demo need: its size on disk,
its measured accuracy (or fidelity), its latency (one measurement, which every view of the variant shows),
a per-layer summary, and its predictions on the test split (for the confusion matrix and the inputs whose
prediction changed). No live tensors cross to the
studio: the decoded model stays in the engine's hands for further work.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from core.devices import placed
from core.format.container import FileAccount
from core.eval.data import Split
from core.eval.evaluate import Latency, accuracy
from core.eval.fidelity import Fidelity
from core.eval.pairs import PairsScore
from core.analysis.cost import Cost, count_macs
from core.analysis.inventory import inventory, kept_fraction
from core.progress import Task
from core.recipe import Recipe


@dataclass(frozen=True)
class LayerSummary:
    """One tensor of a variant: parameters, kept fraction, bits per stored weight and index, bytes."""

    name: str
    params: int
    kept: float
    weight_bits: int
    index_bits: int
    bytes: int


@dataclass(frozen=True)
class Variant:
    id: int
    name: str
    recipe: Recipe | None  # None: the original model
    size_bytes: int  # on disk: the original's saved state_dict, or the compressed file
    accuracy: float | None
    loss: float | None
    latency: Latency | None  # measured once, when the variant is made; every view shows this one
    layers: tuple[LayerSummary, ...]
    predictions: np.ndarray | None = field(default=None, compare=False, repr=False)
    labels: np.ndarray | None = field(default=None, compare=False, repr=False)
    weights: dict = field(default_factory=dict, compare=False, repr=False)  # layer -> WeightStats
    codebooks: dict = field(default_factory=dict, compare=False, repr=False)  # layer -> quantization levels
    parent: int | None = None  # the variant this one was made from (None: the original, or made from it)
    cost: Cost | None = field(default=None, compare=False)  # MACs for one sample (None: not run on inputs)
    fidelity: Fidelity | None = field(default=None, compare=False)  # to the original, without a labelled set
    pairs: PairsScore | None = field(default=None, compare=False)  # the STS metric on the person's pairs
    allocation: dict | None = field(default=None, compare=False)  # the allocate step's choice, predicted and measured
    exits: dict | None = field(default=None, compare=False)  # early exits measured on the test split (report's "exits")

    @property
    def is_original(self) -> bool:
        return self.recipe is None

    @property
    def nonzero_params(self) -> int:
        """Parameters that are not exactly zero, over all its tensors (what pruning removes)."""
        return nonzero_params(self.layers)


def nonzero_params(layers: tuple[LayerSummary, ...]) -> int:
    """Parameters that are not exactly zero over these tensors: each one's count times its kept share."""
    return sum(round(row.params * row.kept) for row in layers)


def layers_from_account(account: FileAccount, model: nn.Module) -> tuple[LayerSummary, ...]:
    """A compressed variant's tensors: bytes and bits as the file stores them, kept share as the decoded
    model computes with them (:func:`~core.analysis.inventory.kept_fraction`)."""
    tensors = dict(model.state_dict(keep_vars=True))
    rows = []
    for t in account.tensors:
        tensor = tensors.get(t.name)
        kept = (kept_fraction(tensor.numel() - int(torch.count_nonzero(tensor.detach())), tensor.numel())
                if tensor is not None and tensor.is_floating_point() else 1.0)
        rows.append(LayerSummary(t.name, t.numel, kept, t.weight_bits or 32, t.index_bits, t.bytes))
    return tuple(rows)


def layers_of_model(model: nn.Module) -> tuple[LayerSummary, ...]:
    """The original's layers: every parameter tensor stored densely in float32."""
    rows = []
    for info in inventory(model).layers:
        for pname, p in dict(model.named_modules())[info.name].named_parameters(recurse=False):
            rows.append(LayerSummary(f"{info.name}.{pname}" if info.name else pname, p.numel(),
                                     kept_fraction(p.numel() - int(torch.count_nonzero(p.detach())), p.numel()),
                                     p.element_size() * 8, 0, p.numel() * p.element_size()))
    return tuple(rows)


def predictions(model: nn.Module, split: Split, batch_size: int = 1000, prepare=None,
                with_loss: bool = False) -> Task[tuple]:
    """Predicted and true labels over a split, as int64 arrays; with ``with_loss``, also the mean
    cross-entropy. One pass of :func:`core.eval.evaluate.accuracy`."""
    predicted: list = []
    with placed(model):  # on the CPU; a float16 model's inputs cast to float16
        measured = yield from accuracy(model, split, batch_size, prepare=prepare, predicted=predicted)
    result = (np.concatenate(predicted), split.labels.numpy().astype(np.int64))
    return (*result, measured.loss) if with_loss else result


def pareto_front(sizes: list[float], scores: list[float]) -> list[int]:
    """Indices of the variants no other beats on both counts (smaller and at least as accurate), by size."""
    order = sorted(range(len(sizes)), key=lambda i: (sizes[i], -scores[i]))
    front, best = [], -np.inf
    for i in order:
        if scores[i] > best:
            front.append(i)
            best = scores[i]
    return front


def confusion_matrix(predicted: np.ndarray, labels: np.ndarray, classes: int) -> np.ndarray:
    """``m[true, predicted]`` counts."""
    return np.bincount(labels * classes + predicted, minlength=classes * classes).reshape(classes, classes)


def per_class_accuracy(predicted: np.ndarray, labels: np.ndarray, classes: int) -> np.ndarray:
    counts = np.bincount(labels, minlength=classes)
    correct = np.bincount(labels[predicted == labels], minlength=classes)
    return np.where(counts > 0, correct / np.maximum(counts, 1), np.nan)


def changed_predictions(a: Variant, b: Variant) -> dict[str, np.ndarray]:
    """Test inputs whose prediction differs between two variants: those ``b`` now gets wrong, and those it
    now gets right (indices into the test split)."""
    if a.predictions is None or b.predictions is None:
        return {"now_wrong": np.zeros(0, np.int64), "now_right": np.zeros(0, np.int64)}
    right_a, right_b = a.predictions == a.labels, b.predictions == b.labels
    return {"now_wrong": np.flatnonzero(right_a & ~right_b), "now_right": np.flatnonzero(~right_a & right_b)}


@dataclass(frozen=True)
class LayerDiff:
    name: str
    params: tuple[int, int]
    kept: tuple[float, float]
    weight_bits: tuple[int, int]
    bytes: tuple[int, int]


def compare_layers(a: Variant, b: Variant) -> list[LayerDiff]:
    """Per-tensor rows for two variants (tensors present in either), in ``a``'s order then ``b``'s extras."""
    rows_a, rows_b = {r.name: r for r in a.layers}, {r.name: r for r in b.layers}
    names = list(rows_a) + [n for n in rows_b if n not in rows_a]
    empty = LayerSummary("", 0, 0.0, 0, 0, 0)
    return [LayerDiff(n, (rows_a.get(n, empty).params, rows_b.get(n, empty).params),
                      (rows_a.get(n, empty).kept, rows_b.get(n, empty).kept),
                      (rows_a.get(n, empty).weight_bits, rows_b.get(n, empty).weight_bits),
                      (rows_a.get(n, empty).bytes, rows_b.get(n, empty).bytes)) for n in names]


def stored_bytes_by_layer(variant: Variant) -> dict[str, int]:
    """Bytes each layer (module name, "" for the model's own parameters) takes in the variant's file: the
    sum over its tensors of what the file's byte account priced them at. The original's are its dense
    bytes. Header and framing bytes belong to no layer."""
    sizes: dict[str, int] = {}
    for row in variant.layers:
        layer = row.name.rsplit(".", 1)[0] if "." in row.name else ""
        sizes[layer] = sizes.get(layer, 0) + row.bytes
    return sizes


CHANCE_MARGIN = 0.05
"""How far above 1/classes an accuracy still counts as guessing (a 10-class model at 14% does not work)."""


def chance_level(variant: Variant) -> float | None:
    """The accuracy of guessing: 1 / the number of classes in the test labels (None without predictions)."""
    if variant.labels is None or not len(variant.labels):
        return None
    classes = int(max(variant.labels.max(), variant.predictions.max() if variant.predictions is not None else 0)) + 1
    return 1.0 / max(classes, 1)


def at_chance(variant: Variant) -> bool:
    """Whether the variant's accuracy is no better than guessing (within :data:`CHANCE_MARGIN`)."""
    chance = chance_level(variant)
    return chance is not None and variant.accuracy is not None and variant.accuracy <= chance + CHANCE_MARGIN


def _flat_prepare(loaded):
    flat = loaded.input_shape is not None and len(loaded.input_shape) == 2
    return (lambda x: x.reshape(x.shape[0], -1)) if flat else None


def describe_variant(variant_id: int, name: str, recipe: Recipe | None, model: nn.Module, loaded, data,
                     size_bytes: int, layers: tuple[LayerSummary, ...],
                     known_latency: Latency | None = None, measured=None) -> Task[Variant]:
    """Measure a model as a variant: test predictions (with accuracy and loss), latency, weight statistics,
    multiply-accumulates per sample; ``measured`` (a :class:`core.pipeline.apply.Measured`) gives its
    fidelity to the original and its sentence-pairs score.

    Latency is :func:`core.eval.evaluate.latency` on :func:`core.analysis.inspection.latency_inputs` (the
    batch that ``inspect`` times), unless ``known_latency`` already holds that measurement of this model."""
    from core.eval.evaluate import latency
    from core.analysis.inspection import latency_inputs
    from core.analysis.stats import weight_stats

    acc = loss = None
    lat = known_latency
    predicted = labels = None
    if data is not None:  # one pass over the test split gives predictions, accuracy and loss
        predicted, labels, loss = yield from predictions(model, data.test, prepare=_flat_prepare(loaded),
                                                         with_loss=True)
        acc = float((predicted == labels).mean()) if len(labels) else 0.0
    example = latency_inputs(loaded, data) if lat is None else None
    if example is not None:
        with placed(model):
            lat = yield from latency(model, example)
    weights = yield from weight_stats(model)
    one = latency_inputs(loaded, data, 1)
    with placed(model):
        cost = count_macs(model, one) if one is not None else None
    return Variant(variant_id, name, recipe, size_bytes, acc, loss, lat, layers, predicted, labels, weights,
                   cost=cost, fidelity=getattr(measured, "fidelity", None), pairs=getattr(measured, "pairs", None))


def compress_variant(variant_id: int, name: str, recipe: Recipe, loaded, data, parent: Variant | None = None
                     ) -> Task[tuple[Variant, object]]:
    """Apply ``recipe`` to ``loaded`` (the model of ``parent``, or the original when None) and measure the
    decoded model: (variant, CompressionResult). The variant's recipe, and the result's, is the whole chain
    from the original (``recipe`` on ``parent``'s), which reproduces it when run on the original."""
    from core.pipeline.apply import apply_recipe

    result = yield from apply_recipe(recipe, loaded, data, measure_before=False)
    chain = recipe.on(parent.recipe if parent is not None else None)
    result.recipe = chain
    variant = yield from describe_variant(variant_id, name, chain, result.model, loaded, data,
                                          result.compressed_bytes, layers_from_account(result.account, result.model),
                                          measured=result.after)
    allocation = result.sections.get("allocation")
    if allocation is not None:
        allocation = {**allocation, "measured_bytes": result.compressed_bytes}
    return dataclasses.replace(variant, codebooks=result.codebooks, allocation=allocation,
                               exits=result.sections.get("exits"),
                               parent=parent.id if parent is not None and not parent.is_original else None), result


MARKER_PRECEDENCE = ("architecture", "distillation", "pruning", "quantization", "training", "coding")
"""Which family names a variant made by steps of several: the one that changes the model most."""


def variant_families(variant: Variant) -> tuple[str, ...]:
    """The families (:data:`core.recipe.registry.FAMILIES`) of every step of the variant's recipe chain, in
    that order; () for the original."""
    from core.recipe.registry import FAMILIES, step_kind

    if variant.recipe is None:
        return ()
    found = {step_kind(step.kind).family or "other" for link in variant.recipe.chain() for step in link.steps}
    return tuple(sorted(found, key=lambda f: (FAMILIES.index(f) if f in FAMILIES else len(FAMILIES), f)))


def marker_family(variant: Variant) -> str:
    """The one family a plot marks the variant by: "original", the first of :data:`MARKER_PRECEDENCE` its
    steps belong to, else its first family ("none" for a recipe without steps)."""
    if variant.is_original:
        return "original"
    families = variant_families(variant)
    return next((f for f in MARKER_PRECEDENCE if f in families), families[0] if families else "none")


def default_name(recipe: Recipe) -> str:
    """What a recipe does, in a few words ("90% · 5-bit k-means"), from its steps' own summaries."""
    parts = [text for step in recipe.steps if (text := step.summary())]
    return " · ".join(parts) or recipe.name or "no change"


def original_variant(loaded, data, known_latency: Latency | None = None) -> Task[Variant]:
    """The loaded model as variant 0: its size is its state_dict saved with torch.save. ``known_latency``:
    the inspection's measurement of it, reused rather than measured a second time. Without a labelled data
    set it is measured against itself, as every variant is against it (the figure a variant's is read
    against: a cosine of 1, its perplexity), and on the sentence pairs when there are some."""
    from core.eval.evaluate import saved_size_bytes
    from core.pipeline.apply import Measured, measure

    measured = None
    if data is None and loaded.probe_inputs:
        measured = yield from measure(loaded.module, loaded, None, loaded.module)
    elif loaded.meta.get("pairs"):
        measured = Measured(pairs=(yield from measure(loaded.module, loaded, data, None)).pairs)
    return (yield from describe_variant(0, "original", None, loaded.module, loaded, data,
                                        saved_size_bytes(loaded.module), layers_of_model(loaded.module),
                                        known_latency, measured))
