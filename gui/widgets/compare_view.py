"""Two variants side by side: sizes and accuracy, a per-layer diff, overlaid weights, per-class accuracy,
and the test images whose prediction changed."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QSize, Qt
from PySide6.QtGui import QIcon, QImage, QPixmap
from PySide6.QtWidgets import (QComboBox, QHBoxLayout, QLabel, QListView, QListWidget, QListWidgetItem, QSplitter,
                               QTableWidget, QTableWidgetItem, QVBoxLayout, QWidget)

from core.report.html_report import layer_macs, macs_change
from core.report.reports import human_bytes, latency_change, times
from core.pipeline.scores import variant_score
from core.pipeline.variants import Variant, changed_predictions, compare_layers, per_class_accuracy
from gui import theme

MAX_IMAGES = 24
IMAGE_PIXELS = 84  # a 28x28 digit at 3x
MAX_TABLE_WIDTH = 640  # the per-tensor table's least width, at most (the weights plot beside it takes the rest)


def _macs_cell(a: Variant, b: Variant, tensor: str) -> str:
    """A weight tensor's layer's MACs per sample in both variants ("" for other tensors)."""
    before, after = layer_macs(a, tensor), layer_macs(b, tensor)
    if not before and not after:
        return ""
    return before if before == after else f"{before or '—'} → {after or '—'}"


def _pixmap(image: np.ndarray, scale: int = 3) -> QPixmap:
    """A uint8 (H, W) or (C, H, W) image as a pixmap, grey or RGB."""
    array = np.ascontiguousarray(image[0] if image.shape[0] == 1 else image.transpose(1, 2, 0))
    if array.ndim == 2:
        qimage = QImage(array.data, array.shape[1], array.shape[0], array.strides[0], QImage.Format.Format_Grayscale8)
    else:
        qimage = QImage(array.data, array.shape[1], array.shape[0], array.strides[0], QImage.Format.Format_RGB888)
    return QPixmap.fromImage(qimage.copy()).scaled(array.shape[1] * scale, array.shape[0] * scale)


def _score_change(a: Variant, b: Variant) -> str:
    """"<b>Cosine</b> 1.0000 → 0.9987 (-0.0013)": both variants' figure by its name, and the STS Spearman
    when both were scored on sentence pairs; two different metrics are said, never subtracted."""
    sa, sb = variant_score(a), variant_score(b)
    if sa is None or sb is None:
        text = "<b>Accuracy</b> not measured"
    elif sa.name != sb.name:
        text = f"<b>Measured differently</b> A: {sa.text()}, B: {sb.text()}"
    else:
        name = "Accuracy" if sa.name == "test accuracy" else sa.name.capitalize()
        text = f"<b>{name}</b> {sa.change(sb)}" + (" (lower is better)" if sa.lower_is_better else "")
    if a.pairs is not None and b.pairs is not None and a.pairs.spearman is not None and b.pairs.spearman is not None:
        text += f"   <b>STS Spearman</b> {a.pairs.spearman:.4f} → {b.pairs.spearman:.4f}"
    return text


class CompareView(QWidget):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("panel")
        self.variants: list[Variant] = []
        self.images = None
        self.classes: tuple[str, ...] = ()
        self.a_box, self.b_box = QComboBox(), QComboBox()
        self.summary = QLabel("", objectName="compareSummary", wordWrap=True)
        self.table = QTableWidget(0, 7)
        self.table.setHorizontalHeaderLabels(["Tensor", "Params", "Kept", "Bits", "Bytes", "Change", "MACs"])
        self.table.verticalHeader().hide()
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QTableWidget.SelectionBehavior.SelectRows)
        # columns as wide as their contents, the table as wide as its columns (_fit_table): a stretched last
        # column fed its width back into the table's and pushed Bytes and Change behind a scrollbar
        self.table.horizontalHeader().setStretchLastSection(False)
        self.weights_plot = pg.PlotWidget(title="|w| of the selected tensor: A dashed, B filled")
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
        self.changed_title = QLabel("", objectName="panelTitle", wordWrap=True)
        # the changed images flow into as many columns as fit and scroll: a grid of fixed rows overlapped
        # and set the window's minimum height (taller than a 768-pixel screen)
        self.changed_images = QListWidget(objectName="changedImages")
        self.changed_images.setViewMode(QListView.ViewMode.IconMode)
        self.changed_images.setResizeMode(QListView.ResizeMode.Adjust)
        self.changed_images.setMovement(QListView.Movement.Static)
        self.changed_images.setWrapping(True)
        self.changed_images.setUniformItemSizes(True)
        self.changed_images.setSpacing(4)
        self.changed_images.setIconSize(QSize(IMAGE_PIXELS, IMAGE_PIXELS))
        self.changed_images.setSelectionMode(QListView.SelectionMode.NoSelection)
        self.changed_images.setMinimumHeight(IMAGE_PIXELS + 12)  # one row of digits, their captions may scroll
        changed = QWidget()
        changed_layout = QVBoxLayout(changed)
        changed_layout.setContentsMargins(6, 0, 0, 0)
        changed_layout.addWidget(self.changed_title)
        changed_layout.addWidget(self.changed_images, 1)

        pickers = QHBoxLayout()
        pickers.addWidget(QLabel("Compare A", objectName="caption"))
        pickers.addWidget(self.a_box, 1)
        pickers.addWidget(QLabel("with B", objectName="caption"))
        pickers.addWidget(self.b_box, 1)
        self.top = top = QSplitter(Qt.Orientation.Horizontal)
        top.addWidget(self.table)
        top.addWidget(self.weights_plot)
        top.setStretchFactor(1, 1)  # the table keeps the width its columns need (see _fit_table)
        bottom = QSplitter(Qt.Orientation.Horizontal)
        bottom.addWidget(self.class_plot)
        bottom.addWidget(changed)
        bottom.setSizes([400, 600])
        body = QSplitter(Qt.Orientation.Vertical)
        body.addWidget(top)
        body.addWidget(bottom)
        body.setSizes([1, 1])  # half each: the table's rows and the images both get room
        self.body = body
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
        score = _score_change(a, b)
        lat = latency_change(a.latency, b.latency) if a.latency and b.latency else "not measured"  # stored ones
        macs = macs_change(a, b) if a.cost is not None and b.cost is not None else "not counted"
        self.summary.setText(f"<b>Size</b> {human_bytes(a.size_bytes)} → {human_bytes(b.size_bytes)} "
                             f"({times(a.size_bytes / b.size_bytes)})   {score}   <b>Latency</b> {lat}"
                             f"   <b>MACs</b> {macs}")
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
                     f"{human_bytes(r.bytes[0])} → {human_bytes(r.bytes[1])}", change, _macs_cell(a, b, r.name))
            for j, text in enumerate(cells):
                self.table.setItem(i, j, QTableWidgetItem(text))
        self.table.resizeColumnsToContents()
        if rows and self.table.currentRow() < 0:
            self.table.setCurrentCell(0, 0)
        self._fit_table()

    def _fit_table(self) -> None:
        """Give the table the width of all its columns (Bytes and Change were behind a scrollbar), leaving
        the weights plot at least a third of the row, and the height of its rows, leaving the class plot
        and the changed images at least 45% of the page."""
        header = self.table.horizontalHeader()
        needed = (sum(header.sectionSize(i) for i in range(header.count())) + 2 * self.table.frameWidth()
                  + self.table.verticalScrollBar().sizeHint().width() + 2)
        total = sum(self.top.sizes())
        self.table.setMinimumWidth(min(needed, MAX_TABLE_WIDTH))  # the splitter cannot squeeze it again
        if total > 0:
            width = min(needed, total * 2 // 3)
            self.top.setSizes([width, total - width])
        rows = self.table.rowCount()
        tall = (header.height() + 2 * self.table.frameWidth() + 4
                + sum(self.table.rowHeight(i) for i in range(rows)))
        total = sum(self.body.sizes())
        if total > 0 and rows:
            height = min(tall, total * 55 // 100)
            self.body.setSizes([height, total - height])

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
        self.changed_images.clear()
        if a.predictions is None or b.predictions is None:  # fidelity on one's own inputs: no labels to be wrong
            self.changed_title.setText("No labelled test set: no predictions to compare (the variants are "
                                       "measured against the original on your inputs)")
            return
        changed = changed_predictions(a, b)
        wrong = changed["now_wrong"]
        self.changed_title.setText(f"B now gets {len(wrong)} test images wrong that A got right "
                                   f"(and {len(changed['now_right'])} right that A got wrong)")
        if self.images is None:
            return
        names = self.classes or tuple(str(i) for i in range(int(b.labels.max()) + 1))
        for index in wrong[:MAX_IMAGES]:
            item = QListWidgetItem(QIcon(_pixmap(np.asarray(self.images[index]))),
                                   f"{names[b.labels[index]]} → {names[b.predictions[index]]}")
            item.setToolTip(f"test image {index}: a {names[b.labels[index]]}, which B takes for a "
                            f"{names[b.predictions[index]]}")
            item.setSizeHint(QSize(IMAGE_PIXELS + 16, IMAGE_PIXELS + 28))
            self.changed_images.addItem(item)

    def shown_images(self) -> int:
        return self.changed_images.count()
