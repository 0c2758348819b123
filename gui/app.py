"""Starting the studio: the QApplication, its style, and the main window on the demo model."""

from __future__ import annotations

import sys
import threading

from PySide6.QtCore import QSettings
from PySide6.QtGui import QColor, QPalette
from PySide6.QtWidgets import QApplication

from core.resources import resource_path
from gui import theme


def apply_style(app: QApplication) -> None:
    """Fusion with a dark palette, plus the studio's stylesheet."""
    app.setStyle("Fusion")
    palette = QPalette()
    for role, colour in ((QPalette.ColorRole.Window, theme.BACKGROUND), (QPalette.ColorRole.Base, theme.PANEL),
                         (QPalette.ColorRole.AlternateBase, "#232831"), (QPalette.ColorRole.Text, theme.TEXT),
                         (QPalette.ColorRole.WindowText, theme.TEXT), (QPalette.ColorRole.Button, theme.PANEL),
                         (QPalette.ColorRole.ButtonText, theme.TEXT), (QPalette.ColorRole.Highlight, "#2b5d7a"),
                         (QPalette.ColorRole.HighlightedText, "#ffffff"), (QPalette.ColorRole.ToolTipBase, theme.PANEL),
                         (QPalette.ColorRole.ToolTipText, theme.TEXT), (QPalette.ColorRole.PlaceholderText, theme.MUTED)):
        palette.setColor(role, QColor(colour))
    app.setPalette(palette)
    app.setStyleSheet(resource_path("styles", "studio.qss").read_text(encoding="utf-8"))
    theme.plot_defaults()


def collect_garbage_on_ui_thread() -> None:
    """Turn off Python's automatic cyclic garbage collection and collect on a UI-thread timer instead.

    Automatic collection runs on whichever thread happens to allocate, and background tasks allocate a lot:
    a collection there that frees a cycle holding Qt objects (a closed window, a plot item) destroys them
    on a pool thread, which Qt answers with "Timers cannot be started from another thread" and crashes.
    pyqtgraph's GarbageCollector does the collecting; one per application.
    """
    app = QApplication.instance()
    if app is not None and getattr(app, "_prunescope_gc", None) is None:
        import gc

        from pyqtgraph.util.garbage_collector import GarbageCollector

        # Everything alive now (the modules of torch, Qt, numpy, pyqtgraph: hundreds of thousands of
        # objects) lives as long as the process: take it out of future collections, so that a full
        # collection on the UI thread walks only what the session made since (one took 139 ms before).
        gc.collect()
        gc.freeze()
        app._prunescope_gc = GarbageCollector(interval=0.5)
        app._prunescope_gc.timer.setParent(app)


SWITCH_INTERVAL_S = 0.001


def share_the_interpreter() -> None:
    """Make a background task that runs Python code hand the interpreter lock to the UI thread within
    1 ms instead of Python's default 5 ms. Painting a plot calls into Python many times (pyqtgraph items
    paint in Python) and each call waits for the lock, so the default interval multiplies into visible
    stalls while a task trains or measures."""
    sys.setswitchinterval(SWITCH_INTERVAL_S)


_warm_up: threading.Thread | None = None


def _prepare_engine() -> None:
    import core.pipeline  # noqa: F401 - imported by the first Apply otherwise (torch.ao, Torch-Pruning: 70 ms)
    from core import huffman, stats

    stats.warm_up()
    huffman.warm_up()


def prepare_engine() -> threading.Thread:
    """Load the engine's numba kernels (statistics, bit packing, decoding) and import the modules that
    compressing needs, in a background thread, once per process. Loading the kernels (0.5 s from numba's
    on-disk cache) holds the interpreter lock for up to 100 ms at a time: done while the window is built
    and before it shows, it never stalls a window in use."""
    global _warm_up
    if _warm_up is None:
        _warm_up = threading.Thread(target=_prepare_engine, name="prepare-engine", daemon=True)
        _warm_up.start()
    return _warm_up


def create_window(model: str | None = "zoo:lenet300", data: str | None = None,
                  settings: QSettings | None = None):
    """The main window with its session; starts opening ``model`` in the background (None: nothing)."""
    warm_up = prepare_engine()
    from gui.main_window import MainWindow
    from gui.session import Session

    collect_garbage_on_ui_thread()
    share_the_interpreter()
    session = Session()
    window = MainWindow(session, settings)
    session.setParent(window)
    warm_up.join()
    if model:
        session.open_model(model, data)
    return window


def run_studio(model: str = "zoo:lenet300", data: str | None = None) -> int:
    app = QApplication.instance() or QApplication(sys.argv)
    app.setApplicationName("Prunescope")
    app.setOrganizationName("Prunescope")
    apply_style(app)
    window = create_window(model, data)
    window.show()
    return app.exec()
