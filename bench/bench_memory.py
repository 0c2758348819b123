"""Benchmark: peak memory of one compression run on a ~100M-parameter model, as a ratio to the model's bytes.

    python bench/bench_memory.py [--explain] [--json out.json] [--keep DIR]

What a new user runs, measured in a fresh process: ``python main.py compress MODEL.pt --arch
bench.models:mlp_100m --input-shape 8,256 --recipe R --out OUT`` with the recipe prune 90% + 5-bit
k-means + Huffman (probe inputs, no data set). The child first runs the same command on a tiny model, so
every module the command imports is loaded and every kernel compiled; that is the import baseline. It then
resets the kernel's peak-RSS mark (``/proc/self/clear_refs``), runs the command on the 100M model, and
reads the peak (``VmHWM``). Reported: (peak - baseline) / model bytes (float32 parameters), goal at most 3x.
The model is loaded inside the measured run, so the original counts against the budget too.

``--explain`` also samples RSS every 5 ms and prints the highest RSS seen in each progress stage.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RECIPE = """
name: memory-bench
steps:
  - {kind: prune_magnitude, sparsity: 0.9}
  - {kind: quantize, method: kmeans, bits: 5}
  - {kind: encode, huffman: true}
"""
SHAPE = "8,256"


def status_bytes(key: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    raise KeyError(key)


def child(model_path: str, tiny_path: str, recipe: str, out: str, explain: bool) -> dict:
    sys.path.insert(0, str(ROOT))
    from core.cli import main as cli

    common = ["--input-shape", SHAPE, "--recipe", recipe, "--quiet"]
    assert cli(["compress", tiny_path, "--arch", "bench.models:mlp_tiny", "--out", out + "-tiny", *common]) == 0
    baseline = status_bytes("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # resets VmHWM to the current RSS
    stages: dict[str, int] = {}
    current = ["load"]
    done = threading.Event()
    if explain:
        import core.progress as progress

        original_run = progress.run

        def run(task, on_progress=None, should_cancel=None):
            def note(p):
                key = f"{p.stage}: {p.message}"
                current[0] = key
                if on_progress:
                    on_progress(p)
            return original_run(task, note, should_cancel)
        progress.run = run

        def sample():
            while not done.is_set():
                stages[current[0]] = max(stages.get(current[0], 0), status_bytes("VmRSS"))
                time.sleep(0.005)
        threading.Thread(target=sample, daemon=True).start()
    start = time.perf_counter()
    status = cli(["compress", model_path, "--arch", "bench.models:mlp_100m", "--out", out, *common])
    seconds = time.perf_counter() - start
    done.set()
    assert status == 0
    peak = status_bytes("VmHWM")
    report = json.loads((Path(out) / "report.json").read_text())
    return {"baseline_bytes": baseline, "peak_bytes": peak, "seconds": seconds,
            "compressed_bytes": report["compressed_bytes"], "original_bytes": report["original_bytes"],
            "fidelity": report["metrics"]["after"].get("fidelity"),
            "stages": {k: v - baseline for k, v in stages.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--explain", action="store_true", help="print the highest RSS in each progress stage")
    parser.add_argument("--json", help="write the results here too")
    parser.add_argument("--keep", help="folder for the model files (default: a temporary folder)")
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(*args.child, args.explain)))
        return

    import torch

    sys.path.insert(0, str(ROOT))
    from bench.models import mlp_100m, mlp_tiny

    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(args.keep or scratch)
        folder.mkdir(parents=True, exist_ok=True)
        model_path, tiny_path, recipe = folder / "mlp_100m.pt", folder / "mlp_tiny.pt", folder / "recipe.yaml"
        model = mlp_100m()
        params = sum(p.numel() for p in model.parameters())
        model_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
        if not model_path.exists():
            torch.save(model.state_dict(), model_path)
        del model
        torch.save(mlp_tiny().state_dict(), tiny_path)
        recipe.write_text(RECIPE)
        command = [sys.executable, str(Path(__file__).resolve()), "--child", str(model_path), str(tiny_path),
                   str(recipe), str(folder / "out")] + (["--explain"] if args.explain else [])
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, env={**os.environ,
                                                                                       "PYTHONPATH": str(ROOT)})
        if done.returncode:
            sys.exit(f"the compression run failed:\n{done.stderr}")
        measured = json.loads(done.stdout.strip().splitlines()[-1])
    growth = measured["peak_bytes"] - measured["baseline_bytes"]
    result = {"command": "python bench/bench_memory.py " + " ".join(a for a in sys.argv[1:] if a != "--child"),
              "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}",
              "params": params, "model_bytes": model_bytes, **measured, "growth_bytes": growth,
              "ratio": growth / model_bytes}
    print(f"model: {params:,} parameters, {model_bytes / 1e6:.0f} MB of float32 ({result['machine']})")
    print(f"import baseline {measured['baseline_bytes'] / 1e6:.0f} MB; peak {measured['peak_bytes'] / 1e6:.0f} MB "
          f"during the run ({measured['seconds']:.1f} s)")
    print(f"peak above the baseline / model bytes: {result['ratio']:.2f}x (goal at most 3x)")
    print(f"file: {measured['original_bytes']:,} -> {measured['compressed_bytes']:,} bytes; "
          f"fidelity {measured['fidelity']}")
    for stage, value in measured["stages"].items():
        print(f"  {value / model_bytes:5.2f}x  {stage}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
