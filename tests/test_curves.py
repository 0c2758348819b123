"""Reading sensitivity curves (core.analysis.curves): points lost, and the level at which a layer's curve first
loses one point, on Sensitivity objects built by hand."""

from __future__ import annotations

import pytest

from core.analysis.curves import level_at_drop, levels_at_drop, metric_losing, points_lost
from core.analysis.sensitivity import Point, Sensitivity


def made(method: str, curves: dict[str, list], baseline: float = 0.98, metric: str = "top-1",
         labelled: bool = True) -> Sensitivity:
    """``curves``: layer -> [(level, metric or a skip reason)]."""
    points = tuple(Point(layer, level, None, None, skipped=value) if isinstance(value, str)
                   else Point(layer, level, 100, value, value if labelled else None)
                   for layer, curve in curves.items() for level, value in curve)
    levels = tuple(dict.fromkeys(p.level for p in points))
    names = {"prune": "sparsity", "quantize": "bits", "low_rank": "rank fraction"}
    return Sensitivity(method, names[method], metric, levels, points,
                       {"metric": baseline, "top1": baseline if labelled else None, "top5": None, "loss": None},
                       dict.fromkeys(curves, 1000), dict.fromkeys(curves, "fast"), 500, labelled=labelled)


def test_points_lost_are_hundredths_of_a_fraction_and_worse_is_more():
    top1 = made("prune", {"fc": [(0.5, 0.97)]})
    assert points_lost(top1, 0.97) == pytest.approx(1.0)
    assert points_lost(top1, 0.99) == pytest.approx(-1.0)
    assert points_lost(top1, None) is None
    error = made("prune", {"fc": [(0.5, 0.05)]}, baseline=0.0, metric="relative error", labelled=False)
    assert points_lost(error, 0.05) == pytest.approx(5.0)  # lower is better: a rise is a loss
    perplexity = made("prune", {"fc": [(0.5, 22.0)]}, baseline=20.0, metric="perplexity", labelled=False)
    assert points_lost(perplexity, 22.0) == pytest.approx(10.0)  # 10% worse than unperturbed
    for result, value in ((top1, 0.97), (error, 0.05), (perplexity, 22.0)):  # one is the other's inverse
        assert metric_losing(result, points_lost(result, value)) == pytest.approx(value)


def test_prune_interpolates_linearly_between_the_measured_levels_around_the_crossing():
    result = made("prune", {"fc1": [(0.5, 0.979), (0.8, 0.9755), (0.9, 0.9355)]})
    at = level_at_drop(result, "fc1")
    # loses 0.45 points at 0.8 and 4.45 at 0.9: one point is 0.55/4 of the way from 0.8 to 0.9
    assert at.where == "between" and (at.lower, at.upper) == (0.8, 0.9)
    assert at.level == pytest.approx(0.8 + 0.1 * 0.55 / 4.0)
    assert at.label == "0.81"


def test_prune_starts_at_no_loss_at_sparsity_zero():
    result = made("prune", {"fc": [(0.5, 0.96), (0.9, 0.5)]})  # two points lost already at 0.5
    at = level_at_drop(result, "fc")
    assert (at.where, at.lower, at.upper) == ("between", 0.0, 0.5) and at.level == pytest.approx(0.25)


def test_a_layer_that_never_loses_a_point_reads_beyond_the_last_level():
    result = made("prune", {"fc": [(0.5, 0.981), (0.95, 0.9705)]})  # 0.95 points lost at most
    at = level_at_drop(result, "fc")
    assert at.where == "never" and at.level is None and at.label == "> 0.95"
    assert at.sort_key > level_at_drop(made("prune", {"fc": [(0.95, 0.5)]}), "fc").sort_key


def test_exactly_one_point_counts_as_dropped():
    # 563 then 553 right of 1,000: ten examples, one point, which floats make 0.99999999999999
    result = made("prune", {"fc": [(0.5, 0.56), (0.9, 0.553)]}, baseline=0.563)
    assert 100 * (0.563 - 0.553) < 1.0
    assert level_at_drop(result, "fc").level == pytest.approx(0.9)


def test_skipped_levels_are_passed_over_never_read_as_robust():
    result = made("prune", {"fc": [(0.5, 0.98), (0.7, "changes no weight"), (0.9, 0.96)]})
    at = level_at_drop(result, "fc")
    assert (at.lower, at.upper) == (0.5, 0.9) and at.level == pytest.approx(0.7)
    skipped = made("low_rank", {"fc": [(0.5, "rank 5 is at or above break-even 4.5")]})
    at = level_at_drop(skipped, "fc")
    assert at.where == "unmeasured" and at.label == "—" and "break-even" in at.why


def test_quantize_goes_from_many_bits_to_few_and_has_no_unperturbed_level():
    result = made("quantize", {"fc1": [(8, 0.98), (4, 0.978), (2, 0.948)],
                               "fc2": [(8, 0.95), (4, 0.9)],
                               "fc3": [(8, 0.98), (1, 0.979)]})
    at = levels_at_drop(result)
    assert list(at) == ["fc1", "fc2", "fc3"]
    assert at["fc1"].where == "between" and (at["fc1"].lower, at["fc1"].upper) == (4, 2)
    assert at["fc1"].level == pytest.approx(4 - 2 * 0.8 / 3.0)
    assert at["fc2"].where == "first" and at["fc2"].label == "≥ 8"  # already lost at the first level
    assert at["fc3"].where == "never" and at["fc3"].label == "< 1"
    assert at["fc3"].sort_key > at["fc1"].sort_key > at["fc2"].sort_key  # more bits off before the loss


def test_low_rank_starts_at_full_rank():
    result = made("low_rank", {"fc": [(0.5, 0.97), (0.1, 0.5)]})
    at = level_at_drop(result, "fc")
    assert (at.lower, at.upper) == (1.0, 0.5) and at.level == pytest.approx(0.5)


def test_an_unknown_layer_is_a_key_error():
    with pytest.raises(KeyError):
        level_at_drop(made("prune", {"fc": [(0.5, 0.9)]}), "conv")
