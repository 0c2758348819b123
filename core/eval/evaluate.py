"""Measuring a model: accuracy and loss on labelled data, fidelity to a reference model, latency, bytes on disk.

Every measurement here is of the real thing: accuracy over the whole split asked for, latency by the clock,
size as the bytes of a file written to disk and read back with ``os.path.getsize``.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import math
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import torch
from torch import nn

from core.devices import model_device, model_dtype, synchronize, to_device
from core.eval.data import Split
from core.progress import Progress, Task


@dataclass(frozen=True)
class Accuracy:
    """Top-1 accuracy (0-1), mean cross-entropy loss, and the number of examples measured."""

    accuracy: float
    loss: float
    count: int
    correct: int


@dataclass(frozen=True)
class Latency:
    """Wall-clock milliseconds per forward pass of one batch, as measured by :func:`latency`.

    ``median_ms`` is the figure to quote; ``ci_low_ms``-``ci_high_ms`` is the median's confidence interval
    (at least ``confidence``, from order statistics), ``p10_ms``-``p90_ms`` the spread of single calls,
    ``best_ms`` the fastest call. ``runs`` timed calls of ``batch_size`` inputs on ``threads`` intra-op
    threads, after ``warmup_runs`` untimed ones. ``converged``: the interval came within
    :data:`TARGET_HALF_WIDTH` of the median. ``cpu_wait``: how long this process's threads were ready to run
    but waited for a CPU (other programs had the cores), per unit of timed time (None where the system does
    not say). ``noisy``: see :func:`is_noisy`.
    """

    median_ms: float
    best_ms: float
    batch_size: int
    runs: int
    p10_ms: float
    p90_ms: float
    ci_low_ms: float
    ci_high_ms: float
    confidence: float
    converged: bool
    noisy: bool
    warmup_runs: int
    threads: int
    cpu_wait: float | None = None

    @property
    def half_width_ms(self) -> float:
        """The larger distance from the median to an end of its confidence interval (the "±" shown)."""
        return max(self.median_ms - self.ci_low_ms, self.ci_high_ms - self.median_ms)


def accuracy(model: nn.Module, data: Split, batch_size: int = 1000, limit: int | None = None,
             prepare: Callable[[torch.Tensor], torch.Tensor] | None = None,
             predicted: list | None = None) -> Task[Accuracy]:
    """Top-1 accuracy and mean loss of a classifier over ``data`` (or its first ``limit`` examples).

    ``prepare`` reshapes each image batch into what the model takes (for instance, flat vectors). With a
    ``predicted`` list, each batch's predicted labels are appended to it (an int64 array per batch).
    """
    total = len(data) if limit is None else min(limit, len(data))
    correct, loss_sum, seen = 0, 0.0, 0
    with evaluating(model), torch.inference_mode():
        for x, y in data.batches(batch_size, limit=limit):
            logits = logits_of(model(prepare(x) if prepare else x)).cpu()  # the model may run on a GPU
            loss_sum += nn.functional.cross_entropy(logits.float(), y, reduction="sum").item()
            top = logits.argmax(1)
            correct += int((top == y).sum())
            if predicted is not None:
                predicted.append(top.numpy())
            seen += len(y)
            yield Progress("evaluate", seen, total, "accuracy")
    return Accuracy(correct / max(seen, 1), loss_sum / max(seen, 1), seen, correct)


@contextlib.contextmanager
def evaluating(model: nn.Module) -> Iterator[None]:
    """Eval mode for the duration, then the model's own training flag back. Graphs exported with
    ``torch.export`` refuse ``eval()`` (they are fixed in the mode they were exported in) and are left as
    they are."""
    was_training = model.training
    try:
        model.eval()
    except NotImplementedError:
        yield
        return
    try:
        yield
    finally:
        model.train(was_training)


def batch_size_of(inputs) -> int:
    """The batch size of model inputs: a tensor, a tuple, or a keyword dict of tensors."""
    values = inputs.values() if isinstance(inputs, dict) else inputs if isinstance(inputs, (tuple, list)) else [inputs]
    for value in values:
        if isinstance(value, torch.Tensor) and value.ndim:
            return int(value.shape[0])
    return 1


def logits_of(output) -> torch.Tensor:
    """The main output tensor of a model call: a tensor, the first of a tuple, or ``.logits``/``last_hidden_state``."""
    if isinstance(output, torch.Tensor):
        return output
    for key in ("logits", "last_hidden_state"):
        value = getattr(output, key, None)
        if value is None and isinstance(output, dict):
            value = output.get(key)
        if isinstance(value, torch.Tensor):
            return value
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
        return output[0]
    raise TypeError(f"cannot find an output tensor in a {type(output).__name__}")


def call_model(model: nn.Module, inputs):
    """Call ``model`` on a tensor, a tuple of tensors, or a dict of keyword tensors."""
    if isinstance(inputs, dict):
        return model(**inputs)
    if isinstance(inputs, (tuple, list)):
        return model(*inputs)
    return model(inputs)


CONFIDENCE = 0.95
"""The least coverage of the median's confidence interval that :func:`latency` aims for."""
TARGET_HALF_WIDTH = 0.05
"""Timing stops once the interval's half-width (its larger side) is within this fraction of the median."""
MIN_RUNS = 10
"""Timed calls before the interval is first looked at."""
MAX_RUNS = 300
"""Timed calls at most."""
MAX_SECONDS = 2.0
"""Time spent in timed calls after which no more are started (once :data:`MIN_RUNS` are done)."""
WARMUP = 3
"""Untimed calls at least."""
MAX_WARMUP = 30
"""Untimed calls at most."""
MAX_WARMUP_SECONDS = 1.0
"""Time spent warming up after which warm-up ends (once :data:`WARMUP` calls are done)."""
SETTLED = 0.9
"""Warm-up goes on while the latest call is faster than this fraction of every call before it."""
NOISY_SPREAD = 0.5
"""A figure is noisy when its p10-p90 range is wider than this fraction of its median (see :func:`is_noisy`)."""
NOISY_CPU_WAIT = 0.5
"""A figure is noisy when the threads waited for a CPU longer than this fraction of the timed time: then
each of torch's parallel operations waits for a thread that another program has pushed off its core, and
the figure can be steady and still several times the model's own time (see :func:`is_noisy`)."""
ROUND_SECONDS = 0.25
"""Timed calls run in rounds of about this long; progress is reported (and cancel honoured) between them."""


@functools.lru_cache(maxsize=1024)
def median_interval(n: int, confidence: float = CONFIDENCE) -> tuple[int, int, float]:
    """The confidence interval of the median of ``n`` samples, as 1-based ranks into the sorted samples.

    Returns ``(k, n + 1 - k, coverage)``: the true median lies between the k-th smallest and the k-th
    largest sample with probability ``coverage = 1 - 2 P(B <= k - 1)``, B ~ Binomial(n, 1/2), whatever the
    distribution of the samples (it needs only that they are independent and identically distributed).
    ``k`` is the largest rank whose coverage is at least ``confidence``; below 6 samples no interval
    reaches 95%, and the widest one (the smallest and largest sample, k = 1) is returned with its coverage.
    Exact integer arithmetic.
    """
    if n < 1:
        raise ValueError("the median of no samples has no interval")
    total = 2 ** n
    k, tail = 1, 1  # tail = C(n, 0) + ... + C(n, k - 1): the count of outcomes with B <= k - 1
    while k + 1 <= (n + 1) // 2:
        next_tail = tail + math.comb(n, k)
        if 1 - 2 * next_tail / total < confidence:
            break
        k, tail = k + 1, next_tail
    return k, n + 1 - k, 1 - 2 * tail / total


def is_noisy(median_ms: float, p10_ms: float, p90_ms: float, converged: bool, cpu_wait: float | None = None) -> bool:
    """The rule for a figure not to quote without a mark: its p10-p90 range is wider than
    :data:`NOISY_SPREAD` of the median, or its median's interval never came within
    :data:`TARGET_HALF_WIDTH` at :data:`CONFIDENCE` before the caps, or the threads waited for a CPU
    longer than :data:`NOISY_CPU_WAIT` of the timed time."""
    return ((p90_ms - p10_ms) > NOISY_SPREAD * median_ms or not converged
            or (cpu_wait is not None and cpu_wait > NOISY_CPU_WAIT))


def summarize(times_ms: list[float], batch_size: int = 1, warmup_runs: int = 0, threads: int = 1,
              cpu_wait: float | None = None, confidence: float = CONFIDENCE,
              target: float = TARGET_HALF_WIDTH) -> Latency:
    """The statistics of timed calls (milliseconds, in the order they ran) as a :class:`Latency`.

    Median and p10/p90 as ``statistics.median`` and ``statistics.quantiles(method="inclusive")`` (linear
    interpolation between order statistics, numpy's default); the interval from :func:`median_interval`.
    """
    ordered = sorted(times_ms)
    n = len(ordered)
    median = statistics.median(ordered)
    if n >= 2:
        deciles = statistics.quantiles(ordered, n=10, method="inclusive")
        p10, p90 = deciles[0], deciles[-1]
    else:
        p10 = p90 = ordered[0]
    lo, hi, coverage = median_interval(n, confidence)
    ci_low, ci_high = ordered[lo - 1], ordered[hi - 1]
    converged = coverage >= confidence and max(median - ci_low, ci_high - median) <= target * median
    return Latency(median, ordered[0], batch_size, n, p10, p90, ci_low, ci_high, coverage, converged,
                   is_noisy(median, p10, p90, converged, cpu_wait), warmup_runs, threads, cpu_wait)


def cpu_wait_ms() -> float | None:
    """Milliseconds that this process's threads have spent ready to run but waiting for a CPU, summed over
    its threads (Linux: the second field of ``/proc/self/task/*/schedstat``); None elsewhere."""
    total, known = 0, False
    try:
        tasks = os.listdir("/proc/self/task")
    except OSError:
        return None
    for task in tasks:
        try:
            with open(f"/proc/self/task/{task}/schedstat", "rb") as f:
                total += int(f.read().split()[1])
            known = True
        except (OSError, IndexError, ValueError):  # a thread that ended meanwhile, or no schedstat
            continue
    return total / 1e6 if known else None


def _settled(warm_ms: list[float]) -> bool:
    """Warm-up is over once the latest call is no longer clearly the fastest yet (see :data:`SETTLED`)."""
    return len(warm_ms) < 2 or warm_ms[-1] >= SETTLED * min(warm_ms[:-1])


def latency(model: nn.Module, example, runs: int | None = None, warmup: int = WARMUP,
            clock: Callable[[], float] = time.perf_counter,
            waited: Callable[[], float | None] = cpu_wait_ms) -> Task[Latency]:
    """Time forward passes of ``example`` (one batch) until the median is known to a stated precision.

    Warm-up: at least ``warmup`` untimed calls; after that, while the latest call is faster than
    :data:`SETTLED` times every call before it (the first calls build kernels, caches and thread pools),
    at most :data:`MAX_WARMUP` calls or :data:`MAX_WARMUP_SECONDS`. Then timed calls: with ``runs``,
    exactly that many; by default, at least :data:`MIN_RUNS`, and then until the median's
    :data:`CONFIDENCE` interval is within :data:`TARGET_HALF_WIDTH` of it, or :data:`MAX_RUNS` calls, or
    :data:`MAX_SECONDS` in timed calls. Each call is timed by two readings of ``clock`` (seconds), and
    nothing else reads it, so a test can feed it a known sequence. ``waited`` (:func:`cpu_wait_ms`) is read
    around each round of timed calls, for :attr:`Latency.cpu_wait`.

    Torch's intra-op thread count is used as it is (it is what the model would run with here) and is
    recorded. The calls run in rounds of about :data:`ROUND_SECONDS` with Python's cyclic garbage
    collector paused (as ``timeit`` does; it is restored as it was); progress is reported, and cancel
    honoured, only between rounds: a report after every call would wake the studio's UI thread, whose
    share of the interpreter lock would then be timed as model latency.
    """
    if runs is not None and runs < 1:
        raise ValueError(f"latency needs at least one timed run, not {runs}")
    batch = batch_size_of(example)
    threads = torch.get_num_threads()
    device = model_device(model)  # the inputs go there once, untimed; a GPU's queue is waited for in each call
    example = to_device(example, device, model_dtype(model))
    warm: list[float] = []
    times: list[float] = []
    wait_ms: float | None = 0.0
    yield Progress("latency", 0, 1, "warming up")
    gc_was_enabled = gc.isenabled()
    try:
        gc.disable()
        with torch.inference_mode():
            while len(warm) < MAX_WARMUP:
                if len(warm) >= warmup and (_settled(warm) or sum(warm) >= MAX_WARMUP_SECONDS * 1000.0):
                    break
                start = clock()
                call_model(model, example)
                synchronize(device)
                warm.append((clock() - start) * 1000.0)
        planned = runs if runs is not None else MAX_RUNS
        while len(times) < planned:
            round_ms, wait_before = 0.0, waited()
            with torch.inference_mode():
                while len(times) < planned and round_ms < ROUND_SECONDS * 1000.0:
                    start = clock()
                    call_model(model, example)
                    synchronize(device)
                    times.append((clock() - start) * 1000.0)
                    round_ms += times[-1]
                    if runs is None and len(times) >= MIN_RUNS and (
                            sum(times) >= MAX_SECONDS * 1000.0 or summarize(times).converged):
                        planned = len(times)
            wait_after = waited()
            wait_ms = None if wait_ms is None or wait_before is None or wait_after is None \
                else wait_ms + wait_after - wait_before
            if gc_was_enabled:
                gc.enable()
            yield Progress("latency", len(times), planned, f"timing forward passes: {len(times)} runs")
            gc.disable()
    finally:
        if gc_was_enabled:
            gc.enable()
    cpu_wait = None if wait_ms is None else wait_ms / max(sum(times), 1e-9)
    return summarize(times, batch, len(warm), threads, cpu_wait)


def saved_size_bytes(model: nn.Module) -> int:
    """Bytes on disk of ``model``'s state_dict saved with ``torch.save``, as an export writes it.

    It is written through a Python file object, as :func:`core.io.export.export` writes one (torch then names
    the archive's entries ``archive/...``): saving to a path instead holds the interpreter lock for the
    whole write (50 ms for 100 MB), which the studio's UI thread would wait out.
    """
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "model.pt")
        with open(path, "wb") as f:
            torch.save(model.state_dict(), f)
        return os.path.getsize(path)
