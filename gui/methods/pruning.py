"""The pruning section: magnitude, iterative or structured pruning, its scope and sparsity, per layer too."""

from __future__ import annotations

from PySide6.QtWidgets import QComboBox, QHBoxLayout, QLabel, QToolButton

from gui.methods import register_section
from gui.methods.base import Section, slider
from gui.recipe_draft import IMPORTANCE, PRUNE_METHODS

LABELS = {"none": "No pruning", "magnitude": "Magnitude (weights)", "iterative": "Iterative + fine-tune",
          "structured": "Structured (neurons/filters)"}


def short_layer_name(name: str, limit: int = 14) -> str:
    """A layer's name short enough for a form's label column: its start and its end, the middle elided
    (``encoder.layer.0.attention.self.query`` -> ``encode…f.query``), so the panel never widens."""
    return name if len(name) <= limit else f"{name[:6]}…{name[-(limit - 7):]}"


@register_section("prune_magnitude", "iterative_prune", "prune_structured")
class PruningSection(Section):
    heading = "Pruning"

    def __init__(self, draft, parent=None) -> None:
        super().__init__(draft, parent)
        self.prune_method = QComboBox()
        for key in PRUNE_METHODS:
            self.prune_method.addItem(LABELS[key], key)
        self.scope = QComboBox()
        self.scope.addItem("Per layer", "layer")
        self.scope.addItem("Global threshold", "global")
        self.importance = QComboBox()
        for key in IMPORTANCE:
            self.importance.addItem(key, key)
        for combo in (self.prune_method, self.scope, self.importance):  # the panel is as narrow as its dock
            combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
            combo.setMinimumContentsLength(10)
        self.sparsity = slider(0.0, 0.99, 2)
        self.layer_sparsity = slider(0.0, 0.99, 2)
        self.layer_sparsity_label = QLabel("This layer")
        self.reset_layer = QToolButton(text="×", toolTip="Use the all-layers value for this layer")
        self.form.addRow("Method", self.prune_method)
        self.form.addRow("Scope", self.scope)
        self.form.addRow("Ranked by", self.importance)
        self.form.addRow("All layers", self.sparsity)
        row = QHBoxLayout()
        row.addWidget(self.layer_sparsity, 1)
        row.addWidget(self.reset_layer)
        self.form.addRow(self.layer_sparsity_label, row)
        self.prune_method.currentIndexChanged.connect(lambda: draft.set(prune_method=self.prune_method.currentData()))
        self.scope.currentIndexChanged.connect(lambda: draft.set(scope=self.scope.currentData()))
        self.importance.currentIndexChanged.connect(lambda: draft.set(importance=self.importance.currentData()))
        self.sparsity.valueChanged.connect(lambda v: draft.set(sparsity=round(float(v), 4)))
        self.layer_sparsity.valueChanged.connect(self._layer_sparsity_moved)
        self.reset_layer.clicked.connect(lambda: self.layer and draft.set_layer_sparsity(self.layer, None))

    def controls(self):
        return [self.prune_method, self.scope, self.importance, self.sparsity, self.layer_sparsity]

    def _layer_sparsity_moved(self, value) -> None:
        if self.layer_ok:
            self.draft.set_layer_sparsity(self.layer, round(float(value), 4))

    def show_draft(self) -> None:
        d = self.draft
        self.prune_method.setCurrentIndex(self.prune_method.findData(d.prune_method))
        self.scope.setCurrentIndex(self.scope.findData(d.scope))
        self.importance.setCurrentIndex(self.importance.findData(d.importance))
        self.sparsity.setValue(d.sparsity)
        self.layer_sparsity.setValue(d.sparsity_of(self.layer) if self.layer_ok else d.sparsity)
        self.layer_sparsity_label.setText(short_layer_name(self.layer) if self.layer_ok else "This layer")
        self.layer_sparsity_label.setToolTip(self.layer if self.layer_ok else "")
        # a control that does not apply to the method is hidden, not just greyed (the dark style barely
        # tells the two apart)
        self.form.setRowVisible(self.scope, d.prune_method in ("magnitude", "iterative"))
        self.form.setRowVisible(self.importance, d.prune_method == "structured")
        pruning = d.prune_method != "none"
        self.sparsity.setEnabled(pruning)
        self.layer_sparsity.setEnabled(pruning and d.scope == "layer" and self.layer_ok)
