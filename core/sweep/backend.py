"""Where a sweep's jobs run, behind one interface, and the task that drives any of them.

A :class:`Backend` is told, before any work, to :meth:`~Backend.connect` (refusing in one line what cannot
run: Ray not installed, a cluster that is not there); :meth:`~Backend.start` then ships the model and data
once (one pickled payload, :func:`pack`) and submits every job; :meth:`~Backend.events` returns what the
jobs reported since (progress, finished results); :meth:`~Backend.close` stops whatever is still running
and is safe to call at any time, more than once. Each job runs :func:`core.sweep.jobs.run_job`, the same
core generator wherever it runs.

:func:`sweep` is the Task: it yields :class:`~core.progress.Progress` for the whole grid, a
:class:`~core.progress.Partial` (key ``sweep_result``) for each recipe as it finishes, and returns every
result in grid order. Closing it (cancel) closes the backend: no job runs on, and no process is left.
"""

from __future__ import annotations

import pickle
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

from core.errors import one_line
from core.eval.data import Dataset
from core.io.base import LoadedModel
from core.progress import Partial, Progress, Task
from core.sweep.grid import SweepError, SweepJob
from core.sweep.jobs import SweepResult, limited

POLL_S = 0.1
"""How long :func:`sweep` waits for news before it reports again (a cancel is seen within this)."""
RESULT_KEY = "sweep_result"
"""The key of the Partial each finished recipe is yielded as."""


@dataclass(frozen=True)
class JobEvent:
    """What job ``index`` reported: its ``progress``, or its ``result`` (it finished)."""

    index: int
    progress: Progress | None = None
    result: SweepResult | None = None


class Backend(ABC):
    """Runs a sweep's jobs (see the module docstring for the order of calls)."""

    description = "a backend"

    def connect(self) -> None:
        """Before any work: raise :class:`SweepError` (one line) if this backend cannot run here."""

    @abstractmethod
    def start(self, payload: bytes, jobs: Sequence[SweepJob]) -> None:
        """Send ``payload`` (the packed model and data) to the workers once, and submit every job."""

    @abstractmethod
    def events(self, timeout: float) -> list[JobEvent]:
        """What the jobs reported since the last call, waiting up to ``timeout`` seconds for something;
        a job that failed raises its error here."""

    @abstractmethod
    def close(self) -> None:
        """Stop every job still queued or running and release the workers; idempotent."""


def pack(loaded: LoadedModel, data: Dataset | None) -> bytes:
    """The model and data as the one payload every worker unpacks (:func:`unpack`)."""
    try:
        return pickle.dumps((loaded, data), protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as exc:  # a model holding what cannot be pickled (a lock, an open file, a compiled graph)
        raise SweepError(one_line(f"{loaded.name} cannot be sent to worker processes ({type(exc).__name__}: "
                                  f"{exc}); sweep a model the zoo or a state_dict with --arch gives")) from None


def unpack(payload: bytes) -> tuple[LoadedModel, Dataset | None]:
    """The model and data a :func:`pack` payload holds (our own bytes, made by the process that started
    the workers)."""
    return pickle.loads(payload)  # noqa: S301 - written by pack() in the sweep's own process


def check_jobs(jobs: Sequence[SweepJob], loaded: LoadedModel, data: Dataset | None) -> None:
    """Refuse, before any work, a grid with a recipe that cannot run on this model and data."""
    from core.pipeline.checks import check

    if not jobs:
        raise SweepError("the grid holds no recipe")
    for job in jobs:
        try:
            check(job.recipe, loaded, data)
        except SweepError:
            raise
        except ValueError as exc:  # RecipeError, CompressionError: one line naming the step
            raise SweepError(one_line(f"{job.name}: {exc}")) from None


def sweep(jobs: Sequence[SweepJob], loaded: LoadedModel, data: Dataset | None, backend: Backend,
          limit: int | None = None) -> Task[list[SweepResult]]:
    """Run every job on ``backend``: each recipe compresses ``loaded`` and is measured on ``data`` (its
    first ``limit`` test examples). Yields progress and a Partial per finished result; returns the results
    in grid order. Bad input raises :class:`SweepError` before any job starts."""
    jobs = list(jobs)
    check_jobs(jobs, loaded, data)
    payload = pack(loaded, limited(data, limit))
    backend.connect()
    total = len(jobs)
    results: dict[int, SweepResult] = {}
    running: dict[int, float] = {}  # index -> fraction done, of the jobs that reported
    message = f"{total} recipes on {backend.description}"

    def report() -> Progress:
        done = 1000 * len(results) + sum(int(1000 * f) for f in running.values())
        return Progress("sweep", done, 1000 * total, f"{len(results)}/{total} done · {message}")

    try:
        yield report()
        backend.start(payload, jobs)
        while len(results) < total:
            events = backend.events(POLL_S)
            for event in events:
                if event.result is not None:
                    running.pop(event.index, None)
                    results[event.index] = event.result
                    message = f"{event.result.name} done"
                    yield Partial(RESULT_KEY, event.result)
                elif event.index not in results:
                    running[event.index] = max(running.get(event.index, 0.0), event.progress.fraction)
                    message = f"{jobs[event.index].name}: {event.progress.message or event.progress.stage}"
            yield report()  # also with no news: the studio sees a cancel between yields
        return [results[i] for i in range(total)]
    finally:
        backend.close()
