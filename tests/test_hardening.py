"""Files that can't hurt: hostile pickles, compressed files, special files and recipes are refused in one
line, a compressed file never opens a path written inside it, and faults (a full disk, Ctrl+C, an output
that is a device) leave nothing half-written (issue 12, "Hostile and broken files")."""

from __future__ import annotations

import errno
import os
import pickle
import signal
import struct
import subprocess
import sys
import time
import warnings
import zipfile
import zlib

import pytest
import torch

from core.errors import PrunescopeError
from core.format import container, huffman
from core.format.huffman import CodingError
from core.io import LoadOptions, ModelLoadError, UntrustedPickleError, load_model
from core.io.base import SourceModelNeeded
from core.recipe import Recipe, RecipeError
from tests.conftest import ROOT
from tests.psz_mutants import seal, split
from tests.test_cli import prunescope

QUICK = "steps: [{kind: prune_magnitude, sparsity: 0.9}, {kind: encode}]\n"


@pytest.fixture(scope="module")
def psz(tmp_path_factory):
    """A real compressed LeNet-300-100 (zoo architecture), and its bytes."""
    from core.pipeline.apply import apply_recipe
    from core.progress import run

    result = run(apply_recipe(Recipe.from_text(QUICK), load_model("zoo:lenet300"), None, measure_before=False))
    path = tmp_path_factory.mktemp("psz") / "lenet300.psz"
    path.write_bytes(result.file_bytes)
    return path


def resealed(psz_path, change) -> bytes:
    """The file with ``change(header)`` applied to its header and a valid checksum again."""
    header, version, sections = split(psz_path.read_bytes())
    change(header)
    return seal(header, version, sections)


def one_line_error(result: subprocess.CompletedProcess, *needles: str) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


# ------------------------------------------------------------------------------------------------ pickles

def hidden_eval_pickle(marker) -> bytes:
    """A protocol-4 pickle that reaches ``eval`` through ``torch._utils._rebuild_tensor_v2.__builtins__.get``
    (a name below an allowed one) and would write ``marker``."""
    def text(s: str) -> bytes:
        b = s.encode()
        return b"\x8c" + bytes([len(b)]) + b if len(b) < 256 else b"X" + struct.pack("<I", len(b)) + b

    code = f"__import__('pathlib').Path({str(marker)!r}).write_text('ran')"
    return (b"\x80\x04" + text("torch._utils") + b"\x94" + text("_rebuild_tensor_v2.__builtins__.get") + b"\x94\x93"
            + text("eval") + b"\x85R" + text(code) + b"\x85R.")


def test_a_global_reached_through_an_allowed_name_is_named_in_the_trust_prompt(tmp_path):
    marker = tmp_path / "ran.txt"
    path = tmp_path / "model.pt"
    path.write_bytes(hidden_eval_pickle(marker))
    with pytest.raises(UntrustedPickleError) as info:
        load_model(path)
    assert "torch._utils._rebuild_tensor_v2.__builtins__.get" in info.value.needs
    assert "torch._utils._rebuild_tensor_v2.__builtins__.get" in str(info.value)
    assert not marker.exists()


def test_the_trust_prompt_lists_every_global_the_file_needs(tmp_path):
    import decimal
    import fractions
    import json
    import random
    import string
    import textwrap

    needs = [fractions.Fraction, decimal.Decimal, zipfile.ZipFile, zipfile.ZipInfo, json.loads, random.Random,
             string.Template, textwrap.dedent, os.system]
    path = tmp_path / "many.pt"
    path.write_bytes(pickle.dumps(needs, protocol=4))
    with pytest.raises(UntrustedPickleError) as info:
        load_model(path)
    names = [f"{f.__module__}.{f.__qualname__}" for f in needs]
    assert info.value.needs == names
    assert all(name in str(info.value) for name in names), str(info.value)


@pytest.mark.parametrize("protocol", [4, 5])
def test_protocol_4_and_5_pickles_give_no_warnings(tmp_path, protocol):
    path = tmp_path / f"p{protocol}.pt"
    path.write_bytes(pickle.dumps({"weights": [1, 2, 3], "f": print}, protocol=protocol))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(UntrustedPickleError, match="builtins.print"):
            load_model(path)
    assert [str(w.message) for w in caught] == []


# ------------------------------------------------------------------------------------------ .psz headers

def move_sections(header) -> None:
    """Give a raw tensor ``z: []`` and count its bytes in the next tensor's first section, so the layout
    still adds up."""
    entries = header["tensors"]
    i = next(i for i in range(len(entries) - 1) if entries[i]["e"] == "raw")
    entries[i + 1]["z"][0] += entries[i]["z"][0]
    entries[i]["z"] = []


BAD_FIELDS = {
    "dt: []": lambda h: h["tensors"][-1].update(dt=[]),
    "arch: {}": lambda h: h["model"].update(arch={}),
    "pc: 'x'": lambda h: next(e for e in h["tensors"] if e["e"] != "raw").update(pc="x"),
    "z: []": lambda h: move_sections(h),  # the file still adds up: its bytes counted by the next tensor
    "num_classes -3": lambda h: h["model"].update(num_classes=-3),
    "num_classes 10**9": lambda h: h["model"].update(num_classes=10 ** 9),
    "num_classes 'ten'": lambda h: h["model"].update(num_classes="ten"),
    "classes: 5": lambda h: h["model"].update(classes=5),
    "input_shape: huge": lambda h: h["model"].update(input_shape=[10 ** 6] * 4),
    "nesting": lambda h: h["model"].update(extra=[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]),
}


@pytest.mark.parametrize("field", list(BAD_FIELDS))
def test_a_bad_header_field_with_a_valid_checksum_is_refused_in_one_line(psz, tmp_path, field):
    path = tmp_path / "bad.psz"
    path.write_bytes(resealed(psz, BAD_FIELDS[field]))
    with pytest.raises(ModelLoadError, match="not a valid compressed file") as info:
        load_model(path)
    assert "\n" not in str(info.value)


def test_a_header_nested_past_the_recursion_limit_is_refused(psz, tmp_path):
    header, version, sections = split(psz.read_bytes())
    path = tmp_path / "deep.psz"
    path.write_bytes(seal(None, version, sections, b"[" * 100_000 + b"]" * 100_000))
    with pytest.raises(ModelLoadError, match="not a valid compressed file"):
        load_model(path)


def test_huffman_counts_are_checked_against_the_stream_before_allocating():
    lengths = huffman.code_lengths(torch.tensor([3, 1, 1]).numpy())
    with pytest.raises(CodingError, match="cannot hold"):
        huffman.decode(b"\x00" * 4, 10 ** 12, lengths)  # 8 TB of output for 4 bytes of stream


def test_a_sparse_tensor_claiming_more_symbols_than_its_stream_holds(psz, tmp_path):
    def claim(h):
        entry = next(e for e in h["tensors"] if e["e"].startswith("sparse"))
        entry["n"] = 10 ** 10
    with pytest.raises(CodingError):
        container.decode(resealed(psz, claim))


def test_a_3_gb_file_with_the_magic_is_refused_without_reading_it(tmp_path):
    path = tmp_path / "big.psz"
    with open(path, "wb") as f:
        f.write(b"PSCZ" + struct.pack("<HI", 3, 1000) + zlib.compress(b'{"model": {}, "tensors": []}'))
        f.truncate(3 << 30)  # sparse: no disk space used
    code = ("import resource, sys; from core.io import load_model\n"
            "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
            "try:\n    load_model(sys.argv[1])\nexcept Exception as exc:\n    print(type(exc).__name__, exc)\n"
            "print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024)")
    result = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, cwd=ROOT,
                            timeout=300)
    error, grown = result.stdout.strip().splitlines()
    assert error.startswith("ModelLoadError") and "not a valid compressed file" in error, result.stdout
    assert int(grown) < 200, f"peak memory grew by {grown} MB"


# ----------------------------------------------------------------------------------------------- sources

def test_a_compressed_file_never_opens_the_source_path_it_names(psz, tmp_path, model_files):
    """The file says its source is a real model elsewhere; it is not opened: the error says how to give it."""
    path = tmp_path / "made.psz"
    path.write_bytes(resealed(psz, lambda h: h["model"].update(arch=None, source=str(model_files["state_dict"]))))
    with pytest.raises(SourceModelNeeded, match="--source") as info:
        load_model(path)
    assert info.value.candidate is None and info.value.recorded == str(model_files["state_dict"])
    loaded = load_model(path, LoadOptions(source=str(model_files["state_dict"])))  # named by the user: used
    x = torch.rand(3, 1, 28, 28)
    with torch.inference_mode():
        torch.testing.assert_close(loaded.module(x), load_model(psz).module(x))
    zoo = tmp_path / "zoo.psz"  # a zoo source is no path: rebuilt without asking
    zoo.write_bytes(resealed(psz, lambda h: h["model"].update(arch=None, source="zoo:lenet300")))
    assert load_model(zoo).format == "prunescope"


def test_a_source_in_the_same_folder_is_offered_not_opened(psz, tmp_path, model_files):
    (tmp_path / "net.pt").write_bytes(model_files["state_dict"].read_bytes())
    path = tmp_path / "made.psz"
    path.write_bytes(resealed(psz, lambda h: h["model"].update(arch=None, source="/elsewhere/net.pt")))
    with pytest.raises(SourceModelNeeded) as info:
        load_model(path)
    assert info.value.candidate == tmp_path / "net.pt" and f"--source {tmp_path / 'net.pt'}" in str(info.value)
    assert load_model(path, LoadOptions(source=str(info.value.candidate))).format == "prunescope"  # confirmed


def test_a_source_that_is_a_compressed_file_is_refused(psz, tmp_path):
    """No chains, no recursion: the file itself, or any .psz, is not a source."""
    path = tmp_path / "self.psz"
    path.write_bytes(resealed(psz, lambda h: h["model"].update(arch=None, source=str(tmp_path / "self.psz"))))
    with pytest.raises(SourceModelNeeded):
        load_model(path)
    with pytest.raises(ModelLoadError, match="the source must be the original model"):
        load_model(path, LoadOptions(source=str(path)))


def test_a_data_set_path_in_the_header_is_not_opened(psz, tmp_path):
    path = tmp_path / "data.psz"
    path.write_bytes(resealed(psz, lambda h: h["model"].update(dataset=str(tmp_path))))
    loaded = load_model(path)
    assert loaded.dataset is None and "pass --data" in loaded.meta["notes"][0]


def test_the_command_line_takes_the_source(psz, tmp_path, model_files):
    path = tmp_path / "made.psz"
    path.write_bytes(resealed(psz, lambda h: h["model"].update(arch=None, source=str(model_files["state_dict"]))))
    one_line_error(prunescope("inspect", str(path), "--quiet"), "--source")
    result = prunescope("inspect", str(path), "--source", str(model_files["state_dict"]), "--input-shape",
                        "1,1,28,28", "--quiet", "--no-activations")
    assert result.returncode == 0, result.stderr


# --------------------------------------------------------------------------------------- special files

@pytest.mark.parametrize("kind", ["dev_zero", "fifo", "proc"])
def test_special_files_are_refused_at_once(tmp_path, kind):
    path = {"dev_zero": "/dev/zero", "proc": "/proc/self/status"}.get(kind)
    if kind == "fifo":
        path = str(tmp_path / "model.pt")
        os.mkfifo(path)
    began = time.monotonic()
    result = prunescope("inspect", path, "--quiet", timeout=60)
    assert result.returncode == 2
    one_line_error(result, "ordinary files")
    assert time.monotonic() - began < 60
    result = prunescope("compress", "zoo:lenet300", "--recipe", path, "--out", str(tmp_path / "o"), timeout=60)
    assert result.returncode == 2
    one_line_error(result, "ordinary files")


def test_a_model_folder_holding_a_fifo_is_refused(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    os.mkfifo(tmp_path / "model.safetensors")  # transformers would block reading it
    with pytest.raises(ModelLoadError, match="model.safetensors, which is not an ordinary file"):
        load_model(tmp_path)


def test_a_zip_declaring_a_4_gb_member_is_refused(model_files, tmp_path):
    data = bytearray(model_files["pickle"].read_bytes())
    i = 0
    while (i := data.find(b"PK\x01\x02", i)) >= 0:  # every central directory entry: sizes of 4 GB
        struct.pack_into("<II", data, i + 20, 0xFFFFFFF0, 0xFFFFFFF0)
        i += 4
    path = tmp_path / "bomb.pt"
    path.write_bytes(bytes(data))
    with pytest.raises(ModelLoadError, match="corrupt zip archive"):
        load_model(path)


def test_a_file_in_an_unreadable_folder(tmp_path, monkeypatch, model_files):
    folder = tmp_path / "locked"
    folder.mkdir()
    target = folder / "model.pt"
    target.write_bytes(model_files["state_dict"].read_bytes())
    if os.geteuid() != 0:
        folder.chmod(0)
    else:  # root reads any folder: make the stat fail as it does for everyone else
        real_stat = os.stat

        def stat(path, *args, **kwargs):
            if str(path).startswith(str(folder)):
                raise PermissionError(errno.EACCES, "Permission denied", str(path))
            return real_stat(path, *args, **kwargs)
        monkeypatch.setattr(os, "stat", stat)
    try:
        with pytest.raises(ModelLoadError, match="permission denied"):
            load_model(target)
    finally:
        folder.chmod(0o755)


def test_a_file_name_with_a_line_break_gives_one_line(tmp_path):
    path = tmp_path / "two\nlines.pt"
    path.write_text("not a model")
    one_line_error(prunescope("inspect", str(path), "--quiet"), "two\\nlines.pt")


def test_a_data_set_that_is_a_device_is_refused():
    one_line_error(prunescope("inspect", "zoo:lenet300", "--data", "/dev/zero", "--quiet"), "ordinary files")


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
