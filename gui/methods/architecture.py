"""The architecture sections: low-rank factorisation (rank or energy, channel or spatial, per layer from the
spectrum view) and depthwise-separable replacement (its layers from the inspector's toggle, and the fit).

Each edits the recipe's first step of its kind, made from the registered config; a section exists only
where the engine has that kind.
"""

from __future__ import annotations

from PySide6.QtWidgets import QComboBox, QDoubleSpinBox, QLabel, QSpinBox

from core.recipe.registry import step_kind
from gui.methods import register_section
from gui.methods.arch_api import LOW_RANK, LOW_RANK_METHODS, SEPARABLE
from gui.methods.base import Section, slider


class _KindSection(Section):
    """A section for the whole first step of ``kind``: "Use" adds or removes it, each control one field."""

    kind = ""

    def __init__(self, draft, parent=None) -> None:
        super().__init__(draft, parent)
        draft.claim(self.kind)
        self.defaults = step_kind(self.kind).config()
        self.use = QComboBox()
        self.use.addItem("Off", False)
        self.use.addItem("On", True)
        self.form.addRow("Use", self.use)
        self.use.currentIndexChanged.connect(self._use)
        self.layers = QLabel("", objectName="caption", wordWrap=True)

    def fields(self) -> dict:
        """The controls' values, by field name."""
        raise NotImplementedError

    def _use(self) -> None:
        if self.use.currentData():
            self.draft.set_step(self.kind, **self.fields())
        else:
            self.draft.drop_kind(self.kind)

    def write(self, **fields) -> None:
        if self.draft.step_of(self.kind) is not None:
            self.draft.set_step(self.kind, **fields)

    def show_draft(self) -> None:
        step = self.draft.step_of(self.kind)
        self.use.setCurrentIndex(1 if step is not None else 0)
        for widget in self.controls()[1:]:
            widget.setEnabled(step is not None)
        if step is not None:
            self.show_step(step)
        chosen = ", ".join(step.select.layers) if step is not None and step.select.layers else "every layer it can"
        self.layers.setText(f"Layers: {chosen}" if step is not None else self.hint)

    hint = ""

    def show_step(self, step) -> None:
        raise NotImplementedError


@register_section(LOW_RANK)
class LowRankSection(_KindSection):
    heading = "Low rank"
    kind = LOW_RANK
    hint = "Or drag a layer's rank in the inspector's Low rank view and press Add to recipe"

    def __init__(self, draft, parent=None) -> None:
        super().__init__(draft, parent)
        self.method = QComboBox()
        for key in LOW_RANK_METHODS:
            self.method.addItem(key, key)
        self.method.setToolTip("How a convolution is factorised: channel (r k×k filters, then 1×1) or spatial "
                               "(k×1, then 1×k)")
        self.rank = QSpinBox(minimum=0, maximum=100_000, specialValueText="by energy")
        self.rank.setToolTip("One rank for every layer; 0: each layer's rank keeps the energy below")
        self.energy = slider(0.5, 1.0, 2)
        self.energy.setToolTip("The fraction of Σσ² each layer's factors keep (when the rank is chosen by energy)")
        self.method.setCurrentIndex(self.method.findData(self.defaults.method))
        self.rank.setValue(int(self.defaults.rank))
        self.energy.setValue(float(self.defaults.energy))
        self.form.addRow("Method", self.method)
        self.form.addRow("Rank", self.rank)
        self.form.addRow("Energy", self.energy)
        self.form.addRow(self.layers)
        self.method.currentIndexChanged.connect(lambda: self.write(method=self.method.currentData()))
        self.rank.valueChanged.connect(lambda v: self.write(rank=int(v)))
        self.energy.valueChanged.connect(lambda v: self.write(energy=round(float(v), 3)))

    def controls(self):
        return [self.use, self.method, self.rank, self.energy]

    def fields(self) -> dict:
        return {"method": self.method.currentData(), "rank": int(self.rank.value()),
                "energy": round(float(self.energy.value()), 3)}

    def show_step(self, step) -> None:
        self.method.setCurrentIndex(self.method.findData(step.method))
        self.rank.setValue(int(step.rank))
        self.energy.setValue(float(step.energy))
        self.energy.setEnabled(int(step.rank) == 0)


@register_section(SEPARABLE)
class SeparableSection(_KindSection):
    heading = "Depthwise-separable"
    kind = SEPARABLE
    hint = "Check Make separable under the inspector for each convolution to replace"

    def __init__(self, draft, parent=None) -> None:
        super().__init__(draft, parent)
        self.fit_steps = QSpinBox(minimum=1, maximum=100_000, suffix=" steps")
        self.fit_steps.setToolTip("Optimiser steps fitting each new block to the old layer's outputs")
        self.fit_lr = QDoubleSpinBox(decimals=4, minimum=0.0001, maximum=1.0, singleStep=0.001)
        self.fit_steps.setValue(int(self.defaults.fit_steps))
        self.fit_lr.setValue(float(self.defaults.fit_lr))
        self.form.addRow("Fit", self.fit_steps)
        self.form.addRow("Fit rate", self.fit_lr)
        self.form.addRow(self.layers)
        self.fit_steps.valueChanged.connect(lambda v: self.write(fit_steps=int(v)))
        self.fit_lr.valueChanged.connect(lambda v: self.write(fit_lr=float(v)))

    def controls(self):
        return [self.use, self.fit_steps, self.fit_lr]

    def fields(self) -> dict:
        return {"fit_steps": int(self.fit_steps.value()), "fit_lr": float(self.fit_lr.value())}

    def show_step(self, step) -> None:
        self.fit_steps.setValue(int(step.fit_steps))
        self.fit_lr.setValue(float(step.fit_lr))
