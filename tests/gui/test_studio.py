"""The real main window, driven as a user drives it: open, click a layer, switch views, cancel, bad files."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
from PySide6.QtCore import QMimeData, QPointF, Qt, QUrl
from PySide6.QtGui import QDropEvent
from PySide6.QtWidgets import QMessageBox

from core.analysis.inspection import InspectOptions
from tests.gui.conftest import wait_idle


def click_row(qtbot, window, name: str) -> None:
    row = window.table_model.row_of(name)
    index = window.proxy.mapFromSource(window.table_model.index(row, 0))
    rect = window.table.visualRect(index)
    qtbot.mouseClick(window.table.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())


def curve_y(window) -> np.ndarray:
    return np.asarray(window.histogram.curve.getData()[1])


def hooks_left(model) -> int:
    return sum(len(m._forward_hooks) for m in model.modules())


def test_opens_on_the_demo_model_with_measurements(window):
    s = window.session
    assert s.loaded.name == "lenet300" and s.data.name == "mnist"
    assert "lenet300" in window.windowTitle()
    assert window.table_model.rowCount() == 3
    assert window.metrics.cards["params"].value.text() == "266,610"
    assert window.metrics.cards["accuracy"].value.text() == f"{s.measurements.test.accuracy:.2%}"
    assert s.measurements.test.accuracy >= 0.982
    assert window.current_layer() == "fc1" and window.histogram.histogram() is not None


def test_clicking_a_layer_shows_its_histogram_and_neurons(qtbot, window):
    fc1_counts = curve_y(window).copy()
    assert fc1_counts.sum() == 300 * 784
    click_row(qtbot, window, "fc2")
    assert window.current_layer() == "fc2"
    assert "fc2" in window.histogram.title.text()
    counts = curve_y(window)
    assert counts.sum() == 100 * 300 and not np.array_equal(counts, fc1_counts)
    bars = window.activations.displayed()
    assert len(bars) == 100 and np.all(np.diff(bars) <= 0)  # sorted, most active first
    expected = window.session.measurements.activations["fc2"].nonzero_fraction
    np.testing.assert_allclose(np.sort(bars), np.sort(expected))


def test_histogram_views_and_sorting(qtbot, window):
    for button in window.histogram.mode_buttons.buttons():
        if button.text().startswith("log"):
            qtbot.mouseClick(button, Qt.MouseButton.LeftButton)
    assert window.histogram.mode == "log" and window.histogram.histogram().log
    window.histogram.log_counts.setChecked(True)
    assert window.histogram.plot.getPlotItem().ctrl.logYCheck.isChecked()
    window.activations.sorted_box.setChecked(False)
    np.testing.assert_array_equal(window.activations.displayed(),
                                  window.session.measurements.activations["fc1"].nonzero_fraction)


def test_table_sorts_by_value(qtbot, window):
    window.table.sortByColumn(3, Qt.SortOrder.DescendingOrder)  # params
    first = window.proxy.index(0, 0).data()
    assert first == "fc1"
    window.table.sortByColumn(3, Qt.SortOrder.AscendingOrder)
    assert window.proxy.index(0, 0).data() == "fc3"


def test_cancel_stops_the_task_and_leaves_the_model_as_it_was(qtbot, window):
    s = window.session
    model = s.loaded.module
    before = {k: v.clone() for k, v in model.state_dict().items()}
    s.inspect_options = InspectOptions(activation_limit=5000)

    def cancel_during_activations(progress):
        if progress.stage == "activations":
            window.task_bar.cancel_button.click()

    s.runner.sig_progress.connect(cancel_during_activations)
    with qtbot.waitSignal(s.runner.sig_cancelled, timeout=60_000):
        s.inspect()
    s.runner.sig_progress.disconnect(cancel_during_activations)
    wait_idle(qtbot, window)
    assert hooks_left(model) == 0 and not model.training
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    assert window.task_bar.label.text().startswith("Cancelled")
    assert s.measurements.test is None and s.measurements.weights  # what finished before cancel is kept


def test_a_file_that_is_not_a_model_changes_nothing(qtbot, window, model_files):
    s = window.session
    loaded, measurements = s.loaded, s.measurements
    s.open_model(str(model_files["text"]))
    wait_idle(qtbot, window)
    assert isinstance(window.dialog, QMessageBox) and window.dialog.isVisible()
    assert "Formats tried" in window.dialog.text()
    assert s.loaded is loaded and s.measurements is measurements
    assert window.table_model.rowCount() == 3


def test_untrusted_pickle_asks_and_cancel_runs_nothing(qtbot, window, model_files):
    s = window.session
    loaded = s.loaded
    s.open_model(str(model_files["evil"]))
    wait_idle(qtbot, window)
    box = window.dialog
    assert box.windowTitle() == "This file can run code" and "--trust" in box.text()
    box.button(QMessageBox.StandardButton.Cancel).click()
    wait_idle(qtbot, window)
    assert s.loaded is loaded and not model_files["marker"].exists()


def test_trusting_a_whole_module_pickle_loads_it(qtbot, window, model_files):
    s = window.session
    s.open_model(str(model_files["pickle"]), data_name="mnist")
    wait_idle(qtbot, window)
    load = next(b for b in window.dialog.buttons() if b.text().startswith("Load"))
    load.click()
    qtbot.waitUntil(lambda: s.loaded.format == "pickle" and s.measurements.test is not None, timeout=120_000)
    assert type(s.loaded.module).__name__ == "Wrapped"
    assert window.table_model.layer_name(0) == "body.fc1"


def test_a_newer_request_wins(qtbot, window):
    s = window.session
    s.open_model("zoo:lenet300-fashion")
    s.open_model("zoo:lenet5")
    qtbot.waitUntil(lambda: not s.runner.busy and s.measurements.test is not None, timeout=120_000)
    assert s.loaded.name == "lenet5" and window.table_model.layer_name(0) == "conv1"


def test_dropping_a_file_opens_it(qtbot, window, model_files):
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(model_files["torchscript"]))])
    event = QDropEvent(QPointF(50, 50), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                       Qt.KeyboardModifier.NoModifier)
    window.dropEvent(event)
    wait_idle(qtbot, window)  # a TorchScript archive is unpickled: the studio asks first
    assert window.dialog.windowTitle() == "This file can run code"
    next(b for b in window.dialog.buttons() if b.text().startswith("Load")).click()
    qtbot.waitUntil(lambda: window.session.loaded.format == "torchscript" and not window.session.runner.busy,
                    timeout=60_000)
    assert window.table_model.rowCount() == 3


def test_plots_export_to_png_and_svg(window, tmp_path):
    png = window.export_plot(window.histogram.plot, str(tmp_path / "hist.png"))
    svg = window.export_plot(window.activations.plot, str(tmp_path / "act.svg"))
    assert (tmp_path / "hist.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.endswith(".png")
    assert "<svg" in (tmp_path / "act.svg").read_text()[:2000] and svg.endswith(".svg")


def test_window_layout_is_remembered(qtbot, qapp, window, settings):
    from gui.app import create_window

    window.histogram.set_mode("signed")
    window.resize(window.width(), 640)  # the offscreen screen is small; the height is free to change
    menu = window.layers.column_menu()  # the table header's context menu
    for action in menu.actions():
        if action.text() in ("Dead", "Bits"):
            action.trigger()  # Dead was hidden, Bits shown
    assert "Dead" in window.layers.visible_columns() and "Bits" not in window.layers.visible_columns()
    window.close()
    assert settings.value("view/histogram_mode") == "signed"
    again = create_window(None, settings=settings)
    qtbot.addWidget(again)
    assert again.histogram.mode == "signed" and again.size().height() == 640
    assert again.layers.visible_columns() == ["Layer", "Shape", "Params", "Bytes", "Sparsity", "Fires", "Dead", "MACs"]


def test_layer_table_shows_the_default_columns_and_any_chosen(window):
    from gui.widgets.layers_page import DEFAULT_COLUMNS

    assert window.layers.visible_columns() == list(DEFAULT_COLUMNS)
    window.layers.set_visible_columns(["Status", "no such column"])
    assert window.layers.visible_columns() == ["Layer", "Status"]  # Layer always shows
    defaults = [a for a in window.layers.column_menu().actions() if a.text() == "Default columns"]
    defaults[0].trigger()
    assert window.layers.visible_columns() == list(DEFAULT_COLUMNS)


def test_sort_arrows_take_room_only_while_sorted(window):
    """Qt widens every column by an arrow's room while sort arrows show: until a column is sorted, none do."""
    header = window.layers.table.horizontalHeader()
    unsorted = header.length()
    assert not header.isSortIndicatorShown()
    window.layers.table.sortByColumn(3, Qt.SortOrder.DescendingOrder)
    assert header.isSortIndicatorShown() and window.layers.current_layer() == "fc1"
    window.layers.table.sortByColumn(-1, Qt.SortOrder.AscendingOrder)
    assert not header.isSortIndicatorShown() and header.length() <= unsorted


def test_size_view_shows_each_layers_share_and_selects_on_click(qtbot, window):
    shares = window.size_view.shares
    assert len(shares) == 3 and shares.sum() == pytest.approx(1.0)
    assert shares[0] == pytest.approx(942_000 / 1_066_440)  # fc1 holds 88% of LeNet-300-100's bytes
    window.size_view.sig_layer_clicked.emit("fc3")
    assert window.current_layer() == "fc3"


def test_cancelled_tasks_leave_no_thread_state_behind(qtbot, window):
    """A task cancelled inside torch.inference_mode must leave neither the UI thread nor the pool's worker
    threads in inference mode (the next task would fail to train)."""
    from core.progress import Progress

    seen = []

    def stuck_in_inference_mode():
        with torch.inference_mode():
            while True:
                yield Progress("test", 0, 1)

    def probe():
        seen.append((torch.is_grad_enabled(), torch.is_inference_mode_enabled()))
        return None
        yield

    runner = window.session.runner
    for _ in range(4):  # enough tasks to meet every thread of the pool
        with qtbot.waitSignal(runner.sig_cancelled, timeout=30_000):
            runner.start("stuck", stuck_in_inference_mode)
            qtbot.wait(20)
            runner.cancel()
        wait_idle(qtbot, window)
        runner.start("probe", probe)
        wait_idle(qtbot, window)
    assert torch.is_grad_enabled() and not torch.is_inference_mode_enabled()
    assert seen == [(True, False)] * 4


def test_garbage_is_collected_on_the_ui_thread_only(window):
    """Automatic collection would run on pool threads too and destroy Qt objects there (a crash)."""
    import gc

    from PySide6.QtWidgets import QApplication

    assert not gc.isenabled()
    assert QApplication.instance()._prunescope_gc.timer.isActive()


def run_paced(qtbot, task, on_partial) -> None:
    """Run ``task`` on a runner of its own (not the session's: its partial results go to the measurements)
    with ``on_partial`` handling its partial results on the UI thread, until it is done."""
    from PySide6.QtCore import QThreadPool

    from gui.workers import TaskRunner

    runner = TaskRunner()
    runner.sig_partial.connect(on_partial)
    with qtbot.waitSignal(runner.sig_idle, timeout=30_000):
        runner.start("paced", task)
    QThreadPool.globalInstance().waitForDone(30_000)  # the worker's thread is done with the runner's objects
    qtbot.wait(10)


def test_a_task_waits_for_the_ui_to_draw_its_partial_result(qtbot):
    """After handing the UI a partial result, a task goes on only once the UI thread has handled it (and
    the repaint it asked for): the two never compete for the interpreter while the window draws."""
    import time

    from core.progress import Partial

    events = []

    def task():
        events.append("task starts")
        yield Partial("test", 1)
        events.append("task goes on")
        return None

    def draw(_partial):
        time.sleep(0.15)  # a slow redraw, on the UI thread
        events.append("UI drew")

    run_paced(qtbot, task, draw)
    assert events == ["task starts", "UI drew", "task goes on"]


def test_a_task_waits_for_the_repaint_of_work_the_ui_deferred(qtbot):
    """A handler may defer part of its drawing to the next event-loop pass (the layers page does, for a new
    inventory); the task still waits until that drawing is painted."""
    import time

    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QWidget

    from core.progress import Partial

    events = []

    class Canvas(QWidget):
        def paintEvent(self, _event) -> None:  # noqa: N802 - Qt's name
            if events and events[-1] == "UI deferred a redraw":
                time.sleep(0.1)  # a slow paint
                events.append("UI painted it")

    canvas = Canvas()
    qtbot.addWidget(canvas)
    canvas.show()
    qtbot.waitExposed(canvas)

    def task():
        events.append("task starts")
        yield Partial("test", 1)
        events.append("task goes on")
        return None

    def later() -> None:
        events.append("UI deferred a redraw")
        canvas.update()

    run_paced(qtbot, task, lambda _partial: QTimer.singleShot(1, later))
    assert events == ["task starts", "UI deferred a redraw", "UI painted it", "task goes on"]


def test_changing_layer_repaints_the_histogram_once(qtbot, window):
    """One layer change, one repaint of the histogram: a view range or an axis width settled at paint time
    would ask for a second (each costs 5-15 ms of the UI thread on a large layer)."""
    from bench.bench_paint import PaintCounter

    counter = PaintCounter()
    viewport = window.histogram.plot.viewport()
    viewport.installEventFilter(counter)
    names = ["fc1", "fc2", "fc3"]
    for name in names * 2:  # the first round may widen the count axis for wider labels once
        window.select_layer(name)
        qtbot.wait(30)
    repaints = []
    for name in names:
        counter.count = 0
        window.select_layer(name)
        qtbot.waitUntil(lambda: counter.count >= 1, timeout=5_000)
        qtbot.wait(50)  # a second paint would follow within a pass or two
        repaints.append(counter.count)
    viewport.removeEventFilter(counter)
    assert repaints == [1, 1, 1]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread nice is Linux's")
def test_tasks_run_at_background_priority(qtbot, window):
    import os
    import threading

    from gui.workers import BACKGROUND_NICE

    seen = []

    def task():
        seen.append(os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))
        return None
        yield

    window.session.runner.start("nice", task)
    wait_idle(qtbot, window)
    assert seen == [BACKGROUND_NICE]
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) < BACKGROUND_NICE  # the UI thread's is not


def test_the_engine_is_ready_before_the_window_shows(window):
    """The compiled kernels load, and the compressing modules import, while the window is built."""
    from gui.workers import prepare_engine

    preparation = prepare_engine()
    assert preparation is prepare_engine() and preparation.ready.is_set()
    assert "core.pipeline" in sys.modules
    preparation.join(60)
    assert not preparation.is_alive() and "torch._dynamo" in sys.modules
