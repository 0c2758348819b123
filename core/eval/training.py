"""Supervised training as a generator: used to make the zoo checkpoints and, later, to fine-tune.

Training is seeded and runs in a fixed order, so the same command on the same machine (same torch, same
thread count) gives the same weights.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from core.devices import model_device, to_device
from core.eval.data import Split, to_float
from core.progress import Progress, Task


@dataclass(frozen=True)
class TrainConfig:
    """SGD with Nesterov momentum and a cosine learning-rate schedule over ``epochs``."""

    epochs: int = 10
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5e-4
    batch_size: int = 128
    augment: bool = False  # random shifts of up to ``shift`` pixels
    shift: int = 2
    seed: int = 0


Loss = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
"""A training loss: ``loss(logits, inputs, labels)`` -> a scalar tensor (the inputs let a loss run a teacher
on the same batch, see :func:`core.methods.distill.distillation_loss`)."""


def cross_entropy(logits: torch.Tensor, inputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The default loss: cross-entropy against the labels."""
    return nn.functional.cross_entropy(logits, labels)


def random_shift(images: torch.Tensor, shift: int, generator: torch.Generator) -> torch.Tensor:
    """Translate each image of a ``(B, C, H, W)`` batch by a random whole number of pixels in [-shift, shift]."""
    b, c, h, w = images.shape
    padded = nn.functional.pad(images, (shift, shift, shift, shift))
    oy = torch.randint(0, 2 * shift + 1, (b,), generator=generator)
    ox = torch.randint(0, 2 * shift + 1, (b,), generator=generator)
    rows = (oy[:, None] + torch.arange(h))[:, None, :, None]
    cols = (ox[:, None] + torch.arange(w))[:, None, None, :]
    return padded[torch.arange(b)[:, None, None, None], torch.arange(c)[None, :, None, None], rows, cols]


def train(model: nn.Module, data: Split, config: TrainConfig, report_every: int = 20,
          loss: Loss = cross_entropy) -> Task[list[float]]:
    """Train ``model`` in place on ``data`` to minimise ``loss``; yields :class:`Progress`, returns the mean
    loss of each epoch."""
    generator = torch.Generator().manual_seed(config.seed)
    torch.manual_seed(config.seed)
    optimizer = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum,
                                weight_decay=config.weight_decay, nesterov=True)
    losses: list[float] = []
    model.train()
    try:
        yield from _epochs(model, data, config, optimizer, generator, losses, report_every, loss)
    finally:
        # torch's optimizers sit in reference cycles: without this their momentum buffers (as large as the
        # model) would live until a cyclic collection, which the studio runs on its UI thread, where freeing
        # 100 MB stalls the window; cleared here, they are freed now, on the task's thread
        optimizer.zero_grad(set_to_none=True)  # the gradients too: as large again
        optimizer.state.clear()
        optimizer.param_groups.clear()
    model.eval()
    return losses


def _epochs(model: nn.Module, data: Split, config: TrainConfig, optimizer: torch.optim.Optimizer,
            generator: torch.Generator, losses: list[float], report_every: int, loss_of: Loss) -> Task[None]:
    device = model_device(model)  # where :func:`core.devices.placed` put it: the batches go there too
    steps_per_epoch = math.ceil(len(data) / config.batch_size)
    total = steps_per_epoch * config.epochs
    step = 0
    for epoch in range(config.epochs):
        order = torch.randperm(len(data), generator=generator)
        running, count = 0.0, 0
        for start in range(0, len(data), config.batch_size):
            idx = order[start:start + config.batch_size]
            x, y = to_float(data.images[idx]), data.labels[idx]
            if config.augment:
                x = random_shift(x, config.shift, generator)
            x, y = to_device(x, device), to_device(y, device)
            for group in optimizer.param_groups:  # cosine decay, per step
                group["lr"] = 0.5 * config.lr * (1 + math.cos(math.pi * step / total))
            loss = loss_of(model(x), x, y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            running += loss.item() * len(y)
            count += len(y)
            step += 1
            if step % report_every == 0 or step == total:
                yield Progress("train", step, total, f"epoch {epoch + 1}/{config.epochs}, loss {running / count:.4f}")
        losses.append(running / count)


def train_zoo_model(name: str, seed: int = 0) -> Task[dict]:
    """Train zoo model ``name`` from its seeded initialisation and write its checkpoint; returns its metadata.

    The recipe (epochs, learning rate, augmentation) is the zoo entry's; validation data is held out of
    training and the test split is only measured, once, at the end.
    """
    import platform
    import time

    from core.eval import zoo
    from core.eval.data import load_dataset
    from core.eval.evaluate import accuracy

    entry = zoo.zoo_entry(name)
    data = load_dataset(entry.dataset)
    torch.manual_seed(seed)
    model = zoo.build(entry.arch, data.num_classes)
    config = TrainConfig(epochs=entry.epochs, lr=entry.lr, weight_decay=entry.weight_decay,
                         augment=entry.augment, seed=seed)
    started = time.perf_counter()
    losses = yield from train(model, data.train, config)
    seconds = time.perf_counter() - started
    val = yield from accuracy(model, data.val)
    test = yield from accuracy(model, data.test)
    meta = {
        "name": name, "dataset": entry.dataset, "num_classes": data.num_classes,
        "classes": list(data.classes), "input_shape": list(entry.input_shape),
        "val_accuracy": val.accuracy, "test_accuracy": test.accuracy, "test_loss": test.loss,
        "train": {"epochs": config.epochs, "lr": config.lr, "momentum": config.momentum,
                  "weight_decay": config.weight_decay, "batch_size": config.batch_size,
                  "augment": config.augment, "seed": seed, "final_loss": losses[-1],
                  "seconds": round(seconds, 1), "torch": str(torch.__version__),
                  "threads": torch.get_num_threads(), "machine": platform.machine()},
    }
    zoo.save_checkpoint(entry.checkpoint, entry.arch, model, meta)
    return meta
