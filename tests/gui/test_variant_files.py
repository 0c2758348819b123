"""The studio keeps each variant's compressed file on disk, not in memory, and removes it with the variant."""

from __future__ import annotations

from pathlib import Path

from tests.gui.conftest import wait_idle
from tests.gui.test_compress_studio import apply_and_wait, quick_draft


def test_a_variants_file_lives_on_disk_until_its_history_is_gone(qtbot, window, tmp_path):
    quick_draft(window)
    variant = apply_and_wait(qtbot, window)
    store = window.session.variants
    path = store.files[variant.id]
    assert isinstance(path, Path) and path.stat().st_size == variant.size_bytes
    assert not any(isinstance(v, (bytes, bytearray)) for v in vars(store).values())
    window.undo_action.trigger()
    wait_idle(qtbot, window)
    assert path.exists()  # redo needs it
    window.redo_action.trigger()
    wait_idle(qtbot, window)
    saved = window.session.save_variant(variant.id, tmp_path)
    assert saved.read_bytes() == path.read_bytes()
    store.clear()
    assert not path.exists()
