"""Accuracy against compressed size: every variant a point, the Pareto front drawn, the original marked."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Signal
from PySide6.QtWidgets import QLabel, QVBoxLayout, QWidget

from core.report.reports import human_bytes
from core.pipeline.variants import Variant, pareto_front
from gui import theme


class TradeoffPlot(QWidget):
    """Hovering a point names its variant; clicking it makes it current."""

    sig_variant_clicked = Signal(int)
    """The user clicked the point of this variant id."""

    def __init__(self, parent: QWidget | None = None, title: bool = True) -> None:
        super().__init__(parent)
        self.setObjectName("panel")
        self.plot = pg.PlotWidget()
        self.plot.setProperty("exportName", "Accuracy against size")
        self.plot.setLogMode(x=True, y=False)
        theme.grid(self.plot)
        self.plot.setLabel("bottom", "size on disk (bytes, log scale)")
        self.plot.setLabel("left", "test accuracy (%)")
        self.plot.getAxis("left").enableAutoSIPrefix(False)
        self.plot.getPlotItem().getViewBox().setDefaultPadding(0.08)  # room for the points' names
        self.front = pg.PlotDataItem(pen=pg.mkPen(theme.ACCENT, width=2, style=pg.QtCore.Qt.PenStyle.DashLine))
        self.points = pg.ScatterPlotItem(size=14, hoverable=True, hoverSize=18, tip=self._tip,
                                         pen=pg.mkPen(theme.BACKGROUND, width=1.5))
        self.points.sigClicked.connect(self._clicked)
        self.plot.addItem(self.front)
        self.plot.addItem(self.points)
        self.labels: list[pg.TextItem] = []
        self.caption = QLabel("", objectName="caption", wordWrap=True)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(10, 8, 10, 8)
        if title:
            layout.addWidget(QLabel("Accuracy against size", objectName="panelTitle"))
        layout.addWidget(self.plot, 1)
        layout.addWidget(self.caption)
        self.variants: list[Variant] = []
        self.front_ids: list[int] = []

    def show_variants(self, variants: list[Variant], current_id: int | None) -> None:
        self.variants = [v for v in variants if v.accuracy is not None and v.size_bytes > 0]
        for label in self.labels:
            self.plot.removeItem(label)
        self.labels = []
        if not self.variants:
            self.points.setData([])
            self.front.setData([], [])
            self.caption.setText("Apply a recipe to see its variant here.")
            return
        sizes = [v.size_bytes for v in self.variants]
        accuracy = [v.accuracy for v in self.variants]
        front = pareto_front(sizes, accuracy)
        self.front_ids = [self.variants[i].id for i in front]
        spots = []
        for v in self.variants:
            colour = theme.WARM if v.is_original else theme.GOOD if v.id in self.front_ids else theme.ACCENT
            spots.append({"pos": (np.log10(v.size_bytes), 100 * v.accuracy), "data": v.id,
                          "symbol": "star" if v.is_original else "o", "size": 22 if v.is_original else 14,
                          "brush": pg.mkBrush(colour),
                          "pen": pg.mkPen("#ffffff" if v.id == current_id else theme.BACKGROUND,
                                          width=3 if v.id == current_id else 1.5)})
            label = pg.TextItem(v.name if not v.is_original else "original", color=theme.MUTED, anchor=(0.5, 1.6))
            label.setPos(np.log10(v.size_bytes), 100 * v.accuracy)
            self.plot.addItem(label)
            self.labels.append(label)
        self.points.setData(spots)
        self.front.setData([sizes[i] for i in front], [100 * accuracy[i] for i in front])
        original = next((v for v in self.variants if v.is_original), None)
        best = min((self.variants[i] for i in front if not self.variants[i].is_original),
                   key=lambda v: v.size_bytes, default=None)
        if original and best:
            self.caption.setText(f"{len(self.variants)} variants; Pareto front in dashes. Smallest on the front: "
                                 f"{best.name}, {human_bytes(best.size_bytes)} "
                                 f"({original.size_bytes / best.size_bytes:.0f}x smaller), {best.accuracy:.2%}.")
        else:
            self.caption.setText("The original is the star. Apply a recipe to add a variant.")

    def _tip(self, x, y, data):
        v = next((v for v in self.variants if v.id == data), None)
        if v is None:
            return ""
        return f"{v.name}\n{human_bytes(v.size_bytes)} · {v.accuracy:.2%}\nclick to make it current"

    def _clicked(self, _item, points, _event=None) -> None:
        if len(points):
            self.sig_variant_clicked.emit(int(points[0].data()))
