"""The studio shows one latency figure per variant (issue 12, finding 8: "for one variant the card says 45 ms
while Compare says 1.85 ms"): the model card, Compare and the HTML report read the variant's one stored
measurement, taken once, with its interval, batch size, runs and noisy mark."""

from __future__ import annotations

import pytest

from core.report.reports import latency_change, latency_figure, latency_value
from tests.gui.conftest import wait_idle
from tests.gui.test_compress_studio import apply_and_wait, quick_draft


@pytest.fixture
def timed_models(monkeypatch):
    """Every model that latency is measured on, in order (the window fixture must come after this one)."""
    from core.analysis import inspection
    from core.eval import evaluate

    models: list = []
    real = evaluate.latency

    def counting(model, example, *args, **kwargs):
        models.append(model)
        return (yield from real(model, example, *args, **kwargs))

    monkeypatch.setattr(evaluate, "latency", counting)
    monkeypatch.setattr(inspection, "latency", counting)
    return models


def card(window) -> str:
    """The latency card's text: its value, then its detail (the median, then ± and what it is per)."""
    c = window.metrics.cards["latency"]
    return f"{c.value.text()} {c.detail.text()}"


def test_the_card_and_compare_show_the_variants_one_measurement(qtbot, timed_models, window, tmp_path):
    session, store = window.session, window.session.variants
    original = store.original
    assert original.latency is not None and session.measurements.latency is original.latency
    assert card(window) == latency_figure(original.latency)
    assert "per batch of 256" in card(window) and f"{original.latency.runs} runs" in card(window)
    assert len(timed_models) == 1  # the original: timed once, for the card and for variant 0 alike

    quick_draft(window)
    variant = apply_and_wait(qtbot, window)
    qtbot.waitUntil(lambda: session.measurements.latency is not None, timeout=60_000)  # the re-inspection
    wait_idle(qtbot, window)
    assert len(timed_models) == 2  # the variant: timed once, when it was made, and not again when inspected
    assert session.measurements.latency is variant.latency
    assert card(window) == latency_figure(variant.latency)

    window.tabs.setCurrentWidget(window.compare)
    a, b = window.compare.pair()
    assert a is original and b is variant
    summary = window.compare.summary.text()
    assert latency_change(original.latency, variant.latency) in summary
    assert f"→ {latency_value(variant.latency)}" in summary  # the card's figure, character for character

    window.tabs.setCurrentWidget(window.demo)
    window.export_report_dialog(str(tmp_path / "report.html"))
    assert latency_change(original.latency, variant.latency) in (tmp_path / "report.html").read_text()

    store.set_current(original.id)  # back to the original: its figure again, still not re-timed
    qtbot.waitUntil(lambda: session.measurements.latency is original.latency, timeout=60_000)
    wait_idle(qtbot, window)
    assert card(window) == latency_figure(original.latency) and len(timed_models) == 2
