"""Sweeps: the grid, the local process pool and a real local Ray cluster give the same figures as compressing
in this process, results stream as they finish, cancel stops every worker, and the command line writes them.

The 12-recipe grid (4 sparsities x 3 bit widths, no training) runs on LeNet-300-100, measured on the first
300 MNIST test images. Ray tests are marked ``ray`` and skip where the extra is not installed."""

from __future__ import annotations

import csv
import json
import logging
import multiprocessing
import os
import subprocess
import sys
import time

import pytest

from core.pipeline.apply import apply_recipe
from core.progress import Partial, Progress, run
from core.recipe import Recipe
from core.sweep import LocalPool, SweepError, expand_grid, parse_axis, sweep
from core.sweep.jobs import limited, summarise
from core.sweep.ray_backend import RayBackend, ray_available
from tests.conftest import ROOT

BASE = ROOT / "resources" / "recipes" / "prune-quantize-no-training.yaml"
GRID = ("prune_magnitude.sparsity=0.5,0.7,0.8,0.9", "quantize.bits=4,5,6")
LIMIT = 300


def needs_ray(test):
    """Marked ``ray``, and skipped, saying why, where the extra is not installed."""
    skip = pytest.mark.skipif(not ray_available(), reason='Ray is not installed (the [ray] extra: pip install -e ".[ray]")')
    return pytest.mark.ray(skip(test))


def grid_jobs(*axes: str):
    return expand_grid(Recipe.from_file(BASE), [parse_axis(a) for a in axes or GRID])


def drain(task):
    """Every item a sweep yields, and its return value."""
    items = []
    try:
        while True:
            items.append(next(task))
    except StopIteration as stop:
        return items, stop.value


def results_of(items):
    return [item.value for item in items if isinstance(item, Partial)]


def prunescope(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "main.py"), *args], capture_output=True, text=True,
                          timeout=300, cwd=ROOT)


# ---------------------------------------------------------------------------------------------- the grid
def test_the_grid_is_every_combination_in_order_with_clear_names():
    jobs = grid_jobs()
    assert len(jobs) == 12 and [j.index for j in jobs] == list(range(12))
    assert [j.name for j in jobs[:4]] == ["sparsity=0.5 bits=4", "sparsity=0.5 bits=5", "sparsity=0.5 bits=6",
                                          "sparsity=0.7 bits=4"]
    last = jobs[-1]
    assert last.settings == (("prune_magnitude.sparsity", 0.9), ("quantize.bits", 6))
    assert last.recipe.name == "prune-quantize-no-training [sparsity=0.9 bits=6]"
    prune, quantize, encode = last.recipe.steps
    assert (prune.sparsity, quantize.bits, quantize.method, encode.huffman) == (0.9, 6, "kmeans", True)
    assert len({j.recipe for j in jobs}) == 12  # each a recipe of its own
    assert Recipe.from_file(BASE).steps[0].sparsity == 0.7  # the base is left as it was


def test_an_axis_named_twice_over_a_field_names_each_axis_by_its_key():
    base = Recipe.from_dict({"steps": [{"kind": "prune_magnitude", "sparsity": 0.5},
                                       {"kind": "quantize", "bits": 5, "method": "kmeans"}, {"kind": "encode"}]})
    jobs = expand_grid(base, [parse_axis("quantize.method=kmeans,uniform"), parse_axis("encode.huffman=true,false")])
    assert [j.name for j in jobs] == ["method=kmeans huffman=true", "method=kmeans huffman=false",
                                      "method=uniform huffman=true", "method=uniform huffman=false"]
    assert jobs[3].recipe.steps[1].method == "uniform" and jobs[3].recipe.steps[2].huffman is False


@pytest.mark.parametrize("axes, message", [
    (("quantize.bits=4,9",), "--grid quantize.bits=9: steps[1].bits: "),
    (("prune_structured.amount=0.5",), "the recipe has no prune_structured step (its steps: prune_magnitude, "
                                       "quantize, encode)"),
    (("quantize.bitz=4",), "unknown field for quantize"),
    (("quantize=4",), "write KIND.FIELD=V1,V2"),
    (("quantize.bits=4,,5",), "none empty"),
    (("quantize.bits=4,4",), "the value 4 is given twice"),
    (("quantize.layers=fc1",), "layers is not a setting"),
    (("quantize.bits=4", "quantize.bits=5"), "given twice; put all its values in one --grid"),
    (("prune_magnitude.sparsity=0.5,1.5",), "--grid prune_magnitude.sparsity=1.5: steps[0].sparsity: must be"),
])
def test_a_bad_axis_is_refused_in_one_line(axes, message):
    with pytest.raises(SweepError) as caught:
        grid_jobs(*axes)
    assert message in str(caught.value) and "\n" not in str(caught.value)


# ---------------------------------------------------------------------------------------------- local pool
@pytest.fixture(scope="module")
def pool_run(lenet300, mnist):
    """The 12 recipes on two local worker processes: every item the sweep yielded, and what it returned."""
    return drain(sweep(grid_jobs(), lenet300, mnist, LocalPool(workers=2), limit=LIMIT))


def test_the_pool_runs_every_recipe_and_streams_each_result_and_the_workers_progress(pool_run):
    items, results = pool_run
    assert [r.index for r in results] == list(range(12))
    assert sorted(r.index for r in results_of(items)) == list(range(12))  # each as a Partial as it finished
    assert {r.count for r in results} == {LIMIT} and all(r.correct is not None for r in results)
    messages = [item.message for item in items if isinstance(item, Progress)]
    assert any("step 2/3: quantize" in m for m in messages)  # apply_recipe's own progress, from a worker
    assert items[-1].done == items[-1].total  # the last report: all done
    by = {r.settings: r for r in results}
    for bits in (4, 5, 6):  # the more pruned, the smaller the file
        sizes = [by[(("prune_magnitude.sparsity", s), ("quantize.bits", bits))].compressed_bytes
                 for s in (0.5, 0.7, 0.8, 0.9)]
        assert sizes == sorted(sizes, reverse=True) and len(set(sizes)) == 4
    assert {r.worker.rpartition(":")[2] for r in results} != {str(os.getpid())}
    assert multiprocessing.active_children() == []  # the pool is gone once the sweep ends


def test_the_pool_gives_the_figures_of_compressing_in_this_process(pool_run, lenet300, mnist):
    _items, results = pool_run
    job = grid_jobs()[7]  # sparsity 0.8, 5 bits
    here = run(apply_recipe(job.recipe, lenet300, limited(mnist, LIMIT), measure_before=False))
    assert summarise(job, here) == results[7]  # bytes, accuracy, loss, parameters, MACs: exactly
    assert results[7].compressed_bytes == len(here.file_bytes) and results[7].correct == here.after.test.correct
    assert results[7].accuracy == here.after.test.accuracy


def test_closing_the_sweep_stops_the_pool_and_leaves_no_process(lenet300, mnist):
    pool = LocalPool(workers=1)
    task = sweep(grid_jobs(), lenet300, mnist, pool, limit=LIMIT)
    first = next(item for item in task if isinstance(item, Partial))
    assert multiprocessing.active_children()  # the worker runs
    task.close()
    assert multiprocessing.active_children() == []
    assert first.value.index == 0 and pool.stopped >= 10  # the rest never ran, or stopped halfway


def test_a_grid_that_cannot_run_is_refused_before_any_worker_starts(lenet300):
    trains = Recipe.from_dict({"steps": [{"kind": "prune_magnitude", "sparsity": 0.5},
                                         {"kind": "finetune", "epochs": 1}, {"kind": "encode"}]})
    jobs = expand_grid(trains, [parse_axis("prune_magnitude.sparsity=0.5,0.6")])
    with pytest.raises(SweepError, match=r"^sparsity=0.5: steps\[1\] \(finetune\) needs a labelled data set"):
        next(sweep(jobs, lenet300, None, LocalPool(workers=1)))
    assert multiprocessing.active_children() == []
    with pytest.raises(SweepError, match="--workers must be a whole number of at least 1"):
        LocalPool(workers=0)


# ---------------------------------------------------------------------------------------------- command line
def test_the_command_line_writes_the_csv_and_json_with_the_pools_figures(pool_run, tmp_path, untouched, capsys):
    untouched(BASE)
    out_csv, out_json = tmp_path / "sweep.csv", tmp_path / "sweep.json"
    from core.cli import main

    assert main(["sweep", "zoo:lenet300", "--recipe", str(BASE), "--grid", "prune_magnitude.sparsity=0.5,0.9",
                 "--grid", "quantize.bits=4", "--workers", "1", "--limit", str(LIMIT), "--csv", str(out_csv),
                 "--json", str(out_json)]) == 0
    result = capsys.readouterr()
    rows = list(csv.DictReader(out_csv.read_text().splitlines()))
    pool = {r.name: r for r in pool_run[1]}
    assert [row["name"] for row in rows] == ["sparsity=0.5 bits=4", "sparsity=0.9 bits=4"]
    for row in rows:
        assert int(row["bytes"]) == pool[row["name"]].compressed_bytes
        assert int(row["correct"]) == pool[row["name"]].correct and row["metric"] == "test accuracy"
    assert rows[0]["prune_magnitude.sparsity"] == "0.5" and rows[0]["quantize.bits"] == "4"
    report = json.loads(out_json.read_text())
    assert report["format"] == "prunescope-sweep/1" and [r["pareto"] for r in report["results"]] == [True, True]
    assert "sparsity=0.9 bits=4" in result.out and "2 recipes on 1 local worker process" in result.out
    assert "sweep: " in result.err  # progress


@pytest.mark.parametrize("args, message", [
    (("--grid", "quantize.bits=12"), "--grid quantize.bits=12: steps[1].bits: "),
    (("--grid", "quantize.bits=4", "--ray", "nowhere"), "--ray nowhere: not an address"),
    (("--grid", "quantize.bits=4", "--workers", "0"), "--workers must be a whole number of at least 1"),
    (("--grid", "quantize.bits=4", "--limit", "0"), "--limit must be at least 1"),
])
def test_the_command_line_refuses_bad_input_in_one_line(tmp_path, args, message):
    from core.cli import main

    out = tmp_path / "s.csv"
    assert main(["sweep", "zoo:lenet300", "--recipe", str(BASE), *args, "--csv", str(out)]) == 2
    assert not out.exists()


def test_without_ray_installed_the_command_line_says_how_to_install_it(tmp_path, monkeypatch, capsys):
    from core.cli import main
    from core.sweep import ray_backend

    monkeypatch.setattr(ray_backend, "ray_available", lambda: False)
    assert main(["sweep", "zoo:lenet300", "--recipe", str(BASE), "--grid", "quantize.bits=4", "--ray", "auto",
                 "--csv", str(tmp_path / "s.csv")]) == 2
    assert capsys.readouterr().err == f"prunescope: error: {ray_backend.RAY_MISSING}\n"


@needs_ray
def test_an_address_where_no_cluster_answers_is_refused_at_once(tmp_path, capsys):
    from core.cli import main

    assert main(["sweep", "zoo:lenet300", "--recipe", str(BASE), "--grid", "quantize.bits=4",
                 "--ray", "127.0.0.1:1", "--csv", str(tmp_path / "s.csv")]) == 2
    assert "--ray 127.0.0.1:1: does not answer" in capsys.readouterr().err


@needs_ray
def test_auto_where_the_cluster_it_finds_is_gone_is_refused_at_once(tmp_path, capsys, monkeypatch):
    from core.cli import main

    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:1")  # as a cluster killed, not stopped, leaves it
    assert main(["sweep", "zoo:lenet300", "--recipe", str(BASE), "--grid", "quantize.bits=4",
                 "--ray", "auto", "--csv", str(tmp_path / "s.csv")]) == 2
    assert "--ray auto: the cluster it finds, 127.0.0.1:1, does not answer" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------- Ray
@pytest.fixture(scope="module")
def ray_cluster():
    """A real local Ray cluster of two CPUs, for this module's Ray tests."""
    import ray

    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level=logging.WARNING)  # a new one
    yield ray
    ray.shutdown()


@needs_ray
def test_a_ray_sweep_gives_the_pools_figures_and_streams_progress(ray_cluster, pool_run, lenet300, mnist):
    items, results = drain(sweep(grid_jobs(), lenet300, mnist, RayBackend("auto"), limit=LIMIT))
    assert results == pool_run[1]  # every figure of all 12 recipes, exactly
    assert sorted(r.index for r in results_of(items)) == list(range(12))
    assert any("step 2/3: quantize" in item.message for item in items if isinstance(item, Progress))
    assert all(r.worker.rpartition(":")[2] != str(os.getpid()) for r in results)  # ran in Ray workers
    assert ray_cluster.is_initialized()  # a connection the process had is left as it was


@needs_ray
def test_closing_a_ray_sweep_cancels_its_tasks(ray_cluster, lenet300, mnist):
    backend = RayBackend("auto")
    task = sweep(grid_jobs(), lenet300, mnist, backend, limit=LIMIT)
    first = next(item for item in task if isinstance(item, Partial))
    task.close()
    assert backend.stopped >= 8  # Ray says so: cancelled, queued or halfway (two CPUs: two may have ended meanwhile)
    cpus = ray_cluster.cluster_resources()["CPU"]
    for _ in range(100):  # the scheduler hands back the CPUs of the cancelled tasks
        if ray_cluster.available_resources().get("CPU") == cpus:
            break
        time.sleep(0.1)
    assert ray_cluster.available_resources().get("CPU") == cpus
    assert 0 <= first.value.index < 12


@needs_ray
def test_the_command_line_sweeps_twelve_recipes_on_the_ray_cluster(ray_cluster, pool_run, tmp_path):
    address = ray_cluster.get_runtime_context().gcs_address
    out_csv = tmp_path / "ray.csv"
    result = prunescope("sweep", "zoo:lenet300", "--recipe", str(BASE), "--grid", GRID[0], "--grid", GRID[1],
                        "--limit", str(LIMIT), "--ray", address, "--csv", str(out_csv), "--quiet")
    assert result.returncode == 0, result.stderr
    rows = list(csv.DictReader(out_csv.read_text().splitlines()))
    assert [(row["name"], int(row["bytes"]), int(row["correct"])) for row in rows] == \
        [(r.name, r.compressed_bytes, r.correct) for r in pool_run[1]]
    assert f"12 recipes on Ray ({address}, 2 CPUs)" in result.stdout
