"""The shape of the code: core never imports Qt, pyqtgraph or gui (by source and by a real import), core's
import graph has no cycle, every error the command line reports derives from one base, and every package
is packaged."""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
import subprocess
import sys
import tomllib

from tests.conftest import ROOT

FORBIDDEN = ("PySide6", "pyqtgraph", "superqt", "gui", "shiboken6")


def core_modules() -> dict[str, object]:
    """Every module under core/, recursively: dotted name -> path."""
    out = {}
    for path in sorted((ROOT / "core").rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def imports_of(name: str, path) -> set[str]:
    """The core modules ``name`` imports (a module, or a package's ``__init__``), at any depth of its code."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from . import x / from .mod import y
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{a.name}" for a in node.names)  # `from core.io import loading` names a module
    return found


def test_no_core_module_imports_qt_or_gui():
    offenders = []
    for name, path in core_modules().items():
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            offenders += [f"{name}: {n}" for n in names if n.split(".")[0] in FORBIDDEN]
    assert offenders == []


def test_importing_all_of_core_loads_no_qt():
    code = ("import importlib, pkgutil, sys, core\n"
            "for m in pkgutil.walk_packages(core.__path__, 'core.'):\n"
            "    importlib.import_module(m.name)\n"
            f"bad = [m for m in sys.modules if m.split('.')[0] in {FORBIDDEN!r}]\n"
            "print(bad); sys.exit(1 if bad else 0)")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def import_graph() -> dict[str, set[str]]:
    modules = core_modules()
    return {name: {m for m in imports_of(name, path) if m in modules and m != name} for name, path in modules.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str]:
    """One cycle of ``graph`` as a path that starts and ends at the same module, or [] when it has none."""
    state: dict[str, int] = {}  # 1: on the current path, 2: finished
    path: list[str] = []

    def visit(node: str) -> list[str]:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return []

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return []


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"b"}}) == []


def test_core_has_no_import_cycle():
    graph = import_graph()
    assert len(graph) > 40 and "core.io.compressed" in graph["core.io.loading"]  # the walk sees the tree
    assert find_cycle(graph) == []


def test_each_loader_imports_only_the_shared_io_types_and_helpers():
    graph = import_graph()
    shared = {"core.io.base", "core.io.files", "core.io.architectures", "core.io.pickle_scan", "core.io.program",
              "core.io.program_taps"}
    for name in ("zoo", "torchscript", "exported", "onnx", "state_dict", "safetensors_weights", "hf", "pickled",
                 "compressed"):
        own = {m for m in graph[f"core.io.{name}"] if m.startswith("core.io")}
        assert own <= shared, (name, own - shared)


def test_every_error_the_command_line_reports_derives_from_one_base():
    from core.errors import PrunescopeError
    from core.progress import Cancelled

    errors = []
    for info in pkgutil.walk_packages(importlib.import_module("core").__path__, "core."):
        module = importlib.import_module(info.name)
        errors += [cls for _, cls in inspect.getmembers(module, inspect.isclass)
                   if issubclass(cls, Exception) and cls.__module__ == module.__name__]
    assert len(errors) >= 12
    assert [cls.__name__ for cls in errors if not issubclass(cls, PrunescopeError) and cls is not Cancelled] == []
    cli = (ROOT / "core" / "cli.py").read_text()
    assert "except PrunescopeError" in cli and "ModelLoadError" not in cli


def test_every_package_is_packaged():
    from setuptools import find_packages

    find = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]
    packaged = set(find_packages(str(ROOT), include=find["include"]))
    folders = {".".join(p.parent.relative_to(ROOT).parts) for top in ("core", "gui")
               for p in (ROOT / top).rglob("__init__.py")}
    assert {"core.io", "core.methods", "gui.widgets"} <= folders <= packaged


def test_modules_stay_small():
    long = [f"{p.relative_to(ROOT)}: {n}" for p in list(ROOT.glob("core/**/*.py")) + list(ROOT.glob("gui/**/*.py"))
            if (n := len(p.read_text().splitlines())) > 450]
    assert long == []
