"""Benchmark: the studio's responsiveness on a 25M-parameter model.

    QT_QPA_PLATFORM=offscreen python bench/bench_studio.py [--moves 60] [--epochs 1] [--explain]

The model is an MLP on MNIST with 24.2M parameters (784-4096-4096-1024-10; bench/models.py), saved as a
state_dict and opened in the real main window through the state_dict + architecture loader, as a user
would open it. Two measures, both in one run:

1. Slider to redraw: the time from moving the recipe panel's sparsity slider (one step, as a drag does) to
   the repainted window: the draft updated, the preview's kept % and estimated bytes recomputed, the
   threshold line moved on the selected layer's histogram, and the histogram and recipe panel painted.
   Measured for the per-layer slider and the global-threshold slider; the median and the worst of
   ``--moves`` moves each.
2. UI-thread stalls: a 2 ms timer on the UI thread records when it fires while the studio (a) measures the
   model's statistics in the background (weights, activations over the validation images, accuracy) and
   (b) fine-tunes it (``--epochs``, through Apply with a fine-tune recipe); the longest gap between ticks,
   minus the 2 ms period, is the longest stall. That includes everything the UI thread does meanwhile:
   applying partial results, redrawing the progress bar and the plots. Stalls are also given per stage of
   the background task: ``load`` (reading the file, then drawing the model for the first time),
   ``compress`` (pruning, k-means, encoding), and the statistics stages (``inventory``, ``weights``,
   ``activations``, ``evaluate``, ``latency``), which run on opening and again for each new variant.
   The studio finishes preparing its engine in the background in the first second or so after launch
   (torch._dynamo imports; tasks start once it is done); the stalls of that period are reported apart,
   and the model is opened after it.

``--explain`` samples every thread's Python stack each millisecond and prints, for the longest stalls,
what the threads were doing and how the UI thread spent the time (on a CPU, waiting for one, blocked:
from /proc/self/task/<id>/schedstat). The sampling itself takes a share of the CPU: its stall figures are
for diagnosis, not for the record.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402
from PySide6.QtCore import QElapsedTimer, QSettings, QTimer  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402


def wait_until(app: QApplication, condition, timeout_s: float = 600.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("the studio did not finish in time")
        app.processEvents()
        time.sleep(0.002)


class StallMeter:
    """A fast UI-thread timer; the longest gap between its ticks is the UI thread's longest stall."""

    def __init__(self, period_ms: int = 2) -> None:
        self.period_ms = period_ms
        self.timer = QTimer()
        self.timer.setInterval(period_ms)
        self.timer.timeout.connect(self._tick)
        self.clock = QElapsedTimer()
        self.gaps: list[float] = []
        self.stages: list[str] = []  # the background task's stage when each gap ended
        self.stage = ""
        self._last = None
        self.long_gaps: list[tuple[float, float]] = []

    def on_progress(self, progress) -> None:
        self.stage = progress.stage

    def _tick(self) -> None:
        now = self.clock.nsecsElapsed() / 1e6
        if self._last is not None:
            self.gaps.append(now - self._last)
            self.stages.append(self.stage)
            if now - self._last > 25:  # for --explain: when (perf_counter) the long gaps were
                self.long_gaps.append((time.perf_counter() - (now - self._last) / 1e3, time.perf_counter()))
        self._last = now

    def __enter__(self):
        self.gaps, self.stages, self.stage, self._last = [], [], "", None
        self.clock.start()
        self.timer.start()
        return self

    def __exit__(self, *exc) -> None:
        self.timer.stop()

    def longest_stall_ms(self, stage: str | None = None) -> float:
        gaps = [g for g, s in zip(self.gaps, self.stages) if stage is None or s == stage]
        return max(0.0, max(gaps, default=0.0) - self.period_ms)

    def by_stage(self) -> dict[str, float]:
        """The longest stall in each stage the background task reported (in the order they came)."""
        out: dict[str, float] = {}
        for gap, stage in zip(self.gaps, self.stages):
            out[stage or "(before the first progress)"] = max(out.get(stage or "(before the first progress)", 0.0),
                                                              max(0.0, gap - self.period_ms))
        return out

    def p99_ms(self) -> float:
        gaps = sorted(self.gaps)
        return max(0.0, gaps[int(0.99 * (len(gaps) - 1))] - self.period_ms) if gaps else 0.0


class StackSampler:
    """``--explain``: samples the UI thread's Python stack every millisecond from another thread, so the
    longest stalls can be attributed to what the UI thread was doing (or waiting in) meanwhile."""

    def __init__(self) -> None:
        import threading
        self.thread_id = threading.get_ident()
        self.native_id = threading.get_native_id()
        self.sched: list[tuple[float, int, int]] = []
        self.samples: list[tuple[float, str, tuple[str, ...]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.clock0 = time.perf_counter()

    def _run(self) -> None:
        import threading
        me = threading.get_ident()
        schedstat = Path(f"/proc/self/task/{self.native_id}/schedstat")
        while not self._stop.is_set():
            frames = sys._current_frames()
            now = time.perf_counter()
            if schedstat.exists():  # the UI thread's time on a CPU and waiting for one, in ns (Linux)
                on_cpu, waiting = (int(x) for x in schedstat.read_text().split()[:2])
                self.sched.append((now, on_cpu, waiting))
            for ident, frame in frames.items():
                if ident == me:
                    continue
                stack = []
                while frame is not None and len(stack) < 12:
                    code = frame.f_code
                    stack.append(f"{Path(code.co_filename).name}:{frame.f_lineno} {code.co_name}")
                    frame = frame.f_back
                if ident == self.thread_id or "threading.py" not in stack[0]:  # idle pool threads: left out
                    self.samples.append((now, ("UI: " if ident == self.thread_id else "bg: ") + stack[0],
                                         tuple(stack)))
            time.sleep(0.001)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def report(self, windows: list[tuple[float, float]], top: int = 5) -> None:
        from collections import Counter
        for start, end in windows:
            inside = Counter((head, stack) for t, head, stack in self.samples if start <= t <= end)
            sched = [s for s in self.sched if start - 0.002 <= s[0] <= end + 0.002]
            split = ""
            if len(sched) >= 2:
                cpu, queued = (sched[-1][1] - sched[0][1]) / 1e6, (sched[-1][2] - sched[0][2]) / 1e6
                span = (sched[-1][0] - sched[0][0]) * 1e3
                split = (f" (UI thread over {span:.0f} ms: {cpu:.0f} ms on a CPU, {queued:.0f} ms waiting for one, "
                         f"{max(0.0, span - cpu - queued):.0f} ms blocked)")
            print(f"  stall of {(end - start) * 1e3:.0f} ms, {sum(inside.values())} samples{split}:")
            for (head, stack), n in inside.most_common(top):
                print(f"    {n:3d}x {head[:4]}" + " <- ".join(stack[:7]))


def slider_moves(app, window, slider, moves: int) -> list[float]:
    times = []
    low = 0.50
    for i in range(moves):
        value = low + 0.01 * (i % 45)  # one slider step at a time, as a drag produces
        start = time.perf_counter()
        slider.setValue(value)
        app.processEvents()  # queued work the move caused
        window.histogram.plot.repaint()  # synchronous paints of what changed
        window.recipe_panel.repaint()
        times.append((time.perf_counter() - start) * 1000)
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--moves", type=int, default=60)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--explain", action="store_true", help="print what the UI thread did in stalls over 25 ms")
    args = parser.parse_args()
    sampler = StackSampler() if args.explain else None
    if sampler:
        sampler.start()

    from bench.models import wide_mlp
    from gui.app import apply_style, create_window

    app = QApplication.instance() or QApplication(sys.argv)
    apply_style(app)
    with tempfile.TemporaryDirectory() as folder:
        model = wide_mlp()
        params = sum(p.numel() for p in model.parameters())
        path = Path(folder) / "wide_mlp.pt"
        torch.save(model.state_dict(), path)
        window = create_window(None, settings=QSettings(str(Path(folder) / "s.ini"), QSettings.Format.IniFormat))
        window.resize(1500, 950)
        window.show()
        session = window.session
        meter = StallMeter()
        from gui.workers import prepare_engine
        with meter:  # the rest of the engine (torch._dynamo) imports in the background at start-up
            wait_until(app, lambda: not prepare_engine().is_alive())
        startup_stall = meter.longest_stall_ms()
        session.runner.sig_progress.connect(meter.on_progress)
        start = time.perf_counter()
        with meter:
            session.open_model(str(path), "mnist", arch="bench.models:wide_mlp")
            wait_until(app, lambda: session.loaded is not None and not session.runner.busy
                       and session.measurements.test is not None)
        open_s = time.perf_counter() - start
        stats_stall, stats_p99, stats_ticks = meter.longest_stall_ms(), meter.p99_ms(), len(meter.gaps)
        stats_stages = meter.by_stage()

        window.select_layer("fc2")
        app.processEvents()
        draft = session.draft
        draft.set(prune_method="magnitude", scope="layer", quant_method="kmeans", bits=5, finetune_epochs=0)
        app.processEvents()
        layer_times = slider_moves(app, window, window.recipe_panel.layer_sparsity, args.moves)
        draft.set(scope="global")
        app.processEvents()
        global_times = slider_moves(app, window, window.recipe_panel.sparsity, args.moves)
        assert window.histogram.threshold_line.isVisible()

        # fine-tune in the background through Apply (no quantization: the epochs dominate)
        draft.set(prune_method="magnitude", scope="global", sparsity=0.5, quant_method="none",
                  finetune_epochs=args.epochs, huffman=False)
        app.processEvents()
        start = time.perf_counter()
        with meter:
            assert session.apply()
            wait_until(app, lambda: len(session.variants.variants) == 2 and not session.runner.busy, 3600)
        tune_s = time.perf_counter() - start
        tune_stall, tune_p99, tune_ticks = meter.longest_stall_ms(), meter.p99_ms(), len(meter.gaps)
        train_stall = meter.longest_stall_ms("train")
        tune_stages = meter.by_stage()
        session.variants.saved.update(v.id for v in session.variants.variants)
        window.confirm_close = lambda unsaved: True
        window.close()

    print(f"model: {params:,} parameters ({params * 4 / 1e6:.0f} MB float32), MNIST")
    for label, times in (("per-layer slider", layer_times), ("global slider", global_times)):
        print(f"{label} -> repainted histogram + preview: median {statistics.median(times):.1f} ms, "
              f"worst {max(times):.1f} ms over {len(times)} moves (goal: median <= 50 ms)")
    print(f"start-up, while the engine finishes importing in the background: longest UI stall "
          f"{startup_stall:.1f} ms (once per launch, before the model opens here)")
    print(f"opening + statistics in the background ({open_s:.1f} s, {stats_ticks} ticks): longest UI stall "
          f"{stats_stall:.1f} ms, 99th percentile {stats_p99:.1f} ms (goal <= 50 ms)")
    print(f"apply: prune + {args.epochs}-epoch fine-tune + encode + evaluate in the background ({tune_s:.1f} s, "
          f"{tune_ticks} ticks, until the new variant is current and re-measured): longest UI stall "
          f"{tune_stall:.1f} ms, 99th percentile {tune_p99:.1f} ms (goal <= 50 ms)")
    print(f"  of which during the fine-tune epochs: longest UI stall {train_stall:.1f} ms")
    statistics_stages = ("inventory", "weights", "activations", "evaluate", "latency")
    worst_statistics = max(v for stages in (stats_stages, tune_stages) for k, v in stages.items()
                           if k in statistics_stages)
    print(f"longest UI stall while a statistics pass runs (stages {', '.join(statistics_stages)}, on opening "
          f"and for the new variant): {worst_statistics:.1f} ms; while fine-tuning: {train_stall:.1f} ms "
          f"(goal <= 50 ms)")
    for label, stages in (("statistics", stats_stages), ("apply", tune_stages)):
        print(f"  {label}, longest stall by stage: " + ", ".join(f"{k} {v:.0f} ms" for k, v in stages.items()))
    if sampler:
        sampler.stop()
        print("what the UI thread was doing in the stalls over 25 ms (most frequent stacks, innermost first):")
        sampler.report(sorted(meter.long_gaps, key=lambda w: w[0] - w[1])[:8], top=8)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
