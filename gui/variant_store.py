"""The variants of the current model: the original and each compressed version, with undo and redo.

Applying a recipe is expensive, so an undo command holds the finished variant: undo removes it (making the
previous one current), redo puts it back without recomputing. The decoded models stay here, in the
studio's process, for making a variant current; widgets only ever see the plain :class:`Variant` data.
"""

from __future__ import annotations

from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QUndoCommand, QUndoStack

from core.io import LoadedModel
from core.pipeline.variants import Variant


class VariantStore(QObject):
    sig_changed = Signal()
    """Variants were added or removed."""
    sig_current_changed = Signal(int)
    """This variant id is now the current one."""

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.undo_stack = QUndoStack(self)
        self.variants: list[Variant] = []
        self.models: dict[int, LoadedModel] = {}
        self.files: dict[int, bytes] = {}  # compressed file contents, for saving
        self.reports: dict[int, dict] = {}
        self.saved: set[int] = set()
        self.current_id: int | None = None
        self._next_id = 1

    def reset(self, original: Variant, model: LoadedModel) -> None:
        """Start over with a new original (a newly opened model); history is cleared."""
        self.undo_stack.clear()
        self.variants = [original]
        self.models = {original.id: model}
        self.files, self.reports, self.saved = {}, {}, set()
        self.current_id = original.id
        self._next_id = original.id + 1
        self.sig_changed.emit()
        self.sig_current_changed.emit(original.id)

    def clear(self) -> None:
        self.undo_stack.clear()
        self.variants, self.models, self.files, self.reports, self.saved = [], {}, {}, {}, set()
        self.current_id = None
        self.sig_changed.emit()

    def next_id(self) -> int:
        return self._next_id

    def add(self, variant: Variant, model: LoadedModel, file_bytes: bytes, report: dict) -> None:
        """Add a finished variant as an undoable step, and make it current."""
        self._next_id = max(self._next_id, variant.id + 1)
        self.undo_stack.push(_AddVariant(self, variant, model, file_bytes, report))

    def get(self, variant_id: int) -> Variant:
        for v in self.variants:
            if v.id == variant_id:
                return v
        raise KeyError(variant_id)

    @property
    def original(self) -> Variant | None:
        return self.variants[0] if self.variants else None

    @property
    def current(self) -> Variant | None:
        return self.get(self.current_id) if self.current_id is not None else None

    def set_current(self, variant_id: int) -> None:
        self.get(variant_id)
        if variant_id != self.current_id:
            self.current_id = variant_id
            self.sig_current_changed.emit(variant_id)

    def unsaved(self) -> list[Variant]:
        return [v for v in self.variants if not v.is_original and v.id not in self.saved]

    # ------------------------------------------------------------------------------------------ commands
    def _insert(self, variant: Variant, model: LoadedModel, file_bytes: bytes, report: dict) -> None:
        self.variants.append(variant)
        self.models[variant.id], self.files[variant.id], self.reports[variant.id] = model, file_bytes, report
        self.sig_changed.emit()
        self.set_current(variant.id)

    def _remove(self, variant_id: int, fallback: int) -> None:
        self.variants = [v for v in self.variants if v.id != variant_id]
        for table in (self.models, self.files, self.reports):
            table.pop(variant_id, None)
        self.saved.discard(variant_id)
        was_current = self.current_id == variant_id
        if was_current:  # choose the new current before anyone hears of the change
            self.current_id = fallback if any(v.id == fallback for v in self.variants) else self.variants[0].id
        self.sig_changed.emit()
        if was_current:
            self.sig_current_changed.emit(self.current_id)


class _AddVariant(QUndoCommand):
    def __init__(self, store: VariantStore, variant: Variant, model: LoadedModel, file_bytes: bytes,
                 report: dict) -> None:
        super().__init__(f"Apply {variant.name}")
        self.store, self.variant, self.model, self.file_bytes, self.report = store, variant, model, file_bytes, report
        self.previous = store.current_id

    def redo(self) -> None:
        self.store._insert(self.variant, self.model, self.file_bytes, self.report)

    def undo(self) -> None:
        self.store._remove(self.variant.id, self.previous)
