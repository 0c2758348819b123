"""Automatic allocation in the studio (:func:`core.analysis.allocate.allocate`): each layer's sparsity and
bits chosen for a target, written into the recipe draft.

The draft's own pruning and quantize steps are the ones allocated; a draft without them is allocated as
prune + k-means + Huffman (``resources/recipes/prune-quantize-no-training.yaml``), which the draft then
takes. It runs as one of the session's analyses (background, progress, cancel); nothing is written into
the draft unless it finishes, and then in one edit per method (:meth:`gui.sensitivity_runs.SensitivityRuns.
set_levels`). What it predicts is shown as an estimate: Apply writes the file and measures it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from PySide6.QtCore import QObject, Signal

from core.analysis.allocate import Allocation, AllocationError, allocatable_axes, allocate
from core.recipe import Recipe
from core.resources import RESOURCES

TARGETS = ("bytes", "ratio", "max_drop")
TITLE = "Allocation"
DEFAULT_RECIPE = RESOURCES / "recipes" / "prune-quantize-no-training.yaml"


@dataclass(frozen=True)
class Target:
    """``kind``: ``bytes`` (the whole file), ``ratio`` (times smaller than the original) or ``max_drop``
    (points of the metric, as the control shows them: 1.0 is one point)."""

    kind: str
    value: float

    def check(self) -> str | None:
        if self.kind not in TARGETS:
            return f"unknown target {self.kind!r}"
        if self.value <= 0:
            return "the target must be above 0"
        if self.kind == "ratio" and self.value <= 1:
            return "a ratio above 1: times smaller than the original"
        return None


def base_recipe(draft_recipe: Recipe, model) -> Recipe:
    """The recipe whose steps are allocated: the draft's, when it prunes by magnitude or quantizes with a
    codebook per layer; else prune + k-means + Huffman."""
    try:
        allocatable_axes(draft_recipe, model)
        return replace(draft_recipe, base=None)
    except AllocationError:
        return Recipe.from_file(DEFAULT_RECIPE)


def allocation_task(loaded, data, recipe: Recipe, target: Target, limit: int | None):
    """The core task for ``target``: a ratio is taken of the original's bytes as the pipeline counts them."""
    from core.pipeline.apply import original_bytes

    if target.kind == "max_drop":
        return allocate(loaded, data, recipe, max_drop=target.value / 100, limit=limit)
    budget = int(target.value if target.kind == "bytes" else original_bytes(loaded) / target.value)
    return allocate(loaded, data, recipe, budget_bytes=budget, limit=limit)


def preview_text(allocation: Allocation, original: int | None) -> tuple[str, str]:
    """What the page says of an allocation: a short line, and the whole of it (for the tooltip)."""
    t = allocation.table
    smaller = f" ({original / allocation.predicted_bytes:.1f}x smaller)" if original else ""
    value = (f"{100 * allocation.predicted_metric:.2f}%" if t.metric_name in ("top-1", "top-1 agreement", "cosine")
             else f"{allocation.predicted_metric:.4g}")
    short = (f"In the recipe: {allocation.predicted_bytes:,} bytes{smaller}, {t.metric_name} {value} predicted. "
             "Apply measures them.")
    whole = (f"Allocated for {allocation.target}. The encoder prices the chosen settings at "
             f"{allocation.predicted_bytes:,} bytes{smaller} (the Compress panel's estimate is a rougher one). "
             f"Predicted {t.metric_name} {value} on {t.count:,} {t.split} examples, from each layer measured alone "
             "at each option; Apply writes the file and measures the whole model.")
    return short, whole


class AllocationRuns(QObject):
    sig_allocated = Signal(object, str, str)
    """An allocation finished and is in the draft: (the :class:`Allocation`, a line to show, all of it)."""
    sig_stopped = Signal(str)
    """The allocation asked for ended without one (cancelled, failed, refused): what to say."""

    def __init__(self, session, sensitivity) -> None:
        super().__init__(session)
        self.session, self.sensitivity = session, sensitivity
        self.latest: Allocation | None = None
        self.running = False
        runner = session.runner
        runner.sig_cancelled.connect(lambda title: self._stopped(title, "Cancelled: the recipe is as it was"))
        runner.sig_failed.connect(lambda title, error: self._stopped(title, f"Not allocated: {error}"))
        session.sig_model_changed.connect(lambda: setattr(self, "latest", None))

    def _stopped(self, title: str, message: str) -> None:
        if title == TITLE and self.running:
            self.running = False
            self.sig_stopped.emit(message)

    def allocate(self, target: Target, limit: int | None = 2000) -> str | None:
        """Allocate for ``target`` in the background; returns why it cannot start, or None."""
        s = self.session
        if s.loaded is None or s.opening:
            return "Open a model first"
        if s.loaded.streamed is not None:
            return f"{s.loaded.name} holds weights only, with no architecture: there are no layers to allocate"
        if (why := target.check()) is not None:
            return why
        loaded, data = s.loaded, s.data
        recipe = base_recipe(s.draft.to_recipe(), loaded.module)
        original = s.variants.original.size_bytes if s.variants.original is not None else None
        self.running = True

        def done(allocation: Allocation) -> None:
            self.running = False
            self.latest = allocation
            for axis, method in (("sparsity", "prune"), ("bits", "quantize")):
                values = {n: o.value(axis) for n, o in allocation.choice.items() if o.value(axis) is not None}
                if values:
                    self.sensitivity.set_levels(method, values)
            self.sig_allocated.emit(allocation, *preview_text(allocation, original))

        s.analyse(("allocation",), TITLE, lambda: allocation_task(loaded, data, recipe, target, limit), done)
        return None
