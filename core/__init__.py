"""Prunescope's engine: torch + numpy only, never Qt.

Everything the studio does runs headless through this package: loading models (:mod:`core.model_io`),
data sets (:mod:`core.data`), the model zoo (:mod:`core.zoo`), inspection (:mod:`core.inventory`,
:mod:`core.stats`), and evaluation (:mod:`core.evaluate`).
"""

__version__ = "0.1.0"
