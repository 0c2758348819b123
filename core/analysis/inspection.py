"""Inspecting a loaded model on real data: one generator that the command line and the studio both run.

:func:`inspect_model` runs, in order: the layer inventory, weight statistics, activation statistics (on the
data set's validation split, or the loader's probe inputs), and evaluation (test accuracy for a classifier
of the data set; fidelity to a reference model when one is given; latency of one batch; bytes on disk),
and, when the model can be run, its multiply-accumulates per sample (:mod:`core.analysis.cost`).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from core.devices import placed
from core.errors import PrunescopeError
from core.analysis.cost import Cost, count_macs
from core.analysis.activations import ActivationError, ActivationStats, activation_stats
from core.analysis.heads import head_stats
from core.eval.data import Dataset
from core.eval.evaluate import Accuracy, Latency, accuracy, call_model, latency, logits_of, saved_size_bytes
from core.eval.fidelity import Fidelity, fidelity
from core.eval.lm import StridePerplexity
from core.eval.pairs import PairsScore
from core.eval.published import published
from core.analysis.inventory import Inventory, inventory
from core.io.base import LoadedModel
from core.progress import Partial, Progress, Task
from core.analysis.stats import WeightStats, weight_stats


LATENCY_BATCH = 256
"""Inputs per timed call: every latency figure (inspect, the studio's cards, Compare, reports) is per batch
of this many."""

NO_INPUTS = ("no data set and no input shape, so the model was not run: activations, accuracy and latency "
             "need --data NAME or --input-shape 1,1,28,28 (in the studio: the Data set menu)")


WEIGHTS_ONLY = ("activations, accuracy and latency not run: weights only, no architecture (a weights file "
                "names no model to run; with --arch package.module:factory it loads as a model)")


class InputMismatchError(PrunescopeError):
    """The model cannot be called on the inputs at hand; the message names the shapes involved."""


@dataclass(frozen=True)
class InspectOptions:
    """What to measure: ``activation_limit`` examples for firing counts (from the validation split),
    ``eval_limit`` test examples for accuracy (None: all), and ``latency_batch`` inputs per timed call
    (how many calls: :func:`core.eval.evaluate.latency` decides, from their spread)."""

    activations: bool = True
    evaluate: bool = True
    activation_limit: int = 5000
    eval_limit: int | None = None
    latency_batch: int = LATENCY_BATCH
    device: torch.device | None = None  # where the model runs (:func:`core.devices.resolve_device`); None: CPU


@dataclass
class Inspection:
    """Everything measured about one model."""

    loaded: LoadedModel
    dataset: str | None
    inventory: Inventory
    weights: dict[str, WeightStats]
    activations: dict[str, ActivationStats] = field(default_factory=dict)
    heads: dict[str, ActivationStats] = field(default_factory=dict)  # attention heads as units, per attention
    test: Accuracy | None = None
    fidelity: Fidelity | None = None
    pairs: PairsScore | None = None
    perplexity: StridePerplexity | None = None
    latency: Latency | None = None
    saved_bytes: int | None = None
    notes: list[str] = field(default_factory=list)
    cost: Cost | None = None  # multiply-accumulates for one sample (None: the model was not run)
    exits: dict | None = None  # an early-exit model's exits on the test split (core.eval.exits.exit_section)


def model_inputs(loaded: LoadedModel, data: Dataset | None, limit: int, batch_size: int = 500) -> Iterator:
    """Inputs to run the model on: the validation split's images (the test split's, for a data set too
    small to have one), or else the loader's probe inputs."""
    if data is not None:
        split = data.val if len(data.val) else data.test
        for x, _ in split.batches(batch_size, limit=limit):
            yield x.reshape(x.shape[0], *loaded.input_shape[1:]) if _flat_input(loaded, data) else x
    else:
        yield from loaded.probe_inputs


def _flat_input(loaded: LoadedModel, data: Dataset) -> bool:
    shape = loaded.input_shape
    return shape is not None and len(shape) == 2 and shape[1] == int(torch.tensor(data.input_shape).prod())


def _probe_source(loaded: LoadedModel) -> str:
    inputs = loaded.meta.get("inputs")
    return f"the inputs of {Path(inputs).name}" if inputs else "probe inputs"


def check_inputs(loaded: LoadedModel, data: Dataset | None, device: torch.device | None = None) -> None:
    """Call the model once on one example so that a shape mismatch gets a clear message before real work."""
    example = next(model_inputs(loaded, data, 1), None)
    if example is None:
        return
    try:
        with placed(loaded.module, device), torch.inference_mode():
            out = logits_of(call_model(loaded.module, example))
    except Exception as exc:
        where = f"data set {data.name} (examples shaped {tuple(data.input_shape)})" if data is not None \
            else f"{_probe_source(loaded)} shaped {tuple(loaded.input_shape or ())}"
        raise InputMismatchError(f"{loaded.name} cannot run on {where}: {type(exc).__name__}: "
                                 f"{str(exc).splitlines()[0] if str(exc) else ''}") from exc
    if data is not None and (out.ndim != 2 or out.shape[1] != data.num_classes):
        raise InputMismatchError(f"{loaded.name} outputs shape {tuple(out.shape)}, not scores for the "
                                 f"{data.num_classes} classes of {data.name}")


def inspect_model(loaded: LoadedModel, data: Dataset | None = None, options: InspectOptions | None = None,
                  reference: LoadedModel | None = None, known_latency: Latency | None = None) -> Task[Inspection]:
    """Inventory, weight and activation statistics, and evaluation of ``loaded`` (see module docstring).

    With ``known_latency`` (the studio's stored measurement of this variant), latency is not measured
    again: that figure is reported, so that every view of one variant shows one measurement."""
    if loaded.streamed is not None:
        return (yield from inspect_streamed(loaded))
    options = options or InspectOptions()
    model = loaded.module
    runnable = data is not None or bool(loaded.probe_inputs)
    if runnable and (options.activations or options.evaluate):
        check_inputs(loaded, data, options.device)
    yield Progress("inventory", 0, 1, "layers")
    result = Inspection(loaded, data.name if data else None, inventory(model, loaded.module_types), {},
                        notes=list(loaded.meta.get("notes", [])))
    if not runnable:
        result.notes.append(NO_INPUTS)
        options = replace(options, activations=False, evaluate=False)
    yield Partial("inventory", result.inventory)
    if runnable:
        with placed(model, options.device):
            result.cost = count_macs(model, next(model_inputs(loaded, data, 1, batch_size=1)))
        yield Partial("cost", result.cost)
    result.weights = yield from weight_stats(model)  # on the CPU, where the model lives
    yield Partial("weights", result.weights)
    with placed(model, options.device), placed(reference.module if reference else None, options.device):
        yield from _run_model(result, loaded, data, options, reference, known_latency)
    if options.evaluate:
        result.saved_bytes = saved_size_bytes(model)
        yield Partial("saved_bytes", result.saved_bytes)
    return result


def _run_model(result: Inspection, loaded: LoadedModel, data: Dataset | None, options: InspectOptions,
               reference: LoadedModel | None, known_latency: Latency | None) -> Task[None]:
    """The measurements that run the model (activations, accuracy, fidelity, STS pairs, latency) into
    ``result``, on the device the model was placed on."""
    model = loaded.module
    if options.activations:
        total = None if data is None else -(-min(options.activation_limit, len(data.val)) // 500)
        try:
            result.activations = yield from activation_stats(
                model, model_inputs(loaded, data, options.activation_limit), total)
            yield Partial("activations", result.activations)
            result.heads = yield from head_stats(model, model_inputs(loaded, data, options.activation_limit), total)
        except ActivationError as exc:
            result.notes.append(f"activations not measured: {exc}")
            yield Partial("notes", list(result.notes))
    if options.evaluate:
        if data is not None:
            flat = (lambda x: x.reshape(x.shape[0], -1)) if _flat_input(loaded, data) else None
            result.test = yield from accuracy(model, data.test, limit=options.eval_limit, prepare=flat)
            yield Partial("test", result.test)
            result.exits = _exits(model, data, options.eval_limit)
        if reference is not None:
            probes = list(model_inputs(loaded, data, 1000)) if data is not None else loaded.probe_inputs
            result.fidelity = yield from fidelity(model, reference.module, probes, loaded.meta.get("task"),
                                                  loaded.meta.get("pooling"))
            yield Partial("fidelity", result.fidelity)
        extra = yield from published(model, loaded)
        result.pairs, result.perplexity = extra.pairs, extra.perplexity
        if known_latency is not None:
            result.latency = known_latency
        elif (example := latency_inputs(loaded, data, options.latency_batch)) is not None:
            result.latency = yield from latency(model, example)
        if result.latency is not None:
            yield Partial("latency", result.latency)


def _exits(model, data: Dataset, limit: int | None) -> dict | None:
    """An early-exit model's exit figures on the test split (the examples accuracy was measured on)."""
    from core.eval.exits import ExitModel, exit_section

    if not isinstance(model, ExitModel):
        return None
    test = data.test if limit is None else data.test.subset(min(limit, len(data.test)))
    return exit_section(model, None, test, next(test.batches(1))[0].to(next(model.parameters()).device))


def inspect_streamed(loaded: LoadedModel) -> Task[Inspection]:
    """The inventory and weight statistics of weights with no architecture (``loaded.streamed``), read one
    tensor at a time (:mod:`core.analysis.streaming`); activations, accuracy and latency are not run."""
    from core.analysis.streaming import streamed_stats

    notes = [*loaded.meta.get("notes", []), WEIGHTS_ONLY]
    yield Partial("notes", list(notes))
    inventory_, weights = yield from streamed_stats(loaded.streamed)
    yield Partial("inventory", inventory_)
    yield Partial("weights", weights)
    return Inspection(loaded, None, inventory_, weights, notes=notes)


def latency_inputs(loaded: LoadedModel, data: Dataset | None, size: int = LATENCY_BATCH):
    """The one batch that latency is timed on: the first ``size`` inputs of :func:`model_inputs` (the
    validation split's), or the loader's first probe input; None when there is none."""
    if data is not None:
        return next(model_inputs(loaded, data, size, batch_size=size), None)
    return loaded.probe_inputs[0] if loaded.probe_inputs else None


def open_for_inspection(spec: str, options=None, data_name: str | None = None,
                        fallback_data: str | None = None) -> Task[tuple[LoadedModel, Dataset | None]]:
    """Load a model and its data set as one task: the data set named, else the model's own, else
    ``fallback_data`` if the model runs on it, else none."""
    from core.eval.data import load_dataset
    from core.io.loading import load_model

    from core.eval.data import DataError

    yield Progress("load", 0, 2, f"loading {spec}")
    loaded = load_model(spec, options)
    if loaded.streamed is not None:  # nothing to run: a data set or inputs would go unused
        unused = data_name or (options.inputs if options is not None else None)
        if unused:
            loaded.meta.setdefault("notes", []).append(f"{unused} not used: the weights have no architecture to "
                                                       "run on it")
        yield Progress("load", 2, 2, "loaded")
        return loaded, None
    own_inputs = bool(options is not None and options.inputs)
    name = data_name or (None if own_inputs else loaded.dataset)
    yield Progress("load", 1, 2, f"reading data set {name or fallback_data}" if not own_inputs or data_name
                   else f"reading inputs {options.inputs}")
    if own_inputs and not data_name:  # the person's own examples, not the model's default data set
        check_inputs(loaded, None)
        data = None
    elif data_name:
        data = load_dataset(data_name)
        check_inputs(loaded, data)
    elif name:  # the model's own data set: without it, the model still inspects
        try:
            data = load_dataset(name)
            check_inputs(loaded, data)
        except DataError as exc:
            data = None
            loaded.meta.setdefault("notes", []).append(f"inspected without data: {exc}")
    else:  # the data set in use before, if this model takes its inputs
        data = load_dataset(fallback_data) if fallback_data else None
        try:
            check_inputs(loaded, data)
        except InputMismatchError:
            data = None
    yield Progress("load", 2, 2, "loaded")
    return loaded, data
