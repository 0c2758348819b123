"""The studio's main window: wiring of the session, the layer table and the inspector views."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QItemSelectionModel, QSettings, Qt
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import (QAbstractItemView, QFileDialog, QHeaderView, QLabel, QMainWindow, QMenu,
                               QMessageBox, QSplitter, QTableView, QToolButton, QVBoxLayout, QWidget)

from core import zoo
from core.data import BUILTIN_DATASETS, FASHION_HELP, dataset_available
from core.fileio import atomic_path
from gui.models.layer_table import LayerSortProxy, LayerTableModel
from gui.session import Session
from gui.widgets.activation_view import ActivationView
from gui.widgets.histogram_view import HistogramView
from gui.widgets.metrics_bar import MetricsBar
from gui.widgets.size_view import SizeView
from gui.widgets.task_bar import TaskBar

def save_svg(widget: QWidget, path: str) -> None:
    """Render a widget into an SVG file with Qt's own SVG generator."""
    from PySide6.QtGui import QPainter
    from PySide6.QtSvg import QSvgGenerator

    generator = QSvgGenerator()
    generator.setFileName(path)
    generator.setSize(widget.size())
    generator.setViewBox(widget.rect())
    generator.setTitle("Prunescope plot")
    painter = QPainter(generator)
    try:
        widget.render(painter)
    finally:
        painter.end()


MODEL_FILTER = "Models (*.pt *.pth *.pt2 *.ts *.jit *.bin *.ckpt);;All files (*)"


class MainWindow(QMainWindow):
    def __init__(self, session: Session, settings: QSettings | None = None) -> None:
        super().__init__()
        self.session = session
        self.settings = settings or QSettings("Prunescope", "Prunescope")
        self.setWindowTitle("Prunescope")
        self.setAcceptDrops(True)
        self.dialog: QMessageBox | None = None  # the message box shown last (non-blocking)

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
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.selectionModel().currentRowChanged.connect(self._on_row_changed)

        self.histogram = HistogramView()
        self.activations = ActivationView()
        self.metrics = MetricsBar(session)
        self.task_bar = TaskBar(session.runner)
        self.statusBar().addPermanentWidget(self.task_bar, 1)

        left = QWidget(objectName="panel")
        left_layout = QVBoxLayout(left)
        left_layout.setContentsMargins(10, 8, 10, 8)
        left_layout.addWidget(QLabel("Layers", objectName="panelTitle"))
        self.size_view = SizeView()
        self.size_view.sig_layer_clicked.connect(self.select_layer)
        self.left_splitter = QSplitter(Qt.Orientation.Vertical)
        self.left_splitter.addWidget(self.table)
        self.left_splitter.addWidget(self.size_view)
        self.left_splitter.setSizes([520, 300])
        left_layout.addWidget(self.left_splitter, 1)
        hint = QLabel("Click a layer to inspect it. Drop a model file anywhere to open it.", objectName="caption")
        left_layout.addWidget(hint)
        self.inspector = QSplitter(Qt.Orientation.Vertical)
        self.inspector.addWidget(self.histogram)
        self.inspector.addWidget(self.activations)
        self.splitter = QSplitter(Qt.Orientation.Horizontal)
        self.splitter.addWidget(left)
        self.splitter.addWidget(self.inspector)
        self.splitter.setSizes([800, 800])
        central = QWidget()
        layout = QVBoxLayout(central)
        layout.setContentsMargins(10, 10, 10, 4)
        layout.setSpacing(8)
        layout.addWidget(self.metrics)
        layout.addWidget(self.splitter, 1)
        self.setCentralWidget(central)
        self._build_actions()

        session.sig_model_changed.connect(self._on_model_changed)
        session.sig_measured.connect(self._on_measured)
        session.sig_error.connect(self._on_error)
        session.sig_needs_trust.connect(self._ask_trust)
        self._restore_layout()

    # ------------------------------------------------------------------------------------------ actions
    def _build_actions(self) -> None:
        bar = self.addToolBar("Main")
        bar.setObjectName("mainToolBar")
        bar.setMovable(False)
        file_menu = self.menuBar().addMenu("&File")
        self.open_action = QAction("Open model…", self, shortcut=QKeySequence.StandardKey.Open,
                                   triggered=self.open_file_dialog)
        self.zoo_menu = QMenu("Open zoo model", self)
        for name, entry in zoo.ZOO.items():
            self.zoo_menu.addAction(f"{name}  —  {entry.description}",
                                    lambda n=name: self.session.open_model(f"zoo:{n}"))
        self.data_menu = QMenu("Data set", self)
        self.data_menu.aboutToShow.connect(self._fill_data_menu)
        self.inspect_action = QAction("Re-inspect", self, shortcut=QKeySequence("F5"),
                                      triggered=self.session.inspect)
        self.cancel_action = QAction("Cancel task", self, shortcut=QKeySequence("Esc"),
                                     triggered=self.session.cancel)
        self.export_hist_action = QAction("Export weight histogram…", self,
                                          triggered=lambda: self.export_plot(self.histogram.plot))
        self.export_act_action = QAction("Export activation plot…", self,
                                         triggered=lambda: self.export_plot(self.activations.plot))
        quit_action = QAction("Quit", self, shortcut=QKeySequence.StandardKey.Quit, triggered=self.close)
        for item in (self.open_action, self.zoo_menu, self.data_menu, None, self.inspect_action,
                     self.cancel_action, None, self.export_hist_action, self.export_act_action, None, quit_action):
            if item is None:
                file_menu.addSeparator()
            elif isinstance(item, QMenu):
                file_menu.addMenu(item)
            else:
                file_menu.addAction(item)
        bar.addAction(self.open_action)
        for menu, text in ((self.zoo_menu, "Zoo"), (self.data_menu, "Data set")):
            button = QToolButton(text=text, popupMode=QToolButton.ToolButtonPopupMode.InstantPopup)
            button.setMenu(menu)
            bar.addWidget(button)
        bar.addAction(self.inspect_action)
        help_menu = self.menuBar().addMenu("&Help")
        help_menu.addAction("About Prunescope", self._about)

    def _fill_data_menu(self) -> None:
        self.data_menu.clear()
        for name in BUILTIN_DATASETS:
            action = self.data_menu.addAction(name, lambda n=name: self.session.use_dataset(n))
            if not dataset_available(name):
                action.setEnabled(False)
                action.setText(f"{name} (not installed)")
                action.setToolTip(FASHION_HELP)
        self.data_menu.setToolTipsVisible(True)
        self.data_menu.addSeparator()
        self.data_menu.addAction("Open data folder…", self._open_data_folder)

    def open_file_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open model", str(Path.home()), MODEL_FILTER)
        if path:
            self.session.open_model(path)

    def _open_data_folder(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Open data folder (IDX files, or one folder per class)")
        if path:
            self.session.use_dataset(path)

    def export_plot(self, plot, path: str | None = None) -> str | None:
        """Save a plot as PNG or SVG (by the file's suffix); asks for a path when none is given."""
        if path is None:
            path, _ = QFileDialog.getSaveFileName(self, "Export plot", str(Path.home() / "plot.png"),
                                                  "PNG image (*.png);;SVG drawing (*.svg)")
            if not path:
                return None
        with atomic_path(path) as tmp:
            if path.lower().endswith(".svg"):
                save_svg(plot, str(tmp))  # pyqtgraph's SVG exporter cannot parse the paths Qt 6.11 writes
            else:
                import pyqtgraph.exporters as exporters

                exporters.ImageExporter(plot.getPlotItem()).export(str(tmp))
        return path

    # ------------------------------------------------------------------------------------------ session
    def _on_model_changed(self) -> None:
        s = self.session
        self.setWindowTitle(f"Prunescope — {s.loaded.name}" + (f" · {s.data.name}" if s.data else ""))
        self.table_model.set_measurements(s.measurements)
        self.size_view.show_inventory(None)
        self._show_layer(None)

    def _on_measured(self, key: str) -> None:
        selected = self.current_layer()
        self.table_model.set_measurements(self.session.measurements)
        if key == "inventory" and self.table_model.rowCount():
            self.size_view.show_inventory(self.session.measurements.inventory, selected)
            self.select_layer(selected if self.table_model.row_of(selected or "") >= 0
                              else self.table_model.layer_name(0))
        elif key in ("weights", "activations", "notes"):
            self._show_layer(selected)

    def _on_error(self, title: str, message: str) -> None:
        self._show_dialog(QMessageBox.Icon.Warning, title, message)

    def _ask_trust(self, spec: str, risk: str) -> None:
        box = self._show_dialog(QMessageBox.Icon.Warning, "This file can run code", risk,
                                QMessageBox.StandardButton.Cancel)
        load = box.addButton("Load and run its code", QMessageBox.ButtonRole.AcceptRole)
        box.setDefaultButton(QMessageBox.StandardButton.Cancel)
        box.buttonClicked.connect(lambda b: b is load and self.session.open_trusted(spec))

    def _show_dialog(self, icon, title: str, text: str, buttons=QMessageBox.StandardButton.Ok) -> QMessageBox:
        box = QMessageBox(icon, title, text, buttons, self)
        box.setWindowModality(Qt.WindowModality.WindowModal)
        box.open()  # non-blocking: the studio keeps running
        self.dialog = box
        return box

    def _about(self) -> None:
        self._show_dialog(QMessageBox.Icon.Information, "About Prunescope",
                          "Prunescope: see what compression does to a neural network.\n"
                          "Honest bytes, measured accuracy.")

    # ------------------------------------------------------------------------------------------ layers
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
        self._show_layer(name)
        self.size_view.show_inventory(self.session.measurements.inventory, name)

    def _show_layer(self, name: str | None) -> None:
        m = self.session.measurements
        if name is None or m.inventory is None:
            self.histogram.show_layer(None, None, "Loading…" if self.session.runner.busy else "Open a model")
            self.activations.show_layer("", None, "")
            return
        info = m.inventory.layer(name)
        busy = self.session.runner.busy
        self.histogram.show_layer(info, m.weights.get(name), "computing statistics…" if busy else "not measured")
        act = m.activations.get(name)
        is_conv = "Conv" in info.type
        if act is None:
            if m.notes:
                waiting = m.notes[-1]
            elif not any(t in info.type for t in ("Linear", "Conv")):
                waiting = f"{info.type} has no neurons of its own: select a Linear or Conv layer"
            else:
                waiting = "counting how often each unit fires…" if busy else "not measured"
            self.activations.show_layer(name, None, waiting)
        else:
            source = f" of {self.session.data.name} validation images" if self.session.data else " (probe inputs)"
            self.activations.show_layer(name, act, "", "channels" if is_conv else "neurons", source)

    # ------------------------------------------------------------------------------------------ window
    def dragEnterEvent(self, event) -> None:
        if event.mimeData().hasUrls():
            event.acceptProposedAction()

    def dropEvent(self, event) -> None:
        urls = [u for u in event.mimeData().urls() if u.isLocalFile()]
        if urls:
            self.session.open_model(urls[0].toLocalFile())
            event.acceptProposedAction()

    def _splitters(self) -> tuple:
        return (("window/splitter", self.splitter), ("window/inspector", self.inspector),
                ("window/left", self.left_splitter))

    def _restore_layout(self) -> None:
        geometry = self.settings.value("window/geometry")
        if geometry is not None:
            self.restoreGeometry(geometry)
        else:
            screen = self.screen().availableGeometry()
            self.resize(min(1600, screen.width()), min(1000, screen.height()))
        for key, splitter in self._splitters():
            state = self.settings.value(key)
            if state is not None:
                splitter.restoreState(state)
        mode = str(self.settings.value("view/histogram_mode", "abs"))
        self.histogram.set_mode(mode if mode in ("abs", "signed", "log") else "abs")

    def closeEvent(self, event) -> None:
        self.settings.setValue("window/geometry", self.saveGeometry())
        for key, splitter in self._splitters():
            self.settings.setValue(key, splitter.saveState())
        self.settings.setValue("view/histogram_mode", self.histogram.mode)
        self.session.cancel()
        super().closeEvent(event)
