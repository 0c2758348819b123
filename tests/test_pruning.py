"""Unstructured pruning: exact counts, torch's own global pruning as the reference, masks that hold."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn.utils import prune as torch_prune

from core.eval.data import Split
from core.progress import run
from core.methods.masks import apply_masks, bake, current_mask, kth_smallest_magnitude, magnitude_masks, prunable_layers
from core.eval.training import TrainConfig, train


def random_layers(seed=0, sizes=((300, 784), (100, 300), (10, 100))):
    torch.manual_seed(seed)
    return nn.Sequential(*[nn.Linear(i, o) for o, i in sizes])


def test_kth_smallest_matches_a_sort():
    torch.manual_seed(0)
    tensors = [torch.randn(5000), torch.randn(300, 20) * 3]
    everything = torch.cat([t.abs().reshape(-1) for t in tensors]).sort().values
    for k in (1, 17, 5000, 10999, 11000):
        value, smaller = kth_smallest_magnitude(tensors, k)
        assert value == float(everything[k - 1]) and smaller == int((everything < everything[k - 1]).sum())


@pytest.mark.parametrize("sparsity", [0.0, 0.5, 0.9, 0.999])
def test_layer_wise_prunes_exactly_round_sparsity_n(sparsity):
    model = random_layers()
    weights = {n: m.weight for n, m in prunable_layers(model).items()}
    masks = magnitude_masks(weights, sparsity)
    for name, w in weights.items():
        assert int((~masks[name]).sum()) == round(sparsity * w.numel())
        if 0 < sparsity:  # every pruned weight is no larger than every kept one
            assert w.detach().abs()[~masks[name]].max() <= w.detach().abs()[masks[name]].min()


def test_global_masks_equal_torch_global_unstructured():
    ours_model, torch_model = random_layers(1), random_layers(1)
    masks = magnitude_masks({n: m.weight for n, m in prunable_layers(ours_model).items()}, 0.8, "global")
    params = [(m, "weight") for m in torch_model]
    torch_prune.global_unstructured(params, pruning_method=torch_prune.L1Unstructured, amount=0.8)
    for i, module in enumerate(torch_model):
        assert torch.equal(masks[str(i)], module.weight_mask.bool())


def test_ties_are_broken_to_prune_exactly_k():
    w = torch.tensor([[0.0, 0.0, 0.0, 0.0, 1.0, 2.0]])
    masks = magnitude_masks({"a": w}, 0.5)
    assert masks["a"].tolist() == [[False, False, False, True, True, True]]


def test_ties_across_layers_prune_exactly_k_under_a_global_threshold():
    """Weights equal to the threshold in several layers: only as many as needed go, the first ones first."""
    weights = {"a": torch.tensor([0.1, 0.5, 0.9]), "b": torch.tensor([0.5, 0.2, 0.5]), "c": torch.tensor([0.5])}
    for k, kept_ties in ((2, 4), (3, 3), (4, 2), (5, 1), (6, 0)):
        masks = magnitude_masks(weights, k / 7, "global")
        assert sum(int((~m).sum()) for m in masks.values()) == k
        ties = [bool(masks[n][i]) for n, i in (("a", 1), ("b", 0), ("b", 2), ("c", 0))]
        assert ties == [False] * (4 - kept_ties) + [True] * kept_ties


def test_masks_hold_through_training_and_bake(mnist):
    model = random_layers(2)
    net = nn.Sequential(nn.Flatten(), model)
    masks = magnitude_masks({n: m.weight for n, m in prunable_layers(model).items()}, 0.9)
    apply_masks(model, masks)
    run(train(net, Split(mnist.train.images[:512], mnist.train.labels[:512]), TrainConfig(epochs=1, lr=0.1)))
    for name, module in prunable_layers(model).items():
        assert torch.equal(module.weight != 0, masks[name]) or (module.weight[~masks[name]] == 0).all()
        assert current_mask(module) is not None
    bake(model)
    for name, module in prunable_layers(model).items():
        assert isinstance(module.weight, nn.Parameter) and current_mask(module) is None
        assert (module.weight[~masks[name]] == 0).all()


def test_masks_intersect_when_pruning_again():
    model = random_layers(3)
    first = magnitude_masks({"0": model[0].weight}, 0.5)
    apply_masks(model, first)
    second = magnitude_masks({"0": model[0].weight}, 0.75)
    apply_masks(model, second)
    assert int((model[0].weight == 0).sum()) == round(0.75 * model[0].weight.numel())
    assert not (current_mask(model[0]) & ~first["0"]).any()
