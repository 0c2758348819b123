"""A self-contained HTML report of a compression: the headline numbers, per-layer table, and the plots as
embedded PNG images (one file to send to the people who decide)."""

from __future__ import annotations

import base64
import html
from datetime import datetime, timezone

from core.analysis.cost import human_macs
from core.report.reports import human_bytes, latency_change, size_change
from core.pipeline.scores import variant_score
from core.pipeline.variants import Variant, compare_layers

STYLE = """
body { font-family: -apple-system, Segoe UI, Helvetica, Arial, sans-serif; background: #16191f; color: #e8eaed;
       margin: 32px auto; max-width: 1100px; }
h1 { font-size: 28px; margin-bottom: 4px; } h2 { font-size: 18px; color: #9aa0a6; margin-top: 32px; }
.card { background: #1f232b; border-left: 4px solid #4fc3f7; border-radius: 8px; padding: 20px 28px; }
.big { font-size: 40px; font-weight: 700; } .muted { color: #9aa0a6; }
table { border-collapse: collapse; width: 100%; font-size: 14px; }
td, th { padding: 6px 10px; border-bottom: 1px solid #2c313a; text-align: right; }
td:first-child, th:first-child { text-align: left; }
img { max-width: 100%; border-radius: 8px; margin: 8px 0; }
"""


def summary_phrases(original: Variant, variant: Variant) -> list[str]:
    """The headline's phrases, each to be read whole: ["1.07 MB → 20.1 KB", "53x smaller", "accuracy …"]."""
    phrases = [f"{human_bytes(original.size_bytes)} → {human_bytes(variant.size_bytes)}",
               size_change(original.size_bytes, variant.size_bytes)]
    before, after = variant_score(original), variant_score(variant)
    if before is not None and after is not None and before.name == after.name:
        name = "accuracy" if before.name == "test accuracy" else before.name
        phrases.append(f"{name} {before.figure()} → {after.figure()}")
    return phrases


def macs_change(original: Variant, variant: Variant) -> str:
    """"2.29 M → 2.29 M (non-zero weights: 2.29 M → 181 k)": both variants' MACs per sample."""
    a, b = original.cost, variant.cost
    return (f"{human_macs(a.total)} → {human_macs(b.total)} (non-zero weights: {human_macs(a.effective_total)} → "
            f"{human_macs(b.effective_total)})")


def layer_macs(variant: Variant, tensor: str) -> str:
    """A weight tensor's layer's MACs per sample in ``variant`` (blank for other tensors)."""
    if variant.cost is None or not tensor.endswith("weight"):
        return ""
    layer = tensor.rsplit(".", 1)[0] if "." in tensor else ""
    value = variant.cost.per_layer.get(layer)
    return "" if value is None else f"{value:,}"


def summary_line(original: Variant, variant: Variant) -> str:
    """"1.07 MB → 20.1 KB, 53x smaller, accuracy 98.94% → 98.90%"."""
    return ", ".join(summary_phrases(original, variant))


def _measured_on(variant: Variant) -> str:
    score = variant_score(variant)
    if score is None or score.name == "test accuracy":
        return "accuracy is measured on the whole test split"
    return (f"with no labelled data set, {score.name} to the original is measured on your own inputs"
            + (f" ({variant.fidelity.count:,})" if variant.fidelity is not None else ""))


def allocation_html(section: dict) -> str:
    """The allocation a variant was made with: its target, predicted against measured, each layer's choice."""
    e = html.escape
    measured = section.get("measured_metric")
    rows = "".join(f"<tr><td>{e(n)}</td><td>{_setting(c, 'sparsity')}</td><td>{_setting(c, 'bits')}</td>"
                   f"<td>{c['bytes']:,}</td><td>{100 * c['metric_alone']:.2f}</td></tr>"
                   for n, c in section["layers"].items())
    metric = e(section["metric"])
    return (f"<p>Chosen by allocation ({e(section['solver'])}) for {e(section['target'])}. Predicted "
            f"{section['predicted_bytes']:,} bytes and {metric} {100 * section['predicted_metric']:.2f}%; measured "
            f"{section['measured_bytes']:,} bytes" + (f" and {metric} {100 * measured:.2f}%" if measured is not None
                                                       else "")
            + f", on the same {section['examples']:,} {e(section['split'])} examples.</p>"
            "<p class='muted'>The prediction adds each layer's drop measured alone; the measurement is the whole "
            "compressed model.</p><table><tr><th>layer</th><th>sparsity</th><th>bits</th><th>bytes</th>"
            f"<th>{metric} alone (%)</th></tr>{rows}</table>")


def _setting(choice: dict, key: str) -> str:
    value = choice.get(key)
    return "-" if value is None else f"{value:.0%}" if key == "sparsity" else f"{value:g}"


def build_html(model_name: str, original: Variant, variant: Variant, images: dict[str, bytes],
               changed: int | None = None, sensitivity=None) -> str:
    """The report as one HTML string; ``images`` maps captions to PNG bytes; ``sensitivity``: the latest
    :class:`core.analysis.sensitivity.Sensitivity` of the model, shown as a heat map."""
    from core.report.sensitivity import heatmap_html

    e = html.escape
    extra = (f"<h2>Allocation</h2>{allocation_html(variant.allocation)}" if variant.allocation else "") + (
        f"<h2>Sensitivity</h2>{heatmap_html(sensitivity)}" if sensitivity is not None else "")
    rows = "".join(
        f"<tr><td>{e(r.name)}</td><td>{r.params[1]:,}</td><td>{r.kept[1]:.1%}</td><td>{r.weight_bits[1]}</td>"
        f"<td>{human_bytes(r.bytes[0])}</td><td>{human_bytes(r.bytes[1])}</td><td>{layer_macs(variant, r.name)}</td></tr>"
        for r in compare_layers(original, variant))
    figures = "".join(f"<h2>{e(caption)}</h2><img alt='{e(caption)}' src='data:image/png;base64,"
                      f"{base64.b64encode(png).decode()}'>" for caption, png in images.items())
    recipe = e(variant.recipe.to_yaml()) if variant.recipe is not None else ""
    links = len(variant.recipe.chain()) if variant.recipe is not None else 0
    recipe_note = (f"<p class='muted'>The whole chain from the original: {links} runs, each on the model the one "
                   "before made (<code>base</code> runs first). Running it on the original reproduces this "
                   "variant: <code>python main.py compress MODEL --recipe recipe.yaml</code>.</p>" if links > 1 else
                   "<p class='muted'>Running it on the original reproduces this variant: "
                   "<code>python main.py compress MODEL --recipe recipe.yaml</code>.</p>" if links else "")
    changed_text = f"<p class='muted'>{changed} test images are now misclassified that were right before.</p>" \
        if changed is not None else ""
    latency_text = (f"<p class='muted'>Latency {e(latency_change(original.latency, variant.latency))}: the "
                    "median of timed forward passes on the machine that made the variants, ± the larger side of "
                    "its 95% confidence interval; \"noisy\" when single passes varied widely or that interval "
                    "stayed wide.</p>"
                    if original.latency is not None and variant.latency is not None else "")
    macs_text = (f"<p class='muted'>Multiply-accumulates per sample {e(macs_change(original, variant))} "
                 "(counted by torch's FLOP counter; a pruned weight is still multiplied by a dense kernel, so "
                 "the count of multiplies by non-zero weights is given beside it).</p>"
                 if original.cost is not None and variant.cost is not None else "")
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>Prunescope: {e(model_name)}</title>
<style>{STYLE}</style></head><body>
<h1>{e(model_name)}: {e(variant.name)}</h1><p class="muted">Prunescope report, {when}</p>
<div class="card"><div class="big">{e(summary_line(original, variant))}</div>
<p class="muted">Sizes are bytes of files on disk; {e(_measured_on(variant))}, on the model decoded back from
the compressed file.</p></div>{changed_text}{latency_text}{macs_text}
<h2>Layers</h2><table><tr><th>tensor</th><th>parameters</th><th>kept</th><th>bits</th><th>original</th>
<th>compressed</th><th>MACs</th></tr>{rows}</table>{extra}{figures}
<h2>Recipe</h2>{recipe_note}<pre>{recipe}</pre></body></html>"""
