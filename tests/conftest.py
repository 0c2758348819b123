"""Shared fixtures: real zoo models, the real MNIST, and model files of every format written to tmp dirs."""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")  # before anything imports Qt
ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import pytest  # noqa: E402
import torch  # noqa: E402

from core.eval.data import load_dataset  # noqa: E402
from core.io import load_model  # noqa: E402
from tests import factories  # noqa: E402


@pytest.fixture(scope="session")
def mnist():
    return load_dataset("mnist")


@pytest.fixture(scope="session")
def lenet300():
    return load_model("zoo:lenet300")


@pytest.fixture(scope="session")
def model_files(tmp_path_factory) -> dict[str, Path]:
    """One real LeNet-300-100 file per format, plus bad files, written once per test session."""
    return factories.write_model_files(tmp_path_factory.mktemp("models"))


def digest(path: Path) -> str:
    if path.is_dir():
        return hashlib.sha256(b"".join(digest(p).encode() for p in sorted(path.rglob("*")) if p.is_file())).hexdigest()
    return hashlib.sha256(path.read_bytes()).hexdigest() + str(path.stat().st_mtime_ns)


@pytest.fixture
def untouched():
    """Call with paths; asserts at teardown that none of them changed (content and mtime)."""
    watched: dict[Path, str] = {}

    def watch(*paths: Path) -> None:
        for p in paths:
            watched[Path(p)] = digest(Path(p))

    yield watch
    for path, before in watched.items():
        assert digest(path) == before, f"{path} was modified"


def same_outputs(model: torch.nn.Module, x: torch.Tensor, reference: torch.Tensor) -> bool:
    with torch.inference_mode():
        return torch.equal(model(x), reference)
