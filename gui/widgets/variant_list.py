"""The history of variants: the original and each applied recipe, with the variant each was made from,
undo, redo, save, and a name field that renames the current variant (double-click a row to edit it)."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QHBoxLayout, QLineEdit, QListWidget, QListWidgetItem, QPushButton, QVBoxLayout, QWidget

from core.pipeline.scores import pairs_figure, variant_score
from core.report.reports import human_bytes, times
from gui.variant_store import VariantStore


class VariantList(QWidget):
    sig_save = Signal(int)
    """The user asked to save this variant's compressed file."""

    def __init__(self, store: VariantStore, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("panel")
        self.store = store
        self.list = QListWidget()
        self.name_edit = QLineEdit(placeholderText="name of the current variant", objectName="variantName")
        self.name_edit.setToolTip("Rename the current variant: type and press Enter (undoable)")
        # a row is two lines, the name over its numbers: one line ran past the dock's edge
        self.list.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.list.setTextElideMode(Qt.TextElideMode.ElideRight)
        self.undo_button = QPushButton("Undo")
        self.redo_button = QPushButton("Redo")
        self.save_button = QPushButton("Save file…")
        self.save_button.setToolTip("Write the current variant's compressed file and its report")
        buttons = QHBoxLayout()
        for b in (self.undo_button, self.redo_button, self.save_button):
            buttons.addWidget(b)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(10, 8, 10, 8)
        layout.addWidget(self.list, 1)
        layout.addWidget(self.name_edit)
        layout.addLayout(buttons)
        self.name_edit.editingFinished.connect(self._rename_current)
        self.list.itemDoubleClicked.connect(lambda _item: (self.name_edit.setFocus(), self.name_edit.selectAll()))
        self.undo_button.clicked.connect(store.undo_stack.undo)
        self.redo_button.clicked.connect(store.undo_stack.redo)
        self.save_button.clicked.connect(lambda: store.current_id is not None and self.sig_save.emit(store.current_id))
        self.list.itemClicked.connect(lambda item: store.set_current(item.data(Qt.ItemDataRole.UserRole)))
        store.sig_changed.connect(self.refresh)
        store.sig_current_changed.connect(self._refresh_on)
        store.undo_stack.indexChanged.connect(self._refresh_on)
        self.refresh()

    def _refresh_on(self, _value) -> None:  # a bound method: Qt disconnects it when this widget goes
        self.refresh()

    def refresh(self) -> None:
        self.list.blockSignals(True)
        self.list.clear()
        original = self.store.original
        for v in self.store.variants:
            ratio = f" · {times(original.size_bytes / v.size_bytes)}" if original and not v.is_original else ""
            # the figure by name ("cosine 0.9987"): a fidelity is never read as an accuracy
            accuracy = "".join(f" · {text}" for text in (_score_text(v), pairs_figure(v)) if text)
            mark = "" if v.is_original or v.id in self.store.saved else " ·  unsaved"
            parent = f"  ← #{v.parent}" if v.parent is not None else ""
            item = QListWidgetItem(f"{'original' if v.is_original else v.name}{parent}\n{human_bytes(v.size_bytes)}"
                                   f"{ratio}{accuracy}{mark}")
            made = ("" if v.is_original else f"made from #{v.parent}" if v.parent is not None
                    else "made from the original")
            item.setToolTip(item.text() + (f"\n{made}" if made else ""))
            item.setData(Qt.ItemDataRole.UserRole, v.id)
            self.list.addItem(item)
            if v.id == self.store.current_id:
                item.setSelected(True)
                self.list.setCurrentItem(item)
        self.list.blockSignals(False)
        self.undo_button.setEnabled(self.store.undo_stack.canUndo())
        self.redo_button.setEnabled(self.store.undo_stack.canRedo())
        current = self.store.current
        self.save_button.setEnabled(current is not None and not current.is_original)
        self.name_edit.setEnabled(current is not None and not current.is_original)
        if not self.name_edit.hasFocus():
            self.name_edit.setText(current.name if current is not None and not current.is_original else "")

    def _rename_current(self) -> None:
        current = self.store.current
        if current is not None and not current.is_original:
            if not self.store.rename(current.id, self.name_edit.text()):
                self.name_edit.setText(current.name)


def _score_text(variant) -> str | None:
    """"98.12%" for a test accuracy (the row's usual figure), else the fidelity's name and value."""
    score = variant_score(variant)
    if score is None:
        return None
    return score.figure() if score.name == "test accuracy" else score.text()
