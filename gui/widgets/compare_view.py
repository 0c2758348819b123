"""Two variants side by side: sizes and accuracy, a per-layer diff, overlaid weights, per-class accuracy,
and the test images whose prediction changed."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtGui import QImage, QPixmap
from PySide6.QtWidgets import (QComboBox, QGridLayout, QHBoxLayout, QLabel, QSplitter, QTableWidget, QTableWidgetItem,
                               QVBoxLayout, QWidget)

from core.report.reports import human_bytes
from core.pipeline.variants import Variant, changed_predictions, compare_layers, per_class_accuracy
from gui import theme

MAX_IMAGES = 24


def _pixmap(image: np.ndarray, scale: int = 3) -> QPixmap:
    """A uint8 (H, W) or (C, H, W) image as a pixmap, grey or RGB."""
    array = np.ascontiguousarray(image[0] if image.shape[0] == 1 else image.transpose(1, 2, 0))
    if array.ndim == 2:
        qimage = QImage(array.data, array.shape[1], array.shape[0], array.strides[0], QImage.Format.Format_Grayscale8)
    else:
        qimage = QImage(array.data, array.shape[1], array.shape[0], array.strides[0], QImage.Format.Format_RGB888)
    return QPixmap.fromImage(qimage.copy()).scaled(array.shape[1] * scale, array.shape[0] * scale)


class CompareView(QWidget):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("panel")
        self.variants: list[Variant] = []
        self.images = None
        self.classes: tuple[str, ...] = ()
        self.a_box, self.b_box = QComboBox(), QComboBox()
        self.summary = QLabel("", objectName="compareSummary", wordWrap=True)
        self.table = QTableWidget(0, 6)
        self.table.setHorizontalHeaderLabels(["Tensor", "Params", "Kept", "Bits", "Bytes", "Change"])
        self.table.verticalHeader().hide()
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QTableWidget.SelectionBehavior.SelectRows)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.weights_plot = pg.PlotWidget(title="|w| of the selected tensor's layer: A dashed, B filled")
        self.curve_a = pg.PlotDataItem(stepMode="center", pen=pg.mkPen(theme.MUTED, style=Qt.PenStyle.DashLine))
        self.curve_b = pg.PlotDataItem(stepMode="center", fillLevel=0, pen=pg.mkPen(theme.ACCENT),
                                       brush=pg.mkBrush(*theme.ACCENT_FILL))
        self.weights_plot.setProperty("exportName", "Compare: weights of the selected tensor")
        self.weights_plot.addItem(self.curve_a)
        self.weights_plot.addItem(self.curve_b)
        self.class_plot = pg.PlotWidget(title="accuracy per class: A grey, B blue")
        self.class_bars_a = pg.BarGraphItem(x=[], height=[], width=0.38, brush=pg.mkBrush(theme.MUTED))
        self.class_bars_b = pg.BarGraphItem(x=[], height=[], width=0.38, brush=pg.mkBrush(theme.ACCENT))
        self.class_plot.setProperty("exportName", "Compare: accuracy per class")
        self.class_plot.addItem(self.class_bars_a)
        self.class_plot.addItem(self.class_bars_b)
        self.changed_title = QLabel("", objectName="panelTitle")
        self.changed_grid = QGridLayout()
        changed = QWidget()
        changed_layout = QVBoxLayout(changed)
        changed_layout.addWidget(self.changed_title)
        changed_layout.addLayout(self.changed_grid)
        changed_layout.addStretch(1)

        pickers = QHBoxLayout()
        pickers.addWidget(QLabel("Compare A", objectName="caption"))
        pickers.addWidget(self.a_box, 1)
        pickers.addWidget(QLabel("with B", objectName="caption"))
        pickers.addWidget(self.b_box, 1)
        top = QSplitter(Qt.Orientation.Horizontal)
        top.addWidget(self.table)
        top.addWidget(self.weights_plot)
        bottom = QSplitter(Qt.Orientation.Horizontal)
        bottom.addWidget(self.class_plot)
        bottom.addWidget(changed)
        body = QSplitter(Qt.Orientation.Vertical)
        body.addWidget(top)
        body.addWidget(bottom)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(10, 8, 10, 8)
        layout.addLayout(pickers)
        layout.addWidget(self.summary)
        layout.addWidget(body, 1)
        self.a_box.currentIndexChanged.connect(self.refresh)
        self.b_box.currentIndexChanged.connect(self.refresh)
        self.table.currentCellChanged.connect(lambda *_: self._draw_weights())

    def set_variants(self, variants: list[Variant], current_id: int | None, images=None, classes=()) -> None:
        """The variants to choose from; A defaults to the original, B to the current one."""
        self.variants, self.images, self.classes = list(variants), images, tuple(classes)
        ids = [v.id for v in variants]
        a_choice = self.a_box.currentData() if self.a_box.currentData() in ids else (ids[0] if ids else None)
        for box, chosen in ((self.a_box, a_choice), (self.b_box, current_id)):  # B follows the current variant
            box.blockSignals(True)
            box.clear()
            for v in variants:
                box.addItem("original" if v.is_original else v.name, v.id)
            box.setCurrentIndex(max(0, box.findData(chosen)))
            box.blockSignals(False)
        self.refresh()

    def pair(self) -> tuple[Variant | None, Variant | None]:
        by_id = {v.id: v for v in self.variants}
        return by_id.get(self.a_box.currentData()), by_id.get(self.b_box.currentData())

    def refresh(self) -> None:
        a, b = self.pair()
        if a is None or b is None:
            self.summary.setText("Apply a recipe to have something to compare.")
            self.table.setRowCount(0)
            return
        acc = (f"{a.accuracy:.2%} → {b.accuracy:.2%} ({(b.accuracy - a.accuracy) * 100:+.2f} points)"
               if a.accuracy is not None and b.accuracy is not None else "not measured")
        lat = (f"{a.latency_ms:.2f} → {b.latency_ms:.2f} ms" if a.latency_ms and b.latency_ms else "not measured")
        self.summary.setText(f"<b>Size</b> {human_bytes(a.size_bytes)} → {human_bytes(b.size_bytes)} "
                             f"({a.size_bytes / b.size_bytes:.1f}x)   <b>Accuracy</b> {acc}   <b>Latency</b> {lat}")
        self._fill_table(a, b)
        self._draw_weights()
        self._draw_classes(a, b)
        self._show_changed(a, b)

    def _fill_table(self, a: Variant, b: Variant) -> None:
        rows = compare_layers(a, b)
        self.table.setRowCount(len(rows))
        for i, r in enumerate(rows):
            change = f"{(r.bytes[1] - r.bytes[0]) / r.bytes[0]:+.0%}" if r.bytes[0] else "new"
            cells = (r.name, f"{r.params[0]:,} → {r.params[1]:,}" if r.params[0] != r.params[1] else f"{r.params[0]:,}",
                     f"{r.kept[0]:.1%} → {r.kept[1]:.1%}", f"{r.weight_bits[0]} → {r.weight_bits[1]}",
                     f"{human_bytes(r.bytes[0])} → {human_bytes(r.bytes[1])}", change)
            for j, text in enumerate(cells):
                self.table.setItem(i, j, QTableWidgetItem(text))
        self.table.resizeColumnsToContents()
        if rows and self.table.currentRow() < 0:
            self.table.setCurrentCell(0, 0)

    def _draw_weights(self) -> None:
        a, b = self.pair()
        row = self.table.currentRow()
        item = self.table.item(row, 0) if row >= 0 else None
        layer = item.text().rsplit(".", 1)[0] if item else ""
        for curve, variant in ((self.curve_a, a), (self.curve_b, b)):
            stats = variant.weights.get(layer) if variant is not None else None
            if stats is None:
                curve.setData([], [])
            else:
                curve.setData(stats.abs_hist.edges, stats.abs_hist.counts.astype(float))

    def _draw_classes(self, a: Variant, b: Variant) -> None:
        if a.predictions is None or b.predictions is None:
            self.class_bars_a.setOpts(x=[], height=[])
            self.class_bars_b.setOpts(x=[], height=[])
            return
        n = int(max(a.labels.max(), a.predictions.max(), b.predictions.max())) + 1
        x = np.arange(n)
        self.class_bars_a.setOpts(x=x - 0.2, height=np.nan_to_num(per_class_accuracy(a.predictions, a.labels, n)))
        self.class_bars_b.setOpts(x=x + 0.2, height=np.nan_to_num(per_class_accuracy(b.predictions, b.labels, n)))
        names = self.classes if len(self.classes) >= n else tuple(str(i) for i in range(n))
        self.class_plot.getAxis("bottom").setTicks([[(i, names[i][:8]) for i in range(n)]])
        low = min(np.nanmin(per_class_accuracy(v.predictions, v.labels, n)) for v in (a, b))
        self.class_plot.setYRange(max(0.0, low - 0.02), 1.0)

    def _show_changed(self, a: Variant, b: Variant) -> None:
        while self.changed_grid.count():
            widget = self.changed_grid.takeAt(0).widget()
            if widget is not None:
                widget.deleteLater()
        changed = changed_predictions(a, b)
        wrong = changed["now_wrong"]
        self.changed_title.setText(f"B now gets {len(wrong)} test images wrong that A got right "
                                   f"(and {len(changed['now_right'])} right that A got wrong)")
        if self.images is None:
            return
        names = self.classes or tuple(str(i) for i in range(int(b.labels.max()) + 1))
        for k, index in enumerate(wrong[:MAX_IMAGES]):
            cell = QLabel()
            cell.setPixmap(_pixmap(np.asarray(self.images[index])))
            cell.setToolTip(f"test image {index}")
            caption = QLabel(f"{names[b.labels[index]]} → {names[b.predictions[index]]}", objectName="caption")
            box = QWidget()
            box_layout = QVBoxLayout(box)
            box_layout.setContentsMargins(2, 2, 2, 2)
            box_layout.addWidget(cell, 0, Qt.AlignmentFlag.AlignHCenter)
            box_layout.addWidget(caption, 0, Qt.AlignmentFlag.AlignHCenter)
            self.changed_grid.addWidget(box, k // 8, k % 8)

    def shown_images(self) -> int:
        return self.changed_grid.count()
