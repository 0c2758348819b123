"""Training leaves nothing large for a cyclic garbage collection to free (the studio collects on its UI
thread, where freeing a model-sized buffer stalls the window)."""

from __future__ import annotations

import gc

import torch
from torch import nn

from core.eval.data import Split
from core.progress import run
from core.eval.training import TrainConfig, train


def test_training_frees_its_optimizer_state_and_gradients_at_once():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 64), nn.ReLU(), nn.Linear(64, 10))
    data = Split(torch.randint(0, 255, (256, 1, 28, 28), dtype=torch.uint8), torch.randint(0, 10, (256,)))
    gc.collect()
    was_enabled = gc.isenabled()
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        losses = run(train(model, data, TrainConfig(epochs=2, lr=0.05, batch_size=64)))
        gc.collect()  # what a later collection would have had to free: kept in gc.garbage, not freed
        left = [o for o in gc.garbage if isinstance(o, torch.Tensor) and o.numel() >= 64 * 784]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        if was_enabled:
            gc.enable()
    assert len(losses) == 2 and not model.training
    assert left == []  # the momentum buffers went when training ended, by reference count
    assert all(p.grad is None for p in model.parameters())
