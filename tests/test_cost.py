"""Multiply-accumulates counted by torch's FLOP counter, checked against hand counts on the zoo models."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from core.analysis.cost import count_macs, human_macs
from core.io import load_model
from core.methods.codebooks import quantize_layer
from core.methods.masks import apply_masks, magnitude_masks


def conv_macs(conv: nn.Conv2d, out_hw: tuple[int, int]) -> int:
    """By hand: every output value is in/groups * kh * kw multiply-adds."""
    kh, kw = conv.kernel_size
    return conv.out_channels * (conv.in_channels // conv.groups) * kh * kw * out_hw[0] * out_hw[1]


def out_size(size: int, conv: nn.Conv2d) -> int:
    return (size + 2 * conv.padding[0] - conv.kernel_size[0]) // conv.stride[0] + 1


def test_lenet300_has_its_textbook_count():
    loaded = load_model("zoo:lenet300")
    cost = count_macs(loaded.module, torch.zeros(8, 1, 28, 28))  # one sample, whatever the batch
    assert cost.total == 784 * 300 + 300 * 100 + 100 * 10 == 266_200
    assert cost.per_layer == {"fc1": 784 * 300, "fc2": 300 * 100, "fc3": 100 * 10}
    assert cost.effective_total == cost.total  # nothing pruned
    assert human_macs(cost.total) == "266 k" and human_macs(None) == "—"


def test_lenet5_layers_match_hand_counts():
    model = load_model("zoo:lenet5").module
    cost = count_macs(model, torch.zeros(1, 1, 28, 28))
    s1 = out_size(28, model.conv1)
    s2 = out_size(s1 // 2, model.conv2)  # 2x2 max pooling between
    assert cost.per_layer["conv1"] == conv_macs(model.conv1, (s1, s1))
    assert cost.per_layer["conv2"] == conv_macs(model.conv2, (s2, s2))
    assert cost.per_layer["fc1"] == model.fc1.in_features * model.fc1.out_features
    assert cost.per_layer["fc2"] == model.fc2.in_features * model.fc2.out_features
    assert cost.total == sum(cost.per_layer.values())


def test_resnet8_counts_every_convolution_once_including_the_shortcuts():
    model = load_model("zoo:resnet8-fashion").module
    sizes: dict[str, tuple[int, int]] = {}
    hooks = [m.register_forward_hook(lambda m, i, o, n=n: sizes.__setitem__(n, tuple(o.shape[-2:])))
             for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    with torch.no_grad():
        model.eval()(torch.zeros(1, 1, 28, 28))
    for h in hooks:
        h.remove()
    convs = {n: m for n, m in model.named_modules() if isinstance(m, nn.Conv2d)}
    expected = {n: conv_macs(m, sizes[n]) for n, m in convs.items()}
    expected["fc"] = model.fc.in_features * model.fc.out_features
    cost = count_macs(model, torch.zeros(3, 1, 28, 28))
    assert cost.per_layer == expected
    assert any(".shortcut." in n for n in cost.per_layer) and cost.total == sum(expected.values())


def test_pruned_layers_cost_the_same_dense_and_less_effectively():
    loaded = load_model("zoo:lenet300")
    model = loaded.module
    dense = count_macs(model, torch.zeros(1, 1, 28, 28))
    import copy
    pruned = copy.deepcopy(model)
    layers = {"fc1": pruned.fc1, "fc2": pruned.fc2}
    apply_masks(pruned, magnitude_masks({n: m.weight for n, m in layers.items()}, {"fc1": 0.9, "fc2": 0.5}))
    quantize_layer(pruned.fc2, "kmeans", 4)  # parametrized layers count under their own names
    cost = count_macs(pruned, torch.zeros(1, 1, 28, 28))
    assert cost.per_layer == dense.per_layer and cost.total == dense.total
    kept1 = int(torch.count_nonzero(pruned.fc1.weight)) / pruned.fc1.weight.numel()
    assert cost.effective_per_layer["fc1"] == round(dense.per_layer["fc1"] * kept1) < dense.per_layer["fc1"] // 9
    assert cost.effective_per_layer["fc3"] == dense.per_layer["fc3"]
    assert cost.effective_total == sum(cost.effective_per_layer.values())
    assert model.training == pruned.training  # the mode the model was in is restored


def test_a_module_called_twice_counts_twice_and_a_parents_own_matmul_is_its_own():
    class Twice(nn.Module):
        def __init__(self):
            super().__init__()
            self.block = nn.Linear(6, 6)
            self.extra = nn.Parameter(torch.ones(6, 3))

        def forward(self, x):
            return self.block(self.block(x)) @ self.extra

    cost = count_macs(Twice(), torch.zeros(5, 6))
    assert cost.per_layer == {"block": 2 * 36, "": 18} and cost.total == 90


@pytest.mark.parametrize("example", [torch.zeros(2, 6), (torch.zeros(2, 6),)])
def test_one_sample_of_a_tuple_or_a_tensor(example):
    assert count_macs(nn.Linear(6, 4), example).total == 24
