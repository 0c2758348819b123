"""Stand-ins for the ``low_rank``, ``separable`` and ``distill`` step configs, for the studio's draft tests on
a branch where the real kinds (core/methods/low_rank.py, separable.py, distill.py) are not merged yet.

Each stand-in has the fields the shared interface of issue 13 gives the real config, and a handler that
refuses to run: the tests only edit recipes with them. :func:`kinds_registered` registers a stand-in only
for a kind the engine does not have, so once the real modules are merged the tests run on the real configs.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

from core.recipe import Step, register_step, unregister_step
from core.recipe.registry import step_kind


def _not_runnable(step, ctx):
    raise RuntimeError(f"{step.kind} is a test stand-in: it edits recipes, it does not run")


@dataclass(frozen=True)
class LowRankStandIn(Step):
    kind = "low_rank"
    rank: int = 0
    energy: float = 0.9
    method: str = "channel"


@dataclass(frozen=True)
class SeparableStandIn(Step):
    kind = "separable"
    fit_steps: int = 300
    fit_lr: float = 0.01
    batches: int = 8


@dataclass(frozen=True)
class DistillStandIn(Step):
    kind = "distill"
    teacher: str = "original"
    temperature: float = 4.0
    alpha: float = 0.9
    epochs: int = 10
    lr: float = 0.05
    augment: bool = False
    batch_size: int = 128
    student: str = ""


FAMILIES = {LowRankStandIn: "architecture", SeparableStandIn: "architecture", DistillStandIn: "distillation"}


@contextlib.contextmanager
def kinds_registered():
    """The three kinds are registered while inside: the real ones where the engine has them, else the
    stand-ins, which are removed again on exit."""
    added = []
    for config, family in FAMILIES.items():
        try:
            step_kind(config.kind)
        except KeyError:
            register_step(config, _not_runnable, family=family)
            added.append(config.kind)
    try:
        yield
    finally:
        for kind in added:
            unregister_step(kind)
