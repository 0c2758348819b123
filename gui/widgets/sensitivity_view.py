"""The Sensitivity page: each layer of the current model alone at a grid of levels of one method (prune,
quantize, low rank), as a heat map of layers by levels and as curves, measured in the background.

Run asks the session's :class:`gui.sensitivity_runs.SensitivityRuns` for the controls' request: a result it
already has for this model shows at once; otherwise it is measured with progress and cancel, and a cancelled
or failed run leaves the page as it was. Clicking a measured cell writes that level into the recipe for that
layer (its sparsity, bits or rank) and selects the layer, so the Compress panel shows it.

Between the controls and the heat map sits ``target_area``, the target row
(:class:`gui.widgets.allocation_target.AllocationTarget`): a file size, ratio or maximum drop that automatic
allocation fills the recipe for.
"""

from __future__ import annotations

from PySide6.QtCore import QEvent, Qt, QTimer, Signal
from PySide6.QtWidgets import (QComboBox, QHBoxLayout, QLabel, QLineEdit, QPushButton, QSpinBox, QSplitter,
                               QVBoxLayout, QWidget)

from core.analysis import perturb
from core.analysis.sensitivity import Sensitivity
from core.report.sensitivity import scale_of
from gui import theme
from gui.sensitivity_runs import QUANTIZERS, Request, make_request
from gui.widgets.allocation_target import AllocationTarget
from gui.widgets.sensitivity_curves import SensitivityCurves
from gui.widgets.sensitivity_heatmap import SensitivityHeatmap, metric_text

METHOD_NAMES = {"prune": "Prune (magnitude)", "quantize": "Quantize", "low_rank": "Low rank"}
DEFAULT_LIMIT = 2000
"""Examples of the test split measured by default: a point per 20 examples, in seconds on LeNet-300-100."""
WHAT_CLICK_SETS = {"prune": "this sparsity", "quantize": "this many bits", "low_rank": "the rank this fraction stands for"}
CURVES_MIN_HEIGHT = 180
"""The least height the curves keep beside a tall heat map (which scrolls then)."""


def levels_text(levels) -> str:
    return ", ".join(f"{level:g}" for level in levels)


class SensitivityView(QWidget):
    sig_layer_chosen = Signal(str)
    """A cell of this layer was clicked (and its level written into the recipe): select the layer."""

    def __init__(self, session, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("panel")
        self.session, self.runs = session, session.sensitivity
        self.shown: tuple[Request, Sensitivity] | None = None
        self.asked: Request | None = None  # the request Run sent, until its result shows or it stops

        self.method = QComboBox(objectName="sensitivityMethod")
        for key in perturb.METHODS:
            self.method.addItem(METHOD_NAMES.get(key, key), key)
        self.method.setToolTip("what is done to each layer alone: magnitude pruning, weight sharing, a truncated SVD")
        self.levels = QLineEdit(levels_text(perturb.DEFAULT_LEVELS["prune"]), objectName="sensitivityLevels")
        self.levels.setToolTip("the levels to measure, comma-separated: sparsities in (0, 1), bits 1-8, or rank "
                               "fractions in (0, 1]")
        self.quantizer = QComboBox()
        for key in QUANTIZERS:
            self.quantizer.addItem({"kmeans": "k-means", "uniform": "uniform"}.get(key, key), key)
        self.quantizer.setToolTip("how the layer's weights are shared: k-means codebook or uniform levels")
        self.quantizer_label = QLabel("Quantizer", objectName="caption")
        self.limit = QSpinBox(minimum=0, maximum=10_000_000, singleStep=500, specialValueText="all")
        self.limit.setValue(DEFAULT_LIMIT)
        self.limit.setToolTip("how many test examples (or input batches) to measure on; all: the whole split")
        self.run_button = QPushButton("Run", objectName="sensitivityRun")
        self.run_button.setToolTip("measure each layer alone at each level, in the background")
        self.cancel_button = QPushButton("Cancel", objectName="cancelButton")
        self.cancel_button.setToolTip("stop this analysis; the page keeps what it shows")
        self.cancel_button.hide()
        controls = QHBoxLayout()
        controls.setContentsMargins(0, 0, 0, 0)
        for label, widget, stretch in (("Method", self.method, 0), ("Levels", self.levels, 1),
                                       (None, self.quantizer, 0), ("Examples", self.limit, 0)):
            if label is not None:
                controls.addWidget(QLabel(label, objectName="caption"))
            else:
                controls.addWidget(self.quantizer_label)
            controls.addWidget(widget, stretch)
        controls.addWidget(self.run_button)
        controls.addWidget(self.cancel_button)

        self.status = theme.steady(QLabel("", objectName="caption"), lines=1)
        self.target_area = QWidget(objectName="sensitivityTarget")  # see the module's docstring
        target_layout = QHBoxLayout(self.target_area)
        target_layout.setContentsMargins(0, 0, 0, 0)
        self.target = AllocationTarget(session.sensitivity.allocation, session, lambda: self.limit.value() or None)
        target_layout.addWidget(self.target)

        self.heatmap = SensitivityHeatmap()
        self.curves = SensitivityCurves()
        self.summary = theme.steady(QLabel("", objectName="caption"), lines=1)
        self.cells = QComboBox()
        self.cells.addItem("metric", False)
        self.cells.addItem("change (points)", True)
        self.cells.setToolTip("what a cell shows: the metric, or its change from the unperturbed model in points")
        table_header = QHBoxLayout()
        table_header.setContentsMargins(0, 0, 0, 0)
        table_header.addWidget(self.summary, 1)
        table_header.addWidget(QLabel("Cells", objectName="caption"))
        table_header.addWidget(self.cells)
        upper = QWidget()
        upper_layout = QVBoxLayout(upper)
        upper_layout.setContentsMargins(0, 0, 0, 0)
        upper_layout.addLayout(table_header)
        upper_layout.addWidget(self.heatmap, 1)
        self.hint = QLabel("", objectName="caption", wordWrap=True)
        upper_layout.addWidget(self.hint)
        self.splitter = QSplitter(Qt.Orientation.Vertical)
        self.splitter.addWidget(upper)
        self.splitter.addWidget(self.curves)
        self.splitter.setSizes([260, 420])
        self.splitter.installEventFilter(self)  # the heat map is fitted to its rows as the page is resized
        self._upper = upper

        layout = QVBoxLayout(self)
        layout.setContentsMargins(10, 8, 10, 8)
        layout.addWidget(QLabel("Sensitivity: each layer alone", objectName="panelTitle"))
        layout.addLayout(controls)
        layout.addWidget(self.status)
        layout.addWidget(self.target_area)
        layout.addWidget(self.splitter, 1)

        self.method.currentIndexChanged.connect(self._method_changed)
        self.run_button.clicked.connect(self.run)
        self.levels.returnPressed.connect(self.run)
        self.cancel_button.clicked.connect(self.runs.cancel)
        self.cells.currentIndexChanged.connect(lambda _i: self.heatmap.set_show_change(bool(self.cells.currentData())))
        self.heatmap.sig_cell_clicked.connect(self._cell_clicked)
        self.heatmap.sig_skipped_clicked.connect(
            lambda layer, level, why: self.status.setText(f"{layer} at {level:g} was not measured: {why}"))
        self.runs.sig_result.connect(self._arrived)
        self.runs.sig_progress.connect(self._progress)
        self.runs.sig_stopped.connect(self._stopped)
        self.runs.sig_forgotten.connect(self._forgotten)
        self._method_changed()
        self._show(None)

    # ------------------------------------------------------------------------------------------ controls
    @property
    def method_key(self) -> str:
        return self.method.currentData()

    def set_method(self, method: str) -> None:
        self.method.setCurrentIndex(self.method.findData(method))

    def request(self) -> Request | str:
        """The controls' request, or why they do not make one."""
        return make_request(self.method_key, self.levels.text(), self.limit.value(), self.quantizer.currentData())

    def _method_changed(self, _index: int = 0) -> None:
        method = self.method_key
        quantize = method == "quantize"
        self.quantizer.setVisible(quantize)
        self.quantizer_label.setVisible(quantize)
        latest = self.runs.latest_result(method)
        self.levels.setText(levels_text(latest[0].levels if latest else perturb.DEFAULT_LEVELS[method]))
        if latest is not None:
            self._show(latest)

    def run(self) -> None:
        """Run the controls' request (or show its result, when this model has one)."""
        request = self.request()
        if isinstance(request, str):
            self.status.setText(f"Not run: {request}")
            return
        self.asked = request
        why = self.runs.run(request)
        if why is not None:
            self.asked = None
            self.status.setText(f"Not run: {why}")
        elif self.asked is not None:  # not known yet: measured in the background
            self.status.setText("Waiting for the running task to end…" if self.session.runner.busy
                                and not self.runs.running else "Measuring…")
        self._buttons()

    def _buttons(self) -> None:
        waiting = self.asked is not None
        self.run_button.setEnabled(not waiting)
        self.cancel_button.setVisible(waiting)

    # ------------------------------------------------------------------------------------------ results
    def _arrived(self, request: Request, result: Sensitivity) -> None:
        if self.asked is not None and request != self.asked:
            return  # an earlier request's result: kept by the runs, not shown over the one asked for
        self.asked = None
        self._buttons()
        self._show((request, result))
        self.status.setText(f"Measured {len(result.points)} settings ({len(result.levels)} levels of each layer) "
                            f"on {result.count:,} examples")

    def _progress(self, p) -> None:
        if self.asked is not None:
            self.status.setText(f"Measuring {p.message} ({p.done} of {p.total})" if p.total > 1 else "Preparing…")

    def _stopped(self, message: str) -> None:
        self.asked = None
        self._buttons()
        self.status.setText(message)

    def _forgotten(self) -> None:
        self.asked = None
        self._buttons()
        self._show(None)
        self.status.setText("Another model is current: run again to measure it")

    def _show(self, shown: tuple[Request, Sensitivity] | None) -> None:
        self.shown = shown
        result = shown[1] if shown is not None else None
        self.heatmap.show_result(result)
        self.curves.show_result(result)
        if result is None:
            self.summary.setText("Nothing measured yet for this model: choose a method and levels, then Run")
            self.hint.setText("")
            return
        base = result.baseline.get("metric")
        unit = scale_of(result)[1]
        quantizer = f", {result.quantizer}" if result.quantizer else ""
        self.summary.setText(f"{result.metric_name} by {result.level_name} ({result.method}{quantizer}); unperturbed "
                             + (f"{metric_text(result, base)}{unit}" if base is not None else "unknown")
                             + f" on {result.count:,} examples")
        self.summary.setToolTip(self.summary.text())
        self.hint.setText(f"A cell: only that layer at that level; coloured by points lost (green none, amber 1, "
                          f"red 10 or more). Click it to give the layer {WHAT_CLICK_SETS.get(result.method, 'this value')} "
                          "in the recipe.")
        self.hint.setToolTip(self.hint.text())
        self._fit_heatmap()

    def eventFilter(self, obj, event) -> bool:
        if obj is self.splitter and event.type() == QEvent.Type.Resize:
            QTimer.singleShot(0, self, self._fit_heatmap)  # once the splitter has laid its panes out
        return False

    def _fit_heatmap(self) -> None:
        """Give the heat map the height of its rows (a three-layer model's table does not scroll), leaving the
        curves at least CURVES_MIN_HEIGHT; a taller table scrolls."""
        sizes = self.splitter.sizes()
        if len(sizes) != 2 or sum(sizes) <= 0 or self.shown is None:
            return
        others = self._upper.height() - self.heatmap.height()  # the header row and the hint
        table = max(min(others + self.heatmap.needed_height(), sum(sizes) - CURVES_MIN_HEIGHT), 0)
        self.splitter.setSizes([table, sum(sizes) - table])

    def _cell_clicked(self, layer: str, level: float) -> None:
        if self.shown is None:
            return
        self.sig_layer_chosen.emit(layer)
        self.status.setText(self.runs.set_levels(self.shown[1].method, {layer: level}))
