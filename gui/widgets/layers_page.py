"""The Layers page: the layer table and where the bytes are, beside the selected layer's weights and units.

It shows the session's current model. The histogram carries the draft's prune threshold for the selected
layer; dragging it sets that layer's sparsity in the draft. When the current model is a compressed
variant, the original's distribution is overlaid and the layer's codebook levels are marked.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QEvent, QItemSelectionModel, QPoint, Qt, QTimer, Signal
from PySide6.QtWidgets import (QAbstractItemView, QHeaderView, QLabel, QMenu, QSplitter, QTableView, QTabWidget,
                               QVBoxLayout, QWidget)

from gui.arch_inspector import SeparablePresenter, SoftenedPresenter, SpectrumPresenter
from gui.models.layer_table import COLUMNS, LayerSortProxy, LayerTableModel
from gui.session import Session
from gui.widgets.activation_view import ActivationView
from gui.widgets.histogram_view import HistogramView
from gui.widgets.separable_toggle import SeparableToggle
from gui.widgets.size_view import SizeView
from gui.widgets.softened_view import SoftenedView
from gui.widgets.spectrum_view import SpectrumView


DEFAULT_COLUMNS = ("Layer", "Shape", "Params", "Bytes", "Sparsity", "Fires", "Bits", "MACs")
"""The Override and Sensitivity columns are not among them: each shows by itself while it has something to say
(the recipe has a per-layer value; a prune sensitivity of the model was measured)."""
"""The columns shown until the user picks others (right-click the header): the rest fit in the pane's
width only on a wide screen, and each is one click away."""


BYTES_MIN_HEIGHT = 130
"""The least height "Where the bytes are" keeps beside a long layer table (its title and three bars)."""


PAGE_MIN_HEIGHT = 120
"""The least height of each inspector tab's view: with the tab bar, the pane needs no more than the histogram
alone did (a 600-pixel-tall window still fits)."""


class LayersPage(QWidget):
    sig_layer_changed = Signal(str)
    """This layer is now selected ("" for none)."""

    def __init__(self, session: Session, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.session = session
        self._landing = False  # a new inventory is being drawn: see _on_measured
        self._plan_stats: dict = {}  # the prunable layers' statistics the threshold is read from
        self._kept_selection: str | None = None  # the layer selected when the model changed, kept if it is there
        self._shown_by_itself: set[str] = set()  # columns on screen because they have something to say (Override...)
        self.table_model = LayerTableModel(self)
        self.proxy = LayerSortProxy(self)
        self.proxy.setSourceModel(self.table_model)
        self.table = QTableView()
        self.table.setModel(self.proxy)
        self.table.setSortingEnabled(True)
        self.table.sortByColumn(-1, Qt.SortOrder.AscendingOrder)  # model order until a header is clicked
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.verticalHeader().hide()
        self.table.setShowGrid(False)
        self.table.setAlternatingRowColors(True)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setStretchLastSection(True)
        header.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        header.customContextMenuRequested.connect(self._column_menu)
        header.setToolTip("Click to sort; right-click to choose the columns")
        # Qt widens every column by a sort arrow's room while arrows are shown; show them only while sorted
        header.setSortIndicatorShown(False)
        header.sortIndicatorChanged.connect(lambda section, _order: header.setSortIndicatorShown(section >= 0))
        self.set_visible_columns(DEFAULT_COLUMNS)
        self.table.selectionModel().currentRowChanged.connect(self._on_row_changed)
        self.histogram = HistogramView()
        self.activations = ActivationView()
        self.size_view = SizeView()
        self.size_view.sig_layer_clicked.connect(self.select_layer)

        left = QWidget(objectName="panel")
        left_layout = QVBoxLayout(left)
        left_layout.setContentsMargins(10, 8, 10, 8)
        left_layout.addWidget(QLabel("Layers", objectName="panelTitle"))
        self.left_splitter = QSplitter(Qt.Orientation.Vertical)
        self.left_splitter.addWidget(self.table)
        self.left_splitter.addWidget(self.size_view)
        self.left_splitter.setSizes([520, 300])
        # a smaller window shrinks both panes by the same share: the table fell to 1.5 rows at 1366x768
        self.left_splitter.installEventFilter(self)
        left_layout.addWidget(self.left_splitter, 1)
        left_layout.addWidget(QLabel("Click a layer to inspect it; drag the red line to prune it. Drop a model "
                                     "file anywhere to open it.", objectName="caption", wordWrap=True))
        # the weights' views share the upper pane: the histogram, the spectrum (low rank) and, for the whole
        # model, a teacher's softened outputs (distillation); a separable toggle shows under them for a conv
        self.spectrum = SpectrumView()
        self.softened = SoftenedView()
        self.separable = SeparableToggle()
        self.weight_tabs = QTabWidget(objectName="inspectorTabs")
        self.weight_tabs.setDocumentMode(True)
        self.weight_tabs.tabBar().setDrawBase(False)  # the style's base line ran bright past the tabs
        for view, title, tip in ((self.histogram, "Weights", "the selected layer's weight histogram"),
                                 (self.spectrum, "Low rank", "the selected layer's singular values: drag the rank"),
                                 (self.softened, "Softened outputs", "the teacher's class probabilities at T")):
            self.weight_tabs.setTabToolTip(self.weight_tabs.addTab(view, title), tip)
            view.setMinimumHeight(PAGE_MIN_HEIGHT)  # the tab bar's height comes out of the pages', not the window's
        upper = QWidget()
        upper_layout = QVBoxLayout(upper)
        upper_layout.setContentsMargins(0, 0, 0, 0)
        upper_layout.setSpacing(0)
        upper_layout.addWidget(self.weight_tabs, 1)
        upper_layout.addWidget(self.separable)
        self.spectrum_presenter = SpectrumPresenter(session, self.spectrum, self)
        self.separable_presenter = SeparablePresenter(session, self.separable, self)
        self.softened_presenter = SoftenedPresenter(session, self.softened, self)
        self.weight_tabs.currentChanged.connect(self._inspector_tab_changed)
        self.inspector = QSplitter(Qt.Orientation.Vertical)
        self.inspector.addWidget(upper)
        self.inspector.addWidget(self.activations)
        self.splitter = QSplitter(Qt.Orientation.Horizontal)
        self.splitter.addWidget(left)
        self.splitter.addWidget(self.inspector)
        self.splitter.setSizes([560, 840])  # the inspector's plots get the room
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.splitter)

        self.histogram.sig_threshold_dragged.connect(self._threshold_dragged)
        session.draft.sig_changed.connect(self._draw_plan)
        session.draft.sig_changed.connect(self._show_overrides)
        self.table_model.set_overrides(session.draft.overrides_of)
        session.sig_model_changed.connect(self._on_model_changed)
        session.sig_measured.connect(self._on_measured)
        session.variants.sig_current_changed.connect(self._on_current_variant)
        session.runner.sig_idle.connect(self._on_idle)
        session.sensitivity.sig_result.connect(self._show_sensitivity)
        session.sensitivity.sig_forgotten.connect(self._show_sensitivity)

    def _codebooks(self) -> dict:
        current = self.session.variants.current
        return current.codebooks if current is not None else {}

    def _stored(self) -> dict[str, int] | None:
        """Bytes per layer in the current variant's file; None for the original (its dense sizes are right)."""
        from core.pipeline.variants import stored_bytes_by_layer

        current = self.session.variants.current
        return stored_bytes_by_layer(current) if current is not None and not current.is_original else None

    def _on_current_variant(self, _variant_id: int) -> None:
        self._show_layer(self.current_layer())

    def splitters(self) -> list[tuple[str, QSplitter]]:
        return [("window/splitter", self.splitter), ("window/inspector", self.inspector),
                ("window/left", self.left_splitter)]

    # ------------------------------------------------------------------------------------------ columns
    def visible_columns(self) -> list[str]:
        """The columns the user chose (not the Override column while it shows by itself)."""
        return [name for section, name in enumerate(COLUMNS) if not self.table.isColumnHidden(section)
                and name not in self._shown_by_itself]

    def set_visible_columns(self, names) -> None:
        """Show the columns named in ``names`` (unknown names are ignored; the Layer column always shows)."""
        wanted = set(names) | {COLUMNS[0]}
        self._shown_by_itself = set()
        for section, name in enumerate(COLUMNS):
            self.table.setColumnHidden(section, name not in wanted)

    def column_menu(self) -> QMenu:
        """A menu with a check box per column (the header's context menu)."""
        menu = QMenu(self)
        for section, name in enumerate(COLUMNS[1:], start=1):
            action = menu.addAction(name)
            action.setCheckable(True)
            action.setChecked(not self.table.isColumnHidden(section))
            action.toggled.connect(lambda shown, s=section: self._choose_column(s, shown))
        menu.addSeparator()
        menu.addAction("Default columns", lambda: self.set_visible_columns(DEFAULT_COLUMNS))
        return menu

    def _choose_column(self, section: int, shown: bool) -> None:
        self._shown_by_itself.discard(COLUMNS[section])
        self.table.setColumnHidden(section, not shown)

    def _column_menu(self, pos: QPoint) -> None:
        menu = self.column_menu()
        menu.exec(self.table.horizontalHeader().mapToGlobal(pos))
        menu.deleteLater()

    # ------------------------------------------------------------------------------------------ selection
    def current_layer(self) -> str | None:
        index = self.table.selectionModel().currentIndex()
        if not index.isValid():
            return None
        return self.table_model.layer_name(self.proxy.mapToSource(index).row())

    def select_layer(self, name: str) -> None:
        row = self.table_model.row_of(name)
        if row < 0:
            raise KeyError(name)
        index = self.proxy.mapFromSource(self.table_model.index(row, 0))
        self.table.selectionModel().setCurrentIndex(
            index, QItemSelectionModel.SelectionFlag.ClearAndSelect | QItemSelectionModel.SelectionFlag.Rows)

    def _on_row_changed(self, current, _previous) -> None:
        name = self.current_layer() if current.isValid() else None
        if self._landing:  # the unit plots and the bytes plot follow in a later pass (_after_landing)
            self._show_layer(name, units=False)
        else:
            self._show_layer(name)
            self.size_view.show_inventory(self.session.measurements.inventory, name, self._stored())
        self._show_architecture(name)
        self.sig_layer_changed.emit(name or "")

    # ------------------------------------------------------------------------------------------ session
    def _show_overrides(self) -> None:
        """Mark the layers the recipe gives values of their own; while there are any, their column shows."""
        self.table_model.set_overrides(self.session.draft.overrides_of)
        self._show_by_itself("Override", any(step.select.overrides for step in self.session.draft.steps))

    def _show_sensitivity(self, *_args) -> None:
        """Each layer's sparsity at which the metric drops 1 point, from the latest prune sensitivity; the
        column shows by itself once there is one."""
        levels = self.session.sensitivity.prune_drop_levels()
        self.table_model.set_sensitivity(levels)
        self._show_by_itself("Sensitivity", levels is not None)

    def _show_by_itself(self, name: str, wanted: bool) -> None:
        """Show column ``name`` while ``wanted`` (unless the user chose it anyway), hide it again after."""
        section = COLUMNS.index(name)
        if wanted and self.table.isColumnHidden(section):
            self.table.setColumnHidden(section, False)
            self._shown_by_itself.add(name)
        elif not wanted and name in self._shown_by_itself:
            self.table.setColumnHidden(section, True)
            self._shown_by_itself.discard(name)

    def _on_model_changed(self) -> None:
        self._kept_selection = self.current_layer() or self._kept_selection
        self.table_model.set_measurements(self.session.measurements, self._codebooks(), self._stored())
        self.size_view.show_inventory(None)
        self._show_layer(None)
        self._show_architecture(None)

    def _on_measured(self, key: str) -> None:
        selected = self.current_layer() or self._kept_selection
        self.table_model.set_measurements(self.session.measurements, self._codebooks(), self._stored())
        if key == "inventory" and self.table_model.rowCount():
            # A new model's layers: every plot on the page redraws, and each pyqtgraph scene repaints in
            # Python (16-24 ms on a large model). Drawn in one pass they froze the window for 50-60 ms, so
            # the histogram goes now and the unit plots and the bytes plot in the next event-loop pass.
            self._fit_table()
            self._landing = True
            try:
                self.select_layer(selected if selected is not None and self.table_model.row_of(selected) >= 0
                                  else self.table_model.layer_name(0))
            finally:
                self._landing = False
            QTimer.singleShot(1, self, self._after_landing)
        elif key in ("weights", "activations", "notes"):
            # redraw only the plot the new result belongs to: every plot repaint runs Python paint code
            # that competes with the background task for the interpreter
            self._show_layer(selected, weights=key == "weights", units=key != "weights")
            if key == "weights":
                self._show_architecture(selected)
                self.sig_layer_changed.emit(selected or "")

    def _on_idle(self) -> None:
        """The inspection is over: cells still waiting ("…") say they will not come, and so does the unit plot."""
        if self.session.measurements.inventory is not None:
            self.table_model.set_measurements(self.session.measurements, self._codebooks(), self._stored(),
                                              finished=True)
            self._show_layer(self.current_layer(), weights=False)

    def _after_landing(self) -> None:
        name = self.current_layer()
        self.size_view.show_inventory(self.session.measurements.inventory, name, self._stored())
        self._show_layer(name, weights=False)

    def eventFilter(self, obj, event) -> bool:
        if obj is self.left_splitter and event.type() == QEvent.Type.Resize and self.table_model.rowCount():
            QTimer.singleShot(0, self, self._fit_table)  # once the splitter has laid its panes out
        return False

    def _fit_table(self) -> None:
        """Size the table to its rows, both ways: a three-layer model gives its empty rows to the bytes plot,
        and a six-layer model opened after it gets them back (the table stayed three rows tall). The bytes
        plot keeps at least BYTES_MIN_HEIGHT; a table that needs more than the rest scrolls."""
        sizes = self.left_splitter.sizes()
        if len(sizes) != 2 or sum(sizes) <= 0:
            return
        needed = (self.table.horizontalHeader().height() + 2 * self.table.frameWidth() + 4
                  + self.table.verticalHeader().length() + self.table.horizontalScrollBar().sizeHint().height())
        table = max(min(needed, sum(sizes) - BYTES_MIN_HEIGHT), 0)
        self.left_splitter.setSizes([table, sum(sizes) - table])

    # ------------------------------------------------------------------------------------------ architecture
    def show_inspector_tab(self, title: str) -> None:
        """Bring the upper pane's view titled ``title`` ("Weights", "Low rank", "Softened outputs") to the front."""
        for index in range(self.weight_tabs.count()):
            if self.weight_tabs.tabText(index) == title:
                self.weight_tabs.setCurrentIndex(index)
                return
        raise KeyError(title)

    def _inspector_tab_changed(self, _index: int) -> None:
        current = self.weight_tabs.currentWidget()
        self.spectrum_presenter.set_active(current is self.spectrum)
        self.softened_presenter.set_active(current is self.softened)

    def _show_architecture(self, name: str | None) -> None:
        self.spectrum_presenter.show_layer(name)
        self.separable_presenter.show_layer(name)

    # ------------------------------------------------------------------------------------------ drawing
    def _threshold_dragged(self, threshold: float) -> None:
        name = self.current_layer()
        stats = self.session.measurements.weights.get(name or "")
        if stats is not None:
            self.session.draft.set_layer_sparsity(name, stats.fraction_below(threshold))

    def _draw_plan(self) -> None:
        """The draft's threshold for the selected layer (per-layer, or the global one), as the engine's
        preview of the recipe computes it."""
        name = self.current_layer()
        stats = self.session.measurements.weights.get(name or "")
        draft = self.session.draft
        if stats is None or draft.prune_method in ("none", "structured") or not self._prunable(name):
            self.histogram.set_threshold(None)
            return
        weights = self.session.measurements.weights
        if self._plan_stats.get("source") is not weights:  # the same dict for every redraw of this model
            self._plan_stats = {"source": weights, "prunable": {n: s for n, s in weights.items()
                                                                if self._prunable(n)}}
        self.histogram.set_threshold(draft.preview(self._plan_stats["prunable"])[name].threshold)

    def _prunable(self, name: str | None) -> bool:
        inventory = self.session.measurements.inventory
        if inventory is None or name is None:
            return False
        try:
            return len(inventory.layer(name).shape) >= 2
        except KeyError:
            return False

    def _show_layer(self, name: str | None, weights: bool = True, units: bool = True) -> None:
        s, m = self.session, self.session.measurements
        if name is None or m.inventory is None:
            self.histogram.show_layer(None, None, "Loading…" if s.runner.busy else "Open a model")
            self.activations.show_layer("", None, "")
            return
        info = m.inventory.layer(name)
        busy = s.runner.busy
        if weights:
            self._show_weights(name, info, busy)
        if units:
            self._show_units(name, info, busy)

    def _show_weights(self, name: str, info, busy: bool) -> None:
        s, m = self.session, self.session.measurements
        current, original = s.variants.current, s.variants.original
        self.histogram.set_levels(list(current.codebooks.get(name, ())) if current is not None else [])
        compressed = current is not None and not current.is_original and original is not None
        self.histogram.set_overlay(original.weights.get(name) if compressed else None)
        self.histogram.show_layer(info, m.weights.get(name), "computing statistics…" if busy else "not measured")
        self._draw_plan()

    def _show_units(self, name: str, info, busy: bool) -> None:
        s, m = self.session, self.session.measurements
        act = m.activations.get(name)
        if act is None:
            if m.notes:
                waiting = m.notes[-1]
            elif not any(t in info.type for t in ("Linear", "Conv")):
                waiting = f"{info.type} has no neurons of its own: select a Linear or Conv layer"
            else:
                waiting = "counting how often each unit fires…" if busy else "not measured"
            self.activations.show_layer(name, None, waiting)
        else:
            inputs = s.loaded.meta.get("inputs") if s.loaded is not None else None
            source = (f" of {s.data.name} validation images" if s.data else
                      f" (your inputs, {Path(inputs).name})" if inputs else " (probe inputs)")
            self.activations.show_layer(name, act, "", "channels" if "Conv" in info.type else "neurons", source,
                                        removable=name != self._output_layer())

    def _output_layer(self) -> str | None:
        """The last layer with a weight matrix: its units are the model's outputs (the engine checks exactly)."""
        inventory = self.session.measurements.inventory
        layers = [layer.name for layer in inventory.layers if len(layer.shape) >= 2] if inventory else []
        return layers[-1] if layers else None
