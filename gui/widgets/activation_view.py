"""How often each neuron or channel of the selected layer fires, as sorted bars or as a heatmap.

Dead units are red, rarely firing ones orange. Clicking a bar or a heatmap cell selects that unit (click
again to drop it; "dead" selects every unit that never fired); Delete removes the selected units from the
model, which the main window turns into a structured-pruning step that makes a new variant.
"""

from __future__ import annotations

import math

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QColor, QKeySequence, QShortcut
from PySide6.QtWidgets import QCheckBox, QComboBox, QHBoxLayout, QLabel, QPushButton, QStackedWidget, QVBoxLayout, QWidget

from core.analysis.activations import ActivationStats
from gui import theme
from gui.widgets.elided_label import ElidedLabel

RARE = 0.05  # units firing on fewer than 5% of observations are drawn in the warning colour


def _rgb(colour: str) -> np.ndarray:
    c = QColor(colour)
    return np.array([c.red(), c.green(), c.blue()], dtype=np.float32)


def heatmap_grid(units: int) -> tuple[int, int]:
    """(rows, columns) of the most nearly square grid that holds ``units`` cells, wider than tall."""
    columns = max(1, math.ceil(math.sqrt(units)))
    return max(1, math.ceil(units / columns)), columns


def firing_rgb(rates: np.ndarray) -> np.ndarray:
    """The heatmap's colour of each firing rate (0-1), (n, 3) floats: dark (never) to the accent colour
    (always), on a square-root scale so that rare units stay distinguishable from dead ones. The heatmap
    and its colour bar both come from here."""
    low, high = _rgb(theme.PANEL), _rgb(theme.ACCENT)
    t = np.sqrt(np.clip(np.asarray(rates, dtype=np.float64), 0, 1))[:, None]
    return low + (high - low) * (0.15 + 0.85 * t)


def firing_colormap() -> pg.ColorMap:
    """:func:`firing_rgb` as a pyqtgraph colour map over rates 0-1, for the heatmap's colour bar."""
    rates = np.linspace(0.0, 1.0, 33)
    return pg.ColorMap(rates, firing_rgb(rates).astype(np.uint8))


def heatmap_rgba(rates: np.ndarray, selected: set[int] | frozenset[int] = frozenset()) -> np.ndarray:
    """Firing rates as a (rows, columns, 4) uint8 image in unit order, row by row: dark (never) to the
    accent colour (always), dead units red, selected units white, cells past the last unit transparent."""
    rows, columns = heatmap_grid(len(rates))
    image = np.zeros((rows * columns, 4), dtype=np.uint8)
    image[:len(rates), :3] = firing_rgb(rates).astype(np.uint8)
    image[:len(rates), 3] = 255
    image[np.flatnonzero(rates == 0), :3] = _rgb(theme.DANGER)
    for unit in selected:
        if 0 <= unit < len(rates):
            image[unit, :3] = 255
    return image.reshape(rows, columns, 4)


class ActivationView(QWidget):
    """Shows one layer's :class:`~core.analysis.activations.ActivationStats`; units can be selected and removed."""

    sig_remove_units = Signal(str, list)
    """Remove these units (indices) of this layer."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("panel")
        self._stats: ActivationStats | None = None
        self._name = ""
        self._unit = "units"
        self._order = np.zeros(0, dtype=np.int64)  # unit index drawn at each bar position
        self.selected: set[int] = set()
        self.removable = True
        self.title = ElidedLabel("Activations")
        self.title.setObjectName("panelTitle")
        self.view_box = QComboBox()
        self.view_box.addItems(["bars", "heatmap"])
        self.view_box.setToolTip("bars: one per unit; heatmap: every unit as a cell, in unit order")
        self.view_box.currentIndexChanged.connect(self._switch_view)
        self.sorted_box = QCheckBox("sorted")
        self.sorted_box.setChecked(True)
        self.sorted_box.setToolTip("sort units from most to least often firing (unchecked: unit order)")
        self.sorted_box.toggled.connect(self._redraw)
        self.dead_button = QPushButton("Select dead")
        self.dead_button.setToolTip("select every unit that never fired")
        self.dead_button.clicked.connect(self.select_dead)
        self.remove_button = QPushButton("Remove selected")
        self.remove_button.setObjectName("primary")
        self.remove_button.setToolTip("remove the selected units from the model (Delete); makes a new variant")
        self.remove_button.clicked.connect(self.remove_selected)
        header = QHBoxLayout()
        header.addWidget(self.title)
        header.addStretch(1)
        for w in (self.view_box, self.sorted_box, self.dead_button, self.remove_button):
            header.addWidget(w)

        self.plot = pg.PlotWidget()
        self.plot.setProperty("exportName", "How often units fire (bars)")
        theme.grid(self.plot, x=False)
        self.plot.setLabel("left", "fires on")
        self.plot.getAxis("left").setTicks([[(v, f"{v:.0%}") for v in (0.0, 0.25, 0.5, 0.75, 1.0)]])
        # one bar item per colour: a brush per unit is slow for layers with tens of thousands of units
        self.bars = {kind: pg.BarGraphItem(x=[], height=[], width=0.85, brush=pg.mkBrush(colour), pen=pg.mkPen(None))
                     for kind, colour in (("firing", theme.ACCENT), ("rare", theme.WARM), ("dead", theme.DANGER))}
        for item in self.bars.values():
            self.plot.addItem(item)
        self.selection_bars = pg.BarGraphItem(x=[], height=[], width=0.85, brush=pg.mkBrush("#ffffffcc"),
                                              pen=pg.mkPen("#ffffff", width=1))
        self.plot.addItem(self.selection_bars)
        self.message = pg.TextItem("", color=theme.MUTED, anchor=(0.5, 0.5))
        self.plot.addItem(self.message, ignoreBounds=True)
        theme.wrapped_message(self.message, self.plot)
        self.plot.scene().sigMouseClicked.connect(self._bar_clicked)

        self.heatmap = pg.PlotWidget()
        self.heatmap.setProperty("exportName", "How often units fire (heatmap)")
        self.heatmap.setAspectLocked(True)
        self.heatmap.invertY(True)
        self.heatmap.hideAxis("left")
        self.heatmap.hideAxis("bottom")
        self.heatmap_image = pg.ImageItem(axisOrder="row-major")
        self.heatmap.addItem(self.heatmap_image)
        # the scale the cells are coloured on (dead units, red, are named in the summary below)
        self.colour_bar = pg.ColorBarItem(values=(0.0, 1.0), colorMap=firing_colormap(), interactive=False,
                                          width=12, label="fires on")
        self.colour_bar.axis.setTicks([[(v, f"{v:.0%}") for v in (0.0, 0.25, 0.5, 0.75, 1.0)]])
        self.heatmap.getPlotItem().layout.addItem(self.colour_bar, 2, 5)
        self.heatmap.getPlotItem().layout.setColumnFixedWidth(4, 8)
        self.heatmap.getPlotItem().layout.setContentsMargins(2, 8, 2, 8)  # room for the bar's 0% and 100%
        self.heatmap.scene().sigMouseClicked.connect(self._cell_clicked)
        self.heatmap.scene().sigMouseMoved.connect(self._cell_hovered)

        self.stack = QStackedWidget()
        self.stack.addWidget(self.plot)
        self.stack.addWidget(self.heatmap)
        self.summary = QLabel("")
        self.summary.setObjectName("caption")
        self.summary.setWordWrap(True)  # a long line must not set the panel's minimum width
        theme.steady(self.summary, 4)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(10, 8, 10, 8)
        layout.addLayout(header)
        layout.addWidget(self.stack, 1)
        layout.addWidget(self.summary)
        for key in (QKeySequence.StandardKey.Delete, QKeySequence(Qt.Key.Key_Backspace)):
            shortcut = QShortcut(key, self, context=Qt.ShortcutContext.WidgetWithChildrenShortcut)
            shortcut.setWhatsThis("Remove the selected units (activation plot)")  # the help page lists it
            shortcut.activated.connect(self.remove_selected)
        self.show_layer("", None, "")

    # ------------------------------------------------------------------------------------------ content
    def show_layer(self, name: str, stats: ActivationStats | None, waiting: str, unit: str = "units",
                   source: str = "", removable: bool = True) -> None:
        """Show ``stats`` for layer ``name``; with no stats, ``waiting`` explains why. ``removable``: whether
        this layer's units may be removed (not the output layer's: they are the classes)."""
        if name != self._name or stats is None or (self._stats is not None and stats.units != self._stats.units):
            self.selected = set()
        self._name, self._stats, self._waiting, self._unit, self._source = name, stats, waiting, unit, source
        self.removable = removable
        self.title.setText(f"{name}  ·  {unit} firing" if name else "Activations")
        self._redraw()

    def displayed(self) -> np.ndarray:
        """The bar heights currently drawn (fraction of observations each unit fired)."""
        if self._stats is None:
            return np.zeros(0)
        return self._stats.nonzero_fraction[self._bar_order()]

    def _bar_order(self) -> np.ndarray:
        values = self._stats.nonzero_fraction
        if self.sorted_box.isChecked():
            return np.argsort(-values, kind="stable")
        return np.arange(len(values))

    # ------------------------------------------------------------------------------------------ selection
    def toggle_unit(self, unit: int) -> None:
        if self._stats is None or not 0 <= unit < self._stats.units:
            return
        self.selected ^= {int(unit)}
        self._redraw()

    def select_dead(self) -> None:
        if self._stats is not None:
            self.selected |= set(int(u) for u in self._stats.dead)
            self._redraw()

    def clear_selection(self) -> None:
        self.selected = set()
        self._redraw()

    def remove_selected(self) -> None:
        if self._stats is not None and self.selected and self.removable:
            units, self.selected = sorted(self.selected), set()  # a second Delete must not queue them again
            self._redraw()
            self.sig_remove_units.emit(self._name, units)

    def shown_plot(self) -> pg.PlotWidget:
        """The plot on screen (bars or heatmap), for exporting."""
        return self.stack.currentWidget()

    def _bar_clicked(self, event) -> None:
        if self._stats is None or event.button() != Qt.MouseButton.LeftButton:
            return
        point = self.plot.getPlotItem().vb.mapSceneToView(event.scenePos())
        position = int(round(point.x()))
        if 0 <= position < len(self._order) and -0.05 <= point.y() <= 1.05:
            self.toggle_unit(int(self._order[position]))

    def _cell_at(self, scene_pos) -> int | None:
        if self._stats is None:
            return None
        point = self.heatmap.getPlotItem().vb.mapSceneToView(scene_pos)
        rows, columns = heatmap_grid(self._stats.units)
        row, column = math.floor(point.y()), math.floor(point.x())
        unit = row * columns + column
        if 0 <= row < rows and 0 <= column < columns and unit < self._stats.units:
            return unit
        return None

    def _cell_clicked(self, event) -> None:
        if event.button() == Qt.MouseButton.LeftButton:
            unit = self._cell_at(event.scenePos())
            if unit is not None:
                self.toggle_unit(unit)

    def _cell_hovered(self, scene_pos) -> None:
        unit = self._cell_at(scene_pos)
        if unit is not None:
            rate = self._stats.nonzero_fraction[unit]
            self.heatmap.setToolTip(f"{self._unit[:-1]} {unit}: fires on {rate:.1%}, mean {self._stats.mean[unit]:.3g}")

    def scene_point_of_unit(self, unit: int):
        """Where ``unit`` is drawn in the current view, in scene coordinates (for tests and tours)."""
        if self.stack.currentWidget() is self.heatmap:
            _rows, columns = heatmap_grid(self._stats.units)
            row, column = divmod(unit, columns)
            return self.heatmap.getPlotItem().vb.mapViewToScene(pg.Point(column + 0.5, row + 0.5))
        position = int(np.flatnonzero(self._order == unit)[0])
        height = max(0.5 * float(self._stats.nonzero_fraction[unit]), 0.01)
        return self.plot.getPlotItem().vb.mapViewToScene(pg.Point(position, height))

    # ------------------------------------------------------------------------------------------ drawing
    def _switch_view(self, index: int) -> None:
        self.stack.setCurrentIndex(index)
        self.sorted_box.setVisible(index == 0)  # the heatmap is always in unit order
        self._redraw()

    def _redraw(self) -> None:
        stats = self._stats
        self.dead_button.setEnabled(stats is not None and len(stats.dead) > 0)
        self.remove_button.setEnabled(stats is not None and bool(self.selected) and self.removable)
        if stats is None:
            self._order = np.zeros(0, dtype=np.int64)
            for item in (*self.bars.values(), self.selection_bars):
                item.setOpts(x=[], height=[])
            self.heatmap_image.clear()
            self.message.setText(self._waiting)
            self.message.setPos(0.5, 0.5)
            self.plot.setRange(xRange=(0, 1), yRange=(0, 1))
            self.summary.setText("")
            if self.stack.currentWidget() is self.heatmap and self._waiting:
                self.stack.setCurrentWidget(self.plot)  # the message lives on the bar plot
            return
        self.stack.setCurrentIndex(self.view_box.currentIndex())
        self.message.setText("")
        self._order = self._bar_order()
        heights = stats.nonzero_fraction[self._order]
        if self.stack.currentWidget() is self.plot:
            x = np.arange(len(heights))
            groups = {"dead": heights == 0, "rare": (heights > 0) & (heights < RARE), "firing": heights >= RARE}
            for kind, chosen in groups.items():  # dead units get a short stub so they stay visible
                self.bars[kind].setOpts(x=x[chosen], height=np.where(heights[chosen] == 0, 0.02, heights[chosen]))
            chosen = np.isin(self._order, list(self.selected))
            self.selection_bars.setOpts(x=x[chosen], height=np.maximum(heights[chosen], 0.02))
            self.plot.setRange(xRange=(-1, len(heights)), yRange=(0, 1.02), padding=0)
            self.plot.setLabel("bottom", f"{self._unit} ({'by firing rate' if self.sorted_box.isChecked() else 'index'})")
        else:
            image = heatmap_rgba(stats.nonzero_fraction, self.selected)
            self.heatmap_image.setImage(image, autoLevels=False)
            self.heatmap.setRange(xRange=(0, image.shape[1]), yRange=(0, image.shape[0]), padding=0.02)
        rare = int(((heights > 0) & (heights < RARE)).sum())
        point = "" if stats.measured_at == stats.name else f" (read after {stats.measured_at})"
        counted = stats.rule.replace("ε", f"ε = {stats.epsilon:.3g}", 1) if stats.epsilon is not None else stats.rule
        text = (f"{stats.units} {self._unit}{point}: mean firing rate {stats.nonzero_fraction.mean():.1%}   "
                f"dead {len(stats.dead)}   rarely firing (<{RARE:.0%}) {rare}   "
                f"over {stats.observations:,} observations{self._source}\nfires = {counted}")
        if self.selected:
            text += (f"\n{len(self.selected)} selected: press Delete to remove them" if self.removable else
                     f"\n{len(self.selected)} selected: this layer's units are the model's outputs and stay")
        else:
            text += "\nClick units to select them, then press Delete to remove them."
        self.summary.setText(text)
