"""Early exits: samples that exit never reach the later layers, routing matches batch 1, thresholds behave,
TorchScript keeps the exits, and the file rebuilds the model (also after pruning and quantization)."""

from __future__ import annotations

import copy
import dataclasses
import io

import numpy as np
import pytest
import torch
from torch import nn

from core.eval.exits import (ExitArrays, ExitError, ExitModel, HeadSpec, choose_thresholds, exit_macs,
                             exit_outputs, exit_stats)
from core.analysis.inspection import InspectOptions, inspect_model
from core.io import load_model
from core.io.export import export_bytes
from core.pipeline.apply import apply_recipe
from core.progress import run
from core.recipe import Recipe, RecipeError
from core.report.exits import exit_headline
from core.report.reports import compression_summary


@pytest.fixture(scope="module")
def small_mnist(mnist):
    return dataclasses.replace(mnist, train=mnist.train.subset(1500), val=mnist.val.subset(500),
                               test=mnist.test.subset(500))


def lenet_exits(thresholds=(0.5,), criterion="entropy") -> ExitModel:
    lenet5 = load_model("zoo:lenet5").module
    torch.manual_seed(0)
    return ExitModel(copy.deepcopy(lenet5), [HeadSpec("conv1", "conv", 8, (20, 12, 12))], 10, list(thresholds),
                     criterion).eval()


def calls_of(module: nn.Module) -> tuple[list[int], object]:
    seen: list[int] = []
    return seen, module.register_forward_hook(lambda mod, args, out: seen.append(args[0].shape[0]))


def test_the_backbone_keeps_its_names_and_its_outputs():
    model = lenet_exits()
    lenet5 = load_model("zoo:lenet5").module.eval()
    assert [k for k in model.state_dict() if not k.startswith("exits.")] == list(lenet5.state_dict())
    x = torch.rand(6, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(model.all_exits(x)[-1], lenet5(x))


def test_a_sample_that_exits_never_reaches_the_later_layers():
    model = lenet_exits((1.0,))  # entropy below 1: everyone leaves at the first exit
    seen, handle = calls_of(model.conv2)
    with torch.no_grad():
        model(torch.rand(5, 1, 28, 28))
        model(torch.rand(1, 1, 28, 28))
    handle.remove()
    assert seen == []
    model.thresholds = [0.0]  # nobody leaves: conv2 sees the whole batch
    seen, handle = calls_of(model.conv2)
    with torch.no_grad():
        model(torch.rand(5, 1, 28, 28))
    handle.remove()
    assert seen == [5]


def test_the_samples_that_stay_go_on_as_a_smaller_batch_with_batch_1_predictions(mnist):
    x = next(mnist.test.batches(64))[0]
    model = lenet_exits()
    with torch.no_grad():
        scores = model.all_exits(x)[0].softmax(1)
        entropy = -(scores * scores.clamp_min(1e-12).log()).sum(1) / np.log(10)
        model.thresholds = [float(entropy.median())]  # about half leave
        seen, handle = calls_of(model.conv2)
        batched = model(x)
        handle.remove()
        one_by_one = torch.cat([model(x[i:i + 1]) for i in range(len(x))])
    assert 0 < seen[0] < len(x)
    assert torch.allclose(batched, one_by_one, atol=1e-5)
    assert (batched.argmax(1) == one_by_one.argmax(1)).all()


@pytest.mark.parametrize("criterion, everyone, nobody", [("entropy", 1.0, 0.0), ("confidence", 0.0, 1.0)])
def test_thresholds_of_0_and_1_give_the_extremes(criterion, everyone, nobody):
    x = torch.rand(7, 1, 28, 28)
    model = lenet_exits((everyone,), criterion)
    with torch.no_grad():
        head, final = model.all_exits(x)
        assert torch.equal(model(x), head)
        model.thresholds = [nobody]
        assert torch.equal(model(x), final)


def test_stats_from_cached_outputs_are_pure_and_thresholds_are_chosen_for_the_drop():
    arrays = ExitArrays(entropy=np.array([[0.1, 0.9, 0.2, 0.6], [0.0] * 4]), confidence=np.zeros((2, 4)),
                        predictions=np.array([[1, 0, 3, 0], [1, 2, 3, 4]]), labels=np.array([1, 2, 3, 4]))
    stats = exit_stats(arrays, [0.5], "entropy", macs=[10, 30])
    assert stats.fractions == (0.5, 0.5) and stats.accuracy == (1.0, 1.0) and stats.overall == 1.0
    assert stats.mean_macs == 20
    assert exit_stats(arrays, [0.7], "entropy").overall == 0.75  # the fourth sample leaves, wrong
    assert choose_thresholds(arrays, "entropy", 0.0)[0] == pytest.approx(0.6)  # the last that keeps it out
    assert choose_thresholds(arrays, "entropy", 0.25)[0] == pytest.approx(0.9)
    assert choose_thresholds(arrays, "entropy", 0.0, reference=0.5)[0] == 1.0  # all may leave


def test_the_costs_of_leaving_grow_and_the_torchscript_export_exits_early():
    model = lenet_exits((1.0,))
    costs = exit_macs(model, torch.rand(1, 1, 28, 28))
    assert costs[0] < costs[1] / 3
    scripted = torch.jit.load(io.BytesIO(export_bytes(model, torch.rand(1, 1, 28, 28), "torchscript")))
    assert "if" in scripted.code and "stages" in scripted.code  # the control flow survived
    x = torch.rand(9, 1, 28, 28)
    with torch.no_grad():
        assert torch.allclose(scripted(x), model.all_exits(x)[0], atol=1e-6)  # everyone left at exit 1
        model.thresholds = [0.0]
        nobody = torch.jit.load(io.BytesIO(export_bytes(model, x[:1], "torchscript")))
        assert torch.allclose(nobody(x), model.all_exits(x)[1], atol=1e-5)
        assert torch.allclose(nobody(x[:1]), model(x[:1]), atol=1e-5)


def test_the_residual_network_splits_after_a_block_and_refuses_inside_one():
    resnet = load_model("zoo:resnet8-fashion").module.eval()
    model = ExitModel(copy.deepcopy(resnet), [HeadSpec("layer1", "conv", 8, (16, 28, 28))], 10, [0.0]).eval()
    x = torch.rand(3, 1, 28, 28)
    with torch.no_grad():
        assert torch.allclose(model(x), resnet(x), atol=1e-6)
    with pytest.raises(ExitError, match="shortcut"):
        ExitModel(copy.deepcopy(resnet), [HeadSpec("layer1.conv1", "conv", 8, (16, 28, 28))], 10, [0.0])
    with pytest.raises(ExitError, match="calls it 0 times"):
        ExitModel(copy.deepcopy(resnet), [HeadSpec("nothing", "fc", 8, (16,))], 10, [0.0])


def test_the_step_trains_heads_sets_a_threshold_and_the_file_rebuilds_it(tmp_path, small_mnist):
    loaded = load_model("zoo:lenet5")
    before = {k: v.clone() for k, v in loaded.module.state_dict().items()}
    recipe = Recipe.from_text("""
steps:
  - {kind: early_exit, after: [conv1], train: heads, epochs: 1, lr: 0.003, max_drop: 0.01, train_examples: 1500}
  - {kind: encode}
""")
    result = run(apply_recipe(recipe, loaded, small_mnist, measure_before=False))
    assert all(torch.equal(loaded.module.state_dict()[k], v) for k, v in before.items())
    decoded = result.model.state_dict()  # the backbone was frozen (the file stores it at float16)
    assert all(torch.allclose(decoded[k], v, rtol=2e-3, atol=1e-5) for k, v in before.items())
    op = result.model_info["structure"][0]
    assert op["op"] == "early_exit" and op["heads"][0]["in_shape"] == [20, 12, 12]
    threshold = op["thresholds"][0]
    assert 0 < threshold <= 1 and "thresholds" in result.notes[0]
    stats = exit_stats(exit_outputs(result.model, small_mnist.test), [threshold], "entropy")
    assert stats.fractions[0] > 0.05  # a head trained on 1,500 images is weak, but some leave
    path = tmp_path / "exits.psz"
    path.write_bytes(result.file_bytes)
    again = load_model(path).module
    assert isinstance(again, ExitModel) and again.thresholds == [threshold]
    x = next(small_mnist.test.batches(100))[0]
    with torch.no_grad():
        assert torch.equal(again(x), result.model(x))


def test_joint_training_then_pruning_and_quantization_encode_and_reload(tmp_path, small_mnist):
    recipe = Recipe.from_text("""
steps:
  - {kind: early_exit, after: [conv1], train: joint, epochs: 1, lr: 0.0005, thresholds: [0.3], train_examples: 600}
  - {kind: prune_magnitude, sparsity: 0.5}
  - {kind: quantize, method: kmeans, bits: 6}
  - {kind: encode}
""")
    result = run(apply_recipe(recipe, load_model("zoo:lenet5"), small_mnist, measure_before=False))
    coded = {t.name: t for t in result.account.tensors}
    assert coded["exits.0.0.weight"].weight_bits == 6 and coded["conv2.weight"].weight_bits == 6
    assert result.model_info["structure"][0]["thresholds"] == [0.3]
    assert result.after.test.accuracy > 0.9
    path = tmp_path / "pq.psz"
    path.write_bytes(result.file_bytes)
    x = next(small_mnist.test.batches(50))[0]
    reloaded = load_model(path).module
    with torch.no_grad():
        assert torch.equal(reloaded(x), result.model(x))
    # the report's exits section is of the pruned, quantized file's model, on the test split
    section = result.sections["exits"]
    macs = exit_macs(reloaded, x[:1])
    stats = exit_stats(exit_outputs(reloaded, small_mnist.test), [0.3], "entropy", macs)
    assert section["fractions"] == list(stats.fractions) and section["overall"] == stats.overall
    assert section["overall"] == pytest.approx(result.after.test.accuracy)  # routing = the cached exits
    assert section["macs"] == macs and section["mean_macs"] == pytest.approx(stats.mean_macs)
    assert section["examples"] == len(small_mnist.test) and section["after"] == ["conv1"]
    assert section["batch1_ms_full"] > 0 and section["batch1_ms_exits"] > 0
    assert section["speedup_batch1"] == pytest.approx(section["batch1_ms_full"] / section["batch1_ms_exits"])
    assert section["batch"] == 256 and section["batches"] == len(small_mnist.test) // 256 > 0
    assert section["batch_ms_exits"] > 0
    assert section["speedup_batch"] == pytest.approx(section["batch_ms_full"] / section["batch_ms_exits"])
    inspected = run(inspect_model(load_model(path), small_mnist, InspectOptions(activations=False))).exits
    assert {k: inspected[k] for k in inspected} == {k: section[k] for k in inspected}  # inspect: the same figures
    summary = compression_summary(result)
    assert f"leave {'after conv1':<16s} {stats.fractions[0]:>7.1%}" in summary
    assert "batch 1 (300 test images one at a time" in summary
    line = exit_headline(section, 0.991)
    assert line.startswith(f"{stats.fractions[0]:.0%} of images leave after conv1: ")
    speedup = section["speedup_batch1"]
    assert (f"{speedup:.1f}x faster at batch 1" if speedup >= 1 else f"{1 / speedup:.1f}x slower at batch 1") in line
    assert f"batch 256 ({section['batches']} batches of test images)" in summary
    assert line.endswith(f"accuracy 99.1% → {stats.overall:.1%}")


def test_exit_headline_names_every_exit_and_omits_what_was_not_measured():
    section = {"after": ["layer1", "layer2"], "fractions": [0.6, 0.25, 0.15], "overall": 0.9123,
               "speedup_batch1": None}
    assert exit_headline(section, None) == ("60% of images leave after layer1, 25% leave after layer2: "
                                            "accuracy 91.2%")
    measured = {**section, "speedup_batch1": 0.8}  # heads that cost more than the layers skipped: said so
    assert exit_headline(measured, 0.93) == ("60% of images leave after layer1, 25% leave after layer2: "
                                             "1.2x slower at batch 1, accuracy 93.0% → 91.2%")


def test_bad_settings_are_refused_in_one_line():
    with pytest.raises(RecipeError, match="after"):
        Recipe.from_text("steps: [{kind: early_exit}]")
    with pytest.raises(RecipeError, match="thresholds"):
        Recipe.from_text("steps: [{kind: early_exit, after: [conv1], thresholds: [0.5, 0.5]}]")
    with pytest.raises(ExitError, match="calls it 0 times"):
        run(apply_recipe(Recipe.from_text("steps: [{kind: early_exit, after: [fc9], train: none, thresholds: [0.5]}]"),
                         load_model("zoo:lenet5"), None, measure_before=False))
