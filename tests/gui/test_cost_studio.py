"""MACs in the studio: the layer table's column, the cards, the compare view, and the trade-off plot's
x axis (bytes, parameters, MACs, latency) with a marker per family and the choice remembered."""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
import pytest

from core.analysis.cost import Cost, count_macs
from core.recipe import Recipe
from gui.models.layer_table import MACS
from gui.widgets.tradeoff_plot import SETTINGS_KEY, symbol_of


def test_the_layer_table_and_the_cards_show_each_layers_macs(window):
    model = window.table_model
    m = window.session.measurements
    expected = count_macs(window.session.loaded.module, torch.zeros(1, 1, 28, 28))  # the engine's
    assert m.cost is not None and m.cost.per_layer == expected.per_layer
    for name in ("fc1", "fc2", "fc3"):
        row = model.row_of(name)
        cell = model.index(row, MACS)
        assert cell.data() == f"{expected.per_layer[name]:,}"
        assert "with its non-zero weights" in model.data(cell, 3)  # the tooltip role
    layer = model.layer_name(0)
    assert window.layers.visible_columns().count("MACs") == 1
    assert window.metrics.cards["macs"].value.text() == "266 k" and layer
    window.proxy.sort(MACS)  # sorts by the number, not its text
    column = [window.proxy.index(r, MACS).data() for r in range(window.proxy.rowCount())]
    assert column == sorted(column, key=lambda t: int(t.replace(",", "")))


def variants_for_axes(original):
    """The original and three made-up variants, each with its own size, parameters, MACs and latency."""
    prune = Recipe.from_text("steps: [{kind: prune_magnitude, sparsity: 0.5}]")
    quantize = Recipe.from_text("steps: [{kind: quantize, bits: 4}]")
    out = [original]
    for i, (recipe, share, macs, ms) in enumerate([(prune, 0.5, 200_000, 3.0), (quantize, 0.2, 100_000, None),
                                                   (prune, 0.1, 50_000, 9.0)], start=1):
        latency = None if ms is None else dataclasses.replace(original.latency, median_ms=ms)
        out.append(dataclasses.replace(original, id=i, name=f"#{i}", recipe=recipe, accuracy=0.9 - 0.01 * i,
                                       size_bytes=int(original.size_bytes * share), latency=latency,
                                       cost=Cost(macs, {}, macs // 2, {})))
    return out


def x_of_points(plot) -> dict[int, float]:
    return {int(p.data()): float(p.pos().x()) for p in plot.points.points()}


def test_the_x_axis_switch_moves_the_points_markers_name_families_and_compare_counts(window, settings):
    plot = window.tradeoff
    variants = variants_for_axes(window.session.variants.original)
    plot.show_variants(variants, 1)
    assert x_of_points(plot) == pytest.approx({v.id: np.log10(v.size_bytes) for v in variants})
    plot.set_x_axis("macs")
    assert x_of_points(plot) == pytest.approx({v.id: np.log10(v.cost.total) for v in variants})
    assert plot.plot.getAxis("bottom").labelText.startswith("multiply-accumulates")
    plot.set_x_axis("effective_macs")
    assert x_of_points(plot)[3] == pytest.approx(np.log10(25_000))
    plot.set_x_axis("params")
    assert x_of_points(plot) == pytest.approx({v.id: np.log10(v.nonzero_params) for v in variants})
    plot.set_x_axis("latency")
    shown = x_of_points(plot)
    assert set(shown) == {0, 1, 3}  # #2 has no latency measurement
    assert shown[3] == pytest.approx(np.log10(9.0)) and shown[0] == pytest.approx(np.log10(variants[0].latency.median_ms))
    assert "1 variant without a latency measurement is left out" in plot.caption.text()
    assert settings.value(SETTINGS_KEY) == "latency"
    assert plot.plot.property("exportName") == "Accuracy against latency"

    # markers: each variant's family, named in the legend
    plot.set_x_axis("bytes")
    symbols = {int(p.data()): p.symbol() for p in plot.points.points()}
    assert symbols == {0: symbol_of("original"), 1: symbol_of("pruning"), 2: symbol_of("quantization"),
                       3: symbol_of("pruning")}
    assert len(set(symbols.values())) == 3
    assert plot.families_shown() == ["original", "pruning", "quantization"]

    # the compare view: MACs of both variants, and per layer
    window.compare.set_variants(variants[:2], 1)
    assert "<b>MACs</b> 266 k → 200 k" in window.compare.summary.text()
    cells = [window.compare.table.item(r, 6).text() for r in range(window.compare.table.rowCount())]
    assert any(c for c in cells)  # the weight tensors' layers: their MACs (the made-up variant has none per layer)


def test_the_axis_chosen_is_remembered_by_the_next_window(qtbot, qapp, settings):
    from gui.app import create_window
    from tests.gui.conftest import stop_tasks, wait_idle

    settings.setValue(SETTINGS_KEY, "macs")
    w = create_window("zoo:lenet300", settings=settings)
    qtbot.addWidget(w, before_close_func=lambda _: stop_tasks(qtbot, w))
    wait_idle(qtbot, w)
    assert w.tradeoff.x_key == "macs" and w.tradeoff.x_choice.currentText() == "MACs"
    assert w.demo.tradeoff.x_key == "bytes"  # the report's plot stays accuracy against size


@pytest.mark.parametrize("edit", [lambda d: d.set_layer_bits("fc1", 4), lambda d: d.set(quant_method="uniform")])
def test_the_draft_drops_the_global_scope_where_one_codebook_cannot_do(qapp, edit):
    from gui.recipe_draft import RecipeDraft

    draft = RecipeDraft()
    draft.load_recipe(Recipe.from_text("steps: [{kind: quantize, bits: 5, scope: global}, {kind: encode}]"))
    assert draft.to_recipe().steps[0].scope == "global"
    edit(draft)
    step = draft.to_recipe().steps[0]
    assert step.scope == "layer" and step.validate("steps[0]") is None
