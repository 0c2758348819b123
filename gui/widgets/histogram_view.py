"""The selected layer's weight histogram: |w| (default), signed w, or log10 |w|, with a log-count toggle."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QButtonGroup, QCheckBox, QHBoxLayout, QLabel, QToolButton, QVBoxLayout, QWidget

from core.analysis.inventory import LayerInfo
from core.analysis.stats import Histogram, WeightStats
from gui import theme
from gui.widgets.elided_label import ElidedLabel

MODES = {"abs": "|w|", "signed": "w", "log": "log₁₀ |w|"}


class HistogramView(QWidget):
    """Shows one layer's :class:`~core.analysis.stats.WeightStats`; redraws from them, never from the model."""

    sig_mode_changed = Signal(str)
    """The x axis changed: ``abs``, ``signed`` or ``log``."""
    sig_threshold_dragged = Signal(float)
    """The user dragged the prune threshold to this |w|."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("panel")
        self.mode = "abs"
        self._stats: WeightStats | None = None
        self._info: LayerInfo | None = None

        self.title = ElidedLabel("Weight magnitudes")
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
        self.plot.setProperty("exportName", "Weight histogram")
        self.plot.setMenuEnabled(True)
        theme.grid(self.plot)
        self.plot.setLabel("left", "weights")
        for axis in ("left", "bottom"):
            self.plot.getAxis(axis).enableAutoSIPrefix(False)
        # the count axis widens for wider tick labels but never narrows back: a plot re-laid out on every
        # layer change paints twice
        self.plot.getAxis("left").setStyle(autoReduceTextSpace=False)
        # steps are axis-aligned: antialiasing them costs paint time and changes nothing
        self.curve = pg.PlotDataItem(stepMode="center", fillLevel=0, pen=pg.mkPen(theme.ACCENT, width=1.5),
                                     brush=pg.mkBrush(*theme.ACCENT_FILL), antialias=False)
        self.plot.addItem(self.curve)
        self.message = pg.TextItem("", color=theme.MUTED, anchor=(0.5, 0.5))
        self.plot.addItem(self.message, ignoreBounds=True)
        theme.wrapped_message(self.message, self.plot)
        # the original's distribution, once a compressed variant is shown
        self.overlay = pg.PlotDataItem(stepMode="center", pen=pg.mkPen(theme.MUTED, width=1, style=Qt.PenStyle.DashLine),
                                       antialias=False)
        self.plot.addItem(self.overlay)
        # the prune threshold: draggable line(s) and the shaded part that would be pruned
        self.pruned_region = pg.LinearRegionItem(movable=False, brush=pg.mkBrush(239, 83, 80, 45),
                                                 pen=pg.mkPen(None))
        self.pruned_region.setZValue(-10)
        self.threshold_line = pg.InfiniteLine(angle=90, movable=True, pen=pg.mkPen(theme.DANGER, width=2),
                                              hoverPen=pg.mkPen(theme.WARM, width=3))
        self.mirror_line = pg.InfiniteLine(angle=90, movable=False, pen=pg.mkPen(theme.DANGER, width=2))
        for item in (self.pruned_region, self.threshold_line, self.mirror_line):
            self.plot.addItem(item, ignoreBounds=True)
            item.hide()
        self.threshold_line.sigDragged.connect(self._threshold_dragged)
        self.level_lines: list[pg.InfiniteLine] = []
        self._threshold: float | None = None
        self._overlay_stats: WeightStats | None = None
        self._levels: list[float] = []

        self.summary = QLabel("")
        self.summary.setObjectName("caption")
        self.summary.setWordWrap(True)  # a long line must not set the panel's minimum width
        self.summary.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        theme.steady(self.summary, 2)

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

    def set_threshold(self, threshold: float | None) -> None:
        """Draw the prune threshold (|w| below it would be pruned); None hides it."""
        self._threshold = threshold
        self._draw_threshold()

    def set_overlay(self, stats: WeightStats | None) -> None:
        """Overlay another distribution of this layer (the original's, when a variant is shown)."""
        self._overlay_stats = stats
        self._redraw()

    def set_levels(self, levels: list[float]) -> None:
        """Mark quantization levels (a codebook) on the plot; an empty list removes them."""
        self._levels = list(levels)
        self._draw_levels()

    def threshold_x(self, threshold: float) -> float:
        """Where a |w| threshold sits on the current x axis."""
        return float(np.log10(max(threshold, 1e-30))) if self.mode == "log" else threshold

    def _threshold_dragged(self, line) -> None:
        x = float(line.value())
        threshold = 10.0 ** x if self.mode == "log" else abs(x)
        self._threshold = threshold
        self._draw_threshold(moving=True)
        self.sig_threshold_dragged.emit(threshold)

    def _draw_threshold(self, moving: bool = False) -> None:
        t, hist = self._threshold, self.histogram()
        visible = t is not None and hist is not None
        for item in (self.pruned_region, self.threshold_line, self.mirror_line):
            item.setVisible(visible)
        if not visible:
            return
        x = self.threshold_x(t)
        if not moving:
            self.threshold_line.blockSignals(True)
            self.threshold_line.setValue(x)
            self.threshold_line.blockSignals(False)
        if self.mode == "signed":
            self.mirror_line.setValue(-x)
            self.pruned_region.setRegion((-x, x))
        else:
            self.mirror_line.hide()
            self.pruned_region.setRegion((float(hist.edges[0]), x))

    def _draw_levels(self) -> None:
        for line in self.level_lines:
            self.plot.removeItem(line)
        self.level_lines = []
        if self.histogram() is None or len(self._levels) > 256:
            return
        pen = pg.mkPen(theme.GOOD, width=1)
        for value in self._levels:
            if self.mode == "abs":
                xs = [abs(value)]
            elif self.mode == "log":
                xs = [float(np.log10(abs(value)))] if value else []
            else:
                xs = [value]
            for x in xs:
                line = pg.InfiniteLine(x, angle=90, movable=False, pen=pen)
                line.setZValue(-5)
                self.plot.addItem(line, ignoreBounds=True)
                self.level_lines.append(line)

    def _overlay_hist(self) -> Histogram | None:
        s = self._overlay_stats
        if s is None or s is self._stats:
            return None
        return {"abs": s.abs_hist, "signed": s.hist, "log": s.log_hist}[self.mode]

    def histogram(self) -> Histogram | None:
        """The histogram currently drawn (None when nothing is)."""
        if self._stats is None:
            return None
        return {"abs": self._stats.abs_hist, "signed": self._stats.hist, "log": self._stats.log_hist}[self.mode]

    def _redraw(self) -> None:
        info, stats, hist = self._info, self._stats, self.histogram()
        name = (info.name or "(model)") if info else ""
        self.title.setText(f"{name}  ·  {info.type} {'×'.join(map(str, info.shape))}" if info
                           else "Weights")
        self.plot.setLabel("bottom", MODES[self.mode])
        if hist is None:
            self.curve.setData([], [])
            self.overlay.setData([], [])
            self._draw_threshold()
            self._draw_levels()
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
        overlay = self._overlay_hist()
        if overlay is None:
            self.overlay.setData([], [])
        else:
            self.overlay.setData(overlay.edges, np.maximum(overlay.counts, 1) if log_y else overlay.counts)
        # fit the view to the data now: auto-range settles at paint time, and the axes it moves then ask
        # for a second repaint (a re-layout too when the tick labels change width)
        self.plot.autoRange()
        self.plot.getViewBox().updateMatrix()
        self._draw_threshold()
        self._draw_levels()
        self.summary.setText(
            f"{stats.count:,} weights   min {stats.min:.3g}   max {stats.max:.3g}   mean {stats.mean:.3g}   "
            f"std {stats.std:.3g}   near zero {stats.near_zero:.1%}   exactly zero {stats.sparsity:.1%}")
