"""The run context: what a step's handler works on and with, during one compression run.

A handler (see :mod:`core.recipe.registry`) gets the step and a :class:`RunContext`. It changes
``ctx.model``, the run's one working copy, in place; it chooses its layers with :meth:`RunContext.layers`,
which refuses a pattern that matches nothing; it trains with :meth:`RunContext.finetune`; a structural
change appends its op to ``ctx.structure`` (replayed when the file is loaded); a step that distills gets its
teacher from :meth:`RunContext.teacher` (loaded once per run, before any step runs, and cached here); a
``distill`` step with a student replaces the working copy (:meth:`RunContext.replace_with_student`), and the
file then records the student's architecture (``arch``, ``base_module``); the encode step sets
``ctx.encoding``; a note for the report (a layer a step skipped, and why) goes to :meth:`RunContext.note`;
a step whose result is a conversion of the decoded model (int8 inference) appends a
:class:`Conversion`. Nothing here is shared with another run.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from core.devices import placed
from core.errors import PrunescopeError, one_line
from core.eval.data import Dataset
from core.eval.training import TrainConfig, train
from core.io.base import LoadedModel
from core.progress import Task
from core.recipe import Recipe, RecipeError, Step
from core.recipe.step import unmatched


class CompressionError(PrunescopeError):
    """The recipe cannot run on this model or data; nothing was changed."""


@dataclass(frozen=True)
class EncodeOptions:
    """How the compressed file stores the result (set by the recipe's encode step, if it has one)."""

    huffman: bool = True
    index_bits: int = 0
    small_float: str = "float16"


@dataclass(frozen=True)
class Conversion:
    """A model made from the decoded one after encoding (int8 inference), measured beside it.

    ``convert(model)`` is a task returning the new model and leaving ``model`` as it was."""

    name: str
    convert: Callable[[nn.Module], Task[nn.Module]]


@dataclass
class RunContext:
    """One recipe run: the working copy and everything the steps share."""

    recipe: Recipe
    loaded: LoadedModel
    model: nn.Module  # the working copy; the loaded model is never changed
    data: Dataset | None
    example: Any  # a small batch of inputs, for tracing the model (structure, int8 conversion)
    index: int = 0  # the step being run
    structure: list[dict] = field(default_factory=list)  # structure ops made in this run
    encoding: EncodeOptions = field(default_factory=EncodeOptions)
    conversions: list[Conversion] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what the report and the studio should say (skipped layers)
    origin: LoadedModel | None = None  # the model as originally loaded (a chain's original); None: ``loaded``
    arch: str | None = None  # the architecture the file records, when a step replaced the model (a student)
    base_module: nn.Module | None = None  # what the structure ops replay on, then (the fresh student, on meta)
    teachers: dict[str, nn.Module] = field(default_factory=dict)  # teacher spec -> model, loaded once per run
    device: torch.device | None = None  # where training runs (:mod:`core.devices`); None: the CPU
    chosen: dict[int, Step] = field(default_factory=dict)  # step index -> the step to run in its place (allocate)
    sections: dict[str, dict] = field(default_factory=dict)  # plain-data report sections steps add (allocation)
    after_decode: list[Callable[[nn.Module], Task[None]]] = field(default_factory=list)  # measure the decoded model

    def note(self, message: str) -> None:
        """Record a note for the report, prefixed with the step's place (``steps[0]: ...``)."""
        self.notes.append(f"{self.where} ({self.recipe.steps[self.index].kind}): {message}")

    @property
    def where(self) -> str:
        return f"steps[{self.index}]"

    def layers(self, step: Step, candidates: list[str]) -> list[str]:
        """The ``candidates`` (layer names as they are now) that ``step`` selects. A pattern that matches none
        of them is refused, naming the step and the pattern: it is a mistake, never a silent no-op."""
        missing = unmatched(step, candidates)
        if missing is not None:
            raise RecipeError(no_match_message(self.where, step, missing, candidates))
        return step.select.select(candidates)

    def finetune(self, epochs: int, lr: float, augment: bool = False, batch_size: int = 128,
                 distill=None) -> Task[None]:
        """Train the working copy on the training split (masks and codebooks stay in force): with cross-entropy,
        or with ``distill`` (a :class:`core.methods.distill.DistillSpec`) the distillation loss against its
        teacher."""
        if epochs <= 0:
            return
        if self.data is None:  # checked before the run; a handler that trains must declare the need
            raise CompressionError(f"{self.where}: training needs a labelled data set: pass --data NAME")
        config = TrainConfig(epochs=epochs, lr=lr, augment=augment, batch_size=batch_size, seed=self.recipe.seed)
        if distill is None:
            with placed(self.model, self.device):
                yield from train(self.model, self.data.train, config)
            return
        from core.methods.distill import with_teacher_logits

        teacher = self.teacher(distill.teacher)
        cached = None if augment else with_teacher_logits(teacher, self.data.train, distill.temperature, distill.alpha)
        if cached is None:  # a shifted image has soft targets of its own: the teacher runs on each batch
            yield from train(self.model, self.data.train, config, loss=distill.loss(teacher))
        else:
            yield from train(self.model, cached[0], config, loss=cached[1])

    def teacher(self, spec: str) -> nn.Module:
        """The teacher ``spec`` names: ``original`` is the model as originally loaded; anything else is a model
        spec the loaders accept, loaded without trust (a file that would run code when loaded is refused).
        Loaded once per run and kept here; it is only ever run, in inference mode."""
        if spec not in self.teachers:
            self.teachers[spec] = self._load_teacher(spec)
        return self.teachers[spec]

    def _load_teacher(self, spec: str) -> nn.Module:
        from core.io.base import LoadOptions, ModelLoadError, UntrustedPickleError
        from core.io.loading import load_model
        from core.methods.distill import ORIGINAL

        if spec == ORIGINAL:
            return (self.origin or self.loaded).module
        where = f"{self.where}.teacher"
        try:
            teacher = load_model(spec, LoadOptions(trust=False)).module
        except UntrustedPickleError as exc:
            raise RecipeError(one_line(f"{where}: {spec} cannot be a teacher: loading it would run code stored in "
                                       f"the file, and a teacher is always loaded without trust (save its "
                                       f"state_dict, or use a zoo model) [{exc}]")) from None
        except ModelLoadError as exc:
            raise RecipeError(one_line(f"{where}: cannot load teacher {spec}: {exc}")) from None
        for p in teacher.parameters():
            p.requires_grad_(False)  # a teacher is never trained
        return teacher.eval()

    def replace_with_student(self, student: str) -> None:
        """Replace the working copy by a freshly initialised ``student`` (a zoo architecture, or
        ``package.module:factory``), seeded by the recipe's seed; the file records its architecture."""
        from core.eval import zoo
        from core.io.architectures import build, factory_of
        from core.io.base import ModelLoadError

        where = f"{self.where}.student"
        if self.structure or self.index:  # the recipe refuses this; a handler calling it late is a bug
            raise RecipeError(f"{where}: a student must be the first step")
        classes = len(self.loaded.classes) if self.loaded.classes else 10
        try:
            factory = (lambda: zoo.build(student, classes)) if student in zoo.ARCHITECTURES else factory_of(student)
            torch.manual_seed(self.recipe.seed)
            model = build(factory, student)
        except ModelLoadError as exc:
            raise RecipeError(one_line(f"{where}: {exc}")) from None
        with torch.inference_mode():
            expected = self.model.eval()(self.example)
            try:
                out = model.eval()(self.example)
            except Exception as exc:
                raise RecipeError(one_line(f"{where}: {student} does not run on the model's inputs "
                                           f"({type(exc).__name__}: {str(exc)[:160]})")) from None
        shape = tuple(out.shape) if torch.is_tensor(out) else None
        if not torch.is_tensor(expected) or shape != tuple(expected.shape):
            raise RecipeError(f"{where}: {student} returns {shape or 'no tensor'} for inputs the model maps to "
                              f"{tuple(expected.shape) if torch.is_tensor(expected) else 'something else'}")
        try:
            with torch.device("meta"):
                self.base_module = factory()
        except Exception:  # a factory that cannot build on the meta device: a real copy (a student is small)
            torch.manual_seed(self.recipe.seed)
            self.base_module = build(factory, student)
        self.model, self.arch = model, student


def no_match_message(where: str, step: Step, missing: tuple[str, str], candidates: list[str]) -> str:
    key, pattern = missing
    shown = ", ".join(candidates[:8]) + (" ..." if len(candidates) > 8 else "")
    return f"{where}.{key}: pattern {pattern!r} matches no layer {step.kind} works on (layers: {shown or 'none'})"
