"""Wiring of the inspector's architecture views to the session and the draft: the spectrum view (low rank),
the separable toggle and the softened-outputs view (distillation).

The views only draw and emit; here they get what the session computed in the background (a layer's
spectrum, a teacher's logits) and their edits go into the draft: a layer's rank into the low-rank step's
overrides, a separable layer into the separable step's layers, T into the distill step. Each of those
writes happens only where the engine has that kind of step (:func:`gui.methods.arch_api.kind_registered`).
"""

from __future__ import annotations

import torch
from PySide6.QtCore import QObject

from gui.methods import arch_api as arch
from gui.session import Session, Spectrum
from gui.widgets.separable_toggle import SeparableToggle
from gui.widgets.softened_view import SoftenedView
from gui.widgets.spectrum_view import DEFAULT_ENERGY, SpectrumView

NOT_INSTALLED = "The {} step is not installed in this build: the view previews, the recipe is unchanged"


class SpectrumPresenter(QObject):
    """Computes the selected layer's spectrum when the view is on screen, and writes dragged ranks."""

    def __init__(self, session: Session, view: SpectrumView, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.session, self.view = session, view
        self.layer: str | None = None
        self.active = False  # the view is on screen: only then is a spectrum computed
        view.sig_method_changed.connect(lambda _m: self.show_layer(self.layer, keep_method=True))
        view.sig_rank_dragged.connect(self._dragged)
        view.sig_add_to_recipe.connect(self._add)
        session.draft.sig_changed.connect(self._draft_changed)

    def set_active(self, active: bool) -> None:
        self.active = active
        if active:
            self.show_layer(self.layer)

    def show_layer(self, layer: str | None, keep_method: bool = False) -> None:
        """Show ``layer``'s spectrum (computed in the background) by the method the recipe's step uses, or
        with ``keep_method`` by the one the view shows."""
        self.layer = layer
        if not self.active:
            return
        registered = arch.kind_registered(arch.LOW_RANK)
        self.view.set_recipe_available(registered, "" if registered else NOT_INSTALLED.format(arch.LOW_RANK))
        s, m = self.session, self.session.measurements
        if not layer or s.loaded is None or m.inventory is None:
            self.view.show_layer("", False, waiting="Select a Linear or Conv layer")
            return
        info = m.inventory.layer(layer)
        if layer not in s.architecture_targets()[0]:
            self.view.show_layer(layer, False, waiting=f"{info.type} is not factorised: select a Linear or a "
                                                       "Conv2d with groups=1")
            return
        conv = "Conv" in info.type
        step = self.session.draft.step_of(arch.LOW_RANK)
        if not conv:
            self.view.set_method("channel")
        elif not keep_method and step is not None and getattr(step, "method", None) in arch.LOW_RANK_METHODS:
            self.view.set_method(step.method)
        self.view.show_layer(layer, conv, shape=info.shape)
        method = self.view.method
        s.spectrum(layer, method, lambda spectrum: self._arrived(layer, method, spectrum))

    def _arrived(self, layer: str, method: str, spectrum: Spectrum) -> None:
        if layer == self.layer and method == self.view.method:
            self.view.show_spectrum(spectrum, self._recipe_rank(layer))

    def _recipe_rank(self, layer: str) -> int | None:
        """The rank the draft gives ``layer``: its own, the step's, or the one its energy asks for."""
        draft = self.session.draft
        own = draft.layer_value(arch.LOW_RANK, layer)
        if own is not None:
            return int(own)
        step = draft.step_of(arch.LOW_RANK)
        if step is None or not draft.selects(arch.LOW_RANK, layer):
            return None
        if getattr(step, "rank", 0):
            return int(step.rank)
        return self.view.energy_rank(float(getattr(step, "energy", DEFAULT_ENERGY)))

    def _draft_changed(self) -> None:
        if self.view.spectrum is not None and self.layer:
            rank = self._recipe_rank(self.layer)
            if rank is not None and rank != self.view.rank():
                self.view.set_rank(rank)

    def _dragged(self, layer: str, rank: int) -> None:
        """A drag sets the layer's rank in the recipe when the recipe's low-rank step works on the layer."""
        if arch.kind_registered(arch.LOW_RANK) and self.session.draft.selects(arch.LOW_RANK, layer):
            self.session.draft.set_layer_value(arch.LOW_RANK, layer, rank)

    def _add(self, layer: str, method: str, rank: int) -> None:
        if arch.kind_registered(arch.LOW_RANK):
            self.session.draft.set_layer_value(arch.LOW_RANK, layer, rank, method=method)


class SeparablePresenter(QObject):
    """Shows the separable toggle for an eligible convolution and writes it into the separable step."""

    def __init__(self, session: Session, toggle: SeparableToggle, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.session, self.toggle = session, toggle
        self.layer: str | None = None
        toggle.sig_toggled.connect(self._toggled)
        session.draft.sig_changed.connect(lambda: self.show_layer(self.layer))
        session.sig_measured.connect(lambda what: what == "cost" and self.show_layer(self.layer))

    def show_layer(self, layer: str | None) -> None:
        self.layer = layer
        s = self.session
        counts = s.separable_counts(layer) if layer and s.loaded is not None else None
        registered = arch.kind_registered(arch.SEPARABLE)
        self.toggle.show_layer(layer or "", counts, self._macs(layer) if counts else None,
                               separable=registered and s.draft.selects(arch.SEPARABLE, layer or ""),
                               editable=registered, why="" if registered else NOT_INSTALLED.format(arch.SEPARABLE))

    def _macs(self, layer: str) -> tuple[int, int] | None:
        """(before, after) MACs per sample of ``layer``, once the inspection has counted them."""
        cost = self.session.measurements.cost
        before = cost.per_layer.get(layer) if cost is not None else None
        if before is None:
            return None
        return before, arch.separable_macs(self.session.loaded.module.get_submodule(layer), before)

    def _toggled(self, layer: str, on: bool) -> None:
        if arch.kind_registered(arch.SEPARABLE):
            self.session.draft.set_layer_selected(arch.SEPARABLE, layer, on)


class SoftenedPresenter(QObject):
    """Feeds the softened-outputs view: the teacher (the draft's distill step's, else the original), the
    chosen test image, its logits from the background, and T (the distill step's, when there is one)."""

    def __init__(self, session: Session, view: SoftenedView, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.session, self.view = session, view
        self.active = False
        self.index = 0
        self.shown_teacher: str | None = None
        view.sig_image_changed.connect(self.show_image)
        view.sig_temperature_changed.connect(self._temperature_moved)
        session.sig_model_changed.connect(self._model_changed)
        session.variants.sig_changed.connect(lambda *_: self.refresh())  # the original is measured: a teacher
        session.draft.sig_changed.connect(self._draft_changed)

    def teacher(self) -> str:
        step = self.session.draft.step_of(arch.DISTILL)
        return str(getattr(step, "teacher", "original") or "original") if step is not None else "original"

    def set_active(self, active: bool) -> None:
        self.active = active
        if active:
            self.refresh()

    def _model_changed(self) -> None:
        data = self.session.data
        self.view.set_test_set(len(data.test) if data is not None else 0, data.classes if data is not None else ())
        self.index = min(self.index, max(len(data.test) - 1, 0) if data is not None else 0)
        self.refresh()

    def refresh(self) -> None:
        if self.active:
            self.show_image(self.index)

    def show_image(self, index: int) -> None:
        self.index = index
        if not self.active:
            return
        s, teacher = self.session, self.teacher()
        self.shown_teacher = teacher
        original = s.variants.original
        self.view.set_teacher("the original" + (f" ({s.variants.models[original.id].name})" if original else "")
                              if teacher == "original" else teacher)
        if s.data is None:
            self.view.set_image(index, None)
            self.view.show_logits(None, "The model has no test set to show outputs for")
            return
        test = s.data.test
        label = int(test.labels[index])
        image = test.images[index].numpy() if test.images.dtype == torch.uint8 else None
        self.view.set_image(index, image, s.data.classes[label] if label < len(s.data.classes) else str(label))
        self.view.show_logits(None, "running the teacher on this image…")
        s.teacher_logits(teacher, index, lambda logits: self._arrived(teacher, index, logits))

    def _arrived(self, teacher: str, index: int, logits) -> None:
        if teacher == self.teacher() and index == self.index:
            self.view.show_logits(logits)

    def _temperature_moved(self, t: float) -> None:
        if arch.kind_registered(arch.DISTILL) and self.session.draft.step_of(arch.DISTILL) is not None:
            self.session.draft.set_step(arch.DISTILL, temperature=round(float(t), 2))

    def _draft_changed(self) -> None:
        step = self.session.draft.step_of(arch.DISTILL)
        if step is not None and abs(float(step.temperature) - self.view.temperature_value()) > 1e-9:
            self.view.set_temperature(float(step.temperature))
        if self.active and self.teacher() != self.shown_teacher:
            self.refresh()
