"""Latency as a measurement (issue 12, finding 8): warm-up, the median's confidence interval, the spread, the
"noisy" mark, one measurement per variant. The clock is fed known durations, so every statistic is checked
exactly and nothing here depends on how fast this machine is."""

from __future__ import annotations

import gc
import itertools
import math

import pytest
import torch
from torch import nn

from core.eval import evaluate
from core.eval.evaluate import Latency, latency, median_interval, summarize
from core.progress import Cancelled, Progress, run


class FakeClock:
    """A clock that makes the k-th timed call last ``durations_ms[k]``: :func:`latency` reads the clock
    exactly twice per call, before and after it."""

    def __init__(self, durations_ms):
        self.durations = iter(durations_ms)
        self.now = 0.0
        self.reads = 0

    def __call__(self) -> float:
        self.reads += 1
        if self.reads % 2 == 0:  # the reading after a call: the call took the next duration
            self.now += next(self.durations) / 1000.0
        return self.now


class Counting(nn.Module):
    def __init__(self):
        super().__init__()
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        return x


def measure(durations, cpu_wait: float = 0.0, **kwargs) -> Latency:
    """Time a model whose calls last ``durations`` (ms) while its threads wait for a CPU ``cpu_wait`` of
    the time."""
    clock = FakeClock(durations)
    return run(latency(Counting(), torch.zeros(256, 3), clock=clock, waited=lambda: clock.now * 1000 * cpu_wait,
                       **kwargs))


def test_the_result_carries_median_spread_interval_and_runs_of_a_known_sequence():
    # 20 timed calls lasting 1..20 ms, in a scrambled order: the statistics do not depend on the order
    timed = [(7 * i) % 20 + 1 for i in range(20)]
    assert sorted(timed) == list(range(1, 21))
    result = measure(timed, runs=20, warmup=0)
    assert (result.runs, result.batch_size, result.warmup_runs) == (20, 256, 0)
    assert result.median_ms == pytest.approx(10.5) and result.best_ms == pytest.approx(1.0)
    # numpy.percentile's default (linear) of 1..20: p10 = 2.9, p90 = 18.1
    assert (result.p10_ms, result.p90_ms) == (pytest.approx(2.9), pytest.approx(18.1))
    # the published 95% interval of the median of 20: from the 6th to the 15th smallest, coverage
    # 1 - 2 * (1 + 20 + 190 + 1140 + 4845 + 15504) / 2**20
    assert (result.ci_low_ms, result.ci_high_ms) == (pytest.approx(6.0), pytest.approx(15.0))
    assert result.confidence == pytest.approx(1 - 2 * 21_700 / 2 ** 20)
    assert result.half_width_ms == pytest.approx(4.5)
    assert not result.converged and result.noisy  # +-4.5 on 10.5, and p10-p90 is 15.2 ms wide


def test_median_interval_matches_the_published_ranks():
    assert median_interval(20)[:2] == (6, 15)
    assert median_interval(100)[:2] == (40, 61)
    assert median_interval(10) == (2, 9, 1 - 2 * 11 / 1024)
    assert median_interval(6) == (1, 6, 1 - 2 / 64)  # the fewest samples with a 95% interval
    assert median_interval(5)[2] < 0.95  # none reaches 95%: the widest is given with what it covers
    for n in range(6, 120):
        k, high, coverage = median_interval(n)
        assert high == n + 1 - k and coverage >= 0.95
        below = 1 - 2 * sum(math.comb(n, i) for i in range(k + 1)) / 2 ** n  # the next narrower interval
        assert k + 1 > (n + 1) // 2 or below < 0.95


def test_timing_stops_once_the_medians_interval_is_within_the_target():
    # 5 calls at 10 ms and 5 at 20 ms, then 10 ms calls: the interval first fits at the 20th call, where
    # the 6th to 15th smallest (the 95% ranks for 20) are all 10 ms
    durations = [10.0] * 3 + [10.0] * 5 + [20.0] * 5 + [10.0] * 100  # 3 warm-up calls: steady, so no more
    result = measure(durations)
    assert result.warmup_runs == 3 and result.runs == 20
    assert result.median_ms == pytest.approx(10.0)
    assert (result.ci_low_ms, result.ci_high_ms) == (pytest.approx(10.0), pytest.approx(10.0))
    assert result.converged
    assert result.noisy  # converged, but a quarter of the calls took twice as long: p10-p90 is 10 to 20 ms


def test_a_steady_sequence_is_not_noisy_and_a_contended_one_is():
    steady = measure(itertools.cycle([10.0, 10.1, 9.9, 10.05, 9.95]))
    assert steady.runs == evaluate.MIN_RUNS and steady.converged and not steady.noisy
    assert steady.median_ms == pytest.approx(10.0)
    # a 1.3 ms model on a busy machine: every other call waits for a descheduled thread (1.3 vs 34 ms)
    pattern = [1.3, 34.0]
    contended = measure(itertools.cycle(pattern))
    assert contended.noisy and not contended.converged
    assert contended.ci_low_ms == pytest.approx(1.3) and contended.ci_high_ms == pytest.approx(34.0)
    # it ran until the time cap: the calls it timed add up to MAX_SECONDS, and did not before the last one
    assert evaluate.MIN_RUNS < contended.runs < evaluate.MAX_RUNS
    timed = list(itertools.islice(itertools.cycle(pattern), contended.warmup_runs,
                                  contended.warmup_runs + contended.runs))
    assert sum(timed) >= evaluate.MAX_SECONDS * 1000 > sum(timed[:-1])
    # a third of the calls slow: the median stays put and its interval converges, but the spread is marked
    sometimes = measure(itertools.cycle([1.3, 1.3, 34.0]))
    assert sometimes.converged and sometimes.median_ms == pytest.approx(1.3) and sometimes.noisy


def test_a_steady_figure_is_noisy_when_its_threads_waited_for_a_cpu():
    # on a busy machine each of torch's parallel operations waits for a thread pushed off its core: the
    # figure can be steady (LeNet-5 here: 119 ms +- 5, against 51 ms on one thread) and still not the model's
    waited = measure(itertools.repeat(40.0), cpu_wait=0.9)
    assert waited.converged and waited.cpu_wait == pytest.approx(0.9) and waited.noisy
    calm = measure(itertools.repeat(40.0), cpu_wait=0.1)
    assert calm.cpu_wait == pytest.approx(0.1) and not calm.noisy
    unknown = run(latency(Counting(), torch.zeros(2, 3), clock=FakeClock(itertools.repeat(40.0)),
                          waited=lambda: None))
    assert unknown.cpu_wait is None and not unknown.noisy  # a system that does not say: judged by spread alone


def test_the_cpu_wait_of_this_process_is_read_where_the_system_gives_it():
    import sys

    from core.eval.evaluate import cpu_wait_ms

    value = cpu_wait_ms()
    if sys.platform.startswith("linux"):
        assert value is not None and value >= 0.0
    else:
        assert value is None


def test_warm_up_discards_the_first_slow_calls():
    # first calls build kernels and caches; warm-up lasts until a call is no longer clearly the fastest yet
    result = measure([100.0, 60.0, 30.0, 12.0, 10.0, 10.0] + [10.0] * 50)
    assert result.warmup_runs == 6  # 100, 60, 30, 12, 10 each clearly faster than every call before; 10 not
    assert result.best_ms == pytest.approx(10.0) and result.p90_ms == pytest.approx(10.0)
    assert result.runs == evaluate.MIN_RUNS and not result.noisy


def test_warm_up_is_capped():
    # calls that keep getting faster never settle: the count cap ends warm-up
    assert measure([10.0 * 0.8 ** i for i in range(200)], runs=1).warmup_runs == evaluate.MAX_WARMUP
    # and so does the time cap: 1000 + 500 + 250 ms, the minimum 3 calls, are already past MAX_WARMUP_SECONDS
    assert measure([1000.0 * 0.5 ** i for i in range(200)], runs=1).warmup_runs == evaluate.WARMUP


@pytest.mark.parametrize("collecting", [True, False])
def test_cancel_stops_within_a_round_and_restores_garbage_collection(collecting):
    was = gc.isenabled()
    model = Counting()
    (gc.enable if collecting else gc.disable)()
    try:
        task = latency(model, torch.zeros(4, 3), clock=FakeClock(itertools.repeat(100.0)), waited=lambda: None)
        with pytest.raises(Cancelled):
            run(task, should_cancel=lambda: model.calls > evaluate.WARMUP)  # once timing has begun
        assert gc.isenabled() == collecting
    finally:
        (gc.enable if was else gc.disable)()
    # the 3 warm-up calls (they settle at once), then one round of timed calls: 100 ms each, 250 ms a round
    assert model.calls == evaluate.WARMUP + 3


def test_progress_reports_come_between_rounds_only():
    items = []
    run(latency(Counting(), torch.zeros(4, 3), runs=12, clock=FakeClock(itertools.repeat(100.0))),
        on_progress=items.append)
    timing = [p for p in items if isinstance(p, Progress) and p.done > 0]
    assert [p.done for p in timing] == [3, 6, 9, 12]  # rounds of about ROUND_SECONDS (250 ms: 3 calls)


def test_a_fixed_number_of_runs_needs_at_least_one():
    with pytest.raises(ValueError, match="at least one"):
        measure([1.0] * 10, runs=0)


def test_summarize_of_one_sample():
    result = summarize([4.0], batch_size=2)
    assert (result.median_ms, result.p10_ms, result.p90_ms, result.ci_low_ms, result.ci_high_ms) == (4.0,) * 5
    assert result.confidence == 0.0 and not result.converged and result.noisy


def test_the_figure_states_its_interval_batch_runs_and_noisy_mark():
    from core.report.reports import latency_change, latency_figure, latency_spread

    steady = summarize([1.80, 1.85, 1.85, 1.86, 1.84, 1.85, 1.83, 1.87, 1.85, 1.95, 1.85], 256, 5, 2)
    assert not steady.noisy and steady.median_ms == 1.85 and steady.ci_high_ms == 1.87
    assert latency_figure(steady) == "1.85 ms ± 0.02 per batch of 256, 11 runs"
    assert latency_spread(steady).startswith("median; 98% CI 1.83–1.87 ms; p10–p90 1.83–1.87 ms; 2 threads, "
                                             "5 warm-up calls")
    noisy = summarize([1.3, 1.3, 34.0] * 10, 256, 3, 2)
    assert latency_figure(noisy).endswith(", 30 runs, noisy")
    assert "noisy: p10–p90 wider than 50% of the median" in latency_spread(noisy)
    waited = summarize([40.0] * 10, 256, 3, 2, cpu_wait=0.97)
    assert latency_spread(waited).endswith("; threads waited 0.97 s for a CPU per second timed; noisy: threads "
                                           "waited over 0.5 s for a CPU per second timed (other programs were "
                                           "using the cores)")
    # 30 runs, a third of them slow: the 95% interval (10th to 21st smallest) reaches a slow one
    assert latency_change(steady, noisy) == ("1.85 ms ± 0.02 → 1.30 ms ± 32.70 (noisy) per batch of 256 "
                                             "(11 and 30 runs)")
    big = summarize([245.0] * 10, 256)
    assert latency_figure(big) == "245 ms ± 0 per batch of 256, 10 runs"


# ------------------------------------------------------------------------------------- one measurement per variant

def recording_latency(seen: list, result: Latency):
    """A stand-in for :func:`latency` that records the batch it was given and returns ``result``."""
    def fake(model, example, *args, **kwargs):
        seen.append(example)
        return result
        yield  # a task, like the real one

    return fake


def test_inspect_and_the_original_variant_share_one_measurement_of_one_batch(lenet300, mnist, monkeypatch):
    from core.analysis import inspection
    from core.analysis.inspection import InspectOptions, inspect_model, latency_inputs
    from core.pipeline.variants import original_variant
    from core.report.reports import inspection_to_dict, latency_figure, layer_table

    measured = summarize([1.0, 1.01, 0.99, 1.005, 0.995] * 4, batch_size=256, warmup_runs=3, threads=2)
    seen: list = []
    monkeypatch.setattr(inspection, "latency", recording_latency(seen, measured))
    monkeypatch.setattr(evaluate, "latency", recording_latency(seen, measured))  # what describe_variant calls
    options = InspectOptions(activations=False, eval_limit=200)
    result = run(inspect_model(lenet300, mnist, options))
    assert result.latency is measured and len(seen) == 1
    assert seen[0].shape[0] == 256 and torch.equal(seen[0], latency_inputs(lenet300, mnist))
    # the studio's variant 0 takes the inspection's measurement instead of timing the model again
    original = run(original_variant(lenet300, mnist, result.latency))
    assert original.latency is measured and len(seen) == 1
    # without one, a variant is timed on the very batch inspect times
    again = run(original_variant(lenet300, mnist))
    assert again.latency is measured and len(seen) == 2 and torch.equal(seen[1], seen[0])
    # inspecting a variant whose measurement is known reports it and does not time it again
    known = run(inspect_model(lenet300, mnist, options, None, original.latency))
    assert known.latency is measured and len(seen) == 2
    # the reports carry the whole measurement and say what the figure is
    report = inspection_to_dict(result)["metrics"]["latency"]
    assert report["median_ms"] == measured.median_ms and report["runs"] == 20 and report["batch_size"] == 256
    assert (report["ci_low_ms"], report["ci_high_ms"], report["noisy"]) == (measured.ci_low_ms,
                                                                           measured.ci_high_ms, False)
    assert f"latency: {latency_figure(measured)} (median; " in layer_table(result)
