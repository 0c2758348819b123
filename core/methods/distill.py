"""Knowledge distillation (Hinton et al., 2015): a teacher's softened outputs train a student.

The loss for a batch is ``alpha * T**2 * KL(softmax(z_t / T) || softmax(z_s / T)) + (1 - alpha) * CE(z_s, y)``:
the student's logits ``z_s`` match the teacher's ``z_t`` softened by the temperature ``T`` ("1 is similar
to 7"), and the labels ``y``. ``T**2`` keeps the soft term's gradients on the scale of the hard term's as
``T`` changes. The teacher runs once per batch, in inference mode, and is never trained.

Two ways in: the ``distill`` step (:class:`Distill`) trains the working copy, or a fresh ``student``
architecture that replaces it, to match a teacher; and every step that trains (``finetune``, the rounds of
``iterative_prune``, codebook fine-tuning) takes a ``distill:`` block (:class:`DistillSpec`), so that it
recovers accuracy from the original rather than from the labels alone. The teacher (``original``: the model
as loaded; or any model spec the loaders accept, loaded without trust) is loaded once per run
(:meth:`core.pipeline.context.RunContext.teacher`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from core.eval.data import Split, to_float
from core.eval.training import Loss
from core.progress import Task
from core.recipe import Need, Step, register_step
from core.recipe.validate import check_int, check_positive, fail

ORIGINAL = "original"
"""The teacher that is the model as it was loaded (for a chain of recipes, the chain's original)."""


def soft_probabilities(logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """``softmax(logits / temperature)`` over the last dimension: the softened class probabilities, shape of
    ``logits``, in their floating dtype (a higher temperature spreads them: the teacher's "dark knowledge")."""
    if not temperature > 0:
        raise ValueError(f"temperature must be positive; got {temperature!r}")
    z = logits.detach()
    return torch.softmax((z if z.is_floating_point() else z.float()) / temperature, dim=-1)


def distillation_loss(teacher: nn.Module, temperature: float = 4.0, alpha: float = 0.9) -> Loss:
    """The loss a student trains with to match ``teacher`` at ``temperature``, weighting the soft term by
    ``alpha`` and cross-entropy against the labels by ``1 - alpha``."""
    if not temperature > 0:
        raise ValueError(f"temperature must be positive; got {temperature!r}")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1]; got {alpha!r}")
    teacher.eval()

    def loss(logits: torch.Tensor, inputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            target = teacher(inputs)
        soft_target = nn.functional.log_softmax(target.detach().clone() / temperature, dim=1)
        soft = nn.functional.kl_div(nn.functional.log_softmax(logits / temperature, dim=1), soft_target,
                                    reduction="batchmean", log_target=True)
        hard = nn.functional.cross_entropy(logits, labels) if alpha < 1 else logits.new_zeros(())
        return alpha * temperature ** 2 * soft + (1 - alpha) * hard

    return loss


CACHE_BYTES = 256 << 20
"""The most memory the teacher's logits for a whole training split may take to be computed once per run
rather than once per batch (:func:`with_teacher_logits`)."""


def with_teacher_logits(teacher: nn.Module, data: Split, temperature: float, alpha: float,
                        batch_size: int = 1000) -> tuple[Split, Loss] | None:
    """The teacher's logits for every image of ``data``, computed once, in inference mode, and a split and
    loss that train with them: the split's labels are the images' indices, which the loss maps to the
    teacher's logits and the true labels. Without augmentation an image's soft targets are the same every
    epoch, so this is the distillation loss exactly, with the teacher run once per image instead of once per
    image and epoch. None when the logits would take more than :data:`CACHE_BYTES`."""
    logits = []
    with torch.inference_mode():
        teacher.eval()
        for start in range(0, len(data), batch_size):
            logits.append(teacher(to_float(data.images[start:start + batch_size])).float())
            if start == 0 and logits[0][0].numel() * len(data) * 4 > CACHE_BYTES:
                return None
    targets = torch.cat(logits)
    soft_targets = nn.functional.log_softmax(targets / temperature, dim=1)
    labels = data.labels

    def loss(logits: torch.Tensor, inputs: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        soft = nn.functional.kl_div(nn.functional.log_softmax(logits / temperature, dim=1), soft_targets[index],
                                    reduction="batchmean", log_target=True)
        hard = nn.functional.cross_entropy(logits, labels[index]) if alpha < 1 else logits.new_zeros(())
        return alpha * temperature ** 2 * soft + (1 - alpha) * hard

    return Split(data.images, torch.arange(len(data))), loss


MAX_TEMPERATURE = 1000.0


def check_teacher(where: str, teacher) -> None:
    if not isinstance(teacher, str) or not teacher.strip() or "\n" in teacher or len(teacher) > 4096:
        fail(where, f"must be {ORIGINAL!r} or a model (zoo:NAME or a file); got {teacher!r:.80}")


def check_temperature(where: str, temperature) -> None:
    check_positive(where, temperature)
    if not math.isfinite(temperature) or temperature > MAX_TEMPERATURE:
        fail(where, f"must be at most {MAX_TEMPERATURE:g}; got {temperature!r}")


def check_alpha(where: str, alpha) -> None:
    if not isinstance(alpha, (int, float)) or isinstance(alpha, bool) or not 0.0 <= alpha <= 1.0:
        fail(where, f"must be a number in [0, 1] (the soft targets' weight); got {alpha!r}")


@dataclass(frozen=True)
class DistillSpec:
    """How a step that trains distills: from ``teacher`` (``original`` or a model spec) at ``temperature``,
    the soft targets weighted by ``alpha`` and the labels by ``1 - alpha``. In a recipe, a mapping:
    ``distill: {teacher: original, temperature: 4}``."""

    teacher: str = ORIGINAL
    temperature: float = 4.0
    alpha: float = 0.9

    def __post_init__(self) -> None:
        self.validate("distill")

    def validate(self, where: str) -> None:
        check_teacher(f"{where}.teacher", self.teacher)
        check_temperature(f"{where}.temperature", self.temperature)
        check_alpha(f"{where}.alpha", self.alpha)

    def loss(self, teacher: nn.Module) -> Loss:
        return distillation_loss(teacher, float(self.temperature), float(self.alpha))


def check_distill_block(where: str, spec) -> None:
    """The ``distill`` field of a step that trains: None or a :class:`DistillSpec`."""
    if spec is None:
        return
    if not isinstance(spec, DistillSpec):
        fail(where, f"must be a mapping such as {{teacher: original, temperature: 4}}; got {spec!r:.80}")
    spec.validate(where)


def distill_needs(spec: DistillSpec | None) -> frozenset[Need]:
    return frozenset({Need.TEACHER}) if spec is not None else frozenset()


def distill_teachers(spec: DistillSpec | None) -> tuple[str, ...]:
    return (spec.teacher,) if spec is not None else ()


def distill_summary(spec: DistillSpec | None) -> str:
    return f", distilled T={spec.temperature:g}" if spec is not None else ""


@dataclass(frozen=True)
class Distill(Step):
    """Train the model (or a fresh ``student`` architecture that replaces it) for ``epochs`` to match
    ``teacher``'s outputs softened at ``temperature``: ``alpha`` weighs the soft targets, ``1 - alpha`` the
    labels. ``student`` is a zoo architecture (``mlp800``) or ``package.module:factory``, built from the
    recipe's seed; it may only be the first step (what earlier steps did to the model cannot carry over)."""

    kind: ClassVar[str] = "distill"
    teacher: str = ORIGINAL
    temperature: float = 4.0
    alpha: float = 0.9
    epochs: int = 10
    lr: float = 0.05
    augment: bool = False
    batch_size: int = 128
    student: str = ""

    @property
    def spec(self) -> DistillSpec:
        return DistillSpec(self.teacher, self.temperature, self.alpha)

    @property
    def renames_layers(self) -> bool:  # a student's layers are its own: later patterns name them
        return bool(self.student)

    def summary(self) -> str:
        return f"distill T={self.temperature:g}" + (f" → {self.student}" if self.student else "")

    def validate(self, where: str) -> None:
        super().validate(where)
        check_teacher(f"{where}.teacher", self.teacher)
        check_temperature(f"{where}.temperature", self.temperature)
        check_alpha(f"{where}.alpha", self.alpha)
        check_int(f"{where}.epochs", self.epochs, 0, 1000)
        check_positive(f"{where}.lr", self.lr)
        check_int(f"{where}.batch_size", self.batch_size, 1, 65536)
        if not isinstance(self.augment, bool):
            fail(f"{where}.augment", f"must be true or false; got {self.augment!r}")
        if not isinstance(self.student, str) or "\n" in self.student or len(self.student) > 4096:
            fail(f"{where}.student", f"must be a zoo architecture or package.module:factory; got {self.student!r:.80}")
        if self.student and (self.select.layers or self.select.ignore or self.select.overrides):
            fail(f"{where}.layers", "a student replaces the whole model: it takes no layer patterns")

    def first_only(self) -> str:
        return "a student replaces the model, so it must be the first step: what earlier steps did to the " \
               "model (masks, codebooks, structure) cannot carry over to it" if self.student else ""

    def needs(self) -> frozenset[Need]:
        return frozenset({Need.TEACHER} | ({Need.TRAINING_DATA} if self.epochs else set()))

    def teachers(self) -> tuple[str, ...]:
        return (self.teacher,)


def run_distill(step: Distill, ctx) -> Task[None]:
    """``ctx`` is the run's :class:`core.pipeline.context.RunContext` (not imported: it imports this module)."""
    if step.student:
        ctx.replace_with_student(step.student)
    yield from ctx.finetune(step.epochs, step.lr, step.augment, step.batch_size, distill=step.spec)


register_step(Distill, run_distill, family="distillation")
