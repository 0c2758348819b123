"""Benchmark: latency of the int8 model and of the structurally pruned model against the original.

    python bench/bench_latency.py
    python bench/bench_latency.py --back-to-back zoo:lenet5 [zoo:lenet300 ...]
    python bench/bench_latency.py --contention zoo:lenet300

For LeNet-5 (MNIST) and the residual CNN (Fashion-MNIST or, without it, random inputs): the original float
model, an int8 model from static post-training quantization (``torch.ao`` x86 kernels, calibrated on 8
batches), and a copy with half of the output channels/neurons of every prunable layer removed through
Torch-Pruning (no fine-tuning: this measures speed, not accuracy). Each figure is the studio's and
``inspect``'s own measurement (:func:`core.eval.evaluate.latency`: warm-up until the calls stop getting
faster, then timed batches of 256 until the median's 95% confidence interval is within 5%, or the caps),
printed with its interval, p10-p90 spread and "noisy" mark; ratios are original / variant, all in one run.

``--back-to-back MODEL...``: ``python main.py inspect MODEL --json`` twice in a row, each in its own process,
as a user would run it; prints both figures and whether each median lies inside the other's interval.

``--contention MODEL``: the model's latency on torch's thread count and on one thread, first as the machine
is, then with one CPU-bound process per core running beside it (started and stopped here): what other
programs on the machine do to the figure, and what the noisy mark says about it.
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from core.eval.evaluate import latency  # noqa: E402
from core.methods import int8  # noqa: E402
from core.eval.data import dataset_available, load_dataset  # noqa: E402
from core.io import load_model  # noqa: E402
from core.progress import run  # noqa: E402
from core.methods.structured import prune_structured  # noqa: E402
from core.report.reports import latency_figure, latency_spread  # noqa: E402


def measured(label: str, model, x):
    """The measurement of one model, printed in full; returns it."""
    result = run(latency(model, x))
    print(f"  {label}: {latency_figure(result)} ({latency_spread(result)})")
    return result


ROOT = Path(__file__).resolve().parent.parent


def back_to_back(models: list[str]) -> None:
    """Two ``inspect`` runs of each model, one after the other, each in a fresh process."""
    from core.eval.evaluate import Latency

    for model in models:
        figures = []
        with tempfile.TemporaryDirectory() as folder:
            for i in range(2):
                report = Path(folder) / f"{i}.json"
                subprocess.run([sys.executable, str(ROOT / "main.py"), "inspect", model, "--quiet",
                                "--json", str(report)], check=True, stdout=subprocess.DEVNULL, cwd=ROOT)
                figures.append(Latency(**json.loads(report.read_text())["metrics"]["latency"]))
        a, b = figures
        for i, lat in enumerate(figures, 1):
            print(f"{model} run {i}: {latency_figure(lat)} ({latency_spread(lat)})")
        inside = (b.ci_low_ms <= a.median_ms <= b.ci_high_ms, a.ci_low_ms <= b.median_ms <= a.ci_high_ms)
        print(f"{model}: run 1's median inside run 2's CI: {inside[0]}; run 2's inside run 1's: {inside[1]}; "
              f"ratio of medians {max(a.median_ms, b.median_ms) / min(a.median_ms, b.median_ms):.2f}")


def contention(model: str) -> None:
    """Latency on all threads and on one, with and without a CPU-bound process per core beside it."""
    import os

    loaded = load_model(model)
    data = load_dataset(loaded.dataset) if dataset_available(loaded.dataset) else load_dataset("mnist")
    from core.analysis.inspection import latency_inputs

    x = latency_inputs(loaded, data)
    threads = torch.get_num_threads()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    for burners in (0, cores):
        procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(burners)]
        try:
            print(f"{model}, {burners} CPU-bound processes beside it, load average {os.getloadavg()[0]:.1f}:")
            for n in (threads, 1):
                torch.set_num_threads(n)
                measured(f"{n} thread{'s' if n != 1 else ''}", loaded.module, x)
        finally:
            for proc in procs:
                proc.kill()
                proc.wait()
    torch.set_num_threads(threads)


def main() -> None:
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch 256")
    for name in ("lenet5", "resnet8-fashion"):
        loaded = load_model(f"zoo:{name}")
        data = load_dataset(loaded.dataset) if dataset_available(loaded.dataset) else load_dataset("mnist")
        x = next(data.test.batches(256))[0]
        original = loaded.module
        quantized = run(int8.convert(original, "static", x[:2], data, 8))
        pruned = copy.deepcopy(original)
        units = [n for n, m in pruned.named_modules() if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d))]
        prune_structured(pruned, x[:2], {n: 0.5 for n in units})
        params = (sum(p.numel() for p in original.parameters()), sum(p.numel() for p in pruned.parameters()))
        print(f"{name}:")
        base = measured("original", original, x).median_ms
        q = measured("int8 static", quantized, x).median_ms
        p = measured("half the channels removed", pruned, x).median_ms
        print(f"  int8 static {base / q:.2f}x faster; half the channels removed {base / p:.2f}x faster "
              f"({params[1]:,} of {params[0]:,} parameters)")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--back-to-back"]:
        back_to_back(sys.argv[2:] or ["zoo:lenet5"])
    elif sys.argv[1:2] == ["--contention"]:
        contention((sys.argv[2:] or ["zoo:lenet300"])[0])
    else:
        main()
