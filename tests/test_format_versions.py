"""Files written by earlier format versions (tests/fixtures/psz, made by the versions that wrote them) load
and compute what they computed then; the current version writes structure ops."""

from __future__ import annotations

import json
import struct
import zlib

import pytest
import torch

from core.format import container
from core.format.structure import StructureError, ops_from_file
from core.io import ModelLoadError, load_model
from tests.conftest import ROOT

FIXTURES = ROOT / "tests" / "fixtures" / "psz"


@pytest.mark.parametrize("version", [1, 2, 3])
@pytest.mark.parametrize("name", ["lenet300", "resnet8"])
def test_files_of_earlier_versions_load_and_compute_as_before(name, version):
    path = FIXTURES / f"{name}-v{version}.psz"
    assert struct.unpack_from("<4sH", path.read_bytes())[1] == version
    expected = torch.tensor(json.loads((FIXTURES / f"expected-v{version}.json").read_text())[path.name])
    loaded = load_model(path)
    x = torch.rand(4, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        torch.testing.assert_close(loaded.module(x), expected)
    if name == "resnet8":  # the recorded Torch-Pruning history was replayed
        assert loaded.module.conv1.out_channels == 8 and loaded.module.layer3.conv1.out_channels == 30
        assert {op["op"] for op in loaded.meta["structure"]} == {"torch_pruning"}


def test_the_current_version_writes_structure_ops(tmp_path):
    from core.pipeline.apply import apply_recipe
    from core.progress import run
    from core.recipe import Recipe

    old = load_model(FIXTURES / "resnet8-v2.psz")
    recipe = Recipe.from_text("steps: [{kind: remove_units, layer: layer2.conv1, units: [3]}]")
    result = run(apply_recipe(recipe, old, measure_before=False))  # a variant of a variant: both ops
    header, _ = container.iter_decode(result.file_bytes)
    assert header["v"] == container.PLAIN_VERSION == 4  # version 5 only for a file holding a program
    assert [op["op"] for op in header["model"]["structure"]] == ["torch_pruning", "torch_pruning"]
    path = tmp_path / "again.psz"
    path.write_bytes(result.file_bytes)
    again = load_model(path).module
    assert again.layer2.conv1.out_channels == old.module.layer2.conv1.out_channels - 1
    x = torch.rand(2, 1, 28, 28)
    with torch.inference_mode():
        torch.testing.assert_close(again(x), result.model(x))


def test_bad_structure_ops_are_refused_before_use():
    with pytest.raises(StructureError, match="not a mapping"):
        ops_from_file([["layer1.conv1", True, [0]]], 3)
    with pytest.raises(StructureError, match="'factorise', which this Prunescope does not know"):
        ops_from_file([{"op": "factorise"}], 3)
    assert ops_from_file([["conv1", True, [0]]], 2) == [{"op": "torch_pruning", "history": [["conv1", True, [0]]]}]


def forged(path, change) -> bytes:
    data = path.read_bytes()
    magic, version, length = struct.unpack_from("<4sHI", data)
    header = json.loads(zlib.decompress(data[10:10 + length]))
    change(header)
    body = zlib.compress(json.dumps(header, separators=(",", ":")).encode())
    out = struct.pack("<4sHI", magic, version, len(body)) + body + data[10 + length:-4]
    return out + struct.pack("<I", zlib.crc32(out))


@pytest.mark.parametrize("change, message", [
    (lambda h: h["model"]["structure"][0].__setitem__(1, "yes"), r"not \(layer, is_output"),
    (lambda h: h["model"]["structure"][0].__setitem__(0, "nowhere"), "does not fit"),
    (lambda h: h["tensors"][0].__setitem__("s", "big"), "bad shape"),
])
def test_forged_headers_of_old_files_are_refused(tmp_path, change, message):
    path = tmp_path / "forged.psz"
    path.write_bytes(forged(FIXTURES / "resnet8-v2.psz", change))
    with pytest.raises(ModelLoadError, match=message):
        load_model(path)
