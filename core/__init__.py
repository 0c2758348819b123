"""Prunescope's engine: torch + numpy only, never Qt.

Everything the studio does runs headless through this package. Its subpackages, bottom to top: ``recipe``
(what to do, as data, and the registry of step kinds), ``format`` (the compressed file), ``eval`` (data,
zoo, evaluation, training), ``analysis`` (inventory, statistics, activations, previews), ``io`` (loading
models), ``methods`` (one module per compression method), ``pipeline`` (running a recipe), ``report``;
``cli`` is the command line. README.md's "How it is built" has the map.
"""

__version__ = "0.1.0"
