"""Accuracy (or fidelity) against cost: every variant a point, the Pareto front drawn, the original marked.

The y axis is each variant's score (:func:`core.pipeline.scores.variant_score`): test accuracy on a labelled
set, else fidelity to the original in its named metric (cosine, top-1 agreement, perplexity...), flipped
when lower is better so that better is always up. One axis holds one metric: a variant measured by another
is left out, and the caption says so.

The x axis is chosen in a combo box: bytes on disk, non-zero parameters, multiply-accumulates (dense, or
of the non-zero weights only) or measured latency, each on a log scale. A variant lacking the measurement
(no latency measured, no MAC count) is left out of that axis, and the caption says so. Each point's symbol
is its family (:func:`core.pipeline.variants.marker_family`), named in the legend.

A sweep's results (:mod:`core.sweep`) are drawn as hollow circles beside the variants, as they arrive, and
the Pareto front is drawn over both: a sweep point is a recipe measured, not a variant (it holds no model).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Signal
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QLabel, QVBoxLayout, QWidget

from core.analysis.cost import human_macs
from core.report.reports import human_bytes, size_change
from core.pipeline.scores import Score, shared_metric, variant_score
from core.pipeline.variants import Variant, marker_family, pareto_front, variant_families
from core.sweep.jobs import SweepResult
from gui import theme
from gui.widgets.bytes_axis import BytesLogAxis


def human_count(value: float) -> str:
    """``266200`` as ``266 k`` (parameters)."""
    return human_macs(int(round(value)))


def human_ms(value: float) -> str:
    return f"{value:.3g} ms"


@dataclass(frozen=True)
class XAxis:
    """One choice of x: its name in the combo box, the axis title, a variant's value (None: not measured),
    how ticks are written, and what a variant left out lacks."""

    name: str
    title: str
    value: Callable[[Variant], float | None]
    formatter: Callable[[float], str]
    lacking: str
    of_result: Callable[[SweepResult], float | None] = lambda r: None  # a sweep result's value


AXES: dict[str, XAxis] = {
    "bytes": XAxis("Size on disk", "size on disk (log scale)", lambda v: v.size_bytes, human_bytes, "a size",
                   lambda r: r.compressed_bytes),
    "params": XAxis("Non-zero parameters", "non-zero parameters (log scale)", lambda v: v.nonzero_params,
                    human_count, "parameters", lambda r: r.nonzero_params),
    "macs": XAxis("MACs", "multiply-accumulates per input, dense kernels (log scale)",
                  lambda v: v.cost.total if v.cost is not None else None, human_count, "a MAC count",
                  lambda r: r.macs),
    "effective_macs": XAxis("MACs of non-zero weights", "multiply-accumulates per input by non-zero weights (log scale)",
                            lambda v: v.cost.effective_total if v.cost is not None else None, human_count,
                            "a MAC count", lambda r: r.effective_macs),
    "latency": XAxis("Latency", "latency per batch, measured (ms, log scale)",
                     lambda v: v.latency.median_ms if v.latency is not None else None, human_ms,
                     "a latency measurement"),
}
TITLES = {"bytes": "size", "params": "non-zero parameters", "macs": "MACs", "effective_macs": "MACs of non-zero weights",
          "latency": "latency"}
SETTINGS_KEY = "view/tradeoff_x"
FAMILY_SYMBOLS = {"original": "star", "pruning": "o", "architecture": "s", "distillation": "t",
                  "quantization": "d", "training": "h", "coding": "p"}
"""The marker of each family (a family not listed: "x")."""


def symbol_of(family: str) -> str:
    return FAMILY_SYMBOLS.get(family, "x")


class TradeoffPlot(QWidget):
    """Hovering a point names its variant; clicking it makes it current."""

    sig_variant_clicked = Signal(int)
    """The user clicked the point of this variant id."""
    sig_sweep_clicked = Signal(object)
    """The user clicked the point of this sweep result (a :class:`core.sweep.SweepResult`)."""

    def __init__(self, parent: QWidget | None = None, title: bool = True) -> None:
        super().__init__(parent)
        self.setObjectName("panel")
        # x is log10(value), ticks written as values (a log axis of its own: pyqtgraph's ran its labels together)
        self.axis = BytesLogAxis("bottom")
        self.plot = pg.PlotWidget(axisItems={"bottom": self.axis})
        theme.grid(self.plot)
        self.plot.getAxis("left").enableAutoSIPrefix(False)
        self.plot.getPlotItem().getViewBox().setDefaultPadding(0.08)  # room for the points' names
        self.front = pg.PlotDataItem(pen=pg.mkPen(theme.ACCENT, width=2, style=pg.QtCore.Qt.PenStyle.DashLine))
        self.points = pg.ScatterPlotItem(size=14, hoverable=True, hoverSize=18, tip=self._tip,
                                         pen=pg.mkPen(theme.BACKGROUND, width=1.5))
        self.points.sigClicked.connect(self._clicked)
        self.sweep_points = pg.ScatterPlotItem(size=11, hoverable=True, hoverSize=15, tip=self._sweep_tip,
                                               symbol="o", brush=pg.mkBrush(None))
        self.sweep_points.sigClicked.connect(self._sweep_clicked)
        self.plot.addItem(self.front)
        self.plot.addItem(self.sweep_points)
        self.plot.addItem(self.points)
        self.legend = pg.LegendItem(offset=(-10, -10), labelTextColor=theme.MUTED)
        self.legend.setParentItem(self.plot.getPlotItem().getViewBox())
        self.labels: list[pg.TextItem] = []
        self._current_id: int | None = None
        view = self.plot.getPlotItem().getViewBox()
        view.sigRangeChanged.connect(self._place_labels)
        view.sigResized.connect(self._place_labels)
        self.caption = QLabel("", objectName="caption", wordWrap=True)
        self.x_choice = QComboBox(objectName="tradeoffAxis")
        self.x_choice.setToolTip("what the x axis measures")
        for key, axis in AXES.items():
            self.x_choice.addItem(axis.name, key)
        self._settings = None
        header = QHBoxLayout()
        header.setContentsMargins(0, 0, 0, 0)
        self.title = QLabel("", objectName="panelTitle")
        self.title.setVisible(title)
        header.addWidget(self.title, 1)
        header.addWidget(QLabel("x axis:", objectName="caption"))
        header.addWidget(self.x_choice)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(10, 8, 10, 8)
        layout.addLayout(header)
        layout.addWidget(self.plot, 1)
        layout.addWidget(self.caption)
        self.variants: list[Variant] = []
        self.front_ids: list[int] = []
        self.sweep: list[SweepResult] = []  # every sweep result shown (show_sweep)
        self.swept: list[SweepResult] = []  # those on this axis and metric, drawn
        self.sweep_front: list[int] = []  # indices (SweepResult.index) of the drawn ones on the Pareto front
        self._all: list[Variant] = []
        self.score: Score | None = None  # the metric on the y axis now (None: nothing measured)
        self._scores: dict[int, Score] = {}
        self._apply_axis()
        self._apply_y(None)
        self.x_choice.currentIndexChanged.connect(self._on_axis_changed)

    # ------------------------------------------------------------------------------------------ the x axis
    @property
    def x_key(self) -> str:
        return self.x_choice.currentData()

    def set_x_axis(self, key: str) -> None:
        """Show ``key`` (one of :data:`AXES`) on the x axis."""
        index = self.x_choice.findData(key)
        if index < 0:
            raise KeyError(key)
        self.x_choice.setCurrentIndex(index)

    def use_settings(self, settings) -> None:
        """Remember the x axis chosen in ``settings`` (a QSettings), and start from the one remembered."""
        self._settings = settings
        remembered = str(settings.value(SETTINGS_KEY, "bytes"))
        if remembered in AXES:
            self.set_x_axis(remembered)

    def _on_axis_changed(self, _index: int) -> None:
        if self._settings is not None:
            self._settings.setValue(SETTINGS_KEY, self.x_key)
        self._apply_axis()
        self.show_variants(self._all, self._current_id)

    def _apply_axis(self) -> None:
        axis = AXES[self.x_key]
        self.axis.set_formatter(axis.formatter)
        self.plot.setLabel("bottom", axis.title)
        what = "Accuracy" if self.score is None or self.score.name == "test accuracy" else self.score.name.capitalize()
        self.title.setText(f"{what} against {TITLES[self.x_key]}")
        self.plot.setProperty("exportName", self.title.text())

    def _apply_y(self, score: Score | None) -> None:
        """Name the y axis for ``score``'s metric; a lower-is-better one is flipped, so better is up."""
        self.score = score
        self.plot.setLabel("left", score.axis_title if score is not None else "test accuracy (%)")
        self.plot.getPlotItem().getViewBox().invertY(score is not None and score.lower_is_better)
        self._apply_axis()

    def _y(self, v: Variant) -> float:
        return self._scores[v.id].plotted

    def _value(self, v: Variant) -> float | None:
        value = AXES[self.x_key].value(v)
        return float(value) if value is not None and value > 0 else None

    def _x(self, v: Variant) -> float:
        return float(np.log10(self._value(v)))

    def _result_value(self, r: SweepResult) -> float | None:
        value = AXES[self.x_key].of_result(r)
        return float(value) if value is not None and value > 0 else None

    def show_sweep(self, results: list[SweepResult]) -> None:
        """Draw these sweep results beside the variants (all of them, each call), the front over both."""
        self.sweep = list(results)
        self.show_variants(self._all, self._current_id)

    # ------------------------------------------------------------------------------------------ drawing
    def show_variants(self, variants: list[Variant], current_id: int | None) -> None:
        self._all = list(variants)
        metric = shared_metric(variants)
        self._scores = {v.id: score for v in variants if (score := variant_score(v)) is not None}
        measured = [v for v in variants if v.id in self._scores and v.size_bytes > 0]
        other = [v for v in measured if self._scores[v.id].name != metric]
        measured = [v for v in measured if self._scores[v.id].name == metric]
        metric = metric or next((r.score.name for r in self.sweep if r.score is not None), None)
        swept = [r for r in self.sweep if r.score is not None and r.score.name == metric]
        self._apply_y(next((self._scores[v.id] for v in measured), next((r.score for r in swept), None)))
        self.variants = [v for v in measured if self._value(v) is not None]
        self.swept = [r for r in swept if self._result_value(r) is not None]
        left_out = len(measured) - len(self.variants)
        unplaced = len(swept) - len(self.swept)  # sweep points without this axis's measure (latency)
        self._sweep_note = (f" {unplaced} sweep point{'s' if unplaced > 1 else ''} without "
                            f"{AXES[self.x_key].lacking} {'are' if unplaced > 1 else 'is'} left out of this axis."
                            if unplaced else "")
        self._other_note = (f" {len(other)} variant{'s' if len(other) > 1 else ''} measured by "
                            f"{', '.join(sorted({self._scores[v.id].name for v in other}))}, not {metric}, "
                            f"{'are' if len(other) > 1 else 'is'} left out: one axis holds one metric."
                            if other else "")
        for label in self.labels:
            self.plot.removeItem(label)
        self.labels = []
        self.legend.clear()
        self._current_id = current_id
        if not self.variants and not self.swept:
            self.points.setData([])
            self.sweep_points.setData([])
            self.front.setData([], [])
            self.caption.setText((self._left_out_note(left_out) if left_out else
                                  "Apply a recipe to see its variant here.") + self._other_note + self._sweep_note)
            return
        count = len(self.variants)
        xs = [self._value(v) for v in self.variants] + [self._result_value(r) for r in self.swept]
        front = pareto_front(xs, [self._scores[v.id].better for v in self.variants] +
                             [r.score.better for r in self.swept])
        self.front_ids = [self.variants[i].id for i in front if i < count]
        self.sweep_front = [self.swept[i - count].index for i in front if i >= count]
        spots, families = [], []
        for v in self.variants:
            family = marker_family(v)
            if family not in families:
                families.append(family)
            colour = theme.WARM if v.is_original else theme.GOOD if v.id in self.front_ids else theme.ACCENT
            spots.append({"pos": (self._x(v), self._y(v)), "data": v.id,
                          "symbol": symbol_of(family), "size": 22 if v.is_original else 14,
                          "brush": pg.mkBrush(colour),
                          "pen": pg.mkPen("#ffffff" if v.id == current_id else theme.BACKGROUND,
                                          width=3 if v.id == current_id else 1.5)})
            label = pg.TextItem(v.name if not v.is_original else "original", color=theme.MUTED, anchor=(0.5, 1.5))
            label.setPos(self._x(v), self._y(v))
            self.plot.addItem(label)
            self.labels.append(label)
        for family in families:
            sample = pg.ScatterPlotItem(symbol=symbol_of(family), size=10, brush=pg.mkBrush(theme.MUTED),
                                        pen=pg.mkPen(theme.BACKGROUND))
            self.legend.addItem(sample, family)
        if self.swept:
            self.legend.addItem(pg.ScatterPlotItem(symbol="o", size=10, brush=pg.mkBrush(None),
                                                   pen=pg.mkPen(theme.MUTED, width=2)), "sweep")
        self.points.setData(spots)
        self.sweep_points.setData([{"pos": (float(np.log10(self._result_value(r))), r.score.plotted), "data": r.index,
                                    "pen": pg.mkPen(theme.GOOD if r.index in self.sweep_front else theme.ACCENT,
                                                    width=2)} for r in self.swept])
        ends = [(float(np.log10(xs[i])), self._y(self.variants[i]) if i < count else self.swept[i - count].score.plotted)
                for i in front]
        self.front.setData([x for x, _ in ends], [y for _, y in ends])
        self._place_labels()
        original = next((v for v in self.variants if v.is_original), None)
        best = min((i for i in front if i >= count or not self.variants[i].is_original), key=lambda i: xs[i],
                   default=None)
        axis = AXES[self.x_key]
        if original and best is not None:
            name, size, score = ((self.variants[best].name, self.variants[best].size_bytes,
                                  self._scores[self.variants[best].id]) if best < count else
                                 (f"sweep {self.swept[best - count].name}", self.swept[best - count].compressed_bytes,
                                  self.swept[best - count].score))
            change = (f" ({size_change(original.size_bytes, size)})" if self.x_key == "bytes" else
                      f" (the original: {axis.formatter(self._value(original))})")
            lowest = "Smallest" if self.x_key in ("bytes", "params") else "Fastest" if self.x_key == "latency" \
                else "Fewest MACs"
            points = f" and {len(self.swept)} sweep point{'s' if len(self.swept) > 1 else ''}" if self.swept else ""
            text = (f"{count} variant{'s' if count != 1 else ''}{points}; Pareto front in dashes. {lowest} on the front: "
                    f"{name}, {axis.formatter(xs[best])}{change}, {score.text()}.")
        else:
            text = "The original is the star. Apply a recipe to add a variant."
        self.caption.setText(text + (" " + self._left_out_note(left_out) if left_out else "") + self._other_note
                             + self._sweep_note)

    def _left_out_note(self, count: int) -> str:
        return (f"{count} variant{'s' if count > 1 else ''} without {AXES[self.x_key].lacking} "
                f"{'are' if count > 1 else 'is'} left out of this axis.")

    def families_shown(self) -> list[str]:
        """The families named in the legend (for tests)."""
        return [label.text for _sample, label in self.legend.items]

    ANCHORS = ((0.5, 1.5), (0.5, -0.5), (-0.12, 0.5), (1.12, 0.5), (0.0, 1.5), (1.0, 1.5), (0.0, -0.5), (1.0, -0.5))
    """Where a name may sit, tried in turn: above its point, below, right, left, then above or below
    and to one side (TextItem anchors)."""

    def _place_labels(self, *_args) -> None:
        """Names that never cover each other or another point: the current variant's first, then the
        Pareto front's, the rest, the original's last; each takes the first free place around its point,
        and one with none stays hidden (hovering the point still names it)."""
        from PySide6.QtCore import QPointF, QRectF

        view = self.plot.getPlotItem().getViewBox()
        if not self.labels or view.width() <= 0:
            return
        area = view.sceneBoundingRect()
        points = [view.mapViewToScene(QPointF(self._x(v), self._y(v))) for v in self.variants]
        taken = [QRectF(p.x() - 9, p.y() - 9, 18, 18) for p in points]
        order = sorted(range(len(self.variants)), key=lambda i: (
            self.variants[i].id != self._current_id, self.variants[i].is_original,
            self.variants[i].id not in self.front_ids, i))
        for i in order:
            label, point = self.labels[i], points[i]
            size = label.textItem.boundingRect().size()
            own = taken[i]
            for anchor in self.ANCHORS:
                rect = QRectF(point.x() - anchor[0] * size.width(), point.y() - anchor[1] * size.height(),
                              size.width(), size.height())
                if area.contains(rect) and not any(rect.intersects(r) for r in taken if r is not own):
                    label.setAnchor(anchor)
                    label.setVisible(True)
                    taken.append(rect)
                    break
            else:
                label.setVisible(False)

    def placed_label_rects(self) -> list:
        """The scene rectangles of the names shown now (for tests)."""
        return [label.sceneBoundingRect() for label in self.labels if label.isVisible()]

    def _tip(self, x, y, data):
        v = next((v for v in self.variants if v.id == data), None)
        if v is None:
            return ""
        x = AXES[self.x_key].formatter(self._value(v)) if self.x_key != "bytes" else ""
        family = " + ".join(variant_families(v)) or "the original"
        return (f"{v.name} ({family})\n{human_bytes(v.size_bytes)}{' · ' + x if x else ''} · "
                f"{self._scores[v.id].text()}\n"
                "click to make it current")

    def _clicked(self, _item, points, _event=None) -> None:
        if len(points):
            self.sig_variant_clicked.emit(int(points[0].data()))

    def _swept(self, index) -> SweepResult | None:
        return next((r for r in self.swept if r.index == index), None)

    def _sweep_tip(self, x, y, data):
        r = self._swept(data)
        if r is None:
            return ""
        on = f" on {r.count:,} test examples" if r.count else ""
        return (f"sweep: {r.name}\n{human_bytes(r.compressed_bytes)} ({size_change(r.original_bytes, r.compressed_bytes)})"
                f" · {r.score.text()}{on}\nclick to load its recipe")

    def _sweep_clicked(self, _item, points, _event=None) -> None:
        result = self._swept(points[0].data()) if len(points) else None
        if result is not None:
            self.sig_sweep_clicked.emit(result)
