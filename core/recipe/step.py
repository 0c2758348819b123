"""A step of a recipe: the base class every kind's config derives from, its layer selection, its needs.

Layer patterns: a pattern matches a layer whose qualified name equals it, or else that it matches as a
regular expression (``re.fullmatch``). ``layers`` (empty: every layer the step works on) selects, ``ignore``
removes, and ``overrides`` (pattern -> value) set a per-layer value; the first matching override wins.
Patterns name layers as they are when the step runs.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from core.recipe.validate import check_patterns, fail


class Need(enum.Enum):
    """What a step needs from the run beyond the model; the value says it in words, for messages."""

    TRAINING_DATA = "a labelled data set to train on"
    CALIBRATION_DATA = "a labelled data set to calibrate or count activations on"
    TEACHER = "a teacher model"


def matches(pattern: str, name: str) -> bool:
    """Whether layer ``name`` is selected by ``pattern`` (exact name, else a full regex match)."""
    return pattern == name or re.fullmatch(pattern, name) is not None


@dataclass(frozen=True)
class Selection:
    """Which layers a step applies to, with optional per-layer values."""

    layers: tuple[str, ...] = ()
    ignore: tuple[str, ...] = ()
    overrides: tuple[tuple[str, Any], ...] = ()

    def select(self, names: Iterable[str]) -> list[str]:
        """The names chosen: matching ``layers`` (all when empty), minus those matching ``ignore``."""
        return [n for n in names if (not self.layers or any(matches(p, n) for p in self.layers))
                and not any(matches(p, n) for p in self.ignore)]

    def value_for(self, name: str, default):
        for pattern, value in self.overrides:
            if matches(pattern, name):
                return value
        return default

    def patterns(self) -> list[tuple[str, str]]:
        """(field, pattern) for every pattern, for checking against a model."""
        return ([("layers", p) for p in self.layers] + [("ignore", p) for p in self.ignore]
                + [("overrides", p) for p, _ in self.overrides])


@dataclass(frozen=True)
class Step:
    """Base of every step: ``kind`` names it in files; ``select`` chooses its layers.

    Class attributes a kind sets: ``kind``; ``last`` (must be the recipe's last step, at most once);
    ``not_after`` (kind -> why: kinds this step may not follow); ``renames_layers`` (later steps' patterns
    name the layers this step leaves, so they cannot be checked against the model before the run).
    """

    kind: ClassVar[str] = ""
    last: ClassVar[bool] = False
    not_after: ClassVar[Mapping[str, str]] = {}
    renames_layers: ClassVar[bool] = False
    select: Selection = field(default_factory=Selection)

    def __post_init__(self) -> None:
        if not isinstance(self.select, Selection):
            fail(f"{self.kind}.select", "must be a Selection")
        self.validate(self.kind)

    def validate(self, where: str) -> None:
        """Check every field; ``where`` prefixes each message (``steps[1]``). Subclasses extend it."""
        check_patterns(f"{where}.layers", self.select.layers)
        check_patterns(f"{where}.ignore", self.select.ignore)
        check_patterns(f"{where}.overrides", tuple(p for p, _ in self.select.overrides))

    def needs(self) -> frozenset[Need]:
        """What this step needs to run, with these settings."""
        return frozenset()

    def teachers(self) -> tuple[str, ...]:
        """The teachers this step distills from (``original`` or model specs); loaded once per run, before
        any step runs. A step with teachers declares :attr:`Need.TEACHER`."""
        return ()

    def first_only(self) -> str:
        """Why this step, with these settings, may only be a recipe's first step ("" when it may stand
        anywhere)."""
        return ""

    def named_layers(self) -> list[tuple[str, str]]:
        """(field, layer name) for fields that name one layer exactly (not a pattern)."""
        return []

    def summary(self) -> str:
        """What the step does, in a word or two, for a variant's default name ("" adds nothing)."""
        return self.kind.replace("_", " ")

    def _overridden(self) -> str:
        n = len(self.select.overrides)
        return f" (+{n} layer{'s' if n > 1 else ''})" if n else ""


def unmatched(step: Step, names: list[str]) -> tuple[str, str] | None:
    """The first (field, pattern) of ``step`` that matches none of ``names``, or None."""
    for key, pattern in step.select.patterns():
        if not any(matches(pattern, n) for n in names):
            return key, pattern
    return None


def check_step_against(step: Step, where: str, layer_names: list[str]) -> None:
    """Refuse a step whose layer patterns, or the layers it names, match no layer in ``layer_names``."""
    missing = unmatched(step, layer_names)
    if missing is not None:
        fail(f"{where}.{missing[0]}", f"pattern {missing[1]!r} matches no layer (layers: "
             f"{', '.join(layer_names[:8])}{' ...' if len(layer_names) > 8 else ''})")
    for key, layer in step.named_layers():
        if layer not in layer_names:
            fail(f"{where}.{key}", f"no layer named {layer!r}")
