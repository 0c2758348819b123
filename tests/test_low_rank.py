"""Low rank: the factorisation is exact at full rank, break-even is honoured, the file rebuilds the layers."""

from __future__ import annotations

import dataclasses
import json
import re

import pytest
import torch
from torch import nn

from core.eval.evaluate import accuracy
from core.io import load_model
from core.io.base import ModelLoadError
from core.methods.low_rank import (LowRank, break_even, factorise, factorised_params, low_rank_targets,
                                   rank_for_energy, singular_values)
from core.pipeline.apply import apply_recipe
from core.progress import run
from core.recipe import Recipe, RecipeError, Selection
from tests.factories import write_small_npz
from tests.test_cli import prunescope


@pytest.fixture(scope="module")
def small_mnist(mnist):
    return dataclasses.replace(mnist, train=mnist.train.subset(2000), test=mnist.test.subset(2000))


CONVS = [nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.Conv2d(4, 6, (3, 5), stride=(1, 2), padding=(2, 1),
                                                             dilation=(2, 1)),
         nn.Conv2d(2, 5, 3, bias=False, padding="same"), nn.Conv2d(3, 4, 3, padding=1, padding_mode="reflect")]


@pytest.mark.parametrize("method", ["channel", "spatial"])
@pytest.mark.parametrize("conv", CONVS, ids=lambda c: repr(c))
def test_full_rank_reproduces_the_convolution(conv, method):
    torch.manual_seed(0)
    x = torch.randn(2, conv.in_channels, 11, 13)
    full = len(singular_values(conv, method))
    block = factorise(conv, full, method)
    with torch.no_grad():
        assert torch.allclose(block(x), conv(x), atol=1e-5)
        if full > 1:  # and a lower rank is a real truncation
            assert not torch.allclose(factorise(conv, full - 1, method)(x), conv(x), atol=1e-3)
    first, second = block
    if method == "spatial":
        assert first.kernel_size == (conv.kernel_size[0], 1) and second.kernel_size == (1, conv.kernel_size[1])
    else:
        assert first.kernel_size == conv.kernel_size and second.kernel_size == (1, 1)
    assert first.bias is None and (second.bias is None) == (conv.bias is None)


def test_full_rank_reproduces_a_linear_and_the_factors_are_the_svd():
    torch.manual_seed(0)
    lin, x = nn.Linear(20, 12), torch.randn(5, 20)
    block = factorise(lin, 12)
    assert torch.allclose(block(x), lin(x), atol=1e-5)
    sv = singular_values(lin)
    three = factorise(lin, 3)
    product = three[1].weight @ three[0].weight  # the best rank-3 approximation: its error is σ4..σn
    assert torch.linalg.matrix_norm(lin.weight - product).item() == pytest.approx(sv[3:].norm().item(), rel=1e-4)
    assert three[0].weight.shape == (3, 20) and three[1].weight.shape == (12, 3)


def test_break_even_energy_and_params():
    conv = nn.Conv2d(20, 50, 5)
    assert break_even(conv, "channel") == pytest.approx(50 * 500 / 550)
    assert break_even(conv, "spatial") == pytest.approx(100 * 250 / 350)
    assert factorised_params(conv, 7, "channel") == 7 * 550 and factorised_params(conv, 7, "spatial") == 7 * 350
    sv = torch.tensor([3.0, 2.0, 1.0])  # energies 9/14, 13/14, 14/14
    assert [rank_for_energy(sv, e) for e in (0.5, 9 / 14, 0.9, 13 / 14 + 1e-6, 1.0)] == [1, 1, 2, 3, 3]
    grouped = nn.Sequential(nn.Conv2d(4, 4, 3, groups=2), nn.Conv2d(4, 4, 3), nn.Linear(3, 3))
    assert low_rank_targets(grouped) == ["1", "2"]


@pytest.mark.parametrize("text, field", [
    ("{kind: low_rank, rank: -1}", "rank"), ("{kind: low_rank, energy: 0}", "energy"),
    ("{kind: low_rank, energy: 1.5}", "energy"), ("{kind: low_rank, method: diagonal}", "method"),
    ("{kind: low_rank, overrides: {fc1: 0.5}}", "overrides[fc1]")])
def test_bad_settings_are_refused_naming_the_field(text, field):
    with pytest.raises(RecipeError, match=rf"steps\[0\]\.{re.escape(field)}"):
        Recipe.from_text(f"steps: [{text}]")


def test_round_trips_through_yaml():
    step = LowRank(rank=0, energy=0.75, method="spatial", select=Selection(("conv.*",), (), (("conv2", 9),)))
    recipe = Recipe(steps=(step,), name="t")
    assert Recipe.from_text(recipe.to_yaml()) == recipe


def test_factorised_fc1_prunes_quantizes_and_reloads(tmp_path, small_mnist):
    loaded = load_model("zoo:lenet300")
    before = {k: v.clone() for k, v in loaded.module.state_dict().items()}
    recipe = Recipe.from_text("""
steps:
  - {kind: low_rank, rank: 40, layers: [fc1, fc3]}
  - {kind: prune_magnitude, sparsity: 0.5, layers: ['fc1\\.[01]']}
  - {kind: finetune, epochs: 1, lr: 0.005}
  - {kind: quantize, method: kmeans, bits: 5}
  - {kind: encode}
""")
    result = run(apply_recipe(recipe, loaded, small_mnist, measure_before=False))
    assert all(torch.equal(loaded.module.state_dict()[k], v) for k, v in before.items())
    fc1 = result.model.fc1
    assert isinstance(fc1, nn.Sequential) and fc1[0].weight.shape == (40, 784) and fc1[1].weight.shape == (300, 40)
    assert isinstance(result.model.fc3, nn.Linear)  # rank 40 is above fc3's break-even (9.1): skipped
    assert len(result.notes) == 1 and "fc3" in result.notes[0] and "break-even 9.1" in result.notes[0]
    coded = {t.name: t for t in result.account.tensors}
    assert coded["fc1.0.weight"].kept == 20 * 784 and coded["fc1.0.weight"].weight_bits == 5
    assert len(torch.unique(fc1[1].weight[fc1[1].weight != 0])) <= 32
    assert result.after.test.accuracy > 0.9
    path = tmp_path / "lr.psz"
    path.write_bytes(result.file_bytes)
    again = load_model(path)
    assert path.stat().st_size == result.compressed_bytes
    assert run(accuracy(again.module, small_mnist.test)) == result.after.test


def test_a_forged_rank_is_refused_on_load(tmp_path, small_mnist):
    from core.format import container

    result = run(apply_recipe(Recipe.from_text("steps: [{kind: low_rank, rank: 10, layers: [fc2]}]"),
                              load_model("zoo:lenet300"), small_mnist, measure_before=False))
    info = json.loads(json.dumps(result.model_info))
    info["structure"][0]["layers"][0]["rank"] = 101  # more than min(100, 300)
    data, _ = container.encode(result.model.state_dict(), {}, info)
    (tmp_path / "forged.psz").write_bytes(data)
    with pytest.raises(ModelLoadError, match="rank must be an integer in \\[1, 100\\]"):
        load_model(tmp_path / "forged.psz")


def test_low_rank_after_quantize_is_refused():
    with pytest.raises(RecipeError, match="before quantize"):
        Recipe.from_text("steps: [{kind: quantize, bits: 4}, {kind: low_rank, rank: 4}]")


def test_compress_command_writes_a_file_that_inspects_as_reported(tmp_path, mnist):
    data = str(write_small_npz(tmp_path / "mnist2000.npz", mnist))
    recipe = tmp_path / "lr.yaml"
    recipe.write_text("steps: [{kind: low_rank, energy: 0.9, layers: [fc1, fc3], overrides: {fc3: 10}}, {kind: encode}]")
    out = tmp_path / "out"
    done = prunescope("compress", "zoo:lenet300", "--recipe", str(recipe), "--out", str(out), "--data", data,
                      "--quiet")
    assert done.returncode == 0, done.stderr
    report = json.loads((out / "report.json").read_text())
    psz = out / report["file"]
    assert psz.stat().st_size == report["compressed_bytes"]
    assert report["model"]["structure"][0]["layers"][0]["layer"] == "fc1"
    assert any("fc3 not factorised" in n for n in report["notes"]) and "note: " in done.stdout
    inspected = prunescope("inspect", str(psz), "--data", data, "--json", str(tmp_path / "i.json"), "--quiet")
    assert inspected.returncode == 0, inspected.stderr
    assert json.loads((tmp_path / "i.json").read_text())["metrics"]["test"] == report["metrics"]["after"]["test"]
