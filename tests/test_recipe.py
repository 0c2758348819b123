"""Recipes: every step round-trips through YAML and JSON; invalid recipes are refused naming the field."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from core.methods.allocation import Allocate
from core.methods.coding import Encode
from core.methods.distill import Distill, DistillSpec
from core.methods.early_exit import EarlyExit
from core.methods.finetune import FineTune
from core.methods.int8 import QuantizeActivations
from core.methods.low_rank import LowRank
from core.methods.magnitude import IterativePrune, PruneMagnitude
from core.methods.quantize import Quantize
from core.methods.separable import Separable
from core.methods.sharing import ShareFilters
from core.methods.structured import PruneStructured, RemoveUnits
from core.recipe import STEP_TYPES, Recipe, RecipeError, Selection, check_against
from core.resources import resource_path

EXAMPLES = [
    PruneMagnitude(sparsity=0.9, scope="global", select=Selection(("fc.*",), ("fc3",), (("fc2", 0.8),))),
    IterativePrune(sparsity=0.92, steps=3, epochs_per_step=2, lr=0.005, augment=True,
                   select=Selection(overrides=(("fc3", 0.5),))),
    PruneStructured(amount=0.3, importance="activation", scope="global", seed=3, select=Selection(("conv.*",))),
    RemoveUnits(layer="fc1", units=(3, 1, 4)),
    LowRank(rank=0, energy=0.8, method="spatial", select=Selection(("conv.*",), (), (("conv2", 12),))),
    Separable(fit_steps=50, fit_lr=0.005, batches=2, select=Selection(("conv2",))),
    ShareFilters(k=8, select=Selection(overrides=(("fc1", 32),))),
    FineTune(epochs=3, lr=0.02, augment=True, batch_size=64),
    Quantize(method="uniform", bits=4, granularity="channel", symmetric=False, finetune_epochs=2, lr=0.002,
             select=Selection(overrides=(("conv1", 8),))),
    QuantizeActivations(mode="static", calibration_batches=4),
    Encode(huffman=False, index_bits=5, small_tensors="float32"),
    Allocate(target_bytes=30_000, sparsities=(0.0, 0.9), bits=(8, 4), limit=500, solver="greedy"),
    Distill(teacher="zoo:lenet5", temperature=2.5, alpha=0.7, epochs=3, lr=0.02, augment=True, batch_size=64,
            student="mlp800"),
    FineTune(epochs=2, distill=DistillSpec("original", 8.0, 0.5)),
    IterativePrune(steps=2, distill=DistillSpec(teacher="zoo:lenet300", temperature=3)),
    Quantize(finetune_epochs=1, distill=DistillSpec(alpha=1.0)),
    EarlyExit(after=("conv1", "conv2"), head="fc", train="heads", epochs=1, weights=(0.5, 0.3, 1.0),
              criterion="confidence", thresholds=(0.9, 0.8)),
]


def test_examples_cover_every_kind():
    assert {type(s) for s in EXAMPLES} == set(STEP_TYPES.values())


@pytest.mark.parametrize("step", EXAMPLES, ids=lambda s: s.kind)
def test_every_step_round_trips_through_yaml_and_json(step):
    recipe = Recipe(steps=(step,), name="t", description="round trip", seed=7)
    assert Recipe.from_text(recipe.to_yaml()) == recipe
    assert Recipe.from_text(recipe.to_json()) == recipe
    assert Recipe.from_dict(recipe.to_dict()) == recipe


def test_recipes_are_immutable():
    recipe = Recipe(steps=(FineTune(),))
    with pytest.raises(dataclasses.FrozenInstanceError):
        recipe.steps[0].epochs = 5
    with pytest.raises(dataclasses.FrozenInstanceError):
        recipe.name = "x"


@pytest.mark.parametrize("text, field, why", [
    ("steps: [{kind: shrink}]", "steps[0].kind", "unknown step 'shrink'"),
    ("steps: [{kind: prune_magnitude, sparsity: 1.0}]", "steps[0].sparsity", "in [0, 1)"),
    ("steps: [{kind: finetune}, {kind: prune_magnitude, sparsity: -0.1}]", "steps[1].sparsity", "in [0, 1)"),
    ("steps: [{kind: quantize, bits: 0}]", "steps[0].bits", "in [1, 8]"),
    ("steps: [{kind: quantize, bits: 9}]", "steps[0].bits", "in [1, 8]"),
    ("steps: [{kind: quantize, overrides: {fc1: 12}}]", "steps[0].overrides[fc1]", "in [1, 8]"),
    ("steps: [{kind: quantize, method: kmeans, granularity: channel}]", "steps[0].granularity", "one codebook"),
    ("steps: [{kind: finetune, epochz: 3}]", "steps[0].epochz", "unknown field for finetune"),
    ("steps: [{kind: prune_magnitude, layers: ['fc[']}]", "steps[0].layers[0]", "invalid regular expression"),
    ("steps: [{kind: remove_units, layer: fc1, units: [1, 1]}]", "steps[0].units", "twice"),
    ("steps: [{kind: encode}, {kind: finetune}]", "steps[0]", "encode must be the last step"),
    ("version: 2\nsteps: []", "version", "reads recipe version 1"),
    ("stepz: []", "stepz", "unknown field"),
    ("[1, 2]", "recipe", "must be a mapping"),
    ("steps: {a: 1}", "steps", "must be a list"),
    ("steps: [{kind: finetune", "recipe", "not valid YAML"),
])
def test_invalid_recipes_name_the_field(text, field, why):
    with pytest.raises(RecipeError) as info:
        Recipe.from_text(text)
    message = str(info.value)
    assert message.startswith(field + ":") and why in message


def test_yaml_cannot_construct_objects():
    with pytest.raises(RecipeError, match="not valid YAML"):
        Recipe.from_text("steps: !!python/object/apply:os.system ['echo hi']")


def test_patterns_must_match_a_layer():
    recipe = Recipe.from_text("steps: [{kind: prune_magnitude, layers: [fc1, 'conv.*']}]")
    with pytest.raises(RecipeError, match=r"steps\[0\].layers: pattern 'conv.\*' matches no layer"):
        check_against(recipe, ["fc1", "fc2"])
    check_against(Recipe.from_text("steps: [{kind: prune_magnitude, layers: ['fc[12]']}]"), ["fc1", "fc2"])
    with pytest.raises(RecipeError, match=r"steps\[0\].layer: no layer named 'fc9'"):
        check_against(Recipe(steps=(RemoveUnits(layer="fc9", units=(1,)),)), ["fc1"])


def test_selection_and_overrides():
    sel = Selection(layers=("fc.*",), ignore=("fc3",), overrides=(("fc1", 0.95), ("fc.*", 0.5)))
    assert sel.select(["fc1", "fc2", "fc3", "conv1"]) == ["fc1", "fc2"]
    assert sel.value_for("fc1", 0.1) == 0.95 and sel.value_for("fc2", 0.1) == 0.5
    assert sel.value_for("conv1", 0.1) == 0.1


def test_shipped_recipes_parse():
    bench = Path(__file__).resolve().parents[1] / "bench" / "recipes"  # the variants BENCHMARKS.md measures
    files = sorted(resource_path("recipes").glob("*.yaml")) + sorted(bench.glob("*.yaml"))
    assert len(files) > len(list(bench.glob("*.yaml"))) > 0
    for path in files:
        recipe = Recipe.from_text(path.read_text())
        assert recipe.name and recipe.steps
