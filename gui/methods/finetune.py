"""The fine-tuning section: how long to train after pruning (and k-means codebooks), at what rate."""

from __future__ import annotations

from PySide6.QtWidgets import QDoubleSpinBox, QSpinBox

from gui.methods import register_section
from gui.methods.base import Section


@register_section("finetune")
class FineTuneSection(Section):
    heading = "Fine-tuning"

    def __init__(self, draft, parent=None) -> None:
        super().__init__(draft, parent)
        self.epochs = QSpinBox(minimum=0, maximum=200, suffix=" epochs")
        self.lr = QDoubleSpinBox(decimals=4, minimum=0.0001, maximum=1.0, singleStep=0.001)
        self.form.addRow("Length", self.epochs)
        self.form.addRow("Learning rate", self.lr)
        self.epochs.valueChanged.connect(lambda v: draft.set(finetune_epochs=int(v)))
        self.lr.valueChanged.connect(lambda v: draft.set(lr=float(v)))

    def controls(self):
        return [self.epochs, self.lr]

    def show_draft(self) -> None:
        self.epochs.setValue(self.draft.finetune_epochs)
        self.lr.setValue(self.draft.lr)
