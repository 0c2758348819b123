"""Benchmark: Hinton et al.'s MNIST distillation (2015, section 3) at several temperatures.

    python bench/bench_distill_temperatures.py [--temperatures 1,2,5,10,20] [--json FILE]

Runs the shipped recipe ``resources/recipes/distill-hinton-mnist.yaml`` (a fresh mlp800 student distilled
from ``zoo:mnist-teacher``) through the same engine as ``python main.py compress``, once per temperature, and
prints a markdown table of test errors (of 10,000) and validation errors (of 5,000) beside the teacher and
the student trained alone (``zoo:mnist-student``), with the share of the gap closed:
``(student_errors - distilled_errors) / (student_errors - teacher_errors)``. Each figure is the decoded
``.psz``'s, as ``compress`` reports it. ``--epochs`` and ``--train-limit`` shorten a trial run (the figures
are then not the reproduction's).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.eval.data import load_dataset  # noqa: E402
from core.eval.evaluate import accuracy  # noqa: E402
from core.io import load_model  # noqa: E402
from core.pipeline.apply import apply_recipe  # noqa: E402
from core.progress import run  # noqa: E402
from core.recipe import Recipe  # noqa: E402

RECIPE = Path(__file__).resolve().parent.parent / "resources" / "recipes" / "distill-hinton-mnist.yaml"


def errors(model, split) -> int:
    measured = run(accuracy(model, split))
    return measured.count - measured.correct


def gap_closed(student: int, teacher: int, distilled: int) -> float:
    return (student - distilled) / (student - teacher) if student != teacher else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--temperatures", default="1,2,5,10,20")
    parser.add_argument("--epochs", type=int, default=None, help="override the recipe's epochs (a trial run)")
    parser.add_argument("--train-limit", type=int, default=None, help="train on the first N images (a trial run)")
    parser.add_argument("--json", metavar="FILE")
    args = parser.parse_args()
    temperatures = [float(t) for t in args.temperatures.split(",")]
    recipe = Recipe.from_file(RECIPE)
    (step,) = recipe.steps
    if args.epochs is not None:
        step = dataclasses.replace(step, epochs=args.epochs)
    data = load_dataset("mnist")
    if args.train_limit:
        data = dataclasses.replace(data, train=data.train.subset(args.train_limit))
    teacher = load_model("zoo:mnist-teacher")
    student = load_model("zoo:mnist-student").module
    rows = {"teacher": (errors(teacher.module, data.test), errors(teacher.module, data.val), None),
            "student alone": (errors(student, data.test), errors(student, data.val), None)}
    t_err, s_err = rows["teacher"][0], rows["student alone"][0]
    print(f"teacher {t_err} test errors, student alone {s_err}; recipe epochs {step.epochs}, alpha {step.alpha}, "
          f"lr {step.lr}", flush=True)
    for temperature in temperatures:
        started = time.perf_counter()
        variant = dataclasses.replace(recipe, steps=(dataclasses.replace(step, temperature=temperature),))
        result = run(apply_recipe(variant, teacher, data, measure_before=False))
        seconds = time.perf_counter() - started
        test = result.after.test.count - result.after.test.correct
        rows[f"distilled, T={temperature:g}"] = (test, errors(result.model, data.val), (seconds, result.compressed_bytes))
        print(f"T={temperature:g}: {test} test errors, {seconds:.0f} s, {result.compressed_bytes:,} B", flush=True)
        if args.json:  # after every run, so that a long benchmark stopped early keeps what it measured
            write_json(args.json, step, rows)
    print()
    print("| model | test errors (of 10,000) | validation errors (of 5,000) | gap closed | run time | .psz bytes |")
    print("|---|---|---|---|---|---|")
    for name, (test, val, extra) in rows.items():
        gap = "" if extra is None else f"{gap_closed(s_err, t_err, test):.0%}"
        run_time, size = ("", "") if extra is None else (f"{extra[0]:.0f} s", f"{extra[1]:,}")
        print(f"| {name} | {test} | {val} | {gap} | {run_time} | {size} |")


def write_json(path: str, step, rows: dict) -> None:
    Path(path).write_text(json.dumps({"epochs": step.epochs, "alpha": step.alpha, "lr": step.lr, "rows": {
        k: {"test_errors": v[0], "val_errors": v[1], "seconds": v[2][0] if v[2] else None,
            "psz_bytes": v[2][1] if v[2] else None} for k, v in rows.items()}}, indent=1))


if __name__ == "__main__":
    main()
