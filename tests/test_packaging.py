"""README's commands are what CI runs, and the install declares what the code imports."""

from __future__ import annotations

import re
import tomllib

from tests.conftest import ROOT


def readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    return [line for line in re.findall(r"```\n(.*?)\n```", text, flags=re.S) if line.startswith("python3.11 -m venv")]


def test_readme_has_the_two_set_up_commands():
    studio, tests = readme_commands()[:2]
    assert studio.endswith("pip install -e . && python main.py")
    assert tests.endswith('pip install -e ".[test]" && pip install --no-deps onnx2torch==1.5.15 && python -m pytest')
    for command in (studio, tests):
        assert "pip install torch==2.13.0 && pip install -e" in command  # the CPU build comes first


def test_ci_runs_the_readme_test_command_step_by_step():
    tests = readme_commands()[1].replace(".venv", ".ci/venv")
    ci_lines = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    steps = tests.split(" && ")
    positions = [ci_lines.index(step) for step in steps]  # ValueError names a step CI does not run
    assert positions == sorted(positions)


def test_pyproject_keeps_an_ordinary_torch_range_and_excludes_the_broken_qt():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    deps = project["dependencies"]
    assert any(d.startswith("torch>=") and "==" not in d for d in deps)
    assert any(d.startswith("PySide6-Essentials") and "!=6.12.0" in d for d in deps)
    assert "transformers" in " ".join(project["optional-dependencies"]["test"])
