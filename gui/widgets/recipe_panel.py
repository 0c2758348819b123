"""The recipe panel: pruning and quantization settings, a live preview, and Apply.

Every control writes to the session's :class:`~gui.recipe_draft.RecipeDraft`; the preview (kept fraction
and estimated bytes, from the weight statistics only) redraws on each change. Apply freezes the draft
into a Recipe and runs it in the background.
"""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (QCheckBox, QComboBox, QDoubleSpinBox, QFormLayout, QGroupBox, QHBoxLayout, QLabel,
                               QPushButton, QSpinBox, QToolButton, QVBoxLayout, QWidget)
from superqt import QLabeledDoubleSlider, QLabeledSlider

from core.analysis.estimate import preview
from core.report.reports import human_bytes
from gui import theme
from gui.recipe_draft import IMPORTANCE, PRUNE_METHODS, QUANT_METHODS, RecipeDraft

PRUNE_LABELS = {"none": "No pruning", "magnitude": "Magnitude (weights)", "iterative": "Iterative + fine-tune",
                "structured": "Structured (neurons/filters)"}
QUANT_LABELS = {"none": "No quantization", "kmeans": "k-means weight sharing", "uniform": "Uniform levels",
                "binary": "Binary (1 bit)", "ternary": "Ternary"}


def _slider(low, high, decimals=None):
    slider = (QLabeledDoubleSlider if decimals is not None else QLabeledSlider)(Qt.Orientation.Horizontal)
    slider.setRange(low, high)
    if decimals is not None:
        slider.setDecimals(decimals)
    return slider


class RecipePanel(QWidget):
    sig_apply = Signal()
    """The user asked to apply the draft."""
    sig_save = Signal()
    """The user asked to save the draft as a recipe file."""
    sig_load = Signal()
    """The user asked to load a recipe file into the draft."""

    def __init__(self, draft: RecipeDraft, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("panel")
        self.draft = draft
        self.layer: str | None = None
        self.stats: dict = {}
        self.other_bytes = 0
        self.original_bytes = 0

        self.prune_method = QComboBox()
        for key in PRUNE_METHODS:
            self.prune_method.addItem(PRUNE_LABELS[key], key)
        self.scope = QComboBox()
        self.scope.addItem("Per layer", "layer")
        self.scope.addItem("Global threshold", "global")
        self.importance = QComboBox()
        for key in IMPORTANCE:
            self.importance.addItem(key, key)
        self.sparsity = _slider(0.0, 0.99, 2)
        self.layer_sparsity = _slider(0.0, 0.99, 2)
        self.layer_sparsity_label = QLabel("This layer")
        self.reset_layer = QToolButton(text="×", toolTip="Use the all-layers value for this layer")
        self.quant_method = QComboBox()
        for key in QUANT_METHODS:
            self.quant_method.addItem(QUANT_LABELS[key], key)
        self.bits = _slider(1, 8)
        self.layer_bits = QSpinBox(minimum=0, maximum=8, specialValueText="same")
        self.huffman = QCheckBox("Huffman coding")
        self.epochs = QSpinBox(minimum=0, maximum=200, suffix=" epochs")
        self.lr = QDoubleSpinBox(decimals=4, minimum=0.0001, maximum=1.0, singleStep=0.001)
        self.preview_label = theme.steady(QLabel("", objectName="previewLabel", wordWrap=True), 4)
        self.apply_button = QPushButton("Apply", objectName="applyButton")
        self.apply_button.setToolTip("Compress the current model with these settings (Ctrl+Return)")
        save, load = QPushButton("Save recipe…"), QPushButton("Load recipe…")

        prune_box = QGroupBox("Pruning")
        form = self.prune_form = QFormLayout(prune_box)
        form.addRow("Method", self.prune_method)
        form.addRow("Scope", self.scope)
        form.addRow("Ranked by", self.importance)
        form.addRow("All layers", self.sparsity)
        row = QHBoxLayout()
        row.addWidget(self.layer_sparsity, 1)
        row.addWidget(self.reset_layer)
        form.addRow(self.layer_sparsity_label, row)
        quant_box = QGroupBox("Quantization")
        qform = QFormLayout(quant_box)
        qform.addRow("Method", self.quant_method)
        qform.addRow("Bits", self.bits)
        qform.addRow("This layer", self.layer_bits)
        qform.addRow("", self.huffman)
        train_box = QGroupBox("Fine-tuning")
        tform = QFormLayout(train_box)
        tform.addRow("Length", self.epochs)
        tform.addRow("Learning rate", self.lr)
        buttons = QHBoxLayout()
        buttons.addWidget(load)
        buttons.addWidget(save)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(10, 8, 10, 8)
        for widget in (prune_box, quant_box, train_box, self.preview_label, self.apply_button):
            layout.addWidget(widget)
        layout.addLayout(buttons)
        layout.addStretch(1)

        self.prune_method.currentIndexChanged.connect(lambda: draft.set(prune_method=self.prune_method.currentData()))
        self.scope.currentIndexChanged.connect(lambda: draft.set(scope=self.scope.currentData()))
        self.importance.currentIndexChanged.connect(lambda: draft.set(importance=self.importance.currentData()))
        self.sparsity.valueChanged.connect(lambda v: draft.set(sparsity=round(float(v), 4)))
        self.layer_sparsity.valueChanged.connect(self._layer_sparsity_moved)
        self.reset_layer.clicked.connect(lambda: self.layer and draft.set_layer_sparsity(self.layer, None))
        self.quant_method.currentIndexChanged.connect(lambda: draft.set(quant_method=self.quant_method.currentData()))
        self.bits.valueChanged.connect(lambda v: draft.set(bits=int(v)))
        self.layer_bits.valueChanged.connect(
            lambda v: self.layer and draft.set_layer_bits(self.layer, int(v) if v else None))
        self.huffman.toggled.connect(lambda on: draft.set(huffman=on))
        self.epochs.valueChanged.connect(lambda v: draft.set(finetune_epochs=int(v)))
        self.lr.valueChanged.connect(lambda v: draft.set(lr=float(v)))
        self.apply_button.clicked.connect(self.sig_apply)
        save.clicked.connect(self.sig_save)
        load.clicked.connect(self.sig_load)
        draft.sig_changed.connect(self.refresh)
        self.refresh()

    def set_context(self, layer: str | None, stats: dict, other_bytes: int, original_bytes: int) -> None:
        """The selected layer, the current model's weight statistics of its prunable layers, the bytes of
        everything else (biases, norms: stored as float16), and the original's size for the ratio."""
        self.layer, self.stats, self.other_bytes, self.original_bytes = layer, stats, other_bytes, original_bytes
        self.refresh()

    def _layer_sparsity_moved(self, value) -> None:
        if self.layer is not None and self.layer in self.stats:
            self.draft.set_layer_sparsity(self.layer, round(float(value), 4))

    def previews(self) -> dict:
        d = self.draft
        if not self.stats:
            return {}
        sparsities = {n: d.sparsity_of(n) for n in self.stats}
        bits = {n: d.bits_of(n) for n in self.stats}
        global_sparsity = d.sparsity if d.scope == "global" and d.prune_method in ("magnitude", "iterative") else None
        return preview(self.stats, sparsities, bits, global_sparsity)

    def refresh(self) -> None:
        """Controls from the draft (signals blocked: model -> UI), then the preview."""
        d = self.draft
        widgets = (self.prune_method, self.scope, self.importance, self.sparsity, self.layer_sparsity,
                   self.quant_method, self.bits, self.layer_bits, self.huffman, self.epochs, self.lr)
        for w in widgets:
            w.blockSignals(True)
        try:
            self.prune_method.setCurrentIndex(self.prune_method.findData(d.prune_method))
            self.scope.setCurrentIndex(self.scope.findData(d.scope))
            self.importance.setCurrentIndex(self.importance.findData(d.importance))
            self.sparsity.setValue(d.sparsity)
            layer_ok = self.layer is not None and self.layer in self.stats
            self.layer_sparsity.setValue(d.sparsity_of(self.layer) if layer_ok else d.sparsity)
            self.layer_sparsity_label.setText(f"{self.layer}" if layer_ok else "This layer")
            self.quant_method.setCurrentIndex(self.quant_method.findData(d.quant_method))
            self.bits.setValue(d.bits)
            self.layer_bits.setValue(d.layer_bits.get(self.layer, 0) if layer_ok else 0)
            self.huffman.setChecked(d.huffman)
            self.epochs.setValue(d.finetune_epochs)
            self.lr.setValue(d.lr)
        finally:
            for w in widgets:
                w.blockSignals(False)
        pruning = d.prune_method != "none"
        # a control that does not apply to the method is hidden, not just greyed (the dark style barely
        # tells the two apart)
        self.prune_form.setRowVisible(self.scope, d.prune_method in ("magnitude", "iterative"))
        self.prune_form.setRowVisible(self.importance, d.prune_method == "structured")
        self.sparsity.setEnabled(pruning)
        self.layer_sparsity.setEnabled(pruning and d.scope == "layer" and self.layer in self.stats)
        self.bits.setEnabled(d.quant_method in ("kmeans", "uniform"))
        self.layer_bits.setEnabled(d.quant_method in ("kmeans", "uniform") and self.layer in self.stats)
        self._show_preview()

    def _show_preview(self) -> None:
        previews = self.previews()
        if not previews:
            self.preview_label.setText("Preview appears once the model's statistics are in.")
            return
        params = sum(p.params for p in previews.values())
        kept = sum(p.params * p.kept for p in previews.values()) / max(params, 1)
        total = sum(p.estimated_bytes for p in previews.values()) + self.other_bytes
        ratio = f", ≈ {self.original_bytes / total:.0f}x smaller" if self.original_bytes and total else ""
        layer = previews.get(self.layer or "")
        detail = f"<br>{self.layer}: keeps {layer.kept:.1%}, ≈ {human_bytes(layer.estimated_bytes)}" if layer else ""
        self.preview_label.setText(f"<b>Keeps {kept:.1%} of weights · ≈ {human_bytes(total)}{ratio}</b>{detail}"
                                   "<br><span style='color:#9aa0a6'>estimate; Apply measures the real file</span>")
