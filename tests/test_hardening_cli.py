"""Hostile input at the command line: recipes that attack the parser, faults (a full disk, a kill, Ctrl+C),
outputs checked before any work, and help texts that say what is true. Files: tests/test_hardening.py."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import time

import pytest

from core.recipe import Recipe, RecipeError
from tests.conftest import ROOT
from tests.test_cli import prunescope
from tests.test_hardening import QUICK, one_line_error

# ------------------------------------------------------------------------------------------------ recipes

BOMB = "\n".join(['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
                 + [f"{chr(97 + i)}: &{chr(97 + i)} [{','.join(['*' + chr(96 + i)] * 9)}]" for i in range(1, 10)])


@pytest.mark.parametrize("text, message", [
    (BOMB + "\nsteps: []\n", "anchors (&name) are not allowed"),
    ("steps: [{kind: encode}]\nagain: *x\n", "aliases (*name) are not allowed"),
    ("steps: " + "[" * 1000 + "]" * 1000 + "\n", "nested more than"),
    ("steps: [{kind: finetune, lr: .inf}]\n", "'.inf' is not a finite number"),
    ("steps: [{kind: finetune, lr: .nan}]\n", "is not a finite number"),
    ("seed: " + "9" * 5000 + "\nsteps: []\n", "5,000 digits"),
    ("seed: 99999999999999999999\nsteps: []\n", "beyond 64 bits"),
    ("steps: [{sparsity: 0.5}]\n", "a step needs a kind: write {kind: prune_magnitude"),
    ("steps: [{1: 2, a: 3}]\n", "field names must be text"),
])
def test_hostile_recipes_are_refused_in_one_line(text, message):
    with pytest.raises(RecipeError) as info:
        Recipe.from_text(text)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_a_step_in_the_one_key_form_is_that_kind():
    recipe = Recipe.from_text("steps: [{prune_magnitude: {sparsity: 0.8}}, {encode: }]")
    assert [s.kind for s in recipe.steps] == ["prune_magnitude", "encode"] and recipe.steps[0].sparsity == 0.8


def test_recipe_files_must_be_small_utf8_and_ordinary(tmp_path):
    latin = tmp_path / "latin.yaml"
    latin.write_bytes("name: caf\xe9\nsteps: []\n".encode("latin-1"))
    with pytest.raises(RecipeError, match="not UTF-8"):
        Recipe.from_file(latin)
    big = tmp_path / "big.yaml"
    big.write_text("steps: []\n" + "#" * (2 << 20))
    with pytest.raises(RecipeError, match="at most"):
        Recipe.from_file(big)
    with pytest.raises(RecipeError, match="ordinary files"):
        Recipe.from_file("/dev/zero")


def test_a_non_utf8_recipe_at_the_command_line(tmp_path):
    path = tmp_path / "latin.yaml"
    path.write_bytes(b"name: caf\xe9\nsteps: []\n")
    one_line_error(prunescope("compress", "zoo:lenet300", "--recipe", str(path), "--out", str(tmp_path / "o")),
                   "not UTF-8")


# ------------------------------------------------------------------------------------------------- faults

def write_recipe(tmp_path, text: str = QUICK):
    path = tmp_path / "quick.yaml"
    path.write_text(text)
    return path


def test_a_full_disk_is_one_line_and_leaves_nothing(tmp_path, monkeypatch, capsys):
    from core import cli, fileio

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(fileio.os, "fsync", full)
    out = tmp_path / "out"
    status = cli.main(["compress", "zoo:lenet300", "--recipe", str(write_recipe(tmp_path)), "--out", str(out),
                       "--quiet"])
    err = capsys.readouterr().err.strip()
    assert status == 1 and len(err.splitlines()) == 1 and "No space left on device" in err
    assert list(out.iterdir()) == []  # no .psz, no report, no temporary


def test_a_psz_and_its_report_appear_together_or_not_at_all(tmp_path, monkeypatch, capsys):
    from core import cli, fileio

    real_replace = os.replace

    def replace(src, dst):
        if str(dst).endswith("report.json"):
            raise OSError(errno.EIO, "Input/output error", str(dst))
        return real_replace(src, dst)
    monkeypatch.setattr(fileio.os, "replace", replace)
    out = tmp_path / "out"
    status = cli.main(["compress", "zoo:lenet300", "--recipe", str(write_recipe(tmp_path)), "--out", str(out),
                       "--quiet"])
    assert status == 1 and "Input/output error" in capsys.readouterr().err
    assert list(out.iterdir()) == []


def test_an_earlier_file_is_restored_when_the_pair_cannot_be_written(tmp_path, monkeypatch):
    from core import fileio

    first, second = tmp_path / "a.psz", tmp_path / "report.json"
    first.write_bytes(b"old")
    real_replace = os.replace
    monkeypatch.setattr(fileio.os, "replace", lambda s, d: (_ for _ in ()).throw(OSError(errno.EIO, "EIO"))
                        if str(d) == str(second) else real_replace(s, d))
    with pytest.raises(OSError):
        fileio.write_together({first: b"new", second: b"{}"})
    assert first.read_bytes() == b"old" and not second.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.psz"]


def test_temporaries_of_a_killed_run_are_removed_by_the_next(tmp_path):
    from core import fileio

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f".lenet300.psz.prunescope-{dead.pid}-abc.tmp"
    live = tmp_path / f".lenet300.psz.prunescope-{os.getppid()}-abc.tmp"  # a process still running
    stale.write_bytes(b"half")
    live.write_bytes(b"in progress")
    fileio.write_together({tmp_path / "lenet300.psz": b"psz", tmp_path / "report.json": b"{}"})
    assert not stale.exists() and live.exists()


@pytest.mark.parametrize("where", ["folder", "unwritable", "fifo", "device"])
def test_json_and_out_are_checked_before_any_work(tmp_path, where):
    if where == "folder":
        target = tmp_path / "dir"
        target.mkdir()
    elif where == "unwritable":
        if os.geteuid() == 0:
            target = "/sys/report.json"  # sysfs refuses new files even to root
        else:
            locked = tmp_path / "locked"
            locked.mkdir(mode=0o500)
            target = locked / "report.json"
    elif where == "fifo":
        target = tmp_path / "pipe.json"
        os.mkfifo(target)
    else:
        if os.geteuid() != 0:
            pytest.skip("making a device node needs root")
        target = tmp_path / "null"
        os.mknod(target, 0o666 | 0o020000, os.makedev(1, 3))  # a private /dev/null
    began = time.monotonic()
    result = prunescope("inspect", "zoo:lenet300", "--json", str(target))
    one_line_error(result, "--json")
    assert result.returncode == 2 and "parameters" not in result.stdout  # refused before the inspection
    if where in ("fifo", "device"):
        import stat

        mode = os.stat(target).st_mode
        assert (stat.S_ISFIFO(mode) if where == "fifo" else stat.S_ISCHR(mode))  # never replaced
    if where in ("unwritable", "fifo"):  # --out: a folder that cannot be written, or a FIFO where it should be
        recipe = write_recipe(tmp_path, "steps: [{kind: finetune, epochs: 1}, {kind: encode}]")
        out = os.path.join(os.path.dirname(str(target)), "out") if where == "unwritable" else str(target)
        result = prunescope("compress", "zoo:lenet300", "--recipe", str(recipe), "--out", out)
        one_line_error(result, "--out")
        assert result.returncode == 2 and "finetune" not in result.stderr + result.stdout
    assert time.monotonic() - began < 120


def start(tmp_path, *args):
    return subprocess.Popen([sys.executable, str(ROOT / "main.py"), *args], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def started_python(err: str, status: int) -> bool:
    """Whether Python had got as far as running main.py: a SIGINT earlier ends the interpreter itself (no
    handler yet, or inside its own ``site`` import), before any of Prunescope's code runs."""
    return not ((status == -signal.SIGINT and not err) or "init_import_site" in err)


def test_ctrl_c_at_any_moment_is_one_line_130_and_leaves_nothing(tmp_path):
    """Ctrl+C at moments spread over start-up (main.py importing the command line, then torch), and during
    the work: every one that reaches Prunescope's code is one line and status 130, and writes nothing."""
    handled = 0
    for delay in (0.15, 0.25, 0.35, 0.5, 0.7, 1.0, 1.5):
        proc = start(tmp_path, "inspect", "zoo:lenet300", "--quiet")
        time.sleep(delay)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
        if not started_python(err, proc.returncode):
            continue
        assert proc.returncode == 130 and err.strip() == "prunescope: cancelled", (delay, err)
        handled += 1
    assert handled >= 3
    out = tmp_path / "out"
    recipe = write_recipe(tmp_path, "steps: [{kind: finetune, epochs: 5}, {kind: encode}]")
    proc = start(tmp_path, "compress", "zoo:lenet300", "--recipe", str(recipe), "--out", str(out))
    seen = ""
    while "finetune" not in seen:  # progress lines: the work has begun
        line = proc.stderr.readline()
        assert line, seen
        seen += line
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and err.strip() == "prunescope: cancelled", err
    assert not out.exists() or list(out.iterdir()) == []


# ------------------------------------------------------------------------------------------- help texts

def subcommand_help(name: str) -> str:
    from core.cli import build_parser

    parser = build_parser()
    action = next(a for a in parser._actions if a.dest == "command")  # argparse keeps subparsers here
    return " ".join(action.choices[name].format_help().split())


@pytest.mark.parametrize("command", ["inspect", "compress"])
def test_trust_help_names_torchscript(command):
    text = subcommand_help(command)
    options = text[text.index("options:"):]
    trust = options[options.index("--trust"):options.index("--arch PKG")]
    assert "TorchScript" in trust and "torch.export" in trust


def test_compress_help_says_what_data_defaults_to():
    text = subcommand_help("compress")
    options = text[text.index("options:"):]
    data = options[options.index("--data DATA"):options.index("--export")]
    assert "(default: the zoo model's own)" not in data and "any other model has none" in data
