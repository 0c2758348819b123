"""Quantization: exact 1-D k-means, codebook gradients summed per cluster, uniform/binary/ternary levels."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from core.methods.masks import apply_masks, magnitude_masks
from core.methods.codebooks import assign, kmeans_1d, quantize_layer, shared_of


def lloyd_reference(x, centroids, iterations):
    """Textbook Lloyd iterations, O(n k) each."""
    for _ in range(iterations):
        labels = np.abs(x[:, None] - centroids[None, :]).argmin(1)
        centroids = np.array([x[labels == j].mean() if (labels == j).any() else centroids[j]
                              for j in range(len(centroids))])
    return centroids


def test_kmeans_equals_textbook_lloyd_from_the_same_start():
    x = np.random.default_rng(0).standard_normal(3000)
    ours = kmeans_1d(x, 8, max_iter=5)
    reference = lloyd_reference(x, np.linspace(x.min(), x.max(), 8), 5)
    np.testing.assert_allclose(ours.centroids, np.sort(reference), rtol=1e-9, atol=1e-12)
    converged = kmeans_1d(x, 8)
    labels = np.abs(x[:, None] - converged.centroids[None, :]).argmin(1)
    assert converged.inertia == pytest.approx(((x - converged.centroids[labels]) ** 2).sum(), rel=1e-9)
    assert converged.inertia <= ours.inertia


def test_assign_picks_the_nearest_level():
    codebook = torch.tensor([-1.0, 0.0, 0.5, 2.0])
    values = torch.tensor([-3.0, -0.6, -0.4, 0.2, 0.3, 1.2, 1.3, 9.0])
    assert assign(values, codebook).tolist() == [0, 0, 1, 1, 2, 2, 3, 3]


def test_kmeans_layer_keeps_pruned_zeros_and_trains_centroids_with_summed_gradients():
    torch.manual_seed(0)
    layer = nn.Linear(20, 10)
    apply_masks(layer, {"": magnitude_masks({"": layer.weight}, 0.5)[""]})
    shared = quantize_layer(layer, "kmeans", 3)
    w = layer.weight
    assert len(torch.unique(w[w != 0])) <= 8 and int((w == 0).sum()) == 100
    x = torch.randn(4, 20)
    layer(x).pow(2).sum().backward()
    weight_grad = torch.autograd.functional.jacobian(lambda W: (x @ W.T + layer.bias).pow(2).sum(),
                                                     layer.weight.detach())
    expected = torch.zeros(8).index_add_(0, shared.codes[shared.mask], weight_grad[shared.mask])
    torch.testing.assert_close(shared.codebook.grad, expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("symmetric, levels", [(True, 15), (False, 16)])
def test_uniform_levels_include_an_exact_zero(symmetric, levels):
    torch.manual_seed(0)
    layer = nn.Linear(30, 6)
    shared = quantize_layer(layer, "uniform", 4, per_channel=False, symmetric=symmetric)
    assert shared.codebook.shape == (levels,) and (shared.codebook == 0).any()
    steps = torch.diff(shared.codebook)
    torch.testing.assert_close(steps, torch.full_like(steps, float(steps[0])))
    assert (layer.weight - nn.Linear(30, 6).weight).abs().max() > 0  # sanity: it is a real layer


def test_uniform_per_channel_has_a_codebook_per_row():
    torch.manual_seed(0)
    layer = nn.Linear(30, 6)
    with torch.no_grad():
        layer.weight[0] *= 100  # one wide row must not coarsen the others
    original = layer.weight.detach().clone()
    shared = quantize_layer(layer, "uniform", 4, per_channel=True, symmetric=True)
    assert shared.codebook.shape == (6, 15)
    error = (layer.weight - original).abs()
    assert error[1:].max() < original[1:].abs().max() / 14


def test_binary_and_ternary():
    torch.manual_seed(0)
    layer = nn.Linear(50, 8)
    w = layer.weight.detach().clone()
    quantize_layer(layer, "binary", 1)
    values = torch.unique(layer.weight)
    assert len(values) == 2 and values[0] == -values[1]
    layer2 = nn.Linear(50, 8)
    w2 = layer2.weight.detach().clone()
    shared = quantize_layer(layer2, "ternary", 2)
    levels = shared.codebook.detach()
    assert set(torch.unique(layer2.weight.detach()).tolist()) <= {0.0, float(levels[1]), float(levels[0])}
    assert ((layer2.weight == 0) == (w2.abs() <= 0.7 * w2.abs().mean())).all()
    assert shared_of(layer2) is shared and w.shape == w2.shape


def test_one_bit_uniform_has_two_levels():
    torch.manual_seed(0)
    layer = nn.Linear(30, 6)
    w = layer.weight.detach().clone()
    shared = quantize_layer(layer, "uniform", 1, per_channel=True, symmetric=True)
    assert shared.codebook.shape == (6, 2)
    torch.testing.assert_close(shared.codebook[:, 1].detach(), w.abs().mean(1))
    assert torch.equal(layer.weight.detach() > 0, w > 0)


def test_a_quantized_layer_keeps_one_byte_per_code_and_no_float_weights():
    """What a big model's run can afford: the codes in a byte each, the float weights they came from freed."""
    from torch.nn.utils import parametrize

    layer = torch.nn.Linear(300, 200)
    before = layer.weight.detach().clone()
    shared = quantize_layer(layer, "kmeans", 5)
    original = layer.parametrizations.weight.original
    assert shared.packed.dtype == torch.uint8 and shared.codes.dtype == torch.int64
    assert original.shape == before.shape and original.stride() == (0, 0)  # a placeholder, no memory
    assert (layer.weight - before).abs().max() < (before.max() - before.min()) / 31
    parametrize.remove_parametrizations(layer, "weight", leave_parametrized=True)
    torch.testing.assert_close(layer.weight, shared.codebook.detach()[shared.codes])
