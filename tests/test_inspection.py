"""Inspection edge cases: tiny data sets, missing data, non-finite outputs, and atomic, mode-keeping saves."""

from __future__ import annotations

import json
import os
import stat

import numpy as np
import torch

from core.eval.data import load_dataset
from core.fileio import atomic_write
from core.analysis.inspection import inspect_model, open_for_inspection
from core.io import load_model
from core.progress import run
from core.report.reports import write_json


def test_a_data_set_too_small_for_a_validation_split(tmp_path):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "tiny.npz", x_train=rng.integers(0, 255, (4, 28, 28), dtype=np.uint8),
             y_train=np.array([0, 1, 2, 9]), x_test=rng.integers(0, 255, (3, 28, 28), dtype=np.uint8),
             y_test=np.arange(3))
    data = load_dataset(str(tmp_path / "tiny.npz"))
    assert len(data.val) == 0
    result = run(inspect_model(load_model("zoo:lenet300"), data))
    assert result.activations["fc1"].observations == 3 and result.test.count == 3


def test_a_zoo_model_whose_data_set_is_missing_still_opens(monkeypatch, tmp_path):
    monkeypatch.setenv("PRUNESCOPE_FASHION_MNIST", str(tmp_path / "absent"))
    load_dataset.cache_clear()
    try:
        loaded, data = run(open_for_inspection("zoo:lenet300-fashion"))
        assert data is None and "Fashion-MNIST is not installed" in loaded.meta["notes"][0]
        result = run(inspect_model(loaded, None))
        assert result.inventory.params == 266_610 and "Fashion-MNIST" in result.notes[0]
    finally:
        load_dataset.cache_clear()


def test_non_finite_metrics_are_written_as_null(tmp_path, mnist):
    loaded = load_model("zoo:lenet300")
    with torch.no_grad():
        loaded.module.fc3.bias[0] = float("inf")
    result = run(inspect_model(loaded, mnist))
    write_json(result, tmp_path / "r.json")
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["metrics"]["test"]["loss"] is None and report["metrics"]["test"]["count"] == 10_000


def test_atomic_write_keeps_the_files_mode(tmp_path):
    path = tmp_path / "out.bin"
    path.write_bytes(b"old")
    os.chmod(path, 0o644)
    with atomic_write(path) as f:
        f.write(b"new")
    assert path.read_bytes() == b"new" and stat.S_IMODE(path.stat().st_mode) == 0o644
    fresh = tmp_path / "fresh.bin"
    with atomic_write(fresh) as f:
        f.write(b"x")
    assert stat.S_IMODE(fresh.stat().st_mode) & 0o044  # readable by others, as a plain write under umask 022
