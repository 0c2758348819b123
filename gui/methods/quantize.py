"""The quantization section: weight sharing or uniform levels, bits for all layers and for the selected one."""

from __future__ import annotations

from PySide6.QtWidgets import QComboBox, QSpinBox

from gui.methods import register_section
from gui.methods.base import Section, slider
from gui.recipe_draft import QUANT_METHODS

LABELS = {"none": "No quantization", "kmeans": "k-means weight sharing", "uniform": "Uniform levels",
          "binary": "Binary (1 bit)", "ternary": "Ternary"}


@register_section("quantize")
class QuantizeSection(Section):
    heading = "Quantization"

    def __init__(self, draft, parent=None) -> None:
        super().__init__(draft, parent)
        self.quant_method = QComboBox()
        for key in QUANT_METHODS:
            self.quant_method.addItem(LABELS[key], key)
        self.bits = slider(1, 8)
        self.layer_bits = QSpinBox(minimum=0, maximum=8, specialValueText="same")
        self.form.addRow("Method", self.quant_method)
        self.form.addRow("Bits", self.bits)
        self.form.addRow("This layer", self.layer_bits)
        self.quant_method.currentIndexChanged.connect(lambda: draft.set(quant_method=self.quant_method.currentData()))
        self.bits.valueChanged.connect(lambda v: draft.set(bits=int(v)))
        self.layer_bits.valueChanged.connect(
            lambda v: self.layer and draft.set_layer_bits(self.layer, int(v) if v else None))

    def controls(self):
        return [self.quant_method, self.bits, self.layer_bits]

    def show_draft(self) -> None:
        d = self.draft
        self.quant_method.setCurrentIndex(self.quant_method.findData(d.quant_method))
        self.bits.setValue(d.bits)
        self.layer_bits.setValue(d.layer_bits.get(self.layer, 0) if self.layer_ok else 0)
        shared = d.quant_method in ("kmeans", "uniform")
        self.bits.setEnabled(shared)
        self.layer_bits.setEnabled(shared and self.layer_ok)
