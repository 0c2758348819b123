"""Prunescope's studio: PySide6 + pyqtgraph views over the :mod:`core` engine (which never imports Qt)."""
