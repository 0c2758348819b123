"""Softened outputs: a teacher's class probabilities for one test image at T = 1 and at the chosen T.

As in the lecture notes' temperature example (x = 100, 10, 1 gives y = 1, 0, 0 at T = 1 but 0.56, 0.23,
0.21 at T = 100), softmax(z / T) for T > 1 pulls the classes' probabilities together: the grouped bars show
the teacher's hard answer beside the "dark knowledge" a student learns from ("this 1 looks a bit like a
7"). The logits come from the background once per image; moving T re-softens them here at once (a softmax
over a handful of classes).
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
import torch
from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QImage, QPixmap
from PySide6.QtWidgets import QHBoxLayout, QLabel, QPushButton, QSpinBox, QVBoxLayout, QWidget

from gui import theme
from gui.methods.base import slider
from gui.widgets.elided_label import ElidedLabel

BAR_WIDTH = 0.38
THUMB = 56  # pixels of the image thumbnail
T_RANGE = (1.0, 20.0)


def entropy_bits(p: np.ndarray) -> float:
    """Shannon entropy of a probability vector, in bits."""
    p = np.asarray(p, dtype=np.float64)
    nz = p[p > 0]
    return float(-(nz * np.log2(nz)).sum())


def thumbnail(image: np.ndarray, size: int = THUMB) -> QPixmap:
    """A uint8 image, (H, W), (1, H, W) or (3, H, W), as a pixmap ``size`` pixels tall (nearest neighbour)."""
    a = np.asarray(image)
    if a.ndim == 3 and a.shape[0] == 1:
        a = a[0]
    if a.ndim == 3:
        a = np.ascontiguousarray(np.moveaxis(a[:3], 0, -1))
        q = QImage(a.data, a.shape[1], a.shape[0], a.strides[0], QImage.Format.Format_RGB888)
    else:
        a = np.ascontiguousarray(a)
        q = QImage(a.data, a.shape[1], a.shape[0], a.strides[0], QImage.Format.Format_Grayscale8)
    return QPixmap.fromImage(q.copy()).scaledToHeight(size, Qt.TransformationMode.FastTransformation)


class SoftenedView(QWidget):
    sig_image_changed = Signal(int)
    """The user chose this test image (its index in the test split)."""
    sig_temperature_changed = Signal(float)
    """The user moved the temperature slider to this T."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("panel")
        self.logits: np.ndarray | None = None
        self.classes: tuple[str, ...] = ()

        self.title = ElidedLabel("Softened outputs")
        self.title.setObjectName("panelTitle")
        self.thumb = QLabel()
        self.thumb.setFixedSize(THUMB, THUMB)
        self.thumb.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.image_box = QSpinBox(minimum=0, maximum=0, prefix="test image ")
        self.image_box.setToolTip("Which test image the teacher's outputs are shown for")
        self.next_button = QPushButton("Next")
        self.next_button.setToolTip("The next test image")
        self.label_text = QLabel("", objectName="caption")
        self.temperature = slider(*T_RANGE, 1)
        self.temperature.setValue(4.0)
        self.temperature.setToolTip("Temperature T: softmax(z / T); T = 1 is the teacher's usual output")
        controls = QVBoxLayout()
        row = QHBoxLayout()
        row.addWidget(self.image_box)
        row.addWidget(self.next_button)
        row.addWidget(self.label_text, 1)
        controls.addLayout(row)
        t_row = QHBoxLayout()
        t_row.addWidget(QLabel("T"))
        t_row.addWidget(self.temperature, 1)
        self.legend = QLabel("", objectName="caption")  # beside the slider: a legend on the plot hid bars
        t_row.addWidget(self.legend)
        controls.addLayout(t_row)
        top = QHBoxLayout()
        top.addWidget(self.thumb)
        top.addLayout(controls, 1)

        self.plot = pg.PlotWidget()
        self.plot.setProperty("exportName", "Softened outputs")
        theme.grid(self.plot, x=False)
        self.plot.setLabel("left", "probability")
        self.plot.setMouseEnabled(x=False, y=False)
        self.plot.getAxis("left").enableAutoSIPrefix(False)
        self.hard_bars = pg.BarGraphItem(x=[], height=[], width=BAR_WIDTH, brush=pg.mkBrush(theme.MUTED),
                                         pen=pg.mkPen(None))
        self.soft_bars = pg.BarGraphItem(x=[], height=[], width=BAR_WIDTH, brush=pg.mkBrush(theme.WARM),
                                         pen=pg.mkPen(None))
        self.plot.addItem(self.hard_bars)
        self.plot.addItem(self.soft_bars)
        self.message = pg.TextItem("", color=theme.MUTED, anchor=(0.5, 0.5))
        self.plot.addItem(self.message, ignoreBounds=True)
        theme.wrapped_message(self.message, self.plot)
        self.summary = theme.steady(QLabel("", objectName="caption", wordWrap=True), 1)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(10, 8, 10, 8)
        layout.addWidget(self.title)
        layout.addLayout(top)
        layout.addWidget(self.plot, 1)
        layout.addWidget(self.summary)

        self.image_box.valueChanged.connect(lambda i: self.sig_image_changed.emit(int(i)))
        self.next_button.clicked.connect(lambda: self.image_box.setValue(
            self.image_box.value() + 1 if self.image_box.value() < self.image_box.maximum() else 0))
        self.temperature.valueChanged.connect(self._temperature_moved)
        self.show_logits(None, "Open a model with a test set")

    # ------------------------------------------------------------------------------------------ input
    def set_teacher(self, text: str) -> None:
        self.title.setText(f"Softened outputs  ·  teacher: {text}")

    def set_test_set(self, count: int, classes: tuple[str, ...]) -> None:
        """How many test images there are to choose from, and the class names (bar labels)."""
        self.image_box.blockSignals(True)
        self.image_box.setMaximum(max(count - 1, 0))
        self.image_box.blockSignals(False)
        self.classes = tuple(classes)
        self.plot.getAxis("bottom").setTicks([[(i, str(c)) for i, c in enumerate(self.classes)]])

    def set_image(self, index: int, image: np.ndarray | None, label: str = "") -> None:
        """Show test image ``index`` (its uint8 pixels, and its true class)."""
        self.image_box.blockSignals(True)
        self.image_box.setValue(index)
        self.image_box.blockSignals(False)
        self.thumb.setPixmap(thumbnail(image) if image is not None else QPixmap())
        self.label_text.setText(f"label: {label}" if label else "")

    def set_temperature(self, temperature: float) -> None:
        """Move the slider to ``temperature`` (from the recipe) without emitting, and re-soften."""
        self.temperature.blockSignals(True)
        self.temperature.setValue(float(temperature))
        self.temperature.blockSignals(False)
        self._redraw()

    def show_logits(self, logits: np.ndarray | None, waiting: str = "") -> None:
        """The teacher's logits for the image shown (one per class); None shows ``waiting`` instead."""
        self.logits = None if logits is None else np.asarray(logits, dtype=np.float64)
        self.message.setText("" if logits is not None else waiting)
        self._redraw()

    # ------------------------------------------------------------------------------------------ drawing
    def temperature_value(self) -> float:
        return float(self.temperature.value())

    def probabilities(self) -> tuple[np.ndarray, np.ndarray] | None:
        """(at T = 1, at the slider's T) for the logits shown, or None."""
        if self.logits is None:
            return None
        from gui.methods.arch_api import soft_probabilities

        z = torch.from_numpy(self.logits)
        return (soft_probabilities(z, 1.0).numpy(), soft_probabilities(z, self.temperature_value()).numpy())

    def _temperature_moved(self, value) -> None:
        self._redraw()
        self.sig_temperature_changed.emit(float(value))

    def _redraw(self) -> None:
        t = self.temperature_value()
        self._relabel_legend(t)
        probs = self.probabilities()
        if probs is None:
            self.hard_bars.setOpts(x=[], height=[])
            self.soft_bars.setOpts(x=[], height=[])
            self.message.setPos(4.5, 0.5)
            self.plot.setRange(xRange=(-0.6, 9.6), yRange=(0, 1), padding=0)
            self.summary.setText("")
            return
        hard, soft = probs
        x = np.arange(len(hard), dtype=np.float64)
        self.hard_bars.setOpts(x=x - BAR_WIDTH / 2, height=hard)
        self.soft_bars.setOpts(x=x + BAR_WIDTH / 2, height=soft)
        self.plot.setRange(xRange=(-0.6, len(hard) - 0.4), yRange=(0, 1.02), padding=0)
        top = int(np.argmax(hard))
        name = self.classes[top] if top < len(self.classes) else str(top)
        second = int(np.argsort(soft)[-2]) if len(soft) > 1 else top
        second_name = self.classes[second] if second < len(self.classes) else str(second)
        self.summary.setText(f"{name}: {hard[top]:.3f} → {soft[top]:.3f} · next {second_name}: {hard[second]:.3f} → "
                             f"{soft[second]:.3f} · entropy {entropy_bits(hard):.2f} → {entropy_bits(soft):.2f} bits")
        self.summary.setToolTip(f"class probabilities at T = 1 → at T = {t:.1f}")

    def _relabel_legend(self, t: float) -> None:
        self.legend.setText(f"<span style='color:{theme.MUTED}'>■</span> T = 1 &nbsp; "
                            f"<span style='color:{theme.WARM}'>■</span> T = {t:.1f}")
