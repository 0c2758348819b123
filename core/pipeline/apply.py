"""Applying a recipe: the one generator the command line and the studio run to compress a model.

:func:`apply_recipe` checks the recipe against the model and data (:mod:`core.pipeline.checks`), copies the
model once, and runs each step's handler, looked up by its kind in the registry, on that working copy. It
then writes the compressed file, decodes the file back into the working copy
(:mod:`core.pipeline.encoding`) and measures *that* model: what the report says is what the file holds.
The loaded model is never changed (bit for bit), also when the run fails or is cancelled.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field

from torch import nn

from core.analysis.inspection import model_inputs
from core.eval.data import Dataset
from core.eval.evaluate import Accuracy, Fidelity, accuracy, fidelity, saved_size_bytes
from core.format.container import FileAccount
from core.io.base import LoadedModel
from core.modelcopy import clone_module
from core.pipeline.checks import check
from core.pipeline.context import CompressionError, RunContext
from core.pipeline.encoding import decode_into, encode_run
from core.progress import Partial, Progress, Task
from core.recipe import Recipe, Step, kind_of

__all__ = ["CompressionError", "CompressionResult", "Measured", "apply_recipe", "check", "measure", "run_step"]


@dataclass
class Measured:
    """Accuracy on the test split (labelled data) or fidelity to the original (probe inputs)."""

    test: Accuracy | None = None
    fidelity: Fidelity | None = None


@dataclass
class CompressionResult:
    recipe: Recipe
    file_bytes: bytes
    account: FileAccount
    model: nn.Module  # decoded from file_bytes
    model_info: dict
    original_bytes: int
    before: Measured
    after: Measured
    stages: dict[str, int] = field(default_factory=dict)
    int8_model: nn.Module | None = None
    int8: Measured | None = None
    codebooks: dict[str, list[float]] = field(default_factory=dict)  # layer -> levels (shared per tensor)

    @property
    def compressed_bytes(self) -> int:
        return len(self.file_bytes)

    @property
    def ratio(self) -> float:
        return self.original_bytes / self.compressed_bytes


def measure(model: nn.Module, loaded: LoadedModel, data: Dataset | None, reference: nn.Module | None) -> Task[Measured]:
    if data is not None:
        flat = loaded.input_shape is not None and len(loaded.input_shape) == 2
        prepare = (lambda x: x.reshape(x.shape[0], -1)) if flat else None
        return Measured(test=(yield from accuracy(model, data.test, prepare=prepare)))
    probes = list(model_inputs(loaded, data, 1000))
    return Measured(fidelity=(yield from fidelity(model, reference or loaded.module, probes)))


def run_step(step: Step, ctx: RunContext) -> Task[None]:
    """Run one step's handler on ``ctx`` (a generator handler is drained, yielding its progress)."""
    outcome = kind_of(step).run(step, ctx)
    if inspect.isgenerator(outcome):
        yield from outcome


def apply_recipe(recipe: Recipe, loaded: LoadedModel, data: Dataset | None = None,
                 measure_before: bool = True) -> Task[CompressionResult]:
    """Run ``recipe`` on a copy of ``loaded``; yields progress, returns the :class:`CompressionResult`."""
    check(recipe, loaded, data)
    original = loaded.module
    example = next(model_inputs(loaded, data, 2, batch_size=2))
    before = (yield from measure(original, loaded, data, None)) if measure_before else Measured()
    ctx = RunContext(recipe, loaded, clone_module(original), data, example)
    total = len(recipe.steps)
    for i, step in enumerate(recipe.steps):
        yield Progress("compress", i, total, f"step {i + 1}/{total}: {step.kind}")
        ctx.index = i
        yield from run_step(step, ctx)
        yield Partial("step", i)
    yield Progress("compress", total, total, "encoding")
    encoded = encode_run(ctx)
    decoded = decode_into(ctx.model, encoded.data)
    yield Progress("compress", total, total, "measuring the decoded model")
    after = yield from measure(decoded, loaded, data, original)
    result = CompressionResult(recipe, encoded.data, encoded.account, decoded, encoded.model_info,
                               saved_size_bytes(original), before, after, encoded.stages, codebooks=encoded.codebooks)
    for conversion in ctx.conversions:
        if conversion.name == "int8":
            result.int8_model = yield from conversion.convert(decoded)
            result.int8 = yield from measure(result.int8_model, loaded, data, original)
    return result
