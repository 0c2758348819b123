"""The variants of the current model: the original and each compressed version, with undo and redo.

Applying a recipe is expensive, so an undo command holds the finished variant: undo removes it (making the
previous one current), redo puts it back without recomputing. The decoded models stay here, in the
studio's process, for making a variant current; widgets only ever see the plain :class:`Variant` data.
Each variant's compressed file is kept on disk, in a folder of the store's own that is removed with it,
not in memory: saving a variant copies its file.
"""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
import weakref
from pathlib import Path

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
        self._folder = Path(tempfile.mkdtemp(prefix="prunescope-variants-"))
        weakref.finalize(self, shutil.rmtree, self._folder, ignore_errors=True)  # when the store goes, or at exit
        self.files: dict[int, Path] = {}  # each variant's compressed file, on disk
        self.reports: dict[int, dict] = {}
        self.saved: set[int] = set()
        self.current_id: int | None = None
        self._next_id = 1

    def reset(self, original: Variant, model: LoadedModel) -> None:
        """Start over with a new original (a newly opened model); history is cleared."""
        self.undo_stack.clear()
        self.variants = [original]
        self.models = {original.id: model}
        self._drop_files()
        self.reports, self.saved = {}, set()
        self.current_id = original.id
        self._next_id = original.id + 1
        self.sig_changed.emit()
        self.sig_current_changed.emit(original.id)

    def clear(self) -> None:
        self.undo_stack.clear()
        self._drop_files()
        self.variants, self.models, self.reports, self.saved = [], {}, {}, set()
        self.current_id = None
        self.sig_changed.emit()

    def next_id(self) -> int:
        return self._next_id

    def add(self, variant: Variant, model: LoadedModel, file_bytes: bytes, report: dict) -> None:
        """Add a finished variant as an undoable step, and make it current; its file goes to disk."""
        self._next_id = max(self._next_id, variant.id + 1)
        path = self._folder / f"variant-{variant.id}.psz"
        path.write_bytes(file_bytes)
        self.undo_stack.push(_AddVariant(self, variant, model, path, report))

    def _drop_files(self) -> None:
        """Delete every variant's file, those only an undone command still named too (the history is
        cleared with them)."""
        for path in self._folder.glob("variant-*.psz"):
            path.unlink(missing_ok=True)
        self.files = {}

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

    def rename(self, variant_id: int, name: str) -> bool:
        """Give a variant another name (undoable); an empty name, or the same one, changes nothing."""
        name = " ".join(name.split())
        if not name or name == self.get(variant_id).name:
            return False
        self.undo_stack.push(_RenameVariant(self, variant_id, name))
        return True

    def _set_name(self, variant_id: int, name: str) -> None:
        self.variants = [dataclasses.replace(v, name=name) if v.id == variant_id else v for v in self.variants]
        report = self.reports.get(variant_id)
        if report is not None and isinstance(report.get("variant"), dict):
            report["variant"]["name"] = name
        self.sig_changed.emit()

    def unsaved(self) -> list[Variant]:
        return [v for v in self.variants if not v.is_original and v.id not in self.saved]

    # ------------------------------------------------------------------------------------------ commands
    def _insert(self, variant: Variant, model: LoadedModel, path: Path, report: dict) -> None:
        self.variants.append(variant)
        self.models[variant.id], self.files[variant.id], self.reports[variant.id] = model, path, report
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


class _RenameVariant(QUndoCommand):
    def __init__(self, store: VariantStore, variant_id: int, name: str) -> None:
        super().__init__(f"Rename #{variant_id}")
        self.store, self.variant_id, self.name = store, variant_id, name
        self.previous = store.get(variant_id).name

    def redo(self) -> None:
        self.store._set_name(self.variant_id, self.name)

    def undo(self) -> None:
        self.store._set_name(self.variant_id, self.previous)


class _AddVariant(QUndoCommand):
    def __init__(self, store: VariantStore, variant: Variant, model: LoadedModel, path: Path, report: dict) -> None:
        super().__init__(f"Apply {variant.name}")
        self.store, self.variant, self.model, self.path, self.report = store, variant, model, path, report
        self.previous = store.current_id

    def redo(self) -> None:
        self.store._insert(self.variant, self.model, self.path, self.report)

    def undo(self) -> None:
        self.store._remove(self.variant.id, self.previous)
