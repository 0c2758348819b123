"""One's own model on the command line: an architecture in a .py file of one's own (with or without
PYTHONPATH), the studio taking the same options, and structured pruning without an input shape."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from core.cli import build_parser
from tests.conftest import ROOT
from tests.factories import write_own_cnn
from tests.test_cli import prunescope


@pytest.fixture
def own(tmp_path):
    write_own_cnn(tmp_path / "mine")
    return tmp_path / "mine"


def test_an_architecture_named_by_its_file_needs_no_pythonpath(own):
    result = prunescope("inspect", str(own / "net.pt"), "--arch", f"{own / 'ownnet.py'}:make",
                        "--input-shape", "1,1,28,28", "--no-activations", "--quiet")
    assert result.returncode == 0, result.stderr
    assert "conv2" in result.stdout


def test_a_module_not_on_the_path_says_how_to_put_it_there(own):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run([sys.executable, str(ROOT / "main.py"), "inspect", str(own / "net.pt"), "--arch",
                             "ownnet:make", "--quiet"], capture_output=True, text=True, timeout=300, cwd=ROOT, env=env)
    assert result.returncode == 2 and result.stderr.strip().count("\n") == 0
    assert "No module named 'ownnet'" in result.stderr and "PYTHONPATH" in result.stderr
    assert "--arch path/to/ownnet.py:make" in result.stderr


def test_the_studio_takes_the_options_the_command_line_takes():
    args = build_parser().parse_args(["studio", "net.pt", "--arch", "mine.py:make", "--input-shape", "1,1,28,28",
                                      "--data", "mnist", "--trust"])
    assert (args.model, args.arch, args.input_shape, args.data, args.trust) == \
        ("net.pt", "mine.py:make", "1,1,28,28", "mnist", True)


def test_structured_pruning_of_ones_own_cnn_without_an_input_shape(own, tmp_path):
    recipe = tmp_path / "half.yaml"
    recipe.write_text("steps: [{kind: prune_structured, amount: 0.5}, {kind: encode}]\n")
    arch = f"{own / 'ownnet.py'}:make"
    result = prunescope("compress", str(own / "net.pt"), "--arch", arch, "--data", "mnist", "--recipe", str(recipe),
                        "--out", str(tmp_path / "out"), "--quiet")
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    again = prunescope("inspect", str(tmp_path / "out" / "net.psz"), "--arch", arch, "--no-activations", "--quiet")
    assert again.returncode == 0, again.stderr
    assert "4×1×3×3" in again.stdout or "4x1x3x3" in again.stdout or "(4, 1, 3, 3)" in again.stdout
