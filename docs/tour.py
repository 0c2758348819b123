"""Drive the real studio to a given view with a few compressed variants, for screenshots and demos.

    ../shared/tools/xshot docs/tradeoff.png 75 -- python docs/tour.py --view tradeoff

Opens LeNet-300-100 on MNIST, applies a handful of quick recipes (magnitude pruning, two epochs of
fine-tuning, k-means with codebook fine-tuning; seconds each), each on the original, through the same Apply
path a user clicks, selects a layer and shows the
requested tab. With ``--save DIR`` it also writes a PNG of the window for every view and quits; with
``--sizes 1366x768,1920x1080`` also one per view at each of those window sizes (``DIR/<view>-WxH.png``,
and ``DIR/heatmap-WxH.png``: the Layers page with the unit heatmap).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from PySide6.QtCore import QSettings, QSize, QTimer  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

VIEWS = {"layers": 0, "tradeoff": 1, "compare": 2, "demo": 3}
QUICK = [  # (all-layers sparsity, bits): a spread of points for the trade-off plot
    (0.80, 6), (0.90, 5), (0.95, 4), (0.97, 3), (0.985, 2)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--view", choices=sorted(VIEWS), default="tradeoff")
    parser.add_argument("--layer", default="fc1")
    parser.add_argument("--current", type=int, default=3, help="which variant to make current at the end")
    parser.add_argument("--save", help="write DIR/<view>.png for every view, then quit")
    parser.add_argument("--size", default="1580x980", help="window size WIDTHxHEIGHT (default 1580x980)")
    parser.add_argument("--sizes", default="", help="with --save: also write DIR/<view>-WxH.png at each of these "
                        "comma-separated window sizes (e.g. 1366x768,1920x1080)")
    args = parser.parse_args()

    from gui.app import apply_style, create_window

    app = QApplication.instance() or QApplication(sys.argv)
    app.setApplicationName("Prunescope")
    apply_style(app)
    settings = QSettings(str(Path.home() / ".cache" / "prunescope-tour.ini"), QSettings.Format.IniFormat)
    settings.clear()
    window = create_window("zoo:lenet300", settings=settings)
    width, height = (int(n) for n in args.size.lower().split("x"))
    window.resize(width, height)
    window.show()
    session, queue = window.session, list(QUICK)
    # every quick recipe compresses the original, so the trade-off plot shows a spread of points
    window.recipe_panel.base_choice.setCurrentIndex(window.recipe_panel.base_choice.findData("original"))

    def step() -> None:
        if session.runner.busy or session.loaded is None or not session.variants.variants:
            QTimer.singleShot(200, step)
            return
        if queue:
            sparsity, bits = queue.pop(0)
            session.draft.set(prune_method="magnitude", scope="layer", sparsity=sparsity, quant_method="kmeans",
                              bits=bits, finetune_epochs=2, lr=0.01, huffman=True)  # named by what it does
            session.apply()
            QTimer.singleShot(200, step)
            return
        ids = [v.id for v in session.variants.variants]
        session.make_current(ids[min(args.current, len(ids) - 1)])
        QTimer.singleShot(300, finish)

    def finish() -> None:
        if session.runner.busy:
            QTimer.singleShot(200, finish)
            return
        window.select_layer(args.layer)
        window.session.draft.set(sparsity=0.9)
        window.tabs.setCurrentIndex(VIEWS[args.view])
        if args.save:
            folder = Path(args.save)
            folder.mkdir(parents=True, exist_ok=True)
            shots = [(window.size(), "")]
            for wh in filter(None, args.sizes.split(",")):
                shots.append((QSize(*(int(n) for n in wh.lower().split("x"))), f"-{wh}"))
            for size, suffix in shots:
                window.resize(size)
                for name, index in VIEWS.items():
                    window.tabs.setCurrentIndex(index)
                    for _ in range(20):  # layout and paint settle over a few event-loop passes
                        app.processEvents()
                        time.sleep(0.02)
                    window.grab().save(str(folder / f"{name}{suffix}.png"))
                if suffix:  # and the unit heatmap with its colour scale, at each extra size
                    window.tabs.setCurrentIndex(VIEWS["layers"])
                    window.activations.view_box.setCurrentIndex(1)
                    for _ in range(20):
                        app.processEvents()
                        time.sleep(0.02)
                    window.grab().save(str(folder / f"heatmap{suffix}.png"))
                    window.activations.view_box.setCurrentIndex(0)
            for variant in session.variants.variants:
                session.variants.saved.add(variant.id)
            window.confirm_close = lambda unsaved: True
            app.quit()

    QTimer.singleShot(500, step)
    return app.exec()


if __name__ == "__main__":
    raise SystemExit(main())
