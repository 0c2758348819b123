"""The studio's sensitivity analyses (:func:`core.analysis.sensitivity.sensitivity`) of the current model, and
the recipe edits they lead to.

A run goes through the session's analyses (:meth:`gui.session.Session.analyse`): in the background, once
the runner is free, with progress and cancel; a result for a model that is no longer current is dropped.
Each result is kept per request (method, levels, examples, quantizer) until the model changes, so asking
again, or coming back to the page, shows it without measuring again. Clicking a level of a layer writes
it into the draft (:meth:`SensitivityRuns.set_levels`): a layer's sparsity, bits or rank.
"""

from __future__ import annotations

from dataclasses import dataclass

from PySide6.QtCore import QObject, Signal

from core.analysis import perturb
from core.analysis.curves import DropLevel, levels_at_drop
from core.analysis.sensitivity import Sensitivity, SensitivityError, parse_levels, sensitivity
from core.progress import Progress
from gui.allocation_runs import AllocationRuns
from gui.methods import arch_api as arch

QUANTIZERS = perturb.QUANTIZERS


@dataclass(frozen=True)
class Request:
    """One analysis as asked for: ``limit`` examples of the test split (None: all of it)."""

    method: str
    levels: tuple[float, ...]
    limit: int | None = None
    quantizer: str = "kmeans"

    @property
    def title(self) -> str:
        return f"Sensitivity: {self.method.replace('_', ' ')} at {len(self.levels)} levels"


def make_request(method: str, levels_text: str, limit: int | None, quantizer: str = "kmeans") -> Request | str:
    """The request for these controls, or why it cannot run (the engine's own checks of the levels)."""
    if method not in perturb.METHODS:
        return f"unknown method {method!r}"
    try:
        levels = tuple(parse_levels(levels_text))
    except SensitivityError as exc:
        return str(exc).replace("--levels ", "levels ")
    for level in levels:
        if (why := perturb.check_level(method, level)) is not None:
            return f"level {level:g}: {why}"
    if len(set(levels)) != len(levels):
        return "a level is given twice"
    return Request(method, levels, limit if limit else None, quantizer if method == "quantize" else "kmeans")


class SensitivityRuns(QObject):
    sig_result = Signal(object, object)
    """A result is there for the current model: (its :class:`Request`, the :class:`Sensitivity`)."""
    sig_progress = Signal(object)
    """A :class:`core.progress.Progress` of the sensitivity run in progress."""
    sig_stopped = Signal(str)
    """The requested run ended without a result (cancelled, failed, or waiting no more): what to say."""
    sig_forgotten = Signal()
    """The current model changed: every result of the earlier one is forgotten."""

    def __init__(self, session) -> None:
        super().__init__(session)
        self.session = session
        self.results: dict[Request, Sensitivity] = {}
        self.latest: dict[str, Request] = {}  # method -> the request whose result arrived last
        self.requested: Request | None = None  # asked for, not arrived yet
        self._running = False
        session.sig_model_changed.connect(self._forget)
        runner = session.runner
        runner.sig_started.connect(lambda title: setattr(self, "_running", self._mine(title)))
        runner.sig_progress.connect(lambda p: self._running and self.sig_progress.emit(p))
        runner.sig_cancelled.connect(lambda title: self._stopped(title, "Cancelled: the page shows what it showed"))
        runner.sig_failed.connect(lambda title, error: self._stopped(title, f"Failed: {error}"))
        self.allocation = AllocationRuns(session, self)  # a target filled in by automatic allocation

    @property
    def running(self) -> bool:
        """A sensitivity run is measuring now (not only waiting for the runner)."""
        return self._running and self.session.runner.busy

    def _mine(self, title: str) -> bool:
        return self.requested is not None and title == self.requested.title

    def _stopped(self, title: str, message: str) -> None:
        if self._mine(title):
            self.requested, self._running = None, False
            self.sig_stopped.emit(message)

    def _forget(self) -> None:
        had = bool(self.results) or self.requested is not None
        self.results.clear()
        self.latest.clear()
        self.requested, self._running = None, False
        if had:
            self.sig_forgotten.emit()

    # ------------------------------------------------------------------------------------------ running
    def run(self, request: Request) -> str | None:
        """Show ``request``'s result: at once when it is known, else measured in the background (its result
        comes by ``sig_result``). Returns why it cannot run, or None."""
        s = self.session
        if s.loaded is None or s.opening:
            return "Open a model first"
        if s.loaded.streamed is not None:
            return f"{s.loaded.name} holds weights only, with no architecture: there are no layers to perturb"
        if request in self.results:
            self.latest[request.method] = request
            self.sig_result.emit(request, self.results[request])
            return None
        loaded, data = s.loaded, s.data
        self.requested = request

        def done(result: Sensitivity, request=request) -> None:
            self.results[request] = result
            self.latest[request.method] = request
            if self.requested == request:
                self.requested, self._running = None, False
            self.sig_result.emit(request, result)

        s.analyse(("sensitivity",), request.title,
                  lambda: sensitivity(loaded, data, request.method, request.levels, limit=request.limit,
                                      quantizer=request.quantizer), done)
        return None

    def cancel(self) -> None:
        """Stop the sensitivity run in progress (nothing else), or drop it while it waits for the runner."""
        if self.requested is None:
            return
        if self.running:
            self.session.cancel()
        else:
            self.session.forget_analysis(("sensitivity",))
            self.requested = None
            self.sig_stopped.emit("Not run: the page shows what it showed")

    def latest_result(self, method: str) -> tuple[Request, Sensitivity] | None:
        """The last result of ``method`` that arrived for the current model."""
        request = self.latest.get(method)
        return None if request is None else (request, self.results[request])

    def prune_drop_levels(self) -> dict[str, DropLevel] | None:
        """Each layer's sparsity at which the metric drops 1 point, from the latest prune result (None before
        any): the layer table's Sensitivity column."""
        latest = self.latest_result("prune")
        return None if latest is None else levels_at_drop(latest[1])

    # ------------------------------------------------------------------------------------------ the recipe
    def set_levels(self, method: str, values: dict[str, float]) -> str:
        """Write ``values`` (layer -> level of ``method``) into the recipe draft in one edit: each layer's
        sparsity (``prune``), bits (``quantize``) or rank (``low_rank``: the rank the fraction stands for,
        :func:`core.analysis.perturb.rank_at`). Returns what changed, or why nothing did, in words."""
        d = self.session.draft
        if not values:
            return "Nothing to set"
        if method == "prune":
            if d.prune_method == "structured":
                return ("Not changed: the recipe prunes whole channels (structured); sensitivity measured magnitude "
                        "pruning: choose Magnitude in Compress to set a layer's sparsity")
            said = lambda layer: f"sparsity {d.sparsity_of(layer):.0%}"  # noqa: E731
            before = {layer: said(layer) for layer in values}
            fields = {"prune_method": "magnitude"} if d.prune_method == "none" else {}
            d.set(layer_sparsity={**d.layer_sparsity, **{k: min(max(float(v), 0.0), 0.999) for k, v in values.items()}},
                  scope="layer", **fields)
            return _said(before, said)
        if method == "quantize":
            if d.quant_method in ("binary", "ternary"):
                return f"Not changed: the recipe quantizes {d.quant_method}, which has no bits per layer"
            said = lambda layer: "float" if d.bits_of(layer) >= 32 else f"{d.bits_of(layer)} bits"  # noqa: E731
            before = {layer: said(layer) for layer in values}
            fields = {"quant_method": self._quantizer()} if d.quant_method == "none" else {}
            d.set(layer_bits={**d.layer_bits, **{k: int(v) for k, v in values.items()}}, **fields)
            return _said(before, said)
        if method == "low_rank":
            return self._set_ranks(values)
        return f"Not changed: no recipe value for {method}"

    def _set_ranks(self, values: dict[str, float]) -> str:
        d = self.session.draft
        if not arch.kind_registered(arch.LOW_RANK):
            return "Not changed: the low_rank step is not installed in this build, so the recipe has no ranks"
        model = self.session.loaded.module
        ranks = {k: perturb.rank_at(model.get_submodule(k), v) for k, v in values.items()}
        step = d.step_of(arch.LOW_RANK)

        def said(layer: str) -> str:
            own = d.layer_value(arch.LOW_RANK, layer)
            return (f"rank {own}" if own is not None else "the step's rank" if d.selects(arch.LOW_RANK, layer)
                    else "not factorised")

        before = {layer: said(layer) for layer in ranks}
        if not d.set_layer_values(arch.LOW_RANK, ranks, **({} if step is not None else {"method": "channel"})):
            return "Not changed: the recipe refused the rank (the status bar says why)"
        spatial = step is not None and getattr(step, "method", "channel") == "spatial"
        return _said(before, said) + (" (measured as channel factors; the recipe's step is spatial)" if spatial else "")

    def _quantizer(self) -> str:
        latest = self.latest_result("quantize")
        return latest[0].quantizer if latest is not None else "kmeans"


def _said(before: dict[str, str], now) -> str:
    """"fc2: sparsity 90% in the recipe (was sparsity 80%)", or for many layers a count."""
    if len(before) == 1:
        (layer, was), = before.items()
        return f"{layer}: {now(layer)} in the recipe (was {was})"
    return f"{len(before)} layers set in the recipe"
