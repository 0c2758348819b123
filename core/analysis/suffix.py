"""Running a model from one layer on: the values live at a layer, captured once, and the rest of the graph.

Perturbing layer L leaves everything computed before L as it was. The model is traced with ``torch.fx``;
for L's ``call_module`` node, the *live set* is every earlier node whose value is used at L or after it
(L's input, and any skip tensor a residual branch adds back later). :func:`capture` runs the whole model
once per batch and keeps those values; :meth:`Suffix.run` then runs only the nodes from L on, with
``torch.fx.Interpreter.run(initial_env=...)``, which skips every node already in its environment (earlier
nodes that are not live are entered as None: nothing after L reads them).

:func:`plan` says why a layer cannot be run this way (the model cannot be traced, the layer is called more
than once or its weight is read elsewhere); the caller then re-evaluates the whole model.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import fx, nn

from core.eval.evaluate import call_model


class Traced:
    """A model's fx graph (sharing the model's modules, so a weight changed in one is changed in both)."""

    def __init__(self, model: nn.Module) -> None:
        self.module = fx.symbolic_trace(model)
        self.nodes = list(self.module.graph.nodes)
        self.index = {node: i for i, node in enumerate(self.nodes)}

    def layer_node(self, name: str) -> fx.Node | str:
        """The one node that calls layer ``name``, or why there is not exactly one."""
        calls = [n for n in self.nodes if n.op == "call_module" and n.target == name]
        reads = [n for n in self.nodes if n.op == "get_attr" and str(n.target).startswith(f"{name}.")]
        if len(calls) != 1:
            return f"{name} is called {len(calls)} times in the traced graph"
        if reads:
            return f"{name}'s parameters are read outside its call"
        return calls[0]

    def live_at(self, node: fx.Node) -> list[fx.Node]:
        """Nodes before ``node`` whose values are used at ``node`` or after it."""
        at = self.index[node]
        return [n for n in self.nodes[:at] if any(self.index[u] >= at for u in n.users)]


@dataclass
class Suffix:
    """The graph from one layer's node on, with the live values of every evaluation batch."""

    traced: Traced
    node: fx.Node
    live: list[fx.Node]
    values: list[dict[fx.Node, object]]  # per batch: live node -> value

    def run(self) -> Iterable:
        """The model's output on each batch, computing only the nodes from the layer on."""
        before = self.traced.nodes[:self.traced.index[self.node]]
        for cached in self.values:
            env = dict.fromkeys(before)
            env.update(cached)
            yield fx.Interpreter(self.traced.module).run(initial_env=env)


def _tensor_bytes(value) -> int:
    if isinstance(value, torch.Tensor):
        return value.numel() * value.element_size()
    if isinstance(value, (tuple, list)):
        return sum(_tensor_bytes(v) for v in value)
    if isinstance(value, dict):
        return sum(_tensor_bytes(v) for v in value.values())
    return 0


class _Capture(fx.Interpreter):
    def __init__(self, module: fx.GraphModule, keep: set[fx.Node]) -> None:
        super().__init__(module)
        self.keep, self.kept = keep, {}

    def run_node(self, node: fx.Node):
        value = super().run_node(node)
        if node in self.keep:
            self.kept[node] = value
        return value


def capture(traced: Traced, nodes: dict[str, fx.Node], batches: list, budget_bytes: int
            ) -> tuple[dict[str, Suffix], list, str | None]:
    """Run the whole model once per batch, keeping the values live at each layer of ``nodes``.

    Returns the suffix of each layer, the model's outputs (the unperturbed baseline) and None; or, when the
    live values of all the layers would take more than ``budget_bytes``, no suffixes and the reason."""
    live = {name: traced.live_at(node) for name, node in nodes.items()}
    keep = {n for nodes_ in live.values() for n in nodes_}
    per_batch, outputs = [], []
    used = 0
    for batch in batches:
        runner = _Capture(traced.module, keep)
        args, kwargs = (([], batch) if isinstance(batch, dict) else
                        (list(batch), {}) if isinstance(batch, (tuple, list)) else ([batch], {}))
        if kwargs:  # fx placeholders are positional: keyword inputs in the order forward names them
            args = [kwargs[n.target] for n in traced.nodes if n.op == "placeholder"]
        outputs.append(runner.run(*args))
        used += sum(_tensor_bytes(v) for v in runner.kept.values())
        if used > budget_bytes:
            return {}, [], (f"the values live at the layers take more than {budget_bytes / 2**20:.0f} MiB "
                            "on the evaluation batches")
        per_batch.append(runner.kept)
    suffixes = {name: Suffix(traced, nodes[name], live[name], [{n: kept[n] for n in live[name]} for kept in per_batch])
                for name in nodes}
    return suffixes, outputs, None


def full_outputs(model: nn.Module, batches: list) -> list:
    """The model's output on each batch, computed whole (the naive way)."""
    return [call_model(model, batch) for batch in batches]
