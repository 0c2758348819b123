"""The Sweep dialog: the axes of a grid over the current recipe, how many test examples to measure on, and
where to run it (local worker processes or a Ray cluster). It says, as the axes are typed, how many recipes
the grid holds or what is wrong with it, and Run stays disabled until the grid is valid."""

from __future__ import annotations

from dataclasses import dataclass

from PySide6.QtWidgets import (QComboBox, QDialog, QDialogButtonBox, QFormLayout, QLabel, QLineEdit,
                               QPlainTextEdit, QSpinBox, QVBoxLayout, QWidget)

from core.recipe import Recipe
from core.sweep import SweepError, SweepJob, expand_grid, parse_axis
from core.sweep.pool import default_workers
from core.sweep.ray_backend import ray_available


@dataclass(frozen=True)
class SweepRequest:
    """What the dialog asks for: the jobs, the test examples to measure on (None: all), the Ray address
    (None: local worker processes) and the number of workers."""

    jobs: tuple[SweepJob, ...]
    limit: int | None
    ray: str | None
    workers: int | None


class SweepDialog(QDialog):
    def __init__(self, parent: QWidget | None, base: Recipe, axes: str) -> None:
        super().__init__(parent)
        self.setWindowTitle("Sweep")
        self.setObjectName("sweepDialog")
        self.base = base
        self.axes = QPlainTextEdit(axes, objectName="sweepAxes")
        self.axes.setPlaceholderText("prune_magnitude.sparsity=0.5,0.7,0.9\nquantize.bits=4,5,6")
        self.axes.setToolTip("One axis per line: a setting of the recipe's first step of a kind, and the values it "
                             "takes. The grid is every combination.")
        self.limit = QSpinBox(objectName="sweepLimit", minimum=0, maximum=10_000_000, singleStep=500)
        self.limit.setSpecialValueText("all")
        self.backend = QComboBox(objectName="sweepBackend")
        self.backend.addItem("Local worker processes", "local")
        self.backend.addItem("Ray cluster", "ray")
        if not ray_available():
            self.backend.model().item(1).setEnabled(False)
            self.backend.setItemData(1, 'Needs the [ray] extra: pip install -e ".[ray]"', 3)  # ToolTipRole
        self.address = QLineEdit("auto", objectName="sweepAddress", enabled=False)
        self.address.setToolTip("auto (the cluster `ray start --head` started), local (this machine, for this "
                                "sweep only) or HOST:PORT")
        self.workers = QSpinBox(objectName="sweepWorkers", minimum=1, maximum=1024, value=default_workers())
        self.summary = QLabel("", objectName="caption", wordWrap=True)
        form = QFormLayout()
        form.addRow("Axes", self.axes)
        form.addRow("Test examples", self.limit)
        form.addRow("Run on", self.backend)
        form.addRow("Ray address", self.address)
        form.addRow("Workers", self.workers)
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        self.buttons.button(QDialogButtonBox.StandardButton.Ok).setText("Run")
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(QLabel(f"Each line sweeps one setting of the current recipe ({len(base.steps)} steps: "
                                f"{', '.join(s.kind for s in base.steps)}); each recipe compresses the original.",
                                wordWrap=True))
        layout.addLayout(form)
        layout.addWidget(self.summary)
        layout.addWidget(self.buttons)
        self.axes.textChanged.connect(self._check)
        self.backend.currentIndexChanged.connect(lambda _i: self.address.setEnabled(self.backend.currentData() == "ray"))
        self._check()

    def jobs(self) -> list[SweepJob]:
        """The grid the axes describe (:class:`SweepError`, one line, when they do not make one)."""
        lines = [line.strip() for line in self.axes.toPlainText().splitlines() if line.strip()]
        return expand_grid(self.base, [parse_axis(line) for line in lines])

    def _check(self) -> None:
        try:
            count, ok = len(self.jobs()), True
            self.summary.setText(f"{count} recipe{'s' if count != 1 else ''}")
        except SweepError as exc:
            ok = False
            self.summary.setText(str(exc))
        self.buttons.button(QDialogButtonBox.StandardButton.Ok).setEnabled(ok)

    def request(self) -> SweepRequest:
        ray = (self.address.text().strip() or "auto") if self.backend.currentData() == "ray" else None
        return SweepRequest(tuple(self.jobs()), self.limit.value() or None, ray, self.workers.value())
