"""Where the bytes are: each layer's share of the model's parameter bytes, as horizontal bars."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Signal
from PySide6.QtWidgets import QVBoxLayout, QWidget

from core.analysis.inventory import Inventory
from core.report.reports import human_bytes
from gui import theme
from gui.widgets.elided_label import ElidedLabel

MAX_BARS = 10  # beyond this, the smallest layers are summed into one "others" bar


class SizeView(QWidget):
    """Bars of bytes per layer (largest first); the selected layer is drawn in the accent colour."""

    sig_layer_clicked = Signal(str)
    """The user clicked the bar of this layer."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.title = ElidedLabel("Where the bytes are", objectName="panelTitle")
        self.plot = pg.PlotWidget()
        self.plot.setProperty("exportName", "Where the bytes are")
        self.plot.setMouseEnabled(x=False, y=False)
        self.plot.hideButtons()
        self.plot.getAxis("bottom").setTicks([[(v, f"{v:.0%}") for v in (0, 0.25, 0.5, 0.75, 1.0)]])
        self.plot.getAxis("left").setWidth(110)
        self.plot.getAxis("left").setStyle(tickLength=0)
        self.bars = pg.BarGraphItem(x0=[], y=[], width=[], height=0.7)
        self.plot.addItem(self.bars)
        self.plot.scene().sigMouseClicked.connect(self._on_click)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 6, 0, 0)
        layout.addWidget(self.title)
        layout.addWidget(self.plot, 1)
        self._names: list[str] = []
        self.shares = np.zeros(0)

    def show_inventory(self, inventory: Inventory | None, selected: str | None = None,
                       stored: dict[str, int] | None = None) -> None:
        """Bars for ``inventory``'s layers; ``stored`` (layer -> bytes in a compressed variant's file, from
        :func:`core.pipeline.variants.stored_bytes_by_layer`) replaces their dense sizes."""
        def size(layer) -> int:
            return stored.get(layer.name, 0) if stored else layer.bytes

        total = sum(size(layer) for layer in inventory.layers) if inventory is not None else 0
        if inventory is None or not inventory.layers or total == 0:
            self.bars.setOpts(x0=[], y=[], width=[])
            self._names, self.shares = [], np.zeros(0)
            self.plot.getAxis("left").setTicks([[]])
            return
        layers = sorted(inventory.layers, key=size, reverse=True)
        names = [layer.name or "(model)" for layer in layers[:MAX_BARS]]
        sizes = [size(layer) for layer in layers[:MAX_BARS]]
        if len(layers) > MAX_BARS:
            names.append(f"{len(layers) - MAX_BARS} others")
            sizes.append(sum(size(layer) for layer in layers[MAX_BARS:]))
        self._names = names
        self.shares = np.array(sizes, dtype=np.float64) / total
        y = np.arange(len(names))[::-1]
        colours = [theme.ACCENT if n == (selected or "") else "#3a6f8c" for n in names]
        self.bars.setOpts(x0=np.zeros(len(names)), y=y, width=self.shares, height=0.7,
                          brushes=[pg.mkBrush(c) for c in colours], pens=[pg.mkPen(None)] * len(names))
        self.plot.getAxis("left").setTicks([[(int(yy), n) for yy, n in zip(y, names)]])
        self.plot.setRange(xRange=(0, 1.0), yRange=(-0.6, len(names) - 0.4), padding=0)
        self.title.setText(f"Where the bytes are · {human_bytes(total)}" + (" in the file" if stored else ""))
        self.title.set_detail(f"{human_bytes(total)} " + ("of tensors in the variant's file" if stored
                                                            else "of parameters, stored densely"))

    def _on_click(self, event) -> None:
        if not self._names:
            return
        point = self.plot.getPlotItem().vb.mapSceneToView(event.scenePos())
        index = len(self._names) - 1 - int(round(point.y()))
        if 0 <= index < len(self._names) and not self._names[index].endswith(" others"):
            self.sig_layer_clicked.emit(self._names[index] if self._names[index] != "(model)" else "")
