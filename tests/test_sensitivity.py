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


class _Spy:
    """Records, per layer, how many levels each pass got and whether they ran batched."""

    def __init__(self, monkeypatch):
        from core.analysis import suffix

        self.passes: dict[str, list[tuple[int, str | None]]] = {}
        run_levels = suffix.Suffix.run_levels

        def spy(suffix_, module, original, weights):
            outputs = run_levels(suffix_, module, original, weights)
            self.passes.setdefault(suffix_.node.target, []).append((len(weights), suffix_.unbatched))
            return outputs

        monkeypatch.setattr(suffix.Suffix, "run_levels", spy)

    def batched(self, layer: str) -> bool:
        return all(k > 1 and why is None for k, why in self.passes[layer])


BATCHED = {"batch_size": 128}  # below ~128 rows a kernel may round differently from a batch K times larger

class _ConvBN(nn.Module):
    """A convolution followed by BatchNorm (eval, with running statistics of its own), a grouped one, a head."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 8, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(8)
        self.grouped = nn.Conv2d(8, 8, 3, groups=4)
        self.fc = nn.Linear(8 * 26 * 26, 10)
        with torch.no_grad():
            self.bn.running_mean.uniform_(-0.5, 0.5)
            self.bn.running_var.uniform_(0.5, 2.0)
            self.bn.weight.uniform_(0.5, 1.5)
            self.bn.bias.uniform_(-0.2, 0.2)

    def forward(self, x):
        return self.fc(torch.flatten(self.grouped(torch.relu(self.bn(self.conv(x)))), 1))


def _conv_bn() -> LoadedModel:
    torch.manual_seed(0)
    return LoadedModel(_ConvBN(), "convbn", "test", "module", input_shape=(1, 1, 28, 28))


@pytest.mark.parametrize("name, method, levels", [
    ("lenet5", "prune", (0.3, 0.6, 0.9)), ("resnet8-fashion", "prune", (0.5, 0.7, 0.95)),
    ("resnet8-fashion", "quantize", (4, 2, 1)), ("lenet5", "low_rank", (0.05, 0.1, 0.2)), ("convbn", "prune", (0.3, 0.9))])
def test_batched_levels_equal_naive_full_evaluation(name, method, levels, monkeypatch):
    from core.analysis import sensitivity as module

    loaded = _conv_bn() if name == "convbn" else load_model(f"zoo:{name}")
    naive = run(sensitivity(loaded, _data(256), method, levels, **BATCHED, mode="naive"))
    monkeypatch.setattr(module, "BATCH_BYTES", 1 << 30)
    spy = _Spy(monkeypatch)
    fast = run(sensitivity(loaded, _data(256), method, levels, **BATCHED))
    assert set(fast.paths.values()) == {"fast"}
    several = {layer for layer in fast.paths if sum(p.layer == layer and p.skipped is None for p in fast.points) > 1}
    assert several and all(spy.batched(layer) for layer in several)  # every layer with 2+ levels: one pass
    _assert_same(fast, naive)
    if name == "convbn":  # the conv before BatchNorm, and the grouped conv (called once per level, rest batched)
        assert spy.batched("conv") and spy.batched("grouped")


def test_batched_levels_stay_within_the_budget_in_balanced_passes(monkeypatch):
    from core.analysis import sensitivity as module
    from core.analysis.suffix import Traced, capture

    loaded = load_model("zoo:resnet8-fashion")
    traced = Traced(loaded.module)
    batches = [x for x, _ in _data(256).test.batches(128)]
    node = traced.layer_node("layer1.conv1")
    with torch.no_grad():
        suffixes, _, _ = capture(traced, {"layer1.conv1": node}, batches, 1 << 30)
    s = suffixes["layer1.conv1"]
    weight = loaded.module.layer1.conv1.weight
    per_level = s.level_bytes(weight.numel() * weight.element_size())
    assert per_level > 2 * 128 * 16 * 28 * 28 * 4  # the conv's output twice, and the block's input for the shortcut
    assert s.levels_per_pass(0, 0, 10) == 1 and s.levels_per_pass(1 << 40, 0, 1) == 1
    assert s.levels_per_pass(6 * per_level, weight.numel() * 4, 10) == 5  # 10 levels, 6 a pass at most: 5 and 5
    assert s.levels_per_pass(int(3.5 * per_level), weight.numel() * 4, 5) == 3
    monkeypatch.setattr(module, "BATCH_BYTES", 3 * per_level)
    spy = _Spy(monkeypatch)
    levels = (0.1, 0.3, 0.5, 0.7, 0.9)
    fast = run(sensitivity(loaded, _data(256), "prune", levels, layers=["layer1.conv1"], **BATCHED))
    assert spy.passes["layer1.conv1"] == [(3, None), (2, None)]
    _assert_same(fast, run(sensitivity(loaded, _data(256), "prune", levels, layers=["layer1.conv1"], **BATCHED,
                                       mode="naive")))


class _MixesTheBatch(nn.Module):
    def __init__(self, head: str):
        super().__init__()
        self.fc1, self.fc2, self.head = nn.Linear(784, 64), nn.Linear(64, 10), head

    def forward(self, x):
        n = x.shape[0]  # live after fc1: an int, not a batch of tensors
        x = torch.relu(self.fc1(torch.flatten(x, 1)))
        if self.head == "centred":
            x = x - x.mean(0)  # rows depend on the whole batch: batching the levels would change them
        return self.fc2(x).reshape(n, 10) if self.head == "sized" else self.fc2(x)


@pytest.mark.parametrize("head, why", [("plain", None), ("centred", "differ from one by one"),
                                       ("sized", "not one batch of tensors")])
def test_levels_run_one_by_one_where_batching_would_change_them(head, why, monkeypatch):
    from core.analysis import sensitivity as module

    torch.manual_seed(0)
    loaded = LoadedModel(_MixesTheBatch(head), "mix", "test", "module", input_shape=(1, 1, 28, 28))
    monkeypatch.setattr(module, "BATCH_BYTES", 1 << 30)
    spy = _Spy(monkeypatch)
    fast = run(sensitivity(loaded, _data(256), "prune", (0.5, 0.9), layers=["fc1"], **BATCHED))
    (k, reason), = spy.passes["fc1"]
    assert k == 2 and (reason is None if why is None else why in reason)
    _assert_same(fast, run(sensitivity(loaded, _data(256), "prune", (0.5, 0.9), layers=["fc1"], **BATCHED,
                                       mode="naive")))


def _index_bits_every_width(positions, use_huffman: bool) -> int:
    """choose_index_bits as first written: every width priced from the gaps themselves."""
    import numpy as np

    from core.format import container

    gaps = torch.diff(torch.from_numpy(positions.astype(np.int64)), prepend=torch.tensor([-1])) - 1
    best, best_bits = None, 1
    for bits in range(1, container.MAX_INDEX_BITS + 1):
        span = 1 << bits
        fillers = int((gaps >> bits).sum())
        counts = torch.bincount(gaps & (span - 1), minlength=span).numpy()
        counts[span - 1] += fillers
        cost = container._counts_cost(counts, span, use_huffman) + fillers
        if best is None or cost < best:
            best, best_bits = cost, bits
    return best_bits


def test_index_width_from_the_gaps_histogram_is_the_width_every_width_priced_gives():
    import numpy as np

    from core.format import container

    rng = np.random.default_rng(5)
    cases = [np.zeros(0, np.int64), np.array([0]), np.array([70_000]), np.arange(300), np.array([0, 1_000_000])]
    cases += [np.sort(rng.choice(n, max(1, int(n * f)), replace=False)) for n in (40, 5_000, 300_000)
              for f in (0.001, 0.1, 0.5, 0.95)]
    for positions in cases:
        for use_huffman in (True, False):
            assert container.choose_index_bits(positions, use_huffman) == _index_bits_every_width(positions, use_huffman)


def test_prune_price_is_the_bytes_encode_writes():
    from core.analysis import perturb
    from core.format import container

    loaded = load_model("zoo:lenet5")
    for name, module in (("conv1", loaded.module.conv1), ("fc1", loaded.module.fc1)):
        weight = module.weight.detach().float()
        for level in (0.1, 0.7, 0.95):
            s = perturb.setting(name, module, weight, "prune", level)
            mask = s.weight != 0
            code = {f"{name}.weight": container.WeightCode(mask, None, None, s.weight)}
            data, account = container.encode({f"{name}.weight": weight}, code, {})
            assert s.bytes == account.tensors[0].bytes and account.total == len(data)
