"""One sweep job, as every backend runs it: :func:`run_job` drains the core generator
(:func:`core.pipeline.apply.apply_recipe`) on the model and data a worker holds, and sums the run up as a
:class:`SweepResult`: plain figures, no tensors, the same whichever process or machine made it.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Generator
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

from core.eval.data import Dataset
from core.io.base import LoadedModel
from core.pipeline.scores import ACCURACY, Score, score_of
from core.pipeline.variants import layers_from_account, nonzero_params
from core.progress import Progress, Task
from core.recipe import Recipe
from core.sweep.grid import SweepJob

T = TypeVar("T")


@dataclass(frozen=True)
class SweepResult:
    """What one recipe of the grid gave: the file's size (``compressed_bytes``, exactly the ``.psz``'s) against
    the original's, the decoded model's ``score`` (test accuracy, else fidelity to the original) with its
    ``loss`` and ``correct``/``count`` test examples, its parameters (all, and not exactly zero) and
    multiply-accumulates per input (dense, and of non-zero weights only). ``seconds`` and ``worker`` (host:pid)
    say where and how long it ran, and take no part in comparing results."""

    index: int
    name: str
    settings: tuple[tuple[str, Any], ...]
    recipe: Recipe
    compressed_bytes: int
    original_bytes: int
    score: Score | None
    loss: float | None
    correct: int | None
    count: int | None
    params: int
    nonzero_params: int
    macs: int | None
    effective_macs: int | None
    notes: tuple[str, ...] = ()
    seconds: float = field(default=0.0, compare=False)
    worker: str = field(default="", compare=False)

    @property
    def ratio(self) -> float:
        """How many times smaller the file is than the original."""
        return self.original_bytes / self.compressed_bytes

    @property
    def accuracy(self) -> float | None:
        """Test accuracy (0-1), when the score is one."""
        return self.score.value if self.score is not None and self.score.name == ACCURACY else None


def limited(data: Dataset | None, limit: int | None) -> Dataset | None:
    """``data`` measured on the first ``limit`` test examples only (the training splits untouched); a copy
    of them, not a view, so that sending it to a worker does not send the whole split."""
    if data is None or limit is None:
        return data
    test = data.test.subset(limit)
    return replace(data, test=replace(test, images=test.images.clone(), labels=test.labels.clone()))


def summarise(job: SweepJob, result, seconds: float = 0.0) -> SweepResult:
    """A :class:`~core.pipeline.apply.CompressionResult` as the plain figures of a :class:`SweepResult`."""
    after = result.after
    test = after.test
    layers = layers_from_account(result.account, result.model)
    cost = result.cost_after
    return SweepResult(
        job.index, job.name, job.settings, job.recipe, result.compressed_bytes, result.original_bytes,
        score_of(test.accuracy if test is not None else None, after.fidelity),
        test.loss if test is not None else None, test.correct if test is not None else None,
        test.count if test is not None else None, sum(row.params for row in layers), nonzero_params(layers),
        cost.total if cost is not None else None, cost.effective_total if cost is not None else None,
        tuple(result.notes), seconds, f"{socket.gethostname()}:{os.getpid()}")


def run_job(job: SweepJob, loaded: LoadedModel, data: Dataset | None) -> Task[SweepResult]:
    """Compress with ``job.recipe`` and measure the decoded model; yields the run's progress."""
    from core.pipeline.apply import apply_recipe

    start = time.perf_counter()
    result = yield from apply_recipe(job.recipe, loaded, data, measure_before=False)
    return summarise(job, result, time.perf_counter() - start)


def fewer_reports(task: Generator[Any, None, T], step: float = 0.1) -> Generator[Progress, None, T]:
    """``task``'s progress, thinned for sending between processes: a report when the stage changes, when
    the fraction has grown by ``step`` or started again; partial results are dropped."""
    last_stage, last_fraction = None, -1.0
    try:
        while True:
            item = next(task)
            if not isinstance(item, Progress):
                continue
            fraction = item.fraction
            if item.stage != last_stage or fraction >= last_fraction + step or fraction < last_fraction:
                last_stage, last_fraction = item.stage, fraction
                yield item
    except StopIteration as stop:
        return stop.value
    finally:
        task.close()
