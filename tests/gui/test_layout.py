"""The studio's layout at a laptop's 1366×768 and at 1920×1080 (issue 12, item 7), at fixed window sizes."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from PySide6.QtCore import QRect, Qt
from PySide6.QtGui import QFontMetrics
from PySide6.QtWidgets import QApplication, QPushButton

from core.recipe import Recipe
from tests.gui.conftest import wait_idle

SIZES = [(1366, 768), (1920, 1080)]


def settle() -> None:
    for _ in range(6):
        QApplication.processEvents()


def show_at(window, size) -> None:
    window.resize(*size)
    settle()


def variant_with_changes(window, share: float = 0.05, wrong: int = 60):
    """A compressed-looking variant: the original's predictions with ``wrong`` right answers made wrong."""
    original = window.session.variants.original
    predictions = original.predictions.copy()
    right = np.flatnonzero(original.predictions == original.labels)[:wrong]
    predictions[right] = (original.labels[right] + 1) % 10
    return dataclasses.replace(original, id=1, name="#1 95% pruned, 4 bits k-means", recipe=Recipe(),
                               size_bytes=int(original.size_bytes * share), predictions=predictions,
                               accuracy=float((predictions == original.labels).mean()))


def inside(inner: QRect, outer: QRect) -> bool:
    return outer.contains(inner.topLeft()) and outer.contains(inner.bottomRight())


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_every_page_fits_the_window_and_apply_is_in_view(qtbot, window, size):
    """1366×768: the Compare page made the window taller than the screen (777 px), Apply scrolled away."""
    show_at(window, size)
    store, data = window.session.variants, window.session.data
    variant = variant_with_changes(window)  # Compare with its 24 changed images, the tallest page
    window.compare.set_variants([store.original, variant], variant.id, data.test.images, data.classes)
    window.demo.show_result([store.original, variant], variant)
    for page in (window.layers, window.sensitivity, window.tradeoff, window.compare, window.demo):
        window.tabs.setCurrentWidget(page)
        settle()
        assert (window.width(), window.height()) == size, page
        hint = window.minimumSizeHint()  # no page sets a minimum beyond the screen (Compare's was 777 px)
        assert hint.width() <= size[0] and hint.height() <= size[1], (page, hint)
    dock, panel = window.recipe_dock, window.recipe_panel
    assert dock.isVisible() and inside(dock.geometry(), window.rect())
    buttons = [panel.apply_button] + [b for b in panel.findChildren(QPushButton) if b.text().endswith("recipe…")]
    assert len(buttons) == 3
    for button in buttons:  # Apply, Load and Save: on screen, in the dock, not clipped
        assert button.isVisible()
        rect = QRect(button.mapTo(dock, button.rect().topLeft()), button.size())
        assert inside(rect, dock.rect()), button.text()
        assert button.sizeHint().width() <= button.width(), button.text()


def test_load_and_save_recipe_are_not_clipped_at_1300x850(window):
    """Kept as a guard: the recipe panel's redesign (30a3a10) had already fixed this one."""
    show_at(window, (1300, 850))
    buttons = [b for b in window.recipe_panel.findChildren(QPushButton) if b.text().endswith("recipe…")]
    assert len(buttons) == 2
    for button in buttons:
        assert button.sizeHint().width() <= button.width(), button.text()


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_compare_shows_every_column_and_the_changed_images_apart(qtbot, window, size):
    """Compare hid Bytes and Change behind a scrollbar; its changed-digit images overlapped and were cut."""
    show_at(window, size)
    store, compare = window.session.variants, window.compare
    variant = variant_with_changes(window)
    window.tabs.setCurrentWidget(compare)
    data = window.session.data
    compare.set_variants([store.original, variant], variant.id, data.test.images, data.classes)
    settle()
    table = compare.table
    header = table.horizontalHeader()
    right_edge = max(header.sectionViewportPosition(i) + header.sectionSize(i) for i in range(header.count()))
    assert right_edge <= table.viewport().width() and table.horizontalScrollBar().maximum() == 0
    rows_shown = table.viewport().height() / table.rowHeight(0)
    assert rows_shown >= min(table.rowCount(), 4)
    images = compare.changed_images
    assert compare.shown_images() == 24
    rects = [images.visualItemRect(images.item(i)) for i in range(images.count())]
    icon = images.iconSize()
    for i, rect in enumerate(rects):
        assert rect.width() >= icon.width() and rect.height() >= icon.height()  # a whole digit per cell
        assert not any(rect.intersects(other) for other in rects[i + 1:]), i
    assert images.horizontalScrollBar().maximum() == 0  # they wrap into rows (and scroll down, if need be)
    assert rects[0].top() >= 0 and rects[0].left() >= 0


def write_six_layer_torchscript(path) -> None:
    layers: list = [torch.nn.Flatten(), torch.nn.Linear(784, 64)]
    for _ in range(4):
        layers += [torch.nn.ReLU(), torch.nn.Linear(64, 64)]
    layers += [torch.nn.ReLU(), torch.nn.Linear(64, 10)]
    torch.jit.save(torch.jit.script(torch.nn.Sequential(*layers)), str(path))


def test_a_six_layer_model_after_a_three_layer_one_shows_its_rows(qtbot, window, tmp_path):
    """The table stayed three rows tall for a six-layer model; after a TorchScript load Fires said "…"
    forever, and the unit plot's "not measured" message ran past the plot."""
    show_at(window, (1366, 768))
    assert window.table_model.rowCount() == 3
    path = tmp_path / "six.ts.pt"
    write_six_layer_torchscript(path)
    window.session.open_model(str(path), data_name="mnist", trust=True)
    qtbot.waitUntil(lambda: window.session.loaded.format == "torchscript" and window.table_model.rowCount() == 6,
                    timeout=60_000)
    wait_idle(qtbot, window)
    settle()
    table = window.table
    assert table.viewport().height() / table.rowHeight(0) >= 6
    fires = window.table_model.index(0, 7).data()
    assert fires != "…"  # the inspection is over: measured, or a dash
    window.select_layer(window.table_model.layer_name(0))
    settle()
    message = window.activations.message
    if message.toPlainText():
        shown = message.sceneBoundingRect()
        plot = window.activations.plot.getPlotItem().getViewBox().sceneBoundingRect()
        assert shown.width() <= plot.width() and shown.left() >= plot.left() - 1


def test_the_layer_table_shows_six_rows_at_1366x768(qtbot, window, tmp_path):
    """The layer table showed 1.5 rows at 1366×768 (a remembered splitter, or a window made smaller): it
    gets its rows back on opening a model and when the window is resized."""
    show_at(window, (1366, 768))
    window.layers.left_splitter.setSizes([40, 1000])  # squeezed, as a remembered layout can leave it
    path = tmp_path / "six.ts.pt"
    write_six_layer_torchscript(path)
    window.session.open_model(str(path), data_name="mnist", trust=True)
    qtbot.waitUntil(lambda: window.table_model.rowCount() == 6, timeout=60_000)
    wait_idle(qtbot, window)
    settle()
    assert window.table.viewport().height() / window.table.rowHeight(0) >= 6



def test_the_layer_table_keeps_its_rows_when_the_window_is_made_smaller(qtbot, window):
    """At 1366×768 after a larger window (as docs/tour.py does it), the table showed 1.5 of its 3 rows."""
    show_at(window, (1580, 980))
    window.session.inspect()  # the table is fitted to its rows as the inventory lands
    wait_idle(qtbot, window)
    settle()
    show_at(window, (1366, 768))
    qtbot.wait(50)
    settle()
    assert window.table.viewport().height() / window.table.rowHeight(0) >= window.table_model.rowCount() == 3


def text_shown_whole_or_elided(label) -> bool:
    """The label's text fits, or it ends in "…" with the whole text in its tooltip; never cut mid-letter."""
    shown = label.displayed_text() if hasattr(label, "displayed_text") else label.text()
    fits = QFontMetrics(label.font()).horizontalAdvance(shown) <= label.contentsRect().width()
    return fits and (shown == label.text() or (shown.endswith("…") and label.toolTip().startswith(label.text())))


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_titles_and_variant_rows_are_not_cut(qtbot, window, size):
    """"Linear 295×7", "How often conv2's cl", the model card's title and the variant rows were cut off."""
    show_at(window, size)
    store = window.session.variants
    variant = variant_with_changes(window)
    store.variants.append(variant)  # a long name in the list, as "#N 95% pruned, 4 bits" is
    window.variant_list.refresh()
    window.session.loaded.name = f"lenet300 · {variant.name}"
    window.metrics.refresh()
    window.select_layer("fc1")
    settle()
    qtbot.wait(100)  # a list view lays its rows out again on a timer after its scroll bar shows
    labels = [window.histogram.title, window.activations.title, window.size_view.title,
              window.metrics.cards["model"].value]
    for label in labels:
        assert text_shown_whole_or_elided(label), label.text()
    assert "fc1" in window.histogram.title.text() and "784" in window.histogram.title.text()
    assert window.metrics.cards["model"].value.text() == "lenet300"  # the variant goes on the detail line
    assert variant.name in window.metrics.cards["model"].detail.text()
    rows = window.variant_list.list
    assert rows.horizontalScrollBar().maximum() == 0
    for i in range(rows.count()):
        item, rect = rows.item(i), rows.visualItemRect(rows.item(i))
        widest = max(rows.fontMetrics().horizontalAdvance(line) for line in item.text().splitlines())
        assert rect.right() <= rows.viewport().width() and widest <= rect.width() - 10, item.text()
        assert rect.height() >= len(item.text().splitlines()) * rows.fontMetrics().lineSpacing()
    store.variants.remove(variant)
