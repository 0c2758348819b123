"""Benchmark: what one redraw of the weight histogram costs the UI thread.

    QT_QPA_PLATFORM=offscreen python bench/bench_paint.py [--repaints 40]

Opens the real main window on the demo model (LeNet-300-100, MNIST) and reports, for the histogram:

1. repaints per layer change: how many paint events its plot receives after one click on another layer
   (after a first round over the layers, in which the count axis may widen once); each repaint is Python
   paint code on the UI thread, so a second one doubles the cost of an update;
2. the time of one repaint (median of ``--repaints`` synchronous repaints of the plot), with the studio's
   grid (lines at major and minor ticks, ``gui.theme.grid``), with pyqtgraph's default grid (a line at
   every tick level, sub-minor too) and with no grid.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from PySide6.QtCore import QEvent, QObject, QSettings  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

from bench.bench_studio import wait_until  # noqa: E402


class PaintCounter(QObject):
    """An event filter that counts the paint events of the widget it is installed on."""

    count = 0

    def eventFilter(self, _obj, event) -> bool:  # noqa: N802 - Qt's name
        if event.type() == QEvent.Type.Paint:
            self.count += 1
        return False


def settle(app: QApplication, ms: float = 60) -> None:
    end = time.monotonic() + ms / 1000
    while time.monotonic() < end:
        app.processEvents()
        time.sleep(0.002)


def repaint_ms(app: QApplication, plot, repaints: int) -> float:
    settle(app)
    times = []
    for _ in range(repaints):
        start = time.perf_counter()
        plot.viewport().repaint()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repaints", type=int, default=40)
    args = parser.parse_args()

    from gui.app import apply_style, create_window

    app = QApplication.instance() or QApplication(sys.argv)
    apply_style(app)
    with tempfile.TemporaryDirectory() as folder:
        window = create_window("zoo:lenet300", settings=QSettings(str(Path(folder) / "s.ini"),
                                                                   QSettings.Format.IniFormat))
        window.resize(1500, 950)
        window.show()
        session = window.session
        wait_until(app, lambda: session.loaded is not None and not session.runner.busy
                   and session.measurements.test is not None and len(session.variants.variants) == 1)
        names = [layer.name for layer in session.measurements.inventory.layers]
        plot = window.histogram.plot
        counter = PaintCounter()
        plot.viewport().installEventFilter(counter)
        for name in names:  # the first round: the count axis may widen once
            window.select_layer(name)
            settle(app)
        counts = []
        for _ in range(3):
            for name in names:
                counter.count = 0
                window.select_layer(name)
                settle(app)
                counts.append(counter.count)
        plot.viewport().removeEventFilter(counter)

        window.select_layer(names[0])
        studio = repaint_ms(app, plot, args.repaints)
        for axis in ("left", "bottom"):
            plot.getAxis(axis).setStyle(maxTickLevel=2)  # pyqtgraph's default
        every_level = repaint_ms(app, plot, args.repaints)
        plot.showGrid(x=False, y=False)
        no_grid = repaint_ms(app, plot, args.repaints)

        session.variants.saved.update(v.id for v in session.variants.variants)
        window.confirm_close = lambda unsaved: True
        window.close()

    print(f"histogram of {names[0]}, {plot.width()}x{plot.height()} px")
    print(f"repaints per layer change: {counts} (median {statistics.median(counts):.0f})")
    print(f"one repaint, median of {args.repaints}: studio grid (major + minor ticks) {studio:.1f} ms; "
          f"pyqtgraph's grid (every tick level) {every_level:.1f} ms; no grid {no_grid:.1f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
