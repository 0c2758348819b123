"""Files that can't hurt: hostile pickles, compressed files and special files are refused in one line, and a
compressed file never opens a path written inside it (issue 12, "Hostile and broken files"). Recipes, faults
and the command line's outputs: tests/test_hardening_cli.py."""

from __future__ import annotations

import errno
import os
import pickle
import struct
import subprocess
import sys
import time
import warnings
import zipfile
import zlib

import pytest
import torch

from core.format import container, huffman
from core.format.huffman import CodingError
from core.io import LoadOptions, ModelLoadError, UntrustedPickleError, load_model
from core.io.base import SourceModelNeeded
from core.recipe import Recipe
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
