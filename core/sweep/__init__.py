"""Sweeps: a grid of recipes -> results, on a local process pool or a Ray cluster behind one interface.

- :mod:`~core.sweep.grid`: the base recipe and its axes, expanded into concrete recipes (:class:`SweepJob`);
- :mod:`~core.sweep.jobs`: one job as every backend runs it (:func:`core.pipeline.apply.apply_recipe`),
  summed up as a :class:`SweepResult`;
- :mod:`~core.sweep.backend`: the :class:`Backend` interface and :func:`sweep`, the Task that drives one;
- :mod:`~core.sweep.pool`: :class:`LocalPool`, the default; :mod:`~core.sweep.ray_backend`: :class:`RayBackend`
  (the ``[ray]`` extra, imported only when asked for).
"""

from core.sweep.backend import RESULT_KEY, Backend, JobEvent, sweep
from core.sweep.grid import Axis, SweepError, SweepJob, expand_grid, parse_axis
from core.sweep.jobs import SweepResult, run_job
from core.sweep.pool import LocalPool

__all__ = ["RESULT_KEY", "Axis", "Backend", "JobEvent", "LocalPool", "SweepError", "SweepJob", "SweepResult",
           "backend_for", "expand_grid", "parse_axis", "run_job", "sweep"]


def backend_for(ray: str | None = None, workers: int | None = None) -> Backend:
    """The backend a sweep asks for: the Ray cluster at ``ray`` (``auto``, ``local``, ``HOST:PORT``), or
    without it ``workers`` local processes."""
    if ray:
        from core.sweep.ray_backend import RayBackend

        return RayBackend(ray, workers)
    return LocalPool(workers)
