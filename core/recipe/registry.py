"""The step registry: every kind of step, its config class, its handler, and what else it offers.

A method's module defines a config (a :class:`~core.recipe.step.Step` subclass) and a handler, and
registers them with :func:`register_step`. The pipeline runs a step by looking its kind up here, the recipe
parser finds config classes here, and the studio builds its recipe panel from the kinds registered here;
none of them names a kind. torchao's ``register_quantize_module_handler`` and llm-compressor's modifiers are
the models.

The built-in methods (:mod:`core.methods`) and installed plugins register themselves when first needed
(:func:`core.plugins.discover`), so looking anything up here first loads them.

A handler is ``run(step, ctx)``: a generator over the run context (:class:`core.pipeline.context.RunContext`)
that changes ``ctx.model`` in place and yields progress, or a plain function for a step with nothing to
wait for. The run is cancelled between yields. ``preview(step, plan)``, if given, updates an instant
estimate (:class:`core.analysis.estimate.Plan`) of what the step will do. ``targets(model)`` lists the
layers the step's patterns choose from (the names of modules it can work on). ``in_place``: the step only
changes the values of existing weights, without gradients, so it runs on a compiled program's weights too
(:mod:`core.io.program`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from core import plugins
from core.recipe.step import Step


@dataclass(frozen=True)
class StepKind:
    """One registered kind of step."""

    config: type[Step]
    run: Callable[[Any, Any], Any]
    preview: Callable[[Any, Any], None] | None = None
    targets: Callable[[Any], list[str]] | None = None
    family: str = ""  # what it belongs to, for grouping: "pruning", "quantization", "training", "coding"
    in_place: bool = False  # changes only existing weights' values (no layer changes, no gradients)

    @property
    def kind(self) -> str:
        return self.config.kind


_KINDS: dict[str, StepKind] = {}
FAMILIES = ("pruning", "architecture", "distillation", "training", "quantization", "coding")
"""The order kinds are listed in (the order a compression applies them): by family, then as registered.
Modules imported on several threads at once register in any order; this keeps the listing one order."""


def register_step(config: type[Step], run: Callable, *, preview: Callable | None = None,
                  targets: Callable | None = None, family: str = "", in_place: bool = False) -> StepKind:
    """Register a kind of step; returns its entry. A kind is registered once (re-registering the same
    config class replaces its entry, so a module can be reloaded)."""
    if not (isinstance(config, type) and issubclass(config, Step) and dataclasses.is_dataclass(config)
            and config.__dataclass_params__.frozen):
        raise TypeError(f"{config!r} is not a frozen dataclass deriving from Step")
    if not config.kind or not config.kind.isidentifier():
        raise ValueError(f"{config.__name__}.kind must be an identifier; got {config.kind!r}")
    existing = _KINDS.get(config.kind)
    if existing is not None and existing.config.__qualname__ != config.__qualname__:
        raise ValueError(f"step kind {config.kind!r} is already registered by {existing.config.__module__}")
    if not callable(run):
        raise TypeError(f"the handler of {config.kind} is not callable")
    entry = StepKind(config, run, preview, targets, family, in_place)
    _KINDS[config.kind] = entry
    return entry


def unregister_step(kind: str) -> None:
    """Remove a kind (tests and plugin reloads); unknown kinds are ignored."""
    _KINDS.pop(kind, None)


def kinds() -> dict[str, StepKind]:
    """Every registered kind: by family (:data:`FAMILIES`, then any other), then in registration order."""
    plugins.discover()
    rank = {family: i for i, family in enumerate(FAMILIES)}
    order = sorted(enumerate(_KINDS.values()), key=lambda e: (rank.get(e[1].family, len(rank)), e[0]))
    return {entry.kind: entry for _, entry in order}


def step_kind(kind: str) -> StepKind:
    """The entry of one kind; KeyError if it is not registered."""
    plugins.discover()
    return _KINDS[kind]


def kind_of(step: Step) -> StepKind:
    """The entry of a step's kind (the step's own class must be the registered one)."""
    return step_kind(step.kind)


class _StepTypes(Mapping[str, type[Step]]):
    """kind -> config class, read from the registry at each use."""

    def __getitem__(self, kind: str) -> type[Step]:
        return step_kind(kind).config

    def __iter__(self) -> Iterator[str]:
        return iter(kinds())

    def __len__(self) -> int:
        return len(kinds())


STEP_TYPES: Mapping[str, type[Step]] = _StepTypes()
"""Every registered kind's config class, by kind (a live view of the registry)."""
