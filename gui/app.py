"""Starting the studio: the QApplication, its style, and the main window on the demo model."""

from __future__ import annotations

import gc
import sys

from PySide6.QtCore import QSettings
from PySide6.QtGui import QColor, QPalette
from PySide6.QtWidgets import QApplication

from core.resources import resource_path
from gui import theme
from gui.workers import prepare_engine


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
    # setColor above set every colour group, the disabled one too: a disabled button looked enabled
    for role in (QPalette.ColorRole.ButtonText, QPalette.ColorRole.Text, QPalette.ColorRole.WindowText):
        palette.setColor(QPalette.ColorGroup.Disabled, role, QColor(theme.DISABLED))
    app.setPalette(palette)
    app.setStyleSheet(resource_path("styles", "studio.qss").read_text(encoding="utf-8"))
    theme.plot_defaults()


GC_INTERVAL_S = 0.05
"""How often the UI thread collects. Background tasks allocate hundreds of thousands of objects a second;
collected every half second, the youngest generation held 100,000 of them and one collection stalled the
window for 40 ms. Every 50 ms, collections stay around a few milliseconds."""


def collect_garbage_on_ui_thread() -> None:
    """Turn off Python's automatic cyclic garbage collection and collect on a UI-thread timer instead.

    Automatic collection runs on whichever thread happens to allocate, and background tasks allocate a lot:
    a collection there that frees a cycle holding Qt objects (a closed window, a plot item) destroys them
    on a pool thread, which Qt answers with "Timers cannot be started from another thread" and crashes.
    pyqtgraph's GarbageCollector does the collecting; one per application.
    """
    app = QApplication.instance()
    if app is not None and getattr(app, "_prunescope_gc", None) is None:
        from pyqtgraph.util.garbage_collector import GarbageCollector

        # Everything alive now (the modules of torch, Qt, numpy, pyqtgraph: hundreds of thousands of
        # objects) lives as long as the process: take it out of future collections, so that a full
        # collection on the UI thread walks only what the session made since (one took 139 ms before).
        gc.collect()
        gc.freeze()
        app._prunescope_gc = GarbageCollector(interval=GC_INTERVAL_S)
        app._prunescope_gc.timer.setParent(app)


SWITCH_INTERVAL_S = 0.001


def share_the_interpreter() -> None:
    """Make a background task that runs Python code hand the interpreter lock to the UI thread within
    1 ms instead of Python's default 5 ms. Painting a plot calls into Python many times (pyqtgraph items
    paint in Python) and each call waits for the lock, so the default interval multiplies into visible
    stalls while a task trains or measures."""
    sys.setswitchinterval(SWITCH_INTERVAL_S)


def create_window(model: str | None = "zoo:lenet300", data: str | None = None,
                  settings: QSettings | None = None, arch: str | None = None,
                  input_shape: tuple[int, ...] | None = None, trust: bool = False, source: str | None = None,
                  inputs: str | None = None, **own):
    """The main window with its session; starts opening ``model`` in the background (None: nothing), with
    the options the command line gave (``--arch``, ``--input-shape``, ``--trust``, ``--inputs``; ``own``:
    ``sample_rate``, ``chunk``, ``task``, ``pairs`` as :class:`core.io.LoadOptions` has them)."""
    from core import plugins

    plugins.discover()  # the methods register on this thread, before the engine's imports start on another
    preparation = prepare_engine()
    from gui.main_window import MainWindow
    from gui.session import Session

    collect_garbage_on_ui_thread()
    share_the_interpreter()
    session = Session()
    window = MainWindow(session, settings)
    session.setParent(window)
    preparation.ready.wait()  # the window shows once the first tasks' kernels are loaded
    if not getattr(QApplication.instance(), "_prunescope_settled", False):
        QApplication.instance()._prunescope_settled = True
        gc.collect()  # the window and the modules imported meanwhile: out of later collections too
        gc.freeze()
    if model:
        session.open_model(model, data, trust=trust, arch=arch, input_shape=input_shape, source=source,
                           inputs=inputs, **{key: value for key, value in own.items() if value is not None})
    return window


def run_studio(model: str = "zoo:lenet300", data: str | None = None, arch: str | None = None,
               input_shape: tuple[int, ...] | None = None, trust: bool = False, source: str | None = None,
               inputs: str | None = None, **own) -> int:
    app = QApplication.instance() or QApplication(sys.argv)
    app.setApplicationName("Prunescope")
    app.setOrganizationName("Prunescope")
    apply_style(app)
    window = create_window(model, data, arch=arch, input_shape=input_shape, trust=trust, source=source,
                           inputs=inputs, **own)
    window.show()
    return app.exec()
