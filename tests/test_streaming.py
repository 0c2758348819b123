"""Streaming inspection of weights with no architecture: ``.safetensors`` files and folders of shards.

The streamed figures must equal an in-memory inspection of the same tensors (same statistic functions),
hostile headers get one line naming the field, and the files are only read. Memory is measured in
bench/bench_stream.py, not here."""

from __future__ import annotations

import json
import re
import struct

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from core.analysis import streaming
from core.analysis.inspection import WEIGHTS_ONLY, inspect_model
from core.analysis.inventory import inventory
from core.analysis.stats import weight_stats
from core.io import LoadOptions, ModelLoadError, load_model
from core.progress import run
from tests.test_cli import prunescope


def tensors(big: bool = False) -> dict[str, torch.Tensor]:
    """fp32, fp16 and bf16 layers with biases, exact zeros (+0 and -0) and a norm; ``big``: over the 2**21
    values from which the compiled kernel counts and derives."""
    g = torch.Generator().manual_seed(0)
    rows = 1600 if big else 120
    fc1 = torch.randn(rows, 784, generator=g)
    fc1[::7, ::3] = 0.0
    fc1[1, 1] = -0.0
    half = (torch.randn(100, rows, generator=g) * 0.05).half()
    half[:, :10] = 0
    return {"fc1.weight": fc1, "fc1.bias": torch.zeros(rows), "fc2.weight": half, "fc2.bias": torch.randn(100).half(),
            "blocks.0.proj.weight": torch.randn(64, 100, generator=g).to(torch.bfloat16),
            "blocks.0.norm.weight": torch.ones(64), "blocks.0.norm.bias": torch.zeros(64), "scale": torch.tensor(2.0)}


def as_module(state: dict[str, torch.Tensor]) -> nn.Module:
    """A module tree owning ``state``'s tensors as parameters under the same names."""
    root = nn.Module()
    for name, value in state.items():
        *path, leaf = name.split(".")
        owner = root
        for part in path:
            if not hasattr(owner, part):
                owner.add_module(part, nn.Module())
            owner = getattr(owner, part)
        owner.register_parameter(leaf, nn.Parameter(value.clone(), requires_grad=False))
    return root


def assert_same_figures(streamed, model: nn.Module) -> None:
    memory = run(weight_stats(model))
    expected = {info.name: info for info in inventory(model).layers}
    assert {info.name for info in streamed.inventory.layers} == set(expected) == set(memory) == set(streamed.weights)
    for info in streamed.inventory.layers:
        other = expected[info.name]
        assert (info.shape, info.params, info.bytes, info.sparsity, info.dtype) == \
            (other.shape, other.params, other.bytes, other.sparsity, other.dtype), info.name
        a, b = streamed.weights[info.name], memory[info.name]
        for field in ("count", "zeros", "nonfinite", "min", "max", "mean", "std", "abs_max", "near_zero", "first_bucket"):
            assert getattr(a, field) == getattr(b, field), (info.name, field)
        for hist in ("hist", "abs_hist", "log_hist"):
            assert np.array_equal(getattr(a, hist).edges, getattr(b, hist).edges)
            assert np.array_equal(getattr(a, hist).counts, getattr(b, hist).counts), (info.name, hist)
        assert np.array_equal(a.magnitude_counts, b.magnitude_counts)
    memory_inventory = inventory(model)
    assert (streamed.inventory.params, streamed.inventory.bytes, streamed.inventory.zeros) == \
        (memory_inventory.params, memory_inventory.bytes, memory_inventory.zeros)


@pytest.mark.parametrize("big", [False, True], ids=["numpy-derivation", "compiled-kernel"])
def test_streamed_statistics_equal_the_in_memory_ones(tmp_path, monkeypatch, big, untouched):
    state = tensors(big)
    path = tmp_path / "w.safetensors"
    save_file(state, path)
    untouched(path)
    monkeypatch.setattr(streaming, "CHUNK_ELEMENTS", 5000)  # many slices per tensor, a row at a time for fc1
    loaded = load_model(path)
    assert loaded.streamed is not None and loaded.format == "safetensors"
    assert next(loaded.module.parameters(), None) is None  # no model was built
    result = run(inspect_model(loaded))
    assert_same_figures(result, as_module(state))
    assert result.activations == {} and result.test is None and result.latency is None and result.cost is None
    assert result.notes[-1] == WEIGHTS_ONLY
    layer = result.inventory.layer("fc2")
    assert layer.bytes == 100 * len(state["fc1.weight"]) * 2 + 100 * 2 and layer.dtype == "float16"  # at its dtype


def shards(tmp_path, index: bool):
    state = tensors()
    folder = tmp_path / "shards"
    folder.mkdir()
    names = list(state)
    parts = {"model-00001-of-00002.safetensors": names[:3], "model-00002-of-00002.safetensors": names[3:]}
    for file, keys in parts.items():
        save_file({k: state[k] for k in keys}, folder / file)
    if index:
        weight_map = {k: file for file, keys in parts.items() for k in keys}
        (folder / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    return folder, state


@pytest.mark.parametrize("index", [True, False], ids=["with-index", "without-index"])
def test_a_folder_of_shards_inspects_as_one_model(tmp_path, index, untouched):
    folder, state = shards(tmp_path, index)
    untouched(folder)
    loaded = load_model(folder)
    assert loaded.name == "shards" and len(loaded.streamed.entries) == len(state)
    assert "in 2 shards" in loaded.meta["notes"][0]
    assert_same_figures(run(inspect_model(loaded)), as_module(state))


def test_an_index_that_does_not_match_its_shards_is_refused(tmp_path):
    folder, _ = shards(tmp_path, index=True)
    index = folder / "model.safetensors.index.json"
    data = json.loads(index.read_text())
    data["weight_map"]["fc1.weight"] = "model-00002-of-00002.safetensors"
    index.write_text(json.dumps(data))
    with pytest.raises(ModelLoadError, match="'fc1.weight' is not where the index says"):
        load_model(folder)
    data["weight_map"]["fc1.weight"] = "../elsewhere.safetensors"
    index.write_text(json.dumps(data))
    with pytest.raises(ModelLoadError, match="names shard '../elsewhere.safetensors', which is not a file"):
        load_model(folder)


def raw_file(path, header: dict, data: bytes = b"", length: int | None = None) -> None:
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw) if length is None else length) + raw + data)


GOOD = {"a.weight": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]}}


@pytest.mark.parametrize("header, data, length, message", [
    (None, b"", None, "shorter than the 8-byte header length"),
    (GOOD, bytes(16), 10_000, "header length 10,000 bytes, beyond the file's"),
    (GOOD, bytes(8), None, "has data_offsets [0, 16], outside the 8 bytes of data"),  # a truncated file
    ({"a.weight": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 99]}}, bytes(16), None, "outside the 16"),
    ({"a.weight": {"dtype": "Q4", "shape": [2, 2], "data_offsets": [0, 16]}}, bytes(16), None, "has dtype 'Q4'"),
    ({"a.weight": {"dtype": "F16", "shape": [2, 2], "data_offsets": [0, 16]}}, bytes(16), None,
     "shape [2, 2] of F16 is 8 bytes, but its data_offsets span 16"),
    ({"a.weight": {"dtype": "F32", "shape": [2, -2], "data_offsets": [0, 16]}}, bytes(16), None, "not a list of non-neg"),
    ({**GOOD, "b.weight": {"dtype": "F32", "shape": [2], "data_offsets": [8, 16]}}, bytes(16), None, "overlap"),
    ({"a.weight": [1, 2]}, bytes(16), None, "is not described by a JSON object"),
    ({"__metadata__": {"x": 1}, **GOOD}, bytes(16), None, "__metadata__ is not a map of strings"),
    ({}, b"", None, "holds no tensors"),
])
def test_a_hostile_header_gets_one_line_naming_the_field(tmp_path, header, data, length, message):
    path = tmp_path / "bad.safetensors"
    if header is None:
        path.write_bytes(b"\x10\x00")
    else:
        raw_file(path, header, data, length)
    with pytest.raises(ModelLoadError, match=message.replace("[", r"\[").replace("]", r"\]")) as caught:
        load_model(path)
    assert "\n" not in str(caught.value)


def test_a_header_that_is_not_json_is_refused(tmp_path):
    path = tmp_path / "bad.safetensors"
    path.write_bytes(struct.pack("<Q", 4) + b"\xff{{{")
    with pytest.raises(ModelLoadError, match="the header is not UTF-8 JSON"):
        load_model(path)


def test_with_an_architecture_the_weights_load_as_a_model(tmp_path):
    zoo = load_model("zoo:lenet300")
    path = tmp_path / "lenet.safetensors"
    save_file({k: v.contiguous() for k, v in zoo.module.state_dict().items()}, path)
    loaded = load_model(path, LoadOptions(arch="lenet300"))
    assert loaded.streamed is None and loaded.meta["arch"] == "lenet300"
    assert all(torch.equal(a, b) for a, b in zip(loaded.module.state_dict().values(), zoo.module.state_dict().values()))


def test_the_command_line_inspects_a_safetensors_file_and_refuses_to_compress_it(tmp_path, untouched):
    path = tmp_path / "w.safetensors"
    save_file(tensors(), path)
    untouched(path)
    report = tmp_path / "r.json"
    result = prunescope("inspect", str(path), "--json", str(report), "--quiet")
    assert result.returncode == 0, result.stderr
    assert "activations, accuracy and latency not run: weights only, no architecture" in result.stdout
    assert re.search(r"^fc1 +weights +120x784 +94,200 ", result.stdout, re.M)
    r = json.loads(report.read_text())
    assert r["model"]["weights_only"] is True and r["metrics"].get("test") is None
    fc1 = next(layer for layer in r["layers"] if layer["name"] == "fc1")
    assert fc1["activation_nonzero"] is None and sum(fc1["weight_hist"]["counts"]) == 120 * 784
    recipe = "resources/recipes/prune-quantize-no-training.yaml"
    refused = prunescope("compress", str(path), "--recipe", recipe, "--out", str(tmp_path / "out"), "--quiet")
    errors = [line for line in refused.stderr.splitlines() if line.startswith("prunescope: error:")]
    assert refused.returncode == 2 and len(errors) == 1
    assert "holds weights only, with no architecture" in errors[0] and "--arch" in errors[0]
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
    raw_file(tmp_path / "bad.safetensors", GOOD, bytes(8))
    bad = prunescope("inspect", str(tmp_path / "bad.safetensors"))
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "not a valid safetensors file" in bad.stderr
