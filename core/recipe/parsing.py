"""Reading a recipe's text safely: YAML (JSON is YAML) that can only describe plain data of a bounded size.

A recipe may come from anywhere, so the parser refuses, in one line and before building anything:

- aliases and anchors (``&a`` / ``*a``): a 1 KB "billion laughs" file would otherwise expand to gigabytes;
- nesting deeper than :data:`MAX_DEPTH` (a recipe needs four levels, and each ``base`` of a chain one more;
  deeper would exhaust the stack);
- numbers that are not finite (``.inf``, ``.nan``) and integers beyond 64 bits (a 5,000-digit seed);
- text over :data:`MAX_RECIPE_BYTES` (1 MB), and, for files, anything that is not UTF-8 or not an ordinary
  file (:func:`core.fileio.read_input_text`).

Only PyYAML's safe constructors run, so no Python object is ever built from a tag.
"""

from __future__ import annotations

import math
import os

import yaml

from core.errors import one_line
from core.fileio import MB, read_input_text
from core.recipe.validate import RecipeError

MAX_RECIPE_BYTES = 1 * MB
MAX_DEPTH = 32
MAX_INT = (1 << 63) - 1


def _refuse(message: str, mark) -> None:
    where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
    raise RecipeError(f"recipe: {message}{where}")


class RecipeLoader(yaml.SafeLoader):
    """PyYAML's safe loader without aliases and anchors, with bounded nesting, finite numbers and bounded
    integers."""

    def __init__(self, stream) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent, index):
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            _refuse("aliases (*name) are not allowed in a recipe; write the value out", event.start_mark)
        if getattr(event, "anchor", None) is not None:
            _refuse("anchors (&name) are not allowed in a recipe; write the value out", event.start_mark)
        self._depth += 1
        if self._depth > MAX_DEPTH:
            _refuse(f"nested more than {MAX_DEPTH} levels deep", event.start_mark)
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_yaml_int(self, node):
        digits = node.value.replace("_", "").lstrip("+-")
        if len(digits) > 80:  # before int() works on it: a 5,000-digit number costs time and ends in ValueError
            _refuse(f"the integer at this place has {len(digits):,} digits; recipes hold 64-bit integers",
                    node.start_mark)
        value = super().construct_yaml_int(node)
        if abs(value) > MAX_INT:
            _refuse(f"the integer {node.value[:30]} is beyond 64 bits", node.start_mark)
        return value

    def construct_yaml_float(self, node):
        value = super().construct_yaml_float(node)
        if not math.isfinite(value):
            _refuse(f"{node.value[:30]!r} is not a finite number", node.start_mark)
        return value


RecipeLoader.add_constructor("tag:yaml.org,2002:int", RecipeLoader.construct_yaml_int)
RecipeLoader.add_constructor("tag:yaml.org,2002:float", RecipeLoader.construct_yaml_float)


def parse_recipe_text(text: str):
    """The plain data (dicts, lists, strings, finite numbers) a recipe's text holds."""
    if not isinstance(text, str):
        raise RecipeError(f"recipe: must be text; got {type(text).__name__}")
    if len(text) > MAX_RECIPE_BYTES:
        raise RecipeError(f"recipe: {len(text):,} characters, more than a recipe may have "
                          f"({MAX_RECIPE_BYTES:,})")
    try:
        return yaml.load(text, Loader=RecipeLoader)  # noqa: S506 - RecipeLoader is a SafeLoader
    except yaml.YAMLError as exc:
        raise RecipeError(one_line(f"recipe: not valid YAML or JSON ({str(exc).splitlines()[0]})")) from None
    except RecursionError:
        raise RecipeError("recipe: nested too deeply") from None


def read_recipe_text(path: str | os.PathLike) -> str:
    """A recipe file's text: an ordinary file of at most 1 MB, in UTF-8 (RecipeError, one line, if not)."""
    return read_input_text(path, MAX_RECIPE_BYTES, "recipe", error=RecipeError)
