"""Per-layer sensitivity: the metric at a grid of settings of one method, each layer perturbed alone.

For each chosen layer (by default every prunable layer, :func:`core.methods.masks.prunable_layers`) and
each level of the method (:mod:`core.analysis.perturb`), the layer's weight is replaced by its compressed
value in a working copy of the model, the rest left as it is, and the model is measured:

- with labelled data: top-1, top-5 and mean cross-entropy loss on the test split (or its first ``limit``
  examples), as Distiller's sensitivity analysis reports them;
- with only inputs (``--inputs``): the fidelity to the unperturbed model by the metric its kind of output
  calls for (:attr:`core.eval.fidelity.Fidelity.metric`).

The fast way (``mode="fast"``) runs only the part of the model from the layer on, on values captured once
(:mod:`core.analysis.suffix`); it gives the same numbers as re-evaluating the whole model per point
(``mode="naive"``). With :data:`BATCH_BYTES` set it measures several levels of a layer in one pass where
that gives the same values (:meth:`core.analysis.suffix.Suffix.run_levels`). Where it cannot run from
the layer (the model cannot be traced, the layer is called twice, the cache would be too big), the layer
is re-evaluated whole and :attr:`Sensitivity.paths` says why. The loaded model is never changed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.nn.utils import parametrize

from core.analysis import perturb, suffix
from core.errors import PrunescopeError
from core.eval.data import Dataset
from core.eval.evaluate import batch_size_of, evaluating, logits_of
from core.eval.fidelity import fidelity
from core.io.base import LoadedModel
from core.methods.masks import prunable_layers
from core.modelcopy import clone_module
from core.progress import Progress, Task, run

CACHE_BYTES = 1 << 30  # the most the captured live values may take before a layer is re-evaluated whole
BATCH_BYTES = 0  # the most one pass of several levels of a layer (n x K rows) may take; 0: a level a pass
# (on CPU the batched pass measured slower than level by level: BENCHMARKS.md, "Sensitivity analysis")
FAST = "fast"


class SensitivityError(PrunescopeError):
    """A sensitivity analysis that cannot run as asked; the message says why."""


@dataclass(frozen=True)
class Point:
    """The model measured with one layer at one level. ``skipped``: why the level was not measured (then
    every figure is None). ``metric``: top-1 with labels, else the fidelity metric; ``bytes``: the layer's
    weight in the compressed file at this level."""

    layer: str
    level: float
    bytes: int | None
    metric: float | None
    top1: float | None = None
    top5: float | None = None
    loss: float | None = None
    skipped: str | None = None


@dataclass(frozen=True)
class Sensitivity:
    """Curves of one method: a :class:`Point` per layer and level, the unperturbed ``baseline``
    (``{"metric", "top1", "top5", "loss"}``), each layer's uncompressed weight bytes, and how each layer
    was run (``paths[layer]``: ``"fast"``, or why it was re-evaluated whole)."""

    method: str
    level_name: str
    metric_name: str
    levels: tuple[float, ...]
    points: tuple[Point, ...]
    baseline: dict[str, float | None]
    original_bytes: dict[str, int]
    paths: dict[str, str]
    count: int
    quantizer: str | None = None
    labelled: bool = True
    notes: list[str] = field(default_factory=list)

    def curve(self, layer: str) -> list[Point]:
        return [p for p in self.points if p.layer == layer]


@dataclass
class _Metric:
    """How a list of per-batch outputs becomes figures: against labels, or against reference outputs."""

    labels: list[torch.Tensor] | None
    reference: list | None = None
    batches: list | None = None
    task: str | None = None
    pooling: object = None

    @property
    def name(self) -> str:
        return "top-1" if self.labels is not None else self._fidelity(self.reference).metric[0]

    def _fidelity(self, outputs: list):
        return run(fidelity(_Replay(outputs), _Replay(self.reference), self.batches, self.task, self.pooling))

    def __call__(self, outputs: list) -> dict[str, float | None]:
        if self.labels is None:
            return {"metric": self._fidelity(outputs).metric[1], "top1": None, "top5": None, "loss": None}
        correct1 = correct5 = 0
        loss, seen = 0.0, 0
        for out, y in zip(outputs, self.labels):
            logits = logits_of(out).float()
            loss += float(nn.functional.cross_entropy(logits, y, reduction="sum"))
            top = logits.topk(min(5, logits.shape[1]), 1).indices
            correct1 += int((top[:, 0] == y).sum())
            correct5 += int((top == y[:, None]).any(1).sum())
            seen += len(y)
        seen = max(seen, 1)
        return {"metric": correct1 / seen, "top1": correct1 / seen, "top5": correct5 / seen, "loss": loss / seen}


class _Replay(nn.Module):
    """A "model" that returns outputs already computed, one per call, in order (for :func:`fidelity`)."""

    def __init__(self, outputs: list) -> None:
        super().__init__()
        self.outputs, self.calls = outputs, 0

    def forward(self, *args, **kwargs):
        self.calls += 1
        return self.outputs[self.calls - 1]


def _batches(loaded: LoadedModel, data: Dataset | None, limit: int | None, batch_size: int, split: str = "test"):
    """(model inputs per batch, labels per batch or None): of ``data``'s ``split``, or the probe inputs."""
    if data is not None:
        flat = loaded.input_shape is not None and len(loaded.input_shape) == 2
        pairs = list(getattr(data, split).batches(batch_size, limit=limit))
        return [x.reshape(len(x), -1) if flat else x for x, _ in pairs], [y for _, y in pairs]
    if not loaded.probe_inputs:
        raise SensitivityError("no inputs to measure on: pass --data or --inputs")
    batches = list(loaded.probe_inputs)
    return (batches if limit is None else batches[:max(1, limit)]), None


def _check(model: nn.Module, method: str, levels: Sequence[float], layers: Sequence[str] | None,
           quantizer: str) -> list[str]:
    if method not in perturb.METHODS:
        raise SensitivityError(f"unknown method {method!r}; one of {', '.join(perturb.METHODS)}")
    if quantizer not in perturb.QUANTIZERS:
        raise SensitivityError(f"unknown quantizer {quantizer!r}; one of {', '.join(perturb.QUANTIZERS)}")
    if not levels:
        raise SensitivityError("no levels to measure")
    for level in levels:
        if (why := perturb.check_level(method, level)) is not None:
            raise SensitivityError(f"level {level:g} for {method}: {why}")
    known = list(prunable_layers(model))
    for name in layers or ():
        if name not in known:
            raise SensitivityError(f"unknown layer {name!r}; the prunable layers are {', '.join(known[:12])}"
                                   + (" ..." if len(known) > 12 else ""))
    return list(layers) if layers else known


def _working_copy(model: nn.Module) -> nn.Module:
    copy = clone_module(model)
    for module in copy.modules():  # a pruned or quantized model: measure the weights it computes with
        for name in list(getattr(module, "parametrizations", {}) or {}):
            parametrize.remove_parametrizations(module, name, leave_parametrized=True)
    return copy


def _plan(model: nn.Module, names: list[str], batches: list, mode: str, cache_bytes: int):
    """(suffix per layer that runs fast, baseline outputs, path per layer)."""
    if mode != FAST:
        return {}, suffix.full_outputs(model, batches), dict.fromkeys(names, "naive (asked for)")
    if any(isinstance(b, dict) for b in batches):
        return {}, suffix.full_outputs(model, batches), dict.fromkeys(names, "naive: keyword inputs are not traced")
    try:
        traced = suffix.Traced(model)
    except Exception as exc:  # fx raises many kinds (TraceError, TypeError, ...): every one means "cannot trace"
        why = f"naive: torch.fx cannot trace this model ({type(exc).__name__})"
        return {}, suffix.full_outputs(model, batches), dict.fromkeys(names, why)
    nodes, paths = {}, {}
    for name in names:
        node = traced.layer_node(name)
        if isinstance(node, str):
            paths[name] = f"naive: {node}"
        else:
            nodes[name], paths[name] = node, FAST
    suffixes, outputs, why = suffix.capture(traced, nodes, batches, cache_bytes)
    if why is not None:
        return {}, suffix.full_outputs(model, batches), {n: paths[n] if n not in nodes else f"naive: {why}"
                                                         for n in names}
    return suffixes, outputs, paths


@dataclass(frozen=True)
class Measurements:
    """What :func:`measure_settings` measured: per layer, per level, the setting's bytes and figures (the
    keys of :class:`Point` past ``bytes``; ``{"skipped": why}`` for a skipped level)."""

    figures: dict[str, list[tuple[int | None, dict]]]
    baseline: dict[str, float | None]
    metric_name: str
    original_bytes: dict[str, int]
    paths: dict[str, str]
    count: int
    labelled: bool


Perturbation = Callable[[str, nn.Module, torch.Tensor, object], perturb.Setting]
"""(layer name, layer, its weight as float, level) -> the layer's weight at that level and its bytes."""


def measure_settings(loaded: LoadedModel, data: Dataset | None, names: list[str], levels: Sequence,
                     setting_of: Perturbation, limit: int | None = None, mode: str = FAST, batch_size: int = 500,
                     cache_bytes: int = CACHE_BYTES, split: str = "test") -> Task[Measurements]:
    """The model measured with each layer of ``names`` alone at each of ``levels`` (any values
    ``setting_of`` understands), on ``data``'s ``split`` (its first ``limit`` examples) or the probe inputs.
    The loaded model is never changed."""
    yield Progress("sensitivity", 0, 1, "preparing")
    model = _working_copy(loaded.module)
    inputs, labels = _batches(loaded, data, limit, batch_size, split)
    figures: dict[str, list[tuple[int | None, dict]]] = {}
    with evaluating(model), torch.no_grad():
        suffixes, reference, paths = _plan(model, names, inputs, mode, cache_bytes)
        metric = _Metric(labels, reference, inputs, loaded.meta.get("task"), loaded.meta.get("pooling"))
        baseline = metric(reference)
        total = len(names) * len(levels)
        modules = dict(model.named_modules())
        for i, name in enumerate(names):
            module, row = modules[name], [None] * len(levels)
            original = module.weight.detach().clone()
            fast = suffixes.get(name)
            per_pass = 1 if fast is None else fast.levels_per_pass(BATCH_BYTES, _tensor_bytes(original), len(levels))
            pending: list[tuple[int, perturb.Setting]] = []  # measured together, up to per_pass of them
            for j, level in enumerate(levels):
                yield Progress("sensitivity", i * len(levels) + j, total, f"{name} at {_label(level)}")
                s = setting_of(name, module, original.float(), level)
                if s.skipped is not None:
                    row[j] = (None, {"skipped": s.skipped})
                else:
                    pending.append((j, s))
                if pending and (len(pending) == per_pass or j == len(levels) - 1):
                    weights = [p.weight for _, p in pending]
                    outputs = (fast.run_levels(module, original, weights) if fast is not None else
                               [_whole(model, module, original, w, inputs) for w in weights])
                    for (k, p), out in zip(pending, outputs):
                        row[k] = (p.bytes, metric(out))
                    pending = []
            figures[name] = row
        yield Progress("sensitivity", total, total, "done")
    count = sum(len(y) for y in labels) if labels is not None else sum(batch_size_of(b) for b in inputs)
    return Measurements(figures, baseline, metric.name,
                        {n: perturb.original_bytes(n, modules[n].weight) for n in names}, paths, count,
                        labels is not None)


def _whole(model: nn.Module, module: nn.Module, original: torch.Tensor, weight: torch.Tensor, inputs: list) -> list:
    """The whole model's outputs with ``module``'s weight at ``weight`` (then ``original`` again)."""
    try:
        module.weight.copy_(weight)
        return suffix.full_outputs(model, inputs)
    finally:
        module.weight.copy_(original)


def _tensor_bytes(t: torch.Tensor) -> int:
    return t.numel() * t.element_size()


def _label(level) -> str:
    return f"{level:g}" if isinstance(level, (int, float)) else str(level)


def sensitivity(loaded: LoadedModel, data: Dataset | None, method: str, levels: Sequence[float] | None = None,
                layers: Sequence[str] | None = None, limit: int | None = None, quantizer: str = "kmeans",
                mode: str = FAST, batch_size: int = 500, cache_bytes: int = CACHE_BYTES) -> Task[Sensitivity]:
    """Measure each layer of ``layers`` alone at each of ``levels`` of ``method`` (see the module docstring).

    ``data``: labelled data (its test split, the first ``limit`` examples); None: the loaded model's probe
    inputs (its first ``limit`` batches) and fidelity. Bad arguments raise :class:`SensitivityError` before
    any work."""
    levels = tuple(float(v) for v in (levels if levels is not None else perturb.DEFAULT_LEVELS[method]
                                      if method in perturb.DEFAULT_LEVELS else ()))
    names = _check(loaded.module, method, levels, layers, quantizer)

    def setting_of(name, module, weight, level):
        return perturb.setting(name, module, weight, method, level, quantizer)

    m = yield from measure_settings(loaded, data, names, levels, setting_of, limit, mode, batch_size, cache_bytes)
    points = tuple(Point(name, level, cost, **{"metric": None, **figures}) for name in names
                   for level, (cost, figures) in zip(levels, m.figures[name]))
    return Sensitivity(method, perturb.LEVEL_NAMES[method], m.metric_name, levels, points, m.baseline,
                       m.original_bytes, m.paths, m.count, quantizer if method == "quantize" else None, m.labelled)


def parse_levels(text: str) -> list[float]:
    """``"0.1,0.5,0.9"`` -> ``[0.1, 0.5, 0.9]``; anything else raises :class:`SensitivityError`."""
    try:
        levels = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise SensitivityError(f"--levels {text!r}: not comma-separated numbers") from None
    if not levels:
        raise SensitivityError(f"--levels {text!r}: no levels")
    return levels
