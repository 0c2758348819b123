"""Evaluation: accuracy, fidelity, latency and bytes on disk, each checked against an independent figure."""

from __future__ import annotations

import os

import pytest
import torch
from torch import nn

from core.eval.data import Split
from core.eval.evaluate import accuracy, latency, saved_size_bytes
from core.eval.fidelity import fidelity
from core.progress import run


class Pick(nn.Module):
    """Scores class = the value of the first pixel (0..3): a classifier whose accuracy is known exactly."""

    def __init__(self):
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        return nn.functional.one_hot((x.flatten(1)[:, 0] * 255).round().long(), 4).float() * 10 + self.dummy


def test_accuracy_is_exact():
    images = torch.zeros(10, 1, 2, 2, dtype=torch.uint8)
    images[:, 0, 0, 0] = torch.tensor([0, 1, 2, 3, 0, 1, 2, 3, 0, 1], dtype=torch.uint8)
    labels = torch.tensor([0, 1, 2, 3, 0, 1, 2, 3, 1, 0])  # the last two are wrong
    result = run(accuracy(Pick(), Split(images, labels), batch_size=3))
    assert (result.correct, result.count, result.accuracy) == (8, 10, 0.8)
    assert result.loss == pytest.approx(2 * 10 / 10, rel=1e-3)  # two mistakes cost ~10 nats each


def test_fidelity_of_a_model_to_itself_and_to_a_changed_copy(lenet300, mnist):
    probes = [x for x, _ in mnist.val.batches(500, limit=1000)]
    same = run(fidelity(lenet300.module, lenet300.module, probes))
    assert (same.top1_agreement, same.relative_error, same.count) == (1.0, 0.0, 1000)
    assert same.cosine == pytest.approx(1.0)
    noisy = type(lenet300.module)()
    noisy.load_state_dict(lenet300.module.state_dict())
    with torch.no_grad():
        noisy.fc1.weight.add_(torch.randn_like(noisy.fc1.weight) * 0.05)
    changed = run(fidelity(noisy, lenet300.module, probes))
    assert 0.5 < changed.top1_agreement < 1.0 and changed.relative_error > 0.01


def test_latency_uses_the_clock_it_is_given():
    ticks = iter(range(0, 10_000, 2))  # every call 2 "seconds" after the last: 2000 ms per run
    result = run(latency(nn.Linear(3, 3), torch.rand(5, 3), runs=4, warmup=1, clock=lambda: next(ticks)))
    assert (result.median_ms, result.best_ms, result.batch_size, result.runs) == (2000.0, 2000.0, 5, 4)


def test_saved_size_is_the_size_of_the_exported_state_dict(tmp_path, lenet300):
    from core.io.export import export

    path = tmp_path / "model.pt"
    export(lenet300.module, torch.zeros(1, 1, 28, 28), "state_dict", path)
    assert saved_size_bytes(lenet300.module) == os.path.getsize(path)
    assert os.path.getsize(path) > 4 * 266_610  # float32 weights and the archive around them
    smaller = nn.Linear(784, 10)
    assert saved_size_bytes(smaller) < saved_size_bytes(lenet300.module)


def test_accuracy_of_an_exported_program(model_files, mnist):
    """torch.export graphs refuse eval(); measuring them must not try to switch modes."""
    from core.io import LoadOptions, load_model

    loaded = load_model(model_files["export"], LoadOptions(trust=True))
    result = run(accuracy(loaded.module, mnist.test, limit=500))
    assert result.count == 500 and result.accuracy > 0.95


def test_latency_counts_the_batch_of_keyword_inputs():
    class Keywords(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Embedding(10, 4)

        def forward(self, input_ids, attention_mask):
            return self.embed(input_ids) * attention_mask[..., None]

    inputs = {"input_ids": torch.zeros(6, 5, dtype=torch.long), "attention_mask": torch.ones(6, 5)}
    assert run(latency(Keywords(), inputs, runs=2, warmup=0)).batch_size == 6
