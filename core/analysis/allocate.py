"""Automatic allocation: each layer's setting chosen from its measured curve, to meet a file size or a drop.

A recipe's *allocatable* steps are the ones that set a value per layer: ``prune_magnitude`` and
``iterative_prune`` (a sparsity), ``quantize`` with a codebook per layer (bits). Their values form each
layer's grid of *options* (every sparsity x every bits). For each layer alone at each option the model is
measured on the validation split (:func:`core.analysis.sensitivity.measure_settings`, the fast suffix
path), and the option's bytes are the container's own price of that layer's tensor (with its share of the
header), so the predicted file is the rest of the model, priced once, plus one option per layer; a chosen
set is then priced whole by the encoder (:func:`exact_bytes`, :func:`fit`).

:func:`solve` picks one option per layer: the multiple-choice knapsack solved exactly by dynamic programming
over bytes (``knapsack``), or greedily by the smallest predicted drop per byte saved (``greedy``). The
predicted metric treats each layer's loss as independent of the others': the baseline times the product of
each layer's kept fraction (each measured alone, so the combined model is measured again after the run and
reported beside the prediction). A layer that gains (noise) counts as losing nothing, so the solver never
pays bytes to chase it. Whether higher or lower is better follows the metric's name (perplexity and
relative error: lower).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np
import torch
from torch import nn

from core.analysis.grids import BITS, SOLVERS, SPARSITIES
from core.analysis.perturb import Setting
from core.analysis.sensitivity import FAST, SensitivityError, measure_settings
from core.eval.data import Dataset
from core.format.container import WeightCode, price
from core.io.base import LoadedModel
from core.methods.codebooks import METHODS as QUANTIZERS
from core.methods.masks import magnitude_masks, prunable_layers
from core.pipeline.scores import LOWER_IS_BETTER
from core.progress import Task
from core.recipe import Recipe, Selection, Step

PRUNE_KINDS = ("prune_magnitude", "iterative_prune")
LOSS_WEIGHT = 0.01  # a rise of 0.1 in mean cross-entropy weighs as 0.1 points of top-1
TIGHTEN = 4  # times the budget is tightened when the encoder's price of a choice exceeds it
DP_CELLS = 1 << 17  # the knapsack's byte axis has at most this many cells (1 byte each for budgets up to it)


class AllocationError(SensitivityError):
    """An allocation that cannot be made as asked (no allocatable step, a target no option meets)."""


@dataclass(frozen=True)
class Axis:
    """One per-layer value a recipe step sets: ``name`` (``sparsity`` or ``bits``), the step's index, the
    values to try and the layers the step selects."""

    name: str
    step: int
    values: tuple[float, ...]
    layers: tuple[str, ...]


@dataclass(frozen=True)
class Option:
    """One layer at one setting (``values``: axis name -> value), measured with that layer alone."""

    values: tuple[tuple[str, float], ...]
    bytes: int
    metric: float
    loss: float | None = None  # mean cross-entropy, with labelled data

    def value(self, axis: str) -> float | None:
        return dict(self.values).get(axis)


@dataclass(frozen=True)
class OptionTable:
    """Every layer's options, the unperturbed ``baseline`` metric and ``rest_bytes``: the file without the
    allocated layers' weights (everything else, priced as the encoder stores it)."""

    axes: tuple[Axis, ...]
    options: dict[str, tuple[Option, ...]]
    baseline: float
    rest_bytes: int
    metric_name: str
    count: int
    split: str
    baseline_loss: float | None = None

    def _harm(self, metric: float) -> float:
        """How much worse ``metric`` is than the baseline, in units that add up over layers: the log of the
        ratio (a layer keeping 98% of the accuracy and another 99% keep 98% x 99% together), or the
        difference for an error whose baseline is 0. Never below 0."""
        lower = self.metric_name in LOWER_IS_BETTER
        if self.baseline > 0:
            ratio = (metric / self.baseline) if lower else (self.baseline / max(metric, 1e-9))
            return max(0.0, math.log(max(ratio, 1e-300)))
        return max(0.0, metric - self.baseline if lower else self.baseline - metric)

    def drop(self, option: Option) -> float:
        """What the solver minimises: the option's harm, and with labels ``LOSS_WEIGHT`` x the loss's rise (a
        tie-break finer than one example in ``count``: many light settings lose no example alone)."""
        rise = 0.0 if option.loss is None or self.baseline_loss is None else option.loss - self.baseline_loss
        return self._harm(option.metric) + LOSS_WEIGHT * max(0.0, rise)

    def predicted_bytes(self, choice: dict[str, Option]) -> int:
        return self.rest_bytes + sum(o.bytes for o in choice.values())

    def predicted_metric(self, choice: dict[str, Option]) -> float:
        """The metric of every layer's option together, as if each layer's harm were independent of the
        others' (each is measured alone)."""
        harm = sum(self._harm(o.metric) for o in choice.values())
        lower = self.metric_name in LOWER_IS_BETTER
        if self.baseline > 0:
            return self.baseline * math.exp(harm if lower else -harm)
        return self.baseline + harm if lower else self.baseline - harm

    def lost(self, choice: dict[str, Option]) -> float:
        """How much the prediction loses against the baseline (worse is positive, whichever way is better)."""
        change = self.predicted_metric(choice) - self.baseline
        return change if self.metric_name in LOWER_IS_BETTER else -change

    def uniform(self, values: dict[str, float]) -> dict[str, Option]:
        """The choice that gives every layer the same ``values`` (each layer's option nearest to them)."""
        out = {}
        for layer, options in self.options.items():
            def distance(o: Option) -> float:
                return sum(abs((o.value(a) or 0.0) - v) for a, v in values.items() if o.value(a) is not None)
            out[layer] = min(options, key=distance)
        return out


@dataclass(frozen=True)
class Allocation:
    """The chosen option per layer, what it predicts (``predicted_bytes``: the encoder's price of the whole
    choice), the recipe that applies it (ordinary steps), and the options it was chosen from."""

    choice: dict[str, Option]
    predicted_bytes: int
    predicted_metric: float
    target: str
    recipe: Recipe
    table: OptionTable

    def section(self, solver: str) -> dict:
        """As the report holds it (plain data)."""
        t = self.table
        return {"target": self.target, "solver": solver, "split": t.split, "examples": t.count,
                "metric": t.metric_name, "baseline": t.baseline, "predicted_bytes": self.predicted_bytes,
                "predicted_metric": self.predicted_metric,
                "layers": {n: {**dict(o.values), "bytes": o.bytes, "metric_alone": o.metric}
                           for n, o in self.choice.items()},
                "recipe": self.recipe.to_dict()}


def allocatable_axes(recipe: Recipe, model: nn.Module, sparsities: Sequence[float] = SPARSITIES,
                     bits: Sequence[int] = BITS) -> tuple[Axis, ...]:
    """The per-layer values ``recipe``'s steps set, in step order; an :class:`AllocationError` if none."""
    names = list(prunable_layers(model))
    axes = []
    for i, step in enumerate(recipe.steps):
        if step.kind in PRUNE_KINDS and getattr(step, "scope", "layer") == "layer":
            axes.append(Axis("sparsity", i, tuple(float(s) for s in sparsities), tuple(step.select.select(names))))
        elif (step.kind == "quantize" and step.scope == "layer" and step.method in ("kmeans", "uniform")
              and step.granularity == "tensor"):
            axes.append(Axis("bits", i, tuple(float(b) for b in bits), tuple(step.select.select(names))))
    if not axes:
        raise AllocationError("nothing to allocate: the recipe needs a prune_magnitude, iterative_prune or "
                              "quantize (kmeans or uniform, one codebook per layer) step")
    if len({a.name for a in axes}) < len(axes):
        raise AllocationError("the recipe sets the same value twice (two pruning or two quantize steps): "
                              "allocation chooses one sparsity and one bits per layer")
    return tuple(axes)


def _grid(axes: tuple[Axis, ...], layer: str) -> list[tuple[tuple[str, float], ...]]:
    grid: list[tuple[tuple[str, float], ...]] = [()]
    for axis in axes:
        if layer in axis.layers:
            grid = [g + ((axis.name, v),) for g in grid for v in axis.values]
    return grid


class Pricer:
    """Bytes a layer's weight takes in the file as the encoder stores it with ``options`` (the recipe's encode
    step: ``use_huffman``, ``index_bits``, ``small_float``): its streams exactly, and its share of the header.
    The header is zlib-compressed JSON, so shares do not add up exactly (a few bytes per layer too many);
    :func:`exact_bytes` prices a whole choice to the byte."""

    def __init__(self, **options) -> None:
        self.options = options
        self.empty_header = price({}, {}, {}, **options).header_bytes

    def __call__(self, key: str, weight: torch.Tensor, code: WeightCode | None) -> int:
        account = price({key: weight}, {key: code} if code is not None else {}, {}, **self.options)
        return account.header_bytes - self.empty_header + account.tensors[0].bytes

    def rest(self, model: nn.Module, allocated: Sequence[str], model_info: dict | None = None) -> int:
        """The file of ``model`` (recording ``model_info``) without the weights of ``allocated``."""
        state = {k: v.detach() for k, v in model.state_dict().items()}
        whole = price(state, {}, model_info or {}, **self.options).total
        return whole - sum(self(f"{n}.weight", state[f"{n}.weight"], None) for n in allocated)


def encode_options(recipe: Recipe) -> dict:
    """How ``recipe``'s encode step (or the default one) stores the file, as :func:`price` takes it."""
    step = next((s for s in recipe.steps if s.kind == "encode"), None)
    if step is None:
        return {"use_huffman": True, "index_bits": 0, "small_float": "float16"}
    return {"use_huffman": step.huffman, "index_bits": step.index_bits, "small_float": step.small_tensors}


def option_weight(weight: torch.Tensor, values: dict[str, float], quantizer: str = "kmeans",
                  symmetric: bool = True) -> tuple[torch.Tensor, WeightCode]:
    """A layer's weight (float) at ``values`` (sparsity, bits), computed as the pipeline's steps compute it:
    magnitude pruning, then the kept weights shared by ``quantizer``; and what the encoder stores."""
    mask = torch.ones_like(weight, dtype=torch.bool)
    if values.get("sparsity"):
        mask = magnitude_masks({"w": weight}, float(values["sparsity"]))["w"]
    if "bits" not in values:
        new = weight * mask
        return new, WeightCode(mask, None, None, new)
    codebook, codes, mask, _ = QUANTIZERS[quantizer](weight, mask, int(values["bits"]), False, symmetric)
    new = codebook[codes.int()].reshape(weight.shape) * mask
    return new, WeightCode(None if bool(mask.all()) else mask, codes.to(torch.uint8), codebook, new)


def measure_options(loaded: LoadedModel, data: Dataset | None, recipe: Recipe, sparsities=SPARSITIES, bits=BITS,
                    limit: int | None = 2000, split: str = "val", mode: str = FAST,
                    model_info: dict | None = None) -> Task[OptionTable]:
    """Every allocatable layer of ``recipe`` alone at every option, measured on ``data``'s ``split`` (the first
    ``limit`` examples) or, without labelled data, by fidelity on the probe inputs. ``model_info``: what the
    file records of the model (:func:`core.pipeline.encoding.describe`), for the header's size."""
    axes = allocatable_axes(recipe, loaded.module, sparsities, bits)
    quantize = next((recipe.steps[a.step] for a in axes if a.name == "bits"), None)
    quantizer = quantize.method if quantize is not None else "kmeans"
    symmetric = quantize.symmetric if quantize is not None else True
    layers = [n for n in prunable_layers(loaded.module) if any(n in a.layers for a in axes)]
    grids = {n: _grid(axes, n) for n in layers}
    pricer = Pricer(**encode_options(recipe))
    indices = range(max(len(g) for g in grids.values()))

    def setting_of(name, module, weight, index):
        if index >= len(grids[name]):
            return Setting(None, None, "not an option of this layer")
        new, code = option_weight(weight, dict(grids[name][index]), quantizer, symmetric)
        return Setting(new.to(module.weight.dtype), pricer(f"{name}.weight", weight, code))

    m = yield from measure_settings(loaded, data, layers, list(indices), setting_of, limit, mode, split=split)
    options = {n: tuple(Option(grids[n][i], cost, figures["metric"], figures.get("loss"))
                        for i, (cost, figures) in enumerate(m.figures[n]) if i < len(grids[n]))
               for n in layers}
    rest = pricer.rest(loaded.module, layers, model_info)
    return OptionTable(axes, options, m.baseline["metric"], rest, m.metric_name, m.count,
                       split if data is not None else "inputs", m.baseline.get("loss"))


def _knapsack(table: OptionTable, budget: int) -> dict[str, Option] | None:
    """The choice of least predicted drop whose bytes fit ``budget`` (exact at the byte axis' resolution,
    each option's bytes rounded up to it so the budget still holds); None if nothing fits."""
    layers = list(table.options)
    spare = budget - table.rest_bytes
    if spare < 0:
        return None
    unit = max(1, math.ceil(spare / DP_CELLS))
    cells = spare // unit + 1
    best = np.zeros(cells)  # least drop of the layers so far, using at most b units
    picks = []
    for layer in layers:
        new = np.full(cells, np.inf)
        pick = np.full(cells, -1, dtype=np.int64)
        for k, option in enumerate(table.options[layer]):
            cost = math.ceil(option.bytes / unit)
            if cost >= cells:
                continue
            candidate = np.full(cells, np.inf)
            candidate[cost:] = best[:cells - cost] + table.drop(option)
            better = candidate < new
            new[better], pick[better] = candidate[better], k
        best = new
        picks.append(pick)
    if not np.isfinite(best[-1]):
        return None
    choice, b = {}, cells - 1
    for layer, pick in zip(reversed(layers), reversed(picks)):
        option = table.options[layer][int(pick[b])]
        choice[layer] = option
        b -= math.ceil(option.bytes / unit)
    return {n: choice[n] for n in layers}


def _slope(table: OptionTable, a: Option, b: Option) -> float:
    """Drop added per byte saved, going from option ``a`` to the smaller ``b``."""
    return (table.drop(b) - table.drop(a)) / max(1, a.bytes - b.bytes)


def _greedy(table: OptionTable, budget: int) -> dict[str, Option] | None:
    """From each layer's most accurate option, move the layer whose next smaller option costs the least
    predicted drop per byte saved, until the file fits."""
    def frontier(options):  # the lower convex hull of (bytes, drop), from the most accurate option down
        pareto: list[Option] = []
        for o in sorted(options, key=lambda o: (table.drop(o), o.bytes)):
            if not pareto or o.bytes < pareto[-1].bytes:
                pareto.append(o)
        hull: list[Option] = []
        for o in pareto:
            while len(hull) >= 2 and _slope(table, hull[-2], hull[-1]) >= _slope(table, hull[-2], o):
                hull.pop()
            hull.append(o)
        return hull
    fronts = {n: frontier(o) for n, o in table.options.items()}
    at = dict.fromkeys(fronts, 0)
    while table.predicted_bytes({n: fronts[n][i] for n, i in at.items()}) > budget:
        moves = [(_slope(table, f[at[n]], f[at[n] + 1]), n) for n, f in fronts.items() if at[n] + 1 < len(f)]
        if not moves:
            return None
        at[min(moves)[1]] += 1
    return {n: fronts[n][i] for n, i in at.items()}


def _least_bytes(table: OptionTable, max_drop: float) -> dict[str, Option] | None:
    """The smallest file whose predicted drop is at most ``max_drop``: the knapsack at every budget."""
    low, high = table.rest_bytes, table.rest_bytes + sum(max(o.bytes for o in v) for v in table.options.values())
    if _knapsack(table, high) is None or table.lost(_knapsack(table, high)) > max_drop:
        return None
    while high - low > max(1, high // 2000):
        middle = (low + high) // 2
        choice = _knapsack(table, middle)
        if choice is not None and table.lost(choice) <= max_drop:
            high = middle
        else:
            low = middle
    return _knapsack(table, high)


def solve(table: OptionTable, budget_bytes: int | None = None, max_drop: float | None = None,
          solver: str = "knapsack") -> dict[str, Option]:
    """One option per layer: the least predicted drop within ``budget_bytes`` (the whole file), or the
    fewest bytes within ``max_drop`` (a fraction: 0.01 is one point of top-1)."""
    if solver not in SOLVERS:
        raise AllocationError(f"unknown solver {solver!r}; one of {', '.join(SOLVERS)}")
    if (budget_bytes is None) == (max_drop is None):
        raise AllocationError("give one target: a file size (or ratio), or a maximum drop")
    if budget_bytes is not None:
        choice = (_knapsack if solver == "knapsack" else _greedy)(table, int(budget_bytes))
        if choice is None:
            smallest = table.rest_bytes + sum(min(o.bytes for o in v) for v in table.options.values())
            raise AllocationError(f"no setting of these layers makes a file of {budget_bytes:,} bytes: the "
                                  f"smallest these options make is {smallest:,} bytes")
        return choice
    choice = _least_bytes(table, float(max_drop))
    if choice is None:
        raise AllocationError(f"no setting of these layers loses at most {max_drop:g} of {table.metric_name}")
    return choice


def exact_bytes(model: nn.Module, recipe: Recipe, table: OptionTable, choice: dict[str, Option],
                model_info: dict | None = None) -> int:
    """The encoder's price of ``model`` with the chosen options applied (as ``recipe``'s steps make them,
    before any training they do)."""
    quantize = next((recipe.steps[a.step] for a in table.axes if a.name == "bits"), None)
    state = _encoder_order({k: v.detach() for k, v in model.state_dict().items()}, choice)
    layers = prunable_layers(model)
    codes = {}
    for name, option in choice.items():
        _, codes[f"{name}.weight"] = option_weight(layers[name].weight.detach().float(), dict(option.values),
                                                   quantize.method if quantize else "kmeans",
                                                   quantize.symmetric if quantize else True)
    return price(state, codes, model_info or {}, **encode_options(recipe)).total


def _encoder_order(state: dict[str, torch.Tensor], layers) -> dict[str, torch.Tensor]:
    """``state`` in the order the encoder sees it: a pruned or quantized layer's weight, registered again
    when its parametrization is removed, comes after the layer's bias (the header is compressed, so the
    order changes its size by a byte or so)."""
    moved = {f"{n}.weight" for n in layers if f"{n}.bias" in state}
    out = {}
    for key, value in state.items():
        if key not in moved:
            out[key] = value
        if key.endswith(".bias") and f"{key[:-5]}.weight" in moved:
            out[f"{key[:-5]}.weight"] = state[f"{key[:-5]}.weight"]
    return out


def fit(table: OptionTable, budget_bytes: int | None, max_drop: float | None, solver: str,
        price_of: Callable[[dict[str, Option]], int], tries: int = TIGHTEN) -> tuple[dict[str, Option], int]:
    """:func:`solve`, then the choice priced by ``price_of`` (the encoder's own account); while that exceeds
    ``budget_bytes`` the budget is tightened by the excess (at most ``tries`` times). Returns the choice and
    its price."""
    budget = budget_bytes
    for _ in range(tries + 1):
        choice = solve(table, budget, None if budget_bytes is not None else max_drop, solver)
        exact = price_of(choice)
        if budget_bytes is None or exact <= budget_bytes:
            return choice, exact
        budget -= exact - budget_bytes
    raise AllocationError(f"the chosen settings take {exact:,} bytes, over the {budget_bytes:,} asked for, "
                          f"after tightening {tries} times")


def recipe_for(recipe: Recipe, table: OptionTable, choice: dict[str, Option], name: str | None = None,
               description: str | None = None) -> Recipe:
    """``recipe`` with each allocatable step's value set per layer to the chosen options (ordinary steps:
    the step's own value becomes the most common choice, every layer that differs an exact override)."""
    steps = list(recipe.steps)
    for axis in table.axes:
        chosen = {n: o.value(axis.name) for n, o in choice.items() if o.value(axis.name) is not None}
        if not chosen:
            continue
        values = list(chosen.values())
        common = max(values, key=lambda v: (values.count(v), v))
        cast = int if axis.name == "bits" else float
        overrides = tuple((n, cast(v)) for n, v in chosen.items() if v != common)
        step: Step = steps[axis.step]
        select = Selection(step.select.layers, step.select.ignore, overrides)
        steps[axis.step] = replace(step, **{axis.name: cast(common)}, select=select)
    return replace(recipe, steps=tuple(steps), name=name or f"{recipe.name or 'recipe'} (allocated)",
                   description=description if description is not None else recipe.description)


def recorded_info(loaded: LoadedModel, data: Dataset | None) -> dict:
    """What a compressed file of ``loaded`` records of the model (its header's ``model``), as the pipeline
    writes it for a first run on it."""
    from core.analysis.inspection import model_inputs
    from core.pipeline.encoding import describe

    return describe(loaded, [], next(model_inputs(loaded, data, 2, batch_size=2)))


def allocate(loaded: LoadedModel, data: Dataset | None, recipe: Recipe, budget_bytes: int | None = None,
             max_drop: float | None = None, sparsities=SPARSITIES, bits=BITS, limit: int | None = 2000,
             solver: str = "knapsack", model_info: dict | None = None) -> Task[Allocation]:
    """Measure ``recipe``'s options on ``loaded`` (:func:`measure_options`), choose one per layer for the
    target (:func:`fit`), and return the choice with ``recipe`` set to it. ``model_info``: what the file
    records of the model (None: :func:`recorded_info`). Bad arguments raise
    :class:`AllocationError` before any measuring."""
    if solver not in SOLVERS:
        raise AllocationError(f"unknown solver {solver!r}; one of {', '.join(SOLVERS)}")
    if (budget_bytes is None) == (max_drop is None):
        raise AllocationError("give one target: a file size (or ratio), or a maximum drop")
    allocatable_axes(recipe, loaded.module, sparsities, bits)
    if model_info is None:
        model_info = recorded_info(loaded, data)
    table = yield from measure_options(loaded, data, recipe, sparsities, bits, limit, model_info=model_info)
    choice, exact = fit(table, budget_bytes, max_drop, solver,
                        lambda c: exact_bytes(loaded.module, recipe, table, c, model_info))
    goal = f"{budget_bytes:,} bytes" if budget_bytes is not None else f"at most {max_drop:g} lost"
    chosen = recipe_for(recipe, table, choice, recipe.name, f"chosen by allocate for {goal}")
    return Allocation(choice, exact, table.predicted_metric(choice), goal, chosen, table)
