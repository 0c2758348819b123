"""Measuring a model: accuracy and loss on labelled data, fidelity to a reference model, latency, bytes on disk.

Every measurement here is of the real thing: accuracy over the whole split asked for, latency by the clock,
size as the bytes of a file written to disk and read back with ``os.path.getsize``.
"""

from __future__ import annotations

import contextlib
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import torch
from torch import nn

from core.eval.data import Split
from core.progress import Progress, Task


@dataclass(frozen=True)
class Accuracy:
    """Top-1 accuracy (0-1), mean cross-entropy loss, and the number of examples measured."""

    accuracy: float
    loss: float
    count: int
    correct: int


@dataclass(frozen=True)
class Fidelity:
    """How closely a model's outputs follow a reference model's on the same inputs.

    ``top1_agreement``: fraction of inputs where both pick the same arg-max (for outputs with a class axis);
    ``cosine``: mean cosine similarity of flattened outputs per input; ``relative_error``: ||a - b|| / ||b||
    over all outputs.
    """

    top1_agreement: float
    cosine: float
    relative_error: float
    count: int


@dataclass(frozen=True)
class Latency:
    """Wall-clock milliseconds per forward pass of one batch: median, best, and the batch size."""

    median_ms: float
    best_ms: float
    batch_size: int
    runs: int


def accuracy(model: nn.Module, data: Split, batch_size: int = 1000, limit: int | None = None,
             prepare: Callable[[torch.Tensor], torch.Tensor] | None = None,
             predicted: list | None = None) -> Task[Accuracy]:
    """Top-1 accuracy and mean loss of a classifier over ``data`` (or its first ``limit`` examples).

    ``prepare`` reshapes each image batch into what the model takes (for instance, flat vectors). With a
    ``predicted`` list, each batch's predicted labels are appended to it (an int64 array per batch).
    """
    total = len(data) if limit is None else min(limit, len(data))
    correct, loss_sum, seen = 0, 0.0, 0
    with evaluating(model), torch.inference_mode():
        for x, y in data.batches(batch_size, limit=limit):
            logits = logits_of(model(prepare(x) if prepare else x))
            loss_sum += nn.functional.cross_entropy(logits.float(), y, reduction="sum").item()
            top = logits.argmax(1)
            correct += int((top == y).sum())
            if predicted is not None:
                predicted.append(top.numpy())
            seen += len(y)
            yield Progress("evaluate", seen, total, "accuracy")
    return Accuracy(correct / max(seen, 1), loss_sum / max(seen, 1), seen, correct)


@contextlib.contextmanager
def evaluating(model: nn.Module) -> Iterator[None]:
    """Eval mode for the duration, then the model's own training flag back. Graphs exported with
    ``torch.export`` refuse ``eval()`` (they are fixed in the mode they were exported in) and are left as
    they are."""
    was_training = model.training
    try:
        model.eval()
    except NotImplementedError:
        yield
        return
    try:
        yield
    finally:
        model.train(was_training)


def batch_size_of(inputs) -> int:
    """The batch size of model inputs: a tensor, a tuple, or a keyword dict of tensors."""
    values = inputs.values() if isinstance(inputs, dict) else inputs if isinstance(inputs, (tuple, list)) else [inputs]
    for value in values:
        if isinstance(value, torch.Tensor) and value.ndim:
            return int(value.shape[0])
    return 1


def logits_of(output) -> torch.Tensor:
    """The main output tensor of a model call: a tensor, the first of a tuple, or ``.logits``/``last_hidden_state``."""
    if isinstance(output, torch.Tensor):
        return output
    for key in ("logits", "last_hidden_state"):
        value = getattr(output, key, None)
        if value is None and isinstance(output, dict):
            value = output.get(key)
        if isinstance(value, torch.Tensor):
            return value
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
        return output[0]
    raise TypeError(f"cannot find an output tensor in a {type(output).__name__}")


def call_model(model: nn.Module, inputs):
    """Call ``model`` on a tensor, a tuple of tensors, or a dict of keyword tensors."""
    if isinstance(inputs, dict):
        return model(**inputs)
    if isinstance(inputs, (tuple, list)):
        return model(*inputs)
    return model(inputs)


def fidelity(model: nn.Module, reference: nn.Module, inputs: Iterable) -> Task[Fidelity]:
    """Compare ``model`` to ``reference`` on the same probe inputs (tensors, tuples, or keyword dicts)."""
    inputs = list(inputs)
    agree = cos_sum = 0.0
    diff_sq = ref_sq = 0.0
    count = 0
    with torch.inference_mode():
        for i, batch in enumerate(inputs):
            a = logits_of(call_model(model, batch)).float()
            b = logits_of(call_model(reference, batch)).float()
            n = a.shape[0]
            a2, b2 = a.reshape(n, -1), b.reshape(n, -1)
            if a.ndim >= 2:
                agree += float((a.argmax(-1) == b.argmax(-1)).float().reshape(n, -1).mean(1).sum())
            else:
                agree += n
            cos_sum += float(nn.functional.cosine_similarity(a2, b2, dim=1, eps=1e-12).sum())
            diff_sq += float(((a2 - b2) ** 2).sum())
            ref_sq += float((b2 ** 2).sum())
            count += n
            yield Progress("evaluate", i + 1, len(inputs), "fidelity")
    rel = (diff_sq ** 0.5) / (ref_sq ** 0.5) if ref_sq > 0 else float(diff_sq > 0)
    return Fidelity(agree / max(count, 1), cos_sum / max(count, 1), rel, count)


def latency(model: nn.Module, example, runs: int = 20, warmup: int = 3,
            clock: Callable[[], float] = time.perf_counter) -> Task[Latency]:
    """Time ``runs`` forward passes of ``example`` (one batch) after ``warmup`` untimed ones.

    The timed loop does not yield: a progress report between runs would wake the studio's UI thread,
    whose share of the interpreter lock would then be timed as model latency.
    """
    yield Progress("latency", 0, 1, "timing forward passes")
    times = []
    batch = batch_size_of(example)
    with torch.inference_mode():
        for i in range(warmup + runs):
            start = clock()
            call_model(model, example)
            if i >= warmup:
                times.append((clock() - start) * 1000.0)
    yield Progress("latency", 1, 1, "timing forward passes")
    return Latency(statistics.median(times), min(times), batch, runs)


def saved_size_bytes(model: nn.Module) -> int:
    """Bytes on disk of ``model``'s state_dict saved with ``torch.save``, as an export writes it.

    It is written through a Python file object, as :func:`core.io.export.export` writes one (torch then names
    the archive's entries ``archive/...``): saving to a path instead holds the interpreter lock for the
    whole write (50 ms for 100 MB), which the studio's UI thread would wait out.
    """
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "model.pt")
        with open(path, "wb") as f:
            torch.save(model.state_dict(), f)
        return os.path.getsize(path)
