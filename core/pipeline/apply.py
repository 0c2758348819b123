"""Applying a recipe: the one generator the command line and the studio run to compress a model.

:func:`apply_recipe` works on a deep copy, so the loaded model is never changed (bit for bit). It runs
the recipe's steps in order, writes the compressed file's bytes, decodes them back into a fresh model,
and measures *that* model: what the report says is what the file holds.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from core.errors import PrunescopeError
from core.format import container

from core.methods import int8
from core.eval.data import Dataset
from core.eval.evaluate import Accuracy, Fidelity, accuracy, fidelity, saved_size_bytes
from core.analysis.inspection import model_inputs
from core.io.base import LoadedModel
from core.modelcopy import clone_module
from core.progress import Partial, Progress, Task
from core.methods.masks import apply_masks, bake, current_mask, magnitude_masks, prunable_layers, weight_of
from core.methods.codebooks import fake_quantize_layer, quantize_layer, shared_of
from core.recipe import (Encode, FineTune, IterativePrune, PruneMagnitude, PruneStructured, Quantize,
                         QuantizeActivations, Recipe, RecipeError, RemoveUnits, Step, check_against)
from core.methods.structured import prune_structured, remove_units, replay
from core.eval.training import TrainConfig, train


class CompressionError(PrunescopeError):
    """The recipe cannot run on this model or data; nothing was changed."""


@dataclass
class Measured:
    """Accuracy on the test split (labelled data) or fidelity to the original (probe inputs)."""

    test: Accuracy | None = None
    fidelity: Fidelity | None = None


@dataclass
class CompressionResult:
    recipe: Recipe
    file_bytes: bytes
    account: container.FileAccount
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


def _needs_training_data(recipe: Recipe) -> bool:
    return any(isinstance(s, (FineTune, IterativePrune)) or (isinstance(s, Quantize) and s.finetune_epochs)
               or (isinstance(s, QuantizeActivations) and s.mode == "static")
               or (isinstance(s, PruneStructured) and s.importance == "activation") for s in recipe.steps)


def check(recipe: Recipe, loaded: LoadedModel, data: Dataset | None) -> None:
    """Refuse, before any work, a recipe that cannot run on this model and data."""
    names = [n for n, m in loaded.module.named_modules() if next(m.parameters(recurse=False), None) is not None]
    check_against(recipe, names)
    if _needs_training_data(recipe) and data is None:
        raise CompressionError("this recipe fine-tunes, calibrates or counts activations, which needs a labelled "
                               "data set: pass --data NAME")
    if data is None and not loaded.probe_inputs:
        raise CompressionError("no data set and no input shape: pass --data NAME or --input-shape N,C,H,W")
    seen_quantize = False
    for i, step in enumerate(recipe.steps):
        if isinstance(step, Quantize):
            seen_quantize = True
        if isinstance(step, (PruneStructured, RemoveUnits)) and seen_quantize:
            raise RecipeError(f"steps[{i}]: structured pruning must come before quantize")
    if isinstance(loaded.module, (torch.jit.ScriptModule, torch.fx.GraphModule)):
        raise CompressionError(f"{loaded.name} is a compiled graph ({loaded.format}); compression changes layers, "
                               "so it needs the eager model: a state_dict with --arch, or a zoo model")


def _selected(step: Step, names: list[str]) -> list[str]:
    return step.select.select(names)


class _Run:
    """The mutable state of one recipe run on the copy: the model and its structure history."""

    def __init__(self, recipe: Recipe, model: nn.Module, data: Dataset | None, example) -> None:
        self.recipe, self.model, self.data, self.example = recipe, model, data, example
        self.history: list = []
        self.activation_stats = None

    def finetune(self, epochs: int, lr: float, augment: bool = False, batch_size: int = 128) -> Task[None]:
        if epochs <= 0:
            return
        config = TrainConfig(epochs=epochs, lr=lr, augment=augment, batch_size=batch_size, seed=self.recipe.seed)
        yield from train(self.model, self.data.train, config)

    def prune_magnitude(self, step: PruneMagnitude | IterativePrune, fraction_of_target: float = 1.0) -> None:
        layers = prunable_layers(self.model)
        names = _selected(step, list(layers))
        weights = {n: weight_of(layers[n]) for n in names}
        if step.scope == "global":
            target = 1 - (1 - step.sparsity) ** fraction_of_target
            masks = magnitude_masks(weights, target, "global")
        else:
            targets = {n: 1 - (1 - step.select.value_for(n, step.sparsity)) ** fraction_of_target for n in names}
            masks = magnitude_masks(weights, targets, "layer")
        apply_masks(self.model, masks)

    def structural(self, step: PruneStructured | RemoveUnits) -> Task[None]:
        masks = {n: current_mask(m).clone() for n, m in self.model.named_modules() if current_mask(m) is not None}
        bake(self.model)  # Torch-Pruning edits plain parameters; masks are re-derived from the zeros below
        if isinstance(step, RemoveUnits):
            self.history += remove_units(self.model, self.example, step.layer, step.units)
        else:
            stats = None
            if step.importance == "activation":
                from core.analysis.activations import activation_stats

                stats = yield from activation_stats(self.model, (x for x, _ in self.data.val.batches(500)))
            units = [n for n, m in self.model.named_modules() if isinstance(m, (nn.Linear, nn.Conv2d, nn.Conv1d))]
            amounts = {n: step.select.value_for(n, step.amount) for n in _selected(step, units)}
            self.history += prune_structured(self.model, self.example, amounts, step.importance, step.scope,
                                             stats, step.seed)
        if masks:
            layers = prunable_layers(self.model)
            apply_masks(self.model, {n: layers[n].weight != 0 for n in masks if n in layers})

    def quantize(self, step: Quantize) -> Task[None]:
        layers = prunable_layers(self.model)
        names = _selected(step, list(layers))
        per_channel = step.granularity == "channel"
        if step.method == "uniform" and step.finetune_epochs:
            for n in names:
                fake_quantize_layer(layers[n], step.select.value_for(n, step.bits), per_channel, step.symmetric)
            yield from self.finetune(step.finetune_epochs, step.lr, step.augment)
        for n in names:
            quantize_layer(layers[n], step.method, step.select.value_for(n, step.bits), per_channel, step.symmetric)
        if step.method != "uniform":
            yield from self.finetune(step.finetune_epochs, step.lr, step.augment)


def weight_codes(model: nn.Module) -> dict[str, container.WeightCode]:
    """What the encoder stores for each pruned or quantized layer, keyed by state_dict name."""
    codes = {}
    for name, module in prunable_layers(model).items():
        shared, mask = shared_of(module), current_mask(module)
        if shared is None and mask is None:
            continue
        key = f"{name}.weight" if name else "weight"
        dense = shared is not None and bool(shared.mask.all())
        codes[key] = container.WeightCode(
            mask=None if dense else (shared.mask if shared is not None else mask),
            codes=None if shared is None else shared.codes, codebook=None if shared is None else shared.codebook.detach(),
            values=module.weight.detach())
    return codes


def measure(model: nn.Module, loaded: LoadedModel, data: Dataset | None, reference: nn.Module | None) -> Task[Measured]:
    if data is not None:
        flat = loaded.input_shape is not None and len(loaded.input_shape) == 2
        prepare = (lambda x: x.reshape(x.shape[0], -1)) if flat else None
        return Measured(test=(yield from accuracy(model, data.test, prepare=prepare)))
    probes = list(model_inputs(loaded, data, 1000))
    return Measured(fidelity=(yield from fidelity(model, reference or loaded.module, probes)))


def apply_recipe(recipe: Recipe, loaded: LoadedModel, data: Dataset | None = None,
                 measure_before: bool = True) -> Task[CompressionResult]:
    """Run ``recipe`` on a copy of ``loaded``; yields progress, returns the :class:`CompressionResult`."""
    check(recipe, loaded, data)
    original = loaded.module
    example = next(model_inputs(loaded, data, 2, batch_size=2))
    before = (yield from measure(original, loaded, data, None)) if measure_before else Measured()
    model = clone_module(original)
    run = _Run(recipe, model, data, example)
    total = len(recipe.steps)
    encode_step = Encode()
    for i, step in enumerate(recipe.steps):
        yield Progress("compress", i, total, f"step {i + 1}/{total}: {step.kind}")
        if isinstance(step, PruneMagnitude):
            run.prune_magnitude(step)
        elif isinstance(step, IterativePrune):
            for k in range(1, step.steps + 1):
                run.prune_magnitude(step, k / step.steps)
                yield from run.finetune(step.epochs_per_step, step.lr, step.augment)
        elif isinstance(step, (PruneStructured, RemoveUnits)):
            yield from run.structural(step)
        elif isinstance(step, FineTune):
            yield from run.finetune(step.epochs, step.lr, step.augment, step.batch_size)
        elif isinstance(step, Quantize):
            yield from run.quantize(step)
        elif isinstance(step, Encode):
            encode_step = step
        elif isinstance(step, QuantizeActivations):
            pass  # applied to the decoded model below: int8 inference is a conversion, not a stored format
        yield Partial("step", i)
    yield Progress("compress", total, total, "encoding")
    codes = weight_codes(model)
    plain = clone_module(model)
    bake(plain)
    state = plain.state_dict()
    model_info = describe(loaded, run.history)
    options = dict(use_huffman=encode_step.huffman, index_bits=encode_step.index_bits,
                   small_float=encode_step.small_tensors)
    data_bytes, account = container.encode(state, codes, model_info, **options)
    stages = stage_sizes(state, codes, model_info, options, data_bytes)
    decoded = rebuild_like(original, run.history, model_info, container.decode(data_bytes)[1])
    yield Progress("compress", total, total, "measuring the decoded model")
    result = CompressionResult(recipe, data_bytes, account, decoded, model_info, saved_size_bytes(original), before,
                               (yield from measure(decoded, loaded, data, original)), stages)
    result.codebooks = {k.removesuffix(".weight"): [float(v) for v in c.codebook.reshape(-1)] for k, c in codes.items()
                        if c.codebook is not None and c.codebook.ndim == 1}
    activation_step = next((s for s in recipe.steps if isinstance(s, QuantizeActivations)), None)
    if activation_step is not None:
        result.int8_model = yield from int8.convert(decoded, activation_step.mode, example,
                                                     data, activation_step.calibration_batches)
        result.int8 = yield from measure(result.int8_model, loaded, data, original)
    return result


def describe(loaded: LoadedModel, history: list) -> dict:
    """How to rebuild the architecture: its zoo or factory name, the structural history, its inputs."""
    from core.eval import zoo

    arch = loaded.meta.get("arch")
    if loaded.format == "zoo":
        arch = zoo.zoo_entry(loaded.name).arch
    structure = list(loaded.meta.get("structure", [])) + list(history)  # a variant carries its own history
    return {"arch": arch, "num_classes": len(loaded.classes) if loaded.classes else None, "source": loaded.source,
            "name": loaded.name, "structure": structure, "dataset": loaded.dataset,
            "input_shape": list(loaded.input_shape) if loaded.input_shape else None,
            "classes": list(loaded.classes) if loaded.classes else None}


def rebuild_like(original: nn.Module, history: list, model_info: dict, state: dict) -> nn.Module:
    """A copy of ``original`` with this run's structural ``history`` replayed and the decoded weights."""
    model = clone_module(original)
    if history:
        example = torch.zeros(model_info["input_shape"]) if model_info.get("input_shape") else None
        replay(model, example, history)
    model.load_state_dict(state)
    return model.eval()


def stage_sizes(state: dict, codes: dict, model_info: dict, options: dict, final: bytes) -> dict[str, int]:
    """Bytes of real encodings at each Deep Compression stage: pruned (float32 values, fixed-width indices),
    quantized (fixed-width codes), and the final file (with Huffman coding, if the recipe asks)."""
    stages = {}
    if any(c.mask is not None for c in codes.values()):
        pruned = {k: container.WeightCode(c.mask, None, None, c.values) for k, c in codes.items() if c.mask is not None}
        stages["pruned"] = len(container.encode(state, pruned, model_info, use_huffman=False,
                                                index_bits=options["index_bits"], small_float="float32")[0])
    if any(c.codes is not None for c in codes.values()):
        stages["quantized"] = (len(container.encode(state, codes, model_info, **{**options, "use_huffman": False})[0])
                               if options["use_huffman"] else len(final))  # without Huffman, that is the file
    stages["huffman" if options["use_huffman"] else "final"] = len(final)
    return stages
