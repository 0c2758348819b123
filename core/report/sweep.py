"""A sweep as files and a table: a CSV row per recipe, a JSON report, and the table the command line prints.

CSV columns: ``name``, one column per axis (its key, ``quantize.bits``), ``bytes`` (the compressed file's),
``ratio``, ``metric`` (``test accuracy``, or the fidelity metric without labels) and ``value`` (a fraction for
accuracy and agreement), ``correct`` and ``count`` (test examples), ``loss``, ``params``, ``nonzero_params``,
``macs``, ``effective_macs``, ``pareto`` (1 for a recipe on the Pareto front of bytes against the metric),
then ``seconds`` and ``worker`` (host:pid), which say where it ran and differ from run to run.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence

from core.pipeline.variants import pareto_front
from core.report.reports import json_bytes
from core.sweep.grid import Axis, format_value
from core.sweep.jobs import SweepResult

REPORT_FORMAT = "prunescope-sweep/1"


def front(results: Sequence[SweepResult]) -> set[int]:
    """Indices (``SweepResult.index``) of the results on the Pareto front: no other is both smaller and at
    least as good."""
    scored = [r for r in results if r.score is not None]
    return {scored[i].index for i in pareto_front([r.compressed_bytes for r in scored],
                                                  [r.score.better for r in scored])}


def _num(value) -> str:
    return "" if value is None else f"{value:.6g}" if isinstance(value, float) else str(value)


def csv_bytes(results: Sequence[SweepResult], axes: Sequence[Axis]) -> bytes:
    """One row per recipe, in grid order."""
    on_front = front(results)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["name", *(a.key for a in axes), "bytes", "ratio", "metric", "value", "correct", "count", "loss",
                     "params", "nonzero_params", "macs", "effective_macs", "pareto", "seconds", "worker"])
    for r in results:
        settings = dict(r.settings)
        writer.writerow([r.name, *(format_value(settings[a.key]) for a in axes), r.compressed_bytes,
                         f"{r.ratio:.4f}", r.score.name if r.score else "", _num(r.score.value if r.score else None),
                         _num(r.correct), _num(r.count), _num(r.loss), r.params, r.nonzero_params, _num(r.macs),
                         _num(r.effective_macs), int(r.index in on_front), f"{r.seconds:.3f}", r.worker])
    return out.getvalue().encode()


def to_dict(results: Sequence[SweepResult], axes: Sequence[Axis], base, model: str, backend: str,
            limit: int | None) -> dict:
    """The whole sweep as plain data: what was swept, where, and every result."""
    on_front = front(results)
    return {
        "format": REPORT_FORMAT, "model": model, "backend": backend, "limit": limit, "base_recipe": base.to_dict(),
        "axes": [{"key": a.key, "values": list(a.values)} for a in axes],
        "results": [{"index": r.index, "name": r.name, "settings": dict(r.settings), "recipe": r.recipe.to_dict(),
                     "compressed_bytes": r.compressed_bytes, "original_bytes": r.original_bytes, "ratio": r.ratio,
                     "metric": r.score.name if r.score else None, "value": r.score.value if r.score else None,
                     "correct": r.correct, "count": r.count, "loss": r.loss, "params": r.params,
                     "nonzero_params": r.nonzero_params, "macs": r.macs, "effective_macs": r.effective_macs,
                     "pareto": r.index in on_front, "notes": list(r.notes), "seconds": r.seconds, "worker": r.worker}
                    for r in results],
    }


def report_json_bytes(results: Sequence[SweepResult], axes: Sequence[Axis], base, model: str, backend: str,
                      limit: int | None) -> bytes:
    return json_bytes(to_dict(results, axes, base, model, backend, limit))


def summary_table(results: Sequence[SweepResult]) -> str:
    """A row per recipe: bytes, how many times smaller, the metric; ``*`` marks the Pareto front."""
    on_front = front(results)
    metric = next((r.score.name for r in results if r.score is not None), "metric")
    width = max([len("recipe"), *(len(r.name) for r in results)])
    lines = [f"  {'recipe':<{width}}  {'bytes':>10}  {'ratio':>7}  {metric}"]
    for r in results:
        figure = r.score.figure() if r.score is not None else "-"
        lines.append(f"{'*' if r.index in on_front else ' '} {r.name:<{width}}  {r.compressed_bytes:>10,}  "
                     f"{r.ratio:>6.1f}x  {figure}")
    original = results[0].original_bytes if results else 0
    lines.append(f"* on the Pareto front (smaller, or better than every smaller one); the original: {original:,} bytes")
    return "\n".join(lines)
