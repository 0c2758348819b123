"""Progress reporting for long-running engine work.

Engine work is written as generators that ``yield`` :class:`Progress` and ``return`` their result. The
studio runs them in a background worker (which can stop between yields: that is how cancel works); the
command line and the tests drain them with :func:`run`.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Progress:
    """One step of a long task: ``done`` of ``total`` units of ``stage`` finished."""

    stage: str
    done: int
    total: int
    message: str = ""

    @property
    def fraction(self) -> float:
        return 1.0 if self.total <= 0 else min(1.0, self.done / self.total)


@dataclass(frozen=True)
class Partial:
    """A result that is ready before the task ends (``key`` names it), for the studio to show at once."""

    key: str
    value: Any


class Cancelled(Exception):
    """Raised inside a task when the user cancelled it."""


Task = Generator[Progress | Partial, None, T]


def run(task: Generator[Progress | Partial, None, T], on_progress: Callable[[Progress], Any] | None = None,
        should_cancel: Callable[[], bool] | None = None) -> T:
    """Drain a task generator and return its result.

    ``on_progress`` sees every :class:`Progress` (partial results are skipped: the return value holds
    them). When ``should_cancel()`` turns true the generator is closed (so its ``finally`` blocks run) and
    :class:`Cancelled` is raised.
    """
    try:
        while True:
            progress = next(task)
            if on_progress is not None and isinstance(progress, Progress):
                on_progress(progress)
            if should_cancel is not None and should_cancel():
                task.close()
                raise Cancelled("cancelled")
    except StopIteration as stop:
        return stop.value
