"""Structured pruning: physically removing neurons (Linear) and filters (Conv), through Torch-Pruning.

Two kinds of step: ``prune_structured`` removes a fraction of each selected layer's units, ranked by an
importance (L1/L2 norm, how often they fire, BatchNorm scale, random); ``remove_units`` removes exactly the
units named (the studio's Delete). Torch-Pruning's dependency graph finds every layer coupled to a removed
unit (the next layer's inputs, BatchNorm, both sides of a residual addition) and shrinks them together.

Each step records what it removed as a ``torch_pruning`` structure op holding Torch-Pruning's pruning
history (layer, output or input, indices); it is small and replays exactly on a fresh copy of the
architecture, which is how a compressed file rebuilds a structurally pruned model. The layer whose output is
the model's output (the classifier) is never pruned: its units are the classes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch_pruning as tp
from torch import nn

from core.analysis.activations import UNIT_LAYERS, ActivationStats, activation_stats
from core.devices import placed
from core.eval.evaluate import call_model, evaluating, logits_of
from core.format.structure import StructureError, register_op
from core.methods.masks import apply_masks, bake, current_mask, prunable_layers
from core.pipeline.context import RunContext
from core.progress import Task
from core.recipe import Need, Step, register_step
from core.recipe.validate import check_choice, check_fraction, check_int, fail

STRUCTURE_FIRST = {"quantize": "structured pruning must come before quantize"}


@dataclass(frozen=True)
class PruneStructured(Step):
    """Physically remove a fraction ``amount`` of the neurons (Linear) or filters (Conv) of each selected
    layer, keeping coupled layers consistent; units ranked by ``importance``."""

    kind: ClassVar[str] = "prune_structured"
    not_after: ClassVar[Mapping[str, str]] = STRUCTURE_FIRST
    amount: float = 0.25
    importance: str = "l1"
    scope: str = "layer"
    seed: int = 0

    def summary(self) -> str:
        return f"{self.amount:.0%} of channels{self._overridden()}"

    def validate(self, where: str) -> None:
        super().validate(where)
        check_fraction(f"{where}.amount", self.amount)
        check_choice(f"{where}.importance", self.importance, IMPORTANCES)
        check_choice(f"{where}.scope", self.scope, ("layer", "global"))
        check_int(f"{where}.seed", self.seed, 0)
        for pattern, value in self.select.overrides:
            check_fraction(f"{where}.overrides[{pattern}]", value)

    def needs(self) -> frozenset[Need]:
        return frozenset({Need.CALIBRATION_DATA}) if self.importance == "activation" else frozenset()


@dataclass(frozen=True)
class RemoveUnits(Step):
    """Remove exactly these output units (neurons or filters) of one layer, by index."""

    kind: ClassVar[str] = "remove_units"
    not_after: ClassVar[Mapping[str, str]] = STRUCTURE_FIRST
    layer: str = ""
    units: tuple[int, ...] = ()

    def summary(self) -> str:
        return f"−{len(self.units)} unit{'s' if len(self.units) != 1 else ''} of {self.layer}"

    def validate(self, where: str) -> None:
        super().validate(where)
        if not self.layer:
            fail(f"{where}.layer", "must name a layer")
        if not self.units:
            fail(f"{where}.units", "must list at least one unit index")
        for i, unit in enumerate(self.units):
            check_int(f"{where}.units[{i}]", unit, 0)
        if len(set(self.units)) != len(self.units):
            fail(f"{where}.units", "lists a unit twice")

    def named_layers(self) -> list[tuple[str, str]]:
        return [("layer", self.layer)]


# ----------------------------------------------------------------------------------- Torch-Pruning calls

def output_layers(model: nn.Module, example) -> set[str]:
    """Names of the layers whose output tensor is (part of) the model's output."""
    produced: dict[int, str] = {}
    handles = [m.register_forward_hook(lambda mod, i, o, name=name: produced.__setitem__(id(o), name))
               for name, m in model.named_modules() if isinstance(m, UNIT_LAYERS)]
    try:
        with torch.inference_mode():
            out = logits_of(call_model(model, example))
    finally:
        for h in handles:
            h.remove()
    return {produced[id(out)]} if id(out) in produced else set()


class ActivationCountImportance(tp.importance.Importance):
    """Units that fire on fewer inputs matter less (the lecture notes' neuron importance)."""

    def __init__(self, stats: Mapping[nn.Module, ActivationStats]) -> None:
        self.stats = stats
        self.fallback = tp.importance.GroupMagnitudeImportance(p=1)

    @torch.no_grad()
    def __call__(self, group):
        module = group[0].dep.target.module
        if module not in self.stats:
            return self.fallback(group)
        scores = torch.from_numpy(self.stats[module].nonzero_fraction).float()
        return scores[torch.as_tensor(group[0].root_idxs)]


IMPORTANCES: dict[str, Callable[[Mapping[nn.Module, ActivationStats]], object]] = {
    "l1": lambda stats: tp.importance.GroupMagnitudeImportance(p=1),
    "l2": lambda stats: tp.importance.GroupMagnitudeImportance(p=2),
    "activation": ActivationCountImportance,
    "bn_scale": lambda stats: tp.importance.BNScaleImportance(),
    "random": lambda stats: tp.importance.RandomImportance(),
}
"""How units can be ranked: name -> factory of a Torch-Pruning importance (a callable over a group), given
activation statistics by module. A new ranking is one more entry (:func:`register_importance`)."""


def register_importance(name: str, factory: Callable[[Mapping[nn.Module, ActivationStats]], object]) -> None:
    IMPORTANCES[name] = factory


def importance_of(kind: str, stats: Mapping[nn.Module, ActivationStats] | None = None):
    if kind not in IMPORTANCES:
        raise StructureError(f"unknown importance {kind!r} (known: {', '.join(IMPORTANCES)})")
    return IMPORTANCES[kind](stats or {})


def prune_structured(model: nn.Module, example, amounts: Mapping[str, float], importance: str = "l1",
                     scope: str = "layer", stats: Mapping[str, ActivationStats] | None = None,
                     seed: int = 0) -> list:
    """Remove ``amounts[name]`` of the output units of each named layer (``scope="global"``: that fraction
    of all their units, ranked together). Returns the Torch-Pruning history of what was removed."""
    modules = dict(model.named_modules())
    heads = output_layers(model, example)
    targets = {name: a for name, a in amounts.items() if name not in heads and a > 0}
    for name in targets:
        if not isinstance(modules.get(name), UNIT_LAYERS):
            raise StructureError(f"{name} is not a Linear or convolution layer")
    if not targets:
        return []
    torch.manual_seed(seed)
    ratios = _group_ratios(model, example, {modules[n]: a for n, a in targets.items()},
                           [modules[n] for n in heads])
    by_module = {modules[n]: s for n, s in (stats or {}).items() if n in modules}
    common = dict(importance=importance_of(importance, by_module), ignored_layers=[modules[n] for n in heads])
    if scope == "global":
        ratio = sum(targets.values()) / len(targets)
        others = [m for m in modules.values() if isinstance(m, UNIT_LAYERS) and m not in ratios]
        pruner = tp.pruner.MetaPruner(model, example, global_pruning=True, pruning_ratio=ratio,
                                      **{**common, "ignored_layers": common["ignored_layers"] + others})
    else:
        pruner = tp.pruner.MetaPruner(model, example, pruning_ratio=0.0, pruning_ratio_dict=ratios, **common)
    with evaluating(model):
        pruner.step()
    return [list(entry) for entry in pruner.pruning_history()]


def _group_ratios(model: nn.Module, example, selected: dict[nn.Module, float], heads: list[nn.Module]) -> dict:
    """Give every layer coupled to a selected layer the selected ratio (the largest, if several are), so
    that the coupled group is pruned whichever of its layers Torch-Pruning takes as the group's root."""
    graph = tp.DependencyGraph().build_dependency(model, example_inputs=example)
    ratios: dict[nn.Module, float] = {}
    for group in graph.get_all_groups(ignored_layers=heads, root_module_types=list(UNIT_LAYERS)):
        members = {dep.target.module for dep, _ in group if isinstance(dep.target.module, UNIT_LAYERS)}
        chosen = [selected[m] for m in members if m in selected]
        if chosen:
            for m in members:
                ratios[m] = max(ratios.get(m, 0.0), max(chosen))
    return ratios


def remove_units(model: nn.Module, example, layer: str, units: Iterable[int]) -> list:
    """Remove exactly these output units of one layer (and everything coupled to them)."""
    modules = dict(model.named_modules())
    module = modules.get(layer)
    if not isinstance(module, UNIT_LAYERS):
        raise StructureError(f"no Linear or convolution layer named {layer!r}")
    if layer in output_layers(model, example):
        raise StructureError(f"{layer} produces the model's output; its units are the classes and stay")
    units = sorted(set(int(u) for u in units))
    width = module.out_features if isinstance(module, nn.Linear) else module.out_channels
    if units and (units[0] < 0 or units[-1] >= width):
        raise StructureError(f"{layer} has {width} units; cannot remove unit {units[-1]}")
    if len(units) >= width:
        raise StructureError(f"removing all {width} units of {layer} would disconnect the network")
    graph = tp.DependencyGraph().build_dependency(model, example_inputs=example)
    fn = tp.prune_linear_out_channels if isinstance(module, nn.Linear) else tp.prune_conv_out_channels
    group = graph.get_pruning_group(module, fn, idxs=units)
    group.prune()
    return [list(entry) for entry in graph.pruning_history()]


def replay_history(model: nn.Module, example, history: list) -> None:
    """Apply a recorded pruning history to a fresh copy of the architecture it was recorded on."""
    if not history:
        return
    entries = _checked_history(history)
    graph = tp.DependencyGraph().build_dependency(model, example_inputs=example)
    try:
        graph.load_pruning_history(entries)
    except Exception as exc:
        raise StructureError(f"the recorded structure does not fit this architecture ({exc})") from exc


def _checked_history(history) -> list[tuple]:
    """Torch-Pruning history entries (layer name, whether outputs, unit indices), every field checked."""
    if not isinstance(history, list):
        raise StructureError("a torch_pruning op's history must be a list")
    for i, entry in enumerate(history):
        if not (isinstance(entry, (list, tuple)) and len(entry) == 3 and isinstance(entry[0], str)
                and isinstance(entry[1], bool) and isinstance(entry[2], list)
                and all(isinstance(u, int) and not isinstance(u, bool) and u >= 0 for u in entry[2])):
            raise StructureError(f"torch_pruning history entry {i} is not (layer, is_output, [unit, ...])")
    return [tuple(entry) for entry in history]


def replay_op(model: nn.Module, example, op: dict) -> None:
    if example is None:
        raise StructureError("rebuilding a structurally pruned model needs an input shape: pass --input-shape")
    replay_history(model, example, op.get("history"))


# ----------------------------------------------------------------------------------- the steps

def unit_layer_names(model: nn.Module) -> list[str]:
    """The layers whose units structured pruning removes: Linear and convolution layers."""
    return [n for n, m in model.named_modules() if isinstance(m, UNIT_LAYERS)]


def _structural(ctx: RunContext, change: Callable[[], list]) -> None:
    """Make a structural change on plain weights, then put the masks back (re-derived from the zeros:
    Torch-Pruning edits plain parameters) and record the change as an op."""
    masked = [n for n, m in ctx.model.named_modules() if current_mask(m) is not None]
    bake(ctx.model)
    history = change()
    if masked:
        layers = prunable_layers(ctx.model)
        apply_masks(ctx.model, {n: layers[n].weight != 0 for n in masked if n in layers})
    if history:
        ctx.structure.append({"op": "torch_pruning", "history": history})


def run_prune_structured(step: PruneStructured, ctx: RunContext) -> Task[None]:
    stats = None
    if step.importance == "activation":
        with placed(ctx.model, ctx.device):
            stats = yield from activation_stats(ctx.model, (x for x, _ in ctx.data.val.batches(500)))
    amounts = {n: step.select.value_for(n, step.amount) for n in ctx.layers(step, unit_layer_names(ctx.model))}
    _structural(ctx, lambda: prune_structured(ctx.model, ctx.example, amounts, step.importance, step.scope,
                                              stats, step.seed))


def run_remove_units(step: RemoveUnits, ctx: RunContext) -> None:
    ctx.layers(step, unit_layer_names(ctx.model))
    _structural(ctx, lambda: remove_units(ctx.model, ctx.example, step.layer, step.units))


register_op("torch_pruning", replay_op)
register_step(PruneStructured, run_prune_structured, targets=unit_layer_names, family="pruning")
register_step(RemoveUnits, run_remove_units, targets=unit_layer_names, family="pruning")
