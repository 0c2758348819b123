"""Activation statistics: exact counts, BatchNorm pairing, and hooks that never outlive the measurement."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from core.analysis.activations import ActivationError, activation_stats, forward_hooks
from core.progress import Cancelled, run
from core.eval.zoo import ResNet8


def hooks_left(model: nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


def batches(mnist, n=1000, size=250):
    return [x for x, _ in mnist.val.batches(size, limit=n)]


def test_counts_equal_a_direct_computation(lenet300, mnist):
    model = lenet300.module
    inputs = batches(mnist)
    stats = run(activation_stats(model, inputs, len(inputs)))
    x = torch.cat(inputs).flatten(1)
    with torch.inference_mode():
        h1 = model.fc1(x)
        h2 = model.fc2(torch.relu(h1))
    for name, pre in (("fc1", h1), ("fc2", h2)):
        s = stats[name]
        assert s.units == pre.shape[1] and s.observations == 1000 and s.measured_at == name
        torch.testing.assert_close(torch.from_numpy(s.nonzero_fraction), (pre > 0).double().mean(0))
        torch.testing.assert_close(torch.from_numpy(s.mean), pre.clamp(min=0).double().mean(0), rtol=1e-5,
                                   atol=1e-6)
    assert stats["fc1"].apoz.shape == (300,)


def test_dead_units_are_found(lenet300, mnist):
    model = lenet300.module
    saved = model.fc2.bias.detach().clone()
    try:
        with torch.no_grad():
            model.fc2.bias[[3, 7]] = -1e6  # these two neurons can never fire
        stats = run(activation_stats(model, batches(mnist, 500)))
    finally:
        with torch.no_grad():
            model.fc2.bias.copy_(saved)
    assert stats["fc2"].dead.tolist() == [3, 7]


def test_conv_channels_are_read_after_their_batchnorm():
    torch.manual_seed(0)
    model = ResNet8().eval()
    stats = run(activation_stats(model, [torch.rand(8, 1, 28, 28)]))
    assert stats["conv1"].measured_at == "bn1" and stats["conv1"].units == 16
    assert stats["conv1"].observations == 8 * 28 * 28
    assert stats["layer2.shortcut.0"].measured_at == "layer2.shortcut.1"
    assert stats["fc"].measured_at == "fc" and stats["fc"].observations == 8


def test_hooks_are_removed_and_outputs_unchanged(lenet300, mnist):
    model = lenet300.module
    x = next(mnist.test.batches(64))[0]
    with torch.inference_mode():
        before = model(x)
    model.train()  # measuring runs in eval mode and must give the model its own mode back
    try:
        run(activation_stats(model, batches(mnist, 500)))
        assert hooks_left(model) == 0 and model.training
    finally:
        model.eval()
    with torch.inference_mode():
        assert torch.equal(model(x), before)


def test_batchnorm_is_paired_only_when_it_reads_the_layer_output():
    """conv -> relu -> bn: the BatchNorm reads the ReLU's output, so the conv is measured itself, and a
    channel that can never fire is reported dead whatever the BatchNorm adds afterwards."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4 * 26 * 26, 3))
    with torch.no_grad():
        model[0].bias[0] = -1e6
        model[2].bias.fill_(0.5)
    stats = run(activation_stats(model.eval(), [torch.rand(6, 1, 28, 28)]))
    assert stats["0"].measured_at == "0" and stats["0"].dead.tolist() == [0]


def test_hooks_are_removed_on_cancel(lenet300, mnist):
    model = lenet300.module
    task = activation_stats(model, batches(mnist, 1000, 100))
    next(task)
    assert hooks_left(model) > 0  # measuring
    with pytest.raises(Cancelled):
        run(task, should_cancel=lambda: True)
    assert hooks_left(model) == 0


def test_hooks_are_removed_on_error(lenet300, mnist):
    model = lenet300.module
    good = batches(mnist, 200)
    with pytest.raises(RuntimeError):
        run(activation_stats(model, [*good, torch.rand(3, 5)]))
    assert hooks_left(model) == 0


def test_forward_hooks_context_removes_on_exception():
    layer = nn.Linear(2, 2)
    with pytest.raises(ValueError), forward_hooks({layer: lambda *a: None}):
        assert len(layer._forward_hooks) == 1
        raise ValueError("boom")
    assert len(layer._forward_hooks) == 0


@pytest.mark.parametrize("kind", ["torchscript", "export", "export_static"])
def test_compiled_programs_count_what_the_eager_model_counts(model_files, kind):
    """Hooks do not reach inside a compiled program: its layers' outputs are tapped from its graph instead."""
    from core.eval.zoo import load_zoo_model
    from core.io import LoadOptions, load_model

    loaded = load_model(model_files[kind], LoadOptions(trust=True))
    eager, _ = load_zoo_model("lenet300")
    batches = [torch.rand(3, 1, 28, 28, generator=torch.Generator().manual_seed(i)) for i in range(2)]
    compiled = run(activation_stats(loaded.module, batches))
    expected = run(activation_stats(eager, batches))
    assert set(compiled) == set(expected) == {"fc1", "fc2", "fc3"}
    for name, stats in expected.items():
        assert compiled[name].observations == stats.observations == 6
        np.testing.assert_allclose(compiled[name].nonzero_fraction, stats.nonzero_fraction)
        np.testing.assert_allclose(compiled[name].mean, stats.mean, rtol=1e-5, atol=1e-6)
    assert not any(m._forward_hooks for m in loaded.module.modules())


def test_model_without_unit_layers():
    with pytest.raises(ActivationError, match="no Linear or convolution layers"):
        run(activation_stats(nn.Sequential(nn.BatchNorm1d(4)), [torch.rand(2, 4)]))
