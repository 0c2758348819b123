"""Variants that mean what they say: Apply builds on a chosen base and says so, each variant shows its
parent and has a name saying what was done (and can be renamed), its recipe is the whole chain, per-layer
overrides are visible and can be cleared, and the selected layer survives Apply."""

from __future__ import annotations

import os

import yaml

from core.pipeline.apply import apply_recipe
from core.progress import run
from core.recipe import Recipe
from tests.gui.conftest import wait_idle


def draft(window, sparsity, bits):
    window.session.draft.set(prune_method="magnitude", scope="layer", sparsity=sparsity, quant_method="kmeans",
                             bits=bits, finetune_epochs=0, huffman=True)


def apply_and_wait(qtbot, window):
    store = window.session.variants
    before = len(store.variants)
    window.apply_action.trigger()
    qtbot.waitUntil(lambda: len(store.variants) == before + 1 and not window.session.runner.busy, timeout=180_000)
    wait_idle(qtbot, window)
    return store.current


def test_apply_builds_on_the_chosen_base_and_the_recipe_is_the_chain(qtbot, window, tmp_path):
    draft(window, 0.9, 5)
    assert window.recipe_panel.apply_button.text() == "Apply on the original"
    first = apply_and_wait(qtbot, window)
    assert first.name == "#1 90% · 5-bit k-means" and first.parent is None
    assert window.recipe_panel.apply_button.text() == "Apply on #1"
    draft(window, 0.97, 3)
    second = apply_and_wait(qtbot, window)
    assert second.parent == first.id and second.recipe.base == first.recipe
    assert "← #1" in window.variant_list.list.item(2).text()
    store = window.session.variants
    assert store.reports[second.id]["recipe"] == second.recipe.to_dict()  # report.json holds the chain
    # the chain reproduces the variant from the original, byte for byte
    again = run(apply_recipe(second.recipe, store.models[0], window.session.data, measure_before=False))
    saved = window.save_variant_dialog(second.id, str(tmp_path))
    assert again.file_bytes == saved.read_bytes()
    html = tmp_path / "report.html"
    window.export_report_dialog(str(html))
    text = html.read_text()
    assert "sparsity: 0.9" in text and "sparsity: 0.97" in text and "2 runs" in text
    # now on the original, whatever is current
    window.recipe_panel.base_choice.setCurrentIndex(window.recipe_panel.base_choice.findData("original"))
    assert window.recipe_panel.apply_button.text() == "Apply on the original"
    draft(window, 0.8, 6)
    third = apply_and_wait(qtbot, window)
    assert third.parent is None and third.recipe.base is None
    assert third.size_bytes > second.size_bytes  # 80% kept from the original's weights, not from #2's


def test_a_variant_of_a_pruned_variant_does_not_unprune(qtbot, window):
    draft(window, 0.97, 3)
    parent = apply_and_wait(qtbot, window)
    draft(window, 0.8, 3)
    child = apply_and_wait(qtbot, window)
    assert child.parent == parent.id
    kept = {r.name: r.kept for r in parent.layers}
    for row in child.layers:
        assert row.kept <= kept[row.name] + 1e-9, row.name
    assert child.size_bytes <= parent.size_bytes
    assert child.accuracy > parent.accuracy - 0.05  # the zeros were not clustered into kept weights


def test_renaming_a_variant_in_the_list(qtbot, window):
    draft(window, 0.9, 5)
    variant = apply_and_wait(qtbot, window)
    edit = window.variant_list.name_edit
    assert edit.text() == variant.name
    edit.setFocus()
    edit.selectAll()
    qtbot.keyClicks(edit, "for the slides")
    qtbot.keyClick(edit, "\r")
    renamed = window.session.variants.get(variant.id)
    assert renamed.name == "for the slides"
    assert window.variant_list.list.item(1).text().startswith("for the slides")
    assert window.session.variants.reports[variant.id]["variant"]["name"] == "for the slides"
    window.session.variants.undo_stack.undo()
    assert window.session.variants.get(variant.id).name == variant.name


def test_overrides_are_visible_and_cleared_and_the_selection_survives_apply(qtbot, window):
    from gui.models.layer_table import COLUMNS, MARK

    draft(window, 0.9, 5)
    window.select_layer("fc2")
    window.session.draft.set_layer_sparsity("fc2", 0.95)
    model = window.table_model
    row = model.row_of("fc2")
    column = COLUMNS.index("Override")
    assert model.data(model.index(row, 0)) == f"{MARK}fc2" and model.data(model.index(row, column)) == "95% pruned"
    assert model.data(model.index(model.row_of("fc1"), column)) == "—"
    assert not window.layers.table.isColumnHidden(column)
    apply_and_wait(qtbot, window)
    qtbot.waitUntil(lambda: window.session.measurements.weights.get("fc2") is not None, timeout=60_000)
    assert window.current_layer() == "fc2"  # not back to fc1, where × would reset the wrong layer
    window.clear_overrides_action.trigger()
    assert window.session.draft.layer_sparsity == {}
    assert model.data(model.index(row, 0)) == "fc2" and model.data(model.index(row, column)) == "—"
    assert window.layers.table.isColumnHidden(column)  # it showed by itself, and goes with the last override
    assert yaml.safe_dump(window.session.draft.to_recipe().to_dict()).count("overrides") == 0


def test_a_recipe_that_is_a_fifo_is_refused_and_the_draft_stays(window, tmp_path):
    import os

    fifo = tmp_path / "recipe.yaml"
    os.mkfifo(fifo)
    before = window.session.draft.to_recipe()
    window.load_recipe_dialog(str(fifo))  # would block forever reading it
    assert window.dialog.windowTitle() == "Cannot load the recipe" and "recipe.yaml" in window.dialog.text()
    assert window.session.draft.to_recipe() == before


def test_saving_a_variant_writes_its_file_and_report_together(qtbot, window, tmp_path, monkeypatch):
    import core.fileio

    draft(window, 0.9, 5)
    variant = apply_and_wait(qtbot, window)
    real_replace = os.replace

    def failing_second_rename(src, dst, calls=[]):
        calls.append(dst)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        return real_replace(src, dst)

    monkeypatch.setattr(core.fileio.os, "replace", failing_second_rename)
    folder = tmp_path / "out"
    folder.mkdir()
    assert window.save_variant_dialog(variant.id, str(folder)) is None  # says why, in a dialog
    assert "No space left" in window.dialog.text()
    assert sorted(p.name for p in folder.iterdir()) == []  # neither file, no temporaries
    monkeypatch.undo()
    saved = window.save_variant_dialog(variant.id, str(folder))
    assert saved.exists() and (folder / f"{saved.stem}.report.json").exists()


def test_removing_units_works_on_the_variant_shown_whatever_apply_builds_on(qtbot, window):
    window.session.draft.set(prune_method="structured", sparsity=0.5, quant_method="none", finetune_epochs=0)
    parent = apply_and_wait(qtbot, window)  # fc1 keeps 150 of its 300 units
    window.recipe_panel.base_choice.setCurrentIndex(window.recipe_panel.base_choice.findData("original"))
    assert window.session.remove_units("fc1", [0, 1])
    qtbot.waitUntil(lambda: len(window.session.variants.variants) == 3, timeout=120_000)
    wait_idle(qtbot, window)
    child = window.session.variants.current
    assert child.parent == parent.id and window.session.loaded.module.fc1.out_features == 148
