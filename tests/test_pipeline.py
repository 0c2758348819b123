"""Recipes applied end to end on real models: the original never changes, the file says what it holds."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from core.io import LoadOptions, load_model
from core.pipeline.apply import CompressionError, apply_recipe
from core.progress import run
from core.recipe import Recipe, RecipeError


@pytest.fixture(scope="module")
def small_mnist(mnist):
    """MNIST with 3,000 training and 2,000 test images, so fine-tuning in tests takes seconds."""
    return dataclasses.replace(mnist, train=mnist.train.subset(3000), test=mnist.test.subset(2000))


def state_copy(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def assert_unchanged(model, before):
    after = model.state_dict()
    assert list(after) == list(before)
    assert all(torch.equal(after[k], before[k]) for k in before)


FULL = Recipe.from_text("""
name: test
steps:
  - {kind: iterative_prune, sparsity: 0.9, steps: 2, epochs_per_step: 1, lr: 0.01, overrides: {fc3: 0.5}}
  - {kind: quantize, method: kmeans, bits: 5, finetune_epochs: 1, lr: 0.0005}
  - {kind: encode}
""")


def test_recipe_compresses_without_touching_the_original(small_mnist):
    loaded = load_model("zoo:lenet300")
    before = state_copy(loaded.module)
    result = run(apply_recipe(FULL, loaded, small_mnist))
    assert_unchanged(loaded.module, before)
    assert result.compressed_bytes == len(result.file_bytes) == result.account.total
    assert result.ratio > 20
    assert result.after.test.count == 2000 and result.after.test.accuracy > 0.9
    assert set(result.stages) == {"pruned", "quantized", "huffman"}
    assert result.stages["pruned"] > result.stages["quantized"] > result.stages["huffman"]
    fc1 = next(t for t in result.account.tensors if t.name == "fc1.weight")
    assert fc1.kept == round(0.1 * 235_200) and fc1.encoding == "sparse"
    kept_values = torch.unique(result.model.fc1.weight[result.model.fc1.weight != 0])
    assert len(kept_values) <= 32


def test_the_file_loads_back_to_the_reported_accuracy(tmp_path, small_mnist):
    from core.eval.evaluate import accuracy

    loaded = load_model("zoo:lenet300")
    result = run(apply_recipe(FULL, loaded, small_mnist, measure_before=False))
    path = tmp_path / "lenet300.psz"
    path.write_bytes(result.file_bytes)
    again = load_model(path)
    assert again.format == "prunescope" and again.file_bytes == path.stat().st_size == result.compressed_bytes
    assert run(accuracy(again.module, small_mnist.test)) == result.after.test


def test_structured_pruning_of_a_residual_network_rebuilds_from_the_file(tmp_path, small_mnist):
    loaded = load_model("zoo:resnet8-fashion")
    recipe = Recipe.from_text("""
steps:
  - {kind: prune_structured, amount: 0.5, importance: l1, layers: ['layer[123].conv1', 'conv1']}
  - {kind: remove_units, layer: layer3.conv1, units: [0, 1]}
  - {kind: quantize, method: uniform, bits: 8, granularity: channel}
""")
    before = state_copy(loaded.module)
    result = run(apply_recipe(recipe, loaded, small_mnist, measure_before=False))
    assert_unchanged(loaded.module, before)
    pruned = result.model
    assert pruned.conv1.out_channels == 8 and pruned.bn1.num_features == 8
    assert pruned.layer1.conv2.out_channels == 8  # coupled through the residual addition
    assert pruned.layer3.conv1.out_channels == 30
    path = tmp_path / "r.psz"
    path.write_bytes(result.file_bytes)
    again = load_model(path)
    x = torch.rand(4, 1, 28, 28)
    with torch.inference_mode():
        torch.testing.assert_close(again.module(x), pruned(x))


def test_int8_static_quantization_runs_and_is_measured(small_mnist):
    loaded = load_model("zoo:lenet5")
    recipe = Recipe.from_text("steps: [{kind: quantize_activations, mode: static, calibration_batches: 2}]")
    result = run(apply_recipe(recipe, loaded, small_mnist, measure_before=False))
    assert result.int8.test.accuracy > 0.95
    assert any(type(m).__module__.startswith("torch.ao.nn.quantized") for m in result.int8_model.modules())


def test_bad_recipes_are_refused_before_any_work(small_mnist):
    loaded = load_model("zoo:lenet300")
    before = state_copy(loaded.module)
    with pytest.raises(RecipeError, match="matches no layer"):
        run(apply_recipe(Recipe.from_text("steps: [{kind: prune_magnitude, layers: [conv9]}]"), loaded, small_mnist))
    with pytest.raises(CompressionError, match="needs a labelled data set"):
        run(apply_recipe(Recipe.from_text("steps: [{kind: finetune}]"), loaded, None))
    with pytest.raises(RecipeError, match="structured pruning must come before quantize"):
        run(apply_recipe(Recipe.from_text("steps: [{kind: quantize}, {kind: remove_units, layer: fc1, units: [0]}]"),
                         loaded, small_mnist))
    assert_unchanged(loaded.module, before)


def test_compiled_models_are_pruned_in_place_and_the_loaded_program_is_unchanged(model_files, small_mnist):
    loaded = load_model(model_files["torchscript"], LoadOptions(input_shape=(1, 1, 28, 28), trust=True))
    before = state_copy(loaded.module.program)
    result = run(apply_recipe(Recipe.from_text("steps: [{kind: prune_magnitude, sparsity: 0.9}]"), loaded,
                              small_mnist))
    assert result.before.test.accuracy > 0.95 and 0.5 < result.after.test.accuracy < result.before.test.accuracy
    assert (result.model.program.fc1.weight == 0).float().mean() == pytest.approx(0.9, abs=0.01)
    assert_unchanged(loaded.module.program, before)


def test_cancel_leaves_the_original_unchanged(small_mnist):
    from core.progress import Cancelled

    loaded = load_model("zoo:lenet300")
    before = state_copy(loaded.module)
    with pytest.raises(Cancelled):
        run(apply_recipe(FULL, loaded, small_mnist), should_cancel=lambda: True)
    assert_unchanged(loaded.module, before)


def test_a_structured_file_of_a_model_without_an_input_shape_still_rebuilds(tmp_path, model_files, small_mnist):
    """The run traced the model with data batches; the file records that shape, so it can be rebuilt."""
    loaded = load_model(model_files["state_dict"], LoadOptions(arch="tests.factories:make_lenet300"))
    assert loaded.input_shape is None
    recipe = Recipe.from_text("steps: [{kind: prune_structured, amount: 0.5, layers: [fc1]}]")
    result = run(apply_recipe(recipe, loaded, small_mnist, measure_before=False))
    assert result.model_info["input_shape"] == [1, 1, 28, 28]
    path = tmp_path / "cnn.psz"
    path.write_bytes(result.file_bytes)
    again = load_model(path, LoadOptions(arch="tests.factories:make_lenet300")).module
    assert again.fc1.out_features == 150
    x = torch.rand(3, 1, 28, 28)
    with torch.inference_mode():
        torch.testing.assert_close(again(x), result.model(x))


def test_the_decoded_model_trains_like_the_original(small_mnist):
    """The decoded model is the run's working copy: every tensor is the file's, and it is as trainable as
    the original (a variant of a variant fine-tunes all of its weights)."""
    loaded = load_model("zoo:lenet300")
    loaded.module.fc3.bias.requires_grad_(False)  # a frozen tensor stays frozen
    try:
        result = run(apply_recipe(FULL, loaded, small_mnist, measure_before=False))
        flags = {k: p.requires_grad for k, p in result.model.named_parameters()}
        assert flags == {k: p.requires_grad for k, p in loaded.module.named_parameters()}
        assert all(p.is_contiguous() and p.stride()[-1] == 1 for p in result.model.parameters())
        assert not any(p.data_ptr() == q.data_ptr() for p in result.model.parameters()
                       for q in loaded.module.parameters())
    finally:
        loaded.module.fc3.bias.requires_grad_(True)
