"""Colours and fonts shared by the studio's widgets (the stylesheet is resources/styles/studio.qss)."""

from __future__ import annotations

BACKGROUND = "#16191f"
PANEL = "#1f232b"
GRID = "#2c313a"
TEXT = "#e8eaed"
MUTED = "#9aa0a6"
ACCENT = "#4fc3f7"      # weights, neurons that fire
ACCENT_FILL = (79, 195, 247, 90)
WARM = "#ffb74d"        # rarely firing units
DANGER = "#ef5350"      # dead units, errors
GOOD = "#81c784"
DISABLED = "#5f6368"    # text of a control that does nothing now (Undo with nothing to undo)


def plot_defaults() -> None:
    """pyqtgraph settings for every plot: dark background, antialiasing."""
    import pyqtgraph as pg

    pg.setConfigOptions(antialias=True, background=PANEL, foreground=MUTED)


def steady(label, lines: int | None = None):
    """Keep a label whose text changes from moving the layout: its width no longer pushes its neighbours
    (a long text is clipped instead of widening a splitter pane), and with ``lines`` its height is fixed
    at that many lines of its font. Re-laying out the plots around it on every update is what stalls the
    UI thread while a background task reports progress."""
    from PySide6.QtWidgets import QSizePolicy

    policy = QSizePolicy(QSizePolicy.Policy.Ignored,
                         QSizePolicy.Policy.Fixed if lines else label.sizePolicy().verticalPolicy())
    policy.setHorizontalStretch(10)  # beside a layout's stretch, the label still takes most of the room
    label.setSizePolicy(policy)
    label.setMinimumWidth(1)
    if lines:
        label.ensurePolished()  # the stylesheet's font, not the default one
        margins = label.contentsMargins()
        label.setFixedHeight(label.fontMetrics().lineSpacing() * lines + margins.top() + margins.bottom() + 6)
    return label


def grid(plot, x: bool = True, y: bool = True) -> None:
    """Faint grid lines at a plot's major and minor ticks. pyqtgraph draws a line for every tick level it
    computes, sub-minor ticks too (36 translucent lines on a histogram's count axis), and Qt's raster
    engine spends about half of a histogram's repaint on them (bench/bench_paint.py). Two levels look the
    same at this alpha."""
    plot.showGrid(x=x, y=y, alpha=0.15)
    for name in ("left", "bottom"):
        plot.getAxis(name).setStyle(maxTickLevel=1)


def wrapped_message(item, plot) -> None:
    """Keep a plot's centred message (a pyqtgraph TextItem) inside the plot: its text wraps at the view's
    width, now and whenever the plot is resized (a long "not measured: ..." ran past both edges)."""
    from PySide6.QtCore import Qt
    from PySide6.QtGui import QTextOption

    view = plot.getPlotItem().getViewBox()
    item.textItem.document().setDefaultTextOption(QTextOption(Qt.AlignmentFlag.AlignCenter))

    def fit(*_args) -> None:
        width = view.width() if view.width() > 0 else plot.width()
        item.setTextWidth(max(80.0, width - 24))

    view.sigResized.connect(fit)
    fit()
