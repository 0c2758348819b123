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
