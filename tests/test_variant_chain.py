"""Variants made from variants: the recipe of each is the whole chain from the original and reproduces it,
pruning a variant never revives its zeros, and every view's kept share comes from one function."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from core.analysis.inventory import inventory, kept_fraction
from core.io import load_model
from core.methods.masks import prunable_layers
from core.pipeline.apply import apply_recipe, compressed_model
from core.pipeline.variants import compress_variant, default_name, layers_from_account
from core.progress import run
from core.recipe import Recipe

FIRST = Recipe.from_text("""
name: first
steps:
  - {kind: prune_magnitude, sparsity: 0.9}
  - {kind: quantize, method: kmeans, bits: 5}
  - {kind: encode}
""")
SECOND = Recipe.from_text("""
name: second
steps:
  - {kind: prune_magnitude, sparsity: 0.97}
  - {kind: finetune, epochs: 1, lr: 0.005}
  - {kind: quantize, method: kmeans, bits: 3}
  - {kind: encode}
""")
LESS = Recipe.from_text("""
name: less
steps:
  - {kind: prune_magnitude, sparsity: 0.8}
  - {kind: quantize, method: kmeans, bits: 3}
  - {kind: encode}
""")


@pytest.fixture(scope="module")
def small_mnist(mnist):
    return dataclasses.replace(mnist, train=mnist.train.subset(2000), test=mnist.test.subset(1000))


def zeros_of(model) -> dict[str, torch.Tensor]:
    return {name: (m.weight.detach() == 0) for name, m in prunable_layers(model).items()}


def test_a_chain_round_trips_and_lists_its_links():
    chain = SECOND.on(FIRST)
    assert [r.name for r in chain.chain()] == ["first", "second"] and chain.base == FIRST
    assert Recipe.from_text(chain.to_yaml()) == chain
    assert Recipe.from_dict(FIRST.to_dict()) == FIRST and "base" not in FIRST.to_dict()  # old files unchanged
    assert [r.name for r in LESS.on(chain).chain()] == ["first", "second", "less"]


def test_a_variant_of_a_variant_is_reproduced_by_its_recipe_from_the_original(small_mnist):
    original = load_model("zoo:lenet300")
    first = run(apply_recipe(FIRST, original, small_mnist, measure_before=False))
    parent = compressed_model(first, original, "first")
    second = run(apply_recipe(SECOND, parent, small_mnist, measure_before=False))  # as the studio does it
    again = run(apply_recipe(SECOND.on(FIRST), original, small_mnist))  # the recipe its report holds, re-run
    assert again.file_bytes == second.file_bytes
    assert again.recipe == SECOND.on(FIRST) and again.original_bytes == first.original_bytes
    assert again.after.test.accuracy == second.after.test.accuracy
    assert again.before.test is not None  # measured on the original, not on the link before


def test_pruning_a_variant_less_never_revives_its_zeros(small_mnist):
    original = load_model("zoo:lenet300")
    first = run(apply_recipe(SECOND, original, small_mnist, measure_before=False))  # 97%, 3 bits
    parent = compressed_model(first, original, "97%")
    zeros_before = zeros_of(parent.module)
    less = run(apply_recipe(LESS, parent, small_mnist, measure_before=False))  # asks for 80%, same bits
    for name, zeros in zeros_of(less.model).items():
        assert bool(zeros[zeros_before[name]].all()), f"{name}: a pruned weight came back"
        assert int(zeros.sum()) == int(zeros_before[name].sum())  # 80% < 97%: the layer stays as it was
    assert less.compressed_bytes <= first.compressed_bytes
    assert less.after.test.accuracy >= first.after.test.accuracy - 0.02  # not wrecked by clustering zeros


def test_training_a_pruned_variant_keeps_its_zeros(small_mnist):
    original = load_model("zoo:lenet300")
    first = run(apply_recipe(FIRST, original, small_mnist, measure_before=False))
    parent = compressed_model(first, original, "first")
    tune = Recipe.from_text("steps: [{kind: finetune, epochs: 1, lr: 0.01}, {kind: encode}]")
    tuned = run(apply_recipe(tune, parent, small_mnist, measure_before=False))
    for name, zeros in zeros_of(parent.module).items():
        assert bool((tuned.model.get_submodule(name).weight.detach()[zeros] == 0).all())
    fc1 = next(t for t in tuned.account.tensors if t.name == "fc1.weight")
    assert fc1.encoding != "raw" and fc1.kept == round(0.1 * 235_200)  # stored sparse, not densely


def test_kept_share_is_the_same_in_the_compare_rows_and_the_layer_inventory(small_mnist):
    original = load_model("zoo:lenet300")
    result = run(apply_recipe(FIRST, original, small_mnist, measure_before=False))
    rows = {r.name: r for r in layers_from_account(result.account, result.model)}
    info = inventory(result.model).layer("fc1")
    weight = result.model.fc1.weight
    zeros = weight.numel() - int(torch.count_nonzero(weight))
    assert rows["fc1.weight"].kept == kept_fraction(zeros, weight.numel()) == pytest.approx(0.1, abs=1e-4)
    bias_zeros = int((result.model.fc1.bias == 0).sum())
    assert info.sparsity == pytest.approx(1 - kept_fraction(zeros + bias_zeros, info.params))


def test_a_variant_is_named_by_what_it_does_and_knows_its_parent(small_mnist):
    assert default_name(FIRST) == "90% · 5-bit k-means"
    assert default_name(SECOND) == "97% · fine-tune 1 ep · 3-bit k-means"
    original = load_model("zoo:lenet300")
    first, result = run(compress_variant(1, "#1", FIRST, original, small_mnist))
    parent = compressed_model(result, original, "first")
    second, result2 = run(compress_variant(2, "#2", LESS, parent, small_mnist, parent=first))
    assert first.parent is None and second.parent == 1
    assert second.recipe == LESS.on(FIRST) == result2.recipe


def test_the_longest_chain_a_recipe_records_reads_back_and_one_more_is_refused():
    from core.recipe import RecipeError
    from core.recipe.schema import MAX_CHAIN

    chain = FIRST
    for _ in range(MAX_CHAIN - 1):
        chain = LESS.on(chain)
    assert len(chain.chain()) == MAX_CHAIN
    assert Recipe.from_text(chain.to_yaml()) == chain  # within the parser's nesting limit
    with pytest.raises(RecipeError, match="at most"):
        LESS.on(chain)
