"""Fine-tuning as a step: train the working copy on the training split, masks and codebooks in force."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from core.methods.distill import DistillSpec, check_distill_block, distill_needs, distill_summary, distill_teachers
from core.pipeline.context import RunContext
from core.progress import Task
from core.recipe import Need, Step, register_step
from core.recipe.validate import check_int, check_positive


@dataclass(frozen=True)
class FineTune(Step):
    """Train on the training split for ``epochs`` (SGD, cosine ``lr``); masks and codebooks stay in force.
    With ``distill``, the loss is the distillation loss against its teacher (the original, by default)."""

    kind: ClassVar[str] = "finetune"
    epochs: int = 1
    lr: float = 0.01
    augment: bool = False
    batch_size: int = 128
    distill: DistillSpec | None = None

    def summary(self) -> str:
        return f"fine-tune {self.epochs} ep{distill_summary(self.distill)}" if self.epochs else ""

    def validate(self, where: str) -> None:
        super().validate(where)
        check_int(f"{where}.epochs", self.epochs, 0, 1000)
        check_positive(f"{where}.lr", self.lr)
        check_int(f"{where}.batch_size", self.batch_size, 1, 65536)
        check_distill_block(f"{where}.distill", self.distill)

    def needs(self) -> frozenset[Need]:
        return (frozenset({Need.TRAINING_DATA}) | distill_needs(self.distill)) if self.epochs else frozenset()

    def teachers(self) -> tuple[str, ...]:
        return distill_teachers(self.distill) if self.epochs else ()


def run_finetune(step: FineTune, ctx: RunContext) -> Task[None]:
    yield from ctx.finetune(step.epochs, step.lr, step.augment, step.batch_size, distill=step.distill)


register_step(FineTune, run_finetune, family="training")
