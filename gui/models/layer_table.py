"""The layer table: a Qt table model over the engine's :class:`~core.analysis.inventory.LayerInfo` and measurements."""

from __future__ import annotations

import math

from PySide6.QtCore import QSortFilterProxyModel, Qt
from PySide6.QtGui import QColor, QStandardItem, QStandardItemModel

from core.report.reports import human_bytes
from gui import theme
from gui.measurements import Measurements

SORT_ROLE = Qt.ItemDataRole.UserRole + 1
COLUMNS = ("Layer", "Type", "Shape", "Params", "Bytes", "Sparsity", "Near 0", "Fires", "Dead", "Bits", "Status",
           "MACs", "Sensitivity", "Override")
OVERRIDE = COLUMNS.index("Override")
SENSITIVITY = COLUMNS.index("Sensitivity")
MACS = COLUMNS.index("MACs")
MARK = "● "
"""Before a layer's name: the recipe has a per-layer value for it (shown in the Override column)."""


class LayerTableModel(QStandardItemModel):
    """One row per layer with parameters; numbers sort by value (``SORT_ROLE``), not by their text.

    The cells are stored in Qt (a QStandardItemModel) rather than computed in a Python ``data()``: painting
    and sizing the table then never calls into Python, which would have to wait for the interpreter lock
    each time while a background task runs Python code (a stall of the UI thread per paint).
    """

    def __init__(self, parent=None) -> None:
        super().__init__(0, len(COLUMNS), parent)
        self._m = Measurements()
        self._names: list[str] = []
        self._codebooks: dict = {}
        self._overrides_of = lambda name: []  # the recipe's per-layer values for a layer, as text
        self._stored: dict[str, int] = {}
        self._finished = False
        self._sensitivity: dict | None = None  # layer -> DropLevel, from the latest prune sensitivity (None: none)
        self.setHorizontalHeaderLabels(list(COLUMNS))
        tips = {"Bytes": "the layer's bytes: dense in the original, as stored in a compressed variant's file",
                "Sparsity": "fraction of the layer's parameters that are exactly zero",
                "Near 0": "fraction of weights with |w| at most 1% of the layer's largest |w|",
                "Fires": "mean over units of how often a unit's output is positive on the data set",
                "Dead": "units that never fired on the data set",
                "Bits": "bits per weight: the codebook's index width for a quantized layer, else the dtype's",
                "Status": "pruned (has zeros), shared (quantized to a codebook), dead units",
                "MACs": "multiply-accumulates of the layer for one input (torch's FLOP counter); a pruned layer "
                        "still runs its dense kernel, so the tooltip gives the count for its non-zero weights",
                "Sensitivity": "the sparsity at which the metric drops 1 point, from the latest prune analysis on "
                               "the Sensitivity page (interpolated between measured levels; > the last level: never)",
                "Override": "the recipe's per-layer values for this layer (● before its name); "
                            "Compress > Clear all overrides removes them"}
        for section, column in enumerate(COLUMNS):
            if column in tips:
                self.setHeaderData(section, Qt.Orientation.Horizontal, tips[column], Qt.ItemDataRole.ToolTipRole)

    def set_measurements(self, measurements: Measurements, codebooks: dict | None = None,
                         stored: dict[str, int] | None = None, finished: bool = False) -> None:
        """Show ``measurements``; ``codebooks`` (layer -> levels) are the current variant's quantized layers,
        ``stored`` (layer -> bytes) what a compressed variant's file takes per layer (Bytes shows it);
        ``finished``: the inspection is over, so what has not come is not coming ("—", not "…")."""
        self._m = measurements
        self._codebooks = codebooks or {}
        self._stored = stored or {}
        self._finished = finished
        layers = measurements.inventory.layers if measurements.inventory else ()
        names = [info.name for info in layers]
        if names != self._names:
            self.setRowCount(0)
            self.setRowCount(len(names))
            self._names = names
        for row in range(len(names)):
            for col, value in enumerate(self._values(row)):
                self._set_cell(row, col, value)

    def _set_cell(self, row: int, col: int, value) -> None:
        item = self.item(row, col)
        if item is None:
            item = QStandardItem()
            item.setEditable(False)
            if col >= 3:
                item.setData(int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter),
                             Qt.ItemDataRole.TextAlignmentRole)
            self.setItem(row, col, item)
        if col == SENSITIVITY:
            self._set_sensitivity_cell(item, value)
            return
        text = ("—" if value is None and ((col in (7, 8) and (self._m.activations or self._finished)) or col == 9
                                          or (col == MACS and (self._m.cost is not None or self._finished)))
                else self._text(col, value))
        # "—": measured, but this layer has no neurons of its own (BatchNorm, LayerNorm, ...)
        if col == 2:
            sort = len(value) and value[0]
        elif col == 8:
            sort = -1 if value is None else value[0]
        elif col in (0, 10, OVERRIDE):
            sort = value.removeprefix(MARK) if col == 0 else value
        else:
            sort = -1 if value is None else value
        colour = (theme.DANGER if (col == 8 and value and value[0]) or (col == 10 and "dead" in value) else
                  theme.GOOD if col == 10 and value != "—" else theme.MUTED if col in (1, 2) else
                  theme.ACCENT if (col == OVERRIDE and value != "—") or (col == 0 and value.startswith(MARK)) else None)
        tip = self._macs_tip(row) if col == MACS else None
        for role, data in ((Qt.ItemDataRole.DisplayRole, text), (SORT_ROLE, sort),
                           (Qt.ItemDataRole.ForegroundRole, QColor(colour) if colour else None),
                           (Qt.ItemDataRole.ToolTipRole, tip)):
            if item.data(role) != data:
                item.setData(data, role)

    def _set_sensitivity_cell(self, item: QStandardItem, value) -> None:
        """``value``: the layer's :class:`core.analysis.curves.DropLevel`, or None (not measured)."""
        if value is None:
            text, sort, tip = "—", float("-inf"), ("no prune sensitivity of this model yet (the Sensitivity page)"
                                                   if self._sensitivity is None else "not in the analysis")
        else:
            text, sort = value.label, value.sort_key
            tip = {"between": f"drops 1 point at sparsity {value.label} (between the measured {value.lower:g} "
                              f"and {value.upper:g})",
                   "never": f"loses less than 1 point up to sparsity {value.lower:g}, the last level measured",
                   "first": f"already 1 point down at the first level, {value.upper:g}",
                   "unmeasured": f"not measured: {value.why}"}[value.where]
        for role, data in ((Qt.ItemDataRole.DisplayRole, text), (SORT_ROLE, sort), (Qt.ItemDataRole.ToolTipRole, tip)):
            if item.data(role) != data:
                item.setData(data, role)

    def set_sensitivity(self, levels: dict | None) -> None:
        """Show each layer's sparsity at which the metric drops 1 point (layer -> DropLevel; None: no analysis)."""
        self._sensitivity = levels
        for row in range(len(self._names)):
            self._set_cell(row, SENSITIVITY, self._values(row)[SENSITIVITY])

    def set_overrides(self, overrides_of) -> None:
        """``overrides_of(layer)``: the recipe's per-layer values for it, as text (empty: none)."""
        self._overrides_of = overrides_of
        if self._m.inventory is None:
            return
        for row in range(len(self._names)):
            for col in (0, OVERRIDE):
                self._set_cell(row, col, self._values(row)[col])

    def layer_name(self, row: int) -> str:
        return self._names[row]

    def row_of(self, name: str) -> int:
        try:
            return self._names.index(name)
        except ValueError:
            return -1

    def _values(self, row: int) -> tuple:
        info = self._m.inventory.layers[row]
        ws = self._m.weights.get(info.name)
        act = self._m.activations.get(info.name)
        levels = self._codebooks.get(info.name)
        if levels is not None:
            bits = max(1, math.ceil(math.log2(max(len(levels), 1))))
        else:  # a layer mixing dtypes ("float16/float32") shows the widest; an unknown dtype shows "—"
            bits = max((DTYPE_BITS.get(d.replace("torch.", ""), 0) for d in info.dtype.split("/")), default=0) or None
        status = [mark for mark, on in (("pruned", info.sparsity >= 0.01), ("shared", levels is not None),
                                        ("dead units", act is not None and len(act.dead) > 0)) if on]
        overrides = self._overrides_of(info.name)
        cost = self._m.cost
        macs = None if cost is None else cost.per_layer.get(info.name)
        return (f"{MARK}{info.name}" if overrides else info.name, info.type, info.shape, info.params,
                self._stored.get(info.name, info.bytes), info.sparsity,
                ws.near_zero if ws else None, float(act.nonzero_fraction.mean()) if act else None,
                (len(act.dead), act.units) if act else None, bits, " · ".join(status) or "—", macs,
                (self._sensitivity or {}).get(info.name), " · ".join(overrides) or "—")

    def _macs_tip(self, row: int) -> str | None:
        cost = self._m.cost
        name = self._names[row] if row < len(self._names) else None
        if cost is None or name not in cost.per_layer:
            return None
        return (f"{cost.per_layer[name]:,} multiply-accumulates per input; "
                f"{cost.effective_per_layer.get(name, cost.per_layer[name]):,} with its non-zero weights")

    @staticmethod
    def _text(col: int, value) -> str:
        if value is None:
            return "…"
        if col == 0:
            return value or "(model)"
        if col == 2:
            return "×".join(map(str, value))
        if col in (3, MACS):
            return f"{value:,}"
        if col == 4:
            return human_bytes(value)
        if col in (5, 6, 7):
            return f"{value:.1%}"
        if col == 8:
            return f"{value[0]}/{value[1]}"
        return str(value)


DTYPE_BITS = {"float64": 64, "float32": 32, "float16": 16, "bfloat16": 16, "int8": 8, "qint8": 8, "quint8": 8,
              "uint8": 8}


class LayerSortProxy(QSortFilterProxyModel):
    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.setSortRole(SORT_ROLE)
