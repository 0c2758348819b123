"""A sensitivity analysis as a table of layers by levels, each cell coloured by the points it loses (as AIMET's
eval-score table): green where nothing is lost, amber at one point, red from ten. A skipped level says
"skipped", with the reason in its tooltip: it measured nothing, so it is never coloured as robust.

Cells are stored in Qt (a QTableWidget): painting never calls into Python while a background task runs.
"""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QColor
from PySide6.QtWidgets import QAbstractItemView, QHeaderView, QTableWidget, QTableWidgetItem

from core.analysis.curves import points_lost
from core.analysis.sensitivity import Point, Sensitivity
from core.report.reports import human_bytes
from core.report.sensitivity import scale_of
from gui import theme

SCALE = ((0.0, theme.GOOD), (1.0, theme.WARM), (10.0, theme.DANGER))
"""Points lost -> colour, interpolated between the stops (and held beyond the ends)."""
STRENGTH = 0.5
"""How much of a stop's colour a cell's background takes over the panel's (the text stays readable)."""
LAYER, LEVEL = Qt.ItemDataRole.UserRole + 1, Qt.ItemDataRole.UserRole + 2


def _mix(a: QColor, b: QColor, t: float) -> QColor:
    return QColor(*(round(x + (y - x) * t) for x, y in zip(a.getRgb()[:3], b.getRgb()[:3])))


def heat_colour(lost: float) -> QColor:
    """A cell's background for ``lost`` points (see :data:`SCALE`)."""
    stops = [(at, QColor(colour)) for at, colour in SCALE]
    if lost <= stops[0][0]:
        colour = stops[0][1]
    elif lost >= stops[-1][0]:
        colour = stops[-1][1]
    else:
        (a, ca), (b, cb) = next(((s, e) for s, e in zip(stops, stops[1:]) if s[0] <= lost <= e[0]))
        colour = _mix(ca, cb, (lost - a) / (b - a))
    return _mix(QColor(theme.PANEL), colour, STRENGTH)


def metric_text(result: Sensitivity, value: float) -> str:
    """The metric as the table and the command line write it (top-1 in percent)."""
    scale, _unit = scale_of(result)
    return f"{scale * value:.2f}" if scale != 1.0 else f"{value:.4g}"


class SensitivityHeatmap(QTableWidget):
    sig_cell_clicked = Signal(str, float)
    """A measured cell was clicked: (layer, level)."""
    sig_skipped_clicked = Signal(str, float, str)
    """A skipped cell was clicked: (layer, level, why it was skipped)."""

    def __init__(self, parent=None) -> None:
        super().__init__(0, 0, parent)
        self.setObjectName("sensitivityHeatmap")
        self.result: Sensitivity | None = None
        self.show_change = False  # cells show the points lost rather than the metric
        self.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.setShowGrid(True)
        self.setAlternatingRowColors(False)
        self.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        self.horizontalHeader().setMinimumSectionSize(56)
        self.verticalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.verticalHeader().setDefaultAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter)
        self.cellClicked.connect(self._clicked)

    def show_result(self, result: Sensitivity | None) -> None:
        """Draw ``result`` (None: empty)."""
        self.result = result
        self.clear()
        if result is None:
            self.setRowCount(0)
            self.setColumnCount(0)
            return
        layers = list(dict.fromkeys(p.layer for p in result.points))
        self.setRowCount(len(layers))
        self.setColumnCount(len(result.levels))
        self.setHorizontalHeaderLabels([f"{level:g}" for level in result.levels])
        self.setVerticalHeaderLabels(layers)
        for col, level in enumerate(result.levels):
            self.horizontalHeaderItem(col).setToolTip(f"{result.level_name} {level:g}")
        for row, layer in enumerate(layers):
            self.verticalHeaderItem(row).setToolTip(f"{layer}: {result.original_bytes[layer]:,} bytes uncompressed; "
                                                    f"run {result.paths.get(layer, '?')}")
            points = {p.level: p for p in result.curve(layer)}
            for col, level in enumerate(result.levels):
                self.setItem(row, col, self._item(result, points[level]))

    def set_show_change(self, on: bool) -> None:
        """Cells show the change from the unperturbed model in points (on) or the metric (off)."""
        self.show_change = on
        self.show_result(self.result)

    def _item(self, result: Sensitivity, p: Point) -> QTableWidgetItem:
        item = QTableWidgetItem()
        item.setData(LAYER, p.layer)
        item.setData(LEVEL, p.level)
        item.setTextAlignment(Qt.AlignmentFlag.AlignCenter)
        where = f"{p.layer} at {result.level_name} {p.level:g}"
        if p.skipped is not None or p.metric is None:
            item.setText("skipped")
            item.setForeground(QColor(theme.MUTED))
            item.setBackground(QColor(theme.BACKGROUND))
            item.setToolTip(f"{where}: not measured ({p.skipped or 'no figure'}), so nothing is known about it")
            return item
        lost = points_lost(result, p.metric)
        item.setText(f"{-lost:+.2f}" if self.show_change and lost is not None else metric_text(result, p.metric))
        item.setBackground(heat_colour(lost if lost is not None else 0.0))
        item.setForeground(QColor(theme.TEXT))
        size = (f"; the layer {human_bytes(p.bytes)} in the file (of {human_bytes(result.original_bytes[p.layer])})"
                if p.bytes is not None else "")
        change = f" ({-lost:+.2f} points)" if lost is not None else ""
        item.setToolTip(f"{where}: {result.metric_name} {metric_text(result, p.metric)}{scale_of(result)[1]}"
                        f"{change}{size}\nclick to give {p.layer} this {result.level_name} in the recipe")
        return item

    def cell_of(self, layer: str, level: float) -> QTableWidgetItem:
        """The cell of ``layer`` at ``level`` (for tests and the page)."""
        for row in range(self.rowCount()):
            for col in range(self.columnCount()):
                item = self.item(row, col)
                if item is not None and item.data(LAYER) == layer and item.data(LEVEL) == level:
                    return item
        raise KeyError((layer, level))

    def needed_height(self) -> int:
        """The height that shows every row without scrolling."""
        bar = self.horizontalScrollBar()
        return (self.horizontalHeader().height() + self.verticalHeader().length() + 2 * self.frameWidth()
                + (bar.sizeHint().height() if bar.maximum() > 0 else 0) + 2)

    def _clicked(self, row: int, col: int) -> None:
        item = self.item(row, col)
        if item is None or self.result is None:
            return
        layer, level = item.data(LAYER), float(item.data(LEVEL))
        point = next(p for p in self.result.curve(layer) if p.level == level)
        if point.skipped is not None or point.metric is None:
            self.sig_skipped_clicked.emit(layer, level, point.skipped or "not measured")
        else:
            self.sig_cell_clicked.emit(layer, level)
