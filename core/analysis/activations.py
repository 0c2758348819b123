"""How often each neuron (Linear) or channel (Conv) fires on real data.

A unit *fires* on an input by the rule its activation function calls for (:mod:`core.analysis.firing`):
non-zero after the ReLU that follows it, or ``|a| > ε`` after any other function (or none), with ε relative
to the layer's scale; each layer's statistics say which rule counted them. Where a BatchNorm directly follows
the layer (conv -> bn -> relu), the BatchNorm's output is what is measured. The lecture notes' neuron
importance is "the number of times it wasn't zero on a given data set": that is ``nonzero_fraction`` here;
APoZ (average percentage of zeros) is one minus it; a dead unit never fires.

Forward hooks are registered in a context manager and always removed (on success, error and cancel), and
they never change an output, so the model computes exactly what it did before.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from core.analysis.firing import EPS_FRACTION, Firing, firing_rules, module_firing
from core.errors import PrunescopeError
from core.eval.evaluate import call_model, evaluating, logits_of
from core.io.program_taps import TapError
from core.progress import Progress, Task

UNIT_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d,
               nn.ConvTranspose3d)
NORM_LAYERS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
COMPILED = ("this model runs its layers inside a compiled graph (TorchScript or torch.export), where per-layer "
            "hooks do not run; load the eager model (state_dict + --arch, or a pickle you trust) to measure "
            "activations")


def compiled_graph(model: nn.Module) -> bool:
    """Whether ``model`` runs its layers inside a compiled graph, where per-layer hooks do not run and layers
    cannot be changed: TorchScript, or an fx graph (a torch.export program) that does not call its layers as
    modules. An fx graph that does (onnx2torch's: one eager module per ONNX node) is an ordinary model."""
    if isinstance(model, torch.jit.ScriptModule):
        return True
    if not isinstance(model, torch.fx.GraphModule):
        return False
    called = {node.target for node in model.graph.nodes if node.op == "call_module"}
    layers = [name for name, m in model.named_modules() if next(m.parameters(recurse=False), None) is not None]
    return not all(any(name == c or name.startswith(f"{c}.") for c in called) for name in layers)


class ActivationError(PrunescopeError):
    """Activation statistics cannot be measured on this model; the message says why."""


@dataclass(frozen=True)
class ActivationStats:
    """Per-unit firing statistics of one layer over ``observations`` outputs per unit.

    ``nonzero_fraction[u]``: fraction of observations where unit ``u`` fired, by ``rule``
    (:attr:`core.analysis.firing.Firing.rule`; ``epsilon``: the ε of ``|a| > ε``, None after a ReLU);
    ``mean[u]``: its mean output after ReLU, or its mean ``|a|``. ``measured_at`` names the module whose
    output was read (the layer or its BatchNorm).
    """

    name: str
    units: int
    observations: int
    nonzero_fraction: np.ndarray
    mean: np.ndarray
    measured_at: str
    rule: str = "post-ReLU non-zero"
    epsilon: float | None = None

    @property
    def apoz(self) -> np.ndarray:
        return 1.0 - self.nonzero_fraction

    @property
    def dead(self) -> np.ndarray:
        """Indices of units that never fired."""
        return np.flatnonzero(self.nonzero_fraction == 0)


def unit_layers(model: nn.Module) -> dict[str, nn.Module]:
    """Linear and convolution layers (the ones with neurons or channels), by qualified name."""
    return {name: m for name, m in model.named_modules() if isinstance(m, UNIT_LAYERS)}


def _unit_axis(module: nn.Module) -> int:
    return -1 if isinstance(module, nn.Linear) else 1


@contextlib.contextmanager
def forward_hooks(hooks: dict[nn.Module, Callable]) -> Iterator[None]:
    """Register ``{module: hook(module, inputs, output)}`` forward hooks; remove them all on exit."""
    handles = []
    try:
        for module, hook in hooks.items():
            handles.append(module.register_forward_hook(hook))
        yield
    finally:
        for handle in handles:
            handle.remove()


def _first_example(inputs):
    if isinstance(inputs, dict):
        return {k: v[:1] if isinstance(v, torch.Tensor) else v for k, v in inputs.items()}
    if isinstance(inputs, (tuple, list)):
        return type(inputs)(v[:1] if isinstance(v, torch.Tensor) else v for v in inputs)
    return inputs[:1]


def _measure_points(model: nn.Module, layers: dict[str, nn.Module],
                    example) -> tuple[dict[str, tuple[str, nn.Module]], dict[str, Firing]]:
    """For each layer, the module to read: the BatchNorm whose input is exactly the layer's output tensor
    (conv -> bn -> relu), with matching width; otherwise the layer itself. And the firing rule of each: by
    the activation module that reads the point's output, if one does (:func:`core.analysis.firing.firing_rules`)."""
    names = {m: n for n, m in model.named_modules()}
    outputs: dict[nn.Module, torch.Tensor] = {}
    norm_of: dict[int, nn.Module] = {}  # id(layer output) -> the BatchNorm that consumed it
    act_of: dict[int, nn.Module] = {}  # id(a tensor) -> the activation module that read it
    kept: list = []  # holds every tensor seen, so no id is reused during this one pass

    def record_layer(module, inputs, output):
        kept.append(output)
        outputs[module] = output

    def record_norm(module, inputs, output):
        kept.extend(inputs)
        kept.append(output)
        outputs[module] = output
        if inputs and isinstance(inputs[0], torch.Tensor):
            norm_of.setdefault(id(inputs[0]), module)

    def record_activation(module, inputs, output):
        kept.extend(inputs)
        if inputs and isinstance(inputs[0], torch.Tensor):
            act_of.setdefault(id(inputs[0]), module)

    hooks = {m: record_activation for m in model.modules() if module_firing(m) is not None}
    hooks.update({m: record_norm for m in model.modules() if isinstance(m, NORM_LAYERS)})
    hooks.update({m: record_layer for m in layers.values()})
    try:
        with forward_hooks(hooks), torch.inference_mode():
            call_model(model, example)
    except TapError as exc:
        raise ActivationError(str(exc)) from None
    if not outputs:
        raise ActivationError(COMPILED)
    points, consumed = {}, {}
    for name, layer in layers.items():
        target = (name, layer)
        norm = norm_of.get(id(outputs[layer])) if layer in outputs else None
        width = getattr(layer, "out_channels", getattr(layer, "out_features", None))
        if norm is not None and norm.num_features == width:
            target = (names[norm], norm)
        points[name] = target
        read = outputs.get(target[1])
        if read is not None and id(read) in act_of:
            consumed[target[0]] = act_of[id(read)]
    rules = firing_rules(model, {name: point for name, (point, _) in points.items()}, consumed)
    return points, rules


def activation_stats(model: nn.Module, batches: Iterable, total_batches: int | None = None,
                     names: Iterable[str] | None = None) -> Task[dict[str, ActivationStats]]:
    """Count, per unit of each Linear/Conv layer, how often it fires over ``batches`` of model inputs.

    ``batches`` yields what the model is called with (a tensor, a tuple, or a keyword dict). The model is
    run in eval mode without gradients; its training flag and hooks are restored afterwards.
    """
    layers = unit_layers(model)
    if names is not None:
        layers = {n: layers[n] for n in names if n in layers}
    if compiled_graph(model):
        raise ActivationError(COMPILED)
    if not layers:
        raise ActivationError("the model has no Linear or convolution layers to measure")
    iterator = iter(batches)
    first = next(iterator, None)
    if first is None:
        raise ActivationError("no input batches to measure activations on")
    fired: dict[str, torch.Tensor] = {}
    sums: dict[str, torch.Tensor] = {}
    seen: dict[str, int] = {}
    epsilon: dict[str, float] = {}

    def make_hook(name: str, axis: int, rule: Firing):
        def hook(module, inputs, output):
            out = logits_of(output).detach()
            out = out.movedim(axis, -1).reshape(-1, out.shape[axis])
            if rule.zeroing:  # after a ReLU: fired is non-zero, exactly
                fires, value = out > 0, out.clamp(min=0)
            else:  # |a| > ε, ε relative to the layer's own scale on the first batch
                value = (rule.apply(out) if rule.apply is not None else out).float().abs()
                if name not in epsilon:
                    epsilon[name] = EPS_FRACTION * float(value.square().mean().sqrt())
                fires = value > epsilon[name]
            fired[name] = fired.get(name, 0) + fires.sum(0, dtype=torch.int64)
            sums[name] = sums.get(name, 0) + value.sum(0, dtype=torch.float64)
            seen[name] = seen.get(name, 0) + out.shape[0]
        return hook

    with evaluating(model):
        points, rules = _measure_points(model, layers, _first_example(first))
        hooks = {module: make_hook(name, _unit_axis(layers[name]), rules[name])
                 for name, (_, module) in points.items()}
        with forward_hooks(hooks), torch.inference_mode():
            for i, inputs in enumerate(_chain(first, iterator)):
                call_model(model, inputs)
                yield Progress("activations", i + 1, total_batches or 0, "counting firing units")
    results = {}
    for name, (point, _) in points.items():
        if name not in seen:
            continue
        n = seen[name]
        results[name] = ActivationStats(name, int(fired[name].numel()), n,
                                        (fired[name].double() / n).cpu().numpy(), (sums[name] / n).cpu().numpy(), point,
                                        rules[name].rule, epsilon.get(name))
    return results


def _chain(first, rest):
    yield first
    yield from rest
