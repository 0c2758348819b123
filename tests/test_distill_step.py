"""The distill step and the distill: blocks: refused settings, teachers loaded once and never trained, a
student that replaces the model and is written as its own architecture, and compress from the command line."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from core.eval.data import load_npz
from core.eval.evaluate import accuracy
from core.io import load_model
from core.methods.distill import Distill, DistillSpec, soft_probabilities
from core.methods.finetune import FineTune
from core.methods.magnitude import PruneMagnitude
from core.methods.structured import PruneStructured
from core.pipeline.apply import apply_recipe
from core.progress import run
from core.recipe import Need, Recipe, RecipeError
from tests.test_cli import prunescope


@pytest.fixture(scope="module")
def small(mnist):
    """2,000 training images, 1,000 test images of the real MNIST."""
    return dataclasses.replace(mnist, train=mnist.train.subset(2000), test=mnist.test.subset(1000))


@pytest.mark.parametrize("text, message", [
    ("steps: [{kind: finetune, distill: {teacher: original, temprature: 4}}]", "steps[0].distill.temprature: unknown field"),
    ("steps: [{kind: quantize, finetune_epochs: 1, distill: {temperature: 0}}]", "steps[0].distill.temperature"),
    ("steps: [{kind: iterative_prune, distill: {alpha: 1.5}}]", "steps[0].distill.alpha"),
    ("steps: [{kind: finetune, distill: original}]", "steps[0].distill: must be a mapping"),
    ("steps: [{kind: finetune, distill: {teacher: ''}}]", "steps[0].distill.teacher"),
    ("steps: [{distill: {epochs: -1}}]", "steps[0].epochs"),
    ("steps: [{distill: {temperatur: 2}}]", "steps[0].temperatur: unknown field for distill"),
    ("steps: [{prune_magnitude: {}}, {distill: {student: mlp800}}]", "steps[1]: a student replaces the model"),
    ("steps: [{distill: {student: mlp800, layers: [fc1]}}]", "steps[0].layers"),
])
def test_bad_distill_fields_are_refused_naming_them(text, message):
    with pytest.raises(RecipeError) as exc:
        Recipe.from_text(text)
    assert message in str(exc.value) and "\n" not in str(exc.value)


def test_a_distill_block_is_written_as_a_mapping_and_round_trips():
    recipe = Recipe.from_text("steps: [{kind: finetune, epochs: 2, distill: {teacher: 'zoo:lenet5', temperature: 4}}]")
    step = recipe.steps[0]
    assert step.distill == DistillSpec("zoo:lenet5", 4, 0.9) and Need.TEACHER in step.needs()
    assert recipe.to_dict()["steps"][0]["distill"] == {"teacher": "zoo:lenet5", "temperature": 4, "alpha": 0.9}
    assert "distill" not in Recipe(steps=(FineTune(),)).to_dict()["steps"][0]  # unset: not written
    assert Recipe.from_text(recipe.to_yaml()) == recipe == Recipe.from_text(recipe.to_json())
    assert Distill(temperature=4, student="mlp800").summary() == "distill T=4 → mlp800"


def test_soft_probabilities_spread_with_the_temperature():
    logits = torch.tensor([[8.0, 2.0, 0.0]])
    cold, hot = soft_probabilities(logits, 1.0), soft_probabilities(logits, 10.0)
    assert torch.allclose(cold.sum(-1), torch.ones(1)) and torch.allclose(hot.sum(-1), torch.ones(1))
    expected = torch.exp(logits / 10.0) / torch.exp(logits / 10.0).sum()
    assert torch.allclose(hot, expected) and cold[0, 0] > 0.99 and hot[0, 0] < 0.6 and hot[0, 1] > cold[0, 1] * 50


def test_distilling_recovers_from_the_original_where_the_labels_would_ruin_it(lenet300, small):
    """Pruned to 95%, then fine-tuned on labels that are noise: cross-entropy learns the noise, distilling
    from the original recovers. The original (the teacher) is bit for bit as it was, and never got a gradient."""
    before = {k: v.clone() for k, v in lenet300.module.state_dict().items()}
    noise = torch.randint(0, 10, (len(small.train),), generator=torch.Generator().manual_seed(0))
    data = dataclasses.replace(small, train=dataclasses.replace(small.train, labels=noise))
    prune = PruneMagnitude(sparsity=0.95)
    accuracies = {}
    for name, spec in (("labels", None), ("distilled", DistillSpec(temperature=4.0, alpha=1.0))):
        recipe = Recipe(steps=(prune, FineTune(epochs=2, lr=0.02, distill=spec)))
        accuracies[name] = run(apply_recipe(recipe, lenet300, data, measure_before=False)).after.test.accuracy
    assert accuracies["distilled"] > 0.6 and accuracies["labels"] < accuracies["distilled"] - 0.2, accuracies  # 74%, 42%
    assert all(torch.equal(v, before[k]) for k, v in lenet300.module.state_dict().items())
    assert all(p.grad is None for p in lenet300.module.parameters())


def test_a_teacher_that_would_run_code_is_refused_before_any_work(lenet300, small, model_files):
    recipe = Recipe(steps=(FineTune(epochs=1, distill=DistillSpec(teacher=str(model_files["pickle"]))),))
    with pytest.raises(RecipeError, match=r"steps\[0\]\.teacher: .*without trust"):
        run(apply_recipe(recipe, lenet300, small, measure_before=False))
    missing = Recipe(steps=(Distill(teacher="zoo:no-such-model", epochs=1),))
    with pytest.raises(RecipeError, match=r"steps\[0\]\.teacher: cannot load teacher zoo:no-such-model"):
        run(apply_recipe(missing, lenet300, small, measure_before=False))


def test_a_student_that_cannot_be_built_is_refused(lenet300, small):
    recipe = Recipe(steps=(Distill(student="no_such_arch", epochs=1),))
    with pytest.raises(RecipeError, match=r"steps\[0\]\.student"):
        run(apply_recipe(recipe, lenet300, small, measure_before=False))


def test_a_student_is_written_as_its_own_architecture_and_reloads(tmp_path, small):
    """LeNet-5 teaches a fresh LeNet-300-100, which is then structurally pruned: the file records lenet300
    and only the student's structure, is the size reported, and loads at the reported accuracy."""
    teacher = load_model("zoo:lenet5")
    recipe = Recipe(seed=3, steps=(Distill(student="lenet300", temperature=4.0, epochs=2, lr=0.05),
                                   PruneStructured(amount=0.25)))
    result = run(apply_recipe(recipe, teacher, small, measure_before=False))
    assert result.model_info["arch"] == "lenet300" and result.model_info["structure"]
    path = tmp_path / "student.psz"
    path.write_bytes(result.file_bytes)
    assert path.stat().st_size == result.compressed_bytes
    reloaded = load_model(str(path))
    assert isinstance(reloaded.module, type(load_model("zoo:lenet300").module))
    assert reloaded.module.fc1.out_features < 300  # the structure, replayed on the student
    again = run(accuracy(reloaded.module, small.test))
    assert again.accuracy == result.after.test.accuracy > 0.5  # 72.5%: 2 epochs on 2,000 images, then pruned


def test_compress_distills_from_the_command_line(tmp_path, mnist):
    npz = tmp_path / "digits.npz"  # 2,000 training images (5,000 more are held out for validation)
    np.savez(npz, x_train=mnist.train.images[:7000].numpy(), y_train=mnist.train.labels[:7000].numpy(),
             x_test=mnist.test.images[:1000].numpy(), y_test=mnist.test.labels[:1000].numpy())
    recipe = tmp_path / "distill.yaml"
    recipe.write_text("steps:\n  - {kind: distill, student: lenet300, temperature: 5, epochs: 1}\n"
                      "  - {kind: prune_magnitude, sparsity: 0.5}\n"
                      "  - {kind: finetune, epochs: 1, distill: {teacher: original, temperature: 2}}\n")
    out = tmp_path / "out"
    result = prunescope("compress", "zoo:lenet5", "--recipe", str(recipe), "--data", str(npz), "--out", str(out),
                        "--quiet", timeout=600)
    assert result.returncode == 0, result.stderr
    report = json.loads((out / "report.json").read_text())
    psz = out / report["file"]
    assert psz.stat().st_size == report["compressed_bytes"]
    assert report["compressed_bytes"] < 0.3 * report["original_bytes"]  # a student half pruned, not a LeNet-5
    reloaded = load_model(str(psz))
    assert reloaded.meta["arch"] == "lenet300"
    measured = run(accuracy(reloaded.module, load_npz(npz).test))
    assert measured.accuracy == report["metrics"]["after"]["test"]["accuracy"] > 0.7  # 82.4%


def test_hinton_pair_in_the_zoo(mnist):
    """The teacher (mlp1200: dropout, jitter) and the student trained alone (mlp800) share epochs and seed,
    keep their recorded test accuracy, and the teacher is the better of the two."""
    from core.eval import zoo

    measured = {}
    for name, arch, params in (("mnist-teacher", "mlp1200", 2_395_210), ("mnist-student", "mlp800", 1_276_810)):
        model, meta = zoo.load_zoo_model(name)
        assert zoo.read_checkpoint(zoo.zoo_entry(name).checkpoint)["arch"] == arch
        assert sum(p.numel() for p in model.parameters()) == params
        assert meta["train"]["epochs"] == zoo.DISTILL_EPOCHS and meta["train"]["seed"] == 0
        measured[name] = run(accuracy(model, mnist.test)).accuracy
        assert measured[name] == pytest.approx(meta["test_accuracy"], abs=1e-9)
    assert zoo.ZOO["mnist-teacher"].augment and not zoo.ZOO["mnist-student"].augment
    from core.recipe import Recipe
    from core.resources import resource_path

    (step,) = Recipe.from_file(resource_path("recipes", "distill-hinton-mnist.yaml")).steps
    assert step.epochs == zoo.DISTILL_EPOCHS and step.student == "mlp800"  # the distilled student: the same epochs
    assert measured["mnist-teacher"] > measured["mnist-student"] > 0.98
