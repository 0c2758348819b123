"""A sensitivity analysis as files: Distiller's CSV (plus bytes), a JSON report, a PNG of the curves.

CSV columns: ``parameter, <level name>, top1, top5, loss, bytes`` (Distiller's ``parameter, sparsity, top1,
top5, loss``, with top-1/top-5 in percent as Distiller writes them), then ``metric, value`` when there are
no labels (the fidelity metric's name and value), and ``skipped`` (why a level was not measured: its figures
are empty, never a copy of the baseline).
"""

from __future__ import annotations

import csv
import io
from dataclasses import asdict

from core.analysis.sensitivity import Sensitivity
from core.report.reports import json_bytes

COLOURS = ((31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75),
           (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207))


def _pct(value: float | None) -> str:
    return "" if value is None else f"{100 * value:.4f}"


def _num(value: float | None) -> str:
    return "" if value is None else f"{value:.6g}"


def csv_bytes(result: Sensitivity) -> bytes:
    """The curves as CSV, one row per layer and level."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    level = result.level_name.replace(" ", "_")
    extra = [] if result.labelled else ["metric", "value"]
    writer.writerow(["parameter", level, "top1", "top5", "loss", "bytes", *extra, "skipped"])
    for p in result.points:
        row = [p.layer, f"{p.level:g}", _pct(p.top1), _pct(p.top5), _num(p.loss), "" if p.bytes is None else p.bytes]
        if not result.labelled:
            row += [result.metric_name, _num(p.metric)]
        writer.writerow([*row, p.skipped or ""])
    return out.getvalue().encode()


def to_dict(result: Sensitivity) -> dict:
    """The whole analysis as plain data (for JSON)."""
    data = asdict(result)
    data["points"] = [asdict(p) for p in result.points]
    return data


def report_json_bytes(result: Sensitivity) -> bytes:
    return json_bytes(to_dict(result))


def png_bytes(result: Sensitivity, width: int = 900, height: int = 560) -> bytes:
    """Level against metric, one line per layer (skipped levels leave a gap), drawn with Pillow."""
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    left, top, right, bottom = 70, 40, width - 190, height - 50
    values = [p.metric for p in result.points if p.metric is not None] + [result.baseline["metric"] or 0.0]
    lo, hi = min(values), max(values)
    hi = hi if hi > lo else lo + 1.0
    xs = sorted(result.levels)
    x_lo, x_hi = xs[0], xs[-1] if xs[-1] > xs[0] else xs[0] + 1.0

    def at(level: float, value: float) -> tuple[float, float]:
        return (left + (level - x_lo) / (x_hi - x_lo) * (right - left), bottom - (value - lo) / (hi - lo) * (bottom - top))

    draw.rectangle([left, top, right, bottom], outline="black")
    for k in range(5):
        value = lo + (hi - lo) * k / 4
        y = at(x_lo, value)[1]
        draw.line([left - 4, y, left, y], fill="black")
        draw.text((5, y - 6), f"{value:.4g}", fill="black")
    for level in xs:
        x = at(level, lo)[0]
        draw.line([x, bottom, x, bottom + 4], fill="black")
        draw.text((x - 10, bottom + 8), f"{level:g}", fill="black")
    draw.text((left, 12), f"sensitivity: {result.method}, {result.metric_name} by {result.level_name}", fill="black")
    draw.text(((left + right) // 2 - 30, height - 22), result.level_name, fill="black")
    layers = list(dict.fromkeys(p.layer for p in result.points))
    for i, layer in enumerate(layers):
        colour = COLOURS[i % len(COLOURS)]
        run: list[tuple[float, float]] = []
        for p in sorted(result.curve(layer), key=lambda p: p.level) + [None]:
            if p is None or p.metric is None:
                if len(run) > 1:
                    draw.line(run, fill=colour, width=2)
                for x, y in run:
                    draw.ellipse([x - 3, y - 3, x + 3, y + 3], fill=colour)
                run = []
            else:
                run.append(at(p.level, p.metric))
        draw.text((right + 12, top + 16 * i), layer, fill=colour)
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def scale_of(result: Sensitivity) -> tuple[float, str]:
    """How the metric is written: (factor, unit): top-1, top-1 agreement and cosine in percent, else as it is."""
    return (100.0, "%") if result.labelled or result.metric_name in ("top-1 agreement", "cosine") else (1.0, "")


def summary_table(result: Sensitivity) -> str:
    """Layers by levels, the metric in each cell ("skip" where the level was skipped), as text."""
    scale, unit = scale_of(result)
    head = f"{result.metric_name}{' (%)' if unit else ''} by {result.level_name} ({result.method}"
    head += f", {result.quantizer})" if result.quantizer else ")"
    base = result.baseline["metric"]
    width = max([len("layer"), *(len(p.layer) for p in result.points)]) + 2
    lines = [f"{head}; unperturbed {scale * base:.2f} on {result.count:,} examples" if base is not None else head,
             f"{'layer':{width}s}" + "".join(f"{level:>8g}" for level in result.levels) + "  path"]
    for layer in dict.fromkeys(p.layer for p in result.points):
        cells = "".join("    skip" if p.metric is None else f"{scale * p.metric:8.2f}" for p in result.curve(layer))
        lines.append(f"{layer:{width}s}{cells}  {result.paths[layer]}")
    return "\n".join(lines)


def drop_colour(drop: float | None, worst: float = 0.05) -> str:
    """A cell's background for a metric drop (a fraction): green at none, through amber, to red at
    ``worst`` or more; grey for a level not measured."""
    if drop is None:
        return "#3a3f47"
    t = min(1.0, max(0.0, drop / worst))
    low, mid, high = (46, 125, 50), (249, 168, 37), (198, 40, 40)
    a, b, u = (low, mid, t * 2) if t < 0.5 else (mid, high, t * 2 - 1)
    return "#" + "".join(f"{round(x + (y - x) * u):02x}" for x, y in zip(a, b))


def heatmap_html(result: Sensitivity) -> str:
    """The curves as an HTML table, layers x levels, each cell the metric coloured by its drop from the
    baseline (a skipped level grey, with the reason on hover)."""
    import html

    e = html.escape
    base = result.baseline["metric"]
    head = "".join(f"<th>{level:g}</th>" for level in result.levels)
    rows = []
    for layer in dict.fromkeys(p.layer for p in result.points):
        cells = []
        for p in result.curve(layer):
            if p.skipped is not None or p.metric is None:
                cells.append(f"<td style='background:{drop_colour(None)}' title='{e(p.skipped or '')}'>skipped</td>")
            else:
                drop = max(0.0, base - p.metric) if base is not None else None
                cells.append(f"<td style='background:{drop_colour(drop)};color:#fff'>{100 * p.metric:.2f}</td>")
        rows.append(f"<tr><td>{e(layer)}</td>{''.join(cells)}</tr>")
    baseline = f"{100 * base:.2f}" if base is not None else "-"
    return (f"<p class='muted'>Each layer alone at each {e(result.level_name)} of {e(result.method)}, the rest "
            f"untouched: {e(result.metric_name)} (%) on {result.count:,} examples; unperturbed {baseline}. "
            f"Green: no drop; red: 5 points or more.</p><table><tr><th>layer</th>{head}</tr>{''.join(rows)}</table>")
