"""What every recipe-panel section shares: the draft it edits, the selected layer and its statistics."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QFormLayout, QGroupBox, QWidget
from superqt import QLabeledDoubleSlider, QLabeledSlider

from gui.recipe_draft import RecipeDraft


def slider(low, high, decimals=None):
    widget = (QLabeledDoubleSlider if decimals is not None else QLabeledSlider)(Qt.Orientation.Horizontal)
    widget.setRange(low, high)
    if decimals is not None:
        widget.setDecimals(decimals)
    return widget


class Section(QGroupBox):
    """A group of controls for one role of the recipe; ``refresh`` shows the draft (model -> UI) with the
    controls' signals blocked, and each control writes its field into the draft (UI -> model)."""

    heading = ""

    def __init__(self, draft: RecipeDraft, parent: QWidget | None = None) -> None:
        super().__init__(self.heading, parent)
        self.draft = draft
        self.layer: str | None = None
        self.stats: dict = {}
        self.form = QFormLayout(self)

    def controls(self) -> list[QWidget]:
        """The widgets whose signals ``refresh`` blocks while it sets them."""
        return []

    def set_context(self, layer: str | None, stats: dict) -> None:
        self.layer, self.stats = layer, stats

    @property
    def layer_ok(self) -> bool:
        return self.layer is not None and self.layer in self.stats

    def refresh(self) -> None:
        widgets = self.controls()
        for w in widgets:
            w.blockSignals(True)
        try:
            self.show_draft()
        finally:
            for w in widgets:
                w.blockSignals(False)

    def show_draft(self) -> None:
        raise NotImplementedError
