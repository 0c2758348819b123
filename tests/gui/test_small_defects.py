"""The smaller studio defects of issue 12 (item 9), each shown fixed."""

from __future__ import annotations

import dataclasses

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QRectF
from PySide6.QtGui import QImage, QPainter
from PySide6.QtWidgets import QApplication

from core.pipeline.variants import at_chance, stored_bytes_by_layer
from core.report.html_report import summary_phrases
from core.recipe import Recipe
from core.report.reports import human_bytes, size_change, times
from tests.gui.conftest import wait_idle
from tests.gui.test_compress_studio import apply_and_wait, quick_draft


def settle() -> None:
    for _ in range(6):
        QApplication.processEvents()


def fake(original, i: int, share: float, accuracy: float, name: str | None = None):
    return dataclasses.replace(original, id=i, name=name or f"#{i} test", recipe=Recipe(),
                               size_bytes=max(1, int(original.size_bytes * share)), accuracy=accuracy)


def test_ratios_keep_the_digits_that_matter():
    """"1.02x" read as "1x smaller"."""
    assert times(1.02) == "1.02x" and times(81.3) == "81x" and times(9.996) == "10x" and times(4.349) == "4.35x"
    assert size_change(1020, 1000) == "1.02x smaller" and size_change(1000, 1250) == "1.25x larger"
    assert size_change(1000, 1000) == "the same size"


def test_a_small_change_in_size_reads_as_such_in_every_view(qtbot, window):
    store = window.session.variants
    original = store.original
    close = fake(original, 1, 1 / 1.02, original.accuracy - 0.001)
    window.demo.show_result([original, close], close)
    assert "1.02x smaller" in window.demo.headline.text()
    assert window.demo.cards["ratio"][0].text() == "1.02x"
    window.tradeoff.show_variants([original, close], close.id)
    assert "1.02x smaller" in window.tradeoff.caption.text()
    window.compare.set_variants([original, close], close.id)
    assert "(1.02x)" in window.compare.summary.text()


def test_demo_headline_names_the_variant_breaks_between_phrases_and_warns_at_chance(window):
    original = window.session.variants.original
    good = fake(original, 1, 0.05, 0.97, "#1 95% pruned · 4 bit k-means")
    window.resize(1366, 768)
    window.tabs.setCurrentWidget(window.demo)
    window.demo.show_result([original, good], good)
    settle()
    text, headline = window.demo.headline.text(), window.demo.headline
    phrases = summary_phrases(original, good)
    lines = text.split("\n")
    assert len(lines) >= 2  # it does not fit on one line at 1366 px
    assert [p for line in lines for p in line.rstrip(",").split(", ")] == phrases  # lines break between phrases
    assert all(headline.fontMetrics().horizontalAdvance(line) <= headline.width() for line in lines)
    assert good.name in window.demo.variant_name.text()
    assert window.demo.warning.isHidden()
    broken = dataclasses.replace(good, id=2, predictions=np.zeros_like(original.predictions))
    broken = dataclasses.replace(broken, accuracy=float((broken.predictions == broken.labels).mean()))
    assert at_chance(broken) and not at_chance(good)
    window.demo.show_result([original, broken], broken)
    assert not window.demo.warning.isHidden() and "guessing" in window.demo.warning.text()
    assert "10 classes" in window.demo.warning.text()


def overlaps(rects: list[QRectF], margin: float = 1.0) -> list[tuple[int, int]]:
    shrunk = [r.adjusted(margin, margin, -margin, -margin) for r in rects]
    return [(i, j) for i in range(len(shrunk)) for j in range(i + 1, len(shrunk)) if shrunk[i].intersects(shrunk[j])]


def tick_label_rects(axis) -> list[QRectF]:
    image = QImage(10, 10, QImage.Format.Format_ARGB32)
    painter = QPainter(image)
    try:
        _axis, _ticks, texts = axis.generateDrawSpecs(painter)
    finally:
        painter.end()
    return [QRectF(rect) for rect, _flags, text in texts if text]


def test_tradeoff_tick_labels_and_names_do_not_run_into_each_other(qtbot, window):
    """"7·10³8·10³9·10³10⁴" on the log axis, and the original's name over the others'."""
    window.resize(1366, 768)
    window.tabs.setCurrentWidget(window.tradeoff)
    original = window.session.variants.original
    shares = [0.25, 0.0125, 0.009, 0.0075, 0.0062, 1 / 1.02]  # 3-13 KB, and one beside the original
    variants = [original] + [fake(original, i + 1, s, a) for i, (s, a) in
                             enumerate(zip(shares, [0.985, 0.96, 0.95, 0.93, 0.9, original.accuracy - 0.0005]))]
    window.tradeoff.show_variants(variants, 6)
    settle()
    plot = window.tradeoff.plot
    rects = tick_label_rects(plot.getAxis("bottom"))
    assert len(rects) >= 3 and not overlaps(rects)
    names = window.tradeoff.placed_label_rects() if hasattr(window.tradeoff, "placed_label_rects") else \
        [label.sceneBoundingRect() for label in window.tradeoff.labels]
    assert not overlaps(names)
    current = window.tradeoff.labels[[v.id for v in window.tradeoff.variants].index(6)]
    assert current.isVisible()  # the current variant's name always shows


def test_bytes_show_what_a_compressed_variant_stores(qtbot, window):
    """On a 23 KB variant, the Bytes column and "Where the bytes are" showed the dense sizes."""
    quick_draft(window, sparsity=0.9, bits=4)
    variant = apply_and_wait(qtbot, window)
    wait_idle(qtbot, window)
    settle()
    stored = stored_bytes_by_layer(variant)
    assert sum(stored.values()) < variant.size_bytes  # per-tensor bytes, without the header
    model = window.table_model
    for row in range(model.rowCount()):
        name = model.layer_name(row)
        assert model.index(row, 4).data() == human_bytes(stored[name]), name
    dense = window.session.measurements.inventory.layer("fc1").bytes
    assert stored["fc1"] < dense / 10
    assert human_bytes(sum(stored.values())) in window.size_view.title.text()
    assert abs(window.size_view.shares.sum() - 1) < 1e-9


def test_heatmap_has_a_colour_scale_and_no_sorted_box(qtbot, window):
    """The activation heatmap had no colour scale, and "sorted" showed while it is in unit order."""
    view = window.activations
    window.select_layer("fc1")
    view.view_box.setCurrentIndex(1)
    settle()
    bars = [item for item in view.heatmap.scene().items() if isinstance(item, pg.ColorBarItem)]
    assert len(bars) == 1 and bars[0].isVisible()
    assert not view.sorted_box.isVisible()
    view.view_box.setCurrentIndex(0)
    assert view.sorted_box.isVisible()


def test_the_status_bar_waits_for_the_trust_answer_instead_of_saying_failed(qtbot, window, model_files):
    """"Failed: Opening…" showed while the trust dialog waited for the user."""
    window.session.open_model(str(model_files["pickle"]), data_name="mnist")
    wait_idle(qtbot, window)
    assert window.dialog.windowTitle() == "This file can run code"
    text = window.task_bar.label.text()
    assert not text.startswith("Failed") and "Waiting" in text
    cancel = next(b for b in window.dialog.buttons() if b.text().replace("&", "") == "Cancel")
    cancel.click()
    assert window.task_bar.label.text().startswith("Not opened")


def test_a_long_layer_name_does_not_widen_the_pruning_section(qtbot):
    from gui.methods.pruning import PruningSection, short_layer_name
    from gui.recipe_draft import RecipeDraft

    name = "encoder.layer.0.attention.self.query"
    assert short_layer_name(name) == "encode…f.query" and len(short_layer_name(name)) == 14
    assert short_layer_name("fc1") == "fc1"
    section = PruningSection(RecipeDraft())
    qtbot.addWidget(section)
    narrow = section.minimumSizeHint().width()
    section.layer, section.stats = name, {name: object()}  # a selected layer the model has statistics for
    section.show_draft()
    assert section.minimumSizeHint().width() <= narrow + 40
    assert section.layer_sparsity_label.toolTip() == name
