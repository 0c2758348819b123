"""A sensitivity analysis as curves: the metric against the level, one line per layer, the unperturbed model's
metric as a dashed line and one point below it dotted. More compression is to the right (bits and rank
fractions run right to left); a skipped level leaves a gap in its line, and the level that leaves a layer
as it is (sparsity 0, full rank) starts each line at the unperturbed metric.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QVBoxLayout, QWidget

from core.analysis.curves import UNPERTURBED, metric_losing, more_compression_first
from core.analysis.sensitivity import Sensitivity
from core.pipeline.scores import LOWER_IS_BETTER
from core.report.sensitivity import COLOURS, scale_of
from gui import theme

SYMBOLS = ("o", "s", "t", "d", "h", "p", "star", "x")


class SensitivityCurves(QWidget):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.plot = pg.PlotWidget()
        self.plot.setProperty("exportName", "Sensitivity curves")
        theme.grid(self.plot)
        for axis in ("left", "bottom"):
            self.plot.getAxis(axis).enableAutoSIPrefix(False)
        self.plot.getPlotItem().getViewBox().setDefaultPadding(0.04)
        self.legend = pg.LegendItem(offset=(10, -10), labelTextColor=theme.MUTED)  # bottom left: curves fall right
        self.legend.setParentItem(self.plot.getPlotItem().getViewBox())
        pens = (pg.mkPen(theme.MUTED, width=1, style=Qt.PenStyle.DashLine),
                pg.mkPen(theme.WARM, width=1, style=Qt.PenStyle.DotLine))
        self.baseline, self.one_point = (pg.InfiniteLine(angle=0, movable=False, pen=pen) for pen in pens)
        # named in the legend: a label on the line itself sat on the flat start of every curve
        self._samples = [(pg.PlotDataItem(pen=pen), name) for pen, name in zip(pens, ("unperturbed", "1 point lost"))]
        self.message = pg.TextItem("", color=theme.MUTED, anchor=(0.5, 0.5))
        self.plot.addItem(self.message, ignoreBounds=True)
        theme.wrapped_message(self.message, self.plot)
        self.lines: dict[str, pg.PlotDataItem] = {}
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.plot)
        self.show_result(None)

    def show_result(self, result: Sensitivity | None, waiting: str = "Run an analysis to see each layer's curve") -> None:
        for line in self.lines.values():
            self.plot.removeItem(line)
        self.lines = {}
        self.legend.clear()
        for item in (self.baseline, self.one_point):
            if item.scene() is not None:
                self.plot.removeItem(item)
        view = self.plot.getPlotItem().getViewBox()
        if result is None:
            self.message.setText(waiting)
            self.message.setPos(0.5, 0.5)
            view.setRange(xRange=(0, 1), yRange=(0, 1), padding=0)
            return
        self.message.setText("")
        scale, unit = scale_of(result)
        ascending = more_compression_first(result)
        view.invertX(not ascending)
        lower_better = result.metric_name in LOWER_IS_BETTER
        view.invertY(lower_better)  # better is up
        self.plot.setLabel("bottom", f"{result.level_name} (more compression →)")
        self.plot.setLabel("left", f"{result.metric_name}{f' ({unit})' if unit else ''}")
        base = result.baseline.get("metric")
        anchor = UNPERTURBED.get(result.method)
        for i, layer in enumerate(dict.fromkeys(p.layer for p in result.points)):
            curve = sorted(result.curve(layer), key=lambda p: p.level)
            xs = [p.level for p in curve]
            ys = [np.nan if p.metric is None else scale * p.metric for p in curve]
            if anchor is not None and base is not None and anchor not in xs:
                xs, ys = ([anchor] + xs, [scale * base] + ys) if ascending else (xs + [anchor], ys + [scale * base])
            colour = COLOURS[i % len(COLOURS)]
            line = pg.PlotDataItem(np.array(xs, float), np.array(ys, float), connect="finite",
                                   pen=pg.mkPen(colour, width=2), symbol=SYMBOLS[i % len(SYMBOLS)], symbolSize=7,
                                   symbolBrush=pg.mkBrush(colour), symbolPen=pg.mkPen(theme.PANEL))
            self.plot.addItem(line)
            self.legend.addItem(line, layer)
            self.lines[layer] = line
        if base is not None:
            for sample, name in self._samples:
                self.legend.addItem(sample, name)
            self.baseline.setValue(scale * base)
            self.plot.addItem(self.baseline, ignoreBounds=True)
            self.one_point.setValue(scale * metric_losing(result, 1.0))
            self.plot.addItem(self.one_point, ignoreBounds=True)
        view.enableAutoRange()

    def line_data(self, layer: str) -> tuple[np.ndarray, np.ndarray]:
        """(levels, metric as plotted) of ``layer``'s line (for tests)."""
        x, y = self.lines[layer].getData()
        return np.asarray(x), np.asarray(y)
