"""Recipes: a versioned, validated, immutable description of a compression, as an ordered list of steps.

A step is a frozen dataclass (a subclass of :class:`Step`) defined by its method's module in
:mod:`core.methods` and found through :mod:`core.recipe.registry`; it is validated in ``__post_init__``. A
recipe round-trips through ``to_dict``/``from_dict`` (and YAML/JSON) exactly. ``from_dict`` accepts only
registered kinds and their fields, so a typo is refused with a message naming it, before any work.

Each step declares what it needs to run (:class:`Need`) and where it may stand: ``last`` (at the end, once)
and ``not_after`` (kinds it may not follow). The recipe checks the order; the pipeline checks the needs.

Steps and their layer patterns: :mod:`core.recipe.step`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import yaml

from core.recipe.parsing import MAX_INT, parse_recipe_text, read_recipe_text
from core.recipe.registry import STEP_TYPES
from core.recipe.step import Selection, Step, check_step_against
from core.errors import one_line
from core.recipe.validate import RecipeError, check_int, fail

RECIPE_VERSION = 1
MAX_CHAIN = 24
"""How many recipes a chain (``base``) may hold: each is a whole compression run, and each nests the file one
level deeper (within the parser's depth limit)."""


@dataclass(frozen=True)
class Recipe:
    """An ordered list of steps, with a name and a seed; validated on construction.

    ``base``, when given, is the recipe that made the model this one starts from: the recipe of a variant
    made from a variant is the whole chain from the original, each link a run of its own (its file written
    and decoded before the next link starts), so running it on the original reproduces the variant."""

    steps: tuple[Step, ...] = ()
    name: str = ""
    description: str = ""
    seed: int = 0
    version: int = RECIPE_VERSION
    base: Recipe | None = None

    def __post_init__(self) -> None:
        if self.version != RECIPE_VERSION:
            fail("version", f"this Prunescope reads recipe version {RECIPE_VERSION}; got {self.version!r}")
        check_int("seed", self.seed, 0, MAX_INT)
        if self.base is not None:
            if not isinstance(self.base, Recipe):
                fail("base", f"must be a recipe; got {type(self.base).__name__}")
            if len(self.base.chain()) >= MAX_CHAIN:
                fail("base", f"a chain holds at most {MAX_CHAIN} recipes")
        if not isinstance(self.steps, tuple):
            fail("steps", "must be a tuple of steps")
        for i, step in enumerate(self.steps):
            if not isinstance(step, Step) or type(step) is Step:
                fail(f"steps[{i}]", f"is not a step: {step!r}")
            step.validate(f"steps[{i}]")
        check_order(self.steps)

    def chain(self) -> tuple[Recipe, ...]:
        """The recipes run one after another, the first on the original: ``base``'s chain, then this one
        (without its base)."""
        own = dataclasses.replace(self, base=None) if self.base is not None else self
        return (*self.base.chain(), own) if self.base is not None else (own,)

    def on(self, base: Recipe | None) -> Recipe:
        """This recipe (a single link) run on the model ``base`` made: the chain ``base`` then this."""
        if base is None:
            return self
        chained = base
        for link in self.chain():
            chained = dataclasses.replace(link, base=chained)
        return chained

    # ---------------------------------------------------------------------------------------- dicts
    def to_dict(self) -> dict:
        out = {"version": self.version, "name": self.name, "description": self.description, "seed": self.seed,
               "steps": [step_to_dict(s) for s in self.steps]}
        if self.base is not None:
            out["base"] = self.base.to_dict()
        return out

    @classmethod
    def from_dict(cls, data: Mapping, depth: int = 0) -> Recipe:
        if not isinstance(data, Mapping):
            fail("recipe", f"must be a mapping with a steps list; got {type(data).__name__}")
        _check_keys(data, "recipe")
        unknown = set(data) - {"version", "name", "description", "seed", "steps", "base"}
        if unknown:
            fail(sorted(unknown)[0], "unknown field (known: version, name, description, seed, steps, base)")
        steps = data.get("steps", [])
        if not isinstance(steps, list):
            fail("steps", f"must be a list; got {type(steps).__name__}")
        base = None
        if data.get("base") is not None:
            if depth + 1 >= MAX_CHAIN:
                fail("base", f"a chain holds at most {MAX_CHAIN} recipes")
            try:
                base = cls.from_dict(data["base"], depth + 1)
            except RecipeError as exc:
                raise RecipeError(f"base.{exc}") from None
        return cls(steps=tuple(step_from_dict(s, f"steps[{i}]") for i, s in enumerate(steps)),
                   name=str(data.get("name", "")), description=str(data.get("description", "")),
                   seed=data.get("seed", 0), version=data.get("version", RECIPE_VERSION), base=base)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=None)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1)

    @classmethod
    def from_text(cls, text: str) -> Recipe:
        """Parse YAML or JSON (JSON is YAML), never constructing arbitrary objects, and refusing aliases,
        anchors, deep nesting, non-finite numbers, integers beyond 64 bits and text over 1 MB
        (:mod:`core.recipe.parsing`)."""
        return cls.from_dict(parse_recipe_text(text))

    @classmethod
    def from_file(cls, path: str | os.PathLike) -> Recipe:
        """Read a recipe file: an ordinary file of at most 1 MB, UTF-8, then :meth:`from_text`."""
        return cls.from_text(read_recipe_text(path))


def check_order(steps: tuple[Step, ...]) -> None:
    """Refuse steps out of the order their kinds declare (``last``, ``not_after``)."""
    for kind in dict.fromkeys(s.kind for s in steps if s.last):
        places = [i for i, s in enumerate(steps) if s.kind == kind]
        if len(places) > 1 or places[0] != len(steps) - 1:
            fail(f"steps[{places[0]}]", f"{kind} must be the last step, once")
    for i, step in enumerate(steps):
        if i and step.first_only():
            fail(f"steps[{i}]", step.first_only())
        for earlier in steps[:i]:
            if earlier.kind in step.not_after:
                fail(f"steps[{i}]", step.not_after[earlier.kind])


def step_to_dict(step: Step) -> dict:
    """A step as the plain mapping a recipe file holds (``kind``, its fields, its selection)."""
    out: dict[str, Any] = {"kind": step.kind}
    for f in dataclasses.fields(step):
        if f.name == "select":
            sel = step.select
            if sel.layers:
                out["layers"] = list(sel.layers)
            if sel.ignore:
                out["ignore"] = list(sel.ignore)
            if sel.overrides:
                out["overrides"] = {p: v for p, v in sel.overrides}
        else:
            value = getattr(step, f.name)
            if value is None and f.default is None:  # an optional block left unset is not written
                continue
            out[f.name] = _plain(value)
    return out


def _plain(value):
    """A field's value as a recipe file holds it: a tuple as a list, a dataclass (a block such as
    ``distill``) as the mapping of all its fields."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    return list(value) if isinstance(value, tuple) else value


def _block_type(step_type: type[Step], name: str) -> type | None:
    """The dataclass a field of ``step_type`` holds (``DistillSpec`` for ``distill: DistillSpec | None``),
    read from its type hint; None for a field of plain values."""
    try:
        hint = typing.get_type_hints(step_type).get(name)
    except Exception:  # a hint naming what its module does not import: a plain field
        return None
    for candidate in (hint, *typing.get_args(hint)):
        if dataclasses.is_dataclass(candidate) and isinstance(candidate, type):
            return candidate
    return None


def _block_from(block_type: type, data, where: str):
    """The block a mapping describes, every key one of ``block_type``'s fields; errors name ``where``."""
    if data is None:
        return None
    if not isinstance(data, Mapping):
        fail(where, f"must be a mapping of {', '.join(f.name for f in dataclasses.fields(block_type))}; "
             f"got {type(data).__name__}")
    _check_keys(data, where)
    known = [f.name for f in dataclasses.fields(block_type)]
    unknown = sorted(set(data) - set(known))
    if unknown:
        fail(f"{where}.{unknown[0]}", f"unknown field for {where.rpartition('.')[2]} (known: {', '.join(known)})")
    label = where.rpartition(".")[2]
    try:
        return block_type(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in data.items()})
    except RecipeError as exc:  # the block names itself by its field; name it by its place in the recipe
        message = str(exc)
        raise RecipeError(where + message[len(label):] if message.startswith(label) else f"{where}: {message}") \
            from None


def step_from_dict(data, where: str) -> Step:
    """The step a mapping describes, its kind looked up in the registry; errors name ``where``."""
    if not isinstance(data, Mapping):
        fail(where, f"must be a mapping with a kind; got {type(data).__name__}")
    _check_keys(data, where)
    if "kind" not in data and len(data) == 1:  # the one-key form: {prune_magnitude: {sparsity: 0.9}}
        (kind, fields), = data.items()
        if kind in STEP_TYPES and (fields is None or isinstance(fields, Mapping)):
            if fields and "kind" in fields:
                fail(f"{where}.{kind}.kind", "the step's kind is its key here; remove this field")
            data = {"kind": kind, **(fields or {})}
            _check_keys(data, where)
    kind = data.get("kind")
    if "kind" not in data:
        fail(where, f"a step needs a kind: write {{kind: prune_magnitude, sparsity: 0.9}} or "
             f"{{prune_magnitude: {{sparsity: 0.9}}}} (got the fields {', '.join(map(str, data))[:120] or 'none'}); "
             f"known kinds: {', '.join(STEP_TYPES)}")
    if not isinstance(kind, str) or kind not in STEP_TYPES:
        fail(f"{where}.kind", one_line(f"unknown step {kind!r:.80}; known: {', '.join(STEP_TYPES)}"))
    step_type = STEP_TYPES[kind]
    names = {f.name for f in dataclasses.fields(step_type)} - {"select"}
    allowed = names | {"kind", "layers", "ignore", "overrides"}
    unknown = sorted(set(data) - allowed)
    if unknown:
        fail(f"{where}.{unknown[0]}", f"unknown field for {kind} (known: {', '.join(sorted(allowed - {'kind'}))})")
    overrides = data.get("overrides", {}) or {}
    if not isinstance(overrides, Mapping):
        fail(f"{where}.overrides", "must map layer patterns to values")
    for key in ("layers", "ignore"):
        if not isinstance(data.get(key, []), list):
            fail(f"{where}.{key}", "must be a list of layer names or regular expressions")
    select = Selection(tuple(data.get("layers", [])), tuple(data.get("ignore", [])),
                       tuple((str(p), v) for p, v in overrides.items()))
    values = {}
    for k, v in data.items():
        if k in names:
            block_type = _block_type(step_type, k)
            values[k] = _block_from(block_type, v, f"{where}.{k}") if block_type else \
                (tuple(v) if isinstance(v, list) else v)
    try:
        return step_type(select=select, **values)
    except TypeError as exc:
        raise RecipeError(f"{where}: {exc}") from None
    except RecipeError as exc:  # name the step by its place in the recipe, not by its kind
        raise RecipeError(where + str(exc)[len(kind):]) from None


def _check_keys(data: Mapping, where: str) -> None:
    bad = next((k for k in data if not isinstance(k, str)), None)
    if bad is not None:
        fail(where, one_line(f"field names must be text; got {bad!r:.40}"))


def check_against(recipe: Recipe, layer_names: Iterable[str]) -> None:
    """Refuse, before any work, a recipe whose layer patterns match no layer of the model."""
    names = list(layer_names)
    for i, step in enumerate(recipe.steps):
        check_step_against(step, f"steps[{i}]", names)
