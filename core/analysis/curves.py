"""Reading a sensitivity analysis's curves: how many points a setting loses, and where a layer's curve first
loses a given number of points (the layer table's "the sparsity at which the metric drops 1 point").

A *point* is a hundredth of the metric for the metrics that are fractions (top-1, top-1 agreement, cosine,
relative error), and 1% of the unperturbed value for perplexity. Points lost are counted so that more is
worse whichever way the metric goes (:data:`core.pipeline.scores.LOWER_IS_BETTER`). A skipped level
measured nothing: it is passed over, never read as "nothing lost".
"""

from __future__ import annotations

from dataclasses import dataclass

from core.analysis.sensitivity import Sensitivity
from core.pipeline.scores import LOWER_IS_BETTER

UNPERTURBED = {"prune": 0.0, "low_rank": 1.0}
"""The level of a method that leaves a layer exactly as it is (sparsity 0, full rank): the curve starts there
at the unperturbed metric. Quantization has none (8 bits is not the float layer)."""

EXACTLY = 1e-9
"""Float slack: a loss of exactly ``points`` (30 of 3,000 examples for one point) counts as reached."""

RELATIVE = ("perplexity",)
"""Metrics whose points are percentages of the unperturbed value rather than hundredths of the metric."""


def points_lost(result: Sensitivity, metric: float | None) -> float | None:
    """How many points ``metric`` is worse than ``result``'s unperturbed baseline (negative: better);
    None when either is not known."""
    base = result.baseline.get("metric")
    if metric is None or base is None:
        return None
    worse = metric - base if result.metric_name in LOWER_IS_BETTER else base - metric
    if result.metric_name in RELATIVE:
        return 100.0 * worse / abs(base) if base else None
    return 100.0 * worse


def metric_losing(result: Sensitivity, points: float) -> float | None:
    """The metric that is ``points`` points worse than the baseline (the inverse of :func:`points_lost`)."""
    base = result.baseline.get("metric")
    if base is None:
        return None
    worse = points / 100.0 * (abs(base) if result.metric_name in RELATIVE else 1.0)
    return base + worse if result.metric_name in LOWER_IS_BETTER else base - worse


def more_compression_first(result: Sensitivity) -> bool:
    """Whether a higher level compresses more (sparsity) rather than less (bits, rank fraction)."""
    return result.method == "prune"


@dataclass(frozen=True)
class DropLevel:
    """Where one layer's curve first loses ``points`` points, going from the least compressing level to the most.

    ``where``: ``"between"`` (``level`` is interpolated linearly between the measured levels ``lower`` and
    ``upper``, or the unperturbed level), ``"first"`` (already at the least compressing measured level,
    ``upper``, with nothing unperturbed to interpolate from), ``"never"`` (not at any measured level; ``lower``
    is the most compressing one) or ``"unmeasured"`` (every level was skipped; ``why`` says why)."""

    layer: str
    points: float
    where: str
    level: float | None = None
    lower: float | None = None
    upper: float | None = None
    why: str | None = None
    ascending: bool = True

    @property
    def label(self) -> str:
        """``0.81``, ``> 0.95`` (never reached), ``≥ 8`` (at the first level), ``—`` (not measured)."""
        if self.where == "between":
            return f"{self.level:.2f}"
        if self.where == "first":
            return f"{'≤' if self.ascending else '≥'} {self.upper:g}"
        if self.where == "never":
            return f"{'>' if self.ascending else '<'} {self.lower:g}"
        return "—"

    @property
    def sort_key(self) -> float:
        """A number that is larger the more compression the layer takes before it loses the points."""
        sign = 1.0 if self.ascending else -1.0
        if self.where == "between":
            return sign * self.level
        if self.where == "first":
            return sign * self.upper - 1e-6
        if self.where == "never":
            return sign * self.lower + 1e-6
        return float("-inf")


def level_at_drop(result: Sensitivity, layer: str, points: float = 1.0) -> DropLevel:
    """The level of ``result.method`` at which ``layer`` first loses ``points`` points (see :class:`DropLevel`),
    interpolated linearly between the two measured levels around the crossing; the method's unperturbed level
    (:data:`UNPERTURBED`), where it has one, starts the curve at no loss."""
    ascending = more_compression_first(result)
    curve = sorted(result.curve(layer), key=lambda p: p.level, reverse=not ascending)
    if not curve:
        raise KeyError(layer)
    measured = [(p.level, lost) for p in curve if p.skipped is None and (lost := points_lost(result, p.metric)) is not None]
    if not measured:
        return DropLevel(layer, points, "unmeasured", why=next((p.skipped for p in curve if p.skipped), None)
                         or "not measured", ascending=ascending)
    previous = (UNPERTURBED[result.method], 0.0) if result.method in UNPERTURBED else None
    for level, lost in measured:
        if lost >= points - EXACTLY:
            if previous is None:
                return DropLevel(layer, points, "first", upper=level, ascending=ascending)
            (a, lost_a), (b, lost_b) = previous, (level, lost)
            t = (points - lost_a) / (lost_b - lost_a) if lost_b != lost_a else 1.0
            return DropLevel(layer, points, "between", a + t * (b - a), a, b, ascending=ascending)
        previous = (level, lost)
    return DropLevel(layer, points, "never", lower=measured[-1][0], ascending=ascending)


def levels_at_drop(result: Sensitivity, points: float = 1.0) -> dict[str, DropLevel]:
    """:func:`level_at_drop` of every layer of ``result``, in its order."""
    return {layer: level_at_drop(result, layer, points) for layer in dict.fromkeys(p.layer for p in result.points)}
