"""Reports of an inspection: a JSON document and a plain-text layer table."""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict

from core import __version__
from core.fileio import atomic_write
from core.analysis.cost import human_macs
from core.analysis.inspection import Inspection
from core.eval.evaluate import CONFIDENCE, NOISY_CPU_WAIT, NOISY_SPREAD, TARGET_HALF_WIDTH, Latency
from core.analysis.stats import Histogram

REPORT_FORMAT = "prunescope-inspect/1"


def _hist(h: Histogram) -> dict:
    return {"edges": [float(e) for e in h.edges], "counts": [int(c) for c in h.counts], "log10": h.log}


def inspection_to_dict(result: Inspection) -> dict:
    """The JSON report: ``params``, ``bytes``, ``layers`` and ``metrics`` (see README for every field)."""
    layers = []
    for info in result.inventory.layers:
        ws = result.weights.get(info.name)
        act = result.activations.get(info.name)
        layers.append({
            "name": info.name, "type": info.type, "shape": list(info.shape), "params": info.params,
            "bytes": info.bytes, "sparsity": info.sparsity, "dtype": info.dtype,
            "weight_stats": None if ws is None else {
                "count": ws.count, "zeros": ws.zeros, "nonfinite": ws.nonfinite, "min": ws.min, "max": ws.max,
                "mean": ws.mean, "std": ws.std, "abs_max": ws.abs_max, "near_zero": ws.near_zero},
            "weight_hist": None if ws is None else _hist(ws.hist),
            "weight_abs_hist": None if ws is None else _hist(ws.abs_hist),
            "weight_log_hist": None if ws is None else _hist(ws.log_hist),
            "activation_nonzero": None if act is None else [float(v) for v in act.nonzero_fraction],
            "activation_mean": None if act is None else [float(v) for v in act.mean],
            "activation_observations": None if act is None else act.observations,
            "activation_measured_at": None if act is None else act.measured_at,
            "activation_rule": None if act is None else act.rule,
            "activation_epsilon": None if act is None else act.epsilon,
            "dead_units": None if act is None else [int(i) for i in act.dead],
            "macs": None if result.cost is None else result.cost.per_layer.get(info.name, 0),
            "effective_macs": None if result.cost is None else result.cost.effective_per_layer.get(info.name, 0),
        })
    metrics: dict = {"file_bytes": result.loaded.file_bytes, "saved_bytes": result.saved_bytes}
    if result.test is not None:
        metrics["test"] = asdict(result.test)
    if result.fidelity is not None:
        metrics["fidelity"] = asdict(result.fidelity)
    if result.pairs is not None:
        metrics["pairs"] = asdict(result.pairs)
    if result.perplexity is not None:
        metrics["perplexity"] = asdict(result.perplexity)
    heads = {name: {"heads": h.units, "fires": [float(v) for v in h.nonzero_fraction], "rule": h.rule,
                    "epsilon": h.epsilon, "observations": h.observations, "read_at": h.measured_at,
                    "dead": [int(i) for i in h.dead]} for name, h in result.heads.items()}
    if result.latency is not None:
        metrics["latency"] = asdict(result.latency)
    if result.exits is not None:
        metrics["exits"] = result.exits
    return {
        "format": REPORT_FORMAT, "prunescope": __version__,
        "model": {"name": result.loaded.name, "source": result.loaded.source, "format": result.loaded.format,
                  "input_shape": list(result.loaded.input_shape) if result.loaded.input_shape else None,
                  "inputs": result.loaded.meta.get("inputs"),
                  "weights_only": result.loaded.streamed is not None},  # streamed: no architecture, nothing run
        "dataset": result.dataset,
        "params": result.inventory.params, "bytes": result.inventory.bytes,
        "sparsity": result.inventory.sparsity,
        "macs": _cost_dict(result.cost),
        "layers": layers, "heads": heads, "metrics": metrics, "notes": list(result.notes),
    }


def _cost_dict(cost) -> dict | None:
    """MACs for one sample (dense, and counting only non-zero Linear/Conv weights), total and per layer."""
    if cost is None:
        return None
    return {"total": cost.total, "effective_total": cost.effective_total, "per_layer": dict(cost.per_layer),
            "effective_per_layer": dict(cost.effective_per_layer)}


def finite(obj):
    """``obj`` with every NaN or infinite float replaced by None, so that it is valid JSON."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite(v) for v in obj]
    return obj


def json_bytes(data: dict) -> bytes:
    """A report as strict JSON (non-finite numbers become null)."""
    return json.dumps(finite(data), indent=1, allow_nan=False).encode()


def write_json_file(data: dict, path: str | os.PathLike) -> None:
    """Write a report atomically, as strict JSON (non-finite numbers become null)."""
    with atomic_write(path) as f:
        f.write(json_bytes(data))


def write_json(result: Inspection, path: str | os.PathLike) -> None:
    """Write the inspection's JSON report atomically."""
    write_json_file(inspection_to_dict(result), path)


def times(ratio: float) -> str:
    """A size ratio with the digits it needs: ``81.3`` -> ``"81x"``, ``1.02`` -> ``"1.02x"`` (under 10, two
    decimals: a 2% change must not read "1x"). Every view writes ratios through this one function."""
    return f"{ratio:.0f}x" if ratio >= 9.995 else f"{ratio:.2f}x"


def size_change(before: int | float, after: int | float) -> str:
    """``"81x smaller"``, ``"1.02x smaller"``, ``"1.25x larger"`` or ``"the same size"``, from two byte counts."""
    if not before or not after or before == after:
        return "the same size"
    return f"{times(before / after)} smaller" if after < before else f"{times(after / before)} larger"


def human_bytes(n: int | float | None) -> str:
    """``1066440`` -> ``"1.07 MB"`` (decimal units, as file managers show)."""
    if n is None:
        return "-"
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.3g} {unit}"
        n /= 1000
    return f"{n:.3g} TB"


def _ms(value: float, median: float) -> str:
    """Milliseconds to the precision a median of this size deserves (2 decimals under 10 ms, 1 under 100)."""
    return f"{value:.{2 if median < 10 else 1 if median < 100 else 0}f}"


def latency_median(lat: Latency) -> str:
    """``"1.85 ms"``."""
    return f"{_ms(lat.median_ms, lat.median_ms)} ms"


def latency_plus_minus(lat: Latency) -> str:
    """``"± 0.10"``: the larger side of the median's confidence interval."""
    return f"± {_ms(lat.half_width_ms, lat.median_ms)}"


def latency_value(lat: Latency) -> str:
    """``"1.85 ms ± 0.10"``: the median and the larger side of its confidence interval. Every view of a
    latency shows this, with :func:`latency_basis`."""
    return f"{latency_median(lat)} {latency_plus_minus(lat)}"


def latency_basis(lat: Latency) -> str:
    """``"per batch of 256, 41 runs"``, and ``", noisy"`` when the measurement is (see
    :func:`core.eval.evaluate.is_noisy`)."""
    return f"per batch of {lat.batch_size}, {lat.runs} runs" + (", noisy" if lat.noisy else "")


def latency_figure(lat: Latency) -> str:
    """``"1.85 ms ± 0.10 per batch of 256, 41 runs"`` (``", noisy"`` appended when it is)."""
    return f"{latency_value(lat)} {latency_basis(lat)}"


def latency_spread(lat: Latency) -> str:
    """What the figure rests on: ``"median; 95% CI 1.80-1.95 ms; p10-p90 1.71-2.30 ms; 2 threads, 5 warm-up
    calls; threads waited 0.02 s for a CPU per second timed"``, and why it is noisy when it is."""
    m = lat.median_ms
    text = (f"median; {math.floor(lat.confidence * 100)}% CI {_ms(lat.ci_low_ms, m)}–{_ms(lat.ci_high_ms, m)} ms; "
            f"p10–p90 {_ms(lat.p10_ms, m)}–{_ms(lat.p90_ms, m)} ms; {lat.threads} "
            f"thread{'s' if lat.threads != 1 else ''}, {lat.warmup_runs} warm-up calls")
    if lat.cpu_wait is not None:
        text += f"; threads waited {lat.cpu_wait:.2f} s for a CPU per second timed"
    if lat.noisy:
        reasons = []
        if lat.p90_ms - lat.p10_ms > NOISY_SPREAD * m:
            reasons.append(f"p10–p90 wider than {NOISY_SPREAD:.0%} of the median")
        if not lat.converged:
            reasons.append(f"CI not within ±{TARGET_HALF_WIDTH:.0%} at {CONFIDENCE:.0%} before the cap")
        if lat.cpu_wait is not None and lat.cpu_wait > NOISY_CPU_WAIT:
            reasons.append(f"threads waited over {NOISY_CPU_WAIT} s for a CPU per second timed (other programs "
                           "were using the cores)")
        text += "; noisy: " + ", ".join(reasons)
    return text


def latency_change(a: Latency, b: Latency) -> str:
    """Two variants' latencies: ``"1.85 ms ± 0.10 → 0.90 ms ± 0.02 per batch of 256 (41 and 60 runs)"``,
    each marked when it is noisy."""
    def one(lat: Latency) -> str:
        return latency_value(lat) + (" (noisy)" if lat.noisy else "")

    if a.batch_size == b.batch_size:
        return f"{one(a)} → {one(b)} per batch of {a.batch_size} ({a.runs} and {b.runs} runs)"
    return f"{one(a)} per batch of {a.batch_size} → {one(b)} per batch of {b.batch_size}"


def fidelity_text(f, short: bool = False) -> str:
    """A fidelity in the metric its output kind has (:mod:`core.eval.fidelity`): top-1 agreement and KL for a
    classifier (cosine too unless ``short``), cosine (mean and 5th percentile) for embeddings, perplexity
    before and after and KL per token for a language model, relative error for anything else; then each
    named output, unless ``short``."""
    p5 = f" (5th percentile {f.cosine_p5:.4f})" if f.cosine_p5 is not None else ""
    kl = f", KL {f.kl:.4g}" if getattr(f, "kl", None) is not None else ""
    if f.kind == "classify" and f.top1_agreement is not None:
        head = f"top-1 agreement {f.top1_agreement:.2%}"
        text = head if short else f"{head}{kl}, cosine {f.cosine:.4f}, relative error {f.relative_error:.3g}"
    elif f.kind == "embed":
        text = f"cosine {f.cosine:.4f}{p5}, relative error {f.relative_error:.3g} over {f.count:,} inputs (embeddings)"
    elif f.kind == "lm" and getattr(f, "perplexity", None) is not None:
        text = (f"perplexity {f.perplexity:.4g} (reference {f.reference_perplexity:.4g}){kl} per token over "
                f"{f.count:,} inputs")
    else:
        text = f"relative error {f.relative_error:.3g}, cosine {f.cosine:.4f} over {f.count:,} inputs"
    elements = getattr(f, "elements", None) or {}
    if elements and not short:
        parts = [f"{name} " + (f"cosine {cos:.4f}, " if cos is not None else "") + f"relative error {rel:.3g}"
                 for name, (cos, rel) in list(elements.items())[:8]]
        more = f" and {len(elements) - 8} more" if len(elements) > 8 else ""
        text += f"; each output: {'; '.join(parts)}{more}"
    return text


def pairs_text(p) -> str:
    """The STS metric: Spearman and Pearson correlation of cosine similarities with the gold scores."""
    if p.spearman is None:
        return f"every cosine is the same over {p.count:,} pairs: no ranking to correlate"
    return f"Spearman {p.spearman:.4f}, Pearson {p.pearson:.4f} over {p.count:,} pairs"


def perplexity_text(p) -> str:
    """A sliding-window perplexity, with how it was measured."""
    return f"{p.perplexity:.4g} over {p.tokens:,} tokens (sliding windows of {p.window:,} tokens, {p.stride:,} apart)"


def layer_table(result: Inspection) -> str:
    """The inspection as a fixed-width table, with totals and metrics."""
    rows = [("layer", "type", "shape", "params", "bytes", "MACs", "sparsity", "|w| max", "near 0", "fires", "dead")]
    cost = result.cost
    for info in result.inventory.layers:
        ws, act = result.weights.get(info.name), result.activations.get(info.name)
        rows.append((info.name or "(model)", info.type, "x".join(map(str, info.shape)), f"{info.params:,}",
                     human_bytes(info.bytes), "-" if cost is None else f"{cost.per_layer.get(info.name, 0):,}",
                     f"{info.sparsity:.1%}",
                     f"{ws.abs_max:.3g}" if ws else "-", f"{ws.near_zero:.1%}" if ws else "-",
                     f"{act.nonzero_fraction.mean():.1%}" if act else "-",
                     f"{len(act.dead)}/{act.units}" if act else "-"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    numeric = {3, 4, 5, 6, 7, 8, 9, 10}
    lines = ["  ".join(c.rjust(w) if i in numeric else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths)))
             for r in rows]
    lines.insert(1, "-" * len(lines[0]))
    inv = result.inventory
    lines.append("-" * len(lines[0]))
    lines.append(f"total: {len(inv.layers)} layers, {inv.params:,} parameters, {human_bytes(inv.bytes)} of "
                 f"weights, sparsity {inv.sparsity:.1%}")
    if cost is not None:
        lines.append(f"multiply-accumulates per sample: {cost.total:,} ({human_macs(cost.total)}); counting only "
                     f"non-zero weights: {cost.effective_total:,}")
    m = result.loaded
    if m.file_bytes is not None:
        lines.append(f"file on disk: {m.file_bytes:,} bytes ({human_bytes(m.file_bytes)})")
    if result.saved_bytes is not None:
        lines.append(f"state_dict saved with torch.save: {result.saved_bytes:,} bytes")
    if result.test is not None:
        lines.append(f"test accuracy ({result.dataset}, {result.test.count:,} examples): "
                     f"{result.test.accuracy:.2%} (loss {result.test.loss:.4f})")
    if result.fidelity is not None:
        lines.append(f"fidelity to reference: {fidelity_text(result.fidelity)}")
    if result.pairs is not None:
        lines.append(f"sentence pairs (STS): {pairs_text(result.pairs)}")
    if result.perplexity is not None:
        lines.append(f"perplexity on the text: {perplexity_text(result.perplexity)}")
    if result.latency is not None:
        lines.append(f"latency: {latency_figure(result.latency)} ({latency_spread(result.latency)})")
    if result.exits is not None:
        from core.report.exits import exit_lines

        lines.extend(exit_lines(result.exits))
    if result.activations:
        lines.append(f"fires: {firing_text(result.activations)}")
    for name, head in result.heads.items():
        rates = ", ".join(f"{r:.0%}" for r in head.nonzero_fraction[:16]) + (", ..." if head.units > 16 else "")
        lines.append(f"attention heads of {name}: {head.units} heads fire on {rates} of {head.observations:,} "
                     f"tokens ({head.rule}, ε {head.epsilon:.3g}); dead {len(head.dead)}")
    lines.extend(f"note: {n}" for n in result.notes)
    return "\n".join(lines)


def firing_text(activations: dict) -> str:
    """What the fires and dead columns counted, layer by layer: post-ReLU non-zero, or |a| > ε."""
    by_rule: dict[str, list[str]] = {}
    for name, act in activations.items():
        by_rule.setdefault(act.rule, []).append(name + (f" (ε {act.epsilon:.3g})" if act.epsilon is not None else ""))
    text = "; ".join(f"{rule} for {', '.join(names)}" for rule, names in by_rule.items())
    if any(act.epsilon is not None for act in activations.values()):
        text += "; ε is 1% of the layer's RMS activation on the first batch"
    return text


# --------------------------------------------------------------------------------------------- compression

COMPRESS_FORMAT = "prunescope-compress/1"


def _measured(m) -> dict | None:
    if m is None:
        return None
    out = {}
    if m.test is not None:
        out["test"] = asdict(m.test)
    if m.fidelity is not None:
        out["fidelity"] = asdict(m.fidelity)
    for key in ("pairs", "perplexity"):
        if getattr(m, key, None) is not None:
            out[key] = asdict(getattr(m, key))
    return out


def compression_to_dict(result, file_name: str, exports: dict[str, str] | None = None) -> dict:
    """The compression report: sizes to the byte, metrics before and after, per-layer accounting, stages."""
    account = result.account
    layers = [{"name": t.name, "encoding": t.encoding, "params": t.numel,
               "kept": (t.kept / t.numel if t.numel else 0.0) if t.encoding != "raw" else 1.0,
               "weight_bits": t.weight_bits, "index_bits": t.index_bits, "fillers": t.fillers, "bytes": t.bytes,
               "coded_weight_bits": 8 * t.weight_bytes / t.kept if t.kept else None,
               "coded_index_bits": 8 * t.index_bytes / t.kept if t.kept and t.index_bits else None,
               "weight_bytes": t.weight_bytes, "index_bytes": t.index_bytes, "codebook_bytes": t.codebook_bytes,
               "table_bytes": t.table_bytes, "raw_bytes": t.raw_bytes} for t in account.tensors]
    stages = {"original": result.original_bytes, **result.stages}
    return {
        "format": COMPRESS_FORMAT, "prunescope": __version__, "file": file_name,
        "model": result.model_info,
        "original_bytes": result.original_bytes, "compressed_bytes": result.compressed_bytes,
        "ratio": result.ratio,
        "metrics": {"before": _measured(result.before), "after": _measured(result.after),
                    "int8": _measured(result.int8)},
        "layers": layers,
        "accounting": {"framing_bytes": account.framing_bytes, "header_bytes": account.header_bytes,
                       "tensor_bytes": sum(t.bytes for t in account.tensors),
                       "program_bytes": account.program_bytes, "total": account.total},
        "stages": stages, "recipe": result.recipe.to_dict(), "exports": exports or {},
        "notes": list(result.notes),
        **{name: _section(name, section, result) for name, section in getattr(result, "sections", {}).items()},
        "macs": {"before": _cost_dict(getattr(result, "cost_before", None)),
                 "after": _cost_dict(getattr(result, "cost_after", None))},
    }


def _section(name: str, section: dict, result) -> dict:
    """A report section a step added; the allocation's measured bytes are the file's own."""
    return {**section, "measured_bytes": result.compressed_bytes} if name == "allocation" else dict(section)


def allocation_lines(section: dict) -> list[str]:
    """The allocation's prediction beside what was measured, for the terminal."""
    measured = section.get("measured_metric")
    metric = section["metric"]
    return [f"allocation for {section['target']} ({section['solver']}): predicted {section['predicted_bytes']:,} "
            f"bytes, {metric} {section['predicted_metric']:.2%}; measured {section['measured_bytes']:,} bytes"
            + (f", {metric} {measured:.2%}" if measured is not None else "")
            + f" (both on the same {section['examples']:,} {section['split']} examples: the prediction adds each "
              "layer's drop measured alone, the measurement is the whole compressed model)"]


def compression_summary(result) -> str:
    """A few lines for the terminal: sizes, ratio, accuracy before and after, per-layer table."""
    lines = [f"{'tensor':24s} {'encoding':10s} {'kept':>7s} {'w bits':>6s} {'idx bits':>8s} {'coded bits/w':>12s} "
             f"{'bytes':>10s}"]
    for t in result.account.tensors:
        kept = f"{t.kept / t.numel:.1%}" if t.encoding != "raw" and t.numel else "-"
        coded = f"{8 * (t.weight_bytes + t.index_bytes) / t.kept:.2f}" if t.kept else "-"
        lines.append(f"{t.name:24s} {t.encoding:10s} {kept:>7s} {t.weight_bits or '-':>6} {t.index_bits or '-':>8} "
                     f"{coded:>12s} {t.bytes:>10,}")
    lines.append(f"{'header + framing':24s} {'':10s} {'':>7s} {'':>6s} {'':>8s} {'':>12s} "
                 f"{result.account.header_bytes + result.account.framing_bytes:>10,}")
    if result.account.program_bytes:
        lines.append(f"{'program (its code)':24s} {'zlib':10s} {'':>7s} {'':>6s} {'':>8s} {'':>12s} "
                     f"{result.account.program_bytes:>10,}")
    lines.append(f"original {result.original_bytes:,} bytes -> compressed {result.compressed_bytes:,} bytes: "
                 f"{times(result.ratio)} smaller")
    before, after = getattr(result, "cost_before", None), getattr(result, "cost_after", None)
    if before is not None and after is not None:
        lines.append(f"multiply-accumulates per sample: {before.total:,} -> {after.total:,} (counting only "
                     f"non-zero weights: {before.effective_total:,} -> {after.effective_total:,})")
    if "allocation" in getattr(result, "sections", {}):
        lines.extend(allocation_lines(_section("allocation", result.sections["allocation"], result)))
    if "exits" in getattr(result, "sections", {}):
        from core.report.exits import exit_lines

        lines.extend(exit_lines(result.sections["exits"]))
    stage_text = ", ".join(f"{k} {v:,}" for k, v in result.stages.items())
    lines.append(f"stages (bytes of real encodings): {stage_text}")
    for label, m in (("before", result.before), ("after", result.after), ("int8", result.int8)):
        if m is not None and m.test is not None:
            lines.append(f"test accuracy {label}: {m.test.accuracy:.2%} ({m.test.count:,} examples)")
        elif m is not None and m.fidelity is not None:
            lines.append(f"fidelity {label}: {fidelity_text(m.fidelity, short=True)}")
        if m is not None and getattr(m, "pairs", None) is not None:
            lines.append(f"sentence pairs (STS) {label}: {pairs_text(m.pairs)}")
        if m is not None and getattr(m, "perplexity", None) is not None:
            lines.append(f"perplexity on the text {label}: {perplexity_text(m.perplexity)}")
    lines.extend(f"note: {n}" for n in result.notes)
    return "\n".join(lines)
