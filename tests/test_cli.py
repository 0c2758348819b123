"""The headless command line, run as a user runs it: a subprocess of `python main.py`."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import ROOT


def prunescope(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "main.py"), *args], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT)


@pytest.mark.parametrize("name, params, minimum", [("lenet300", 266_610, 0.982), ("lenet5", 431_080, 0.990)])
def test_inspect_zoo_models_reports_the_issue_numbers(tmp_path, name, params, minimum):
    report = tmp_path / "r.json"
    result = prunescope("inspect", f"zoo:{name}", "--data", "mnist", "--json", str(report))
    assert result.returncode == 0, result.stderr
    r = json.loads(report.read_text())
    assert r["params"] == params and r["bytes"] == params * 4
    assert r["metrics"]["test"]["count"] == 10_000 and r["metrics"]["test"]["accuracy"] >= minimum
    assert r["metrics"]["file_bytes"] > 0 and r["metrics"]["saved_bytes"] > params * 4
    for layer in r["layers"]:
        assert {"name", "type", "params", "sparsity", "weight_hist", "activation_nonzero"} <= layer.keys()
        assert sum(layer["weight_hist"]["counts"]) == layer["weight_stats"]["count"]
        units = layer["shape"][0]
        assert len(layer["activation_nonzero"]) == units
        assert all(0.0 <= v <= 1.0 for v in layer["activation_nonzero"])
    assert f"{params:,} parameters" in result.stdout and "test accuracy (mnist" in result.stdout


def test_inspect_without_data_uses_the_given_input_shape(model_files, untouched):
    untouched(model_files["torchscript"])
    result = prunescope("inspect", str(model_files["torchscript"]), "--trust", "--input-shape", "8,1,28,28",
                        "--quiet")
    assert result.returncode == 0, result.stderr
    assert "266,610 parameters" in result.stdout and "latency:" in result.stdout
    assert "activations not measured" not in result.stdout  # tapped from the TorchScript graph (no hooks run in it)
    assert "fc1    Linear" in result.stdout and "/300" in result.stdout  # the dead-unit column of fc1 is filled


def test_inspect_with_reference_reports_fidelity(model_files):
    result = prunescope("inspect", str(model_files["state_dict"]), "--reference", "zoo:lenet300", "--data",
                        "mnist", "--limit", "2000", "--quiet")
    assert result.returncode == 0, result.stderr
    assert "top-1 agreement 100.00%, KL 0, cosine 1.0000" in result.stdout


@pytest.mark.parametrize("args, message", [
    (("inspect", "missing.pt"), "missing.pt: no such file or folder"),
    (("inspect", "zoo:nope"), "unknown zoo model 'nope'"),
    (("inspect", "zoo:lenet300", "--data", "nowhere"), "unknown data set 'nowhere'"),
    (("inspect", "zoo:lenet300", "--data", "fashion-mnist", "--input-shape", "x"), "comma-separated"),
])
def test_bad_input_exits_2_with_one_line(args, message):
    result = prunescope(*args)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and message in result.stderr
    assert result.stdout == ""


def test_bad_files_exit_2_and_stay_untouched(model_files, untouched):
    for kind, message in (("evil", "--trust"), ("truncated", "truncated or corrupt zip"),
                          ("text", "Formats tried"), ("no_params", "--trust"), ("torchscript", "--trust"),
                          ("export", "--trust")):
        untouched(model_files[kind])
        result = prunescope("inspect", str(model_files[kind]), "--quiet")
        assert result.returncode == 2 and message in result.stderr, (kind, result.stderr)
    assert not model_files["marker"].exists()


def test_model_without_inputs_is_still_inspected(model_files):
    result = prunescope("inspect", str(model_files["torchscript"]), "--trust", "--quiet")
    assert result.returncode == 0, result.stderr
    assert "266,610 parameters" in result.stdout and "note: no data set and no input shape" in result.stdout
    assert "test accuracy" not in result.stdout


def test_model_that_does_not_fit_the_data(tmp_path):
    import torch

    rgb = tmp_path / "rgb.ts.pt"
    torch.jit.save(torch.jit.script(torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Flatten())), rgb)
    result = prunescope("inspect", str(rgb), "--trust", "--data", "mnist", "--quiet")
    assert result.returncode == 2 and "cannot run on data set mnist (examples shaped (1, 28, 28))" in result.stderr


def test_json_never_overwrites_an_input(model_files, untouched):
    untouched(model_files["state_dict"], model_files["legacy"])
    result = prunescope("inspect", str(model_files["state_dict"]), "--json", str(model_files["state_dict"]))
    assert result.returncode == 2 and "would overwrite an input" in result.stderr
    result = prunescope("inspect", str(model_files["state_dict"]), "--reference", str(model_files["legacy"]),
                        "--json", str(model_files["legacy"]))
    assert result.returncode == 2 and "would overwrite an input" in result.stderr
    result = prunescope("inspect", "zoo:lenet300", "--json", str(ROOT / "resources" / "checkpoints" / "lenet300.pt"))
    assert result.returncode == 2 and "shipped resources" in result.stderr


def test_help_and_zoo_listing():
    result = prunescope("--help")
    assert result.returncode == 0 and "inspect" in result.stdout and "train-zoo" in result.stdout
    result = prunescope("zoo")
    assert result.returncode == 0 and "zoo:lenet300" in result.stdout and "zoo:resnet8-fashion" in result.stdout


def test_progress_prints_each_tenth_and_every_restart_of_a_stage(capsys):
    from core.cli import _progress_printer
    from core.progress import Progress

    show = _progress_printer(True)
    for round_ in range(2):  # an iterative prune trains once per round: the second round is shown too
        for done in range(0, 101, 5):
            show(Progress("train", done, 100, f"round {round_ + 1}"))
    lines = capsys.readouterr().err.splitlines()
    assert [line.split()[1] for line in lines] == [f"{p}%" for p in range(0, 101, 10)] * 2
    assert lines[-1].endswith("round 2")


def test_a_dataparallel_state_dict_compresses_with_a_note(tmp_path, untouched):
    import torch

    from core.eval.zoo import load_zoo_model
    from core.io import load_model

    model = torch.nn.DataParallel(load_zoo_model("lenet300")[0])
    path = tmp_path / "dp.pt"
    torch.save(model.state_dict(), path)
    untouched(path)
    recipe = tmp_path / "r.yaml"
    recipe.write_text("steps: [{kind: prune_magnitude, sparsity: 0.5}, {kind: encode}]\n")
    result = prunescope("compress", str(path), "--recipe", str(recipe), "--out", str(tmp_path / "out"), "--quiet")
    assert result.returncode == 0, result.stderr
    assert "note: the weights' names carried the prefix 'module.' (DataParallel" in result.stderr
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    reloaded = load_model(str(tmp_path / "out" / report["file"]))
    assert [n for n, _ in reloaded.module.named_parameters()] == [n for n, _ in model.module.named_parameters()]
    assert (reloaded.module.fc1.weight == 0).float().mean().item() == pytest.approx(0.5, abs=0.01)
