"""Where the registered parts come from: the built-in methods, then installed plugins.

The registries (step kinds in :mod:`core.recipe.registry`, structure ops in :mod:`core.format.structure`)
are filled by the modules that define what they hold. :func:`discover` imports those modules once, on the
first look-up: the built-in methods (the package :mod:`core.methods`), then what every installed
distribution names under the entry-point group ``prunescope.methods``: a module, which registers its parts
when imported, or a function (``package.module:register``), which is called. Importing a plugin runs its code, as
importing any installed package does: only distributions installed in this environment are looked at.
"""

from __future__ import annotations

import importlib
import threading
import warnings
from importlib.metadata import entry_points

BUILTIN = "core.methods"
ENTRY_POINT_GROUP = "prunescope.methods"

_lock = threading.RLock()  # re-entrant: a module imported by discover() may itself look something up
_ready = False
_loading = False


def discover() -> None:
    """Import the built-in methods and the installed plugins, once per process. Other threads wait until
    it is done; a look-up made by a module while it is being imported here sees what is registered so far."""
    global _ready, _loading
    if _ready:
        return
    with _lock:
        if _ready or _loading:
            return
        _loading = True
        try:
            importlib.import_module(BUILTIN)
            for point in entry_points(group=ENTRY_POINT_GROUP):
                try:
                    target = point.load()
                    if callable(target):
                        target()
                except Exception as exc:  # one broken plugin must not take the rest of the tool with it
                    warnings.warn(f"Prunescope plugin {point.name} ({point.value}) failed to load: "
                                  f"{type(exc).__name__}: {exc}", RuntimeWarning, stacklevel=2)
            _ready = True
        finally:
            _loading = False
