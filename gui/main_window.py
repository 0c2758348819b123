"""The studio's main window: wiring of the session, the layer table and the inspector views."""

from __future__ import annotations

from pathlib import Path

import torch

from PySide6.QtCore import QSettings, Qt
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import (QDockWidget, QFileDialog, QLabel, QMainWindow, QMenu, QMessageBox, QScrollArea,
                               QTabWidget, QToolButton, QVBoxLayout, QWidget)

from core.eval import zoo
from core.fileio import atomic_write
from gui import shortcuts
from gui.exporting import export_plot_to, plot_name, plot_png, plots_on_screen
from gui.data_menu import fill_data_menu
from gui.session import Session
from gui.sweeping import install_sweep
from gui.widgets.compare_view import CompareView
from gui.widgets.demo_view import DemoView
from gui.widgets.layers_page import LayersPage
from gui.widgets.metrics_bar import MetricsBar
from gui.opening import Opener
from gui.widgets.recipe_panel import RecipePanel
from gui.widgets.sensitivity_view import SensitivityView
from gui.widgets.task_bar import TaskBar
from gui.widgets.tradeoff_plot import TradeoffPlot
from gui.widgets.variant_list import VariantList



class MainWindow(QMainWindow):
    def __init__(self, session: Session, settings: QSettings | None = None) -> None:
        super().__init__()
        self.session = session
        self.settings = settings or QSettings("Prunescope", "Prunescope")
        self.setWindowTitle("Prunescope")
        self.setAcceptDrops(True)
        self.setDockNestingEnabled(True)
        self.dialog: QMessageBox | None = None  # the message box shown last (non-blocking)
        self.confirm_close = self._confirm_close  # replaceable in tests

        self.layers = LayersPage(session)
        # the page's parts, by the names the rest of the window (and its tests) use
        self.table_model, self.proxy, self.table = self.layers.table_model, self.layers.proxy, self.layers.table
        self.histogram, self.activations, self.size_view = (self.layers.histogram, self.layers.activations,
                                                            self.layers.size_view)
        self.tradeoff = TradeoffPlot()
        self.compare = CompareView()
        self.demo = DemoView()
        self.sensitivity = SensitivityView(session)
        self._stale_pages: set[QWidget] = set()  # pages to redraw when next shown
        self.tabs = QTabWidget(objectName="pages")
        for page, title in ((self.layers, "Layers"), (self.sensitivity, "Sensitivity"), (self.tradeoff, "Trade-off"),
                            (self.compare, "Compare"), (self.demo, "Demo")):
            self.tabs.addTab(page, title)
        self.tabs.currentChanged.connect(lambda _index: self._refresh_page(self.tabs.currentWidget()))
        self.metrics = MetricsBar(session)
        self.task_bar = TaskBar(session.runner)
        self.statusBar().addPermanentWidget(self.task_bar, 1)
        central = QWidget()
        layout = QVBoxLayout(central)
        layout.setContentsMargins(10, 10, 10, 4)
        layout.setSpacing(8)
        layout.addWidget(self.metrics)
        layout.addWidget(self.tabs, 1)
        self.setCentralWidget(central)

        self.recipe_panel = RecipePanel(session.draft)
        self.variant_list = VariantList(session.variants)
        self.recipe_dock = self._dock("Compress", self.recipe_panel, "recipeDock", scrolls=False)  # its controls scroll
        self.variants_dock = self._dock("Variants", self.variant_list, "variantsDock")
        self.splitDockWidget(self.recipe_dock, self.variants_dock, Qt.Orientation.Vertical)
        self.resizeDocks([self.recipe_dock, self.variants_dock], [600, 220], Qt.Orientation.Vertical)
        self.resizeDocks([self.recipe_dock], [340], Qt.Orientation.Horizontal)
        self._build_actions()

        self.layers.sig_layer_changed.connect(self._update_recipe_context)
        self.recipe_panel.sig_apply.connect(self.apply)
        self.recipe_panel.sig_base_chosen.connect(self._choose_base)
        session.draft.sig_changed.connect(self._show_apply_base)
        self.recipe_panel.sig_save.connect(self.save_recipe_dialog)
        self.recipe_panel.sig_load.connect(self.load_recipe_dialog)
        for section in self.recipe_panel.sections:  # a section that shows an inspector view (distillation's)
            if hasattr(section, "sig_show_outputs"):
                section.sig_show_outputs.connect(lambda: self.layers.show_inspector_tab("Softened outputs"))
        session.draft.sig_refused.connect(lambda why: self.statusBar().showMessage(f"Not changed: {why}", 8000))
        session.sig_notes.connect(self._show_notes)
        self.statusBar().messageChanged.connect(lambda text: text or self.statusBar().setToolTip(""))  # notes' tooltip goes with them
        self.variant_list.sig_save.connect(self.save_variant_dialog)
        self.tradeoff.sig_variant_clicked.connect(session.make_current)
        self.demo.tradeoff.sig_variant_clicked.connect(session.make_current)
        self.demo.sig_export.connect(self.export_report_dialog)
        self.activations.sig_remove_units.connect(session.remove_units)
        self.sensitivity.sig_layer_chosen.connect(self.select_layer)  # a clicked cell's layer, in the Compress panel too
        session.variants.sig_changed.connect(self._variants_changed)
        session.variants.sig_current_changed.connect(self._variants_changed)
        session.sig_model_changed.connect(self._on_model_changed)
        session.sig_error.connect(self._on_error)
        session.sig_needs_trust.connect(self._ask_trust)
        self._restore_layout()

    def _dock(self, title: str, widget: QWidget, name: str, scrolls: bool = True) -> QDockWidget:
        """A dock for ``widget``; ``scrolls``: inside a scroll area, so a dock never sets the window's minimum
        height (laptops have 768 px). A widget that scrolls its own parts passes False."""
        dock = QDockWidget(title, self, objectName=name)
        if scrolls:
            scroll = QScrollArea()
            scroll.setWidget(widget)
            scroll.setWidgetResizable(True)
            scroll.setFrameShape(QScrollArea.Shape.NoFrame)
            widget = scroll
        dock.setWidget(widget)
        dock.setFeatures(QDockWidget.DockWidgetFeature.DockWidgetMovable
                         | QDockWidget.DockWidgetFeature.DockWidgetFloatable)
        self.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, dock)
        return dock

    def current_layer(self) -> str | None:
        return self.layers.current_layer()

    def select_layer(self, name: str) -> None:
        self.layers.select_layer(name)

    # ------------------------------------------------------------------------------------------ actions
    def _build_actions(self) -> None:
        bar = self.addToolBar("Main")
        bar.setObjectName("mainToolBar")
        bar.setMovable(False)
        file_menu = self.menuBar().addMenu("&File")
        self.open_action = QAction("Open model…", self, shortcut=QKeySequence.StandardKey.Open,
                                   triggered=lambda: self.opener.open_form())
        self.opener = Opener(self, self.session, self.settings)
        self.recent_menu = self.opener.recent_menu
        self.zoo_menu = QMenu("Open zoo model", self)
        for name, entry in zoo.ZOO.items():
            self.zoo_menu.addAction(f"{name}  —  {entry.description}",
                                    lambda n=name: self.session.open_model(f"zoo:{n}"))
        self.data_menu = QMenu("Data set", self)
        self.data_menu.aboutToShow.connect(lambda: fill_data_menu(self.data_menu, self, self.session))
        self.inspect_action = QAction("Re-inspect", self, shortcut=QKeySequence("F5"),
                                      triggered=self.session.inspect)
        self.cancel_action = QAction("Cancel task", self, shortcut=QKeySequence("Esc"),
                                     triggered=self.session.cancel)
        self.export_menu = QMenu("Export plot", self)  # every plot on screen, listed when the menu opens
        self.export_menu.aboutToShow.connect(self._fill_export_menu)
        quit_action = QAction("Quit", self, shortcut=QKeySequence.StandardKey.Quit, triggered=self.close)
        for item in (self.open_action, self.recent_menu, self.zoo_menu, self.data_menu, None, self.inspect_action,
                     self.cancel_action, None, self.export_menu, None, quit_action):
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
        edit_menu = self.menuBar().addMenu("&Edit")
        stack = self.session.variants.undo_stack
        self.undo_action = stack.createUndoAction(self, "Undo")
        self.undo_action.setShortcut(QKeySequence.StandardKey.Undo)
        self.redo_action = stack.createRedoAction(self, "Redo")
        self.redo_action.setShortcut(QKeySequence.StandardKey.Redo)
        edit_menu.addAction(self.undo_action)
        edit_menu.addAction(self.redo_action)
        compress_menu = self.menuBar().addMenu("&Compress")
        self.apply_action = QAction("Apply recipe", self, shortcut=QKeySequence("Ctrl+Return"), triggered=self.apply)
        save_file = QAction("Save compressed file…", self, shortcut=QKeySequence.StandardKey.Save,
                            triggered=lambda: self.session.variants.current_id is not None
                            and self.save_variant_dialog(self.session.variants.current_id))
        for action in (self.apply_action, save_file):
            compress_menu.addAction(action)
        self.clear_overrides_action = QAction("Clear all per-layer overrides", self,
                                              triggered=self.session.draft.clear_overrides)
        self.clear_overrides_action.setToolTip("Remove every layer's own sparsity or bits (● in the layer table)")
        compress_menu.addAction(self.clear_overrides_action)
        self.sweeper = install_sweep(self, compress_menu)  # Compress > Sweep…
        compress_menu.addSeparator()
        compress_menu.addAction("Save recipe…", self.save_recipe_dialog)
        compress_menu.addAction("Load recipe…", self.load_recipe_dialog)
        bar.addSeparator()
        bar.addAction(self.apply_action)
        bar.addAction(self.undo_action)
        bar.addAction(self.redo_action)
        help_menu = self.menuBar().addMenu("&Help")
        self.help_action = QAction("Help and keyboard shortcuts", self, triggered=self.show_help,
                                   shortcut=QKeySequence.StandardKey.HelpContents)
        help_menu.addAction(self.help_action)
        help_menu.addAction("About Prunescope", self._about)
        shortcuts.install(self, self.undo_action, self.redo_action, [self.apply_action, self.help_action])

    def _fill_export_menu(self) -> None:
        self.export_menu.clear()
        plots = plots_on_screen(self)
        for plot in plots:
            self.export_menu.addAction(f"{plot_name(plot)}…", lambda p=plot: self.export_plot(p))
        if not plots:
            self.export_menu.addAction("No plot on screen").setEnabled(False)

    def show_help(self) -> None:
        """The help page: every shortcut (read from the actions) and the README's link."""
        self.help_dialog = shortcuts.HelpDialog(self)
        self.help_dialog.open()

    def export_plot(self, plot, path: str | None = None) -> str | None:
        """Save a plot as PNG or SVG (by the file's suffix); asks for a path when none is given."""
        if path is None:
            path, _ = QFileDialog.getSaveFileName(self, "Export plot", str(Path.home() / "plot.png"),
                                                  "PNG image (*.png);;SVG drawing (*.svg)")
            if not path:
                return None
        export_plot_to(plot, path)
        return path

    # ------------------------------------------------------------------------------------------ session
    def _on_model_changed(self) -> None:
        s = self.session
        self.setWindowTitle(f"Prunescope — {s.loaded.name}" + (f" · {s.data.name}" if s.data else ""))

    def _update_recipe_context(self, layer: str) -> None:
        """Give the recipe panel the selected layer and the statistics its preview needs."""
        m, s = self.session.measurements, self.session
        if m.inventory is None:
            self.recipe_panel.set_context(None, {}, 0, 0)
            return
        prunable = {i.name for i in m.inventory.layers if len(i.shape) >= 2}
        stats = {n: w for n, w in m.weights.items() if n in prunable}
        other = sum(i.params for i in m.inventory.layers) - sum(w.count for w in stats.values())
        original = s.variants.original
        self.recipe_panel.set_context(layer or None, stats, other * 2,
                                      original.size_bytes if original else m.saved_bytes or 0)

    def _variants_changed(self, _variant_id: int | None = None) -> None:
        # only the page on screen is redrawn now; the others when they are shown (each redraw is UI-thread
        # work, and a variant arriving while the next task starts should not stall the window)
        self._stale_pages = {self.tradeoff, self.compare, self.demo}
        self._refresh_page(self.tabs.currentWidget())
        self._show_apply_base()

    def _choose_base(self, key: str) -> None:
        self.session.apply_on = key
        self._show_apply_base()

    def _show_apply_base(self) -> None:
        """The Apply button says what it builds on ("Apply on #2 …" or "Apply on the original")."""
        base = self.session.apply_base() if self.session.variants.variants else None
        label = "the original" if base is None or base.is_original else f"#{base.id}"
        self.recipe_panel.set_base(self.session.apply_on, label)

    def _refresh_page(self, page) -> None:
        if page not in self._stale_pages:
            return
        self._stale_pages.discard(page)
        store, data = self.session.variants, self.session.data
        if page is self.tradeoff:
            self.tradeoff.show_variants(store.variants, store.current_id)
        elif page is self.compare:
            images = data.test.images if data is not None and data.test.images.dtype == torch.uint8 else None
            self.compare.set_variants(store.variants, store.current_id, images, data.classes if data else ())
        elif page is self.demo:
            self.demo.show_result(store.variants, store.current)
        page.layout().activate()  # lay the new texts out now, not one event-loop pass after the first paint

    def export_report_dialog(self, path: str | None = None) -> str | None:
        """Write the HTML report of the current variant against the original, plots embedded."""
        from core.report.html_report import build_html
        from core.pipeline.variants import changed_predictions

        store = self.session.variants
        original, current = store.original, store.current
        if original is None or current is None or current.is_original:
            return None
        if path is None:
            path, _ = QFileDialog.getSaveFileName(self, "Export report", str(Path.home() / "prunescope-report.html"),
                                                  "HTML (*.html)")
            if not path:
                return None
        for page in (self.compare, self.demo):
            self._refresh_page(page)
        images = {"Accuracy against size": plot_png(self.demo.tradeoff.plot),
                  "Weights of the selected layer": plot_png(self.histogram.plot),
                  "Accuracy per class": plot_png(self.compare.class_plot)}
        name = self.session.loaded.name.split(" · ")[0] if self.session.loaded else "model"
        text = build_html(name, original, current, images, len(changed_predictions(original, current)["now_wrong"]))
        with atomic_write(path) as f:
            f.write(text.encode())
        return path

    # ------------------------------------------------------------------------------------------ compressing
    def _show_notes(self, variant: str, notes: list) -> None:
        """A run's notes (a layer the step skipped, and why) in the status bar, all of them in its tooltip;
        the variant's report.json keeps them too."""
        more = f" (+{len(notes) - 1} more: hover)" if len(notes) > 1 else ""
        self.statusBar().showMessage(f"{variant}: {notes[0]}{more}", 20000)
        self.statusBar().setToolTip("\n".join(f"{variant}: {n}" for n in notes))

    def apply(self) -> None:
        base = self.session.apply_base() if self.session.variants.variants else None
        if self.session.apply():
            on = "the original" if base is None or base.is_original else base.name
            self.statusBar().showMessage(f"Compressing {on} in the background; the new variant appears when done",
                                         6000)

    def save_recipe_dialog(self, path: str | None = None) -> str | None:
        if path is None:
            path, _ = QFileDialog.getSaveFileName(self, "Save recipe", str(Path.home() / "recipe.yaml"),
                                                  "Recipe (*.yaml *.yml *.json)")
            if not path:
                return None
        recipe = self.session.draft.to_recipe()
        with atomic_write(path) as f:
            f.write((recipe.to_json() if path.endswith(".json") else recipe.to_yaml()).encode())
        return path

    def load_recipe_dialog(self, path: str | None = None) -> None:
        from core.errors import PrunescopeError
        from core.recipe import Recipe

        if path is None:
            path, _ = QFileDialog.getOpenFileName(self, "Load recipe", str(Path.home()),
                                                  "Recipe (*.yaml *.yml *.json);;All files (*)")
            if not path:
                return
        try:
            recipe = Recipe.from_file(path)  # size-capped, UTF-8, an ordinary file: never a FIFO or a device
        except (OSError, PrunescopeError) as exc:
            self._show_dialog(QMessageBox.Icon.Warning, "Cannot load the recipe", f"{Path(path).name}: {exc}")
            return
        self.session.draft.load_recipe(recipe)

    def save_variant_dialog(self, variant_id: int, folder: str | None = None) -> Path | None:
        if folder is None:
            folder = QFileDialog.getExistingDirectory(self, "Save the compressed file and its report in")
            if not folder:
                return None
        try:
            path = self.session.save_variant(variant_id, folder)
        except OSError as exc:
            self._show_dialog(QMessageBox.Icon.Warning, "Cannot save", str(exc))
            return None
        self.variant_list.refresh()
        self.statusBar().showMessage(f"Saved {path} ({path.stat().st_size:,} bytes)", 6000)
        return path

    def _on_error(self, title: str, message: str) -> None:
        self._show_dialog(QMessageBox.Icon.Warning, title, message)

    def _ask_trust(self, spec: str, risk: str) -> None:
        box = self._show_dialog(QMessageBox.Icon.Warning, "This file can run code", risk,
                                QMessageBox.StandardButton.Cancel)
        load = box.addButton("Load and run its code", QMessageBox.ButtonRole.AcceptRole)
        box.setDefaultButton(QMessageBox.StandardButton.Cancel)
        box.buttonClicked.connect(lambda b: self.session.open_trusted(spec) if b is load
                                  else self.task_bar.note(f"Not opened: {spec}"))

    def _show_dialog(self, icon, title: str, text: str, buttons=QMessageBox.StandardButton.Ok) -> QMessageBox:
        box = QMessageBox(icon, title, text, buttons, self)
        box.setWindowModality(Qt.WindowModality.WindowModal)
        box.open()  # non-blocking: the studio keeps running
        self.dialog = box
        return box

    def _about(self) -> None:
        box = self._show_dialog(QMessageBox.Icon.Information, "About Prunescope", shortcuts.about_html())
        box.setTextFormat(Qt.TextFormat.RichText)
        box.setTextInteractionFlags(Qt.TextInteractionFlag.TextBrowserInteraction)
        label = box.findChild(QLabel, "qt_msgbox_label")
        if label is not None:
            label.setOpenExternalLinks(True)

    # ------------------------------------------------------------------------------------------ window
    def dragEnterEvent(self, event) -> None:
        if event.mimeData().hasUrls():
            event.acceptProposedAction()

    def dropEvent(self, event) -> None:
        urls = [u for u in event.mimeData().urls() if u.isLocalFile()]
        if urls:
            self.session.open_model(urls[0].toLocalFile())
            event.acceptProposedAction()

    def _splitters(self) -> list:
        return self.layers.splitters()

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
        state = self.settings.value("window/state")
        if state is not None:
            self.restoreState(state)
        columns = self.settings.value("view/layer_columns")
        if isinstance(columns, str) and columns:
            self.layers.set_visible_columns(columns.split(","))
        mode = str(self.settings.value("view/histogram_mode", "abs"))
        self.histogram.set_mode(mode if mode in ("abs", "signed", "log") else "abs")
        self.tradeoff.use_settings(self.settings)  # the x axis chosen last time, remembered as it changes

    def _confirm_close(self, unsaved: list) -> bool:
        names = ", ".join(v.name for v in unsaved[:4]) + (" ..." if len(unsaved) > 4 else "")
        answer = QMessageBox.question(self, "Unsaved variants", f"{len(unsaved)} compressed variant(s) are not saved "
                                      f"({names}). Close anyway and lose them?",
                                      QMessageBox.StandardButton.Close | QMessageBox.StandardButton.Cancel,
                                      QMessageBox.StandardButton.Cancel)
        return answer == QMessageBox.StandardButton.Close

    def closeEvent(self, event) -> None:
        unsaved = self.session.variants.unsaved()
        if unsaved and not self.confirm_close(unsaved):
            event.ignore()
            return
        self.settings.setValue("window/state", self.saveState())
        self.settings.setValue("window/geometry", self.saveGeometry())
        for key, splitter in self._splitters():
            self.settings.setValue(key, splitter.saveState())
        self.settings.setValue("view/histogram_mode", self.histogram.mode)
        self.settings.setValue("view/layer_columns", ",".join(self.layers.visible_columns()))
        self.session.cancel()
        super().closeEvent(event)
