"""The Sensitivity page's target row: a file size, a ratio or a maximum drop, and Allocate, which chooses
each layer's sparsity and bits for it (:class:`gui.allocation_runs.AllocationRuns`) and writes them into the
recipe; the estimate it predicts is shown beside, and Apply measures the real file."""

from __future__ import annotations

from PySide6.QtWidgets import QComboBox, QDoubleSpinBox, QHBoxLayout, QLabel, QPushButton, QWidget

from gui import theme
from gui.allocation_runs import Target

KINDS = (("Times smaller", "ratio", 1.01, 100_000.0, 1, 40.0),
         ("File size (bytes)", "bytes", 1.0, 1e13, 0, 50_000.0),
         ("Max drop (points)", "max_drop", 0.01, 100.0, 2, 0.5))
"""(label, target kind, least, most, decimals, starting value)."""


class AllocationTarget(QWidget):
    def __init__(self, runs, session, limit=lambda: 2000, parent: QWidget | None = None) -> None:
        """``limit()``: how many validation examples to measure each option on (None: all)."""
        super().__init__(parent)
        self.runs, self.session, self.limit = runs, session, limit
        self.kind = QComboBox()
        for label, kind, *_ in KINDS:
            self.kind.addItem(label, kind)
        self.kind.setToolTip("what to allocate for: the file times smaller than the original, its size in bytes, "
                             "or the most of the metric it may lose (points)")
        self.value = QDoubleSpinBox()
        self.allocate_button = QPushButton("Allocate")
        self.allocate_button.setToolTip("choose each layer's sparsity and bits for the target, from each layer "
                                        "measured alone at every option (validation split), and put them in the "
                                        "recipe; Apply measures the real file")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.hide()
        self.estimate = theme.steady(QLabel("", objectName="caption", wordWrap=True), lines=2)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(QLabel("Target", objectName="caption"))
        layout.addWidget(self.kind)
        layout.addWidget(self.value)
        layout.addWidget(self.allocate_button)
        layout.addWidget(self.cancel_button)
        layout.addWidget(self.estimate, 1)
        self.kind.currentIndexChanged.connect(self._kind_changed)
        self.allocate_button.clicked.connect(self.allocate)
        self.cancel_button.clicked.connect(session.cancel)
        runs.sig_allocated.connect(self._allocated)
        runs.sig_stopped.connect(self._stopped)
        self._kind_changed()

    def _kind_changed(self, _index: int = 0) -> None:
        _, _, low, high, decimals, start = KINDS[self.kind.currentIndex()]
        self.value.setDecimals(decimals)
        self.value.setRange(low, high)
        self.value.setValue(start)

    def target(self) -> Target:
        return Target(self.kind.currentData(), float(self.value.value()))

    def allocate(self) -> None:
        why = self.runs.allocate(self.target(), self.limit())
        if why is not None:
            self.estimate.setText(f"Not allocated: {why}")
            return
        self.estimate.setText("Measuring every layer at every option…")
        self._running(True)

    def _running(self, running: bool) -> None:
        self.allocate_button.setEnabled(not running)
        self.cancel_button.setVisible(running)

    def _allocated(self, _allocation, text: str, whole: str) -> None:
        self._running(False)
        self.estimate.setText(text)
        self.estimate.setToolTip(whole)

    def _stopped(self, message: str) -> None:
        self._running(False)
        self.estimate.setText(message)
        self.estimate.setToolTip(message)
