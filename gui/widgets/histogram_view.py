"""The selected layer's weight histogram: |w| (default), signed w, or log10 |w|, with a log-count toggle."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QButtonGroup, QCheckBox, QHBoxLayout, QLabel, QToolButton, QVBoxLayout, QWidget

from core.inventory import LayerInfo
from core.stats import Histogram, WeightStats
from gui import theme

MODES = {"abs": "|w|", "signed": "w", "log": "log₁₀ |w|"}


class HistogramView(QWidget):
    """Shows one layer's :class:`~core.stats.WeightStats`; redraws from them, never from the model."""

    sig_mode_changed = Signal(str)
    """The x axis changed: ``abs``, ``signed`` or ``log``."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("panel")
        self.mode = "abs"
        self._stats: WeightStats | None = None
        self._info: LayerInfo | None = None

        self.title = QLabel("Weight magnitudes")
        self.title.setObjectName("panelTitle")
        self.mode_buttons = QButtonGroup(self)
        header = QHBoxLayout()
        header.addWidget(self.title)
        header.addStretch(1)
        for key, label in MODES.items():
            button = QToolButton(text=label, checkable=True, objectName="segment")
            button.setChecked(key == self.mode)
            button.setToolTip({"abs": "histogram of weight magnitudes", "signed": "histogram of signed weights",
                               "log": "histogram of log10 |w|: shows the small weights pruning removes"}[key])
            button.clicked.connect(lambda _=False, k=key: self.set_mode(k))
            self.mode_buttons.addButton(button)
            header.addWidget(button)
        self.log_counts = QCheckBox("log counts")
        self.log_counts.toggled.connect(self._redraw)
        header.addWidget(self.log_counts)

        self.plot = pg.PlotWidget()
        self.plot.setMenuEnabled(True)
        self.plot.showGrid(x=True, y=True, alpha=0.15)
        self.plot.setLabel("left", "weights")
        for axis in ("left", "bottom"):
            self.plot.getAxis(axis).enableAutoSIPrefix(False)
        self.curve = pg.PlotDataItem(stepMode="center", fillLevel=0, pen=pg.mkPen(theme.ACCENT, width=1.5),
                                     brush=pg.mkBrush(*theme.ACCENT_FILL))
        self.plot.addItem(self.curve)
        self.message = pg.TextItem("", color=theme.MUTED, anchor=(0.5, 0.5))
        self.plot.addItem(self.message, ignoreBounds=True)

        self.summary = QLabel("")
        self.summary.setObjectName("caption")
        self.summary.setWordWrap(True)  # a long line must not set the panel's minimum width
        self.summary.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(10, 8, 10, 8)
        layout.addLayout(header)
        layout.addWidget(self.plot, 1)
        layout.addWidget(self.summary)
        self.show_layer(None, None)

    def set_mode(self, mode: str) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown histogram mode {mode!r}")
        self.mode = mode
        for button in self.mode_buttons.buttons():
            button.setChecked(button.text() == MODES[mode])
        self._redraw()
        self.sig_mode_changed.emit(mode)

    def show_layer(self, info: LayerInfo | None, stats: WeightStats | None, waiting: str = "") -> None:
        """Show ``stats`` for layer ``info``; with no stats, an empty plot and ``waiting`` as its message."""
        self._info, self._stats = info, stats
        self._waiting = waiting
        self._redraw()

    def histogram(self) -> Histogram | None:
        """The histogram currently drawn (None when nothing is)."""
        if self._stats is None:
            return None
        return {"abs": self._stats.abs_hist, "signed": self._stats.hist, "log": self._stats.log_hist}[self.mode]

    def _redraw(self) -> None:
        info, stats, hist = self._info, self._stats, self.histogram()
        name = (info.name or "(model)") if info else ""
        self.title.setText(f"Weights of {name}  ·  {info.type} {'×'.join(map(str, info.shape))}" if info
                           else "Weights")
        self.plot.setLabel("bottom", MODES[self.mode])
        if hist is None:
            self.curve.setData([], [])
            self.message.setText(self._waiting or "Select a layer")
            self.message.setPos(0.5, 0.5)
            self.plot.setRange(xRange=(0, 1), yRange=(0, 1))
            self.summary.setText("")
            return
        self.message.setText("")
        counts = hist.counts.astype(np.float64)
        log_y = self.log_counts.isChecked()
        self.plot.setLogMode(x=False, y=log_y)
        self.curve.setData(hist.edges, np.maximum(counts, 1) if log_y else counts)
        self.plot.enableAutoRange()
        self.summary.setText(
            f"{stats.count:,} weights   min {stats.min:.3g}   max {stats.max:.3g}   mean {stats.mean:.3g}   "
            f"std {stats.std:.3g}   near zero {stats.near_zero:.1%}   exactly zero {stats.sparsity:.1%}")
