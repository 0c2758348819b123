"""Per-layer sensitivity: the fast suffix path equals naive full re-evaluation; skipped levels; the CLI."""

from __future__ import annotations

import csv
import json

import pytest
import torch
from torch import nn

from core.analysis.sensitivity import Sensitivity, SensitivityError, parse_levels, sensitivity
from core.eval.data import Dataset, Split
from core.io import load_model
from core.io.base import LoadedModel
from core.progress import Cancelled, run
from tests.test_cli import prunescope
from tests.test_pipeline import assert_unchanged, state_copy


def _data(n: int = 64, seed: int = 0) -> Dataset:
    g = torch.Generator().manual_seed(seed)
    split = Split(torch.rand(n, 1, 28, 28, generator=g), torch.randint(0, 10, (n,), generator=g))
    return Dataset("random", tuple(str(i) for i in range(10)), split, split, split, "random")


def _figures(result: Sensitivity) -> list[tuple]:
    return [(p.layer, p.level, p.skipped, p.bytes, p.metric, p.top1, p.top5, p.loss) for p in result.points]


def _assert_same(fast: Sensitivity, naive: Sensitivity) -> None:
    assert len(fast.points) == len(naive.points) > 0
    for a, b in zip(fast.points, naive.points):
        assert (a.layer, a.level, a.skipped, a.bytes) == (b.layer, b.level, b.skipped, b.bytes)
        for x, y in ((a.metric, b.metric), (a.top1, b.top1), (a.top5, b.top5), (a.loss, b.loss)):
            assert (x is None) == (y is None) and (x is None or abs(x - y) <= 1e-6), (a, b)


@pytest.mark.parametrize("name, method, levels", [
    ("lenet5", "prune", (0.3, 0.9)), ("resnet8-fashion", "prune", (0.5, 0.95)),
    ("resnet8-fashion", "quantize", (4, 1)), ("lenet5", "low_rank", (0.1, 0.5))])
def test_fast_path_equals_naive_full_evaluation_for_every_layer_and_level(name, method, levels):
    loaded = load_model(f"zoo:{name}")
    data = _data()
    fast = run(sensitivity(loaded, data, method, levels, batch_size=32))
    naive = run(sensitivity(loaded, data, method, levels, batch_size=32, mode="naive"))
    assert set(fast.paths.values()) == {"fast"}  # every layer really ran the suffix path
    assert fast.baseline == naive.baseline
    _assert_same(fast, naive)
    assert any(p.metric != fast.baseline["metric"] or p.loss != fast.baseline["loss"]
               for p in fast.points if p.skipped is None)  # the perturbations do change the model


def test_residual_skip_tensor_is_in_the_cached_live_set():
    from core.analysis.suffix import Traced

    traced = Traced(load_model("zoo:resnet8-fashion").module)
    node = traced.layer_node("layer1.conv2")
    live = {n.name for n in traced.live_at(node)}
    assert len(live) == 2  # conv2's input, and the block's input that the shortcut adds back
    assert any("relu" in n for n in live)


def test_fallback_when_a_layer_is_called_twice_says_so_and_matches_naive():
    class Twice(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(784, 784)
            self.out = nn.Linear(784, 10)

        def forward(self, x):
            x = torch.flatten(x, 1)
            return self.out(torch.relu(self.fc(torch.relu(self.fc(x)))))

    torch.manual_seed(0)
    loaded = LoadedModel(Twice(), "twice", "test", "module", input_shape=(1, 1, 28, 28))
    fast = run(sensitivity(loaded, _data(), "prune", (0.5,), batch_size=32))
    assert fast.paths["fc"].startswith("naive: fc is called 2 times") and fast.paths["out"] == "fast"
    _assert_same(fast, run(sensitivity(loaded, _data(), "prune", (0.5,), batch_size=32, mode="naive")))


def test_fallback_when_the_cache_is_too_big():
    loaded = load_model("zoo:lenet5")
    result = run(sensitivity(loaded, _data(), "prune", (0.5,), batch_size=32, cache_bytes=1000))
    assert all(path.startswith("naive: the values live") for path in result.paths.values())


def test_low_rank_at_or_above_break_even_is_skipped_not_robust():
    result = run(sensitivity(load_model("zoo:lenet5"), _data(), "low_rank", (0.1, 1.0), batch_size=32))
    full = [p for p in result.points if p.level == 1.0]
    assert full and all(p.skipped and "break-even" in p.skipped for p in full)
    assert all(p.metric is None and p.bytes is None for p in full)
    assert all(p.skipped is None and p.bytes > 0 for p in result.points if p.level == 0.1)


def test_quantize_bytes_fall_with_bits_and_are_the_containers_price():
    result = run(sensitivity(load_model("zoo:lenet5"), _data(), "quantize", (8, 2), layers=["fc1"], batch_size=32))
    eight, two = result.curve("fc1")
    assert two.bytes < eight.bytes < result.original_bytes["fc1"]


def test_loaded_model_unchanged_after_a_run_and_after_a_cancel():
    loaded = load_model("zoo:resnet8-fashion")
    before = state_copy(loaded.module)
    run(sensitivity(loaded, _data(), "prune", (0.5,), batch_size=32))
    assert_unchanged(loaded.module, before)
    calls = {"n": 0}

    def cancel_soon():
        calls["n"] += 1
        return calls["n"] > 3

    with pytest.raises(Cancelled):
        run(sensitivity(loaded, _data(), "quantize", (2,), batch_size=32), should_cancel=cancel_soon)
    assert_unchanged(loaded.module, before)


@pytest.mark.parametrize("kwargs, message", [
    ({"method": "prune", "levels": (1.5,)}, "sparsity must be in (0, 1)"),
    ({"method": "quantize", "levels": (3.5,)}, "bits must be a whole number"),
    ({"method": "prune", "layers": ["nope"]}, "unknown layer 'nope'"),
    ({"method": "fold"}, "unknown method")])
def test_bad_arguments_raise_one_clear_error(kwargs, message):
    with pytest.raises(SensitivityError, match=message.replace("(", r"\(").replace(")", r"\)")):
        run(sensitivity(load_model("zoo:lenet5"), _data(), **kwargs))


def test_parse_levels():
    assert parse_levels("0.1, 0.5,0.9") == [0.1, 0.5, 0.9]
    with pytest.raises(SensitivityError, match="not comma-separated numbers"):
        parse_levels("0.1,half")


def test_inputs_only_uses_the_fidelity_metric():
    loaded = load_model("zoo:lenet5")
    loaded = LoadedModel(loaded.module, "lenet5", "test", "zoo", input_shape=(16, 1, 28, 28),
                         probe_inputs=[torch.rand(16, 1, 28, 28, generator=torch.Generator().manual_seed(1))])
    fast = run(sensitivity(loaded, None, "prune", (0.5, 0.95)))
    assert fast.metric_name == "top-1 agreement" and fast.baseline["metric"] == 1.0 and not fast.labelled
    _assert_same(fast, run(sensitivity(loaded, None, "prune", (0.5, 0.95), mode="naive")))


def test_cli_writes_distillers_csv_with_bytes_json_and_png(tmp_path):
    out, report, png = tmp_path / "s.csv", tmp_path / "s.json", tmp_path / "s.png"
    result = prunescope("sensitivity", "zoo:lenet5", "--data", "mnist", "--method", "prune", "--levels", "0.5,0.9",
                        "--layers", "conv2,fc1", "--limit", "200", "--csv", str(out), "--json", str(report),
                        "--png", str(png), "--quiet")
    assert result.returncode == 0, result.stderr
    rows = list(csv.DictReader(out.read_text().splitlines()))
    assert list(rows[0])[:6] == ["parameter", "sparsity", "top1", "top5", "loss", "bytes"]
    assert [(r["parameter"], r["sparsity"]) for r in rows] == [("conv2", "0.5"), ("conv2", "0.9"), ("fc1", "0.5"),
                                                               ("fc1", "0.9")]
    assert all(0 <= float(r["top1"]) <= 100 and int(r["bytes"]) > 0 for r in rows)
    data = json.loads(report.read_text())
    assert data["count"] == 200 and data["paths"] == {"conv2": "fast", "fc1": "fast"}
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "top-1 (%) by sparsity" in result.stdout


@pytest.mark.parametrize("args, message", [
    (["--levels", "0.1,x"], "--levels '0.1,x': not comma-separated numbers"),
    (["--layers", "conv9"], "unknown layer 'conv9'")])
def test_cli_bad_levels_or_layer_get_one_line_and_write_nothing(tmp_path, args, message):
    out = tmp_path / "s.csv"
    result = prunescope("sensitivity", "zoo:lenet5", "--method", "prune", *args, "--csv", str(out), "--quiet")
    assert result.returncode == 2 and not out.exists()
    assert result.stderr.strip().count("\n") == 0 and message in result.stderr
