"""Early exits in words: the one-line headline (Demo view, HTML report) and the terminal's lines, from a
report's ``exits`` section (:func:`core.eval.exits.exit_section`: every figure in it is measured)."""

from __future__ import annotations


def _exit_name(section: dict, i: int) -> str:
    return f"after {section['after'][i]}" if i < len(section["after"]) else "at the end"


def exit_headline(section: dict, accuracy_before: float | None) -> str:
    """"94% of images leave after conv1: 3.2x faster at batch 1, accuracy 99.3% → 99.2%": the first exit's
    fraction (and each later exit's, for several), the measured batch-1 speed-up, and test accuracy of the
    original (``accuracy_before``; None: left out) and of the exit model."""
    exits = len(section["after"])
    leave = ", ".join(f"{section['fractions'][i]:.0%} {'of images ' if i == 0 else ''}leave {_exit_name(section, i)}"
                      for i in range(exits))
    parts = [leave]
    speedup = section.get("speedup_batch1")
    if speedup:  # measured: an exit model can be slower (its heads cost more than the layers it skips)
        parts.append(f"{speedup:.1f}x faster at batch 1" if speedup >= 1 else f"{1 / speedup:.1f}x slower at batch 1")
    accuracy = f"accuracy {accuracy_before:.1%} → {section['overall']:.1%}" if accuracy_before is not None \
        else f"accuracy {section['overall']:.1%}"
    return f"{parts[0]}: " + ", ".join(parts[1:] + [accuracy])


def exit_lines(section: dict) -> list[str]:
    """The terminal's lines: per exit the fraction leaving, their accuracy and the MACs of leaving there;
    overall accuracy, mean MACs against the full model's, and batch-1 latency of both."""
    lines = [f"early exits ({section['criterion']} thresholds {', '.join(f'{t:.3f}' for t in section['thresholds'])}) "
             f"on the {section['split']} split ({section['examples']:,} examples):"]
    for i, (f, a, m) in enumerate(zip(section["fractions"], section["accuracy"], section["macs"])):
        acc = "-" if a is None else f"{a:.2%}"
        lines.append(f"  leave {_exit_name(section, i):<16s} {f:>7.1%}  accuracy {acc:>7s}  MACs {m:>12,}")
    mean, full = section["mean_macs"], section.get("full_macs")
    against = f" vs the original's {full:,} ({full / mean:.2f}x fewer)" if full and mean else ""
    lines.append(f"  overall accuracy {section['overall']:.2%}; mean MACs per sample {mean:,.0f}{against}")
    if section.get("speedup_batch1"):
        lines.append(f"  batch 1 ({section['batch1_examples']} test images one at a time, {section['threads']} "
                     f"threads): {section['batch1_ms_full']:.3f} ms -> {section['batch1_ms_exits']:.3f} ms per image "
                     f"({_times(section['speedup_batch1'])})")
    if section.get("speedup_batch"):
        lines.append(f"  batch {section['batch']} ({section['batches']} batches of test images): "
                     f"{section['batch_ms_full']:.2f} ms -> {section['batch_ms_exits']:.2f} ms per batch "
                     f"({_times(section['speedup_batch'])})")
    return lines


def _times(speedup: float) -> str:
    return f"{speedup:.2f}x faster" if speedup >= 1 else f"{1 / speedup:.2f}x slower"
