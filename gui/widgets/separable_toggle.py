"""The per-layer "Make separable" toggle: a k×k convolution as depthwise k×k + pointwise 1×1 (MobileNet).

It shows the layer's weights (and multiply-accumulates, once they are measured) before and after; the
cost ratio is 1/N + 1/k². Toggling it asks for the layer to be added to or taken out of the recipe's
separable step.
"""

from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QCheckBox, QHBoxLayout, QLabel, QVBoxLayout, QWidget

from core.analysis.cost import human_macs
from gui import theme


class SeparableToggle(QWidget):
    sig_toggled = Signal(str, bool)
    """The user asked for this layer to be made separable (True) or left as it is (False)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("panel")
        self._layer = ""
        self.check = QCheckBox("Make separable")
        self.check.setToolTip("Replace this k×k convolution by a depthwise k×k and a pointwise 1×1 (groups=1 "
                              "convolutions with a kernel larger than 1×1)")
        self.params_label = QLabel("", objectName="caption")  # its width: it changes only on a click
        self.macs_label = theme.steady(QLabel("", objectName="caption"), 1)
        self.note = QLabel("preview only", objectName="caption")
        row = QHBoxLayout()
        row.addWidget(self.check)
        row.addWidget(self.params_label)
        row.addWidget(self.macs_label, 1)  # on the same line: the spectrum plot above needs the height
        row.addWidget(self.note)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(10, 2, 10, 2)
        layout.addLayout(row)
        self.check.toggled.connect(self._toggled)
        self.show_layer("", None)

    def show_layer(self, layer: str, weights: tuple[int, int] | None, macs: tuple[int, int] | None = None,
                   separable: bool = False, editable: bool = True, why: str = "") -> None:
        """``layer``'s weights (before, after) and MACs (before, after; None until measured), whether the
        recipe makes it separable, and whether the toggle can change the recipe (``why`` says why not)."""
        self._layer = layer
        self.setVisible(weights is not None)
        if weights is None:
            return
        self.check.blockSignals(True)
        self.check.setChecked(separable)
        self.check.blockSignals(False)
        self.check.setEnabled(editable)
        self.check.setToolTip(why or self.check.toolTip())
        self.note.setToolTip(why)
        self.note.setVisible(bool(why))  # the reason is in its tooltip
        self._weights, self._macs = weights, macs
        self._show_counts()

    def is_checked(self) -> bool:
        return self.check.isChecked()

    def _toggled(self, on: bool) -> None:
        self._show_counts()
        self.sig_toggled.emit(self._layer, on)

    def _show_counts(self) -> None:
        (before, after), on = self._weights, self.check.isChecked()
        ratio = f"{before / after:.1f}× fewer"
        self.params_label.setText(f"<b>separable</b>: weights {before:,} → {after:,} ({ratio})" if on else
                                  f"weights {before:,} → {after:,} ({ratio})")
        self.macs_label.setVisible(self._macs is not None)  # shown once the cost count is in
        if self._macs is None:
            return
        mb, ma = self._macs
        self.macs_label.setToolTip(f"multiply-accumulates per image: {mb:,} now, {ma:,} separable")
        self.macs_label.setText(f"· MACs {human_macs(mb)} → {human_macs(ma)}")
