"""The encoding section: how the compressed file stores the weights (Huffman coding on or off)."""

from __future__ import annotations

from PySide6.QtWidgets import QCheckBox

from gui.methods import register_section
from gui.methods.base import Section


@register_section("encode")
class EncodeSection(Section):
    heading = "File"

    def __init__(self, draft, parent=None) -> None:
        super().__init__(draft, parent)
        self.huffman = QCheckBox("Huffman coding")
        self.huffman.setToolTip("Huffman-code the stored indices (Deep Compression's last stage)")
        self.form.addRow(self.huffman)
        self.huffman.toggled.connect(lambda on: draft.set(huffman=on))

    def controls(self):
        return [self.huffman]

    def show_draft(self) -> None:
        self.huffman.setChecked(self.draft.huffman)
