"""Reading a compiled program's layer inputs and outputs, where forward hooks cannot reach.

A layer of a compiled program is found in its graph as the last operation that reads one of the layer's
tensors (``aten::linear`` reading ``fc.weight`` is the call of ``fc``): its first input and its output
are the layer's input and output.

- TorchScript: a copy of the forward's inlined graph returns them too, beside the program's own output,
  and runs as a function of the same module. This uses TorchScript's graph API (``torch._C``), which has
  no public equivalent; a program whose graph cannot be tapped says so (:class:`TapError`).
- ``torch.export``: the program's module is an ``torch.fx`` graph, run by an :class:`torch.fx.Interpreter`
  that records the values as they are computed.

Only operations at the top level of the graph are found: a layer called only inside a loop or a branch of
the program is not tapped, and its statistics are missing.
"""

from __future__ import annotations

import weakref

import torch
from torch import nn

from core.errors import PrunescopeError


class TapError(PrunescopeError):
    """A compiled program's graph cannot be tapped for its layers' values; the message says why."""


_SKIP = ("prim::GetAttr", "prim::Constant", "prim::ListConstruct", "prim::TupleConstruct")
_cache: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _owner(value, tensors: set[str]) -> str | None:
    """The state_dict name a TorchScript value reads (a chain of ``prim::GetAttr`` from ``self``), if any."""
    path, node = [], value.node()
    while node.kind() == "prim::GetAttr":
        path.append(node.s("name"))
        value = node.input()
        node = value.node()
    name = ".".join(reversed(path))
    return name if node.kind() == "prim::Param" and name in tensors else None


def _script_calls(graph, program, names) -> dict:
    """Each named layer's call in a TorchScript graph: the last top-level operation reading its tensors."""
    tensors = set(program.state_dict())
    calls = {}
    for node in graph.nodes():
        if node.kind() in _SKIP:
            continue
        for value in node.inputs():
            owner = _owner(value, tensors)
            if owner is not None and owner.rpartition(".")[0] in names:
                calls[owner.rpartition(".")[0]] = node
    return calls


def _export_calls(module, names) -> dict:
    """Each named layer's call in an exported program's graph: the last operation reading its tensors."""
    tensors = set(module.state_dict())
    calls = {}
    for node in module.graph.nodes:
        if node.op != "call_function":
            continue
        for arg in node.all_input_nodes:
            if arg.op == "get_attr" and arg.target in tensors and arg.target.rpartition(".")[0] in names:
                calls[arg.target.rpartition(".")[0]] = node
    return calls


def consumers(kind: str, program, names: list[str], depth: int = 5) -> dict[str, list[str]]:
    """For each named layer, the chain of graph operations its output goes through, each the one user of
    the one before (``["aten::max_pool2d", "aten::relu"]``), at most ``depth`` long: what follows the layer,
    for the firing rule. A layer whose output goes several ways has an empty chain."""
    out: dict[str, list[str]] = {}
    if kind == "torchscript":
        for name, node in _script_calls(program.forward.inlined_graph, program, set(names)).items():
            chain = out.setdefault(name, [])
            while len(chain) < depth and node.outputsSize() and len(uses := node.outputsAt(0).uses()) == 1:
                node = uses[0].user
                chain.append(node.kind())
    else:
        for name, node in _export_calls(program, set(names)).items():
            chain = out.setdefault(name, [])
            while len(chain) < depth and len(node.users) == 1:
                node = next(iter(node.users))
                chain.append(str(node.target))
    return out


def _script_function(program, names: tuple[str, ...]):
    graph = program.forward.inlined_graph  # a copy: the program's own graph is not changed
    calls = _script_calls(graph, program, names)
    found = [n for n in names if n in calls]
    values, slots = [], {}
    for name in found:
        node = calls[name]
        inputs = [v for v in node.inputs() if isinstance(v.type(), torch._C.TensorType)][:1]
        slots[name] = (len(values), len(inputs))
        values.extend(inputs + [node.outputsAt(0)])
    ret = graph.return_node()
    everything = [ret.input(), *values]
    pack = graph.create("prim::TupleConstruct", everything, 1)
    pack.insertBefore(ret)
    pack.output().setType(torch._C.TupleType([v.type() for v in everything]))
    graph.eraseOutput(0)
    graph.registerOutput(pack.output())
    return torch._C._create_function_from_graph("prunescope_taps", graph), slots


def _script_taps(program, names: tuple[str, ...], args, kwargs):
    per_program = _cache.setdefault(program, {})
    if names not in per_program:
        try:
            per_program[names] = _script_function(program, names)
        except (AttributeError, RuntimeError) as exc:
            raise TapError(f"this TorchScript program's graph cannot be read for its layers' values ({exc})") from None
    function, slots = per_program[names]
    result = function(program._c, *args, **kwargs)
    taps = {}
    for name, (start, n_inputs) in slots.items():
        inputs = tuple(result[1 + start:1 + start + n_inputs])
        taps[name] = (inputs, result[1 + start + n_inputs])
    return result[0], taps


class _Recorder(torch.fx.Interpreter):
    def __init__(self, module: nn.Module, calls: dict) -> None:
        super().__init__(module)
        self.calls, self.taps = calls, {}

    def run_node(self, node):
        value = super().run_node(node)
        name = self.calls.get(node)
        if name is not None:
            first = node.args[0] if node.args else None
            inputs = (self.env[first],) if isinstance(first, torch.fx.Node) and first in self.env else ()
            self.taps[name] = (inputs, value)
        return value


def _export_taps(module, names: tuple[str, ...], args, kwargs):
    calls = _export_calls(module, names)
    recorder = _Recorder(module, {node: name for name, node in calls.items()})
    flat = list(args) + list(kwargs.values())
    output = recorder.run(*flat)
    return output, recorder.taps


def tapped_call(kind: str, program, names: list[str], args, kwargs) -> tuple[object, dict]:
    """(the program's output, {layer name: (its inputs, its output)}) for one call of ``program``."""
    if kind == "torchscript":
        return _script_taps(program, tuple(names), args, kwargs)
    return _export_taps(program, tuple(names), args, kwargs)
