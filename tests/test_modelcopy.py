"""clone_module: the same copy as copy.deepcopy, made with torch's lock-free clones."""

from __future__ import annotations

import copy

import torch
from torch import nn

from core.methods import masks as pruning
from core.modelcopy import clone_module


def test_clone_is_an_independent_equal_copy():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4 * 26 * 26, 10))
    model[1].running_mean.normal_()
    pruning.apply_masks(model, {"3": torch.rand(10, 4 * 26 * 26) > 0.5})
    model.eval()
    clone, reference = clone_module(model), copy.deepcopy(model)
    x = torch.rand(2, 1, 28, 28)
    assert torch.equal(clone(x), model(x)) and torch.equal(clone(x), reference(x))
    state, mine = model.state_dict(keep_vars=True), clone.state_dict(keep_vars=True)
    assert list(mine) == list(state)
    for name, t in state.items():
        assert torch.equal(mine[name], t) and mine[name].data_ptr() != t.data_ptr()
        assert type(mine[name]) is type(t) and mine[name].requires_grad == t.requires_grad
    with torch.no_grad():
        clone[0].weight.zero_()
    assert model[0].weight.abs().sum() > 0  # the original is untouched


def test_tied_weights_stay_tied():
    model = nn.Sequential(nn.Linear(5, 5, bias=False), nn.Linear(5, 5, bias=False))
    model[1].weight = model[0].weight
    clone = clone_module(model)
    assert clone[1].weight is clone[0].weight and clone[0].weight is not model[0].weight
