"""Previews: thresholds and kept fractions from the statistics agree with real pruning; byte estimates."""

from __future__ import annotations

import pytest

from core.analysis.estimate import estimate_layer_bytes, global_threshold, index_bits, preview
from core.progress import run
from core.methods.masks import magnitude_masks, prunable_layers
from core.analysis.stats import weight_stats


@pytest.fixture(scope="module")
def stats(lenet300):
    return run(weight_stats(lenet300.module))


def test_layer_preview_matches_real_masks(lenet300, stats):
    layers = prunable_layers(lenet300.module)
    result = preview(stats, {"fc1": 0.9, "fc2": 0.5}, {"fc1": 6})
    masks = magnitude_masks({"fc1": layers["fc1"].weight}, 0.9)
    assert result["fc1"].kept == pytest.approx(float(masks["fc1"].float().mean()), abs=1e-4)
    assert result["fc1"].threshold == pytest.approx(float(layers["fc1"].weight.detach().abs()[~masks["fc1"]].max()), rel=5e-3)
    assert result["fc3"].kept == 1.0 and result["fc3"].threshold == 0.0 and result["fc1"].bits == 6


def test_global_preview_matches_real_global_masks(lenet300, stats):
    layers = prunable_layers(lenet300.module)
    masks = magnitude_masks({n: m.weight for n, m in layers.items()}, 0.9, "global")
    result = preview(stats, {}, {}, global_sparsity=0.9)
    for name, mask in masks.items():
        assert result[name].kept == pytest.approx(float(mask.float().mean()), abs=2e-3)
    threshold = global_threshold(stats, 0.9)
    real = max(float(m.weight.detach().abs()[~masks[n]].max()) for n, m in layers.items())
    assert threshold == pytest.approx(real, rel=5e-3)


def test_index_bits_and_estimates():
    assert index_bits(1.0) == 0.0
    assert index_bits(0.5) == pytest.approx(2.0)  # a fair coin per position, two positions per kept weight
    assert 4 < index_bits(0.08) < 6  # Deep Compression stores LeNet's indices in 5 bits
    assert estimate_layer_bytes(1000, 1.0, 32) == 4000
    assert estimate_layer_bytes(1000, 0.1, 4) == pytest.approx(100 * (4 + index_bits(0.1)) / 8 + 32, abs=1)
