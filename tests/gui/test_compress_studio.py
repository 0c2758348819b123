"""Compressing in the studio: drag the threshold, apply, see the variant on the trade-off plot, undo, save."""

from __future__ import annotations

import json

import pytest
import torch

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
    assert len(window.tradeoff.variants) == 2 and variant.id in [v.id for v in window.tradeoff.variants]
    qtbot.waitUntil(lambda: window.session.measurements.weights.get("fc1") is not None, timeout=60_000)
    assert window.session.loaded.format == "variant"
    assert window.table_model.data(window.table_model.index(0, 5)) == f"{0.8 * 235_200 / 235_500:.1%}"  # measured
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
    from core.model_io import load_model

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
    assert f"{ratio:.0f}x smaller" in window.demo.headline.text()
    assert window.demo.cards["ratio"][0].text() == f"{ratio:.0f}x"
    path = window.export_report_dialog(str(tmp_path / "report.html"))
    text = (tmp_path / "report.html").read_text()
    assert path and f"{ratio:.0f}x smaller" in text and text.count("data:image/png;base64,") == 3
    assert "fc1.weight" in text and "kind: prune_magnitude" in text
