"""The one rule: core never imports Qt, pyqtgraph or gui (checked by source and by a real import)."""

from __future__ import annotations

import ast
import subprocess
import sys

from tests.conftest import ROOT

FORBIDDEN = ("PySide6", "pyqtgraph", "superqt", "gui", "shiboken6")


def test_no_core_module_imports_qt_or_gui():
    offenders = []
    for path in (ROOT / "core").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            offenders += [f"{path.name}: {n}" for n in names if n.split(".")[0] in FORBIDDEN]
    assert offenders == []


def test_importing_all_of_core_loads_no_qt():
    code = ("import importlib, pkgutil, sys, core\n"
            "for m in pkgutil.iter_modules(core.__path__):\n"
            "    importlib.import_module('core.' + m.name)\n"
            f"bad = [m for m in sys.modules if m.split('.')[0] in {FORBIDDEN!r}]\n"
            "print(bad); sys.exit(1 if bad else 0)")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_modules_stay_small():
    long = [f"{p.relative_to(ROOT)}: {n}" for p in list(ROOT.glob("core/*.py")) + list(ROOT.glob("gui/**/*.py"))
            if (n := len(p.read_text().splitlines())) > 450]
    assert long == []
