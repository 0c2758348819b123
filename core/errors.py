"""The one base of every error Prunescope reports to a person as a sentence.

Each part of the engine raises its own subclass (``ModelLoadError``, ``RecipeError``, ``CodingError``, ...),
whose message is one line that says what is wrong and what to do. The command line catches
:class:`PrunescopeError` and prints that line; anything else is a bug and keeps its traceback. It derives
from ``ValueError`` because every such error is about a value the person gave: a file, a recipe, an option.
"""

from __future__ import annotations


class PrunescopeError(ValueError):
    """A problem with what the person asked for, explained in one line; nothing was changed.

    The message is kept to one line whatever it quotes: a line break or control character in a file
    name, a layer name or a header field is escaped (:func:`one_line`)."""

    def __init__(self, *args) -> None:
        super().__init__(*(one_line(a) if isinstance(a, str) else a for a in args))


def one_line(text: str) -> str:
    """``text`` with every line break and other control character escaped (``\\n``, ``\\x1b``), so that a
    message naming a hostile file name stays one line and cannot drive the terminal."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def os_error_line(exc: OSError) -> str:
    """An ``OSError`` as one line: the path(s) it concerns and the system's reason, without a traceback."""
    reason = exc.strerror or type(exc).__name__
    paths = [str(p) for p in (exc.filename, exc.filename2) if p is not None]
    return one_line(f"{' -> '.join(paths)}: {reason}" if paths else reason)
