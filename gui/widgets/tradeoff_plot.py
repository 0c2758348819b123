"""Accuracy against compressed size: every variant a point, the Pareto front drawn, the original marked."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Signal
from PySide6.QtWidgets import QLabel, QVBoxLayout, QWidget

from core.report.reports import human_bytes, size_change
from core.pipeline.variants import Variant, pareto_front
from gui import theme
from gui.widgets.bytes_axis import BytesLogAxis


class TradeoffPlot(QWidget):
    """Hovering a point names its variant; clicking it makes it current."""

    sig_variant_clicked = Signal(int)
    """The user clicked the point of this variant id."""

    def __init__(self, parent: QWidget | None = None, title: bool = True) -> None:
        super().__init__(parent)
        self.setObjectName("panel")
        # x is log10(bytes), ticks written as sizes (a log axis of its own: pyqtgraph's ran its labels together)
        self.plot = pg.PlotWidget(axisItems={"bottom": BytesLogAxis("bottom")})
        self.plot.setProperty("exportName", "Accuracy against size")
        theme.grid(self.plot)
        self.plot.setLabel("bottom", "size on disk (log scale)")
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
        self._current_id: int | None = None
        view = self.plot.getPlotItem().getViewBox()
        view.sigRangeChanged.connect(self._place_labels)
        view.sigResized.connect(self._place_labels)
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
            label = pg.TextItem(v.name if not v.is_original else "original", color=theme.MUTED, anchor=(0.5, 1.5))
            label.setPos(np.log10(v.size_bytes), 100 * v.accuracy)
            self.plot.addItem(label)
            self.labels.append(label)
        self.points.setData(spots)
        self.front.setData([np.log10(sizes[i]) for i in front], [100 * accuracy[i] for i in front])
        self._current_id = current_id
        self._place_labels()
        original = next((v for v in self.variants if v.is_original), None)
        best = min((self.variants[i] for i in front if not self.variants[i].is_original),
                   key=lambda v: v.size_bytes, default=None)
        if original and best:
            self.caption.setText(f"{len(self.variants)} variants; Pareto front in dashes. Smallest on the front: "
                                 f"{best.name}, {human_bytes(best.size_bytes)} "
                                 f"({size_change(original.size_bytes, best.size_bytes)}), {best.accuracy:.2%}.")
        else:
            self.caption.setText("The original is the star. Apply a recipe to add a variant.")

    ANCHORS = ((0.5, 1.5), (0.5, -0.5), (-0.12, 0.5), (1.12, 0.5), (0.0, 1.5), (1.0, 1.5), (0.0, -0.5), (1.0, -0.5))
    """Where a name may sit, tried in turn: above its point, below, right, left, then above or below
    and to one side (TextItem anchors)."""

    def _place_labels(self, *_args) -> None:
        """Names that never cover each other or another point: the current variant's first, then the
        Pareto front's, the rest, the original's last; each takes the first free place around its point,
        and one with none stays hidden (hovering the point still names it)."""
        from PySide6.QtCore import QPointF, QRectF

        view = self.plot.getPlotItem().getViewBox()
        if not self.labels or view.width() <= 0:
            return
        area = view.sceneBoundingRect()
        points = [view.mapViewToScene(QPointF(float(np.log10(v.size_bytes)), 100 * v.accuracy)) for v in self.variants]
        taken = [QRectF(p.x() - 9, p.y() - 9, 18, 18) for p in points]
        order = sorted(range(len(self.variants)), key=lambda i: (
            self.variants[i].id != self._current_id, self.variants[i].is_original,
            self.variants[i].id not in self.front_ids, i))
        for i in order:
            label, point = self.labels[i], points[i]
            size = label.textItem.boundingRect().size()
            own = taken[i]
            for anchor in self.ANCHORS:
                rect = QRectF(point.x() - anchor[0] * size.width(), point.y() - anchor[1] * size.height(),
                              size.width(), size.height())
                if area.contains(rect) and not any(rect.intersects(r) for r in taken if r is not own):
                    label.setAnchor(anchor)
                    label.setVisible(True)
                    taken.append(rect)
                    break
            else:
                label.setVisible(False)

    def placed_label_rects(self) -> list:
        """The scene rectangles of the names shown now (for tests)."""
        return [label.sceneBoundingRect() for label in self.labels if label.isVisible()]

    def _tip(self, x, y, data):
        v = next((v for v in self.variants if v.id == data), None)
        if v is None:
            return ""
        return f"{v.name}\n{human_bytes(v.size_bytes)} · {v.accuracy:.2%}\nclick to make it current"

    def _clicked(self, _item, points, _event=None) -> None:
        if len(points):
            self.sig_variant_clicked.emit(int(points[0].data()))
