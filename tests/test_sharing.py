"""Shared filters: k-means finds the filters' clusters, the file holds k filters and a byte per filter."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from torch import nn

from core.eval.evaluate import accuracy
from core.format import container
from core.io import load_model
from core.io.base import ModelLoadError
from core.methods.sharing import ChannelGather, ShareFilters, kmeans, share
from core.pipeline.apply import apply_recipe
from core.progress import run
from core.recipe import Recipe, RecipeError, Selection
from tests.factories import write_small_npz
from tests.test_cli import prunescope


@pytest.fixture(scope="module")
def small_mnist(mnist):
    return dataclasses.replace(mnist, train=mnist.train.subset(2000), test=mnist.test.subset(2000))


def test_kmeans_finds_well_separated_clusters_and_is_seeded():
    g = torch.Generator().manual_seed(1)
    centres = torch.randn(5, 12, generator=g) * 10
    truth = torch.arange(40) % 5
    rows = centres[truth] + 0.01 * torch.randn(40, 12, generator=g)
    found, assign = kmeans(rows, 5, seed=3)
    for c in range(5):  # each true cluster is one found cluster, whose centre is its members' mean
        members = assign[truth == c]
        assert (members == members[0]).all()
        assert torch.allclose(found[members[0]], rows[truth == c].mean(0), atol=1e-5)
    assert len(set(assign.tolist())) == 5
    again = kmeans(rows, 5, seed=3)
    assert torch.equal(again[0], found) and torch.equal(again[1], assign)


@pytest.mark.parametrize("layer", [nn.Conv2d(3, 12, 3, padding=1), nn.Linear(7, 12), nn.Conv2d(3, 12, 3, bias=False)],
                         ids=repr)
def test_a_layer_with_repeated_filters_is_reproduced_exactly(layer):
    torch.manual_seed(0)
    with torch.no_grad():  # four distinct filters, each used three times
        layer.weight.copy_(layer.weight[torch.arange(12) % 4])
    block = share(layer, 4)
    assert isinstance(block[1], ChannelGather) and block[1].index.dtype == torch.uint8
    assert block[0].weight.shape[0] == 4 and block[0].bias is None
    x = torch.randn(2, 3, 8, 8) if isinstance(layer, nn.Conv2d) else torch.randn(5, 7)
    with torch.no_grad():
        assert torch.allclose(block(x), layer(x), atol=1e-5)


def test_bad_settings_are_refused_and_the_step_round_trips():
    with pytest.raises(RecipeError, match=r"steps\[0\]\.k"):
        Recipe.from_text("steps: [{kind: share_filters, k: 0}]")
    with pytest.raises(RecipeError, match=r"steps\[0\]\.overrides\[conv2\]"):
        Recipe.from_text("steps: [{kind: share_filters, overrides: {conv2: 2.5}}]")
    recipe = Recipe(steps=(ShareFilters(k=8, select=Selection(("conv.*",), (), (("conv1", 4),))),))
    assert Recipe.from_text(recipe.to_yaml()) == recipe


@pytest.fixture(scope="module")
def shared_lenet5(small_mnist):
    recipe = Recipe.from_text("""
steps:
  - {kind: share_filters, k: 16, layers: [conv2, conv1], overrides: {conv1: 32}}
  - {kind: finetune, epochs: 1, lr: 0.005}
  - {kind: quantize, method: kmeans, bits: 6}
  - {kind: encode}
""")
    loaded = load_model("zoo:lenet5")
    before = {k: v.clone() for k, v in loaded.module.state_dict().items()}
    result = run(apply_recipe(recipe, loaded, small_mnist, measure_before=False))
    assert all(torch.equal(loaded.module.state_dict()[k], v) for k, v in before.items())
    return result


def test_shared_conv2_stores_k_filters_and_a_byte_index(tmp_path, shared_lenet5, small_mnist):
    result = shared_lenet5
    assert result.notes == ["steps[0] (share_filters): conv1 not shared: k=32 is not fewer than its 20 filters"]
    conv2 = result.model.conv2
    assert conv2[0].weight.shape == (16, 20, 5, 5) and conv2[1].index.shape == (50,)
    assert conv2[1].index.dtype == torch.uint8 and int(conv2[1].index.max()) < 16
    coded = {t.name: t for t in result.account.tensors}
    assert coded["conv2.0.weight"].weight_bits == 6 and coded["conv2.1.index"].raw_bytes == 50
    assert "conv2.weight" not in coded and result.after.test.accuracy > 0.9
    path = tmp_path / "shared.psz"
    path.write_bytes(result.file_bytes)
    again = load_model(path)
    assert path.stat().st_size == result.compressed_bytes
    assert torch.equal(again.module.conv2[1].index, conv2[1].index)
    assert run(accuracy(again.module, small_mnist.test)) == result.after.test


def test_a_forged_index_is_refused_on_load(tmp_path, shared_lenet5):
    state = {k: v.clone() for k, v in shared_lenet5.model.state_dict().items()}
    state["conv2.1.index"][7] = 16  # one past the last of the 16 shared filters
    data, _ = container.encode(state, {}, shared_lenet5.model_info)
    (tmp_path / "forged.psz").write_bytes(data)
    with pytest.raises(ModelLoadError, match=r"conv2: a shared-filter index is outside 0\.\.15"):
        load_model(tmp_path / "forged.psz")
    info = json.loads(json.dumps(shared_lenet5.model_info))
    info["structure"][0]["layers"][0]["k"] = 50  # as many as the layer's filters: not a sharing
    (tmp_path / "forged_k.psz").write_bytes(container.encode(state, {}, info)[0])
    with pytest.raises(ModelLoadError, match=r"k must be an integer in \[1, 49\]"):
        load_model(tmp_path / "forged_k.psz")


def test_compress_command_writes_a_file_that_inspects_as_reported(tmp_path, mnist):
    data = str(write_small_npz(tmp_path / "mnist2000.npz", mnist))
    recipe = tmp_path / "share.yaml"
    recipe.write_text("steps: [{kind: share_filters, k: 8, layers: [fc1]}, {kind: encode}]")
    out = tmp_path / "out"
    done = prunescope("compress", "zoo:lenet300", "--recipe", str(recipe), "--out", str(out), "--data", data,
                      "--quiet")
    assert done.returncode == 0, done.stderr
    report = json.loads((out / "report.json").read_text())
    psz = out / report["file"]
    assert psz.stat().st_size == report["compressed_bytes"]
    assert report["model"]["structure"] == [{"op": "share_filters", "layers": [{"layer": "fc1", "k": 8}]}]
    inspected = prunescope("inspect", str(psz), "--data", data, "--json", str(tmp_path / "i.json"), "--quiet")
    assert inspected.returncode == 0, inspected.stderr
    assert json.loads((tmp_path / "i.json").read_text())["metrics"]["test"] == report["metrics"]["after"]["test"]
