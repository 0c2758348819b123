"""The selected layer's singular-value spectrum, for low-rank factorisation.

The singular values (log axis, left) and the cumulative energy kept, Σ_{i≤r} σ_i² / Σ σ² (right axis, 0-1),
against the rank r. The chosen rank is a draggable line; break-even, m n / (m + n) for the m×n matrix the
weight is factorised as, is a dashed line, and the ranks past it (which save nothing) are shaded. Dragging
the rank line previews at once the factors' weights and float32 bytes against the layer's and the energy
kept. It redraws from a :class:`gui.session.Spectrum` (computed in the background), never from the model.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QButtonGroup, QHBoxLayout, QLabel, QPushButton, QToolButton, QVBoxLayout, QWidget

from core.report.reports import human_bytes
from gui import theme
from gui.session import Spectrum
from gui.widgets.elided_label import ElidedLabel

METHODS = {"channel": "channel (r k×k, then 1×1)", "spatial": "spatial (k×1, then 1×k)"}
FLOAT32_BYTES = 4
DEFAULT_ENERGY = 0.9
"""The rank line starts at the rank that keeps this much energy (the low_rank step's default)."""


class Log10Axis(pg.AxisItem):
    """An axis over log10 values, labelled with the values themselves: at whole decades when the range spans
    two or more, else at the linear axis's spacing of log10 (pyqtgraph's log mode labels every minor tick,
    and on a short plot they ran into each other)."""

    def tickValues(self, minVal, maxVal, size):
        if maxVal - minVal >= 2:
            step = max(1, int(np.ceil((maxVal - minVal) / max(size / 40, 1))))
            return [(float(step), [float(v) for v in range(int(np.ceil(minVal)), int(np.floor(maxVal)) + 1, step)])]
        return super().tickValues(minVal, maxVal, size)[:1]

    def tickStrings(self, values, scale, spacing):
        return [f"{10.0 ** v:.2g}" for v in values]


class SpectrumView(QWidget):
    sig_method_changed = Signal(str)
    """The user chose how a convolution is factorised: ``channel`` or ``spatial``."""
    sig_rank_dragged = Signal(str, int)
    """The user let go of the rank line at this rank, for this layer."""
    sig_add_to_recipe = Signal(str, str, int)
    """The user asked to factorise this layer, by this method, at this rank, in the recipe."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("panel")
        self.method = "channel"
        self.spectrum: Spectrum | None = None
        self._layer = ""

        self.title = ElidedLabel("Singular values")
        self.title.setObjectName("panelTitle")
        header = QHBoxLayout()
        header.addWidget(self.title, 1)
        self.method_buttons = QButtonGroup(self)
        self.method_widgets: list[QToolButton] = []
        for key, tip in METHODS.items():
            button = QToolButton(text=key, checkable=True, objectName="segment", toolTip=f"factorise {tip}")
            button.setChecked(key == self.method)
            button.clicked.connect(lambda _=False, k=key: self.set_method(k, emit=True))
            self.method_buttons.addButton(button)
            self.method_widgets.append(button)
            header.addWidget(button)

        self.plot = pg.PlotWidget(axisItems={"left": Log10Axis("left")})
        self.plot.setProperty("exportName", "Singular values")
        theme.grid(self.plot)
        item = self.plot.getPlotItem()
        item.setLabel("left", "σ (log)")
        item.setLabel("bottom", "rank r")
        item.showAxis("right")
        item.setLabel("right", "energy kept")
        for axis in ("left", "bottom", "right"):
            item.getAxis(axis).enableAutoSIPrefix(False)
        for axis in ("left", "right"):
            item.getAxis(axis).setStyle(maxTickLevel=0, autoReduceTextSpace=False)
        self.curve = pg.PlotDataItem(pen=pg.mkPen(theme.ACCENT, width=2))
        self.plot.addItem(self.curve)
        # the energy curve lives in a second view box on the right axis, its x linked to the plot's
        self.energy_box = pg.ViewBox(enableMouse=False)
        item.scene().addItem(self.energy_box)
        item.getAxis("right").linkToView(self.energy_box)
        self.energy_box.setXLink(item)
        self.energy_box.setYRange(0, 1.02, padding=0)
        self.energy_curve = pg.PlotCurveItem(pen=pg.mkPen(theme.GOOD, width=2))
        self.energy_box.addItem(self.energy_curve)
        item.getViewBox().sigResized.connect(self._fit_energy_box)
        self.useless = pg.LinearRegionItem(movable=False, brush=pg.mkBrush(239, 83, 80, 35), pen=pg.mkPen(None))
        self.useless.setZValue(-10)
        self.break_even_line = pg.InfiniteLine(angle=90, movable=False,
                                               pen=pg.mkPen(theme.DANGER, width=1.5, style=Qt.PenStyle.DashLine),
                                               label="break-even {value:.1f}",
                                               labelOpts={"position": 0.92, "color": theme.DANGER, "anchors":
                                                          [(1, 0), (1, 0)]})  # left of the line: in view
        self.rank_line = pg.InfiniteLine(angle=90, movable=True, pen=pg.mkPen(theme.WARM, width=2),
                                         hoverPen=pg.mkPen(theme.TEXT, width=3), label="rank {value:.0f}",
                                         labelOpts={"position": 0.1, "color": theme.WARM, "anchors":
                                                    [(0, 1), (0, 1)]})
        for line in (self.useless, self.break_even_line, self.rank_line):
            self.plot.addItem(line, ignoreBounds=True)
        self.rank_line.sigPositionChanged.connect(self._rank_moved)
        self.rank_line.sigPositionChangeFinished.connect(self._rank_let_go)
        self.message = pg.TextItem("", color=theme.MUTED, anchor=(0.5, 0.5))
        self.plot.addItem(self.message, ignoreBounds=True)
        theme.wrapped_message(self.message, self.plot)

        self.params_label = theme.steady(QLabel("", objectName="caption", wordWrap=True), 2)
        self.params_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.energy_label = theme.steady(QLabel("", objectName="caption"), 1)
        self.add_button = QPushButton("Add to recipe")
        self.add_button.clicked.connect(lambda: self.spectrum is not None and self.sig_add_to_recipe.emit(
            self._layer, self.method, self.rank()))
        header.addWidget(self.add_button)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(10, 8, 10, 8)
        layout.addLayout(header)
        layout.addWidget(self.plot, 1)
        layout.addWidget(self.energy_label)
        layout.addWidget(self.params_label)
        self.show_layer("", False, waiting="Select a Linear or Conv layer")

    # ------------------------------------------------------------------------------------------ input
    def show_layer(self, layer: str, conv: bool, shape: tuple[int, ...] = (),
                   waiting: str = "computing the singular values…") -> None:
        """A new layer (its name and weight shape, for the header); ``conv`` shows the method switch. The
        plot waits for :meth:`show_spectrum` with ``waiting`` as its message."""
        self._layer = layer
        title = f"{layer} ({'×'.join(map(str, shape))})" if shape else layer
        self.title.setText(f"Singular values  ·  {title}" if title else "Singular values")
        for button in self.method_widgets:
            button.setVisible(conv)
        self.show_spectrum(None, waiting=waiting)

    def set_method(self, method: str, emit: bool = False) -> None:
        if method not in METHODS:
            raise ValueError(f"unknown factorisation method {method!r}")
        self.method = method
        for button in self.method_widgets:
            button.setChecked(button.text() == method)
        if emit:
            self.sig_method_changed.emit(method)

    def set_recipe_available(self, available: bool, why: str = "") -> None:
        """Whether "Factorise in the recipe" can write the draft (the low_rank step is registered)."""
        self.add_button.setEnabled(available)
        self.add_button.setToolTip(why or "Factorise this layer at this rank in the recipe's low-rank step")

    def show_spectrum(self, spectrum: Spectrum | None, rank: int | None = None, waiting: str = "") -> None:
        """Draw ``spectrum`` with the rank line at ``rank`` (default: the rank keeping 90% of the energy)."""
        self.spectrum = spectrum
        visible = spectrum is not None
        for item in (self.useless, self.break_even_line, self.rank_line, self.energy_curve):
            item.setVisible(visible)
        if spectrum is None:
            self.curve.setData([], [])
            self.energy_curve.setData([], [])
            self.message.setText(waiting)
            self.message.setPos(0.5, 0.0)
            self.plot.setRange(xRange=(0, 1), yRange=(-1, 1))
            self.params_label.setText("")
            self.energy_label.setText("")
            self.add_button.hide()
            return
        self.message.setText("")
        self.add_button.show()
        ranks = np.arange(1, len(spectrum.values) + 1)
        values = np.asarray(spectrum.values, dtype=np.float64)
        floor = max(float(values.max()) * 1e-7, 1e-30) if len(values) else 1e-30  # log axis: no zeros
        self.curve.setData(ranks, np.log10(np.maximum(values, floor)))  # drawn on a log10 axis
        self.energy_curve.setData(ranks, spectrum.energy)
        top = float(len(values))
        self.break_even_line.setValue(spectrum.break_even)
        self.useless.setRegion((min(spectrum.break_even, top), top))
        self.rank_line.setBounds((1, top))
        self.plot.getPlotItem().getViewBox().setXRange(0.5, top + 0.5, padding=0.02)
        self.plot.getPlotItem().getViewBox().enableAutoRange(axis="y")
        self._fit_energy_box()
        self.set_rank(rank if rank is not None else self.energy_rank(DEFAULT_ENERGY))

    def energy_rank(self, energy: float) -> int:
        """The smallest rank keeping at least ``energy`` of Σσ² (the engine's rule, on the spectrum shown)."""
        from gui.methods.arch_api import rank_for_energy
        import torch

        return rank_for_energy(torch.from_numpy(np.asarray(self.spectrum.values)), energy)

    # ------------------------------------------------------------------------------------------ the rank
    def rank(self) -> int:
        return int(round(self.rank_line.value()))

    def set_rank(self, rank: int) -> None:
        """Put the rank line at ``rank`` (kept within 1 and the number of singular values) and preview it."""
        if self.spectrum is None:
            return
        rank = int(min(max(rank, 1), len(self.spectrum.values)))
        self.rank_line.setValue(rank)
        self._preview(rank)

    def _rank_moved(self, line) -> None:
        rank = self.rank()
        if abs(line.value() - rank) > 1e-9:  # snap to whole ranks (sets the value again, once)
            line.setValue(rank)
            return
        self._preview(rank)

    def _rank_let_go(self, _line) -> None:
        if self.spectrum is not None:
            self.sig_rank_dragged.emit(self._layer, self.rank())

    def _preview(self, rank: int) -> None:
        s = self.spectrum
        if s is None:
            return
        params = int(s.factorised[rank - 1])
        energy = float(s.energy[rank - 1])
        self.energy_label.setText(f"rank {rank} of {len(s.values)} keeps {energy:.1%} of the energy (Σσ²)")
        now = f"{s.weights:,} weights ({human_bytes(s.weights * FLOAT32_BYTES)})"
        after = f"{params:,} weights ({human_bytes(params * FLOAT32_BYTES)} float32)"
        if rank >= s.break_even:
            self.params_label.setText(f"<b>saves nothing at/above break-even</b> (rank ≥ {s.break_even:.1f}): the "
                                      f"two factors hold {after}, the layer {now}")
        else:
            self.params_label.setText(f"<b>{after}</b> instead of {now}: {s.weights / params:.2f}× fewer, "
                                      f"{1 - params / s.weights:.1%} saved")

    def _fit_energy_box(self) -> None:
        view = self.plot.getPlotItem().getViewBox()
        self.energy_box.setGeometry(view.sceneBoundingRect())
        self.energy_box.linkedViewChanged(view, self.energy_box.XAxis)
