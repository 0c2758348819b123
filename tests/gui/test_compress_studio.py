"""Compressing in the studio: drag the threshold, apply, see the variant on the trade-off plot, undo, save."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from PySide6.QtCore import Qt

from core.recipe import Recipe
from tests.gui.conftest import wait_idle


def quick_draft(window, **extra):
    window.session.draft.set(**{**dict(prune_method="magnitude", scope="layer", sparsity=0.8, quant_method="kmeans",
                                       bits=4, finetune_epochs=0, huffman=True), **extra})


def apply_and_wait(qtbot, window):
    store = window.session.variants
    before = len(store.variants)
    assert window.session.apply()
    qtbot.waitUntil(lambda: len(store.variants) == before + 1 and not window.session.runner.busy, timeout=180_000)
    return store.current


def test_dragging_the_threshold_sets_the_layers_sparsity(window):
    quick_draft(window)
    stats = window.session.measurements.weights["fc1"]
    line = window.histogram.threshold_line
    assert line.isVisible()
    assert line.value() == pytest.approx(stats.threshold_for(0.8), rel=1e-6)  # the draft's plan, drawn
    line.setValue(stats.threshold_for(0.95))
    line.sigDragged.emit(line)
    assert window.session.draft.layer_sparsity["fc1"] == pytest.approx(0.95, abs=1e-3)
    assert "fc1: keeps 5.0%" in window.recipe_panel.preview_label.text()


def test_apply_adds_a_variant_to_the_tradeoff_plot_and_undo_removes_it(qtbot, window):
    quick_draft(window)
    variant = apply_and_wait(qtbot, window)
    store = window.session.variants
    assert not variant.is_original and variant.size_bytes < store.original.size_bytes / 10
    assert variant.accuracy > 0.9 and len(variant.codebooks["fc1"]) == 16
    window.tabs.setCurrentWidget(window.tradeoff)  # pages off screen are redrawn when shown
    assert len(window.tradeoff.variants) == 2 and variant.id in [v.id for v in window.tradeoff.variants]
    qtbot.waitUntil(lambda: window.session.measurements.weights.get("fc1") is not None, timeout=60_000)
    assert window.session.loaded.format == "variant"
    assert window.table_model.data(window.table_model.index(0, 5)) == f"{0.8 * 235_200 / 235_500:.1%}"  # measured
    qtbot.waitUntil(lambda: window.table_model.data(window.table_model.index(0, 10)).startswith("pruned · shared"),
                    timeout=60_000)
    assert window.table_model.data(window.table_model.index(0, 9)) == "4"  # 16 levels: 4-bit indices
    assert len(window.histogram.level_lines) > 0 and window.histogram.overlay.getData()[0] is not None
    window.undo_action.trigger()
    assert [v.id for v in store.variants] == [0] and store.current_id == 0
    wait_idle(qtbot, window)
    assert window.session.loaded.format == "zoo"
    window.redo_action.trigger()
    assert store.current_id == variant.id and len(window.tradeoff.variants) == 2
    wait_idle(qtbot, window)


def test_clicking_a_point_makes_its_variant_current(qtbot, window):
    quick_draft(window)
    variant = apply_and_wait(qtbot, window)
    window.tradeoff.sig_variant_clicked.emit(0)
    assert window.session.variants.current_id == 0
    wait_idle(qtbot, window)
    window.tradeoff.sig_variant_clicked.emit(variant.id)
    assert window.session.variants.current_id == variant.id
    wait_idle(qtbot, window)


def test_save_variant_and_close_asks_about_unsaved(qtbot, window, tmp_path):
    quick_draft(window)
    variant = apply_and_wait(qtbot, window)
    asked = []
    window.confirm_close = lambda unsaved: asked.append([v.id for v in unsaved]) or False
    window.close()
    assert asked == [[variant.id]] and window.isVisible()  # refused: still open
    path = window.save_variant_dialog(variant.id, str(tmp_path))
    assert path.stat().st_size == variant.size_bytes
    report = json.loads((tmp_path / f"{path.stem}.report.json").read_text())
    assert report["compressed_bytes"] == variant.size_bytes and report["recipe"]["name"] == "studio"
    from core.io import load_model

    reloaded = load_model(path)
    x = torch.rand(3, 1, 28, 28)
    with torch.inference_mode():
        torch.testing.assert_close(reloaded.module(x), window.session.variants.models[variant.id].module(x))
    assert window.session.variants.unsaved() == []


def test_recipes_save_and_load_as_the_cli_yaml(window, tmp_path):
    quick_draft(window, scope="global", sparsity=0.9)
    path = window.save_recipe_dialog(str(tmp_path / "r.yaml"))
    recipe = Recipe.from_text((tmp_path / "r.yaml").read_text())
    assert path and recipe == window.session.draft.to_recipe()
    window.session.draft.set(prune_method="none", quant_method="none")
    window.load_recipe_dialog(path)
    assert window.session.draft.prune_method == "magnitude" and window.session.draft.scope == "global"
    (tmp_path / "bad.yaml").write_text("steps: [{kind: quantize, bits: 11}]")
    window.load_recipe_dialog(str(tmp_path / "bad.yaml"))
    assert "steps[0].bits" in window.dialog.text()


def test_a_recipe_that_does_not_fit_changes_nothing(qtbot, window):
    store = window.session.variants
    recipe = Recipe.from_text("steps: [{kind: prune_magnitude, layers: [conv1]}]")
    assert not window.session.apply(recipe)
    assert "matches no layer" in window.dialog.text() and len(store.variants) == 1


def test_compare_view_shows_the_diff_classes_and_changed_images(qtbot, window):
    quick_draft(window, sparsity=0.97, bits=2)  # harsh: some test images must change
    variant = apply_and_wait(qtbot, window)
    compare = window.compare
    window.tabs.setCurrentWidget(compare)
    a, b = compare.pair()
    assert a.is_original and b.id == variant.id
    assert compare.table.rowCount() == 6 and compare.table.item(0, 0).text() == "fc1.weight"
    assert "→" in compare.table.item(0, 2).text()
    assert "x)" in compare.summary.text() and "points" in compare.summary.text()
    now_wrong = int(((a.predictions == a.labels) & (b.predictions != b.labels)).sum())
    assert now_wrong > 0 and compare.shown_images() == min(now_wrong, 24)
    assert f"B now gets {now_wrong} test images wrong" in compare.changed_title.text()


def test_demo_headline_and_html_report(qtbot, window, tmp_path):
    quick_draft(window)
    variant = apply_and_wait(qtbot, window)
    original = window.session.variants.original
    ratio = original.size_bytes / variant.size_bytes
    window.tabs.setCurrentWidget(window.demo)
    assert f"{ratio:.0f}x smaller" in window.demo.headline.text()
    assert window.demo.cards["ratio"][0].text() == f"{ratio:.0f}x"
    path = window.export_report_dialog(str(tmp_path / "report.html"))
    text = (tmp_path / "report.html").read_text()
    assert path and f"{ratio:.0f}x smaller" in text and text.count("data:image/png;base64,") == 3
    assert "fc1.weight" in text and "kind: prune_magnitude" in text


def click_scene_point(qtbot, plot_widget, scene_point):
    view_point = plot_widget.mapFromScene(scene_point)
    qtbot.mouseClick(plot_widget.viewport(), Qt.MouseButton.LeftButton, pos=view_point)


def test_clicking_units_and_pressing_delete_removes_exactly_them(qtbot, window):
    view = window.activations
    window.select_layer("fc2")
    qtbot.waitUntil(lambda: view._stats is not None and view._stats.name == "fc2", timeout=60_000)
    rates = view._stats.nonzero_fraction.copy()
    weakest = [int(u) for u in np.argsort(rates, kind="stable")[:2]]
    for unit in weakest:  # a real mouse click on each unit's bar
        click_scene_point(qtbot, view.plot, view.scene_point_of_unit(unit))
    assert view.selected == set(weakest) and "2 selected" in view.summary.text()
    before = {k: v.clone() for k, v in window.session.loaded.module.state_dict().items()}
    view.plot.setFocus()
    store = window.session.variants
    qtbot.keyClick(view.plot, Qt.Key.Key_Delete)
    assert view.selected == set()  # handed over: a second Delete does not queue the same removal again
    qtbot.waitUntil(lambda: len(store.variants) == 2 and not window.session.runner.busy, timeout=120_000)
    model = window.session.loaded.module
    assert model.fc2.out_features == 98 and model.fc3.in_features == 98  # the next layer's inputs follow
    kept = [u for u in range(100) if u not in weakest]
    assert torch.equal(model.fc2.weight, before["fc2.weight"][kept])
    assert torch.equal(model.fc3.weight, before["fc3.weight"][:, kept])
    assert store.current.name.startswith("#1 remove 2 units of fc2")
    assert all(torch.equal(before[k], v) for k, v in store.models[0].module.state_dict().items())  # original kept
    wait_idle(qtbot, window)


def test_heatmap_shows_every_unit_and_selects_on_click(qtbot, window):
    view = window.activations
    window.select_layer("fc1")
    qtbot.waitUntil(lambda: view._stats is not None and view._stats.name == "fc1", timeout=60_000)
    view.view_box.setCurrentText("heatmap")
    image = view.heatmap_image.image
    assert image.shape == (17, 18, 4)  # 300 neurons in a near-square grid, 17 rows of 18; 6 cells empty
    assert (image.reshape(-1, 4)[:300, 3] == 255).all() and (image.reshape(-1, 4)[300:, 3] == 0).all()
    click_scene_point(qtbot, view.heatmap, view.scene_point_of_unit(40))
    assert view.selected == {40}
    assert (view.heatmap_image.image[2, 4, :3] == 255).all()  # unit 40 = row 2, column 4, drawn white
    assert view.shown_plot() is view.heatmap  # File > Export takes the view on screen


def test_heatmap_exports_as_png(window, tmp_path):
    view = window.activations
    view.view_box.setCurrentText("heatmap")
    path = window.export_plot(view.shown_plot(), str(tmp_path / "heatmap.png"))
    assert (tmp_path / "heatmap.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.endswith(".png")


def test_output_layer_units_cannot_be_removed(qtbot, window):
    view = window.activations
    window.select_layer("fc3")
    qtbot.waitUntil(lambda: view._stats is not None and view._stats.name == "fc3", timeout=60_000)
    view.toggle_unit(3)
    assert not view.remove_button.isEnabled() and "stay" in view.summary.text()
    with qtbot.assertNotEmitted(view.sig_remove_units):
        view.remove_selected()


def test_cancelling_a_compression_leaves_the_model_and_variants_as_they_were(qtbot, window):
    s = window.session
    quick_draft(window, finetune_epochs=3)
    before = {k: v.clone() for k, v in s.loaded.module.state_dict().items()}

    def cancel_once_training(progress):
        if progress.stage == "train" and progress.done > 10:  # mid-epoch, inside the fine-tune
            window.task_bar.cancel_button.click()

    s.runner.sig_progress.connect(cancel_once_training)
    with qtbot.waitSignal(s.runner.sig_cancelled, timeout=120_000):
        assert s.apply()
    s.runner.sig_progress.disconnect(cancel_once_training)
    wait_idle(qtbot, window)
    assert [v.id for v in s.variants.variants] == [0] and s.loaded.format == "zoo"
    after = s.loaded.module.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert s.loaded.module.training is False and torch.is_grad_enabled()


def test_units_of_a_quantized_variant_are_not_removed(qtbot, window):
    quick_draft(window)
    apply_and_wait(qtbot, window)
    store = window.session.variants
    assert not window.session.remove_units("fc1", [0, 1])
    assert "quantized" in window.dialog.text() and len(store.variants) == 2
