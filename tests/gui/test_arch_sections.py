"""The recipe panel's low-rank, separable and distillation sections edit their steps, which round-trip
through YAML; run with the registered kinds."""

from __future__ import annotations

import pytest

from core.recipe import Recipe, kinds
from gui.methods import sections_for
from gui.recipe_draft import RecipeDraft
from gui.widgets.recipe_panel import RecipePanel


@pytest.fixture
def panel(qapp):
    draft = RecipeDraft()
    panel = RecipePanel(draft)
    yield panel
    panel.deleteLater()


def kinds_of(draft) -> list[str]:
    return [s.kind for s in draft.steps]


def test_the_sections_are_in_the_panel_in_the_registrys_order(panel):
    names = [type(s).__name__ for s in panel.sections]
    assert {"LowRankSection", "SeparableSection", "DistillSection"} <= set(names)
    assert names.index("PruningSection") < names.index("LowRankSection") < names.index("DistillSection") \
        < names.index("FineTuneSection")
    assert [type(s).__name__ for s in panel.sections] == [c.__name__ for c in sections_for(kinds())]


def test_the_low_rank_section_makes_and_edits_its_step(panel):
    draft, section = panel.draft, panel.section("LowRankSection")
    assert draft.step_of("low_rank") is None and not section.energy.isEnabled()
    section.use.setCurrentIndex(section.use.findData(True))
    step = draft.step_of("low_rank")
    defaults = type(step)()
    assert (step.rank, step.energy, step.method) == (defaults.rank, defaults.energy, defaults.method)
    assert kinds_of(draft).index("low_rank") < kinds_of(draft).index("finetune")
    assert draft.kind_index("low_rank") in draft.controlled()  # not listed again as a read-only card
    assert not any(card.step.kind == "low_rank" for card in panel.cards)
    section.method.setCurrentIndex(section.method.findData("spatial"))
    section.energy.setValue(0.8)
    assert draft.step_of("low_rank").method == "spatial" and draft.step_of("low_rank").energy == 0.8
    section.rank.setValue(12)
    assert draft.step_of("low_rank").rank == 12 and not section.energy.isEnabled()  # a rank: energy unused
    assert Recipe.from_text(draft.to_recipe().to_yaml()) == draft.to_recipe()
    section.use.setCurrentIndex(section.use.findData(False))
    assert "low_rank" not in kinds_of(draft)


def test_the_separable_section_fits_the_layers_the_toggle_chose(panel):
    draft, section = panel.draft, panel.section("SeparableSection")
    draft.set_layer_selected("separable", "conv2", True)
    assert section.use.currentData() is True and section.layers.text() == "Layers: conv2"
    section.fit_steps.setValue(50)
    assert draft.step_of("separable").fit_steps == 50 and draft.step_of("separable").select.layers == ("conv2",)
    assert Recipe.from_text(draft.to_recipe().to_yaml()) == draft.to_recipe()


def test_a_loaded_recipe_shows_in_the_sections_and_comes_back_equal(panel):
    text = """
steps:
  - {kind: low_rank, energy: 0.95, method: spatial, layers: [fc1, fc2], overrides: {fc1: 30}}
  - {kind: separable, fit_steps: 20, ignore: [conv1]}
  - {kind: distill, teacher: 'zoo:lenet300', temperature: 8.0, alpha: 0.7, epochs: 3}
  - {kind: finetune, epochs: 1}
"""
    recipe = Recipe.from_text(text)
    draft = panel.draft
    draft.load_recipe(recipe)
    assert draft.to_recipe() == recipe
    low, distill = panel.section("LowRankSection"), panel.section("DistillSection")
    assert low.method.currentData() == "spatial" and low.energy.value() == pytest.approx(0.95)
    assert distill.temperature.value() == pytest.approx(8.0) and distill.teacher.currentData() == "zoo:lenet300"
    assert distill.alpha.value() == pytest.approx(0.7) and distill.epochs.value() == 3
    assert panel.section("SeparableSection").fit_steps.value() == 20
    assert draft.layer_value("low_rank", "fc1") == 30 and draft.selects("low_rank", "fc2")
    assert not draft.selects("separable", "conv1") and draft.selects("separable", "conv2")
    draft.set_layer_selected("separable", "conv1", True)  # the toggle on an ignored layer takes it off ignore
    assert draft.step_of("separable").select.ignore == ()
    draft.set_layer_selected("separable", "conv2", False)  # every layer but this one: it goes on ignore
    assert draft.step_of("separable").select.ignore == ("conv2",)
    assert not panel.cards  # every step has its section
