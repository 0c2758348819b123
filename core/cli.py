"""The headless command line: ``python main.py inspect MODEL``, ``python main.py train-zoo``, ``zoo``.

Runs the same engine generators as the studio. Bad input exits with status 2 and one line on stderr; a
system error (disk full, permission denied, a folder where a file should be) exits with status 1 and one
line; Ctrl+C (SIGINT), at any moment, exits with status 130 and "cancelled". Every output path is checked
before any work, and a command's files appear together or not at all.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import replace
from pathlib import Path

from core import __version__
from core.errors import PrunescopeError, one_line, os_error_line

EXIT_BAD_INPUT = 2
EXIT_SYSTEM_ERROR = 1
EXIT_CANCELLED = 130


class UsageError(PrunescopeError):
    """A command-line argument that cannot work."""


def _progress_printer(enabled: bool):
    last = {"stage": None, "pct": -1}

    def show(p):
        if not enabled:
            return
        pct = int(p.fraction * 100)
        # a stage that starts again (the next round of an iterative prune trains again) prints from its start
        if p.stage != last["stage"] or pct >= last["pct"] + 10 or pct < last["pct"]:
            print(f"  {p.stage}: {pct}% {p.message}", file=sys.stderr, flush=True)
            last.update(stage=p.stage, pct=pct)
    return show


def add_load_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--trust", action="store_true",
                        help="allow loading a file that runs code when it loads: a whole pickled module, a "
                             "TorchScript archive or a torch.export program (only for files you trust)")
    parser.add_argument("--arch", metavar="PKG.MODULE:FACTORY",
                        help="architecture for a bare state_dict (or a zoo architecture: lenet300, lenet5, resnet8)")
    parser.add_argument("--input-shape", metavar="N,C,H,W",
                        help="input shape to probe the model with when there is no data set, e.g. 1,1,28,28")
    parser.add_argument("--source", metavar="MODEL",
                        help="for a compressed file (.psz) of a model that is not in the zoo: the original model "
                             "it was made from (a .psz never opens a path written inside it)")
    parser.add_argument("--inputs", metavar="FILE",
                        help="your own examples to run the model on, for activations, calibration and fidelity "
                             "when there is no labelled --data: a .npy, .npz or .pt file holding a tensor, a "
                             "tuple of tensors or a dict of named tensors, batched along the first dimension; a "
                             "folder of images; or a .txt of one example per line, for a model with a tokenizer; "
                             "or a folder of mono audio files (WAV, FLAC, OGG)")
    parser.add_argument("--sample-rate", type=int, metavar="HZ",
                        help="for audio --inputs: the model's sample rate; every file must have it, and it is "
                             "passed as the argument the model's forward names (sr, sample_rate, ...)")
    parser.add_argument("--chunk", type=int, metavar="N",
                        help="for audio --inputs: cut each file into windows of N samples, as streaming models "
                             "expect (without it every file must have the same length)")
    parser.add_argument("--task", choices=("classify", "embed", "lm", "regress"),
                        help="what the model's output is, for the fidelity metric: classify (top-1 agreement, KL), "
                             "embed (cosine, mean and 5th percentile), lm (perplexity before and after, KL per "
                             "token) or regress (relative error); by default detected from the output")
    parser.add_argument("--stride", type=int, metavar="N",
                        help="for a causal language model with a text file as --inputs: the tokens between the "
                             "windows of its sliding-window perplexity over the whole text (default: half the "
                             "model's positions, at most 1024 tokens a window)")
    parser.add_argument("--pairs", metavar="FILE.tsv",
                        help="for a text embedding model: sentence pairs with gold similarity scores, one "
                             "sentence1<TAB>sentence2<TAB>score per line; reports the Spearman and Pearson "
                             "correlation of cosine similarities with the scores (STS), before and after")


def load_options(args):
    """The LoadOptions the load arguments (:func:`add_load_arguments`) ask for."""
    from core.io import LoadOptions, parse_input_shape

    return LoadOptions(trust=getattr(args, "trust", False), arch=getattr(args, "arch", None),
                       input_shape=parse_input_shape(args.input_shape) if getattr(args, "input_shape", None)
                       else None, source=getattr(args, "source", None),
                       inputs=getattr(args, "inputs", None), sample_rate=getattr(args, "sample_rate", None),
                       chunk=getattr(args, "chunk", None), task=getattr(args, "task", None),
                       pairs=getattr(args, "pairs", None), stride=getattr(args, "stride", None))


DEVICE_HELP = ("where the model runs for evaluation, fine-tuning, activations and latency: auto (the default: "
               "CUDA when torch sees a GPU, else the CPU), cpu, cuda or cuda:N; the model is kept, compressed and "
               "written on the CPU")


DATA_HELP = ("data set: mnist, fashion-mnist, or a folder / .npz of your own. A zoo model (or a .psz of one) "
             "uses its own by default; any other model has none unless you pass --data: then steps that train "
             "or calibrate are refused, and inputs come from --input-shape")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python main.py", description="Prunescope: inspect and compress neural networks. With no command, "
        "opens the studio on the demo model (LeNet-300-100 on MNIST).")
    parser.add_argument("--version", action="version", version=f"prunescope {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    studio = sub.add_parser("studio", help="open the studio (the default)")
    studio.add_argument("model", nargs="?", default="zoo:lenet300", help="model to open (default zoo:lenet300)")
    studio.add_argument("--data", help="data set: mnist, fashion-mnist, or a folder / .npz of your own")
    add_load_arguments(studio)

    inspect = sub.add_parser("inspect", help="print a model's layers, weight and activation statistics, metrics")
    inspect.add_argument("model", help="zoo:NAME, a TorchScript/.pt2/state_dict/pickle file, a Hugging Face "
                                       "folder, or a .safetensors file or folder of shards (streamed, one tensor "
                                       "at a time)")
    inspect.add_argument("--data", help=DATA_HELP)
    inspect.add_argument("--json", metavar="FILE", help="also write the full report as JSON")
    inspect.add_argument("--reference", metavar="MODEL", help="measure fidelity to this model (same inputs)")
    inspect.add_argument("--limit", type=int, default=None, help="evaluate on the first N test examples only")
    inspect.add_argument("--no-activations", action="store_true", help="skip activation statistics")
    inspect.add_argument("--quiet", action="store_true", help="no progress on stderr")
    inspect.add_argument("--device", default="auto", help=DEVICE_HELP)
    add_load_arguments(inspect)

    compress = sub.add_parser("compress", help="compress a model with a recipe; writes the compressed file and "
                                               "report.json")
    compress.add_argument("model", help="zoo:NAME or a model file (see inspect)")
    compress.add_argument("--recipe", metavar="FILE",
                          help="recipe (YAML or JSON); see resources/recipes/. With a target and no recipe: "
                               "prune + k-means + Huffman (resources/recipes/prune-quantize-no-training.yaml)")
    target = compress.add_mutually_exclusive_group()
    target.add_argument("--target-bytes", type=int, metavar="N",
                        help="choose each layer's sparsity and bits (of the recipe's steps) for a file of N bytes, "
                             "from each layer's measured sensitivity (an allocate step first)")
    target.add_argument("--target-ratio", type=float, metavar="R", help="as --target-bytes, R times smaller")
    target.add_argument("--max-drop", type=float, metavar="D",
                        help="as --target-bytes, the smallest file losing at most D of the metric (0.01: a point)")
    compress.add_argument("--out", required=True, metavar="DIR", help="folder for the compressed file and report")
    compress.add_argument("--data", help=DATA_HELP)
    compress.add_argument("--export", default="", metavar="FORMATS",
                          help="also write the decompressed model: comma-separated state_dict,torchscript,onnx")
    compress.add_argument("--quiet", action="store_true", help="no progress on stderr")
    compress.add_argument("--device", default="auto", help=DEVICE_HELP)
    add_load_arguments(compress)

    sens = sub.add_parser("sensitivity", help="each layer alone at a grid of settings of one method: the metric "
                                              "and the layer's bytes at each; writes CSV (and JSON, PNG)")
    sens.add_argument("model", help="zoo:NAME or a model file (see inspect)")
    sens.add_argument("--data", help=DATA_HELP)
    sens.add_argument("--method", required=True, choices=("prune", "quantize", "low_rank"))
    sens.add_argument("--levels", help="comma-separated: sparsities (prune, default 0.1..0.95), bits (quantize, "
                                       "default 8..1) or rank fractions (low_rank, default 0.05..0.5)")
    sens.add_argument("--quantizer", default="kmeans", choices=("kmeans", "uniform"), help="for quantize")
    sens.add_argument("--layers", help="comma-separated layer names (default: every prunable layer)")
    sens.add_argument("--limit", type=int, help="the first N test examples (with --inputs: the first N batches)")
    sens.add_argument("--naive", action="store_true", help="re-evaluate the whole model per point (to compare)")
    sens.add_argument("--csv", required=True, metavar="FILE")
    sens.add_argument("--json", metavar="FILE")
    sens.add_argument("--png", metavar="FILE", help="the curves, level against metric, one line per layer")
    sens.add_argument("--quiet", action="store_true", help="no progress on stderr")
    add_load_arguments(sens)

    sweep = sub.add_parser("sweep", help="a grid of recipes (a base recipe and axes) on local worker processes or "
                                         "a Ray cluster; writes CSV (and JSON) and prints a table")
    sweep.add_argument("model", help="zoo:NAME or a model file (see inspect)")
    sweep.add_argument("--recipe", required=True, metavar="FILE", help="the base recipe (YAML or JSON)")
    sweep.add_argument("--grid", required=True, action="append", metavar="KIND.FIELD=V1,V2",
                       help="an axis: a setting of the recipe's first step of that kind and its values, e.g. "
                            "prune_magnitude.sparsity=0.5,0.7,0.9 or quantize.bits=4,5,6; repeat for more axes (the "
                            "grid is every combination)")
    sweep.add_argument("--data", help=DATA_HELP)
    sweep.add_argument("--limit", type=int, metavar="N", help="measure on the first N test examples only")
    sweep.add_argument("--workers", type=int, metavar="N",
                       help="local worker processes (default: one per core); with --ray, at most N tasks at once")
    sweep.add_argument("--ray", metavar="auto|local|ADDRESS",
                       help="run on a Ray cluster (the [ray] extra): auto (the one `ray start --head` started, or "
                            "RAY_ADDRESS), local (this machine's cores, for this sweep only) or HOST:PORT")
    sweep.add_argument("--csv", required=True, metavar="FILE")
    sweep.add_argument("--json", metavar="FILE")
    sweep.add_argument("--quiet", action="store_true", help="no progress on stderr")
    add_load_arguments(sweep)

    train = sub.add_parser("train-zoo", help="retrain the shipped zoo checkpoints (deterministic, seeded)")
    train.add_argument("names", nargs="*", help="zoo models to train (default: all)")
    train.add_argument("--seed", type=int, default=0)

    sub.add_parser("zoo", help="list the zoo models and their shipped accuracy")
    return parser


def cmd_inspect(args) -> int:
    from core.analysis.inspection import InspectOptions, inspect_model, open_for_inspection
    from core.devices import resolve_device
    from core.fileio import check_output_file
    from core.io import load_model
    from core.progress import run
    from core.report.reports import layer_table, write_json

    device = resolve_device(args.device)  # before any work: no CUDA here is one line
    options = load_options(args)
    if args.json:  # before any work: a folder, a device, an unwritable place
        check_output_file(args.json, "--json", error=UsageError)
        protect_inputs([args.json], args)
    loaded, data = run(open_for_inspection(args.model, options, args.data))
    say_load_notes(loaded)
    reference = load_model(args.reference, replace(options, source=None)) if args.reference else None
    result = run(inspect_model(loaded, data, InspectOptions(activations=not args.no_activations,
                                                            eval_limit=args.limit, device=device), reference),
                 on_progress=_progress_printer(not args.quiet))
    print(layer_table(result))
    if args.json:
        write_json(result, args.json)
        print(f"report written to {args.json}")
    return 0


def _same_file(a: str | Path, b: str | Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return Path(a).resolve() == Path(b).resolve()


def protect_inputs(outputs: list[str | Path], args) -> None:
    """Refuse to write over any input: the model, the reference, the data set, the recipe, or the shipped
    resources (zoo checkpoints, MNIST)."""
    from core.resources import RESOURCES

    inputs = [getattr(args, key, None) for key in ("model", "reference", "data", "recipe", "source")]
    inputs = [p for p in inputs if p and not str(p).startswith("zoo:") and Path(p).exists()]
    for out in outputs:
        resolved = Path(out).resolve()
        if RESOURCES.resolve() in resolved.parents:
            raise UsageError(f"{out} is inside Prunescope's shipped resources; choose another path")
        for source in inputs:
            source_path = Path(source).resolve()
            if _same_file(out, source) or (source_path.is_dir() and source_path in resolved.parents):
                raise UsageError(f"{out} would overwrite an input ({source}); choose another path")


def say_load_notes(loaded) -> None:
    """What loading changed or assumed (a wrapper's prefix taken off, a data set the file names), on stderr."""
    for note in loaded.meta.get("notes", []):
        print(f"note: {one_line(note)}", file=sys.stderr)


def cmd_compress(args) -> int:
    import torch

    from core.devices import resolve_device
    from core.eval.data import load_dataset
    from core.fileio import check_output_file, check_output_folder, write_together
    from core.io import load_model
    from core.io.export import FORMATS, SUFFIX, export_bytes
    from core.pipeline.apply import apply_recipe
    from core.progress import run
    from core.recipe import Recipe
    from core.report.reports import compression_summary, compression_to_dict, json_bytes

    device = resolve_device(args.device)  # before any work
    formats = [f for f in args.export.split(",") if f]
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise UsageError(one_line(f"--export {unknown[0]}: not one of {', '.join(FORMATS)}"))
    recipe = _compress_recipe(args)
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UsageError(one_line(f"--out {out} exists and is not a folder"))
    check_output_folder(out, "--out", error=UsageError)  # before any work
    options = load_options(args)
    loaded = load_model(args.model, options)
    say_load_notes(loaded)
    if formats and loaded.input_shape is None:
        raise UsageError("--export needs the model's input shape: pass --input-shape N,C,H,W")
    data_name = args.data or (None if args.inputs else loaded.dataset)  # --inputs: the person's examples
    data = load_dataset(data_name) if data_name else None
    name = f"{loaded.name}.psz"
    target, report = out / name, out / "report.json"
    outputs = [target, report, *(out / f"{loaded.name}.decompressed{SUFFIX[f]}" for f in formats),
               *([out / "allocated.yaml"] if recipe.steps and recipe.steps[0].kind == "allocate" else [])]
    for path in outputs:
        check_output_file(path, "--out", error=UsageError)
    protect_inputs(outputs, args)
    result = run(apply_recipe(recipe, loaded, data, device=device), on_progress=_progress_printer(not args.quiet))
    if len(result.file_bytes) != result.compressed_bytes:  # the report must say what is on disk
        raise RuntimeError(f"{target}: {len(result.file_bytes)} bytes, expected {result.compressed_bytes}")
    files = {target: result.file_bytes}
    if "allocation" in result.sections:  # the chosen settings as an ordinary recipe, to rerun or edit
        files[out / "allocated.yaml"] = Recipe.from_dict(result.sections["allocation"]["recipe"]).to_yaml().encode()
    exports = {}
    for fmt in formats:
        path = out / f"{loaded.name}.decompressed{SUFFIX[fmt]}"
        files[path] = export_bytes(result.model, torch.zeros(loaded.input_shape), fmt)
        exports[fmt] = path.name
    summary = compression_to_dict(result, name, exports)
    summary["inputs"] = loaded.meta.get("inputs")  # the person's own examples fidelity was measured on, if any
    files[report] = json_bytes(summary)
    write_together(files)  # the file, its report and its exports appear together or not at all
    print(compression_summary(result))
    print(f"wrote {target} ({result.compressed_bytes:,} bytes) and {report}")
    return 0


def _compress_recipe(args):
    """The recipe to run: ``--recipe``, with an allocate step first for a target (``--target-bytes`` ...)."""
    from core.methods.allocation import Allocate
    from core.recipe import Recipe, RecipeError
    from core.resources import RESOURCES

    targets = {"target_bytes": args.target_bytes, "ratio": args.target_ratio, "max_drop": args.max_drop}
    targets = {k: v for k, v in targets.items() if v is not None}
    if not args.recipe and not targets:
        raise UsageError("compress needs --recipe FILE, or a target (--target-bytes, --target-ratio, --max-drop)")
    recipe = Recipe.from_file(args.recipe or RESOURCES / "recipes" / "prune-quantize-no-training.yaml")
    if not targets:
        return recipe
    if recipe.steps and recipe.steps[0].kind == "allocate":
        raise RecipeError("the recipe already starts with an allocate step: give its target there, or drop "
                          "--target-bytes/--target-ratio/--max-drop")
    step = Allocate(**targets)
    return replace(recipe, steps=(step, *recipe.steps), name=recipe.name)


def cmd_sensitivity(args) -> int:
    from core.analysis.sensitivity import parse_levels, sensitivity
    from core.eval.data import load_dataset
    from core.fileio import check_output_file, write_together
    from core.io import load_model
    from core.progress import run
    from core.report import sensitivity as report

    levels = parse_levels(args.levels) if args.levels else None
    layers = [n for n in args.layers.split(",") if n] if args.layers else None
    outputs = {path: flag for path, flag in ((args.csv, "--csv"), (args.json, "--json"), (args.png, "--png")) if path}
    for path, flag in outputs.items():
        check_output_file(path, flag, error=UsageError)
    protect_inputs(list(outputs), args)
    loaded = load_model(args.model, load_options(args))
    say_load_notes(loaded)
    data_name = args.data or (None if args.inputs else loaded.dataset)
    result = run(sensitivity(loaded, load_dataset(data_name) if data_name else None, args.method, levels, layers,
                             args.limit, args.quantizer, "naive" if args.naive else "fast"),
                 on_progress=_progress_printer(not args.quiet))
    makers = {args.csv: report.csv_bytes, args.json: report.report_json_bytes, args.png: report.png_bytes}
    write_together({path: makers[path](result) for path in outputs})
    print(report.summary_table(result))
    print(f"wrote {', '.join(map(str, outputs))}")
    return 0


def cmd_sweep(args) -> int:
    import signal
    import time

    from core.eval.data import load_dataset
    from core.fileio import check_output_file, write_together
    from core.io import load_model
    from core.progress import run
    from core.recipe import Recipe
    from core.report import sweep as report
    from core.sweep import backend_for, expand_grid, parse_axis, sweep
    from core.sweep.pool import handling_ctrl_c

    axes = [parse_axis(text) for text in args.grid]
    if args.limit is not None and args.limit < 1:
        raise UsageError(f"--limit must be at least 1; got {args.limit}")
    backend = backend_for(args.ray, args.workers)
    outputs = {path: flag for path, flag in ((args.csv, "--csv"), (args.json, "--json")) if path}
    for path, flag in outputs.items():
        check_output_file(path, flag, error=UsageError)
    protect_inputs(list(outputs), args)
    base = Recipe.from_file(args.recipe)
    jobs = expand_grid(base, axes)
    try:
        backend.connect()  # before loading anything: Ray missing, or no cluster there, is said now
        loaded = load_model(args.model, load_options(args))
        say_load_notes(loaded)
        data_name = args.data or (None if args.inputs else loaded.dataset)
        data = load_dataset(data_name) if data_name else None
        start = time.perf_counter()
        with handling_ctrl_c(signal.default_int_handler):  # not main.py's exit at once: the workers are closed first
            results = run(sweep(jobs, loaded, data, backend, args.limit), on_progress=_progress_printer(not args.quiet))
        seconds = time.perf_counter() - start
    finally:
        backend.close()
    files = {args.csv: report.csv_bytes(results, axes)}
    if args.json:
        files[args.json] = report.report_json_bytes(results, axes, base, loaded.name, backend.description, args.limit)
    write_together(files)
    print(report.summary_table(results))
    print(f"{len(results)} recipes on {backend.description} in {seconds:.1f} s; wrote {', '.join(map(str, outputs))}")
    return 0


def cmd_train_zoo(args) -> int:
    from core.eval import zoo
    from core.progress import run
    from core.eval.training import train_zoo_model

    for name in args.names or list(zoo.ZOO):
        meta = run(train_zoo_model(name, seed=args.seed), on_progress=_progress_printer(True))
        print(f"{name}: test accuracy {meta['test_accuracy']:.2%}, validation {meta['val_accuracy']:.2%}, "
              f"{meta['train']['epochs']} epochs in {meta['train']['seconds']:.0f} s -> "
              f"{zoo.zoo_entry(name).checkpoint}", flush=True)
    return 0


def cmd_zoo(args) -> int:
    from core.eval import zoo

    for name, entry in zoo.ZOO.items():
        try:
            meta = zoo.read_checkpoint(entry.checkpoint)["meta"]
            acc = f"test accuracy {meta['test_accuracy']:.2%}"
        except zoo.ZooError:
            acc = "checkpoint missing"
        print(f"zoo:{name:18s} {entry.dataset:14s} {acc:22s} {entry.description}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run a headless command; returns the exit status. (The studio is started by ``main.py``.)"""
    from core.progress import Cancelled

    args = build_parser().parse_args(argv)
    commands = {"inspect": cmd_inspect, "compress": cmd_compress, "sensitivity": cmd_sensitivity,
                "sweep": cmd_sweep, "train-zoo": cmd_train_zoo, "zoo": cmd_zoo}
    try:
        return commands[args.command](args)
    except PrunescopeError as exc:
        print(f"prunescope: error: {one_line(str(exc))}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except OSError as exc:  # the system refused: a full disk, a permission, a folder where a file should be
        print(f"prunescope: error: {os_error_line(exc)}", file=sys.stderr)
        return EXIT_SYSTEM_ERROR
    except (Cancelled, KeyboardInterrupt):
        print("prunescope: cancelled", file=sys.stderr)
        return EXIT_CANCELLED
