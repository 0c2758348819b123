"""The run context: what a step's handler works on and with, during one compression run.

A handler (see :mod:`core.recipe.registry`) gets the step and a :class:`RunContext`. It changes
``ctx.model``, the run's one working copy, in place; it chooses its layers with :meth:`RunContext.layers`,
which refuses a pattern that matches nothing; it trains with :meth:`RunContext.finetune`; a structural
change appends its op to ``ctx.structure`` (replayed when the file is loaded); the encode step sets
``ctx.encoding``; a note for the report (a layer a step skipped, and why) goes to :meth:`RunContext.note`;
a step whose result is a conversion of the decoded model (int8 inference) appends a
:class:`Conversion`. Nothing here is shared with another run.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from core.errors import PrunescopeError
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

    def finetune(self, epochs: int, lr: float, augment: bool = False, batch_size: int = 128) -> Task[None]:
        """Train the working copy on the training split (masks and codebooks stay in force)."""
        if epochs <= 0:
            return
        if self.data is None:  # checked before the run; a handler that trains must declare the need
            raise CompressionError(f"{self.where}: training needs a labelled data set: pass --data NAME")
        config = TrainConfig(epochs=epochs, lr=lr, augment=augment, batch_size=batch_size, seed=self.recipe.seed)
        yield from train(self.model, self.data.train, config)


def no_match_message(where: str, step: Step, missing: tuple[str, str], candidates: list[str]) -> str:
    key, pattern = missing
    shown = ", ".join(candidates[:8]) + (" ..." if len(candidates) > 8 else "")
    return f"{where}.{key}: pattern {pattern!r} matches no layer {step.kind} works on (layers: {shown or 'none'})"
