"""Sweeps in the studio: Compress > Sweep… runs a grid on local worker processes through the task runner, each
result lands in the trade-off plot as it finishes with the Pareto front drawn over it, and Cancel stops it."""

from __future__ import annotations

import multiprocessing

from PySide6.QtWidgets import QDialogButtonBox

from core.pipeline.apply import apply_recipe
from core.progress import run
from core.sweep import RESULT_KEY
from core.sweep.jobs import limited, summarise
from tests.gui.conftest import wait_idle

LIMIT = 300


def no_training(window):
    window.session.draft.set(prune_method="magnitude", scope="layer", sparsity=0.8, quant_method="kmeans", bits=5,
                             finetune_epochs=0, huffman=True)


def run_button(dialog):
    return dialog.buttons.button(QDialogButtonBox.StandardButton.Ok)


def test_a_sweep_from_the_dialog_streams_its_points_into_the_tradeoff_plot(qtbot, window):
    no_training(window)
    window.sweep_action.trigger()
    dialog = window.sweeper.dialog
    assert dialog.isVisible()
    assert dialog.axes.toPlainText() == "prune_magnitude.sparsity=0.5,0.7,0.8,0.9\nquantize.bits=4,5,6"  # the draft's
    assert dialog.summary.text() == "12 recipes" and run_button(dialog).isEnabled()
    dialog.axes.setPlainText("quantize.bits=4,12")
    assert "--grid quantize.bits=12: steps[1].bits" in dialog.summary.text() and not run_button(dialog).isEnabled()
    dialog.axes.setPlainText("prune_magnitude.sparsity=0.6,0.95\nquantize.bits=4")
    dialog.limit.setValue(LIMIT)
    dialog.workers.setValue(1)
    seen = []  # points on the plot, and whether the sweep still ran, at each result
    window.session.runner.sig_partial.connect(
        lambda p: p.key == RESULT_KEY and seen.append((len(window.tradeoff.swept), window.session.runner.busy)))
    run_button(dialog).click()
    assert window.tabs.currentWidget() is window.tradeoff
    qtbot.waitUntil(lambda: window.task_bar.label.text().startswith("Sweep: 2 recipes on 1 local worker process"),
                    timeout=10_000)
    wait_idle(qtbot, window)
    assert seen == [(1, True), (2, True)]  # each drawn as it arrived, while the sweep ran on
    plot = window.tradeoff
    assert [r.name for r in sorted(plot.swept, key=lambda r: r.index)] == ["sparsity=0.6 bits=4", "sparsity=0.95 bits=4"]
    assert sorted(plot.sweep_front) == [0, 1]  # the smaller is the worse: both on the front
    xs, _ys = plot.front.getData()
    assert len(xs) == len(plot.front_ids) + 2  # the line joins them (and the original, if no point beats it)
    assert "1 variant and 2 sweep points; Pareto front in dashes" in plot.caption.text()
    assert "sweep" in plot.families_shown()
    plot.set_x_axis("latency")  # a sweep measures no latency: its points leave that axis, and it says so
    assert plot.swept == [] and "2 sweep points without a latency measurement are left out" in plot.caption.text()
    plot.set_x_axis("params")
    assert len(plot.swept) == 2
    plot.set_x_axis("bytes")
    assert multiprocessing.active_children() == []
    result = next(r for r in plot.swept if r.index == 1)
    job = dialog.request().jobs[1]
    here = run(apply_recipe(job.recipe, window.session.variants.models[0], limited(window.session.data, LIMIT),
                            measure_before=False))
    assert summarise(job, here) == result  # the studio's point is exactly what the engine gives
    plot.sig_sweep_clicked.emit(result)
    assert window.session.draft.to_recipe() == result.recipe  # Apply would make it a variant


def test_cancel_stops_a_sweep_and_its_workers(qtbot, window):
    no_training(window)
    dialog = window.sweeper.open_dialog()
    dialog.limit.setValue(LIMIT)
    dialog.workers.setValue(1)
    run_button(dialog).click()
    qtbot.waitUntil(lambda: len(window.tradeoff.swept) >= 1, timeout=120_000)
    window.task_bar.cancel_button.click()
    wait_idle(qtbot, window)
    assert len(window.tradeoff.swept) < 12 and multiprocessing.active_children() == []
    assert window.task_bar.label.text() == "Cancelled: Sweep: 12 recipes on 1 local worker process"
