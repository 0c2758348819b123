"""Early exits that really exit: a backbone cut into segments, a head after each cut, and a router.

:class:`ExitModel` holds the backbone's layers under their own names (``conv1.weight`` stays ``conv1.weight``)
and its exit heads under ``exits.<i>``. The backbone is cut with ``torch.fx`` after the named layers (and the
parameter-free operations that follow them, such as a max-pool); a cut is refused (:class:`ExitError`) where
more than one value crosses it (a residual connection's shortcut) or the model cannot be traced.

At inference a sample whose exit is confident leaves: its logits are that exit's, and the later segments
never compute it. In a batch the samples that stay go on as a smaller batch (:func:`route`). The same
routing is compiled by ``torch.jit.script(model)`` (``__prepare_scriptable__``), so TorchScript keeps the
control flow. :func:`exit_outputs` caches every exit's confidences on a split, and :func:`exit_stats` computes
what given thresholds give from that cache (fractions, accuracy per exit and overall, mean MACs per sample).
"""

from __future__ import annotations

import math
import statistics
import time
import warnings
from dataclasses import dataclass

import numpy as np
import torch
from torch import fx, nn

from core.errors import PrunescopeError, one_line

CRITERIA = ("entropy", "confidence")
PARAMETER_FREE = (torch.max_pool2d, torch.nn.functional.max_pool2d, torch.relu, torch.nn.functional.relu,
                  torch.flatten, torch.nn.functional.avg_pool2d)


class ExitError(PrunescopeError):
    """The model cannot be cut after the named layers (no such single call, a value other than the cut one
    crosses it, or it cannot be traced)."""


def exit_scores(logits: torch.Tensor, entropy: bool) -> torch.Tensor:
    """Per sample ``(N,)``: the softmax's entropy divided by log(classes), clamped below 1 (``entropy``),
    else the top-1 probability."""
    logp = torch.log_softmax(logits.float(), dim=1)  # few operators: at batch 1 each one costs microseconds
    if entropy:
        h = (logp.exp() * logp).sum(dim=1) / -math.log(max(logits.size(1), 2))
        return h.clamp(0.0, 0.999999)
    return logp.max(dim=1).values.exp()


def leaves(logits: torch.Tensor, threshold: float, entropy: bool) -> torch.Tensor:
    """Which samples leave at this exit ``(N,)`` bool: normalised entropy < threshold (0: none, 1: all), or
    top-1 probability > threshold (0: all, 1: none)."""
    s = exit_scores(logits, entropy)
    return s < threshold if entropy else s > threshold


class _Stage(nn.Module):
    def __init__(self, segment: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.segment, self.head = segment, head

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.segment(x)
        return h, self.head(h)


class ExitRouter(nn.Module):
    """The routing, scriptable: stages (segment + head), the last segment, one threshold per exit."""

    def __init__(self, stages: list[nn.Module], last: nn.Module, thresholds: list[float], entropy: bool) -> None:
        super().__init__()
        self.stages, self.last = nn.ModuleList(stages), last
        self.thresholds = [float(t) for t in thresholds]
        self.entropy = entropy

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = x.size(0)
        idx = torch.arange(n, device=x.device)
        out = torch.zeros(0)
        i = 0
        h = x
        for stage in self.stages:
            h, logits = stage(h)
            leave = leaves(logits, self.thresholds[i], self.entropy)
            i += 1
            if n == 1:  # one sample: it leaves or goes on, no bookkeeping
                if bool(leave[0]):
                    return logits
            else:
                if out.numel() == 0:
                    out = logits.new_zeros((n, logits.size(1)))
                out[idx[leave]] = logits[leave]
                keep = ~leave
                idx, h = idx[keep], h[keep]
                if idx.numel() == 0:
                    return out
        logits = self.last(h)
        if out.numel() == 0:
            return logits
        out[idx] = logits.to(out.dtype)
        return out


def _tracer(after: list[str]) -> fx.Tracer:
    class Tracer(fx.Tracer):
        def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
            return qualname in after or super().is_leaf_module(m, qualname)
    return Tracer()


def cut_graphs(backbone: nn.Module, after: list[str]) -> list[fx.Graph]:
    """The backbone's graph cut after each of ``after`` (in model order) into ``len(after) + 1`` graphs, each
    taking one tensor; the last returns the model's output. ExitError where a cut cannot be made."""
    try:
        graph = _tracer(after).trace(backbone)
    except Exception as exc:
        raise ExitError(one_line(f"early exits need a model torch.fx can trace ({type(exc).__name__}: "
                                 f"{str(exc)[:120]})")) from None
    nodes = list(graph.nodes)
    inputs = [n for n in nodes if n.op == "placeholder"]
    if len(inputs) != 1:
        raise ExitError(f"early exits need a model of one input; this one takes {len(inputs)}")
    cuts = []
    for name in after:
        calls = [i for i, n in enumerate(nodes) if n.op == "call_module" and n.target == name]
        if len(calls) != 1:
            raise ExitError(f"no exit can follow {name}: the model calls it {len(calls)} times, not once")
        i = calls[0]
        while (len(nodes[i].users) == 1 and nodes[i + 1].op == "call_function"
               and nodes[i + 1].target in PARAMETER_FREE and nodes[i + 1].args[0] is nodes[i]):
            i += 1  # "after conv1" is after its max-pool too: the head sees what conv2 would
        cuts.append(i)
    if cuts != sorted(set(cuts)):
        raise ExitError(f"exits must follow different layers, named in model order; got {after}")
    position = {n: i for i, n in enumerate(nodes)}
    for name, cut in zip(after, cuts):
        crossing = [n for n in nodes[:cut + 1] if n is not nodes[cut]
                    and any(position[u] > cut for u in n.users)]
        if crossing:
            raise ExitError(f"no exit can follow {name}: {crossing[0].name} is used past it too (a shortcut); "
                            f"cut after a whole block instead")
    graphs, start = [], inputs[0]
    for end in [*cuts, None]:
        g, env = fx.Graph(), {}
        env[start] = g.placeholder("x")
        stop = len(nodes) if end is None else end + 1
        for n in nodes[position[start] + 1:stop]:
            if n.op == "placeholder":
                continue
            copied = g.node_copy(n, lambda a: env[a])
            copied.type = None  # an annotation the generated code could not name when scripted
            env[n] = copied
        if end is not None:
            g.output(env[nodes[end]])
            start = nodes[end]
        graphs.append(g)
    return graphs


@dataclass(frozen=True)
class HeadSpec:
    """One exit's head: ``conv`` (a 3x3 conv of ``channels``, ReLU, 2x2 max-pool, then an FC) or ``fc`` (an
    FC on the flattened features); ``in_shape`` is the features' shape per sample."""

    after: str
    kind: str
    channels: int
    in_shape: tuple[int, ...]

    def build(self, classes: int) -> nn.Module:
        if self.kind == "conv" and len(self.in_shape) == 3:
            c, h, w = self.in_shape
            return nn.Sequential(nn.Conv2d(c, self.channels, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                                 nn.Flatten(), nn.Linear(self.channels * (h // 2) * (w // 2), classes))
        return nn.Sequential(nn.Flatten(), nn.Linear(int(np.prod(self.in_shape)), classes))

    def as_dict(self) -> dict:
        return {"after": self.after, "head": self.kind, "channels": self.channels, "in_shape": list(self.in_shape)}


class ExitModel(nn.Module):
    """A backbone with exit heads. ``forward`` returns ``(N, classes)`` logits, each sample's from the exit it
    left at; :meth:`all_exits` returns every exit's logits for every sample (training, analysis)."""

    def __init__(self, backbone: nn.Module, heads: list[HeadSpec], classes: int, thresholds: list[float],
                 criterion: str = "entropy") -> None:
        super().__init__()
        if "exits" in dict(backbone.named_children()) or any(True for _ in backbone.named_parameters(recurse=False)):
            raise ExitError("early exits need a model whose weights all sit in its layers")
        if criterion not in CRITERIA or len(thresholds) != len(heads):
            raise ExitError(f"early exits need one threshold per exit and a criterion of {', '.join(CRITERIA)}")
        for name, child in backbone.named_children():
            self.add_module(name, child)
        self.exits = nn.ModuleList(spec.build(classes) for spec in heads)
        self.specs, self.classes, self.criterion = list(heads), classes, criterion
        self.thresholds = [float(t) for t in thresholds]
        self.__dict__["_graphs"] = cut_graphs(backbone, [s.after for s in heads])
        self.__dict__["_cache"] = (None, None)

    def segments(self) -> list[fx.GraphModule]:
        """The backbone's segments as modules calling this model's own layers (rebuilt when a layer changed)."""
        key = tuple(map(id, self.modules()))
        cached_key, segments = self.__dict__["_cache"]
        if cached_key != key:
            segments = [fx.GraphModule(self, g) for g in self.__dict__["_graphs"]]
            self.__dict__["_cache"] = (key, segments)
        return segments

    def router(self) -> ExitRouter:
        """The routing module, built once per segments, thresholds and criterion (rebuilding it on every call
        cost a quarter of a batch-1 pass of LeNet-5)."""
        segments = self.segments()
        key = (tuple(self.thresholds), self.criterion, tuple(self.exits))
        built_on, cached_key, router = self.__dict__.get("_router", (None, None, None))
        if built_on is not segments or cached_key != key:  # modules compare by identity
            *cut, last = segments
            router = ExitRouter([_Stage(s, h) for s, h in zip(cut, self.exits)], last, self.thresholds,
                                self.criterion == "entropy")
            self.__dict__["_router"] = (segments, key, router)
        return router

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.router()(x)

    def all_exits(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Every exit's logits and the final output's, for every sample (no routing)."""
        outs, h = [], x
        *cut, last = self.segments()
        for segment, head in zip(cut, self.exits):
            h = segment(h)
            outs.append(head(h))
        outs.append(last(h))
        return outs

    def __prepare_scriptable__(self) -> nn.Module:
        router = self.router()
        with warnings.catch_warnings():  # torch.fx's GraphModule.__init__ annotates an attribute it sets
            warnings.filterwarnings("ignore", message=".*instance-level annotations", category=UserWarning)
            warnings.filterwarnings("ignore", message=r".*torch\.jit", category=DeprecationWarning)
            router.stages = nn.ModuleList(_Stage(torch.jit.script(s.segment), s.head) for s in router.stages)
            router.last = torch.jit.script(router.last)
        return router


@dataclass
class ExitArrays:
    """Cached outputs of every exit (the final output last) on a split: ``entropy`` and ``confidence``
    ``(exits + 1, N)`` float, ``predictions`` ``(exits + 1, N)`` int, ``labels`` ``(N,)`` int."""

    entropy: np.ndarray
    confidence: np.ndarray
    predictions: np.ndarray
    labels: np.ndarray


@torch.no_grad()
def exit_outputs(model: ExitModel, split, batch_size: int = 512, limit: int | None = None) -> ExitArrays:
    """Every exit's normalised entropy, top-1 confidence and prediction on ``split`` (eval mode)."""
    was = model.training
    model.eval()
    ent, conf, pred, labels = [], [], [], []
    try:
        for x, y in split.batches(batch_size, limit=limit):
            outs = model.all_exits(x)
            ent.append(torch.stack([exit_scores(o, True) for o in outs]).numpy())
            conf.append(torch.stack([exit_scores(o, False) for o in outs]).numpy())
            pred.append(torch.stack([o.argmax(1) for o in outs]).numpy())
            labels.append(y.numpy())
    finally:
        model.train(was)
    return ExitArrays(np.concatenate(ent, 1), np.concatenate(conf, 1), np.concatenate(pred, 1),
                      np.concatenate(labels))


@dataclass(frozen=True)
class ExitStats:
    """What thresholds give: per exit (the final output last) the fraction of samples leaving there and
    their accuracy (nan where none leave); overall accuracy; mean MACs per sample."""

    fractions: tuple[float, ...]
    accuracy: tuple[float, ...]
    overall: float
    mean_macs: float


def exit_of(arrays: ExitArrays, thresholds, criterion: str) -> np.ndarray:
    """Where each sample leaves ``(N,)``: the first exit whose test passes, else the final output."""
    scores = arrays.entropy if criterion == "entropy" else arrays.confidence
    exits = scores.shape[0] - 1
    where = np.full(scores.shape[1], exits)
    for i in reversed(range(exits)):
        go = scores[i] < thresholds[i] if criterion == "entropy" else scores[i] > thresholds[i]
        where[go] = i
    return where


def exit_stats(arrays: ExitArrays, thresholds, criterion: str, macs: list[int] | None = None) -> ExitStats:
    """The exits' figures for ``thresholds`` from cached outputs, without running the model. ``macs``: per
    sample, the cost of leaving at each exit (the final output last); mean MACs 0 without it."""
    where = exit_of(arrays, thresholds, criterion)
    n, k = len(where), arrays.predictions.shape[0]
    chosen = arrays.predictions[where, np.arange(n)]
    correct = chosen == arrays.labels
    fractions = tuple(float((where == i).mean()) for i in range(k))
    acc = tuple(float(correct[where == i].mean()) if (where == i).any() else float("nan") for i in range(k))
    mean = float(sum(f * m for f, m in zip(fractions, macs))) if macs else 0.0
    return ExitStats(fractions, acc, float(correct.mean()), mean)


def choose_thresholds(arrays: ExitArrays, criterion: str, max_drop: float, reference: float | None = None,
                      steps: int = 200) -> list[float]:
    """Per exit in order, the most permissive threshold (most samples leaving) keeping overall accuracy at
    most ``max_drop`` (a fraction: 0.01 is one point) below ``reference`` (the full model's accuracy on the
    same split; None: the final output's). An exit no threshold keeps within it gets none (nobody leaves)."""
    k = arrays.predictions.shape[0] - 1
    full = float((arrays.predictions[-1] == arrays.labels).mean()) if reference is None else reference
    none = 0.0 if criterion == "entropy" else 1.0
    chosen = [none] * k
    grid = np.linspace(0.0, 1.0, steps + 1)
    for i in range(k):
        candidates = grid if criterion == "entropy" else grid[::-1]
        best = none
        for t in candidates:
            trial = chosen[:i] + [float(t)] + chosen[i + 1:]
            if exit_stats(arrays, trial, criterion).overall >= full - max_drop - 1e-12:
                best = float(t)
            else:
                break
        chosen[i] = best
    return chosen


def exit_macs(model: ExitModel, example: torch.Tensor) -> list[int]:
    """MACs per sample of leaving at each exit (the final output last): the segments and heads up to it."""
    from core.analysis.cost import count_macs

    *cut, last = model.segments()
    costs, spent, h = [], 0, example[:1]
    with torch.no_grad():
        for segment, head in zip(cut, model.exits):
            spent += count_macs(segment, h).total
            h = segment(h)
            spent += count_macs(head, h).total  # a sample that goes on has paid for this head too
            costs.append(spent)
        costs.append(spent + count_macs(last, h).total)
    return costs


def per_call_ms(model: nn.Module, inputs: list[torch.Tensor]) -> float:
    """Wall time of calling ``model`` on each of ``inputs`` in turn, in ms per call."""
    with torch.inference_mode():
        start = time.perf_counter()
        for x in inputs:
            model(x)
        return (time.perf_counter() - start) * 1000.0 / len(inputs)


def compare_ms(models: dict[str, nn.Module], inputs: list[torch.Tensor], repeats: int) -> dict[str, float]:
    """Median ms per call of each model on ``inputs``, the models alternating in each repeat (after one
    warm-up pass each), so that both see the same machine load."""
    for model in models.values():
        per_call_ms(model, inputs[:50])
    times = {name: [] for name in models}
    for _ in range(repeats):
        for name, model in models.items():
            times[name].append(per_call_ms(model, inputs))
    return {name: statistics.median(t) for name, t in times.items()}


def exit_section(model: ExitModel, full: nn.Module | None, split, example: torch.Tensor, samples: int = 300,
                 repeats: int = 3, split_name: str = "test", batch: int = 256, batches_of: int = 4) -> dict:
    """The report's ``exits`` section of a decoded exit model on ``split`` (the test split): per exit (the
    final output last) the layer it follows, the fraction leaving there, their accuracy, the MACs of leaving
    there; overall accuracy and mean MACs per sample. With ``full`` (the original model) also its MACs and
    the latency of both at batch 1, on the first ``samples`` images one at a time (each routed as it really
    is), and at batch ``batch``, on ``batches_of`` batches (the samples that stay go on as a smaller batch):
    ms per call, medians of ``repeats`` alternating passes."""
    from core.analysis.cost import count_macs

    arrays = exit_outputs(model, split)
    macs = exit_macs(model, example)
    stats = exit_stats(arrays, model.thresholds, model.criterion, macs)
    section = {"criterion": model.criterion, "thresholds": list(model.thresholds),
               "after": [s.after for s in model.specs], "split": split_name, "examples": int(len(arrays.labels)),
               "fractions": list(stats.fractions), "accuracy": [None if math.isnan(a) else a for a in stats.accuracy],
               "overall": stats.overall, "macs": list(macs), "mean_macs": stats.mean_macs}
    if full is None:
        return section
    images = [x[i:i + 1] for x, _ in split.batches(samples, limit=samples) for i in range(len(x))]
    batches = [x for x, _ in split.batches(batch, limit=batch * batches_of)]
    batches = [x for x in batches if len(x) == batch] or batches[:1]  # whole batches (a split smaller: its one)
    batch = len(batches[0])
    was = model.training, full.training
    model.eval(), full.eval()
    try:
        ms = compare_ms({"full": full, "exits": model}, images, repeats)
        big = compare_ms({"full": full, "exits": model}, batches, repeats)
    finally:
        model.train(was[0]), full.train(was[1])
    return {**section, "full_macs": count_macs(full, example[:1]).total, "batch1_examples": len(images),
            "batch1_ms_full": ms["full"], "batch1_ms_exits": ms["exits"],
            "speedup_batch1": ms["full"] / ms["exits"] if ms["exits"] > 0 else None,
            "batch": batch, "batches": len(batches), "batch_ms_full": big["full"], "batch_ms_exits": big["exits"],
            "speedup_batch": big["full"] / big["exits"] if big["exits"] > 0 else None,
            "threads": torch.get_num_threads()}
