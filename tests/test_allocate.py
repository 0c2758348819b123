"""Automatic allocation: the knapsack is exact, the options are priced and measured as the pipeline makes
them, the allocate step and ``compress --target-bytes`` meet their target and change nothing on failure."""

from __future__ import annotations

import dataclasses
import itertools
import json
import random

import pytest
import torch

from core.analysis import allocate as alloc
from core.analysis.sensitivity import measure_settings
from core.eval.data import load_dataset
from core.io import load_model
from core.methods.allocation import Allocate
from core.methods.coding import Encode
from core.methods.magnitude import PruneMagnitude
from core.methods.quantize import Quantize
from core.pipeline.apply import apply_recipe
from core.pipeline.context import CompressionError
from core.progress import run
from core.recipe import Recipe, RecipeError
from core.analysis.perturb import Setting
from tests.test_cli import prunescope
from tests.test_pipeline import assert_unchanged, state_copy

BASE = Recipe(steps=(PruneMagnitude(sparsity=0.5), Quantize(bits=5), Encode()), name="base")


def _table(seed: int, layers: int = 3, options: int = 4) -> alloc.OptionTable:
    rng = random.Random(seed)
    table = {f"l{i}": tuple(alloc.Option((("sparsity", k / 10),), rng.randint(10, 400), 0.99 - rng.random() * 0.2)
                            for k in range(options)) for i in range(layers)}
    return alloc.OptionTable((), table, 0.99, rng.randint(0, 50), "top-1", 100, "val")


def _brute(table: alloc.OptionTable, budget: int):
    best = None
    for combo in itertools.product(*table.options.values()):
        choice = dict(zip(table.options, combo))
        if table.predicted_bytes(choice) <= budget:
            drop = sum(table.drop(o) for o in combo)
            best = drop if best is None else min(best, drop)
    return best


@pytest.mark.parametrize("seed", range(6))
def test_knapsack_is_the_exact_optimum_and_greedy_never_beats_it(seed):
    table = _table(seed)
    for budget in range(table.rest_bytes, table.rest_bytes + 1300, 37):
        exact = _brute(table, budget)
        if exact is None:
            with pytest.raises(alloc.AllocationError, match="smallest these options make"):
                alloc.solve(table, budget)
            continue
        choice = alloc.solve(table, budget)
        assert table.predicted_bytes(choice) <= budget
        assert sum(table.drop(o) for o in choice.values()) == pytest.approx(exact, abs=1e-12)
        greedy = alloc.solve(table, budget, solver="greedy")
        assert table.predicted_bytes(greedy) <= budget
        assert sum(table.drop(o) for o in greedy.values()) >= exact - 1e-12


def test_max_drop_gives_the_smallest_file_within_the_drop():
    table = _table(3)
    combos = [dict(zip(table.options, c)) for c in itertools.product(*table.options.values())]
    for max_drop in (0.02, 0.1, 0.2, 0.4):
        fitting = [c for c in combos if table.lost(c) <= max_drop]
        if not fitting:
            with pytest.raises(alloc.AllocationError, match="loses at most"):
                alloc.solve(table, max_drop=max_drop)
            continue
        choice = alloc.solve(table, max_drop=max_drop)
        assert table.lost(choice) <= max_drop
        assert table.predicted_bytes(choice) <= min(table.predicted_bytes(c) for c in fitting) * 1.001 + 1


@pytest.fixture(scope="module")
def lenet300_table():
    loaded, data = load_model("zoo:lenet300"), load_dataset("mnist")
    table = run(alloc.measure_options(loaded, data, BASE, (0.0, 0.7, 0.9), (8, 4, 2), limit=300))
    return loaded, data, table


def test_options_are_priced_by_the_encoder_and_measured_as_a_whole_evaluation(lenet300_table):
    loaded, data, table = lenet300_table
    assert set(table.options) == {"fc1", "fc2", "fc3"} and all(len(o) == 9 for o in table.options.values())
    assert table.split == "val" and table.count == 300
    # the predicted file is the encoder's price of the model with those options, but for the zlib-compressed
    # header's shares, which do not add up exactly (a few bytes per layer)
    for values in ((0.7, 4), (0.9, 2), (0.0, 8)):
        choice = table.uniform({"sparsity": values[0], "bits": values[1]})
        exact = alloc.exact_bytes(loaded.module, BASE, table, choice)
        assert abs(table.predicted_bytes(choice) - exact) <= 24 * len(choice) and exact > 1000
    made = run(apply_recipe(alloc.recipe_for(BASE, table, choice), loaded, data, measure_before=False))
    # with what the file records of the model, the exact price is the file the pipeline writes
    assert made.compressed_bytes == alloc.exact_bytes(loaded.module, BASE, table, choice, made.model_info)
    # an option's metric is the whole model re-evaluated with that layer alone at that option
    option = table.options["fc2"][4]
    assert dict(option.values) == {"sparsity": 0.7, "bits": 4}

    def setting_of(name, module, weight, level):
        new, _ = alloc.option_weight(weight, dict(option.values))
        return Setting(new, 0)

    naive = run(measure_settings(loaded, data, ["fc2"], [0], setting_of, 300, mode="naive", split="val"))
    assert naive.figures["fc2"][0][1]["metric"] == pytest.approx(option.metric, abs=1e-6)
    assert naive.baseline["metric"] == pytest.approx(table.baseline, abs=1e-6)


def test_knapsack_is_at_least_as_good_as_every_uniform_setting_it_could_choose(lenet300_table):
    _, _, table = lenet300_table
    for s, b in itertools.product((0.0, 0.7, 0.9), (8, 4, 2)):
        uniform = table.uniform({"sparsity": s, "bits": b})
        choice = alloc.solve(table, table.predicted_bytes(uniform))
        assert sum(table.drop(o) for o in choice.values()) <= sum(table.drop(o) for o in uniform.values()) + 1e-12


def test_recipe_for_writes_ordinary_steps_with_exact_layer_overrides(lenet300_table):
    _, _, table = lenet300_table
    choice = {"fc1": table.options["fc1"][8], "fc2": table.options["fc2"][8], "fc3": table.options["fc3"][0]}
    recipe = alloc.recipe_for(BASE, table, choice)
    prune, quantize = recipe.steps[0], recipe.steps[1]
    assert (prune.sparsity, dict(prune.select.overrides)) == (0.9, {"fc3": 0.0})
    assert (quantize.bits, dict(quantize.select.overrides)) == (2, {"fc3": 8})
    assert Recipe.from_text(recipe.to_yaml()) == recipe


def test_allocate_step_meets_the_target_reports_prediction_and_measurement(lenet300_table):
    loaded, data, _ = lenet300_table
    before = state_copy(loaded.module)
    step = Allocate(target_bytes=40_000, sparsities=(0.0, 0.7, 0.9), bits=(8, 4, 2), limit=300)
    result = run(apply_recipe(Recipe(steps=(step, *BASE.steps)), loaded, data))
    assert_unchanged(loaded.module, before)
    section = result.sections["allocation"]
    assert result.compressed_bytes <= 40_000
    assert section["predicted_bytes"] == result.compressed_bytes  # no training: the prediction is the file
    assert 0.0 < section["measured_metric"] <= 1.0 and section["examples"] == 300
    # the chosen recipe, run as ordinary steps, makes the same file
    again = run(apply_recipe(Recipe.from_dict(section["recipe"]), loaded, data, measure_before=False))
    assert again.file_bytes == result.file_bytes


def test_allocate_refuses_bad_recipes_before_changing_anything(lenet300_table):
    loaded, data, _ = lenet300_table
    with pytest.raises(RecipeError, match="exactly one target"):
        Allocate(target_bytes=1000, ratio=20)
    with pytest.raises(RecipeError, match="exactly one target"):
        Allocate()
    with pytest.raises(RecipeError, match="first"):
        Recipe(steps=(PruneMagnitude(), Allocate(ratio=20), Quantize()))
    before = state_copy(loaded.module)
    with pytest.raises(CompressionError, match="nothing to allocate"):
        run(apply_recipe(Recipe(steps=(Allocate(ratio=20), Encode())), loaded, data))
    with pytest.raises(CompressionError, match="smallest these options make"):
        run(apply_recipe(Recipe(steps=(Allocate(target_bytes=500, sparsities=(0.9,), bits=(2,), limit=100),
                                       *BASE.steps)), loaded, data))
    assert_unchanged(loaded.module, before)


def test_compress_target_bytes_on_the_command_line(tmp_path):
    out = tmp_path / "out"
    r = prunescope("compress", "zoo:lenet300", "--target-ratio", "30", "--out", str(out), "--quiet")
    assert r.returncode == 0, r.stderr
    report = json.loads((out / "report.json").read_text())
    section = report["allocation"]
    assert report["compressed_bytes"] <= report["original_bytes"] / 30
    assert section["measured_bytes"] == report["compressed_bytes"] == section["predicted_bytes"]
    assert "predicted" in r.stdout and "measured" in r.stdout
    recipe = Recipe.from_file(out / "allocated.yaml")
    assert [s.kind for s in recipe.steps] == ["prune_magnitude", "quantize", "encode"]
    bad = prunescope("compress", "zoo:lenet300", "--target-bytes", "100", "--out", str(tmp_path / "bad"))
    assert bad.returncode == 2 and "smallest these options make" in bad.stderr
    assert not (tmp_path / "bad").exists()
    none = prunescope("compress", "zoo:lenet300", "--out", str(tmp_path / "none"))
    assert none.returncode != 0 and "--recipe" in none.stderr


def test_fidelity_allocation_without_labels():
    loaded = load_model("zoo:lenet300")
    loaded.probe_inputs = [torch.rand(64, 784, generator=torch.Generator().manual_seed(0))]
    table = run(alloc.measure_options(loaded, None, BASE, (0.0, 0.9), (8, 2), limit=None))
    assert table.split == "inputs" and table.baseline == pytest.approx(1.0) and table.baseline_loss is None
    assert min(o.metric for v in table.options.values() for o in v) < 1.0


def test_html_report_shows_the_allocation_and_the_sensitivity_heat_map(lenet300_table):
    from core.analysis.sensitivity import sensitivity
    from core.pipeline.variants import compress_variant, original_variant
    from core.report.html_report import build_html

    loaded, data, _ = lenet300_table
    small = dataclasses.replace(data, test=data.test.subset(500))
    step = Allocate(ratio=25, sparsities=(0.0, 0.9), bits=(8, 2), limit=300)
    variant, result = run(compress_variant(1, "allocated", Recipe(steps=(step, *BASE.steps)), loaded, small))
    assert variant.allocation["measured_bytes"] == result.compressed_bytes
    sens = run(sensitivity(loaded, small, "prune", (0.5, 0.99), limit=200))
    page = build_html("lenet300", run(original_variant(loaded, small)), variant, {}, sensitivity=sens)
    assert "<h2>Allocation</h2>" in page and f"measured {result.compressed_bytes:,} bytes" in page
    assert f"Predicted {variant.allocation['predicted_bytes']:,} bytes" in page
    for name, choice in variant.allocation["layers"].items():
        assert f"<td>{name}</td><td>{choice['sparsity']:.0%}</td><td>{choice['bits']:g}</td>" in page
    assert "<h2>Sensitivity</h2>" in page
    fc1_at_99 = sens.curve("fc1")[1]
    assert f"{100 * fc1_at_99.metric:.2f}</td>" in page and "#c62828" in page  # 99% pruned: a red cell


def test_lower_is_better_metrics_count_a_rise_as_the_loss():
    options = {"a": (alloc.Option((("bits", 8.0),), 100, 10.0), alloc.Option((("bits", 2.0),), 10, 20.0)),
               "b": (alloc.Option((("bits", 8.0),), 100, 10.0), alloc.Option((("bits", 2.0),), 10, 11.0))}
    table = alloc.OptionTable((), options, 10.0, 0, "perplexity", 8, "inputs")
    choice = alloc.solve(table, 120)  # room for one small layer: the one whose perplexity rises least
    assert choice["b"].bytes == 10 and choice["a"].bytes == 100
    assert table.predicted_metric(choice) == pytest.approx(11.0) and table.lost(choice) == pytest.approx(1.0)
    both = {"a": options["a"][1], "b": options["b"][1]}
    assert table.predicted_metric(both) == pytest.approx(10.0 * 2.0 * 1.1)  # the kept fractions multiply
    errors = alloc.OptionTable((), options, 0.0, 0, "relative error", 8, "inputs")
    assert errors.predicted_metric(both) == pytest.approx(31.0)  # from a baseline of 0 the rises add
