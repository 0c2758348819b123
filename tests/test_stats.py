"""Weight statistics: exact bucket counts (torch and the compiled kernel agree), derived figures vs torch."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from core.progress import run
from core.analysis.stats import N_BUCKETS, raw_bucket_counts, stats_from_counts, weight_stats


@pytest.fixture(scope="module")
def weights():
    torch.manual_seed(0)
    w = torch.randn(3_000_000) * 0.05
    w[:30_000] = 0.0
    w[-5:] = torch.tensor([1e-9, -1e-7, 0.3, -0.31, 2e-30])
    return w


def test_kernel_and_torch_count_identically(weights):
    import numba  # noqa: F401 - a dependency: without it this test would compare torch with torch

    a = raw_bucket_counts(weights, use_kernel=False)
    b = raw_bucket_counts(weights, use_kernel=True)
    assert a.shape == (N_BUCKETS,) and a.sum() == weights.numel()
    np.testing.assert_array_equal(a, b)


def test_buckets_are_the_bfloat16_truncation(weights):
    counts = raw_bucket_counts(weights[:100_000], use_kernel=False)
    top16 = (weights[:100_000].view(torch.int32) >> 16) & 0xFFFF
    np.testing.assert_array_equal(counts, np.bincount(top16.numpy(), minlength=N_BUCKETS))


def test_summaries_match_torch_within_a_bucket(weights):
    s = stats_from_counts("w", raw_bucket_counts(weights))
    assert s.count == weights.numel() and s.zeros == 30_000 and s.nonfinite == 0
    assert s.sparsity == pytest.approx(0.01)
    for ours, exact in ((s.min, weights.min()), (s.max, weights.max()), (s.abs_max, weights.abs().max()),
                        (s.std, weights.std())):
        assert ours == pytest.approx(float(exact), rel=4e-3)
    assert s.mean == pytest.approx(float(weights.mean()), abs=1e-5)
    near = float((weights.abs() <= 0.01 * weights.abs().max()).double().mean())
    assert s.near_zero == pytest.approx(near, abs=2e-4)


def test_histograms_match_torch_histc(weights):
    s = stats_from_counts("w", raw_bucket_counts(weights), bins=128)
    edge = float(s.hist.edges[-1])
    assert s.hist.counts.sum() == s.abs_hist.counts.sum() == weights.numel()
    assert len(s.hist.counts) == 128 and len(s.abs_hist.counts) == 64
    ref = torch.histc(weights.double(), 128, -edge, edge).numpy()
    assert np.abs(ref - s.hist.counts).max() <= 0.002 * ref.max()
    ref_abs = torch.histc(weights.abs().double(), 64, 0, edge).numpy()
    assert np.abs(ref_abs - s.abs_hist.counts).max() <= 0.002 * ref_abs.max()


def test_log_histogram_counts_every_nonzero_weight(weights):
    s = stats_from_counts("w", raw_bucket_counts(weights))
    assert s.log_hist.log and s.log_hist.counts.sum() == weights.numel() - 30_000
    lo, hi = s.log_hist.edges[0], s.log_hist.edges[-1]
    assert hi == np.ceil(np.log10(0.31)) and lo == hi - 10  # ten decades; 2e-30 lands in the first bin
    nonzero = weights[weights != 0].abs().double().log10().clamp(min=lo)
    ref = torch.histc(nonzero, len(s.log_hist.counts), lo, hi).numpy()
    assert np.abs(ref - s.log_hist.counts).max() <= 0.002 * ref.max()


def test_threshold_and_fraction_are_inverse_and_accurate(weights):
    s = stats_from_counts("w", raw_bucket_counts(weights))
    for t in (1e-3, 0.01, 0.05, 0.1):
        assert s.fraction_below(t) == pytest.approx(float((weights.abs() < t).double().mean()), abs=1e-4)
    for q in (0.1, 0.5, 0.9, 0.99):
        t = s.threshold_for(q)
        assert t == pytest.approx(float(np.quantile(weights.abs().numpy(), q)), rel=2e-3)
        assert s.fraction_below(t) == pytest.approx(q, abs=1e-6)
    assert s.threshold_for(0.0) == 0.0


def test_non_finite_values_are_counted_apart():
    w = torch.tensor([1.0, -2.0, float("nan"), float("inf"), float("-inf"), 0.0])
    s = stats_from_counts("w", raw_bucket_counts(w))
    assert (s.count, s.nonfinite, s.zeros) == (6, 3, 1)
    assert s.max == pytest.approx(1.0, rel=4e-3) and s.min == pytest.approx(-2.0, rel=4e-3)


def test_channels_last_and_strided_views_are_counted_whole():
    torch.manual_seed(2)
    conv = torch.randn(64, 64, 3, 3)
    expected = raw_bucket_counts(conv)
    np.testing.assert_array_equal(raw_bucket_counts(conv.to(memory_format=torch.channels_last)), expected)
    view = torch.randn(40, 50)[:, ::2]  # overlapping-free but not dense: counted in contiguous slices
    np.testing.assert_array_equal(raw_bucket_counts(view), raw_bucket_counts(view.contiguous()))


def test_other_dtypes_and_strided_tensors():
    torch.manual_seed(1)
    base = torch.randn(64, 48)
    expected = raw_bucket_counts(base)
    np.testing.assert_array_equal(raw_bucket_counts(base.t().contiguous().t()), expected)  # non-contiguous
    half = base.half()
    np.testing.assert_array_equal(raw_bucket_counts(half), raw_bucket_counts(half.float()))
    np.testing.assert_array_equal(raw_bucket_counts(base.to(torch.bfloat16)),
                                  raw_bucket_counts(base.to(torch.bfloat16).float()))


def test_empty_layer():
    s = stats_from_counts("empty", np.zeros(N_BUCKETS, np.int64))
    assert s.count == 0 and s.hist.counts.sum() == 0 and s.fraction_below(1.0) == 0.0


def test_weight_stats_reads_the_model_in_place(lenet300):
    model = lenet300.module
    before = {n: (p.data_ptr(), p.detach().clone()) for n, p in model.named_parameters()}
    progress = []
    result = run(weight_stats(model), on_progress=progress.append)
    assert list(result) == ["fc1", "fc2", "fc3"]
    assert result["fc1"].count == 300 * 784  # the weight matrix, not the bias
    assert progress[-1].done == progress[-1].total == 266_200
    for n, p in model.named_parameters():
        assert p.data_ptr() == before[n][0] and torch.equal(p, before[n][1])


def test_weight_stats_of_a_layer_without_weight_uses_its_parameters():
    class Scale(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.gamma = torch.nn.Parameter(torch.ones(7))

    result = run(weight_stats(torch.nn.Sequential(Scale())))
    assert result["0"].count == 7 and result["0"].max == pytest.approx(1.0, rel=4e-3)


def _mixed_model() -> torch.nn.Module:
    torch.manual_seed(1)
    model = torch.nn.Sequential(torch.nn.Linear(600, 1000), torch.nn.LayerNorm(1000), torch.nn.Linear(1000, 700),
                                torch.nn.Conv2d(64, 64, 5).to(memory_format=torch.channels_last))
    with torch.no_grad():
        model[1].weight.normal_()
        model[2].weight[:, ::3] = 0.0
    return model


def test_counting_ahead_on_the_pool_gives_the_serial_counts(monkeypatch):
    """Small pieces and a short queue: layers are split across calls and counted ahead of their turn."""
    import core.analysis.stats as stats

    model = _mixed_model()
    serial = run(weight_stats(model, use_kernel=False))
    monkeypatch.setattr(stats, "KERNEL_PIECE", 100_000)
    monkeypatch.setattr(stats, "CHUNK", 1 << 16)
    monkeypatch.setattr(stats, "AHEAD", 3)
    pooled = run(weight_stats(model, use_kernel=True))
    assert list(pooled) == list(serial) == ["0", "1", "2", "3"]
    for name, s in serial.items():
        p = pooled[name]
        np.testing.assert_array_equal(p.magnitude_counts, s.magnitude_counts)
        np.testing.assert_array_equal(p.hist.counts, s.hist.counts)
        assert (p.count, p.zeros, p.min, p.max) == (s.count, s.zeros, s.min, s.max)
        assert (p.mean, p.std) == pytest.approx((s.mean, s.std), rel=1e-12, abs=1e-15)  # sums in another order


def _count_arrays():
    """Bucket counts of varied layers: trained-like, sparse, one-signed, constant, tiny, huge, non-finite."""
    g = torch.Generator().manual_seed(3)
    normal = torch.randn(200_000, generator=g) * 0.03
    sparse = normal.clone()
    sparse[::4] = 0.0
    odd = torch.tensor([float("nan"), float("inf"), -float("inf"), 1e-38, -3e38, 0.0, -0.0, 5.0])
    layers = {"normal": normal, "sparse": sparse, "positive": normal.abs(), "negative": -normal.abs(),
              "constant": torch.full((50,), 0.25), "zeros": torch.zeros(9), "one": torch.tensor([-2.0]),
              "wide": torch.randn(5000, generator=g) * 10.0 ** torch.randint(-30, 30, (5000,), generator=g),
              "odd": odd, "nan only": torch.tensor([float("nan")] * 3), "empty": torch.zeros(0)}
    return {name: raw_bucket_counts(t, use_kernel=False) for name, t in layers.items()}


@pytest.mark.parametrize("bins", [16, 64, 128])
def test_compiled_derivation_gives_numpys_figures(bins):
    for name, counts in _count_arrays().items():
        ref = stats_from_counts(name, counts, bins=bins)
        got = stats_from_counts(name, counts, bins=bins, compiled=True)
        assert (got.count, got.zeros, got.nonfinite, got.min, got.max, got.abs_max, got.first_bucket) == \
               (ref.count, ref.zeros, ref.nonfinite, ref.min, ref.max, ref.abs_max, ref.first_bucket), name
        assert (got.mean, got.std, got.near_zero) == pytest.approx((ref.mean, ref.std, ref.near_zero),
                                                                   rel=1e-12, abs=1e-300), name
        np.testing.assert_array_equal(got.magnitude_counts, ref.magnitude_counts, err_msg=name)
        for a, b in ((got.hist, ref.hist), (got.abs_hist, ref.abs_hist), (got.log_hist, ref.log_hist)):
            assert a.log == b.log
            np.testing.assert_array_equal(a.edges, b.edges, err_msg=name)
            np.testing.assert_array_equal(a.counts, b.counts, err_msg=name)


def test_closing_the_pass_early_cancels_the_counting_queued_ahead(monkeypatch):
    import time

    import core.analysis.stats as stats

    kernel, calls = stats._kernel(), []

    def slow_kernel(bits):
        calls.append(bits.size)
        time.sleep(0.02)
        return kernel(bits)

    monkeypatch.setattr(stats, "_kernel", lambda: slow_kernel)
    monkeypatch.setattr(stats, "KERNEL_PIECE", 50_000)
    monkeypatch.setattr(stats, "CHUNK", 1 << 16)
    monkeypatch.setattr(stats, "AHEAD", 64)  # every layer's pieces are queued at once
    task = weight_stats(_mixed_model(), use_kernel=True)
    first = next(task)
    assert first.done == 600 * 1000 and first.total > first.done
    task.close()  # what a cancel does
    stats._pool().submit(lambda: None).result(timeout=10)  # the pool has done whatever it still had
    workers = stats._pool()._max_workers
    assert sum(calls) < first.total  # the later layers were not all counted
    assert len(calls) <= 12 + 2 * workers  # layer 0's 12 pieces, and those already running or just taken
