"""What "fires" means for a unit: the rule that fits the activation function that follows its layer.

After a ReLU a unit fires when its output is non-zero: the lecture notes' measure, exact. Other activation
functions (GELU, SiLU, tanh, sigmoid, an LSTM's gates) or none at all (a model's outputs) never give a
clean zero, so there a unit fires when ``|a| > ε``, with ``a`` the activation function's output and ``ε``
:data:`EPS_FRACTION` of the layer's RMS activation on the first batch: relative to the layer's own scale,
and stated beside every figure it gives.

The function that follows a layer (or its BatchNorm) is found, in order:

1. an activation module whose input is exactly the layer's output tensor (seen by forward hooks);
2. the layer's one user in the model's ``torch.fx`` trace, for a function call such as ``torch.relu`` (a
   model that does not trace is left to the others);
3. in a compiled program, the graph's one operation that reads the layer's output
   (:meth:`core.io.program.CompiledProgram.consumers`).

Where none is found, ``a`` is the layer's own output.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

EPS_FRACTION = 0.01
"""ε as a fraction of the layer's RMS activation on the first batch."""
ZEROING = ("relu", "relu6")
"""Functions after which a unit's output is exactly zero when it does not fire."""
FUNCTIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "relu": torch.relu, "relu6": nn.functional.relu6, "gelu": nn.functional.gelu, "silu": nn.functional.silu,
    "tanh": torch.tanh, "sigmoid": torch.sigmoid, "leaky_relu": nn.functional.leaky_relu, "elu": nn.functional.elu,
    "selu": nn.functional.selu, "celu": nn.functional.celu, "mish": nn.functional.mish,
    "hardswish": nn.functional.hardswish, "hardsigmoid": nn.functional.hardsigmoid,
    "softplus": nn.functional.softplus, "hardtanh": nn.functional.hardtanh}
"""Activation functions by the name a module class, a function or a graph operation goes by."""
TRANSPARENT = ("max_pool1d", "max_pool2d", "max_pool3d", "adaptive_max_pool1d", "adaptive_max_pool2d",
               "flatten", "reshape", "view", "dropout", "contiguous", "squeeze", "unsqueeze", "transpose", "permute")
"""Operations looked through to the function after them: they move or pick values (a max-pool keeps the
largest, which an increasing function such as ReLU does not change), so a unit's firing is the same."""
MODULE_NAMES = {"ReLU": "relu", "ReLU6": "relu6", "GELU": "gelu", "SiLU": "silu", "Tanh": "tanh",
                "Sigmoid": "sigmoid", "LeakyReLU": "leaky_relu", "ELU": "elu", "SELU": "selu", "CELU": "celu",
                "Mish": "mish", "Hardswish": "hardswish", "Hardsigmoid": "hardsigmoid", "Softplus": "softplus",
                "Hardtanh": "hardtanh"}


@dataclass(frozen=True)
class Firing:
    """How a layer's units are counted: after ``function`` (the activation module's class name, or a name
    of :data:`FUNCTIONS`; None when no function follows the layer), computed by ``apply`` (the module or the
    function itself, run on the layer's output); ``zeroing``: a ReLU, after which not firing is exactly 0."""

    function: str | None
    apply: Callable[[torch.Tensor], torch.Tensor] | None = None
    zeroing: bool = False

    @property
    def rule(self) -> str:
        """What was counted, in words."""
        if self.zeroing:
            return f"post-{self.function} non-zero"
        return f"|{self.function}(a)| > ε" if self.function else "|a| > ε (no activation function follows)"


def op_function(target) -> str | None:
    """The activation function a function, a method name or a graph operation is (``torch.relu``,
    ``"relu_"``, ``aten.gelu.default``, ``aten::silu``), by a name of :data:`FUNCTIONS`; None if none."""
    text = getattr(target, "__name__", None) or str(target)
    for part in reversed(text.replace("::", ".").split(".")):
        if part.rstrip("_") in FUNCTIONS:
            return part.rstrip("_")
    return None


def module_firing(module: nn.Module) -> Firing | None:
    """The rule after an activation module, or None for a module that is not one: torch's own by class,
    Hugging Face's (``GELUActivation``, ``NewGELUActivation``, ...) by a class name ending in Activation."""
    if next(module.parameters(recurse=False), None) is not None:
        return None
    name = type(module).__name__
    if name in MODULE_NAMES:
        return Firing(name, module, MODULE_NAMES[name] in ZEROING)
    if name.endswith("Activation") or name.endswith("GELUTanh"):
        return Firing(name, module, False)
    return None


def first_function(chain: list[str]) -> str | None:
    """The activation function at the head of a chain of operations, looking through :data:`TRANSPARENT`
    ones; None when another operation (an addition, a convolution, ...) comes first."""
    for op in chain:
        name = op_function(op)
        if name is not None:
            return name
        text = op.replace("::", ".").split(".")
        if not any(part.rstrip("_") in TRANSPARENT for part in text):
            return None
    return None


def traced_functions(model: nn.Module, points: list[str], depth: int = 5) -> dict[str, str]:
    """For each module named in ``points``, the activation function its output goes to (through
    :data:`TRANSPARENT` operations), from the model's ``torch.fx`` trace; {} for a model that does not trace."""
    try:
        graph = torch.fx.symbolic_trace(model).graph
    except Exception:  # control flow on values, unsupported ops: fx cannot trace every model
        return {}
    wanted, out = set(points), {}
    for node in graph.nodes:
        if node.op != "call_module" or node.target not in wanted:
            continue
        chain, user = [], node
        while len(chain) < depth and len(user.users) == 1:
            (user,) = user.users
            if user.op not in ("call_function", "call_method"):
                break  # a module is seen by the hooks
            chain.append(getattr(user.target, "__name__", None) or str(user.target))
        name = first_function(chain)
        if name is not None:
            out[node.target] = name
    return out


def firing_rules(model: nn.Module, points: dict[str, str], consumed: dict[str, nn.Module]) -> dict[str, Firing]:
    """The rule for each layer (``points``: layer name -> the name of the module its units are read at;
    ``consumed``: measure-point name -> the activation module that read its output, from the hooks, each one
    that :func:`module_firing` knows)."""
    rules: dict[str, Firing] = {}
    missing = [p for p in points.values() if p not in consumed]
    found: dict[str, str] = {}
    if missing:
        program_consumers = getattr(model, "consumers", None)  # a compiled program: its graph's operations
        if callable(program_consumers):
            found = {p: f for p, chain in program_consumers(missing).items() if (f := first_function(chain))}
        else:
            found = traced_functions(model, missing)
    for layer, point in points.items():
        if point in consumed:
            rules[layer] = module_firing(consumed[point])
        elif point in found:
            name = found[point]
            rules[layer] = Firing({"relu": "ReLU", "relu6": "ReLU6"}.get(name, name), FUNCTIONS[name], name in ZEROING)
        else:
            rules[layer] = Firing(None)
    return rules
