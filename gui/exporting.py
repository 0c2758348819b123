"""Plots to files: PNG and SVG exports, the plots on screen to offer, and PNG bytes for the HTML report.

Why the SVG is drawn as it is: Qt's SVG generator is a paint device of 72 dpi unless told otherwise, and a
plot rendered into it at 72 dpi comes apart (issue 12, finding 5): fonts are sized in points, so every
text shrinks by 72/96, while pyqtgraph lays its axes out from the screen's font metrics and draws its
scatter symbols in device pixels after ``resetTransform``. Axes, grid, data and markers then land in
different places. Rendered at the widget's own logical dpi, one SVG unit is one screen pixel and every
item is where the screen (and the PNG) has it. pyqtgraph's items are also told they are being exported,
as its own exporters do: scatter symbols are then drawn as paths, not as fragments of a cached pixmap
atlas (which the SVG engine writes as broken images).
"""

from __future__ import annotations

from contextlib import contextmanager

from PySide6.QtWidgets import QWidget

from core.fileio import atomic_path


def _top_item(plot):
    """The scene item a pyqtgraph view shows: a PlotWidget's PlotItem, a GraphicsLayoutWidget's layout."""
    item = getattr(plot, "centralWidget", None)
    return item if item is not None else plot.getPlotItem()


def plot_png(plot) -> bytes:
    """A pyqtgraph plot rendered to PNG bytes."""
    import pyqtgraph.exporters as exporters
    from PySide6.QtCore import QBuffer, QByteArray, QIODevice

    image = exporters.ImageExporter(_top_item(plot)).export(toBytes=True)
    data = QByteArray()
    buffer = QBuffer(data)
    buffer.open(QIODevice.OpenModeFlag.WriteOnly)
    image.save(buffer, "PNG")
    return bytes(data)


@contextmanager
def _export_mode(widget: QWidget, painter):
    """pyqtgraph items of ``widget``'s scene draw for export meanwhile (what pyqtgraph's exporters do)."""
    scene = widget.scene() if hasattr(widget, "scene") and callable(widget.scene) else None
    import pyqtgraph as pg

    everything = scene.items() if scene is not None else []
    items = [item for item in everything if hasattr(item, "setExportMode")]
    # an empty text item (a plot's message, when there is none) clips to an empty path, which the SVG
    # writes as d="" (invalid SVG path data): it draws nothing, so it sits the export out
    silent = [item for item in everything if isinstance(item, pg.TextItem) and item.isVisible()
              and not item.toPlainText()]
    options = {"antialias": True, "background": None, "painter": painter}
    for item in items:
        item.setExportMode(True, options)
    for item in silent:
        item.hide()
    try:
        yield
    finally:
        for item in items:
            item.setExportMode(False)
        for item in silent:
            item.show()


def save_svg(widget: QWidget, path: str) -> None:
    """Render a widget into an SVG file with Qt's own SVG generator, one SVG unit per screen pixel."""
    from PySide6.QtGui import QPainter
    from PySide6.QtSvg import QSvgGenerator

    generator = QSvgGenerator(QSvgGenerator.SvgVersion.Svg11)  # 1.1 has clip paths: a view box clips its data
    generator.setFileName(path)
    generator.setResolution(widget.logicalDpiX())  # see the module's docstring
    generator.setSize(widget.size())
    generator.setViewBox(widget.rect())
    generator.setTitle("Prunescope plot")
    painter = QPainter(generator)
    try:
        with _export_mode(widget, painter):
            widget.render(painter)
    finally:
        painter.end()


def export_plot_to(plot, path: str) -> None:
    """Save a pyqtgraph plot (PlotWidget or GraphicsLayoutWidget) as PNG or SVG (by the suffix), atomically."""
    with atomic_path(path) as tmp:
        if path.lower().endswith(".svg"):
            save_svg(plot, str(tmp))  # pyqtgraph's SVG exporter cannot parse the paths Qt 6.11 writes
        else:
            import pyqtgraph.exporters as exporters

            exporters.ImageExporter(_top_item(plot)).export(str(tmp))


def plot_name(plot) -> str:
    """What the Export menu calls a plot: its ``exportName`` property, else its title, else its class."""
    name = plot.property("exportName")
    if name:
        return str(name)
    item = _top_item(plot)
    title = getattr(getattr(item, "titleLabel", None), "text", "")
    return title or type(plot).__name__


def plots_on_screen(root: QWidget) -> list:
    """Every pyqtgraph view under ``root`` that is on screen now (visible, not on a hidden tab, not empty
    of area), in the order they sit: top to bottom, then left to right."""
    import pyqtgraph as pg

    views = [w for w in root.findChildren(pg.GraphicsView) if w.isVisible() and w.width() > 1 and w.height() > 1]
    return sorted(views, key=lambda w: (w.mapTo(root, w.rect().topLeft()).y(), w.mapTo(root, w.rect().topLeft()).x()))
