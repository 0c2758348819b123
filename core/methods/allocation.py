"""Automatic allocation as a step: ``allocate`` chooses each layer's setting of the steps after it.

Placed first in a recipe, it measures every layer alone at every option of the later pruning and
quantize steps (:mod:`core.analysis.allocate`), on the validation split or, with only inputs, by fidelity;
solves for the target (a file of ``target_bytes``, ``ratio`` times smaller than the original, or at most
``max_drop`` lost); and runs the later steps with the chosen sparsity and bits per layer. Those steps keep
everything else they say (fine-tuning, the codebook method, the encoding). The predicted file is checked
against the encoder's own price of the chosen weights and the budget tightened until it fits. After the
file is decoded, the combined model is measured on the same examples, so the report gives the prediction
beside what it measured.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import ClassVar

import torch

from core.analysis import grids
from core.eval.evaluate import accuracy
from core.pipeline.context import CompressionError, RunContext
from core.progress import Task
from core.recipe import Recipe, Step, register_step
from core.recipe.validate import check_choice, check_fraction, check_int, check_positive, fail

@dataclass(frozen=True)
class Allocate(Step):
    """Choose the later steps' sparsity and bits per layer to meet one target: ``target_bytes`` (the whole
    file), ``ratio`` (times smaller than the original) or ``max_drop`` (of the metric: 0.01 is one point of
    top-1). Options are every ``sparsities`` x every ``bits``, measured on ``limit`` validation examples."""

    kind: ClassVar[str] = "allocate"
    target_bytes: int = 0
    ratio: float = 0.0
    max_drop: float = 0.0
    sparsities: tuple[float, ...] = grids.SPARSITIES
    bits: tuple[int, ...] = grids.BITS
    limit: int = 2000
    solver: str = "knapsack"

    def summary(self) -> str:
        return ("allocated to " + (f"{self.target_bytes:,} B" if self.target_bytes else
                                   f"{self.ratio:g}x" if self.ratio else f"-{self.max_drop:g}"))

    def validate(self, where: str) -> None:
        super().validate(where)
        given = [n for n, v in (("target_bytes", self.target_bytes), ("ratio", self.ratio),
                                ("max_drop", self.max_drop)) if v]
        if len(given) != 1:
            fail(where, "give exactly one target: target_bytes, ratio or max_drop"
                 + (f" (got {', '.join(given)})" if given else ""))
        check_int(f"{where}.target_bytes", self.target_bytes, 0)
        if self.ratio:
            check_positive(f"{where}.ratio", self.ratio)
        if self.max_drop:
            check_fraction(f"{where}.max_drop", self.max_drop)
        if not self.sparsities or not self.bits:
            fail(where, "needs at least one sparsity and one bits value")
        for s in self.sparsities:
            check_fraction(f"{where}.sparsities", s)
        for b in self.bits:
            check_int(f"{where}.bits", b, 1, 8)
        check_int(f"{where}.limit", self.limit, 1)
        check_choice(f"{where}.solver", self.solver, grids.SOLVERS)

    def first_only(self) -> str:
        return "allocate chooses the settings of the steps after it: put it first"


def _budget(step: Allocate, ctx: RunContext) -> int | None:
    if step.target_bytes:
        return step.target_bytes
    if step.ratio:
        from core.pipeline.apply import original_bytes  # the pipeline imports the methods

        return int(original_bytes(ctx.origin or ctx.loaded) / step.ratio)
    return None


def run_allocate(step: Allocate, ctx: RunContext) -> Task[None]:
    from core.analysis import allocate as alloc  # it imports the methods' shared parts, which import this
    from core.pipeline.encoding import describe

    later = Recipe(steps=ctx.recipe.steps[ctx.index + 1:], name=ctx.recipe.name)
    info = describe(ctx.loaded, ctx.structure, ctx.example, ctx.arch)
    target = _budget(step, ctx)
    try:
        chosen = yield from alloc.allocate(replace(ctx.loaded, module=ctx.model), ctx.data, later, target,
                                           None if target else step.max_drop, step.sparsities, step.bits,
                                           step.limit, step.solver, info)
    except alloc.AllocationError as exc:
        raise CompressionError(f"{ctx.where}: {exc}") from None
    for k, s in enumerate(chosen.recipe.steps):
        ctx.chosen[ctx.index + 1 + k] = s
    ctx.sections["allocation"] = chosen.section(step.solver)
    ctx.after_decode.append(lambda model: _measure_combined(model, ctx, step, chosen.table))
    ctx.note(f"chose each layer's setting for {chosen.target}: predicted {chosen.predicted_bytes:,} bytes, "
             f"{chosen.table.metric_name} {chosen.predicted_metric:.4g} on {chosen.table.count:,} "
             f"{chosen.table.split} examples")


def _measure_combined(model: torch.nn.Module, ctx: RunContext, step: Allocate, table) -> Task[None]:
    """The decoded model measured on the examples the options were measured on (labelled data), beside
    the prediction; with only inputs, the run's own fidelity is that measurement."""
    section = ctx.sections["allocation"]
    section["measured_bytes"] = None  # filled by the report from the file itself
    if ctx.data is None:
        return
    flat = ctx.loaded.input_shape is not None and len(ctx.loaded.input_shape) == 2
    prepare = (lambda x: x.reshape(x.shape[0], -1)) if flat else None
    split = getattr(ctx.data, table.split).subset(min(step.limit, len(getattr(ctx.data, table.split))))
    measured = yield from accuracy(model, split, prepare=prepare)
    section["measured_metric"] = measured.accuracy


register_step(Allocate, run_allocate, family="analysis")
