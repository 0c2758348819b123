"""The one base of every error Prunescope reports to a person as a sentence.

Each part of the engine raises its own subclass (``ModelLoadError``, ``RecipeError``, ``CodingError``, ...),
whose message is one line that says what is wrong and what to do. The command line catches
:class:`PrunescopeError` and prints that line; anything else is a bug and keeps its traceback. It derives
from ``ValueError`` because every such error is about a value the person gave: a file, a recipe, an option.
"""

from __future__ import annotations


class PrunescopeError(ValueError):
    """A problem with what the person asked for, explained in one line; nothing was changed."""
