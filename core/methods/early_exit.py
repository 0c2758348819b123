"""Early exits (BranchyNet): heads after named layers, trained, with a threshold each, that really exit.

The ``early_exit`` step wraps the working model in :class:`core.eval.exits.ExitModel` with a head after each
layer of ``after`` (a small conv + FC, ``head: conv``; or an FC, ``head: fc``, and always for flat features).
It trains them: ``train: joint`` minimises a weighted sum of every exit's cross-entropy and the final
output's (BranchyNet), starting from the trained model; ``train: heads`` freezes the backbone and distils
each head from the final output (KL divergence at ``temperature``). It then sets a threshold per exit on the
normalised entropy or the top-1 confidence (:func:`core.eval.exits.leaves`): the given ``thresholds``, or the
most permissive ones keeping the validation accuracy at most ``max_drop`` below the full model's.
It records an ``early_exit`` structure op (heads, thresholds, criterion) that rebuilds the model on load; the
heads' weights are more tensors of the file. Pruning and quantization may follow (they see the heads too).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from core.eval.data import to_float
from core.eval.evaluate import accuracy
from core.eval.exits import (CRITERIA, ExitError, ExitModel, HeadSpec, choose_thresholds, exit_outputs, exit_section,
                             exit_stats)
from core.format.structure import StructureError, register_op
from core.pipeline.context import RunContext
from core.progress import Progress, Task
from core.recipe import Need, Step, register_step
from core.recipe.validate import check_choice, check_fraction, check_int, check_positive, fail

TRAINING = ("joint", "heads", "none")
HEADS = ("conv", "fc")


@dataclass(frozen=True)
class EarlyExit(Step):
    """Exit heads after the layers ``after``, trained (``train``: joint, heads, none) for ``epochs`` at ``lr``
    (Adam), each with a threshold on ``criterion``: ``thresholds`` if given, else chosen for ``max_drop``
    (a fraction of accuracy on the validation split: 0.002 is 0.2 points)."""

    kind: ClassVar[str] = "early_exit"
    after: tuple[str, ...] = ()
    head: str = "conv"
    head_channels: int = 8
    train: str = "joint"
    epochs: int = 2
    lr: float = 0.001
    weights: tuple[float, ...] = ()  # joint: one per exit, then the final output's; () is all 1
    temperature: float = 1.0
    criterion: str = "entropy"
    thresholds: tuple[float, ...] = ()
    max_drop: float = 0.002
    train_examples: int = 0  # 0: the whole training split (tests use a few)

    def summary(self) -> str:
        return "early exit " + ",".join(self.after)

    def validate(self, where: str) -> None:
        super().validate(where)
        if not self.after or not all(isinstance(a, str) and a for a in self.after):
            fail(f"{where}.after", "must list the layers to put an exit after")
        check_choice(f"{where}.head", self.head, HEADS)
        check_int(f"{where}.head_channels", self.head_channels, 1, 4096)
        check_choice(f"{where}.train", self.train, TRAINING)
        check_int(f"{where}.epochs", self.epochs, 0, 1000)
        check_positive(f"{where}.lr", self.lr)
        check_positive(f"{where}.temperature", self.temperature)
        check_choice(f"{where}.criterion", self.criterion, CRITERIA)
        if self.weights and (len(self.weights) != len(self.after) + 1 or any(w < 0 for w in self.weights)):
            fail(f"{where}.weights", f"must give {len(self.after) + 1} non-negative weights (each exit, then the end)")
        if self.thresholds and (len(self.thresholds) != len(self.after)
                                or any(not 0 <= t <= 1 for t in self.thresholds)):
            fail(f"{where}.thresholds", f"must give {len(self.after)} thresholds in [0, 1], one per exit")
        check_fraction(f"{where}.max_drop", self.max_drop)
        check_int(f"{where}.train_examples", self.train_examples, 0)

    def needs(self) -> frozenset[Need]:
        trains = self.train != "none" and self.epochs > 0
        return frozenset({Need.TRAINING_DATA} if trains or not self.thresholds else set())


def head_specs(model: nn.Module, step: EarlyExit, example: torch.Tensor) -> list[HeadSpec]:
    """The heads' specs: each cut's feature shape, measured on one sample of ``example``."""
    from core.eval.exits import cut_graphs

    graphs = cut_graphs(model, list(step.after))
    specs, h = [], example[:1]
    with torch.no_grad():
        for name, graph in zip(step.after, graphs[:-1]):
            h = torch.fx.GraphModule(model, graph)(h)
            shape = tuple(int(s) for s in h.shape[1:])
            specs.append(HeadSpec(name, step.head if len(shape) == 3 else "fc", step.head_channels, shape))
    return specs


def _batches(ctx: RunContext, step: EarlyExit, generator: torch.Generator):
    split = ctx.data.train
    n = len(split) if not step.train_examples else min(step.train_examples, len(split))
    order = torch.randperm(len(split), generator=generator)[:n]
    for start in range(0, n, 128):
        idx = order[start:start + 128]
        yield to_float(split.images[idx]), split.labels[idx]


def train_exits(model: ExitModel, ctx: RunContext, step: EarlyExit) -> Task[None]:
    """Train the heads (``heads``: backbone frozen, distilled from the final output) or everything (``joint``)."""
    torch.manual_seed(ctx.recipe.seed)
    generator = torch.Generator().manual_seed(ctx.recipe.seed)
    joint = step.train == "joint"
    weights = list(step.weights) or [1.0] * (len(model.exits) + 1)
    params = list(model.parameters()) if joint else list(model.exits.parameters())
    optimiser = torch.optim.Adam([p for p in params if p.requires_grad], lr=step.lr)
    t = step.temperature
    model.train()
    if not joint:
        for name, module in model.named_children():  # frozen: BatchNorm keeps its statistics too
            if name != "exits":
                module.eval()
    try:
        for epoch in range(step.epochs):
            for i, (x, y) in enumerate(_batches(ctx, step, generator)):
                with torch.enable_grad():
                    if joint:
                        outs = model.all_exits(x)
                        loss = sum(w * nn.functional.cross_entropy(o, y) for w, o in zip(weights, outs))
                    else:
                        with torch.no_grad():
                            feats, h = [], x
                            *cut, last = model.segments()
                            for segment in cut:
                                h = segment(h)
                                feats.append(h)
                            target = torch.softmax(last(h) / t, dim=1)
                        loss = sum(nn.functional.kl_div(torch.log_softmax(head(f) / t, dim=1), target,
                                                        reduction="batchmean") * t * t
                                   for head, f in zip(model.exits, feats))
                    optimiser.zero_grad(set_to_none=True)
                    loss.backward()
                    optimiser.step()
                if i % 20 == 0:
                    yield Progress("early exit training", epoch, step.epochs, f"epoch {epoch + 1}: loss {loss.item():.4f}")
    finally:
        optimiser.state.clear()
        model.eval()


def run_early_exit(step: EarlyExit, ctx: RunContext) -> Task[None]:
    if isinstance(ctx.model, ExitModel):
        raise ExitError(f"{ctx.where}: the model already has exits; put them all in one early_exit step")
    classes = len(ctx.loaded.classes) if ctx.loaded.classes else 10
    example = ctx.example if isinstance(ctx.example, torch.Tensor) else None
    if example is None:
        raise ExitError(f"{ctx.where}: early exits need a model of one tensor input")
    yield Progress("early exit", 0, 3, "cutting the model")
    specs = head_specs(ctx.model, step, example)
    none = [0.0 if step.criterion == "entropy" else 1.0] * len(specs)
    torch.manual_seed(ctx.recipe.seed)
    model = ExitModel(ctx.model, specs, classes, list(step.thresholds) or none, step.criterion)
    if step.train != "none" and step.epochs:
        yield from train_exits(model, ctx, step)
    yield Progress("early exit", 2, 3, "setting thresholds")
    if not step.thresholds:
        arrays = exit_outputs(model, ctx.data.val)
        reference = (yield from accuracy((ctx.origin or ctx.loaded).module, ctx.data.val)).accuracy
        model.thresholds = choose_thresholds(arrays, step.criterion, step.max_drop, reference)
        stats = exit_stats(arrays, model.thresholds, step.criterion)
        ctx.note(f"thresholds {', '.join(f'{t:.3f}' for t in model.thresholds)} ({step.criterion}): on validation "
                 f"{' / '.join(f'{f:.1%}' for f in stats.fractions)} leave at each exit / the end, accuracy "
                 f"{stats.overall:.2%} (the full model's {reference:.2%})")
    ctx.model = model
    ctx.structure.append(exit_op(model))
    ctx.after_decode.append(lambda decoded: _measure_exits(decoded, ctx, example))
    yield Progress("early exit", 3, 3, "done")


def _measure_exits(decoded: nn.Module, ctx: RunContext, example: torch.Tensor) -> Task[None]:
    """The report's ``exits`` section, of the decoded file's model (after every later step) on the test split."""
    if not isinstance(decoded, ExitModel) or ctx.data is None:
        return
    yield Progress("early exit", 0, 1, "measuring the exits on the test split")
    ctx.sections["exits"] = exit_section(decoded, (ctx.origin or ctx.loaded).module, ctx.data.test, example[:1])
    yield Progress("early exit", 1, 1, "measured")


def exit_op(model: ExitModel) -> dict:
    """The structure op rebuilding ``model``'s exits from its backbone."""
    return {"op": "early_exit", "classes": model.classes, "criterion": model.criterion,
            "thresholds": list(model.thresholds), "heads": [s.as_dict() for s in model.specs]}


def replay_early_exit(model: nn.Module, example, op: dict) -> None:
    """Rebuild the exits in place: ``model``'s layers move into an ExitModel, which takes its place. A replay
    works on the module it is given, so the backbone's layers and the heads become ``model``'s own."""
    try:
        specs = [HeadSpec(str(h["after"]), str(h["head"]), int(h["channels"]), tuple(int(s) for s in h["in_shape"]))
                 for h in op["heads"]]
        thresholds = [float(t) for t in op["thresholds"]]
        built = ExitModel(_plain_copy(model), specs, int(op["classes"]), thresholds, str(op["criterion"]))
    except (KeyError, TypeError, ValueError, ExitError) as exc:
        raise StructureError(f"an early_exit op does not fit the model: {exc}") from None
    model.__class__ = ExitModel
    model.__dict__.clear()
    model.__dict__.update(built.__dict__)


def _plain_copy(model: nn.Module) -> nn.Module:
    """A shallow module with ``model``'s class and children (its layers, shared, not copied)."""
    shell = model.__class__.__new__(model.__class__)
    shell.__dict__.update(model.__dict__)
    shell._modules = dict(model._modules)
    return shell


register_op("early_exit", replay_early_exit)
register_step(EarlyExit, run_early_exit, targets=lambda model: [n for n, _ in model.named_children()],
              family="architecture")
