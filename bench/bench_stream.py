"""Benchmark: streaming inspection of a weights file too big to hold twice: peak memory and throughput.

    python bench/bench_stream.py [--params 1e9] [--dtype fp16|bf16|float32] [--dir /tmp] [--keep] [--json F]

Writes a synthetic transformer-like ``.safetensors`` file (an embedding 50,000 x 2048, then blocks of four
2048x2048 attention matrices, an 8192x2048 and a 2048x8192 MLP matrix and two norms, as many blocks as make
``--params``), tensor by tensor: the 8-byte header length, the JSON header, then each tensor's bytes,
generated a slice of rows at a time, so the file is never in memory whole. Then, in a fresh process:

1. the import baseline: the compiled kernels loaded (:func:`core.analysis.stats.warm_up`) and the same
   inspection run on a tiny safetensors file, so every module is imported, then the RSS (``VmRSS``);
2. a plain sequential read of the big file (16 MB ``readinto`` a reused buffer), timed;
3. the kernel's peak-RSS mark reset (``/proc/self/clear_refs``), then ``load_model`` + ``inspect_model`` on
   the big file (what ``python main.py inspect FILE`` runs), timed, and its peak RSS (``VmHWM``).

The page cache cannot be dropped without root, so the parent reads the file once first: both timings are
of a warm cache (the output says so). Goals: peak above the baseline at most 1.5x the largest tensor's bytes,
and streamed throughput at least 50% of the plain read's. The file is deleted afterwards unless ``--keep``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench.bench_memory import status_bytes  # noqa: E402  (after the path it needs)
CODES = {"fp16": "F16", "bf16": "BF16", "float32": "F32"}
VOCAB, WIDTH, FFN = 50_000, 2048, 8192
READ_BUFFER = 16 << 20
SLICE_ROWS = 1024  # rows generated and written at a time


def layout(params: float) -> list[tuple[str, tuple[int, ...]]]:
    """Tensor names and shapes of a transformer-like model of about ``params`` parameters."""
    block = [("attn.q.weight", (WIDTH, WIDTH)), ("attn.k.weight", (WIDTH, WIDTH)), ("attn.v.weight", (WIDTH, WIDTH)),
             ("attn.o.weight", (WIDTH, WIDTH)), ("mlp.up.weight", (FFN, WIDTH)), ("mlp.down.weight", (WIDTH, FFN)),
             ("norm1.weight", (WIDTH,)), ("norm2.weight", (WIDTH,))]
    per_block = sum(math.prod(s) for _, s in block)
    blocks = max(1, round((params - VOCAB * WIDTH) / per_block))
    tensors = [("embed.weight", (VOCAB, WIDTH))]
    tensors += [(f"layers.{i}.{name}", shape) for i in range(blocks) for name, shape in block]
    return tensors + [("norm.weight", (WIDTH,))]


def write_safetensors(path: Path, tensors: list[tuple[str, tuple[int, ...]]], dtype: str) -> None:
    """A safetensors file of random weights (std 0.02, a few exact zeros), written a slice of rows at a time."""
    import torch

    torch_dtype = {"fp16": torch.float16, "bf16": torch.bfloat16, "float32": torch.float32}[dtype]
    size = torch_dtype.itemsize
    header, offset = {"__metadata__": {"format": "pt", "made_by": "bench/bench_stream.py"}}, 0
    for name, shape in tensors:
        header[name] = {"dtype": CODES[dtype], "shape": list(shape), "data_offsets": [offset, offset + math.prod(shape) * size]}
        offset += math.prod(shape) * size
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)  # the data starts 8-aligned, as the safetensors library writes it
    generator = torch.Generator().manual_seed(0)
    partial = path.with_name(path.name + ".part")
    with open(partial, "wb") as f:
        f.write(len(raw).to_bytes(8, "little") + raw)
        for _, shape in tensors:
            rows, per_row = shape[0], math.prod(shape[1:])
            for row in range(0, rows, SLICE_ROWS):
                n = min(SLICE_ROWS, rows - row)
                values = torch.randn(n * per_row, generator=generator) * 0.02
                values[::997] = 0.0
                f.write(values.to(torch_dtype).view(torch.uint8).numpy().data)
    partial.replace(path)


def child(big: str, tiny: str) -> dict:
    from core.analysis.inspection import inspect_model
    from core.analysis.stats import warm_up
    from core.io import load_model
    from core.progress import run

    warm_up()  # the compiled kernels, loaded (as the studio does before its window shows)
    run(inspect_model(load_model(tiny)))  # imports every module the inspection uses: the baseline
    baseline = status_bytes("VmRSS")
    buffer = bytearray(READ_BUFFER)
    start = time.perf_counter()
    with open(big, "rb", buffering=0) as f:
        read = 0
        while n := f.readinto(buffer):
            read += n
    plain_seconds = time.perf_counter() - start
    del buffer
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # resets VmHWM to the current RSS
    reset = status_bytes("VmRSS")
    start = time.perf_counter()
    result = run(inspect_model(load_model(big)))
    streamed_seconds = time.perf_counter() - start
    peak = status_bytes("VmHWM")
    return {"baseline_bytes": baseline, "reset_bytes": reset, "peak_bytes": peak, "read_bytes": read,
            "plain_seconds": plain_seconds, "streamed_seconds": streamed_seconds,
            "layers": len(result.inventory.layers), "params": result.inventory.params}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=float, default=1e9, help="parameters of the synthetic model (1e9)")
    parser.add_argument("--dtype", choices=list(CODES), default="fp16")
    parser.add_argument("--dir", default="/tmp", help="where the file is written (default /tmp)")
    parser.add_argument("--keep", action="store_true", help="keep the file (default: deleted afterwards)")
    parser.add_argument("--json", help="write the results here too")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(*args.child)))
        return

    import torch

    tensors = layout(args.params)
    big = Path(args.dir) / f"bench-stream-{args.params:.0e}-{args.dtype}.safetensors"
    tiny = Path(args.dir) / f"bench-stream-tiny-{args.dtype}.safetensors"
    try:
        start = time.perf_counter()
        if not big.exists():
            write_safetensors(big, tensors, args.dtype)
        written = time.perf_counter() - start
        write_safetensors(tiny, [("a.weight", (64, 64)), ("a.bias", (64,))], args.dtype)
        start = time.perf_counter()
        with open(big, "rb", buffering=0) as f:  # warms the page cache: both timings below are of a warm cache
            buffer = bytearray(READ_BUFFER)
            while f.readinto(buffer):
                pass
        first_read = time.perf_counter() - start
        done = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--child", str(big), str(tiny)],
                              cwd=ROOT, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
        if done.returncode:
            sys.exit(f"the streamed inspection failed:\n{done.stderr}")
        measured = json.loads(done.stdout.strip().splitlines()[-1])
        load = os.getloadavg()[0]  # other programs on the cores slow the counting threads more than one read
        file_bytes = big.stat().st_size
    finally:
        tiny.unlink(missing_ok=True)
        if not args.keep:
            big.unlink(missing_ok=True)
    size = {"fp16": 2, "bf16": 2, "float32": 4}[args.dtype]
    largest = max(math.prod(s) for _, s in tensors) * size
    growth = measured["peak_bytes"] - measured["baseline_bytes"]
    plain = file_bytes / measured["plain_seconds"]
    streamed = file_bytes / measured["streamed_seconds"]
    cores = len(os.sched_getaffinity(0))
    result = {"command": "python bench/bench_stream.py " + " ".join(sys.argv[1:]),
              "date": datetime.date.today().isoformat(),
              "machine": f"{platform.machine()}, {cores} cores usable ({os.cpu_count()} CPUs), torch "
                         f"{torch.__version__}, {platform.python_version()}",
              "dtype": args.dtype, "tensors": len(tensors), "file_bytes": file_bytes, "largest_tensor_bytes": largest,
              "write_seconds": written, "first_read_seconds": first_read, **measured, "growth_bytes": growth,
              "growth_over_largest": growth / largest, "plain_bytes_per_s": plain, "streamed_bytes_per_s": streamed,
              "throughput_ratio": streamed / plain, "cache": "warm (read once before both timings)",
              "load_average_1min": load}
    print(f"file: {measured['params']:,} parameters ({args.dtype}) in {len(tensors)} tensors, {file_bytes:,} bytes; "
          f"largest tensor {largest:,} bytes ({result['machine']}, {result['date']})")
    print(f"written in {written:.1f} s; first read {first_read:.1f} s; page cache warm for both timings below; "
          f"load average {load:.2f} just after the measurement")
    print(f"import baseline {measured['baseline_bytes'] / 1e6:.0f} MB; peak {measured['peak_bytes'] / 1e6:.0f} MB "
          f"during the streamed inspection ({measured['layers']} layers)")
    ok = result["growth_over_largest"] <= 1.5
    print(f"peak above the baseline: {growth / 1e6:.0f} MB = {result['growth_over_largest']:.2f}x the largest tensor "
          f"(goal at most 1.5x: {'met' if ok else 'NOT met'})")
    ok = result["throughput_ratio"] >= 0.5
    print(f"throughput: streamed {streamed / 1e9:.2f} GB/s ({measured['streamed_seconds']:.1f} s) vs plain sequential "
          f"read {plain / 1e9:.2f} GB/s ({measured['plain_seconds']:.1f} s) = {result['throughput_ratio']:.0%} "
          f"(goal at least 50%: {'met' if ok else 'NOT met'})")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
