"""Magnitude pruning: zero the smallest weights, once (``prune_magnitude``) or in rounds with fine-tuning
between them (``iterative_prune``, Deep Compression's and the lecture notes' iterative pruning).

Each selected layer loses its ``sparsity`` (or its override), or one threshold is set across all selected
layers (``scope: global``). The zeros are masks (:mod:`core.methods.masks`) that stay in force through any
later training. The k-th smallest magnitude is found exactly from bucket counts, without sorting.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from core.analysis.estimate import Plan, global_threshold
from core.methods.masks import apply_masks, magnitude_masks, prunable_layers, weight_of
from core.methods.distill import DistillSpec, check_distill_block, distill_needs, distill_teachers
from core.pipeline.context import RunContext
from core.progress import Task
from core.recipe import Need, Step, register_step
from core.recipe.validate import check_choice, check_fraction, check_int, check_positive


@dataclass(frozen=True)
class PruneMagnitude(Step):
    """Zero the smallest-magnitude weights: ``sparsity`` per layer, or one threshold across the layers
    (``scope: global``). The zeros are masks that stay in force through later fine-tuning."""

    kind: ClassVar[str] = "prune_magnitude"
    sparsity: float = 0.5
    scope: str = "layer"

    def summary(self) -> str:
        return f"{self.sparsity:.0%}{' global' if self.scope == 'global' else ''}{self._overridden()}"

    def validate(self, where: str) -> None:
        super().validate(where)
        check_fraction(f"{where}.sparsity", self.sparsity)
        check_choice(f"{where}.scope", self.scope, ("layer", "global"))
        for pattern, value in self.select.overrides:
            check_fraction(f"{where}.overrides[{pattern}]", value)


@dataclass(frozen=True)
class IterativePrune(Step):
    """Prune a little, fine-tune, repeat: ``steps`` rounds up to ``sparsity``, each removing the same
    fraction of what is left, with ``epochs_per_step`` epochs of fine-tuning at ``lr`` after each."""

    kind: ClassVar[str] = "iterative_prune"
    sparsity: float = 0.9
    scope: str = "layer"
    steps: int = 4
    epochs_per_step: int = 1
    lr: float = 0.01
    augment: bool = False
    distill: DistillSpec | None = None  # the fine-tuning rounds distill from its teacher

    def summary(self) -> str:
        return f"{self.sparsity:.0%} in {self.steps} rounds{self._overridden()}"

    def validate(self, where: str) -> None:
        super().validate(where)
        check_fraction(f"{where}.sparsity", self.sparsity)
        check_choice(f"{where}.scope", self.scope, ("layer", "global"))
        check_int(f"{where}.steps", self.steps, 1, 100)
        check_int(f"{where}.epochs_per_step", self.epochs_per_step, 0, 1000)
        check_positive(f"{where}.lr", self.lr)
        for pattern, value in self.select.overrides:
            check_fraction(f"{where}.overrides[{pattern}]", value)
        check_distill_block(f"{where}.distill", self.distill)

    def needs(self) -> frozenset[Need]:
        if not self.epochs_per_step:
            return frozenset()
        return frozenset({Need.TRAINING_DATA}) | distill_needs(self.distill)

    def teachers(self) -> tuple[str, ...]:
        return distill_teachers(self.distill) if self.epochs_per_step else ()


def prunable_names(model) -> list[str]:
    """The layers magnitude pruning (and quantization) work on: every weight of two or more dimensions."""
    return list(prunable_layers(model))


def prune_once(step: PruneMagnitude | IterativePrune, ctx: RunContext, fraction_of_target: float = 1.0) -> None:
    """Prune the selected layers to ``1 - (1 - sparsity) ** fraction_of_target`` (a round's share)."""
    layers = prunable_layers(ctx.model)
    names = ctx.layers(step, list(layers))
    weights = {n: weight_of(layers[n]) for n in names}
    if step.scope == "global":
        target = 1 - (1 - step.sparsity) ** fraction_of_target
        masks = magnitude_masks(weights, target, "global")
    else:
        targets = {n: 1 - (1 - step.select.value_for(n, step.sparsity)) ** fraction_of_target for n in names}
        masks = magnitude_masks(weights, targets, "layer")
    apply_masks(ctx.model, masks)


def run_prune_magnitude(step: PruneMagnitude, ctx: RunContext) -> None:
    prune_once(step, ctx)


def run_iterative_prune(step: IterativePrune, ctx: RunContext) -> Task[None]:
    for k in range(1, step.steps + 1):
        prune_once(step, ctx, k / step.steps)
        yield from ctx.finetune(step.epochs_per_step, step.lr, step.augment, distill=step.distill)


def preview_pruning(step: PruneMagnitude | IterativePrune, plan: Plan) -> None:
    """What the step ends at: each layer's share of its weights below the threshold that prunes it."""
    names = plan.layers(step)
    if step.scope == "global":
        selected = {n: plan.stats[n] for n in names}
        threshold = global_threshold(selected, step.sparsity)
        for n in names:
            plan.prune_to(n, selected[n].fraction_below(threshold), threshold)
        return
    for n in names:
        target = step.select.value_for(n, step.sparsity)
        plan.prune_to(n, target, plan.stats[n].threshold_for(target) if target > 0 else 0.0)


register_step(PruneMagnitude, run_prune_magnitude, preview=preview_pruning, targets=prunable_names,
              family="pruning", in_place=True)
register_step(IterativePrune, run_iterative_prune, preview=preview_pruning, targets=prunable_names,
              family="pruning")
