"""Benchmark: BranchyNet's B-LeNet on the zoo LeNet-5 (issue 16), against the full model, on this machine.

    python bench/bench_early_exit.py                      # compress with the recipe, then measure
    python bench/bench_early_exit.py --psz FILE.psz       # measure a file made before

Compresses ``zoo:lenet5`` with ``resources/recipes/branchynet-lenet5.yaml`` (one exit after conv1), writes the
``.psz``, then measures the file as loaded back: the fraction of test images leaving at each exit, accuracy
per exit and overall, mean MACs per sample (each sample pays the segments and heads it ran), and latency
at batch 1 (each of 1,000 test images on its own: the mean per image) and at batch 256 (10 batches), eager
and TorchScript, against the full model. Latency is the median of ``--repeats`` passes, the two models
alternating within one run; the ratio is full / exits. Finally ``python main.py inspect FILE --data mnist``
runs in its own process and its test accuracy must be the one measured here.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from core.analysis.cost import count_macs  # noqa: E402
from core.eval.data import load_dataset, to_float  # noqa: E402
from core.eval.exits import compare_ms, exit_macs, exit_outputs, exit_stats  # noqa: E402
from core.io import load_model  # noqa: E402
from core.pipeline.apply import apply_recipe  # noqa: E402
from core.progress import run  # noqa: E402
from core.recipe import Recipe  # noqa: E402

RECIPE = ROOT / "resources" / "recipes" / "branchynet-lenet5.yaml"


def scripted(model):
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        return torch.jit.script(model)


class FirstExitPath(torch.nn.Module):
    """Only what a sample leaving at the first exit must compute: the first segment and the first head."""

    def __init__(self, model) -> None:
        super().__init__()
        self.segment, self.head = model.segments()[0], model.exits[0]

    def forward(self, x):
        return self.head(self.segment(x))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--psz", help="a file made before (default: compress now with the recipe)")
    parser.add_argument("--out", default=str(Path(tempfile.gettempdir()) / "branchynet-lenet5.psz"))
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    data = load_dataset("mnist")
    original = load_model("zoo:lenet5").module.eval()
    path = Path(args.psz or args.out)
    if not args.psz:
        started = time.perf_counter()
        result = run(apply_recipe(Recipe.from_file(RECIPE), load_model("zoo:lenet5"), data))
        path.write_bytes(result.file_bytes)
        print(f"compressed in {time.perf_counter() - started:.0f} s: {path} ({len(result.file_bytes):,} bytes)")
        print("\n".join(result.notes))
    model = load_model(str(path)).module.eval()
    arrays = exit_outputs(model, data.test)
    example = to_float(data.test.images[:1])
    macs = exit_macs(model, example)
    stats = exit_stats(arrays, model.thresholds, model.criterion, macs)
    full_acc = float((arrays.predictions[-1] == arrays.labels).mean())
    with torch.no_grad():
        original_acc = float(torch.cat([original(x).argmax(1) == y for x, y in data.test.batches(1000)]).float().mean())
    full_macs = count_macs(original, example).total
    print(f"\nthreads: {torch.get_num_threads()}, load average {os.getloadavg()[0]:.2f}; thresholds {model.thresholds} ({model.criterion})")
    print(f"{'exit':<10} {'leave':>7} {'accuracy':>9} {'MACs':>10}")
    for i, (f, a, m) in enumerate(zip(stats.fractions, stats.accuracy, macs)):
        name = f"exit {i + 1}" if i < len(macs) - 1 else "final"
        print(f"{name:<10} {f:>7.1%} {a:>9.2%} {m:>10,}")
    print(f"overall accuracy {stats.overall:.2%} (the full model {original_acc:.2%}; "
          f"its backbone in the file {full_acc:.2%}); mean MACs {stats.mean_macs:,.0f} vs {full_macs:,} "
          f"({full_macs / stats.mean_macs:.2f}x fewer)")

    images = [to_float(data.test.images[i:i + 1]) for i in range(1000)]
    batches = [x for x, _ in data.test.batches(256, limit=2560)]
    eager = {"full": original, "exits": model}
    script = {"full": scripted(original), "exits": scripted(model)}
    print(f"\n{'latency (ms)':<36} {'full':>8} {'exits':>8} {'speed-up':>9}")
    # the ceiling at batch 1: the first exit's path alone (its segment and head, no scoring, no routing), which
    # even a sample that leaves there must run; per-operator time, not MACs, bounds the speed-up
    path_only = FirstExitPath(model)
    for label, models, inputs in [("eager, batch 1", eager, images), ("TorchScript, batch 1", script, images),
                                  ("eager, batch 1, exit 1's path alone", {"full": original, "exits": path_only},
                                   images),
                                  ("eager, batch 256", eager, batches),
                                  ("TorchScript, batch 256", script, batches)]:
        t = compare_ms(models, inputs, args.repeats)
        print(f"{label:<36} {t['full']:>8.3f} {t['exits']:>8.3f} {t['full'] / t['exits']:>8.2f}x")

    again = exit_stats(exit_outputs(load_model(str(path)).module, data.test), model.thresholds, model.criterion, macs)
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "inspect.json"
        done = subprocess.run([sys.executable, str(ROOT / "main.py"), "inspect", str(path), "--data", "mnist",
                               "--json", str(report), "--quiet"], capture_output=True, text=True)
        inspected = json.loads(report.read_text())["metrics"]["test"]["accuracy"] if done.returncode == 0 else None
    print(f"\nreloaded: the same figures {again == stats}; inspect's test accuracy "
          f"{inspected if inspected is None else f'{inspected:.2%}'} "
          f"({'the same' if inspected is not None and abs(inspected - stats.overall) < 1e-9 else 'DIFFERENT'})")
    print(f"load average at the end {os.getloadavg()[0]:.2f}")
    if done.returncode:
        print(done.stderr[-400:])


if __name__ == "__main__":
    main()
