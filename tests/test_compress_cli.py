"""`python main.py compress`: the file on disk is the size the report says, and loads back as reported."""

from __future__ import annotations

import json

import pytest
import torch

from tests.test_cli import prunescope

QUICK = """
name: quick
steps:
  - {kind: prune_magnitude, sparsity: 0.9, overrides: {fc3: 0.5}}
  - {kind: finetune, epochs: 1, lr: 0.01}
  - {kind: quantize, method: kmeans, bits: 5}
  - {kind: encode}
"""


@pytest.fixture(scope="module")
def compressed(tmp_path_factory):
    folder = tmp_path_factory.mktemp("compress")
    recipe = folder / "quick.yaml"
    recipe.write_text(QUICK)
    result = prunescope("compress", "zoo:lenet300", "--recipe", str(recipe), "--out", str(folder / "out"),
                        "--export", "state_dict,torchscript,onnx", "--quiet", timeout=600)
    assert result.returncode == 0, result.stderr
    return folder / "out", result


def test_report_matches_the_file_on_disk(compressed):
    out, result = compressed
    report = json.loads((out / "report.json").read_text())
    psz = out / report["file"]
    assert report["compressed_bytes"] == psz.stat().st_size == report["accounting"]["total"]
    assert report["ratio"] == pytest.approx(report["original_bytes"] / report["compressed_bytes"])
    assert report["accounting"]["framing_bytes"] + report["accounting"]["header_bytes"] + sum(
        layer["bytes"] for layer in report["layers"]) == psz.stat().st_size
    fc1 = next(layer for layer in report["layers"] if layer["name"] == "fc1.weight")
    assert fc1["kept"] == pytest.approx(0.1, abs=1e-4) and fc1["index_bits"] >= 1 and fc1["weight_bits"] >= 5
    assert set(report["stages"]) == {"original", "pruned", "quantized", "huffman"}
    assert report["stages"]["huffman"] == psz.stat().st_size
    assert report["recipe"]["name"] == "quick" and report["metrics"]["before"]["test"]["accuracy"] == 0.9894
    assert f"{psz.stat().st_size:,} bytes" in result.stdout


def test_the_compressed_file_inspects_to_the_reported_accuracy(compressed):
    out, _ = compressed
    report = json.loads((out / "report.json").read_text())
    result = prunescope("inspect", str(out / report["file"]), "--data", "mnist", "--json", str(out / "i.json"),
                        "--quiet")
    assert result.returncode == 0, result.stderr
    inspected = json.loads((out / "i.json").read_text())
    assert inspected["metrics"]["test"] == report["metrics"]["after"]["test"]
    assert inspected["metrics"]["file_bytes"] == report["compressed_bytes"]
    assert inspected["sparsity"] > 0.85


def test_exports_load(compressed):
    out, _ = compressed
    state = torch.load(out / "lenet300.decompressed.pt", weights_only=True)
    assert (state["fc1.weight"] == 0).float().mean() > 0.89
    scripted = torch.jit.load(str(out / "lenet300.decompressed.ts.pt"))
    assert scripted(torch.rand(2, 1, 28, 28)).shape == (2, 10)
    onnx = pytest.importorskip("onnx")
    onnx.checker.check_model(onnx.load(str(out / "lenet300.decompressed.onnx")))


@pytest.mark.parametrize("recipe, message", [
    ("steps: [{kind: prune_magnitude, sparsity: 1.5}]", "steps[0].sparsity: must be a number in [0, 1)"),
    ("steps: [{kind: quantize, bits: 12}]", "steps[0].bits: must be an integer in [1, 8]"),
    ("steps: [{kind: prune_magnitude, layers: [conv1]}]", "steps[0].layers: pattern 'conv1' matches no layer"),
    ("steps: [{kind: sparsify}]", "steps[0].kind: unknown step 'sparsify'"),
])
def test_invalid_recipes_exit_2_before_any_work(tmp_path, recipe, message):
    path = tmp_path / "bad.yaml"
    path.write_text(recipe)
    result = prunescope("compress", "zoo:lenet300", "--recipe", str(path), "--out", str(tmp_path / "out"))
    assert result.returncode == 2 and message in result.stderr
    assert not (tmp_path / "out").exists()


def test_corrupt_compressed_files_are_refused(compressed, tmp_path):
    out, _ = compressed
    data = (out / "lenet300.psz").read_bytes()
    (tmp_path / "cut.psz").write_bytes(data[: len(data) // 2])
    (tmp_path / "flipped.psz").write_bytes(data[:200] + bytes([data[200] ^ 0x40]) + data[201:])
    for name in ("cut.psz", "flipped.psz"):
        result = prunescope("inspect", str(tmp_path / name), "--quiet")
        assert result.returncode == 2 and "not a valid compressed file" in result.stderr, result.stderr
