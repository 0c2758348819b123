"""The recipe panel: a section of controls per kind of step, the steps it has no controls for, a live
preview, and Apply.

Sections come from :mod:`gui.methods`, one for each kind in the engine's step registry that has one, in
the registry's order. Every control writes to the session's :class:`~gui.recipe_draft.RecipeDraft`; steps
the controls do not edit are listed read-only (and kept). The preview (kept fraction and estimated bytes,
from the weight statistics only, by :func:`core.analysis.estimate.preview_recipe`) redraws on each change.
Apply freezes the draft into a Recipe and runs it in the background.
"""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QLabel, QPushButton, QScrollArea, QVBoxLayout, QWidget

from core.recipe import kinds
from core.report.reports import human_bytes, size_change
from gui import theme
from gui.methods import sections_for
from gui.methods.readonly import StepCard
from gui.recipe_draft import RecipeDraft


class RecipePanel(QWidget):
    sig_apply = Signal()
    """The user asked to apply the draft."""
    sig_save = Signal()
    """The user asked to save the draft as a recipe file."""
    sig_load = Signal()
    """The user asked to load a recipe file into the draft."""
    sig_base_chosen = Signal(str)
    """What Apply builds on: ``"current"`` (the current variant) or ``"original"``."""

    BASES = (("current", "the current variant"), ("original", "the original"))

    def __init__(self, draft: RecipeDraft, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("panel")
        self.draft = draft
        self.layer: str | None = None
        self.stats: dict = {}
        self.other_bytes = 0
        self.original_bytes = 0
        self.sections = [cls(draft) for cls in sections_for(kinds())]
        self.cards: list[StepCard] = []
        self._carded: tuple | None = None  # the steps shown read-only now
        self.others_title = QLabel("Other steps, kept as the recipe says", objectName="caption")
        self.others = QVBoxLayout()
        self.others.setSpacing(4)
        self.preview_label = theme.steady(QLabel("", objectName="previewLabel", wordWrap=True), 4)
        self.base_choice = QComboBox(objectName="applyBase")
        for key, text in self.BASES:
            self.base_choice.addItem(text, key)
        self.base_choice.setToolTip("Apply compresses this model: the variant that is current now, or the original")
        base_row = QHBoxLayout()
        base_row.addWidget(QLabel("Build on"))
        base_row.addWidget(self.base_choice, 1)
        self.apply_button = QPushButton("Apply", objectName="applyButton")
        self.apply_button.setToolTip("Compress the current model with these settings (Ctrl+Return)")
        save, load = QPushButton("Save recipe…"), QPushButton("Load recipe…")
        buttons = QHBoxLayout()
        buttons.addWidget(load)
        buttons.addWidget(save)
        body = QWidget(objectName="panelBody")  # the sections scroll; the preview and Apply stay in view
        controls = QVBoxLayout(body)
        controls.setContentsMargins(0, 0, 4, 0)
        for section in self.sections:
            controls.addWidget(section)
        controls.addWidget(self.others_title)
        controls.addLayout(self.others)
        controls.addStretch(1)
        scroll = QScrollArea(widgetResizable=True, frameShape=QScrollArea.Shape.NoFrame, objectName="panelScroll")
        scroll.setWidget(body)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.scroll = scroll
        layout = QVBoxLayout(self)
        layout.setContentsMargins(10, 8, 10, 8)
        layout.addWidget(scroll, 1)
        layout.addWidget(self.preview_label)
        layout.addLayout(base_row)
        layout.addWidget(self.apply_button)
        layout.addLayout(buttons)
        self.apply_button.clicked.connect(self.sig_apply)
        self.base_choice.currentIndexChanged.connect(lambda i: self.sig_base_chosen.emit(self.base_choice.itemData(i)))
        save.clicked.connect(self.sig_save)
        load.clicked.connect(self.sig_load)
        draft.sig_changed.connect(self.refresh)
        self.refresh()

    def section(self, cls_name: str):
        """The section of this class name (``"PruningSection"``), for callers that drive its controls."""
        return next(s for s in self.sections if type(s).__name__ == cls_name)

    @property
    def sparsity(self):
        return self.section("PruningSection").sparsity

    @property
    def layer_sparsity(self):
        return self.section("PruningSection").layer_sparsity

    def set_context(self, layer: str | None, stats: dict, other_bytes: int, original_bytes: int) -> None:
        """The selected layer, the current model's weight statistics of its prunable layers, the bytes of
        everything else (biases, norms: stored as float16), and the original's size for the ratio."""
        self.layer, self.stats, self.other_bytes, self.original_bytes = layer, stats, other_bytes, original_bytes
        for section in self.sections:
            section.set_context(layer, stats)
        self.refresh()

    def set_base(self, key: str, label: str) -> None:
        """Show what Apply builds on: the choice, and ``label`` (``"#2 90% · 5-bit k-means"``) on the button."""
        index = self.base_choice.findData(key)
        if index != self.base_choice.currentIndex():
            self.base_choice.blockSignals(True)
            self.base_choice.setCurrentIndex(index)
            self.base_choice.blockSignals(False)
        self.apply_button.setText(f"Apply on {label}")
        self.apply_button.setToolTip(f"Compress {label} with these settings (Ctrl+Return); the new variant is made "
                                     "from it")

    def previews(self) -> dict:
        return self.draft.preview(self.stats) if self.stats else {}

    def refresh(self) -> None:
        """Controls from the draft (model -> UI), the steps they do not edit, then the preview."""
        for section in self.sections:
            section.refresh()
        self._show_other_steps()
        self._show_preview()

    def _show_other_steps(self) -> None:
        controlled = self.draft.controlled()
        others = tuple((i, s) for i, s in enumerate(self.draft.steps) if i not in controlled)
        if others == self._carded:  # rebuilt only when they change, not on every slider move
            return
        self._carded = others
        for card in self.cards:
            self.others.removeWidget(card)
            card.deleteLater()
        self.cards = [StepCard(i, step) for i, step in others]
        for card in self.cards:
            card.sig_remove.connect(self.draft.remove_step)
            self.others.addWidget(card)
        self.others_title.setVisible(bool(self.cards))

    def _show_preview(self) -> None:
        previews = self.previews()
        if not previews:
            self.preview_label.setText("Preview appears once the model's statistics are in.")
            return
        params = sum(p.params for p in previews.values())
        kept = sum(p.params * p.kept for p in previews.values()) / max(params, 1)
        total = sum(p.estimated_bytes for p in previews.values()) + self.other_bytes
        ratio = f", ≈ {size_change(self.original_bytes, total)}" if self.original_bytes and total else ""
        layer = previews.get(self.layer or "")
        detail = f"<br>{self.layer}: keeps {layer.kept:.1%}, ≈ {human_bytes(layer.estimated_bytes)}" if layer else ""
        self.preview_label.setText(f"<b>Keeps {kept:.1%} of weights · ≈ {human_bytes(total)}{ratio}</b>{detail}"
                                   "<br><span style='color:#9aa0a6'>estimate; Apply measures the real file</span>")
