"""A sweep's grid: a base recipe and axes (``quantize.bits=4,5,6``), expanded into concrete recipes.

An axis names a setting of the base recipe's first step of one kind, ``KIND.FIELD``, and the values it
takes. The grid is every combination of the axes' values, the first axis varying slowest, each a whole
recipe validated like any other (a value a step refuses is refused here, naming the axis, before any work).
Values are read as a recipe file reads them (``0.5`` a number, ``true`` a flag, ``kmeans`` a word).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from core.errors import PrunescopeError, one_line
from core.recipe import Recipe, RecipeError, step_from_dict, step_to_dict
from core.recipe.parsing import parse_recipe_text

MAX_JOBS = 10_000
"""The most recipes one grid may hold (each is a whole compression run)."""
NOT_SWEPT = ("kind", "layers", "ignore", "overrides")
"""Fields of a step that are not settings: what it is and which layers it works on."""


class SweepError(PrunescopeError):
    """A sweep that cannot run as asked: a bad axis or value, a backend that is not there."""


@dataclass(frozen=True)
class Axis:
    """One setting swept: ``kind.field`` of the base recipe's first step of that kind, over ``values``."""

    kind: str
    field: str
    values: tuple[Any, ...]

    @property
    def key(self) -> str:
        return f"{self.kind}.{self.field}"


@dataclass(frozen=True)
class SweepJob:
    """One point of the grid: its place (``index``, grid order), a short ``name`` (``sparsity=0.7 bits=5``),
    the value of every axis (``settings``: (key, value) pairs) and the concrete recipe."""

    index: int
    name: str
    settings: tuple[tuple[str, Any], ...]
    recipe: Recipe


def format_value(value: Any) -> str:
    """A value as a person writes it: ``0.7``, ``5``, ``true``, ``kmeans``."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def parse_axis(text: str) -> Axis:
    """``"quantize.bits=4,5,6"`` as an :class:`Axis` (its values not yet checked against a recipe)."""
    key, sep, values = str(text).partition("=")
    kind, dot, field = key.strip().partition(".")
    if not sep or not dot or not kind or not field or "." in field:
        raise SweepError(one_line(f"--grid {text}: write KIND.FIELD=V1,V2,... (for example "
                                  "prune_magnitude.sparsity=0.5,0.7,0.9 or quantize.bits=4,5,6)"))
    items = [v.strip() for v in values.split(",")]
    if not any(items) or not all(items):
        raise SweepError(one_line(f"--grid {text}: give one or more comma-separated values, none empty"))
    parsed = []
    for item in items:
        try:
            value = parse_recipe_text(item)
        except RecipeError:
            value = item
        if isinstance(value, (dict, list)) or value is None:
            raise SweepError(one_line(f"--grid {key}: {item!r} is not a single value"))
        if any(value == p and type(value) is type(p) for p in parsed):
            raise SweepError(one_line(f"--grid {key}: the value {item} is given twice"))
        parsed.append(value)
    return Axis(kind.strip(), field.strip(), tuple(parsed))


def _step_index(base: Recipe, axis: Axis) -> int:
    index = next((i for i, s in enumerate(base.steps) if s.kind == axis.kind), None)
    if index is None:
        raise SweepError(one_line(f"--grid {axis.key}: the recipe has no {axis.kind} step (its steps: "
                                  f"{', '.join(s.kind for s in base.steps) or 'none'})"))
    if axis.field in NOT_SWEPT:
        raise SweepError(one_line(f"--grid {axis.key}: {axis.field} is not a setting an axis can sweep"))
    return index


def _with(recipe: Recipe, index: int, axis: Axis, value: Any) -> Recipe:
    """``recipe`` with ``axis.field`` of step ``index`` set to ``value``, validated."""
    data = step_to_dict(recipe.steps[index])
    data[axis.field] = value
    try:
        step = step_from_dict(data, f"steps[{index}]")
        return replace(recipe, steps=(*recipe.steps[:index], step, *recipe.steps[index + 1:]))
    except RecipeError as exc:
        raise SweepError(one_line(f"--grid {axis.key}={format_value(value)}: {exc}")) from None


def job_name(settings: Sequence[tuple[str, Any]]) -> str:
    """``sparsity=0.7 bits=5``: each axis by its field's name, or by its whole key where two axes share
    a field's name."""
    fields = [key.partition(".")[2] for key, _ in settings]
    return " ".join(f"{field if fields.count(field) == 1 else key}={format_value(value)}"
                    for field, (key, value) in zip(fields, settings))


def expand_grid(base: Recipe, axes: Sequence[Axis]) -> list[SweepJob]:
    """Every combination of the axes' values applied to ``base`` (the first axis varying slowest), as
    validated recipes named ``BASE [sparsity=0.7 bits=5]``. Raises :class:`SweepError` before any work for
    an axis the recipe has no step for, a value its step refuses, a key given twice, or too big a grid."""
    if not axes:
        raise SweepError("a sweep needs at least one axis: --grid KIND.FIELD=V1,V2,...")
    keys = [axis.key for axis in axes]
    twice = next((key for key in keys if keys.count(key) > 1), None)
    if twice is not None:
        raise SweepError(one_line(f"--grid {twice}: given twice; put all its values in one --grid"))
    size = 1
    for axis in axes:
        size *= len(axis.values)
    if size > MAX_JOBS:
        raise SweepError(f"the grid holds {size:,} recipes, more than a sweep runs ({MAX_JOBS:,})")
    places = [_step_index(base, axis) for axis in axes]
    for axis, index in zip(axes, places):  # each value alone first: the message names the axis that is wrong
        for value in axis.values:
            _with(base, index, axis, value)
    jobs = []
    for number, values in enumerate(itertools.product(*(axis.values for axis in axes))):
        recipe = base
        for axis, index, value in zip(axes, places, values):
            recipe = _with(recipe, index, axis, value)
        settings = tuple(zip(keys, values))
        name = job_name(settings)
        jobs.append(SweepJob(number, name, settings, replace(recipe, name=f"{base.name or 'sweep'} [{name}]")))
    return jobs
