"""Structured pruning: physically removing neurons (Linear) and filters (Conv), through Torch-Pruning.

Torch-Pruning's dependency graph finds every layer coupled to a removed unit (the next layer's inputs,
BatchNorm, both sides of a residual addition) and shrinks them together. Each change is recorded as
Torch-Pruning's pruning history (layer, output or input, indices), which is small and replays exactly on
a fresh copy of the architecture: that is how a compressed file rebuilds a structurally pruned model.

The layer whose output is the model's output (the classifier) is never pruned: its units are the classes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import torch
import torch_pruning as tp
from torch import nn

from core.errors import PrunescopeError
from core.analysis.activations import UNIT_LAYERS, ActivationStats
from core.eval.evaluate import call_model, evaluating, logits_of


class StructureError(PrunescopeError):
    """A structural change cannot be made (unknown layer, unit out of range, the model's output layer)."""


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


def importance_of(kind: str, stats: Mapping[nn.Module, ActivationStats] | None = None):
    if kind == "l1":
        return tp.importance.GroupMagnitudeImportance(p=1)
    if kind == "l2":
        return tp.importance.GroupMagnitudeImportance(p=2)
    if kind == "bn_scale":
        return tp.importance.BNScaleImportance()
    if kind == "random":
        return tp.importance.RandomImportance()
    if kind == "activation":
        return ActivationCountImportance(stats or {})
    raise StructureError(f"unknown importance {kind!r}")


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


def replay(model: nn.Module, example, history: list) -> None:
    """Apply a recorded pruning history to a fresh copy of the architecture it was recorded on."""
    if not history:
        return
    graph = tp.DependencyGraph().build_dependency(model, example_inputs=example)
    try:
        graph.load_pruning_history([tuple(entry) for entry in history])
    except Exception as exc:
        raise StructureError(f"the recorded structure does not fit this architecture ({exc})") from exc
