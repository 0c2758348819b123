"""The step registry: a kind of step defined here, in a test file, runs through the pipeline and through
`python main.py compress` (as an installed plugin), with no change to any other module."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from typing import ClassVar

import pytest
import torch

from core.io import load_model
from core.methods.masks import prunable_layers
from core.pipeline.apply import apply_recipe
from core.progress import Progress, run
from core.recipe import Recipe, RecipeError, Step, kinds, register_step, step_kind, unregister_step
from core.recipe.validate import check_fraction
from tests.conftest import ROOT


@dataclass(frozen=True)
class Shrink(Step):
    """A toy kind: scale the selected layers' weights by ``factor``, one layer per progress report."""

    kind: ClassVar[str] = "toy_shrink"
    factor: float = 0.5

    def validate(self, where: str) -> None:
        super().validate(where)
        check_fraction(f"{where}.factor", self.factor)


def run_shrink(step: Shrink, ctx):
    layers = prunable_layers(ctx.model)
    names = ctx.layers(step, list(layers))
    for i, name in enumerate(names):
        with torch.no_grad():
            layers[name].weight.mul_(step.factor)
        yield Progress("shrink", i + 1, len(names), name)


def register() -> None:
    """What a plugin's entry point names: called once by Prunescope when it looks for methods."""
    register_step(Shrink, run_shrink, targets=lambda model: list(prunable_layers(model)), family="toy")


@pytest.fixture
def toy_kind():
    register()
    yield step_kind("toy_shrink")
    unregister_step("toy_shrink")  # the built-in kinds stay as they were for the other tests


RECIPE = """
name: toy
steps:
  - {kind: toy_shrink, factor: 0.25, layers: ['fc[12]']}
  - {kind: encode, small_tensors: float32}
"""


def test_a_toy_kind_runs_through_the_pipeline(toy_kind, lenet300):
    recipe = Recipe.from_text(RECIPE)
    assert Recipe.from_text(recipe.to_yaml()) == recipe and "toy_shrink" in kinds()
    stages = []
    result = run(apply_recipe(recipe, lenet300, measure_before=False),
                 on_progress=lambda p: stages.append((p.stage, p.message)))
    assert ("shrink", "fc1") in stages and ("shrink", "fc2") in stages
    original = lenet300.module
    torch.testing.assert_close(result.model.fc1.weight, original.fc1.weight * 0.25)
    torch.testing.assert_close(result.model.fc3.weight, original.fc3.weight)
    assert result.after.fidelity is not None


def test_a_toy_kind_validates_and_refuses_what_matches_nothing(toy_kind, lenet300):
    with pytest.raises(RecipeError, match=r"steps\[0\].factor: must be a number in \[0, 1\)"):
        Recipe.from_text("steps: [{kind: toy_shrink, factor: 3}]")
    with pytest.raises(RecipeError, match=r"steps\[0\].layers: pattern 'conv.\*' matches no layer"):
        run(apply_recipe(Recipe.from_text("steps: [{kind: toy_shrink, layers: ['conv.*']}]"), lenet300))


def test_unknown_kinds_are_listed_from_the_registry():
    with pytest.raises(RecipeError, match="unknown step 'toy_grow'; known: prune_magnitude, iterative_prune"):
        Recipe.from_text("steps: [{kind: toy_grow}]")


def test_registering_a_kind_twice_from_two_classes_is_refused(toy_kind):
    @dataclass(frozen=True)
    class Other(Step):
        kind: ClassVar[str] = "toy_shrink"

    with pytest.raises(ValueError, match="already registered"):
        register_step(Other, run_shrink)


def install_plugin(site, target: str) -> None:
    """An installed distribution naming ``target`` under Prunescope's entry-point group."""
    info = site / "prunescope_toy-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: prunescope-toy\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[prunescope.methods]\ntoy = {target}\n")


def test_a_toy_kind_runs_through_compress_on_the_command_line(tmp_path):
    install_plugin(tmp_path / "site", "tests.test_step_registry:register")
    (tmp_path / "toy.yaml").write_text(RECIPE)
    env = {**os.environ, "PYTHONPATH": f"{tmp_path / 'site'}:{ROOT}"}
    done = subprocess.run([sys.executable, str(ROOT / "main.py"), "compress", "zoo:lenet300", "--recipe",
                           str(tmp_path / "toy.yaml"), "--out", str(tmp_path / "out")],
                          capture_output=True, text=True, timeout=300, cwd=ROOT, env=env)
    assert done.returncode == 0, done.stderr
    assert "shrink: 50% fc1" in done.stderr  # its progress, printed by the command line
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["recipe"]["steps"][0] == {"kind": "toy_shrink", "factor": 0.25, "layers": ["fc[12]"]}
    compressed = load_model(tmp_path / "out" / report["file"]).module
    torch.testing.assert_close(compressed.fc1.weight, load_model("zoo:lenet300").module.fc1.weight * 0.25)


def test_kinds_are_listed_by_family_whatever_the_order_they_registered_in(toy_kind):
    @dataclass(frozen=True)
    class Trim(Step):
        kind: ClassVar[str] = "toy_trim"

    register_step(Trim, run_shrink, family="pruning")  # registered last, listed with the pruning kinds
    try:
        listed = list(kinds())
        assert listed.index("toy_trim") < listed.index("finetune") < listed.index("encode") < listed.index("toy_shrink")
    finally:
        unregister_step("toy_trim")
