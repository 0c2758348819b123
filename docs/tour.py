"""Drive the real studio to a given view with a few compressed variants, for screenshots and demos.

    ../shared/tools/xshot docs/tradeoff.png 75 -- python docs/tour.py --view tradeoff

Opens LeNet-300-100 on MNIST, applies a handful of quick recipes (magnitude pruning, two epochs of
fine-tuning, k-means with codebook fine-tuning; seconds each), each on the original, through the same Apply
path a user clicks, selects a layer and shows the
requested tab. With ``--save DIR`` it also writes a PNG of the window for every view and quits; with
``--sizes 1366x768,1920x1080`` also one per view at each of those window sizes (``DIR/<view>-WxH.png``,
and ``DIR/heatmap-WxH.png``: the Layers page with the unit heatmap). The views ``lowrank`` and
``softened`` are the Layers page with the inspector's Low rank (singular values) and Softened outputs
tabs, of the original model; and a convolution's Low rank view, with its separable toggle. The view
``sensitivity`` runs the Sensitivity page's default analysis (every layer pruned alone at ten sparsities, on
2,000 test examples) through its Run button:

    python docs/tour.py --recipes 0 --only lowrank,softened --save docs/ --sizes 1366x768,1920x1080
    python docs/tour.py --recipes 0 --only sensitivity --save docs/ --sizes 1366x768,1920x1080
    python docs/tour.py --model zoo:lenet5 --layer conv2 --recipes 0 --only lowrank --prefix lenet5- --save docs/
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from PySide6.QtCore import QSettings, QSize, QTimer  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

VIEWS = {"layers": ("layers", "Weights"), "tradeoff": ("tradeoff", None), "compare": ("compare", None),
         "demo": ("demo", None), "lowrank": ("layers", "Low rank"), "softened": ("layers", "Softened outputs"),
         "sensitivity": ("sensitivity", None)}
"""view -> (the window's page, the inspector's tab on the Layers page)"""
SAVED = ("layers", "tradeoff", "compare", "demo")
"""The views ``--save`` writes without ``--only`` (the inspector's other tabs show the original best:
``--recipes 0 --only lowrank,softened``)."""
QUICK = [  # (all-layers sparsity, bits): a spread of points for the trade-off plot
    (0.80, 6), (0.90, 5), (0.95, 4), (0.97, 3), (0.985, 2)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--view", choices=sorted(VIEWS), default="tradeoff")
    parser.add_argument("--layer", default="fc1")
    parser.add_argument("--current", type=int, default=3, help="which variant to make current at the end")
    parser.add_argument("--save", help="write DIR/<view>.png for every view, then quit")
    parser.add_argument("--size", default="1580x980", help="window size WIDTHxHEIGHT (default 1580x980)")
    parser.add_argument("--model", default="zoo:lenet300", help="the model to open (default zoo:lenet300)")
    parser.add_argument("--inputs", help="your own inputs to open the model on (as --inputs; no fine-tuning then)")
    parser.add_argument("--recipes", type=int, default=len(QUICK), help="how many quick recipes to apply")
    parser.add_argument("--only", default="", help="with --save: only these comma-separated views")
    parser.add_argument("--prefix", default="", help="with --save: before each file name")
    parser.add_argument("--image", type=int, default=73, help="the test image of the softened outputs "
                        "(default 73: a 9 LeNet-300-100 finds a little like a 7)")
    parser.add_argument("--temperature", type=float, default=4.0, help="T of the softened outputs")
    parser.add_argument("--sizes", default="", help="with --save: also write DIR/<view>-WxH.png at each of these "
                        "comma-separated window sizes (e.g. 1366x768,1920x1080)")
    args = parser.parse_args()

    from gui.app import apply_style, create_window

    app = QApplication.instance() or QApplication(sys.argv)
    app.setApplicationName("Prunescope")
    apply_style(app)
    settings = QSettings(str(Path.home() / ".cache" / "prunescope-tour.ini"), QSettings.Format.IniFormat)
    settings.clear()
    window = create_window(args.model, settings=settings, inputs=args.inputs)
    width, height = (int(n) for n in args.size.lower().split("x"))
    window.resize(width, height)
    window.show()
    session, queue = window.session, list(QUICK[:args.recipes])
    # every quick recipe compresses the original, so the trade-off plot shows a spread of points
    window.recipe_panel.base_choice.setCurrentIndex(window.recipe_panel.base_choice.findData("original"))

    def step() -> None:
        if session.runner.busy or session.loaded is None or not session.variants.variants:
            QTimer.singleShot(200, step)
            return
        if queue:
            sparsity, bits = queue.pop(0)
            session.draft.set(prune_method="magnitude", scope="layer", sparsity=sparsity, quant_method="kmeans",
                              bits=bits, finetune_epochs=0 if args.inputs else 2, lr=0.01,
                              huffman=True)  # named by what it does; without labels, nothing trains
            session.apply()
            QTimer.singleShot(200, step)
            return
        ids = [v.id for v in session.variants.variants]
        session.make_current(ids[min(args.current, len(ids) - 1)])
        QTimer.singleShot(300, finish)

    def show(view) -> None:
        page, inspector = view
        window.tabs.setCurrentWidget(getattr(window, page))
        if inspector:
            window.layers.show_inspector_tab(inspector)
        if page == "sensitivity" and window.sensitivity.shown is None:
            window.sensitivity.run()  # its defaults; settle() waits for the result
            window.sensitivity.target.allocate()  # and the target row's default: 40x smaller

    def settle() -> None:
        """Layout and paint settle over a few event-loop passes; a spectrum or a teacher's outputs arrive
        from the background."""
        for _ in range(20):
            app.processEvents()
            time.sleep(0.02)
        while session.runner.busy or session.sensitivity.allocation.running:
            app.processEvents()
            time.sleep(0.02)
        for _ in range(10):
            app.processEvents()
            time.sleep(0.02)

    def finish() -> None:
        if session.runner.busy:
            QTimer.singleShot(200, finish)
            return
        window.select_layer(args.layer)
        window.session.draft.set(sparsity=0.9)
        window.layers.softened.set_temperature(args.temperature)
        window.layers.softened.image_box.setValue(args.image)
        show(VIEWS[args.view])
        if args.save:
            folder = Path(args.save)
            folder.mkdir(parents=True, exist_ok=True)
            shots = [(window.size(), "")]
            for wh in filter(None, args.sizes.split(",")):
                shots.append((QSize(*(int(n) for n in wh.lower().split("x"))), f"-{wh}"))
            only = [v for v in args.only.split(",") if v] or list(SAVED)
            for size, suffix in shots:
                window.resize(size)
                for name in only:
                    show(VIEWS[name])
                    settle()
                    window.grab().save(str(folder / f"{args.prefix}{name}{suffix}.png"))
                if suffix and not args.only:  # and the unit heatmap with its colour scale, at each extra size
                    show(VIEWS["layers"])
                    window.activations.view_box.setCurrentIndex(1)
                    settle()
                    window.grab().save(str(folder / f"{args.prefix}heatmap{suffix}.png"))
                    window.activations.view_box.setCurrentIndex(0)
            for variant in session.variants.variants:
                session.variants.saved.add(variant.id)
            window.confirm_close = lambda unsaved: True
            app.quit()

    QTimer.singleShot(500, step)
    return app.exec()


if __name__ == "__main__":
    raise SystemExit(main())
