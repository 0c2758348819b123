"""Open model: one small form for everything the command line takes (file, architecture, input shape, data
set, trust, and for a compressed file the model it was made from), so a model that needs more than a path
opens in the studio too.

The architecture is ``package.module:factory`` or ``path/to/file.py:factory``; Browse picks a ``.py`` file
and lists the factories defined at its top level, read from its syntax tree, without importing it (importing
runs its code, which happens only when the user presses Open).
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

from PySide6.QtWidgets import (QCheckBox, QComboBox, QDialog, QDialogButtonBox, QFileDialog, QFormLayout, QHBoxLayout,
                               QLabel, QLineEdit, QPushButton, QVBoxLayout, QWidget)

from core.errors import PrunescopeError
from core.io import parse_input_shape

MODEL_FILTER = ("Models (*.pt *.pth *.pt2 *.onnx *.bin *.safetensors *.psz *.ts *.jit *.pkl);;"
                "Compressed (*.psz);;All files (*)")


@dataclass(frozen=True)
class OpenRequest:
    """What to open and how: the arguments of ``Session.open_model``."""

    spec: str
    arch: str | None = None
    input_shape: tuple[int, ...] | None = None
    data: str | None = None
    trust: bool = False
    source: str | None = None  # for a .psz: the model it was made from (never a path the file names)
    inputs: str | None = None  # the person's own examples (--inputs): .npy, .npz or .pt

    def to_dict(self) -> dict:
        return {"spec": self.spec, "arch": self.arch, "input_shape": list(self.input_shape or []) or None,
                "data": self.data, "source": self.source, "inputs": self.inputs}

    @classmethod
    def from_dict(cls, d: dict) -> OpenRequest | None:
        """A remembered request (trust is never remembered: a file can change between sessions)."""
        try:
            shape = d.get("input_shape")
            return cls(str(d["spec"]), d.get("arch") or None, tuple(int(x) for x in shape) if shape else None,
                       d.get("data") or None, source=d.get("source") or None,
                       inputs=str(d["inputs"]) if d.get("inputs") else None)
        except (KeyError, TypeError, ValueError, AttributeError):
            return None

    @property
    def label(self) -> str:
        extras = [f"--arch {self.arch}" if self.arch else "", f"--data {self.data}" if self.data else "",
                  f"--input-shape {','.join(map(str, self.input_shape))}" if self.input_shape else "",
                  f"--source {self.source}" if self.source else ""]
        return " ".join([self.spec, *[e for e in extras if e]])


def factories_in(path: str | Path) -> list[str]:
    """Names of the functions and classes defined at the top level of a Python file (not imported)."""
    try:
        tree = ast.parse(Path(path).read_text(encoding="utf-8"))
    except (OSError, SyntaxError, UnicodeDecodeError, ValueError):
        return []
    return [node.name for node in tree.body
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and not node.name.startswith("_")]


class OpenDialog(QDialog):
    """The form; ``request()`` is what was filled in (after ``accept``)."""

    def __init__(self, parent: QWidget | None = None, initial: OpenRequest | None = None, message: str = "",
                 focus: str = "file") -> None:
        super().__init__(parent)
        self.setWindowTitle("Open model")
        self.setMinimumWidth(560)
        initial = initial or OpenRequest("")
        self.message = QLabel(message, wordWrap=True, objectName="dialogMessage")
        self.message.setVisible(bool(message))
        self.file = QLineEdit(initial.spec, placeholderText="a model file, a Hugging Face folder, or zoo:NAME")
        self.arch = QLineEdit(initial.arch or "",
                              placeholderText="for a bare state_dict: package.module:factory or file.py:factory")
        self.factory = QComboBox()  # the factories of a browsed .py file
        self.factory.setVisible(False)
        self.shape = QLineEdit(",".join(map(str, initial.input_shape or ())),
                               placeholderText="e.g. 1,1,28,28 (needed without a data set)")
        self.data = QComboBox(editable=True)
        self.data.addItems(["", "mnist", "fashion-mnist"])
        self.data.setCurrentText(initial.data or "")
        self.data.lineEdit().setPlaceholderText("the model's own, or mnist, fashion-mnist, a folder / .npz")
        self.source = QLineEdit(initial.source or "",
                                placeholderText="for a compressed .psz: the model it was made from")
        self.trust = QCheckBox("Trust this file: allow it to run code (pickles, TorchScript)")
        self.trust.setChecked(initial.trust)
        self.error = QLabel("", objectName="dialogError", wordWrap=True)
        self.error.setStyleSheet("color: #f28b82")
        browse_file, browse_arch, browse_data = QPushButton("Browse…"), QPushButton("Browse .py…"), QPushButton("…")
        browse_source = QPushButton("Browse…")
        browse_data.setToolTip("a data folder (IDX files, or one folder per class)")
        form = QFormLayout()
        form.addRow("Model", _row(self.file, browse_file))
        form.addRow("Architecture", _row(self.arch, browse_arch))
        form.addRow("", self.factory)
        form.addRow("Input shape", self.shape)
        form.addRow("Data set", _row(self.data, browse_data))
        form.addRow("Source model", _row(self.source, browse_source))
        form.addRow("", self.trust)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Open | QDialogButtonBox.StandardButton.Cancel)
        self.open_button = buttons.button(QDialogButtonBox.StandardButton.Open)
        layout = QVBoxLayout(self)
        for w in (self.message,):
            layout.addWidget(w)
        layout.addLayout(form)
        layout.addWidget(self.error)
        layout.addWidget(buttons)
        browse_file.clicked.connect(self._browse_file)
        browse_arch.clicked.connect(self._browse_arch)
        browse_data.clicked.connect(self._browse_data)
        browse_source.clicked.connect(self._browse_source)
        self.factory.currentTextChanged.connect(self._factory_chosen)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        {"arch": self.arch, "shape": self.shape, "data": self.data, "source": self.source}.get(focus, self.file).setFocus()

    # ------------------------------------------------------------------------------------------ browsing
    def _browse_file(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open model", self.file.text() or str(Path.home()), MODEL_FILTER)
        if path:
            self.file.setText(path)

    def _browse_arch(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Architecture: a Python file defining the model",
                                              str(Path(self.file.text()).parent) if self.file.text() else "",
                                              "Python (*.py)")
        if path:
            self.use_architecture_file(path)

    def use_architecture_file(self, path: str) -> None:
        """Offer the factories ``path`` defines; the first (or one named like make/build/model) is chosen."""
        names = factories_in(path)
        self._arch_file = str(Path(path).resolve())
        self.factory.blockSignals(True)
        self.factory.clear()
        self.factory.addItems(names)
        preferred = next((n for n in names if n.lower() in ("make", "build", "model", "create_model", "get_model")),
                         names[0] if names else None)
        if preferred:
            self.factory.setCurrentText(preferred)
        self.factory.blockSignals(False)
        self.factory.setVisible(bool(names))
        self.arch.setText(f"{self._arch_file}:{preferred}" if preferred else self._arch_file)
        if not names:
            self.error.setText(f"{Path(path).name} defines no top-level function or class to build the model with")

    def _factory_chosen(self, name: str) -> None:
        if name:
            self.arch.setText(f"{self._arch_file}:{name}")

    def _browse_source(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "The model the compressed file was made from",
                                              str(Path(self.file.text()).parent) if self.file.text() else "",
                                              MODEL_FILTER)
        if path:
            self.source.setText(path)

    def _browse_data(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Data folder (IDX files, or one folder per class)")
        if path:
            self.data.setCurrentText(path)

    # ------------------------------------------------------------------------------------------ result
    def request(self) -> OpenRequest:
        """What the form says; raises PrunescopeError (with a one-line message) for a field that cannot work."""
        spec = self.file.text().strip()
        if not spec:
            raise _FormError("choose a model file (or type zoo:NAME)")
        shape_text = self.shape.text().strip()
        shape = parse_input_shape(shape_text) if shape_text else None
        return OpenRequest(spec, self.arch.text().strip() or None, shape, self.data.currentText().strip() or None,
                           self.trust.isChecked(), self.source.text().strip() or None)

    def accept(self) -> None:
        try:
            self.request()
        except PrunescopeError as exc:
            self.error.setText(str(exc))
            return
        super().accept()


class _FormError(PrunescopeError):
    pass


def _row(*widgets) -> QWidget:
    box = QWidget()
    layout = QHBoxLayout(box)
    layout.setContentsMargins(0, 0, 0, 0)
    for i, w in enumerate(widgets):
        layout.addWidget(w, 1 if i == 0 else 0)
    return box

