"""The Sensitivity page, driven as a user drives it on LeNet-300-100 and MNIST: run a small grid, read the heat
map and the curves against the engine's own analysis, click cells into the recipe, cancel, come back."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import Qt

from core.analysis.curves import levels_at_drop
from core.analysis.perturb import rank_at
from core.analysis.sensitivity import sensitivity
from core.progress import run
from gui.models.layer_table import COLUMNS, SENSITIVITY
from gui.widgets.sensitivity_heatmap import metric_text
from tests.gui.conftest import wait_idle

LAYERS = ["fc1", "fc2", "fc3"]
LIMIT = 300


def open_page(window):
    window.tabs.setCurrentWidget(window.sensitivity)
    return window.sensitivity


def run_on_page(qtbot, window, method: str, levels: str, limit: int = LIMIT):
    """Choose the controls and press Run, as a user does; wait for the result."""
    page = open_page(window)
    page.set_method(method)
    page.levels.setText(levels)
    page.limit.setValue(limit)
    qtbot.mouseClick(page.run_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: page.asked is None, timeout=180_000)
    wait_idle(qtbot, window)
    assert page.shown is not None, page.status.text()
    return page


def click_cell(qtbot, page, layer: str, level: float) -> None:
    heatmap = page.heatmap
    rect = heatmap.visualItemRect(heatmap.cell_of(layer, level))
    qtbot.mouseClick(heatmap.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())


def layer_cell(window, layer: str, column: int):
    return window.table_model.index(window.table_model.row_of(layer), column)


def test_prune_grid_shows_the_engines_figures_and_a_click_sets_the_layers_sparsity(qtbot, window):
    s = window.session
    assert layer_cell(window, "fc1", SENSITIVITY).data() == "—"  # before any run
    assert window.table.isColumnHidden(SENSITIVITY)
    page = run_on_page(qtbot, window, "prune", "0.5, 0.9")
    expected = run(sensitivity(s.loaded, s.data, "prune", (0.5, 0.9), limit=LIMIT))
    result = page.shown[1]
    assert result.count == LIMIT and result.baseline == expected.baseline
    assert [(p.layer, p.level, p.metric, p.bytes) for p in result.points] == \
           [(p.layer, p.level, p.metric, p.bytes) for p in expected.points]

    heatmap = page.heatmap
    assert (heatmap.rowCount(), heatmap.columnCount()) == (3, 2)
    assert [heatmap.verticalHeaderItem(r).text() for r in range(3)] == LAYERS
    assert [heatmap.horizontalHeaderItem(c).text() for c in range(2)] == ["0.5", "0.9"]
    for p in expected.points:
        assert heatmap.cell_of(p.layer, p.level).text() == metric_text(expected, p.metric) == f"{100 * p.metric:.2f}"
    worst = min(expected.points, key=lambda p: p.metric)  # red-er than the least-hurt cell
    best = max(expected.points, key=lambda p: p.metric)
    assert heatmap.cell_of(worst.layer, worst.level).background().color().red() > \
           heatmap.cell_of(best.layer, best.level).background().color().red()

    x, y = page.curves.line_data("fc1")  # the line starts at sparsity 0, the unperturbed model
    np.testing.assert_allclose(x, [0.0, 0.5, 0.9])
    np.testing.assert_allclose(y, [100 * expected.baseline["metric"]] + [100 * p.metric for p in expected.curve("fc1")])
    assert page.curves.baseline.value() == pytest.approx(100 * expected.baseline["metric"])

    drops = levels_at_drop(expected)  # the layer table's column, by the core rule
    assert not window.table.isColumnHidden(SENSITIVITY)
    for layer in LAYERS:
        assert layer_cell(window, layer, SENSITIVITY).data() == drops[layer].label
    assert "Sensitivity" not in window.layers.visible_columns()  # shown by itself, not the user's choice

    draft, override = s.draft, COLUMNS.index("Override")
    assert draft.sparsity_of("fc2") == pytest.approx(0.8) and draft.layer_sparsity == {}
    click_cell(qtbot, page, "fc2", 0.9)
    assert draft.layer_sparsity == {"fc2": 0.9} and draft.sparsity_of("fc2") == pytest.approx(0.9)
    assert draft.sparsity_of("fc1") == pytest.approx(0.8)  # the other layers keep the all-layers value
    assert window.current_layer() == "fc2"  # selected, so the Compress panel's "This layer" is fc2
    pruning = window.recipe_panel.section("PruningSection")
    assert pruning.layer_sparsity_label.text() == "fc2" and pruning.layer_sparsity.value() == pytest.approx(0.9)
    assert layer_cell(window, "fc2", override).data() == "90% pruned"
    assert page.status.text() == "fc2: sparsity 90% in the recipe (was sparsity 80%)"


def test_a_cancelled_run_leaves_the_page_as_it_was_and_a_known_result_is_not_measured_again(qtbot, window):
    s = window.session
    page = run_on_page(qtbot, window, "prune", "0.5, 0.9")
    shown, column = page.shown, [layer_cell(window, n, SENSITIVITY).data() for n in LAYERS]
    recipe = s.draft.to_recipe()
    started = []
    s.runner.sig_started.connect(started.append)
    s.runner.sig_started.connect(lambda title: title.startswith("Sensitivity") and page.cancel_button.click())
    page.levels.setText("0.3, 0.7")
    qtbot.mouseClick(page.run_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: page.asked is None, timeout=60_000)
    wait_idle(qtbot, window)
    assert started == ["Sensitivity: prune at 2 levels"]  # it did start, and was cancelled
    assert page.status.text().startswith("Cancelled")
    assert page.shown is shown and page.heatmap.horizontalHeaderItem(0).text() == "0.5"
    assert [layer_cell(window, n, SENSITIVITY).data() for n in LAYERS] == column
    assert len(s.sensitivity.results) == 1 and s.draft.to_recipe() == recipe
    assert page.run_button.isEnabled() and not page.cancel_button.isVisible()

    window.tabs.setCurrentWidget(window.layers)  # away and back: the page still shows its result
    open_page(window)
    assert page.shown is shown
    s.runner.sig_started.disconnect()
    started.clear()
    s.runner.sig_started.connect(started.append)
    page.levels.setText("0.5, 0.9")  # asked again: shown from what the session keeps, nothing runs
    qtbot.mouseClick(page.run_button, Qt.MouseButton.LeftButton)
    assert started == [] and not s.runner.busy and page.shown[1] is shown[1]


def test_another_model_forgets_the_results(qtbot, window):
    s = window.session
    page = run_on_page(qtbot, window, "prune", "0.9")
    s.use_dataset("mnist")  # the model is opened again: a new model for the studio
    qtbot.waitUntil(lambda: page.shown is None, timeout=60_000)
    wait_idle(qtbot, window)
    assert s.sensitivity.results == {} and page.heatmap.rowCount() == 0
    assert layer_cell(window, "fc1", SENSITIVITY).data() == "—" and window.table.isColumnHidden(SENSITIVITY)


def test_quantize_and_low_rank_cells_set_bits_and_ranks_and_a_skipped_cell_changes_nothing(qtbot, window):
    s = window.session
    draft = s.draft
    page = run_on_page(qtbot, window, "quantize", "4, 2")
    assert (page.heatmap.rowCount(), page.heatmap.columnCount()) == (3, 2)
    assert page.curves.plot.getPlotItem().getViewBox().state["xInverted"]  # fewer bits to the right
    click_cell(qtbot, page, "fc1", 2.0)
    assert draft.bits_of("fc1") == 2 and draft.bits_of("fc2") == draft.bits == 6
    assert page.status.text() == "fc1: 2 bits in the recipe (was 6 bits)"

    page = run_on_page(qtbot, window, "low_rank", "0.1, 1")
    full = page.heatmap.cell_of("fc1", 1.0)  # full rank is at or above break-even: skipped, not "robust"
    assert full.text() == "skipped" and "break-even" in full.toolTip()
    recipe = draft.to_recipe()
    click_cell(qtbot, page, "fc1", 1.0)
    assert draft.to_recipe() == recipe and "not measured" in page.status.text()
    click_cell(qtbot, page, "fc3", 0.1)
    rank = rank_at(s.loaded.module.get_submodule("fc3"), 0.1)
    assert rank == 1 and draft.layer_value("low_rank", "fc3") == rank and draft.selects("low_rank", "fc3")
    assert not draft.selects("low_rank", "fc1")  # only the clicked layer is factorised
    assert page.status.text() == "fc3: rank 1 in the recipe (was not factorised)"


def test_a_target_fills_the_recipe_by_allocation_and_apply_measures_the_real_file(qtbot, window):
    from core.analysis.allocate import allocate
    from gui.allocation_runs import base_recipe
    from tests.gui.test_compress_studio import apply_and_wait, quick_draft

    s = window.session
    quick_draft(window)  # magnitude pruning and k-means, no fine-tuning: the prediction is the file
    before = s.draft.to_recipe()
    page = open_page(window)
    page.limit.setValue(LIMIT)
    target = page.target
    target.kind.setCurrentIndex(target.kind.findData("ratio"))
    target.value.setValue(30)
    qtbot.mouseClick(target.allocate_button, Qt.MouseButton.LeftButton)
    assert target.cancel_button.isVisibleTo(page) and not target.allocate_button.isEnabled()
    qtbot.waitUntil(lambda: not s.sensitivity.allocation.running, timeout=180_000)
    wait_idle(qtbot, window)
    allocation = s.sensitivity.allocation.latest
    assert allocation is not None, target.estimate.text()
    original = s.variants.original.size_bytes
    expected = run(allocate(s.loaded, s.data, base_recipe(before, s.loaded.module),
                            budget_bytes=int(original / 30), limit=LIMIT))
    assert allocation.choice == expected.choice and allocation.predicted_bytes == expected.predicted_bytes
    for layer, option in allocation.choice.items():  # the draft holds the chosen settings
        assert s.draft.sparsity_of(layer) == pytest.approx(option.value("sparsity"))
        assert s.draft.bits_of(layer) == option.value("bits")
    assert f"In the recipe: {allocation.predicted_bytes:,} bytes" in target.estimate.text()
    assert "measured alone" in target.estimate.toolTip()
    assert allocation.predicted_bytes <= original / 30
    variant = apply_and_wait(qtbot, window)
    assert variant.size_bytes == allocation.predicted_bytes  # no training: the estimate was the file's price


def test_a_cancelled_allocation_leaves_the_recipe_as_it_was(qtbot, window):
    s = window.session
    before = s.draft.to_recipe()
    page = open_page(window)
    page.limit.setValue(LIMIT)
    qtbot.mouseClick(page.target.allocate_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: s.runner.busy, timeout=30_000)
    qtbot.mouseClick(page.target.cancel_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not s.sensitivity.allocation.running, timeout=60_000)
    wait_idle(qtbot, window)
    assert s.draft.to_recipe() == before and s.sensitivity.allocation.latest is None
    assert "Cancelled" in page.target.estimate.text() and page.target.allocate_button.isEnabled()
