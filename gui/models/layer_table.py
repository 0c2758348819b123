"""The layer table: a Qt table model over the engine's :class:`~core.inventory.LayerInfo` and measurements."""

from __future__ import annotations

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QSortFilterProxyModel, Qt
from PySide6.QtGui import QColor

from core.report import human_bytes
from gui import theme
from gui.session import Measurements

SORT_ROLE = Qt.ItemDataRole.UserRole + 1
COLUMNS = ("Layer", "Type", "Shape", "Params", "Bytes", "Sparsity", "Near 0", "Fires", "Dead")


class LayerTableModel(QAbstractTableModel):
    """One row per layer with parameters; numbers sort by value (``SORT_ROLE``), not by their text."""

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self._m = Measurements()

    def set_measurements(self, measurements: Measurements) -> None:
        rows_before = self.rowCount()
        self._m = measurements
        if self.rowCount() != rows_before:
            self.beginResetModel()
            self.endResetModel()
        elif self.rowCount():
            self.dataChanged.emit(self.index(0, 0), self.index(self.rowCount() - 1, len(COLUMNS) - 1))

    def layer_name(self, row: int) -> str:
        return self._m.inventory.layers[row].name

    def row_of(self, name: str) -> int:
        for i, info in enumerate(self._m.inventory.layers if self._m.inventory else ()):
            if info.name == name:
                return i
        return -1

    def rowCount(self, parent: QModelIndex = QModelIndex()) -> int:  # noqa: B008 - Qt's signature
        return 0 if parent.isValid() or self._m.inventory is None else len(self._m.inventory.layers)

    def columnCount(self, parent: QModelIndex = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(COLUMNS)

    def headerData(self, section, orientation, role=Qt.ItemDataRole.DisplayRole):
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.DisplayRole:
            return COLUMNS[section]
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.ToolTipRole:
            return {"Sparsity": "fraction of the layer's parameters that are exactly zero",
                    "Near 0": "fraction of weights with |w| at most 1% of the layer's largest |w|",
                    "Fires": "mean over units of how often a unit's output is positive on the data set",
                    "Dead": "units that never fired on the data set"}.get(COLUMNS[section])
        return None

    def _values(self, row: int) -> tuple:
        info = self._m.inventory.layers[row]
        ws = self._m.weights.get(info.name)
        act = self._m.activations.get(info.name)
        return (info.name, info.type, info.shape, info.params, info.bytes, info.sparsity,
                ws.near_zero if ws else None, float(act.nonzero_fraction.mean()) if act else None,
                (len(act.dead), act.units) if act else None)

    def data(self, index: QModelIndex, role=Qt.ItemDataRole.DisplayRole):
        if not index.isValid():
            return None
        values = self._values(index.row())
        col, value = index.column(), values[index.column()]
        if role == Qt.ItemDataRole.DisplayRole:
            if value is None and col in (7, 8) and self._m.activations:
                return "—"  # measured, but this layer has no neurons of its own (BatchNorm, LayerNorm, ...)
            return self._text(col, value)
        if role == SORT_ROLE:
            if col == 2:
                return len(value) and value[0]
            if col == 8:
                return -1 if value is None else value[0]
            return -1 if value is None else value
        if role == Qt.ItemDataRole.TextAlignmentRole and col >= 3:
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        if role == Qt.ItemDataRole.ForegroundRole:
            if col == 8 and value and value[0]:
                return QColor(theme.DANGER)
            if col in (1, 2):
                return QColor(theme.MUTED)
        return None

    @staticmethod
    def _text(col: int, value) -> str:
        if value is None:
            return "…"
        if col == 0:
            return value or "(model)"
        if col == 2:
            return "×".join(map(str, value))
        if col == 3:
            return f"{value:,}"
        if col == 4:
            return human_bytes(value)
        if col in (5, 6, 7):
            return f"{value:.1%}"
        if col == 8:
            return f"{value[0]}/{value[1]}"
        return str(value)


class LayerSortProxy(QSortFilterProxyModel):
    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.setSortRole(SORT_ROLE)
