"""Benchmark: the compressed-file loader against 100,000+ hostile headers (valid checksums).

    python bench/fuzz_psz.py [--cases 100000] [--seed 1] [--workers 2] [--timeout 20]

Mutants are made as in ``tests/psz_mutants.py`` (the suite's fuzz test runs 2,000 of them). Each is
loaded by ``load_model`` in a worker process, which reports every case's outcome, time and its peak RSS
(``getrusage``). Counted: ``loaded``, refused with Prunescope's own error (by class), ``crash`` (any other
exception, or a message of more than one line), ``hang`` (no answer within ``--timeout`` seconds: the
worker is killed and restarted after that case), ``big`` (the worker's peak RSS rose above 2 GB). Goal:
zero crashes, hangs and big allocations. It also times the refusal of a 1 KB YAML alias bomb.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import resource
import selectors
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

BIG = 2 << 30


def worker(bases_dir: Path, seed: int, start: int, stop: int) -> None:
    """Load mutants ``start`` .. ``stop - 1``, one JSON line per case on stdout."""
    import warnings

    warnings.simplefilter("ignore")
    from core.errors import PrunescopeError
    from core.io import load_model
    from tests.psz_mutants import make_bases, mutants

    bases = make_bases(bases_dir)
    folder = Path(tempfile.mkdtemp(prefix="fuzz-"))
    path = folder / "mutant.psz"
    for i, name, data in mutants(bases, seed, stop, start):
        path.write_bytes(data)
        began = time.perf_counter()
        try:
            load_model(path)
            outcome = "loaded"
        except PrunescopeError as exc:
            outcome = type(exc).__name__ if "\n" not in str(exc) else f"crash: two lines: {str(exc)[:150]}"
        except Exception as exc:  # noqa: BLE001 - what the benchmark counts
            outcome = f"crash: {type(exc).__name__}: {str(exc)[:150]}"
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        print(json.dumps({"i": i, "base": name, "outcome": outcome, "ms": (time.perf_counter() - began) * 1e3,
                          "rss": rss}), flush=True)


def run_range(bases_dir: Path, seed: int, start: int, stop: int, timeout: float, results: list) -> None:
    """Run one worker over a range, restarting it after a case that hangs."""
    while start < stop:
        proc = subprocess.Popen([sys.executable, __file__, "--worker", str(bases_dir), str(seed), str(start),
                                 str(stop)], stdout=subprocess.PIPE, text=True, cwd=ROOT)
        selector = selectors.DefaultSelector()
        selector.register(proc.stdout, selectors.EVENT_READ)
        deadline = time.monotonic() + timeout + 60  # the first case also pays for imports
        while start < stop:
            if not selector.select(max(0.0, deadline - time.monotonic())):
                results.append({"i": start, "outcome": "hang", "ms": timeout * 1e3, "rss": 0})
                proc.kill()
                start += 1
                break
            line = proc.stdout.readline()
            if not line:  # the worker died: the case it was on killed it
                results.append({"i": start, "outcome": f"crash: worker exited {proc.wait()}", "ms": 0, "rss": 0})
                start += 1
                break
            record = json.loads(line)
            results.append(record)
            start = record["i"] + 1
            deadline = time.monotonic() + timeout
        proc.stdout.close()
        proc.wait()


def alias_bomb_seconds() -> tuple[int, float, str]:
    """(bytes, seconds to refuse, the message) for a 'billion laughs' recipe of about 1 KB."""
    from core.errors import PrunescopeError
    from core.recipe import Recipe

    lol = '"' + "lol" * 20 + '"'
    lines = [f"a: &a [{','.join([lol] * 9)}]"]  # 9**10 copies of 60 characters when expanded: 200 GB
    for i in range(1, 10):
        prev, name = chr(96 + i), chr(97 + i)
        lines.append(f"{name}: &{name} [{','.join(['*' + prev] * 9)}]")
    text = "\n".join(lines) + "\nsteps: []\n"
    began = time.perf_counter()
    try:
        Recipe.from_text(text)
        message = "accepted"
    except PrunescopeError as exc:
        message = str(exc)
    return len(text.encode()), time.perf_counter() - began, message


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        worker(Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]))
        return 0
    parser = argparse.ArgumentParser()
    parser.add_argument("--cases", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=20.0, help="seconds a case may take before it is a hang")
    args = parser.parse_args()
    from tests.psz_mutants import make_bases

    bases_dir = Path(tempfile.mkdtemp(prefix="fuzz-bases-"))
    make_bases(bases_dir)
    import threading

    results: list = []
    chunk = -(-args.cases // args.workers)
    began = time.perf_counter()
    threads = [threading.Thread(target=run_range, args=(bases_dir, args.seed, s, min(s + chunk, args.cases),
                                                        args.timeout, results))
               for s in range(0, args.cases, chunk)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seconds = time.perf_counter() - began
    outcomes = collections.Counter("crash" if r["outcome"].startswith("crash") else r["outcome"] for r in results)
    big = [r for r in results if r["rss"] > BIG]
    slowest = max(results, key=lambda r: r["ms"])
    crashes = [r for r in results if r["outcome"].startswith("crash") or r["outcome"] == "hang"]
    print(f"fuzz_psz: {len(results):,} mutants (seed {args.seed}) in {seconds:.0f} s on {args.workers} workers")
    for outcome, n in outcomes.most_common():
        print(f"  {outcome:24s} {n:7,}")
    print(f"  crashes {outcomes['crash']}, hangs {outcomes['hang']}, peak RSS over 2 GB {len(big)}; worker peak "
          f"RSS {max(r['rss'] for r in results) / 2**20:.0f} MB; slowest case {slowest['ms']:.0f} ms "
          f"(mutant {slowest['i']}); median {sorted(r['ms'] for r in results)[len(results) // 2]:.1f} ms")
    for r in crashes[:20]:
        print(f"  ! mutant {r['i']}: {r['outcome']}")
    size, took, message = alias_bomb_seconds()
    print(f"alias bomb: {size} bytes refused in {took * 1e3:.2f} ms ({message})")
    return 1 if crashes or big else 0


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    sys.exit(main())
