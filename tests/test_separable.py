"""Separable: the block is depthwise + pointwise, fitted to the old outputs, and the file rebuilds it."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from torch import nn

from core.eval.evaluate import accuracy
from core.io import load_model
from core.methods.separable import (Separable, fit_block, layer_inputs, separable_init, separable_params,
                                    separable_targets)
from core.pipeline.apply import apply_recipe
from core.progress import Cancelled, Progress, run
from core.recipe import Recipe, RecipeError, Selection
from tests.factories import write_small_npz
from tests.test_cli import prunescope


@pytest.fixture(scope="module")
def small_mnist(mnist):
    return dataclasses.replace(mnist, train=mnist.train.subset(2000), test=mnist.test.subset(2000))


def test_targets_and_params():
    lenet5 = load_model("zoo:lenet5").module
    assert separable_targets(lenet5) == ["conv1", "conv2"]
    assert separable_params(lenet5.conv2) == (25_000, 20 * 25 + 20 * 50)
    mixed = nn.Sequential(nn.Conv2d(4, 4, 3, groups=2), nn.Conv2d(4, 8, 1), nn.Conv2d(4, 8, (1, 3)), nn.Linear(2, 2))
    assert separable_targets(mixed) == ["2"]


@pytest.mark.parametrize("stride, padding, size", [(1, 0, 12), (2, 1, 11), (1, 2, 9)])
def test_the_separable_macs_are_what_the_flop_counter_counts_on_the_pair(stride, padding, size):
    from core.analysis.cost import count_macs
    from core.methods.separable import separable_block, separable_macs

    conv = nn.Conv2d(6, 9, 3, stride, padding)
    x = torch.randn(1, 6, size, size)
    before, after = count_macs(conv, x).total, count_macs(separable_block(conv), x).total
    assert before == 9 * 6 * 9 * conv(x).shape[-1] ** 2
    assert separable_macs(conv, before) == after < before


def test_a_separable_convolution_is_recovered_exactly_by_the_initialisation():
    torch.manual_seed(0)
    depthwise, pointwise = nn.Conv2d(6, 6, 3, 2, 1, groups=6, bias=False), nn.Conv2d(6, 9, 1)
    conv = nn.Conv2d(6, 9, 3, 2, 1)
    with torch.no_grad():  # W[o, c] = P[o, c] D[c]: a convolution that is separable
        conv.weight.copy_(pointwise.weight[:, :, 0, 0, None, None] * depthwise.weight[:, 0][None])
        conv.bias.copy_(pointwise.bias)
    block = separable_init(conv)
    x = torch.randn(2, 6, 10, 10)
    assert block[0].groups == 6 and block[0].stride == (2, 2) and block[1].kernel_size == (1, 1)
    with torch.no_grad():
        assert torch.allclose(block(x), conv(x), atol=1e-5)


def test_fitting_lowers_the_error_on_the_layer_outputs():
    lenet5 = load_model("zoo:lenet5").module
    torch.manual_seed(0)
    inputs = layer_inputs(lenet5, lenet5.conv2, [torch.rand(16, 1, 28, 28) for _ in range(2)])
    assert inputs[0].shape == (16, 20, 12, 12)
    block = separable_init(lenet5.conv2)
    with torch.no_grad():
        start = sum(float(nn.functional.mse_loss(block(x), lenet5.conv2(x))) for x in inputs)
    steps = list(fit_block(block, lenet5.conv2, inputs, 30, 0.01, "conv2"))
    assert len(steps) == 3 and all(isinstance(p, Progress) for p in steps)
    with torch.no_grad():
        end = sum(float(nn.functional.mse_loss(block(x), lenet5.conv2(x))) for x in inputs)
    assert end < 0.8 * start


def test_bad_settings_are_refused_and_the_step_round_trips():
    with pytest.raises(RecipeError, match=r"steps\[0\]\.fit_steps"):
        Recipe.from_text("steps: [{kind: separable, fit_steps: -1}]")
    with pytest.raises(RecipeError, match=r"steps\[0\]\.fit_lr"):
        Recipe.from_text("steps: [{kind: separable, fit_lr: 0}]")
    recipe = Recipe(steps=(Separable(fit_steps=5, fit_lr=0.02, batches=2, select=Selection(("conv2",))),))
    assert Recipe.from_text(recipe.to_yaml()) == recipe


def test_separable_conv2_fine_tunes_prunes_quantizes_and_reloads(tmp_path, small_mnist):
    loaded = load_model("zoo:lenet5")
    before = {k: v.clone() for k, v in loaded.module.state_dict().items()}
    recipe = Recipe.from_text("""
steps:
  - {kind: separable, layers: [conv2], fit_steps: 40, batches: 2}
  - {kind: finetune, epochs: 1, lr: 0.005}
  - {kind: prune_magnitude, sparsity: 0.5, layers: ['conv2\\.1', fc1]}
  - {kind: quantize, method: kmeans, bits: 6}
  - {kind: encode}
""")
    result = run(apply_recipe(recipe, loaded, small_mnist, measure_before=False))
    assert all(torch.equal(loaded.module.state_dict()[k], v) for k, v in before.items())
    conv2 = result.model.conv2
    assert conv2[0].weight.shape == (20, 1, 5, 5) and conv2[0].groups == 20 and conv2[1].weight.shape == (50, 20, 1, 1)
    coded = {t.name: t for t in result.account.tensors}
    assert coded["conv2.1.weight"].kept == 500 and coded["conv2.0.weight"].weight_bits == 6
    assert result.after.test.accuracy > 0.9
    path = tmp_path / "sep.psz"
    path.write_bytes(result.file_bytes)
    assert path.stat().st_size == result.compressed_bytes
    assert run(accuracy(load_model(path).module, small_mnist.test)) == result.after.test


def test_every_convolution_of_the_residual_network_rebuilds_from_the_file(tmp_path):
    loaded = load_model("zoo:resnet8-fashion")
    result = run(apply_recipe(Recipe.from_text("steps: [{kind: separable, fit_steps: 0}]"), loaded, None,
                              measure_before=False))
    assert [e["layer"] for e in result.model_info["structure"][0]["layers"]] == separable_targets(loaded.module)
    path = tmp_path / "r.psz"
    path.write_bytes(result.file_bytes)
    again = load_model(path).module
    x = torch.rand(4, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(again(x), result.model(x))
    assert isinstance(again.layer2.conv1, nn.Sequential) and again.layer2.conv1[0].stride == (2, 2)


def test_cancel_between_fit_steps_leaves_the_original(small_mnist):
    loaded = load_model("zoo:lenet5")
    before = {k: v.clone() for k, v in loaded.module.state_dict().items()}
    recipe = Recipe.from_text("steps: [{kind: separable, fit_steps: 1000, batches: 1}]")
    seen = []
    with pytest.raises(Cancelled):
        run(apply_recipe(recipe, loaded, small_mnist, measure_before=False), on_progress=seen.append,
            should_cancel=lambda: any(p.stage == "separable fit" for p in seen))
    assert seen[-1].stage == "separable fit" and seen[-1].done == 10
    assert all(torch.equal(loaded.module.state_dict()[k], v) for k, v in before.items())


def test_compress_command_writes_a_file_that_inspects_as_reported(tmp_path, mnist):
    data = str(write_small_npz(tmp_path / "mnist2000.npz", mnist))
    recipe = tmp_path / "sep.yaml"
    recipe.write_text("steps: [{kind: separable, layers: [conv2], fit_steps: 20, batches: 1}, {kind: encode}]")
    out = tmp_path / "out"
    done = prunescope("compress", "zoo:lenet5", "--recipe", str(recipe), "--out", str(out), "--data", data,
                      "--quiet")
    assert done.returncode == 0, done.stderr
    report = json.loads((out / "report.json").read_text())
    psz = out / report["file"]
    assert psz.stat().st_size == report["compressed_bytes"]
    assert report["model"]["structure"] == [{"op": "separable", "layers": [{"layer": "conv2"}]}]
    inspected = prunescope("inspect", str(psz), "--data", data, "--json", str(tmp_path / "i.json"), "--quiet")
    assert inspected.returncode == 0, inspected.stderr
    assert json.loads((tmp_path / "i.json").read_text())["metrics"]["test"] == report["metrics"]["after"]["test"]
