"""The studio's recipe is the recipe: every recipe loads into the studio and comes back equal, controls
edit only their own field, steps without controls are shown and kept, and Apply after Load runs the file."""

from __future__ import annotations

import dataclasses

import pytest
from PySide6.QtWidgets import QGroupBox

from core.recipe import Recipe, kinds, unregister_step
from core.resources import resource_path
from gui.methods import register_section, sections_for
from gui.methods.base import Section
from gui.recipe_draft import RecipeDraft
from gui.widgets.recipe_panel import RecipePanel
from tests import test_compress_cli, test_pipeline, test_recipe, test_step_registry
from tests.gui.conftest import wait_idle

EVERY_KIND = """
name: every-field
description: what the studio's first draft dropped
seed: 3
steps:
  - {kind: iterative_prune, sparsity: 0.6, steps: 3, epochs_per_step: 2, lr: 0.02, ignore: [fc3], overrides: {fc1: 0.7}}
  - {kind: remove_units, layer: fc2, units: [0, 5]}
  - {kind: finetune, epochs: 2, lr: 0.005, augment: true, batch_size: 64}
  - {kind: quantize, method: uniform, bits: 6, granularity: channel, symmetric: false, layers: ['fc[12]']}
  - {kind: quantize_activations, mode: dynamic}
  - {kind: encode, huffman: true, index_bits: 5, small_tensors: float32}
"""


def every_recipe() -> dict[str, Recipe]:
    """The shipped recipes and every recipe the tests write (each example step as a recipe of its own)."""
    recipes = {p.stem: Recipe.from_text(p.read_text()) for p in sorted(resource_path("recipes").glob("*.yaml"))}
    recipes.update({f"example-{s.kind}": Recipe(steps=(s,), name="example") for s in test_recipe.EXAMPLES})
    recipes.update(pipeline=test_pipeline.FULL, cli=Recipe.from_text(test_compress_cli.QUICK),
                   every=Recipe.from_text(EVERY_KIND), nameless=Recipe.from_text("steps: [{kind: finetune}]"))
    return recipes


@pytest.fixture
def toy_kind():
    test_step_registry.register()
    yield
    unregister_step("toy_shrink")


@pytest.mark.parametrize("name", list(every_recipe()))
def test_every_recipe_loads_into_the_studio_and_comes_back_equal(qapp, name):
    recipe = every_recipe()[name]
    draft = RecipeDraft()
    panel = RecipePanel(draft)  # the panel shows it too: showing changes nothing
    draft.load_recipe(recipe)
    assert draft.to_recipe() == recipe
    assert Recipe.from_text(draft.to_recipe().to_yaml()) == recipe
    panel.deleteLater()


def test_a_plugin_kind_loads_and_comes_back_equal(qapp, toy_kind):
    recipe = Recipe.from_text(test_step_registry.RECIPE)
    draft = RecipeDraft()
    panel = RecipePanel(draft)
    draft.load_recipe(recipe)
    assert draft.to_recipe() == recipe
    assert [card.step.kind for card in panel.cards] == ["toy_shrink"]
    assert "factor: 0.25" in panel.cards[0].settings.text()


def test_a_control_edits_its_own_field_and_nothing_else(qapp):
    recipe = Recipe.from_text(EVERY_KIND)
    draft = RecipeDraft()
    panel = RecipePanel(draft)
    draft.load_recipe(recipe)
    panel.section("QuantizeSection").bits.setValue(4)  # UI -> model
    changed = draft.to_recipe()
    assert changed.steps[3] == dataclasses.replace(recipe.steps[3], bits=4)
    assert [s for i, s in enumerate(changed.steps) if i != 3] == [s for i, s in enumerate(recipe.steps) if i != 3]
    assert (changed.name, changed.description, changed.seed) == (recipe.name, recipe.description, recipe.seed)
    draft.set(sparsity=0.75)
    assert draft.to_recipe().steps[0] == dataclasses.replace(recipe.steps[0], sparsity=0.75)  # ignore and fc1 kept


def test_loading_shows_the_recipe_in_the_controls_and_the_rest_read_only(qapp):
    draft = RecipeDraft()
    panel = RecipePanel(draft)
    draft.load_recipe(Recipe.from_text(EVERY_KIND))  # model -> UI
    pruning = panel.section("PruningSection")
    assert pruning.prune_method.currentData() == "iterative" and pruning.sparsity.value() == pytest.approx(0.6)
    assert panel.section("QuantizeSection").quant_method.currentData() == "uniform"
    assert panel.section("QuantizeSection").bits.value() == 6
    assert panel.section("FineTuneSection").epochs.value() == 2
    assert panel.section("EncodeSection").huffman.isChecked()
    assert [c.step.kind for c in panel.cards] == ["remove_units", "quantize_activations"]
    assert "layer: fc2 · units: 0, 5" in panel.cards[0].settings.text()
    assert not panel.others_title.isHidden()
    panel.cards[1].sig_remove.emit(panel.cards[1].index)  # the user takes a step out
    assert [s.kind for s in draft.steps] == ["iterative_prune", "remove_units", "finetune", "quantize", "encode"]
    assert [c.step.kind for c in panel.cards] == ["remove_units"]


def test_the_panel_has_one_section_per_kind_with_controls_chosen_from_the_registry(qapp, toy_kind):
    panel = RecipePanel(RecipeDraft())
    assert [type(s) for s in panel.sections] == sections_for(kinds())
    assert [s.title() for s in panel.sections] == ["Pruning", "Low rank", "Depthwise-separable", "Distillation", "Fine-tuning",
                                                 "Quantization", "File"]

    @register_section("toy_shrink")
    class ShrinkSection(Section):
        heading = "Shrink"

        def show_draft(self) -> None:
            pass

    try:
        with_toy = RecipePanel(RecipeDraft())
        assert [s.title() for s in with_toy.sections][-1] == "Shrink"
        assert all(isinstance(s, QGroupBox) for s in with_toy.sections)
    finally:
        from gui import methods

        methods._SECTIONS.pop("toy_shrink")


def test_apply_after_load_runs_exactly_the_file(qtbot, window, tmp_path):
    path = tmp_path / "every.yaml"
    recipe = Recipe.from_text(EVERY_KIND.replace("epochs_per_step: 2", "epochs_per_step: 0")
                              .replace("epochs: 2, lr: 0.005", "epochs: 0, lr: 0.005"))
    path.write_text(recipe.to_yaml())
    window.load_recipe_dialog(str(path))
    store = window.session.variants
    assert window.session.apply()
    qtbot.waitUntil(lambda: len(store.variants) == 2 and not window.session.runner.busy, timeout=180_000)
    variant = store.current
    assert variant.recipe == recipe and store.reports[variant.id]["recipe"] == recipe.to_dict()
    model = window.session.loaded.module
    assert model.fc2.out_features == 98  # remove_units ran
    fc3 = next(layer for layer in variant.layers if layer.name == "fc3.weight")
    assert fc3.kept == 1.0  # ignore: [fc3] held
    fc1 = next(layer for layer in variant.layers if layer.name == "fc1.weight")
    assert fc1.kept == pytest.approx(0.3, abs=1e-3) and fc1.index_bits == 5
    wait_idle(qtbot, window)


def test_an_edit_that_would_make_an_invalid_recipe_changes_nothing(qapp):
    recipe = Recipe.from_text("steps: [{kind: quantize, bits: 4}, {kind: prune_magnitude, sparsity: 0.5}]")
    draft = RecipeDraft()
    panel = RecipePanel(draft)
    draft.load_recipe(recipe)
    refused = []
    draft.sig_refused.connect(refused.append)
    draft.set(prune_method="structured")  # structured pruning may not follow quantize
    assert draft.to_recipe() == recipe and draft.prune_method == "magnitude"
    assert refused and "structured pruning must come before quantize" in refused[0]
    assert panel.section("PruningSection").prune_method.currentData() == "magnitude"  # the control went back
    draft.set(sparsity=0.6)  # and the draft still edits
    assert draft.to_recipe().steps[1].sparsity == 0.6
