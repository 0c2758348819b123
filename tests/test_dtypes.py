"""float16 and bfloat16 models are read, measured, compressed and stored in their own dtype; ``--device``."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os

import numpy as np
import pytest
import torch

from core.analysis.inventory import inventory
from core.analysis.stats import weight_stats
from core.cli import main
from core.devices import DeviceError, placed, resolve_device, to_device
from core.eval.zoo import load_zoo_model
from core.io import LoadOptions, load_model
from core.progress import run
from tests.factories import Wrapped

HALVES = [torch.float16, torch.bfloat16]
NO_TRAINING = "resources/recipes/prune-quantize-no-training.yaml"
no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")


def _digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(params=HALVES, ids=["float16", "bfloat16"])
def half_state(request, tmp_path):
    model, _ = load_zoo_model("lenet300")
    path = tmp_path / "half.pt"
    torch.save(model.to(request.param).state_dict(), path)
    return path, request.param


def test_state_dict_loads_in_its_own_dtype(half_state):
    path, dtype = half_state
    loaded = load_model(str(path), LoadOptions(arch="lenet300"))
    stored = torch.load(path, weights_only=True)
    for name, tensor in loaded.module.state_dict().items():
        assert tensor.dtype == dtype and torch.equal(tensor, stored[name]), name
    rows = inventory(loaded.module).layers
    assert rows and all(row.bytes == row.params * 2 for row in rows)


def test_whole_pickle_loads_in_its_own_dtype(tmp_path):
    model = Wrapped().to(torch.bfloat16)
    path = tmp_path / "whole.pt"
    torch.save(model, path)
    loaded = load_model(str(path), LoadOptions(trust=True))
    assert {t.dtype for t in loaded.module.state_dict().values()} == {torch.bfloat16}
    assert sum(row.bytes for row in inventory(loaded.module).layers) == 2 * sum(p.numel() for p in model.parameters())


def test_inspect_reports_half_bytes_and_the_real_file_size(half_state, tmp_path):
    path, dtype = half_state
    report = tmp_path / "r.json"
    assert main(["inspect", str(path), "--arch", "lenet300", "--data", "mnist", "--limit", "300",
                 "--no-activations", "--quiet", "--device", "cpu", "--json", str(report)]) == 0
    r = json.loads(report.read_text())
    assert r["metrics"]["file_bytes"] == os.path.getsize(path)
    assert all(layer["bytes"] == layer["params"] * 2 for layer in r["layers"])
    assert r["metrics"]["test"]["accuracy"] > 0.95  # the model ran in its own dtype on float32 images


def test_compress_keeps_the_dtype_and_the_raw_tensors_bit_for_bit(half_state, tmp_path, capsys):
    path, dtype = half_state
    before = _digest(path)
    out = tmp_path / "out"
    assert main(["compress", str(path), "--arch", "lenet300", "--data", "mnist", "--recipe", NO_TRAINING,
                 "--out", str(out), "--quiet", "--device", "cpu"]) == 0
    assert _digest(path) == before  # the person's file is only read
    original = torch.load(path, weights_only=True)
    decoded = load_model(str(out / "half.psz"), LoadOptions()).module.state_dict()
    assert set(decoded) == set(original)
    for name, tensor in decoded.items():
        assert tensor.dtype == dtype, name
        if name.endswith("bias"):  # stored raw: the same bits
            assert torch.equal(tensor.view(torch.int16), original[name].view(torch.int16)), name
        else:  # quantized: 5-bit levels, pruned positions zero
            assert len(torch.unique(tensor)) <= 33
    report = json.loads((out / "report.json").read_text())
    assert report["original_bytes"] < 600_000  # the half model's size, not a float32 one (1.07 MB)


def test_bfloat16_statistics_equal_those_of_the_float32_upcast():
    model, _ = load_zoo_model("lenet300")
    model = model.to(torch.bfloat16)
    half = run(weight_stats(model))
    wide = run(weight_stats(model.float()))
    assert half.keys() == wide.keys()
    for name in half:
        _assert_same(dataclasses.asdict(half[name]), dataclasses.asdict(wide[name]), name)


def _assert_same(a, b, where: str) -> None:
    if isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            _assert_same(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, (np.ndarray, list, tuple)):
        np.testing.assert_array_equal(a, b, err_msg=where)
    else:
        assert a == b or (a != a and b != b), where  # NaN equals NaN here


def test_placed_casts_inputs_and_leaves_the_model_as_it_was():
    model = torch.nn.Linear(4, 2).half()
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    with placed(model) as running:
        out = running(torch.ones(3, 4))  # float32 inputs, float16 model
    assert out.dtype == torch.float16
    assert not model._forward_pre_hooks
    assert all(torch.equal(weights[k], v) for k, v in model.state_dict().items())
    with pytest.raises(RuntimeError):  # without it, the dtypes clash
        model(torch.ones(3, 4))


def test_to_device_casts_floats_only():
    batch = {"ids": torch.arange(3), "x": (torch.ones(2), [torch.zeros(1)])}
    moved = to_device(batch, torch.device("cpu"), torch.float16)
    assert moved["ids"].dtype == torch.int64
    assert moved["x"][0].dtype == torch.float16 and moved["x"][1][0].dtype == torch.float16


@no_cuda
def test_auto_is_the_cpu_without_cuda():
    assert resolve_device("auto") == torch.device("cpu")
    assert resolve_device(None) == torch.device("cpu")


@no_cuda
@pytest.mark.parametrize("text", ["cuda", "cuda:0", "CUDA:1"])
def test_cuda_without_cuda_is_one_clear_line(text):
    with pytest.raises(DeviceError, match="no CUDA device") as info:
        resolve_device(text)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("text", ["tpu", "cuda:x", "cpu:0", "gpu"])
def test_not_a_device(text):
    with pytest.raises(DeviceError, match="not a device"):
        resolve_device(text)


def test_cpu_is_the_cpu():
    assert resolve_device("cpu") == torch.device("cpu")


@no_cuda
def test_cli_refuses_cuda_before_any_work(tmp_path, capsys):
    report = tmp_path / "r.json"
    assert main(["inspect", "zoo:lenet300", "--device", "cuda", "--json", str(report)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--device cuda" in err
    assert not report.exists()
    out = tmp_path / "out"
    assert main(["compress", "zoo:lenet300", "--device", "cuda:0", "--recipe", NO_TRAINING, "--out", str(out)]) == 2
    assert not out.exists() or not any(out.iterdir())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_compress_on_cuda_matches_the_cpu(half_state, tmp_path):
    path, dtype = half_state
    results = {}
    for device in ("cuda", "cpu"):
        out = tmp_path / device
        assert main(["compress", str(path), "--arch", "lenet300", "--data", "mnist", "--recipe", NO_TRAINING,
                     "--out", str(out), "--quiet", "--device", device]) == 0
        results[device] = json.loads((out / "report.json").read_text())
    loaded = load_model(str(path), LoadOptions(arch="lenet300"))
    assert next(loaded.module.parameters()).device.type == "cpu"
    cuda, cpu = (results[d]["metrics"]["after"]["test"]["accuracy"] for d in ("cuda", "cpu"))
    assert abs(cuda - cpu) < 0.01
