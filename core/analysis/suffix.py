"""Running a model from one layer on: the values live at a layer, captured once, and the rest of the graph.

Perturbing layer L leaves everything computed before L as it was. The model is traced with ``torch.fx``;
for L's ``call_module`` node, the *live set* is every earlier node whose value is used at L or after it
(L's input, and any skip tensor a residual branch adds back later). :func:`capture` runs the whole model
once per batch and keeps those values; :meth:`Suffix.run` then runs only the nodes from L on, with
``torch.fx.Interpreter.run(initial_env=...)``, which skips every node already in its environment (earlier
nodes that are not live are entered as None: nothing after L reads them).

:meth:`Suffix.run_levels` measures several weights of L in one pass: L's output at every weight (one
Linear or ungrouped convolution with the weights stacked along its outputs, else L called once per weight)
is laid out sample-major, a batch of n x K rows, each value live after L is repeated to match, and the rest
of the graph runs once on it. Each (batch size, K) is checked once against the level-by-level run, value
for value (:func:`torch.equal`); a layer whose batched outputs differ, or whose live values are not one
batch of tensors, runs its levels one by one (:attr:`Suffix.unbatched` says why). How many levels go in one
pass is the caller's memory budget (:meth:`Suffix.levels_per_pass`); measured on CPU the batched pass was
slower than level by level, so :mod:`core.analysis.sensitivity` runs one level a pass unless asked.

:func:`plan` says why a layer cannot be run this way (the model cannot be traced, the layer is called more
than once or its weight is read elsewhere); the caller then re-evaluates the whole model.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import torch
from torch import fx, nn
from torch.nn.functional import linear

from core.errors import PrunescopeError
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
    sizes: dict[fx.Node, int] = field(default_factory=dict)  # node -> the most bytes its value took on a batch
    unbatched: str | None = None  # why this layer's levels run one by one (None: batched where it can)
    checked: set[tuple[int, int]] = field(default_factory=set)  # the (batch size, levels) checked

    def run(self) -> Iterable:
        """The model's output on each batch, computing only the nodes from the layer on."""
        for cached in self.values:
            yield self._run(cached)

    def _run(self, cached: dict, layer_output=None, tiled: int = 0):
        """The output on one batch: from the layer on (its live values), or, with ``tiled``, from after it
        (``layer_output``, and each live value read after it repeated ``tiled`` times)."""
        env = dict.fromkeys(self.traced.nodes[:self.traced.index[self.node]])
        if tiled:
            env.update({n: _tile(cached[n], tiled) for n in self._after()})
            env[self.node] = layer_output
        else:
            env.update(cached)
        return fx.Interpreter(self.traced.module).run(initial_env=env)

    def _after(self) -> list[fx.Node]:
        """The live nodes read after the layer (a skip tensor; the layer's own input, if a shortcut reads it)."""
        at = self.traced.index[self.node]
        return [n for n in self.live if any(self.traced.index[u] > at for u in n.users)]

    def level_bytes(self, weight_bytes: int) -> int:
        """What one more level adds to a pass: the suffix's largest value twice (an operation's input and
        output), the live values repeated for it, and its weight twice (the setting's and the stacked copy)."""
        at = self.traced.index[self.node]
        largest = max((b for n, b in self.sizes.items() if self.traced.index[n] >= at), default=0)
        return 2 * largest + sum(self.sizes.get(n, 0) for n in self._after()) + 2 * weight_bytes

    def levels_per_pass(self, budget_bytes: int, weight_bytes: int, count: int) -> int:
        """How many of ``count`` levels to run in one pass so that it stays within ``budget_bytes``, the
        passes balanced (10 levels at most 6 a pass: 5 and 5); 1: one by one."""
        if self.unbatched is not None or count < 2:
            return 1
        most = max(1, min(count, budget_bytes // max(self.level_bytes(weight_bytes), 1)))
        passes = -(-count // most)
        return -(-count // passes)

    def run_levels(self, module: nn.Module, original: torch.Tensor, weights: list[torch.Tensor]) -> list[list]:
        """The model's output on each batch with the layer's weight at each of ``weights`` (``[level][batch]``),
        in one pass where it can; the layer's weight is ``original`` again after."""
        if len(weights) > 1 and self.unbatched is None:
            try:
                return self._batched(module, original, weights)
            except Exception as exc:  # a suffix that cannot run on n x K rows (or differs): one by one
                self.unbatched = str(exc) if isinstance(exc, Unbatchable) else f"{type(exc).__name__}: {exc}"
        return [[self._with(module, original, w, cached) for cached in self.values] for w in weights]

    def _with(self, module: nn.Module, original: torch.Tensor, weight: torch.Tensor, cached: dict):
        try:
            module.weight.copy_(weight)
            return self._run(cached)
        finally:
            module.weight.copy_(original)

    def _batched(self, module: nn.Module, original: torch.Tensor, weights: list[torch.Tensor]) -> list[list]:
        k, outputs = len(weights), [[] for _ in weights]
        for cached in self.values:
            n = _batch_size([cached[m] for m in self._after()] + [cached[a] for a in self.node.args
                                                                   if isinstance(a, fx.Node)])
            layer_output = _layer_levels(module, original, weights, self.node, cached, n)
            per_level = _split(self._run(cached, layer_output, k), n, k)
            if (n, k) not in self.checked:
                if not _equal(per_level[-1], self._with(module, original, weights[-1], cached)):
                    raise Unbatchable(f"its levels run together differ from one by one (batch {n}, {k} levels)")
                self.checked.add((n, k))
            for out, one in zip(outputs, per_level):
                out.append(one)
        return outputs


class Unbatchable(PrunescopeError):
    """Why a layer's levels cannot run as one batch (caught here: the levels then run one by one)."""


def _batch_size(values: list) -> int:
    sizes = {v.shape[0] if isinstance(v, torch.Tensor) and v.ndim else None for v in values}
    if len(sizes) != 1 or None in sizes:
        raise Unbatchable("the values live after it are not one batch of tensors")
    return sizes.pop()


def _layer_levels(module: nn.Module, original: torch.Tensor, weights: list[torch.Tensor], node: fx.Node,
                  cached: dict, n: int) -> torch.Tensor:
    """The layer's output at each weight, sample-major: row ``i * K + j`` is sample i at weight j."""
    args = fx.node.map_arg(node.args, lambda a: cached[a])
    kwargs = fx.node.map_arg(node.kwargs, lambda a: cached[a])
    k, out = len(weights), original.shape[0]
    plain = (len(args) == 1 and not kwargs and isinstance(args[0], torch.Tensor)
             and not (module._forward_hooks or module._forward_pre_hooks))
    if plain and type(module) is nn.Linear:  # one matmul with the weights stacked: (..., K * out)
        y = linear(args[0], torch.cat([w.to(original) for w in weights]), _biases(module, k))
        y = y.unflatten(-1, (k, out)).movedim(-2, 1)
    elif plain and type(module) in (nn.Conv1d, nn.Conv2d, nn.Conv3d) and module.groups == 1:
        y = module._conv_forward(args[0], torch.cat([w.to(original) for w in weights]), _biases(module, k))
        y = y.unflatten(1, (k, out))
    else:  # grouped convolutions, embeddings, several inputs: the layer once per weight
        ys = []
        try:
            for w in weights:
                module.weight.copy_(w)
                ys.append(module(*args, **kwargs))
        finally:
            module.weight.copy_(original)
        if not all(isinstance(y, torch.Tensor) and y.ndim and y.shape[0] == n for y in ys):
            raise Unbatchable("its output is not one batch of tensors")
        y = torch.stack(ys, 1)
    return y.reshape(n * k, *y.shape[2:])


def _biases(module: nn.Module, k: int) -> torch.Tensor | None:
    return None if module.bias is None else module.bias.repeat(k)


def _tile(value: torch.Tensor, k: int) -> torch.Tensor:
    """Each row of ``value`` k times over, one after another (sample-major, as the layer's output is)."""
    return value.unsqueeze(1).expand(value.shape[0], k, *value.shape[1:]).reshape(-1, *value.shape[1:])


def _split(value, n: int, k: int) -> list:
    """The K outputs of n samples each in an output of n x K rows (tensors in tuples, lists, dicts)."""
    if isinstance(value, torch.Tensor):
        if not value.ndim or value.shape[0] != n * k:
            raise Unbatchable("its output is not one batch of tensors")
        rows = value.unflatten(0, (n, k))
        return [rows[:, j].contiguous() for j in range(k)]
    if value is None:
        return [None] * k
    if type(value) in (tuple, list):
        parts = [_split(v, n, k) for v in value]
        return [type(value)(p[j] for p in parts) for j in range(k)]
    if type(value) is dict:
        parts = {key: _split(v, n, k) for key, v in value.items()}
        return [{key: p[j] for key, p in parts.items()} for j in range(k)]
    raise Unbatchable(f"its output is a {type(value).__name__}")


def _equal(a, b) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)
    if type(a) in (tuple, list):
        return type(a) is type(b) and len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b))
    if type(a) is dict:
        return type(b) is dict and a.keys() == b.keys() and all(_equal(a[key], b[key]) for key in a)
    return a is None and b is None


def _tensor_bytes(value) -> int:
    if isinstance(value, torch.Tensor):
        return value.numel() * value.element_size()
    if isinstance(value, (tuple, list)):
        return sum(_tensor_bytes(v) for v in value)
    if isinstance(value, dict):
        return sum(_tensor_bytes(v) for v in value.values())
    return 0


class _Capture(fx.Interpreter):
    def __init__(self, module: fx.GraphModule, keep: set[fx.Node], sizes: dict[fx.Node, int]) -> None:
        super().__init__(module)
        self.keep, self.kept, self.sizes = keep, {}, sizes

    def run_node(self, node: fx.Node):
        value = super().run_node(node)
        if node in self.keep:
            self.kept[node] = value
        self.sizes[node] = max(self.sizes.get(node, 0), _tensor_bytes(value))
        return value


def capture(traced: Traced, nodes: dict[str, fx.Node], batches: list, budget_bytes: int
            ) -> tuple[dict[str, Suffix], list, str | None]:
    """Run the whole model once per batch, keeping the values live at each layer of ``nodes``.

    Returns the suffix of each layer, the model's outputs (the unperturbed baseline) and None; or, when the
    live values of all the layers would take more than ``budget_bytes``, no suffixes and the reason."""
    live = {name: traced.live_at(node) for name, node in nodes.items()}
    keep = {n for nodes_ in live.values() for n in nodes_}
    per_batch, outputs, sizes = [], [], {}
    used = 0
    for batch in batches:
        runner = _Capture(traced.module, keep, sizes)
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
    suffixes = {name: Suffix(traced, nodes[name], live[name], [{n: kept[n] for n in live[name]} for kept in per_batch],
                             sizes) for name in nodes}
    return suffixes, outputs, None


def full_outputs(model: nn.Module, batches: list) -> list:
    """The model's output on each batch, computed whole (the naive way)."""
    return [call_model(model, batch) for batch in batches]
