"""The demo model zoo: Deep Compression's two LeNets and a small residual CNN, with shipped checkpoints.

Checkpoints live in ``resources/checkpoints/<name>.pt`` as ``{"format", "arch", "state_dict", "meta"}``
and are read with ``torch.load(weights_only=True)``: no code runs when they load. They were made by
``python main.py train-zoo`` (see :mod:`core.eval.training` and BENCHMARKS.md); the studio never trains on start.

All zoo models take float32 images in [0, 1], shaped ``(N, 1, 28, 28)``, and return class logits.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from core.errors import PrunescopeError
from core.resources import resource_path

CHECKPOINT_FORMAT = "prunescope-checkpoint/1"


class LeNet300(nn.Module):
    """LeNet-300-100: 784-300-100-10 with ReLU (266,610 parameters), as in Deep Compression's Table 2."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.fc1 = nn.Linear(784, 300)
        self.fc2 = nn.Linear(300, 100)
        self.fc3 = nn.Linear(100, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.flatten(x, 1)
        x = torch.relu(self.fc1(x))
        x = torch.relu(self.fc2(x))
        return self.fc3(x)


class LeNet5(nn.Module):
    """Caffe's LeNet-5: conv 20@5x5, max-pool, conv 50@5x5, max-pool, fc 500, ReLU, fc 10 (431,080 parameters).

    Caffe's model has no non-linearity after the convolutions; this one follows it exactly.
    """

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 20, 5)
        self.conv2 = nn.Conv2d(20, 50, 5)
        self.fc1 = nn.Linear(800, 500)
        self.fc2 = nn.Linear(500, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.max_pool2d(self.conv1(x), 2)
        x = torch.max_pool2d(self.conv2(x), 2)
        x = torch.relu(self.fc1(torch.flatten(x, 1)))
        return self.fc2(x)


class BasicBlock(nn.Module):
    """Two 3x3 conv + BatchNorm layers with an identity (or 1x1 conv + BN projection) shortcut."""

    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + self.shortcut(x))


class ResNet8(nn.Module):
    """A small residual CNN: stem 3x3 conv + BN, three basic blocks (16, 32, 64 channels), average pool, fc.

    Its residual additions couple channels across layers, which structured pruning must respect.
    """

    def __init__(self, num_classes: int = 10, widths: tuple[int, int, int] = (16, 32, 64)) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, widths[0], 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.layer1 = BasicBlock(widths[0], widths[0])
        self.layer2 = BasicBlock(widths[0], widths[1], stride=2)
        self.layer3 = BasicBlock(widths[1], widths[2], stride=2)
        self.fc = nn.Linear(widths[2], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(torch.flatten(torch.nn.functional.adaptive_avg_pool2d(x, 1), 1))


class MLP(nn.Module):
    """A fully connected net ``784-h-h-10`` with ReLU, optionally with dropout on the input and on each
    hidden layer (Hinton et al. 2015, section 3: the MNIST teacher and student). Dropout is a no-op in eval
    mode and holds no weights, so it changes neither the state_dict nor what compression sees."""

    def __init__(self, num_classes: int = 10, hidden: int = 800, input_dropout: float = 0.0,
                 hidden_dropout: float = 0.0) -> None:
        super().__init__()
        self.drop_in = nn.Dropout(input_dropout)
        self.fc1 = nn.Linear(784, hidden)
        self.fc2 = nn.Linear(hidden, hidden)
        self.fc3 = nn.Linear(hidden, num_classes)
        self.drop = nn.Dropout(hidden_dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.drop_in(torch.flatten(x, 1))
        x = self.drop(torch.relu(self.fc1(x)))
        x = self.drop(torch.relu(self.fc2(x)))
        return self.fc3(x)


def mlp1200(num_classes: int = 10) -> MLP:
    """Hinton's MNIST teacher: 784-1200-1200-10, dropout 0.2 on the input and 0.5 on the hidden units
    (2,395,210 parameters); trained with +-2-pixel jitter."""
    return MLP(num_classes, 1200, input_dropout=0.2, hidden_dropout=0.5)


def mlp800(num_classes: int = 10) -> MLP:
    """Hinton's MNIST student: 784-800-800-10, no regularisation (1,276,810 parameters)."""
    return MLP(num_classes, 800)


ARCHITECTURES: dict[str, Callable[..., nn.Module]] = {"lenet300": LeNet300, "lenet5": LeNet5,
                                                        "resnet8": ResNet8, "mlp1200": mlp1200, "mlp800": mlp800}


@dataclass(frozen=True)
class ZooEntry:
    """A shipped model: its architecture, the data set it was trained on, and how it was trained."""

    name: str
    arch: str
    dataset: str
    description: str
    input_shape: tuple[int, ...] = (1, 1, 28, 28)
    epochs: int = 20
    lr: float = 0.05
    weight_decay: float = 5e-4
    augment: bool = True
    extra: dict = field(default_factory=dict)

    @property
    def checkpoint(self) -> Path:
        return resource_path("checkpoints", f"{self.name}.pt")


DISTILL_EPOCHS = 60
"""The epochs of Hinton's MNIST pair and of their reproduction (resources/recipes/distill-hinton-mnist.yaml):
the three models train for the same epochs, from the same seed."""

ZOO: dict[str, ZooEntry] = {e.name: e for e in (
    ZooEntry("lenet300", "lenet300", "mnist", "LeNet-300-100 on MNIST (Deep Compression, Table 2)", epochs=40),
    ZooEntry("lenet5", "lenet5", "mnist", "Caffe LeNet-5 on MNIST (Deep Compression, Table 3)", epochs=20),
    ZooEntry("lenet300-fashion", "lenet300", "fashion-mnist", "LeNet-300-100 on Fashion-MNIST", epochs=40,
             augment=False),
    ZooEntry("lenet5-fashion", "lenet5", "fashion-mnist", "Caffe LeNet-5 on Fashion-MNIST", epochs=20,
             augment=False),
    ZooEntry("resnet8-fashion", "resnet8", "fashion-mnist",
             "Residual CNN with BatchNorm on Fashion-MNIST (coupled channels)", epochs=15, lr=0.1, augment=False),
    ZooEntry("mnist-teacher", "mlp1200", "mnist", "Hinton's MNIST teacher: 784-1200-1200-10, dropout, jitter "
             "(Distilling the Knowledge in a Neural Network, section 3)", epochs=DISTILL_EPOCHS),
    ZooEntry("mnist-student", "mlp800", "mnist", "Hinton's MNIST student trained alone: 784-800-800-10, labels "
             "only, no dropout or jitter (the SGD settings the distill step trains with)", epochs=DISTILL_EPOCHS,
             augment=False),
)}


class ZooError(PrunescopeError):
    """An unknown zoo name or a missing/corrupt shipped checkpoint."""


def zoo_entry(name: str) -> ZooEntry:
    try:
        return ZOO[name]
    except KeyError:
        raise ZooError(f"unknown zoo model {name!r}; the zoo has: {', '.join(ZOO)}") from None


def build(arch: str, num_classes: int = 10) -> nn.Module:
    """A freshly initialised zoo architecture."""
    try:
        return ARCHITECTURES[arch](num_classes)
    except KeyError:
        raise ZooError(f"unknown architecture {arch!r}; known: {', '.join(ARCHITECTURES)}") from None


def read_checkpoint(path: Path) -> dict:
    """Read a Prunescope checkpoint safely (``weights_only``) and check its layout."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ZooError(f"{path}: checkpoint missing; run `python main.py train-zoo` to make it") from None
    except Exception as exc:  # torch raises many types for corrupt archives
        first_line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ZooError(f"{path}: unreadable checkpoint ({first_line})") from exc
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise ZooError(f"{path}: not a Prunescope checkpoint")
    return ckpt


def load_zoo_model(name: str) -> tuple[nn.Module, dict]:
    """The trained zoo model ``name`` in eval mode, and its checkpoint metadata."""
    entry = zoo_entry(name)
    ckpt = read_checkpoint(entry.checkpoint)
    model = build(ckpt["arch"], ckpt["meta"].get("num_classes", 10))
    model.load_state_dict(ckpt["state_dict"])
    return model.eval(), dict(ckpt["meta"])


def save_checkpoint(path: Path, arch: str, model: nn.Module, meta: dict) -> None:
    """Write a checkpoint atomically (temporary file, then rename)."""
    from core.fileio import atomic_write

    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    with atomic_write(path) as f:
        torch.save({"format": CHECKPOINT_FORMAT, "arch": arch, "state_dict": state, "meta": meta}, f)


def match_architecture(state_dict: dict[str, torch.Tensor]) -> str | None:
    """The zoo architecture whose parameter names and shapes equal ``state_dict``'s, if any."""
    shapes = {k: tuple(v.shape) for k, v in state_dict.items()}
    for arch in ARCHITECTURES:
        reference = {k: tuple(v.shape) for k, v in build(arch).state_dict().items()}
        if reference == shapes:
            return arch
    return None
