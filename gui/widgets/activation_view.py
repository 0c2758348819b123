"""How often each neuron or channel of the selected layer fires: a bar per unit, dead units in red."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtWidgets import QCheckBox, QHBoxLayout, QLabel, QVBoxLayout, QWidget

from core.activations import ActivationStats
from gui import theme

RARE = 0.05  # units firing on fewer than 5% of observations are drawn in the warning colour


class ActivationView(QWidget):
    """Shows one layer's :class:`~core.activations.ActivationStats` as bars (sorted, or in unit order)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("panel")
        self._stats: ActivationStats | None = None
        self._unit = "units"
        self.title = QLabel("Activations")
        self.title.setObjectName("panelTitle")
        self.sorted_box = QCheckBox("sorted")
        self.sorted_box.setChecked(True)
        self.sorted_box.setToolTip("sort units from most to least often firing (unchecked: unit order)")
        self.sorted_box.toggled.connect(self._redraw)
        header = QHBoxLayout()
        header.addWidget(self.title)
        header.addStretch(1)
        header.addWidget(self.sorted_box)

        self.plot = pg.PlotWidget()
        self.plot.showGrid(x=False, y=True, alpha=0.15)
        self.plot.setLabel("left", "fires on")
        self.plot.getAxis("left").setTicks([[(v, f"{v:.0%}") for v in (0.0, 0.25, 0.5, 0.75, 1.0)]])
        # one bar item per colour: a brush per unit is slow for layers with tens of thousands of units
        self.bars = {kind: pg.BarGraphItem(x=[], height=[], width=0.85, brush=pg.mkBrush(colour), pen=pg.mkPen(None))
                     for kind, colour in (("firing", theme.ACCENT), ("rare", theme.WARM), ("dead", theme.DANGER))}
        for item in self.bars.values():
            self.plot.addItem(item)
        self.message = pg.TextItem("", color=theme.MUTED, anchor=(0.5, 0.5))
        self.plot.addItem(self.message, ignoreBounds=True)
        self.summary = QLabel("")
        self.summary.setObjectName("caption")
        self.summary.setWordWrap(True)  # a long line must not set the panel's minimum width

        layout = QVBoxLayout(self)
        layout.setContentsMargins(10, 8, 10, 8)
        layout.addLayout(header)
        layout.addWidget(self.plot, 1)
        layout.addWidget(self.summary)
        self.show_layer("", None, "")

    def show_layer(self, name: str, stats: ActivationStats | None, waiting: str, unit: str = "units",
                   source: str = "") -> None:
        """Show ``stats`` for layer ``name``; with no stats, ``waiting`` explains why."""
        self._stats, self._waiting, self._unit, self._source = stats, waiting, unit, source
        self.title.setText(f"How often each {unit[:-1]} of {name or '(model)'} fires" if name else "Activations")
        self._redraw()

    def displayed(self) -> np.ndarray:
        """The bar heights currently drawn (fraction of observations each unit fired)."""
        if self._stats is None:
            return np.zeros(0)
        values = self._stats.nonzero_fraction
        return np.sort(values)[::-1] if self.sorted_box.isChecked() else values

    def _redraw(self) -> None:
        stats = self._stats
        if stats is None:
            for item in self.bars.values():
                item.setOpts(x=[], height=[])
            self.message.setText(self._waiting)
            self.message.setPos(0.5, 0.5)
            self.plot.setRange(xRange=(0, 1), yRange=(0, 1))
            self.summary.setText("")
            return
        self.message.setText("")
        heights = self.displayed()
        x = np.arange(len(heights))
        groups = {"dead": heights == 0, "rare": (heights > 0) & (heights < RARE), "firing": heights >= RARE}
        for kind, chosen in groups.items():  # dead units get a short stub so they stay visible
            self.bars[kind].setOpts(x=x[chosen], height=np.where(heights[chosen] == 0, 0.02, heights[chosen]))
        self.plot.setRange(xRange=(-1, len(heights)), yRange=(0, 1.02), padding=0)
        self.plot.setLabel("bottom", f"{self._unit} ({'by firing rate' if self.sorted_box.isChecked() else 'index'})")
        rare = int(((heights > 0) & (heights < RARE)).sum())
        point = "" if stats.measured_at == stats.name else f" (read after {stats.measured_at})"
        self.summary.setText(
            f"{stats.units} {self._unit}{point}: mean firing rate {stats.nonzero_fraction.mean():.1%}   "
            f"dead {len(stats.dead)}   rarely firing (<{RARE:.0%}) {rare}   "
            f"over {stats.observations:,} observations{self._source}")
