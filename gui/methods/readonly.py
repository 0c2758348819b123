"""A step the panel has no controls for, shown as it is: its kind and settings, read-only, and kept."""

from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QToolButton, QVBoxLayout, QWidget

from core.recipe import Step, step_to_dict


def settings_text(step: Step) -> str:
    """A step's settings in one line, as the recipe file holds them (``amount: 0.5 · layers: conv1``)."""
    parts = []
    for key, value in step_to_dict(step).items():
        if key == "kind":
            continue
        if isinstance(value, dict):
            value = ", ".join(f"{k}: {v}" for k, v in value.items())
        elif isinstance(value, list):
            value = ", ".join(map(str, value))
        parts.append(f"{key}: {value}")
    return " · ".join(parts) or "default settings"


class StepCard(QFrame):
    sig_remove = Signal(int)
    """The user asked to take this step (by its index in the recipe) out of the recipe."""

    def __init__(self, index: int, step: Step, parent: QWidget | None = None) -> None:
        super().__init__(parent, objectName="stepCard")
        self.index, self.step = index, step
        self.title = QLabel(f"<b>{index + 1}. {step.kind}</b>", objectName="stepCardTitle")
        self.settings = QLabel(settings_text(step), objectName="caption", wordWrap=True)
        self.settings.setToolTip("Kept as the recipe says: the studio has no controls for these settings")
        remove = QToolButton(text="×", toolTip="Take this step out of the recipe")
        remove.clicked.connect(lambda: self.sig_remove.emit(self.index))
        head = QHBoxLayout()
        head.addWidget(self.title, 1)
        head.addWidget(remove)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(8, 4, 4, 6)
        layout.addLayout(head)
        layout.addWidget(self.settings)
