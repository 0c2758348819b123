"""Sweeps in the studio: Compress > Sweep… runs a grid over the current recipe in the background, through the
session's one task runner (its progress bar and Cancel), and each result lands in the trade-off plot as it
finishes, the Pareto front drawn again over the variants and the sweep's points.

A sweep compresses the original model with every recipe of the grid (:func:`core.sweep.sweep`, on local worker
processes or a Ray cluster); its points hold figures, not models: clicking one loads its recipe into the
Compress panel, and Apply makes it a variant. Opening another model takes the points away.
"""

from __future__ import annotations

from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QAction
from PySide6.QtWidgets import QMainWindow, QMenu

from core.progress import Partial
from core.recipe import Recipe
from core.sweep import RESULT_KEY, SweepError, SweepResult, backend_for, sweep
from core.sweep.grid import format_value
from gui.session import Session
from gui.widgets.sweep_dialog import SweepDialog, SweepRequest
from gui.widgets.tradeoff_plot import TradeoffPlot

SPARSITIES = (0.5, 0.7, 0.8, 0.9)


def suggested_axes(recipe: Recipe) -> str:
    """Axes to start from, one per line: the first step's sparsity that has one (a few levels and the
    recipe's own), and its bits (the recipe's, one fewer and one more)."""
    lines = []
    prune = next((s for s in recipe.steps if isinstance(getattr(s, "sparsity", None), float)), None)
    if prune is not None:
        levels = sorted({*SPARSITIES, round(prune.sparsity, 4)})
        lines.append(f"{prune.kind}.sparsity={','.join(format_value(v) for v in levels)}")
    quant = next((s for s in recipe.steps if isinstance(getattr(s, "bits", None), int)), None)
    if quant is not None:
        bits = [b for b in (quant.bits - 1, quant.bits, quant.bits + 1) if 1 <= b <= 8]
        lines.append(f"{quant.kind}.bits={','.join(map(str, bits))}")
    return "\n".join(lines)


class Sweeper(QObject):
    """Starts sweeps for the window and keeps their results, shown in ``plot``."""

    sig_started = Signal()
    """A sweep started (the window shows the trade-off plot)."""

    def __init__(self, window: QMainWindow, session: Session, plot: TradeoffPlot) -> None:
        super().__init__(window)
        self.window, self.session, self.plot = window, session, plot
        self.results: list[SweepResult] = []
        self.dialog: SweepDialog | None = None
        self._model = None  # the model the results were measured on
        session.runner.sig_partial.connect(self._on_partial)
        session.sig_model_changed.connect(self._on_model_changed)
        plot.sig_sweep_clicked.connect(self._load_recipe)

    def open_dialog(self) -> SweepDialog:
        """The Sweep dialog (non-blocking), its axes suggested from the current recipe; Run starts it."""
        dialog = SweepDialog(self.window, self.session.draft.to_recipe(), suggested_axes(self.session.draft.to_recipe()))
        dialog.accepted.connect(lambda: self.start(dialog.request()))
        dialog.open()
        self.dialog = dialog
        return dialog

    def start(self, request: SweepRequest) -> bool:
        """Run ``request`` on the original model in the background; False (and a message) when it cannot."""
        session = self.session
        if session.loaded is None or session.opening or not session.variants.variants:
            session.sig_error.emit("Nothing to sweep yet", "Open a model and wait until it is measured: a sweep "
                                   "compresses the original, and its points sit beside it.")
            return False
        original = session.variants.original
        loaded, data = session.variants.models.get(original.id, session.loaded), session.data
        try:
            backend = backend_for(request.ray, request.workers)
        except SweepError as exc:
            session.sig_error.emit("Cannot sweep", str(exc))
            return False
        self.results, self._model = [], loaded
        self.plot.show_sweep([])
        jobs, limit = request.jobs, request.limit
        session.runner.start(f"Sweep: {len(jobs)} recipes on {backend.description}",
                             lambda: sweep(jobs, loaded, data, backend, limit), self._done)
        self.sig_started.emit()
        return True

    def _on_partial(self, partial: Partial) -> None:
        if partial.key == RESULT_KEY:
            self.results.append(partial.value)
            self.plot.show_sweep(self.results)

    def _done(self, results: list[SweepResult]) -> None:
        self.results = list(results)
        self.plot.show_sweep(self.results)
        on_front = len(self.plot.sweep_front)
        self.window.statusBar().showMessage(f"Sweep done: {len(results)} recipes, {on_front} of them on the Pareto "
                                            "front; click a point to load its recipe", 10000)

    def _on_model_changed(self) -> None:
        original = self.session.variants.original
        if self.results and (original is None or self.session.variants.models.get(original.id) is not self._model):
            self.results, self._model = [], None
            self.plot.show_sweep([])

    def _load_recipe(self, result: SweepResult) -> None:
        self.session.draft.load_recipe(result.recipe)
        self.window.statusBar().showMessage(f"Loaded the recipe of {result.name}: Apply makes it a variant", 8000)


def install_sweep(window: QMainWindow, menu: QMenu) -> Sweeper:
    """Compress > Sweep…, and the sweeper behind it, for ``window`` (its session and trade-off plot)."""
    sweeper = Sweeper(window, window.session, window.tradeoff)
    window.sweep_action = QAction("Sweep…", window, triggered=sweeper.open_dialog)
    window.sweep_action.setToolTip("Run a grid of recipes (sparsity × bits, ...) and plot each as it finishes")
    menu.addAction(window.sweep_action)
    sweeper.sig_started.connect(lambda: window.tabs.setCurrentWidget(window.tradeoff))
    return sweeper
