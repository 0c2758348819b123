"""Plots to files: PNG and SVG exports, and PNG bytes for the HTML report."""

from __future__ import annotations

from PySide6.QtWidgets import QWidget

from core.fileio import atomic_path


def plot_png(plot) -> bytes:
    """A pyqtgraph plot rendered to PNG bytes."""
    import pyqtgraph.exporters as exporters
    from PySide6.QtCore import QBuffer, QByteArray, QIODevice

    image = exporters.ImageExporter(plot.getPlotItem()).export(toBytes=True)
    data = QByteArray()
    buffer = QBuffer(data)
    buffer.open(QIODevice.OpenModeFlag.WriteOnly)
    image.save(buffer, "PNG")
    return bytes(data)


def save_svg(widget: QWidget, path: str) -> None:
    """Render a widget into an SVG file with Qt's own SVG generator."""
    from PySide6.QtGui import QPainter
    from PySide6.QtSvg import QSvgGenerator

    generator = QSvgGenerator()
    generator.setFileName(path)
    generator.setSize(widget.size())
    generator.setViewBox(widget.rect())
    generator.setTitle("Prunescope plot")
    painter = QPainter(generator)
    try:
        widget.render(painter)
    finally:
        painter.end()


def export_plot_to(plot, path: str) -> None:
    """Save a pyqtgraph plot as PNG or SVG (by the suffix), atomically."""
    with atomic_path(path) as tmp:
        if path.lower().endswith(".svg"):
            save_svg(plot, str(tmp))  # pyqtgraph's SVG exporter cannot parse the paths Qt 6.11 writes
        else:
            import pyqtgraph.exporters as exporters

            exporters.ImageExporter(plot.getPlotItem()).export(str(tmp))
