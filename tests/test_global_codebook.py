"""``quantize`` with ``scope: global``: one k-means codebook for all selected layers, trained by all of them
and stored once in the file (a ``cbr`` reference per other layer, format version 4)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from torch import nn

from core.errors import PrunescopeError
from core.format import container
from core.format.huffman import CodingError
from core.io import ModelLoadError, load_model
from core.methods.codebooks import kmeans_1d, quantize_layers_global, shared_of
from core.methods.masks import apply_masks, magnitude_masks
from core.pipeline.apply import apply_recipe, measure
from core.progress import run
from core.recipe import Recipe, RecipeError
from tests.psz_mutants import seal, split

GLOBAL = ("steps: [{kind: prune_magnitude, sparsity: 0.9, overrides: {fc3: 0.5}}, "
          "{kind: quantize, bits: 4, scope: global, finetune_epochs: 1}, {kind: encode}]")


@pytest.mark.parametrize("text, message", [
    ("{kind: quantize, method: uniform, scope: global}", "steps.0..scope: a global codebook is made by k-means"),
    ("{kind: quantize, scope: global, overrides: {fc1: 5}}", "one global codebook has one size"),
    ("{kind: quantize, scope: model}", "must be one of layer, global"),
])
def test_global_scope_is_refused_where_one_codebook_cannot_do(text, message):
    with pytest.raises(RecipeError, match=message.replace("steps.0..", r"steps\[0\]\.")):
        Recipe.from_text(f"steps: [{text}]")


def test_global_scope_round_trips_through_yaml():
    recipe = Recipe.from_text(GLOBAL)
    again = Recipe.from_text(recipe.to_yaml())
    assert again == recipe and again.steps[1].scope == "global"
    assert "global codebook" in again.steps[1].summary()


def test_one_codebook_of_the_union_trained_by_the_summed_gradients_of_every_layer():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(20, 30), nn.ReLU(), nn.Linear(30, 5))
    apply_masks(model, magnitude_masks({"0": model[0].weight, "2": model[2].weight}, 0.5))
    kept = torch.cat([model[0].weight.detach()[model[0].weight.detach() != 0],
                      model[2].weight.detach()[model[2].weight.detach() != 0]])
    codebook = quantize_layers_global([model[0], model[2]], bits=3)
    first, second = shared_of(model[0]), shared_of(model[2])
    assert first.codebook is second.codebook is codebook
    np.testing.assert_allclose(codebook.detach().numpy(), kmeans_1d(kept.numpy(), 8).centroids, rtol=1e-6)
    assert len([p for p in model.parameters() if p is codebook]) == 1  # the optimiser sees it once
    for layer, shared in ((model[0], first), (model[2], second)):  # pruned zeros stay; values are the levels
        w = layer.weight.detach()
        assert bool((w[~shared.mask] == 0).all()) and int(shared.mask.sum()) == w.numel() // 2
        assert set(w[shared.mask].tolist()) <= set(codebook.detach().tolist())

    x = torch.randn(8, 20)
    model(x).square().sum().backward()
    w0, w2 = (model[i].weight.detach().clone().requires_grad_() for i in (0, 2))  # the same net, by hand
    out = torch.relu(x @ w0.T + model[0].bias.detach()) @ w2.T + model[2].bias.detach()
    grads = torch.autograd.grad(out.square().sum(), [w0, w2])
    expected = torch.zeros(8)
    for grad, shared in zip(grads, (first, second)):
        expected.index_add_(0, shared.codes[shared.mask], grad[shared.mask])
    torch.testing.assert_close(codebook.grad, expected)


@pytest.fixture(scope="module")
def mnist_small(mnist):
    return dataclasses.replace(mnist, train=mnist.train.subset(2000), test=mnist.test.subset(1000))


@pytest.fixture(scope="module")
def runs(mnist_small):
    out = {}
    for scope in ("layer", "global"):
        text = GLOBAL.replace("scope: global", f"scope: {scope}")
        out[scope] = run(apply_recipe(Recipe.from_text(text), load_model("zoo:lenet300"), mnist_small,
                                      measure_before=False))
    return out


def test_the_file_stores_the_codebook_once_and_reloads_at_the_reported_accuracy(runs, tmp_path, mnist_small):
    result = runs["global"]
    header, _ = container.iter_decode(result.file_bytes)
    quantized = {e["n_"]: e for e in header["tensors"] if e["e"] != "raw"}
    assert header["v"] == 4
    assert quantized["fc1.weight"]["z"][0] == 16 * 2 and "cbr" not in quantized["fc1.weight"]  # 16 float16 levels
    for name in ("fc2.weight", "fc3.weight"):
        assert quantized[name]["cbr"] == "fc1.weight" and quantized[name]["z"][0] == 0
    assert [t.codebook_bytes for t in result.account.tensors if t.name.endswith("weight")] == [32, 0, 0]
    assert "cbr" not in str(container.iter_decode(runs["layer"].file_bytes)[0])
    path = tmp_path / "global.psz"
    path.write_bytes(result.file_bytes)
    assert path.stat().st_size == result.compressed_bytes
    loaded = load_model(path)
    levels = torch.cat([loaded.module.state_dict()[f"fc{i}.weight"].flatten() for i in (1, 2, 3)]).unique()
    assert len(levels[levels != 0]) <= 16  # one set of 16 levels for all three layers
    again = run(measure(loaded.module, loaded, mnist_small, None))
    assert again.test.accuracy == result.after.test.accuracy


def _forge(data: bytes, change) -> bytes:
    header, version, sections = split(data)
    change({e["n_"]: e for e in header["tensors"]})
    return seal(header, version, sections)


def _move_codebook_to_fc2(entries):
    entries["fc2.weight"]["cbr"] = "fc3.weight"


@pytest.mark.parametrize("change, message", [
    (lambda e: e["fc2.weight"].__setitem__("cbr", "nowhere.weight"), "must name an earlier tensor"),
    (lambda e: e["fc1.weight"].__setitem__("cbr", "fc2.weight"), "must name an earlier tensor"),
    (lambda e: e["fc3.weight"].__setitem__("cbr", "fc2.weight"), "does not store a codebook"),
    (lambda e: e["fc2.weight"].__setitem__("cbr", "fc1.bias"), "only a quantized tensor"),
    (lambda e: e["fc2.weight"].__setitem__("cbr", 3), "must name an earlier tensor"),
    (lambda e: e["fc2.weight"].__setitem__("k", 8), "differs in size or dtype"),
    (lambda e: e["fc2.weight"].__setitem__("cb", "f32"), "differs in size or dtype"),
])
def test_the_decoder_refuses_a_bad_codebook_reference(runs, tmp_path, change, message):
    path = tmp_path / "forged.psz"
    path.write_bytes(_forge(runs["global"].file_bytes, change))
    with pytest.raises(ModelLoadError, match=message):
        load_model(path)


def test_the_encoder_refuses_a_reference_to_a_later_or_different_codebook():
    state = {"a.weight": torch.zeros(4), "b.weight": torch.zeros(4)}
    book = torch.tensor([-1.0, 1.0])
    codes = torch.tensor([0, 1, 0, 1], dtype=torch.uint8)
    owner = container.WeightCode(None, codes, book, state["a.weight"])
    forward = {"a.weight": container.WeightCode(None, codes, book, state["a.weight"], codebook_of="b.weight"),
               "b.weight": owner}
    with pytest.raises(CodingError, match="not an earlier tensor"):
        container.encode(state, forward, {})
    other = {"a.weight": owner, "b.weight": container.WeightCode(None, codes, book * 2, state["b.weight"],
                                                                  codebook_of="a.weight")}
    with pytest.raises(CodingError, match="same per-tensor codebook"):
        container.encode(state, other, {})
    fine = {"a.weight": owner, "b.weight": dataclasses.replace(owner, codebook_of="a.weight")}
    data, account = container.encode(state, fine, {})
    assert [t.codebook_bytes for t in account.tensors] == [4, 0]
    _, tensors = container.decode(data)
    assert tensors["b.weight"].tolist() == [-1.0, 1.0, -1.0, 1.0]
    assert issubclass(CodingError, PrunescopeError)
