"""What "fires" means per layer: non-zero after a ReLU, |a| > ε after any other activation function or
none, with ε 1% of the layer's RMS activation; the function found as a module, a traced function call, or
a compiled program's graph operation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from core.analysis.activations import activation_stats
from core.analysis.firing import EPS_FRACTION
from core.progress import run


class Functional(nn.Module):
    def __init__(self, function):
        super().__init__()
        self.function = function
        self.fc1 = nn.Linear(6, 16)
        self.fc2 = nn.Linear(16, 3)

    def forward(self, x):
        return self.fc2(self.function(self.fc1(x)))


def _batches(n=3, width=6):
    return [torch.randn(32, width, generator=torch.Generator().manual_seed(i)) for i in range(n)]


def _expected(pre: torch.Tensor, function) -> tuple[np.ndarray, float]:
    """The fraction of |function(pre)| > ε per unit, ε from the first batch's RMS: by hand."""
    a = function(pre).abs()
    eps = EPS_FRACTION * float(a[:32].square().mean().sqrt())
    return (a > eps).double().mean(0).numpy(), eps


@pytest.mark.parametrize("module, name", [(nn.GELU(), "GELU"), (nn.Tanh(), "Tanh"), (nn.SiLU(), "SiLU")])
def test_after_a_smooth_activation_module_a_unit_fires_when_its_output_passes_epsilon(module, name):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 16), module, nn.Linear(16, 3)).eval()
    batches = _batches()
    stats = run(activation_stats(model, batches))
    with torch.no_grad():
        expected, eps = _expected(model[0](torch.cat(batches)), module)
    assert stats["0"].rule == f"|{name}(a)| > ε"
    assert stats["0"].epsilon == pytest.approx(eps, rel=1e-5)
    np.testing.assert_allclose(stats["0"].nonzero_fraction, expected)
    assert stats["2"].rule == "|a| > ε (no activation function follows)"


@pytest.mark.parametrize("function, rule", [(torch.relu, "post-ReLU non-zero"), (torch.tanh, "|tanh(a)| > ε"),
                                            (nn.functional.gelu, "|gelu(a)| > ε")])
def test_a_function_called_in_forward_is_found_in_the_models_trace(function, rule):
    torch.manual_seed(0)
    model = Functional(function).eval()
    batches = _batches()
    stats = run(activation_stats(model, batches))
    assert stats["fc1"].rule == rule
    with torch.no_grad():
        pre = model.fc1(torch.cat(batches))
    if function is torch.relu:
        assert stats["fc1"].epsilon is None
        np.testing.assert_allclose(stats["fc1"].nonzero_fraction, (pre > 0).double().mean(0).numpy())
    else:
        np.testing.assert_allclose(stats["fc1"].nonzero_fraction, _expected(pre, function)[0])


def test_a_relu_before_the_batchnorm_reads_the_norms_output_with_the_relu_rule():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU()).eval()
    stats = run(activation_stats(model, [torch.randn(2, 1, 8, 8)]))
    assert stats["0"].measured_at == "1" and stats["0"].rule == "post-ReLU non-zero"


def test_a_scripted_model_finds_its_activation_in_the_graph(tmp_path):
    from core.io import LoadOptions, load_model

    torch.manual_seed(0)
    eager = nn.Sequential(nn.Linear(6, 16), nn.GELU(), nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 3)).eval()
    torch.jit.script(eager).save(str(tmp_path / "m.ts"))
    loaded = load_model(tmp_path / "m.ts", LoadOptions(trust=True))
    batches = _batches()
    compiled, expected = run(activation_stats(loaded.module, batches)), run(activation_stats(eager, batches))
    assert compiled["0"].rule == "|gelu(a)| > ε" and expected["0"].rule == "|GELU(a)| > ε"
    assert compiled["2"].rule == expected["2"].rule == "post-ReLU non-zero"
    for name in ("0", "2", "4"):
        np.testing.assert_allclose(compiled[name].nonzero_fraction, expected[name].nonzero_fraction)


def test_a_transformers_ffn_neurons_are_counted_after_its_gelu_module(tmp_path):
    pytest.importorskip("transformers")
    from core.io import load_model
    from tests.factories import write_hf_folder

    loaded = load_model(write_hf_folder(tmp_path / "bert", encoder=True))
    stats = run(activation_stats(loaded.module, loaded.probe_inputs))
    ffn = stats["encoder.layer.0.intermediate.dense"]
    assert ffn.units == 64 and ffn.rule == "|GELUActivation(a)| > ε" and ffn.epsilon > 0
    assert 0 < ffn.nonzero_fraction.mean() < 1


def test_attention_heads_are_counted_per_head_from_the_output_projections_input(tmp_path):
    pytest.importorskip("transformers")
    import json

    from core.analysis.heads import attention_heads, head_stats
    from core.io import load_model
    from tests.factories import write_hf_folder
    from tests.test_cli import prunescope

    folder = write_hf_folder(tmp_path / "bert", encoder=True)
    loaded = load_model(folder)
    found = attention_heads(loaded.module)
    assert {name: (proj, heads) for name, (proj, _, heads) in found.items()} == {
        f"encoder.layer.{i}.attention": (f"encoder.layer.{i}.attention.output.dense", 2) for i in range(2)}
    with torch.no_grad():  # silence head 1 of layer 0: its value slice, so its context is zero
        loaded.module.encoder.layer[0].attention.self.value.weight[16:] = 0
        loaded.module.encoder.layer[0].attention.self.value.bias[16:] = 0
    stats = run(head_stats(loaded.module, loaded.probe_inputs))
    first = stats["encoder.layer.0.attention"]
    assert first.units == 2 and first.nonzero_fraction[0] == 1.0 and first.nonzero_fraction[1] == 0.0
    assert list(first.dead) == [1] and first.observations == loaded.probe_inputs[0]["input_ids"].numel()
    assert stats["encoder.layer.1.attention"].nonzero_fraction.min() > 0

    result = prunescope("inspect", str(folder), "--json", str(tmp_path / "r.json"), "--quiet")
    assert result.returncode == 0, result.stderr
    assert "attention heads of encoder.layer.0.attention: 2 heads fire on" in result.stdout
    heads = json.loads((tmp_path / "r.json").read_text())["heads"]
    assert heads["encoder.layer.1.attention"]["heads"] == 2 and heads["encoder.layer.1.attention"]["rule"] == \
        "head output RMS > ε"


class PoolThenRelu(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3)
        self.sum = nn.Conv2d(1, 4, 3)

    def forward(self, x):
        return torch.relu(torch.max_pool2d(self.conv(x), 2)) + torch.max_pool2d(torch.relu(self.sum(x) + 1), 2)


def test_a_max_pool_is_looked_through_to_the_relu_but_an_addition_is_not(tmp_path):
    from core.io import LoadOptions, load_model

    torch.manual_seed(0)
    eager = PoolThenRelu().eval()
    torch.jit.script(eager).save(str(tmp_path / "p.ts"))
    program = load_model(tmp_path / "p.ts", LoadOptions(trust=True)).module
    for model in (eager, program):
        stats = run(activation_stats(model, [torch.randn(2, 1, 8, 8)]))
        assert stats["conv"].rule == "post-ReLU non-zero"
        assert stats["sum"].rule == "|a| > ε (no activation function follows)"
