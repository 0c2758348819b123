"""The distillation section: train the model to match a teacher's softened outputs (Hinton et al. 2015).

The teacher is the original (the model as loaded), a zoo model or a model file; T and alpha are sliders,
as the other sections' amounts are. The step is the recipe's ``distill`` step, made from the registered
config (this section exists only where the engine has that kind). The inspector's Softened outputs view
shows what T does to the teacher's probabilities for one test image.
"""

from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QCheckBox, QComboBox, QFileDialog, QHBoxLayout, QPushButton, QSpinBox

from core.eval import zoo
from core.recipe.registry import step_kind
from gui.methods import register_section
from gui.methods.arch_api import DISTILL
from gui.methods.base import Section, slider

ORIGINAL = "original"


@register_section(DISTILL)
class DistillSection(Section):
    heading = "Distillation"

    sig_show_outputs = Signal()
    """The user asked to see the teacher's softened outputs (the inspector's view)."""

    def __init__(self, draft, parent=None) -> None:
        super().__init__(draft, parent)
        draft.claim(DISTILL)
        self.enabled = QCheckBox("Distil from a teacher")
        self.enabled.setToolTip("Train the model to match the teacher's outputs softened by T, and the labels")
        self.teacher = QComboBox(minimumContentsLength=6)  # shrinks with the panel; the full name is its tooltip
        self.teacher.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.teacher.addItem("the original (as loaded)", ORIGINAL)
        for name in zoo.ZOO:
            self.teacher.addItem(f"zoo: {name}", f"zoo:{name}")
        self.browse = QPushButton("Browse…")
        self.browse.setToolTip("A model file to use as the teacher")
        teacher_row = QHBoxLayout()
        teacher_row.addWidget(self.teacher, 1)
        teacher_row.addWidget(self.browse)
        self.temperature = slider(1.0, 20.0, 1)
        self.temperature.setToolTip("T: softmax(z / T); higher T gives the other classes' probabilities more weight")
        self.alpha = slider(0.0, 1.0, 2)
        self.alpha.setToolTip("alpha: the weight of the soft (teacher) term; 1 - alpha weighs the labels")
        self.epochs = QSpinBox(minimum=1, maximum=200, suffix=" epochs")
        self.show_outputs = QPushButton("Show softened outputs")
        self.form.addRow(self.enabled)
        self.form.addRow("Teacher", teacher_row)
        self.form.addRow("T", self.temperature)
        self.form.addRow("alpha", self.alpha)
        self.form.addRow("Length", self.epochs)
        self.form.addRow(self.show_outputs)
        defaults = step_kind(DISTILL).config()  # the controls start at the step's own defaults
        self.temperature.setValue(float(defaults.temperature))
        self.alpha.setValue(float(defaults.alpha))
        self.epochs.setValue(int(defaults.epochs))
        self.enabled.toggled.connect(self._enable)
        self.teacher.currentIndexChanged.connect(lambda: self._write(teacher=self.teacher.currentData()))
        self.browse.clicked.connect(self.browse_teacher)
        self.temperature.valueChanged.connect(lambda v: self._write(temperature=round(float(v), 2)))
        self.temperature.sliderPressed.connect(self.sig_show_outputs)
        self.alpha.valueChanged.connect(lambda v: self._write(alpha=round(float(v), 3)))
        self.epochs.valueChanged.connect(lambda v: self._write(epochs=int(v)))
        self.show_outputs.clicked.connect(self.sig_show_outputs)

    def controls(self):
        return [self.enabled, self.teacher, self.temperature, self.alpha, self.epochs]

    def _enable(self, on: bool) -> None:
        if on:
            self.draft.set_step(DISTILL, teacher=self.teacher.currentData(), temperature=round(
                float(self.temperature.value()), 2), alpha=round(float(self.alpha.value()), 3),
                epochs=int(self.epochs.value()))
        else:
            self.draft.drop_kind(DISTILL)

    def _write(self, **fields) -> None:
        if self.draft.step_of(DISTILL) is not None:
            self.draft.set_step(DISTILL, **fields)

    def browse_teacher(self, path: str | None = None) -> None:
        """Choose a model file as the teacher (asks for one when ``path`` is not given)."""
        if path is None:
            path, _ = QFileDialog.getOpenFileName(self, "Teacher model", "", "Models (*.pt *.pth *.psz *.pt2 *.onnx "
                                                  "*.safetensors);;All files (*)")
            if not path:
                return
        index = self.teacher.findData(path)
        if index < 0:
            self.teacher.addItem(path, path)
            index = self.teacher.count() - 1
        self.teacher.setCurrentIndex(index)

    def show_draft(self) -> None:
        step = self.draft.step_of(DISTILL)
        self.enabled.setChecked(step is not None)
        if step is None:  # the controls keep their values, for when distillation is switched on again
            defaults = {"temperature": self.temperature.value(), "alpha": self.alpha.value()}
        else:
            defaults = {"temperature": step.temperature, "alpha": step.alpha}
            index = self.teacher.findData(step.teacher)
            if index < 0:
                self.teacher.addItem(step.teacher, step.teacher)
                index = self.teacher.count() - 1
            self.teacher.setCurrentIndex(index)
            self.epochs.setValue(int(step.epochs))
        self.temperature.setValue(float(defaults["temperature"]))
        self.alpha.setValue(float(defaults["alpha"]))
        for widget in (self.teacher, self.browse, self.temperature, self.alpha, self.epochs):
            widget.setEnabled(step is not None)
