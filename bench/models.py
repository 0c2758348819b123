"""Models the benchmarks build (importable as ``bench.models:NAME`` by the state_dict + architecture loader)."""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn


def wide_mlp() -> nn.Module:
    """An MNIST MLP with 24.2M parameters (784-4096-4096-1024-10), seeded so every run gets the same one."""
    torch.manual_seed(0)
    return nn.Sequential(OrderedDict(
        flatten=nn.Flatten(), fc1=nn.Linear(784, 4096), relu1=nn.ReLU(), fc2=nn.Linear(4096, 4096),
        relu2=nn.ReLU(), fc3=nn.Linear(4096, 1024), relu3=nn.ReLU(), fc4=nn.Linear(1024, 10)))


def mlp_100m() -> nn.Module:
    """A 101.8M-parameter MLP on 256 inputs (256-4096, six 4096-4096 layers, 4096-10), seeded; the memory
    benchmark's model. Its largest layer is a sixth of it, like a block of a transformer of this size."""
    torch.manual_seed(0)
    layers = [("fc0", nn.Linear(256, 4096)), ("relu0", nn.ReLU())]
    for i in range(1, 7):
        layers += [(f"fc{i}", nn.Linear(4096, 4096)), (f"relu{i}", nn.ReLU())]
    return nn.Sequential(OrderedDict(layers + [("head", nn.Linear(4096, 10))]))


def mlp_tiny() -> nn.Module:
    """The same kind of model at 1/1000 of the size, for warming up a process before measuring it."""
    torch.manual_seed(0)
    return nn.Sequential(OrderedDict(fc0=nn.Linear(256, 128), relu0=nn.ReLU(), fc1=nn.Linear(128, 128),
                                     relu1=nn.ReLU(), head=nn.Linear(128, 10)))
