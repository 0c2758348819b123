"""Compute cost: multiply-accumulates per layer and in total, counted by torch's own FLOP counter.

:func:`count_macs` runs the model once on ONE sample under ``torch.utils.flop_counter.FlopCounterMode``
(which counts the matrix multiplications and convolutions torch dispatches, 2 FLOPs per multiply-add) and
reports MACs = FLOPs / 2, attributed to the module that ran them (its qualified name, as in
``named_modules``). Elementwise work (activations, additions, BatchNorm) is not counted: it is not a MAC.

Pruned weights still compute: a masked layer runs the same dense kernel, so its MACs (``per_layer``,
``total``) do not change when it is pruned. ``effective_per_layer`` / ``effective_total`` count, for
Linear and Conv layers, only the multiplies by a non-zero weight: the dense count times the layer's share
of non-zero weights (each weight of such a layer is used equally often per sample), i.e. what a sparse
kernel would do. Other layers' effective MACs are their dense MACs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from core.eval.evaluate import call_model


@dataclass(frozen=True)
class Cost:
    """MACs for one sample: ``total`` and ``per_layer`` (qualified module name -> MACs of that module's own
    operations, not its children's), dense; ``effective_*`` the same counting only non-zero weights of
    Linear and Conv layers (see the module docstring)."""

    total: int
    per_layer: dict[str, int] = field(default_factory=dict)
    effective_total: int = 0
    effective_per_layer: dict[str, int] = field(default_factory=dict)


def _one_sample(example):
    if isinstance(example, torch.Tensor):
        return example[:1] if example.ndim else example
    if isinstance(example, (list, tuple)):
        return type(example)(_one_sample(e) for e in example)
    if isinstance(example, dict):
        return {k: _one_sample(v) for k, v in example.items()}
    return example


def _nonzero_share(module: nn.Module) -> float:
    weight = getattr(module, "weight", None)
    if not isinstance(module, (nn.Linear, nn.modules.conv._ConvNd)) or not isinstance(weight, torch.Tensor):
        return 1.0
    w = weight.detach()
    return int(torch.count_nonzero(w)) / w.numel() if w.numel() else 1.0


def count_macs(model: nn.Module, example) -> Cost:
    """Multiply-accumulates of ``model`` on one sample of ``example`` (its first item along the batch
    dimension; a tuple, list or dict of tensors is sliced the same way), with torch's FLOP counter."""
    names = {module: name for name, module in model.named_modules(remove_duplicate=False)}
    counter = FlopCounterMode(display=False)
    was_training = model.training
    model.eval()
    try:
        with counter, torch.no_grad():
            call_model(model, _one_sample(example))
    finally:
        model.train(was_training)
    counts = counter.get_flop_counts()
    total = sum(counts.get("Global", {}).values()) // 2
    root = type(model).__name__
    by_path = {}  # the counter's names: the root's class name, then the qualified path
    for name in names.values():
        by_path[f"{root}.{name}" if name else root] = name
    flops = {by_path[key]: sum(ops.values()) for key, ops in counts.items() if key in by_path}
    per_layer = {}
    modules = dict(model.named_modules())
    for name, value in flops.items():
        module = modules.get(name)
        if module is None:
            continue
        children = sum(flops.get(f"{name}.{child}" if name else child, 0) for child, _ in module.named_children())
        own = (value - children) // 2
        if own > 0:
            per_layer[name] = own
    if isinstance(getattr(model, "program", None), nn.Module) and set(per_layer) <= {""}:
        per_layer = _program_layers(model, _one_sample(example), total)
    effective = {name: round(macs * _nonzero_share(modules[name])) for name, macs in per_layer.items()}
    effective_total = total - sum(per_layer.values()) + sum(effective.values())
    return Cost(total, per_layer, effective_total, effective)


def _program_layers(model: nn.Module, sample, total: int) -> dict[str, int]:
    """A compiled program's MACs by layer: the counter sees its operations but not which layer ran them, so
    each Linear and convolution layer's are counted from its output, read by tapping the program
    (:mod:`core.io.program`): output elements times the weights each one multiplies (a filter's, a row's).
    What is left of the counter's total stays with the program itself."""
    layers = {name: m for name, m in model.named_modules() if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d,
                                                                             nn.Conv3d))}
    counted: dict[str, int] = {}

    def make(name: str):
        def hook(module, inputs, output):
            counted[name] = int(output.numel()) * int(module.weight[0].numel())
        return hook

    handles = [m.register_forward_hook(make(name)) for name, m in layers.items()]
    try:
        with torch.no_grad():
            call_model(model, sample)
    finally:
        for handle in handles:
            handle.remove()
    rest = total - sum(counted.values())
    return {**counted, **({"": rest} if rest > 0 else {})}


def human_macs(value: int | None) -> str:
    """``1,234,567`` MACs as ``1.23 M``; None as an em dash."""
    if value is None:
        return "—"
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if value >= scale:
            return f"{value / scale:.3g} {unit}"
    return str(value)
