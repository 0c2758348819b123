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

import torch
from torch import nn

from core.analysis.cost import Cost, count_macs
from core.analysis.inspection import model_inputs
from core.devices import placed
from core.eval.data import Dataset
from core.eval.evaluate import Accuracy, accuracy, saved_size_bytes
from core.eval.fidelity import Fidelity, fidelity
from core.eval.lm import StridePerplexity
from core.eval.pairs import PairsScore
from core.eval.published import published
from core.format.container import FileAccount
from core.io.base import LoadedModel
from core.io.program import CompiledProgram
from core.methods.masks import apply_masks, prunable_layers, weight_of
from core.modelcopy import clone_module
from core.pipeline.checks import check
from core.pipeline.context import CompressionError, RunContext
from core.pipeline.encoding import decode_into, encode_run
from core.progress import Partial, Progress, Task
from core.recipe import Recipe, Step, kind_of

__all__ = ["CompressionError", "CompressionResult", "Measured", "apply_recipe", "check", "compressed_model",
           "keep_pruned_zeros", "measure", "run_step"]


@dataclass
class Measured:
    """Accuracy on the test split (labelled data) or fidelity to the original (probe inputs)."""

    test: Accuracy | None = None
    fidelity: Fidelity | None = None
    pairs: PairsScore | None = None  # the STS metric on the person's sentence pairs (--pairs)
    perplexity: StridePerplexity | None = None  # a language model's, on the --inputs text (sliding windows)


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
    notes: list[str] = field(default_factory=list)  # what the steps said (a layer skipped, and why)
    cost_before: Cost | None = None  # MACs of the original and of the decoded model, one sample
    cost_after: Cost | None = None
    sections: dict[str, dict] = field(default_factory=dict)  # what steps add to the report (allocation)

    @property
    def compressed_bytes(self) -> int:
        return len(self.file_bytes)

    @property
    def ratio(self) -> float:
        return self.original_bytes / self.compressed_bytes


def measure(model: nn.Module, loaded: LoadedModel, data: Dataset | None, reference: nn.Module | None,
            device: torch.device | None = None) -> Task[Measured]:
    """Accuracy on the test split, else fidelity to ``reference`` (the loaded model), run on ``device``."""
    reference = reference or (loaded.module if data is None else None)
    with placed(model, device), placed(reference if reference is not model else None, device):
        return (yield from _measure(model, loaded, data, reference))


def _measure(model: nn.Module, loaded: LoadedModel, data: Dataset | None, reference: nn.Module | None) -> Task[Measured]:
    extra = yield from published(model, loaded)
    if data is not None:
        flat = loaded.input_shape is not None and len(loaded.input_shape) == 2
        prepare = (lambda x: x.reshape(x.shape[0], -1)) if flat else None
        return Measured(test=(yield from accuracy(model, data.test, prepare=prepare)), pairs=extra.pairs,
                        perplexity=extra.perplexity)
    probes = list(model_inputs(loaded, data, 1000))
    return Measured(fidelity=(yield from fidelity(model, reference or loaded.module, probes, loaded.meta.get("task"),
                                                  loaded.meta.get("pooling"))), pairs=extra.pairs,
                    perplexity=extra.perplexity)


def run_step(step: Step, ctx: RunContext) -> Task[None]:
    """Run one step's handler on ``ctx`` (a generator handler is drained, yielding its progress)."""
    outcome = kind_of(step).run(step, ctx)
    if inspect.isgenerator(outcome):
        yield from outcome


def apply_recipe(recipe: Recipe, loaded: LoadedModel, data: Dataset | None = None,
                 measure_before: bool = True, device: torch.device | None = None) -> Task[CompressionResult]:
    """Run ``recipe`` on a copy of ``loaded``; yields progress, returns the :class:`CompressionResult`.
    Evaluation and fine-tuning run on ``device`` (None: the CPU); the steps and the encoder work on the CPU.

    A chain (a recipe with a ``base``) runs link by link, each on the model the previous link's file
    decodes to, exactly as the studio made it variant by variant; the result reports against ``loaded``."""
    links = recipe.chain()
    start, notes, sections = loaded, [], {}
    for number, link in enumerate(links):
        last = number == len(links) - 1
        result = yield from _run(link, start, data, measure_before and number == 0, loaded, device)
        if number == 0:
            before = result.before
        notes.extend(result.notes)
        if not last:
            start = compressed_model(result, start, link.name or f"link {number + 1}")
        sections.update(result.sections)
    result.recipe, result.before, result.notes, result.sections = recipe, before, notes, sections
    return result


def compressed_model(result: CompressionResult, base: LoadedModel, label: str) -> LoadedModel:
    """The decoded model of ``result`` as a loaded model to compress further (a variant made from ``base``):
    it carries the structure ops made so far, so its own file rebuilds it from the same source."""
    return LoadedModel(result.model, f"{base.name.split(' · ')[0]} · {label}", base.source, "variant",
                       dataset=base.dataset, input_shape=base.input_shape, classes=base.classes,
                       probe_inputs=base.probe_inputs, file_bytes=result.compressed_bytes,
                       meta={"arch": result.model_info.get("arch"), "structure": result.model_info["structure"],
                             "description": f"compressed from {base.name}"})


def original_bytes(origin: LoadedModel) -> int:
    """What the compressed file is compared with: the original's state_dict saved with ``torch.save``; for a
    compiled program, whose compressed file holds its code too, the program's own file."""
    if isinstance(origin.module, CompiledProgram) and origin.file_bytes:
        return origin.file_bytes
    return saved_size_bytes(origin.module)


def _run(recipe: Recipe, loaded: LoadedModel, data: Dataset | None, measure_before: bool,
         origin: LoadedModel, device: torch.device | None = None) -> Task[CompressionResult]:
    """One link: ``recipe``'s steps on a copy of ``loaded``, measured against ``origin`` (the original)."""
    check(recipe, loaded, data)
    start, original = loaded.module, origin.module
    example = next(model_inputs(loaded, data, 2, batch_size=2))
    before = (yield from measure(original, origin, data, None, device)) if measure_before else Measured()
    ctx = RunContext(recipe, loaded, clone_module(start), data, example, origin=origin, device=device)
    keep_pruned_zeros(ctx.model, loaded)
    for i, step in enumerate(recipe.steps):  # every teacher, before any work: a bad one is refused now
        ctx.index = i
        for teacher in step.teachers():
            ctx.teacher(teacher)
    total = len(recipe.steps)
    for i, step in enumerate(recipe.steps):
        step = ctx.chosen.get(i, step)  # a step an earlier one chose the settings of (allocate)
        yield Progress("compress", i, total, f"step {i + 1}/{total}: {step.kind}")
        ctx.index = i
        yield from run_step(step, ctx)
        yield Partial("step", i)
    yield Progress("compress", total, total, "encoding")
    encoded = encode_run(ctx)
    decoded = decode_into(ctx.model, encoded.data)
    yield Progress("compress", total, total, "measuring the decoded model")
    after = yield from measure(decoded, origin, data, original, device)
    for hook in ctx.after_decode:
        yield from hook(decoded)
    with placed(original), placed(decoded):  # on the CPU: a float16 model takes the example cast to float16
        costs = count_macs(original, example), count_macs(decoded, example)
    result = CompressionResult(recipe, encoded.data, encoded.account, decoded, encoded.model_info,
                               original_bytes(origin), before, after, encoded.stages, codebooks=encoded.codebooks,
                               notes=list(ctx.notes), cost_before=costs[0], cost_after=costs[1],
                               sections=ctx.sections)
    for conversion in ctx.conversions:
        if conversion.name == "int8":
            result.int8_model = yield from conversion.convert(decoded)
            result.int8 = yield from measure(result.int8_model, origin, data, original)
    return result


PRUNED_SHARE = 0.01
"""A layer of a model that was not made by compression counts as pruned when at least this share of its
weights is exactly zero (a trained dense layer has next to none)."""


def keep_pruned_zeros(model: nn.Module, loaded: LoadedModel) -> None:
    """Make the zeros a pruned model already has pruned positions again (masks), so that no later step
    revives them: pruning less than a layer already is keeps it as it is, training keeps them at zero, and
    quantization clusters only the kept weights. For a model made by compression (a variant, a decoded
    ``.psz``) every zero of a prunable layer counts; for another, a layer with ``PRUNED_SHARE`` zeros."""
    made_by_compression = loaded.format in ("variant", "prunescope")
    masks = {}
    for name, module in prunable_layers(model).items():
        weight = weight_of(module)
        zeros = int((weight == 0).sum())
        if zeros and (made_by_compression or zeros >= PRUNED_SHARE * weight.numel()):
            masks[name] = weight != 0
    if masks:
        apply_masks(model, masks)
