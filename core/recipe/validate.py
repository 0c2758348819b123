"""Checks a step's config runs on its fields in ``validate``: each failure names the field and says why.

Method modules call these from their config's ``validate(where)``; ``where`` is the step's place in the
recipe (``steps[1]``) once it is in one, so a message reads ``steps[1].sparsity: must be ...``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from core.errors import PrunescopeError


class RecipeError(PrunescopeError):
    """A recipe is invalid; the message names the field (``steps[1].sparsity``) and why."""


def fail(where: str, message: str) -> None:
    raise RecipeError(f"{where}: {message}")


def check_fraction(where: str, value: float, upper_open: bool = True) -> None:
    """A number in [0, 1) (or [0, 1] with ``upper_open=False``)."""
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not (
            0.0 <= value < 1.0 if upper_open else 0.0 <= value <= 1.0):
        fail(where, f"must be a number in [0, 1{')' if upper_open else ']'}; got {value!r}")


def check_choice(where: str, value: str, choices: Iterable[str]) -> None:
    choices = tuple(choices)
    if value not in choices:
        fail(where, f"must be one of {', '.join(choices)}; got {value!r}")


def check_patterns(where: str, patterns: tuple[str, ...]) -> None:
    """Layer names or regular expressions that compile."""
    for i, pattern in enumerate(patterns):
        if not isinstance(pattern, str) or not pattern:
            fail(f"{where}[{i}]", f"must be a non-empty layer name or regular expression; got {pattern!r}")
        try:
            re.compile(pattern)
        except re.error as exc:
            fail(f"{where}[{i}]", f"invalid regular expression {pattern!r} ({exc})")


def check_int(where: str, value, low: int, high: int | None = None) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < low or (high is not None and value > high):
        fail(where, f"must be an integer in [{low}, {high if high is not None else '...'}]; got {value!r}")


def check_positive(where: str, value) -> None:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not value > 0:
        fail(where, f"must be a positive number; got {value!r}")
