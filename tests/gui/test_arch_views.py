"""The inspector's architecture views on the real window: the teacher's softened outputs, the spectrum's rank
line with break-even, and the separable toggle, each checked against figures the test computes itself."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PySide6.QtCore import QPointF, Qt

from core.analysis.inspection import InspectOptions
from core.eval.data import to_float
from gui.methods.arch_api import kind_registered
from gui.widgets.softened_view import entropy_bits
from tests.gui.conftest import wait_idle

QUICK = InspectOptions(activation_limit=500, eval_limit=500, latency_batch=8)
"""These views need the model and its test images, not its full measurements: a shorter inspection."""


def _settle(qapp, window, timeout_s: float = 120.0) -> None:
    import time

    end = time.monotonic() + timeout_s
    while window.session.runner.busy or not window.session.variants.variants:
        assert time.monotonic() < end, "the studio did not settle"
        qapp.processEvents()
        time.sleep(0.01)


def _open(qapp, tmp_path_factory, spec: str):
    from PySide6.QtCore import QSettings

    from gui.app import apply_style, create_window

    apply_style(qapp)
    settings = QSettings(str(tmp_path_factory.mktemp("studio") / "studio.ini"), QSettings.Format.IniFormat)
    w = create_window(None, settings=settings)
    w.session.inspect_options = QUICK
    w.show()
    w.session.open_model(spec)
    _settle(qapp, w)
    return w


def _close(qapp, window) -> None:
    window.session.cancel()
    _settle(qapp, window)
    window.confirm_close = lambda unsaved: True
    window.close()
    window.deleteLater()
    qapp.processEvents()


@pytest.fixture(scope="module")
def studio(qapp, tmp_path_factory):
    """One LeNet-300-100 window for the module's tests (each sets the layer, tab and image it needs)."""
    w = _open(qapp, tmp_path_factory, "zoo:lenet300")
    yield w
    _close(qapp, w)


@pytest.fixture
def window(qtbot, studio):
    studio.select_layer("fc1")
    wait_idle(qtbot, studio)
    return studio


@pytest.fixture(scope="module")
def lenet5_studio(qapp, tmp_path_factory):
    w = _open(qapp, tmp_path_factory, "zoo:lenet5")
    yield w
    _close(qapp, w)


@pytest.fixture
def lenet5(qtbot, lenet5_studio):
    wait_idle(qtbot, lenet5_studio)
    return lenet5_studio


def show_tab(qtbot, window, title: str) -> None:
    window.layers.show_inspector_tab(title)
    wait_idle(qtbot, window)


def bars(bar_item) -> np.ndarray:
    return np.asarray(bar_item.opts["height"], dtype=np.float64)


def softmax(z: np.ndarray, t: float) -> np.ndarray:
    e = np.exp((z - z.max()) / t)
    return e / e.sum()


# ---------------------------------------------------------------------------------------------- softened outputs
def test_the_softened_bars_are_the_teachers_and_flatten_as_t_rises(qtbot, window):
    view, s = window.layers.softened, window.session
    show_tab(qtbot, window, "Softened outputs")
    view.image_box.setValue(0)
    qtbot.waitUntil(lambda: view.logits is not None, timeout=30_000)
    x = to_float(s.data.test.images[:1]).reshape(1, -1)
    with torch.inference_mode():
        expected = s.variants.models[0].module(x)[0].double().numpy()  # the original, run here
    np.testing.assert_allclose(view.logits, expected, rtol=1e-5, atol=1e-5)
    assert view.label_text.text() == f"label: {s.data.classes[int(s.data.test.labels[0])]}"
    assert not view.thumb.pixmap().isNull()

    entropies, tops = [], []
    for t in (1.0, 2.0, 5.0, 10.0, 20.0):
        view.temperature.setValue(t)
        assert not s.runner.busy  # re-softening is instant: no background task
        hard, soft = bars(view.hard_bars), bars(view.soft_bars)
        np.testing.assert_allclose(hard, softmax(expected, 1.0), atol=1e-9)
        np.testing.assert_allclose(soft, softmax(expected, t), atol=1e-9)
        assert hard.sum() == pytest.approx(1.0) and soft.sum() == pytest.approx(1.0)
        entropies.append(entropy_bits(soft))
        tops.append(soft.max())
        assert f"T = {t:.1f}" in view.legend.text()
    assert entropies[0] == pytest.approx(entropy_bits(softmax(expected, 1.0)))
    assert all(b > a for a, b in zip(entropies, entropies[1:])), entropies  # flatter as T rises
    assert all(b < a for a, b in zip(tops, tops[1:])), tops
    # the bars stand beside each other, class by class
    np.testing.assert_allclose(view.soft_bars.opts["x"] - view.hard_bars.opts["x"], view.hard_bars.opts["width"])


def test_next_shows_another_test_image_and_its_outputs(qtbot, window):
    view, s = window.layers.softened, window.session
    show_tab(qtbot, window, "Softened outputs")
    view.image_box.setValue(0)
    qtbot.waitUntil(lambda: view.logits is not None, timeout=30_000)
    first = view.logits.copy()
    qtbot.mouseClick(view.next_button, Qt.MouseButton.LeftButton)
    assert view.image_box.value() == 1
    assert view.logits is None  # computed in the background, not here
    qtbot.waitUntil(lambda: view.logits is not None, timeout=30_000)
    x = to_float(s.data.test.images[1:2]).reshape(1, -1)
    with torch.inference_mode():
        np.testing.assert_allclose(view.logits, s.variants.models[0].module(x)[0].double().numpy(), atol=1e-5)
    assert not np.allclose(view.logits, first)
    assert view.label_text.text() == f"label: {s.data.classes[int(s.data.test.labels[1])]}"
    view.image_box.setValue(0)  # known now: shown at once
    assert view.logits is not None and np.allclose(view.logits, first)


# ---------------------------------------------------------------------------------------------- spectrum
def test_the_rank_line_previews_params_bytes_and_energy_with_break_even_drawn(qtbot, window):
    spectrum, s = window.layers.spectrum, window.session
    assert window.current_layer() == "fc1"
    show_tab(qtbot, window, "Low rank")
    qtbot.waitUntil(lambda: spectrum.spectrum is not None, timeout=30_000)
    weight = s.loaded.module.fc1.weight.detach()
    m, n = weight.shape
    sv = torch.linalg.svdvals(weight.double()).numpy()
    np.testing.assert_allclose(spectrum.spectrum.values, sv, rtol=1e-4, atol=1e-6)
    energy = np.cumsum(sv ** 2) / np.sum(sv ** 2)
    np.testing.assert_allclose(spectrum.energy_curve.getData()[1], energy, atol=1e-6)
    assert spectrum.break_even_line.value() == pytest.approx(m * n / (m + n))  # 216.97 for 300x784
    assert spectrum.break_even_line.isVisible()
    assert spectrum.useless.getRegion()[0] == pytest.approx(m * n / (m + n))
    assert spectrum.rank() == int(np.argmax(energy >= 0.9)) + 1  # starts where 90% of the energy is kept

    spectrum.rank_line.setValue(40.4)  # as a drag does: the line snaps to a whole rank
    assert spectrum.rank() == 40 and spectrum.rank_line.value() == 40
    params = 40 * (m + n)
    assert f"{params:,} weights" in spectrum.params_label.text()
    assert f"{m * n:,} weights" in spectrum.params_label.text()
    assert f"{m * n / params:.2f}× fewer" in spectrum.params_label.text()
    assert f"keeps {energy[39]:.1%}" in spectrum.energy_label.text()
    assert "rank 40" in spectrum.rank_line.label.textItem.toPlainText()

    spectrum.rank_line.setValue(round(m * n / (m + n)) + 1)
    assert "saves nothing at/above break-even" in spectrum.params_label.text()
    spectrum.rank_line.setValue(10_000)  # past the last singular value: held at it
    assert spectrum.rank() == min(m, n)


def test_dragging_the_rank_line_with_the_mouse_moves_the_preview(qtbot, window):
    spectrum = window.layers.spectrum
    show_tab(qtbot, window, "Low rank")
    qtbot.waitUntil(lambda: spectrum.spectrum is not None, timeout=30_000)
    spectrum.set_rank(100)
    before = spectrum.params_label.text()
    dragged = []
    spectrum.sig_rank_dragged.connect(lambda layer, rank: dragged.append((layer, rank)))
    view_box = spectrum.plot.getPlotItem().getViewBox()
    y = view_box.viewRange()[1][0] * 0.5 + view_box.viewRange()[1][1] * 0.5

    def at(x):
        return spectrum.plot.mapFromScene(view_box.mapViewToScene(QPointF(x, y)))

    viewport = spectrum.plot.viewport()
    qtbot.mousePress(viewport, Qt.MouseButton.LeftButton, pos=at(100))
    for x in (90, 75, 60):
        qtbot.mouseMove(viewport, pos=at(x))
    qtbot.mouseRelease(viewport, Qt.MouseButton.LeftButton, pos=at(60))
    assert abs(spectrum.rank() - 60) <= 2
    assert spectrum.params_label.text() != before
    assert dragged and dragged[-1] == ("fc1", spectrum.rank())


def test_the_svd_runs_in_the_background_once_per_layer(qtbot, window):
    spectrum, s = window.layers.spectrum, window.session
    show_tab(qtbot, window, "Low rank")
    qtbot.waitUntil(lambda: spectrum.spectrum is not None, timeout=30_000)
    window.select_layer("fc2")
    assert spectrum.spectrum is None and s.runner.busy  # not on the UI thread: it arrives later
    qtbot.waitUntil(lambda: spectrum.spectrum is not None, timeout=30_000)
    assert spectrum.spectrum.layer == "fc2" and len(spectrum.spectrum.values) == 100
    assert spectrum.break_even_line.value() == pytest.approx(100 * 300 / 400)
    qtbot.waitUntil(lambda: not s.runner.busy, timeout=60_000)  # other background work (the cost count) done too
    window.select_layer("fc1")  # known: drawn at once, nothing started
    assert spectrum.spectrum is not None and spectrum.spectrum.layer == "fc1" and not s.runner.busy


# ---------------------------------------------------------------------------------------------- LeNet-5
def test_separable_toggle_shows_weights_before_and_after_for_eligible_convs(qtbot, lenet5):
    toggle = lenet5.layers.separable
    conv2 = lenet5.session.loaded.module.conv2
    n, c, kh, kw = conv2.weight.shape
    lenet5.select_layer("conv2")
    assert toggle.isVisible()
    if not kind_registered("separable"):  # before the real step is merged: a preview that says so
        assert not toggle.check.isEnabled() and toggle.note.isVisible() and "not installed" in toggle.note.toolTip()
    before, after = n * c * kh * kw, c * kh * kw + c * n  # 25,000 and 1,500 for LeNet-5's conv2
    assert f"weights {before:,} → {after:,} ({before / after:.1f}× fewer)" == toggle.params_label.text()
    from core.analysis.cost import count_macs, human_macs
    from core.methods.separable import separable_block

    qtbot.waitUntil(lambda: lenet5.session.measurements.cost is not None, timeout=60_000)
    x = torch.zeros(1, 20, 12, 12)  # conv2's input: 20 maps of 12x12
    macs_before, macs_after = count_macs(conv2, x).total, count_macs(separable_block(conv2), x).total
    assert toggle.macs_label.isVisible()
    assert toggle.macs_label.text() == f"· MACs {human_macs(macs_before)} → {human_macs(macs_after)}"
    assert toggle.macs_label.toolTip() == f"multiply-accumulates per image: {macs_before:,} now, {macs_after:,} separable"
    lenet5.select_layer("fc1")
    assert not toggle.isVisible()  # a Linear has no separable form
    lenet5.select_layer("conv1")
    assert toggle.isVisible() and "weights 500 → 45 " in toggle.params_label.text()


def test_the_spatial_method_factorises_a_conv_as_jaderberg_arranges_it(qtbot, lenet5):
    spectrum = lenet5.layers.spectrum
    lenet5.select_layer("conv2")
    show_tab(qtbot, lenet5, "Low rank")
    qtbot.waitUntil(lambda: spectrum.spectrum is not None, timeout=30_000)
    w = lenet5.session.loaded.module.conv2.weight.detach().double()
    n, c, kh, kw = w.shape
    np.testing.assert_allclose(spectrum.spectrum.values, torch.linalg.svdvals(w.reshape(n, -1)).numpy(), rtol=1e-4)
    assert spectrum.break_even_line.value() == pytest.approx(n * c * kh * kw / (n + c * kh * kw))
    spatial = next(b for b in spectrum.method_widgets if b.text() == "spatial")
    qtbot.mouseClick(spatial, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: spectrum.spectrum is not None and spectrum.spectrum.method == "spatial", timeout=30_000)
    arranged = w.permute(1, 2, 0, 3).reshape(c * kh, n * kw)
    np.testing.assert_allclose(spectrum.spectrum.values, torch.linalg.svdvals(arranged).numpy(), rtol=1e-4)
    assert spectrum.break_even_line.value() == pytest.approx(c * kh * n * kw / (c * kh + n * kw))
    spectrum.set_rank(10)
    assert f"{10 * (c * kh + n * kw):,} weights" in spectrum.params_label.text()


# ---------------------------------------------------------------------------------------------- the recipe
@pytest.fixture
def arch_kinds(studio, lenet5_studio):
    """The drafts of both studios are put back as they were after the test."""
    drafts = [(w.session.draft, w.session.draft.to_recipe()) for w in (studio, lenet5_studio)]
    yield
    for draft, recipe in drafts:
        draft.load_recipe(recipe)


def test_the_separable_toggle_adds_and_takes_out_layers_of_the_separable_step(qtbot, lenet5, arch_kinds):
    from core.recipe import Recipe

    toggle, draft = lenet5.layers.separable, lenet5.session.draft
    lenet5.select_layer("fc1")  # the kind is registered now: the toggle sees it when a conv is selected
    lenet5.select_layer("conv2")
    assert toggle.check.isEnabled() and not toggle.is_checked() and not toggle.note.isVisible()
    qtbot.mouseClick(toggle.check, Qt.MouseButton.LeftButton)
    assert toggle.is_checked()
    assert toggle.params_label.text() == "<b>separable</b>: weights 25,000 → 1,500 (16.7× fewer)"
    assert draft.step_of("separable").select.layers == ("conv2",)
    kinds = [s.kind for s in draft.steps]
    assert kinds.index("separable") < kinds.index("finetune")  # an architecture change comes before training
    assert Recipe.from_text(draft.to_recipe().to_yaml()) == draft.to_recipe()
    lenet5.select_layer("conv1")
    assert not toggle.is_checked()
    toggle.check.setChecked(True)
    assert draft.step_of("separable").select.layers == ("conv2", "conv1")
    lenet5.select_layer("conv2")
    assert toggle.is_checked()  # the toggle shows what the recipe holds
    toggle.check.setChecked(False)
    assert draft.step_of("separable").select.layers == ("conv1",)
    lenet5.select_layer("conv1")
    toggle.check.setChecked(False)
    assert draft.step_of("separable") is None  # an empty selection would mean every conv: the step goes


def test_the_rank_goes_into_the_recipe_and_the_recipe_moves_the_line(qtbot, window, arch_kinds):
    from core.recipe import Recipe

    spectrum, draft = window.layers.spectrum, window.session.draft
    show_tab(qtbot, window, "Weights")
    show_tab(qtbot, window, "Low rank")
    qtbot.waitUntil(lambda: spectrum.spectrum is not None, timeout=30_000)
    assert spectrum.add_button.isEnabled()
    spectrum.set_rank(40)
    qtbot.mouseClick(spectrum.add_button, Qt.MouseButton.LeftButton)
    step = draft.step_of("low_rank")
    assert step.select.layers == ("fc1",) and step.select.overrides == (("fc1", 40),) and step.method == "channel"
    assert any("40" in text for text in draft.overrides_of("fc1"))
    spectrum.rank_line.setValue(60)
    spectrum.rank_line.sigPositionChangeFinished.emit(spectrum.rank_line)  # as letting go of a drag does
    assert draft.step_of("low_rank").select.overrides == (("fc1", 60),)
    draft.set_layer_value("low_rank", "fc1", 25)  # the recipe changed elsewhere (a loaded file): the line follows
    assert spectrum.rank() == 25 and f"{25 * (300 + 784):,} weights" in spectrum.params_label.text()
    assert Recipe.from_text(draft.to_recipe().to_yaml()) == draft.to_recipe()
    window.select_layer("fc2")
    qtbot.waitUntil(lambda: spectrum.spectrum is not None, timeout=30_000)
    spectrum.rank_line.sigPositionChangeFinished.emit(spectrum.rank_line)  # fc2 is not in the step: unchanged
    assert draft.step_of("low_rank").select.overrides == (("fc1", 25),)


def test_the_distill_section_sets_t_and_the_teacher_of_the_softened_view(qtbot, window, arch_kinds):
    from core.io.loading import load_model
    from gui.methods.distill import DistillSection

    draft, view = window.session.draft, window.layers.softened
    section = DistillSection(draft)
    draft.sig_changed.connect(section.refresh)  # as the recipe panel connects its sections
    try:
        section.refresh()
        assert not section.temperature.isEnabled()
        section.enabled.setChecked(True)
        step = draft.step_of("distill")
        defaults = type(step)()
        assert step.teacher == "original" and (step.temperature, step.alpha, step.epochs) == (
            defaults.temperature, defaults.alpha, defaults.epochs)
        show_tab(qtbot, window, "Softened outputs")
        view.image_box.setValue(0)
        qtbot.waitUntil(lambda: view.logits is not None, timeout=30_000)
        section.temperature.setValue(10.0)
        assert draft.step_of("distill").temperature == 10.0 and view.temperature_value() == 10.0
        np.testing.assert_allclose(bars(view.soft_bars), softmax(view.logits, 10.0), atol=1e-9)
        view.temperature.setValue(3.0)  # the view's slider is the step's T too
        assert draft.step_of("distill").temperature == 3.0 and section.temperature.value() == 3.0
        section.alpha.setValue(0.5)
        assert draft.step_of("distill").alpha == 0.5
        section.teacher.setCurrentIndex(section.teacher.findData("zoo:lenet5"))
        assert draft.step_of("distill").teacher == "zoo:lenet5" and "zoo:lenet5" in view.title.text()
        qtbot.waitUntil(lambda: view.logits is not None, timeout=60_000)
        teacher = load_model("zoo:lenet5").module
        with torch.inference_mode():
            expected = teacher(to_float(window.session.data.test.images[:1]))[0].double().numpy()
        np.testing.assert_allclose(view.logits, expected, atol=1e-5)
        section.enabled.setChecked(False)
        assert draft.step_of("distill") is None
    finally:
        draft.sig_changed.disconnect(section.refresh)
        section.deleteLater()


def test_a_layer_the_step_skips_is_said_in_the_studio(qtbot, window):
    """A rank at or above break-even saves nothing: the run's note reaches the status bar (and its report)."""
    from core.recipe import Recipe

    s, before = window.session, len(window.session.variants.variants)
    notes = []
    s.sig_notes.connect(lambda name, ns: notes.append((name, ns)))
    recipe = Recipe.from_text("name: skip fc2\nsteps: [{kind: low_rank, layers: [fc1, fc2], overrides: {fc1: 20, fc2: 80}},"
                              " {kind: encode}]")
    assert s.apply(recipe, on=0)
    qtbot.waitUntil(lambda: len(s.variants.variants) == before + 1, timeout=120_000)
    wait_idle(qtbot, window)
    (name, (note,)), = notes
    assert "fc2 not factorised: rank 80 is at or above break-even 75.0" in note
    assert window.statusBar().currentMessage() == f"{name}: {note}"
    report = s.variants.reports[max(s.variants.reports)]
    assert report["notes"] == [note]
    assert s.variants.models[max(s.variants.models)].module.get_submodule("fc2").__class__.__name__ == "Linear"

