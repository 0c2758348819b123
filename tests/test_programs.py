"""Compiled programs (TorchScript, torch.export) compressed in place: weight-level steps on their weights,
the program's code stored in the .psz beside them, and the file reloading as the same kind of program."""

from __future__ import annotations

import json
import zlib

import pytest
import torch
from torch import nn

from core.format import container
from core.io import LoadOptions, ModelLoadError, UntrustedPickleError, load_model
from core.io.program import CompiledProgram
from core.pipeline.apply import apply_recipe
from core.pipeline.context import CompressionError
from core.progress import run
from core.recipe import Recipe
from tests.test_cli import prunescope
from tests.test_inputs import AudioNet, _write_wavs

RECIPE = "steps: [{kind: prune_magnitude, sparsity: 0.5}, {kind: quantize, method: kmeans, bits: 3}, {kind: encode}]"


def _eager_with(state: dict, model: nn.Module) -> nn.Module:
    model.load_state_dict({k: v.float() for k, v in state.items()})
    return model.eval()


def test_a_scripted_audio_model_gets_activations_and_fidelity_from_wavs_and_reloads_as_torchscript(
        tmp_path, untouched):
    _write_wavs(tmp_path / "wavs", [8000, 8000, 4800])
    torch.manual_seed(0)
    torch.jit.script(AudioNet()).save(str(tmp_path / "audio.ts"))
    untouched(tmp_path / "audio.ts")
    (tmp_path / "recipe.yaml").write_text(RECIPE)
    audio = ["--inputs", str(tmp_path / "wavs"), "--sample-rate", "16000", "--chunk", "1600"]

    inspected = prunescope("inspect", str(tmp_path / "audio.ts"), "--trust", *audio, "--json",
                           str(tmp_path / "inspect.json"), "--quiet")
    assert inspected.returncode == 0, inspected.stderr
    layers = {row["name"]: row for row in json.loads((tmp_path / "inspect.json").read_text())["layers"]}
    assert layers["conv"]["activation_observations"] == 13 * 199  # 13 windows of (1600 - 16) / 8 + 1 frames
    assert layers["fc"]["activation_observations"] == 13

    result = prunescope("compress", str(tmp_path / "audio.ts"), "--trust", *audio, "--recipe",
                        str(tmp_path / "recipe.yaml"), "--out", str(tmp_path / "out"), "--quiet")
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["metrics"]["after"]["fidelity"]["count"] == 13
    assert report["accounting"]["program_bytes"] > 0
    assert report["original_bytes"] == (tmp_path / "audio.ts").stat().st_size  # the program's file, code and all

    psz = tmp_path / "out" / "audio.psz"
    assert container.iter_decode(psz.read_bytes())[0]["v"] == 5
    with pytest.raises(UntrustedPickleError, match="compressed TorchScript program"):
        load_model(psz)
    reloaded = load_model(psz, LoadOptions(trust=True))
    assert isinstance(reloaded.module, CompiledProgram)
    assert isinstance(reloaded.module.program, torch.jit.ScriptModule)
    assert reloaded.meta["program"] == "torchscript"
    state = reloaded.module.state_dict()
    for name in ("conv.weight", "fc.weight"):
        assert (state[name] == 0).float().mean() == pytest.approx(0.5, abs=0.03)
        assert len(torch.unique(state[name][state[name] != 0])) <= 8
    x = torch.randn(5, 1600)
    with torch.inference_mode():  # the program computes with exactly the decoded weights
        torch.testing.assert_close(reloaded.module(x, 16000), _eager_with(state, AudioNet())(x, 16000))

    again = prunescope("inspect", str(psz), "--trust", *audio, "--reference", str(tmp_path / "audio.ts"),
                       "--quiet")
    assert again.returncode == 0, again.stderr
    assert "fidelity to reference: top-1 agreement" in again.stdout


@pytest.mark.parametrize("kind", ["export", "export_static"])
def test_a_torch_export_program_compresses_and_reloads_as_one(model_files, kind, tmp_path):
    from core.eval.zoo import load_zoo_model

    loaded = load_model(model_files[kind], LoadOptions(trust=True))
    result = run(apply_recipe(Recipe.from_text(RECIPE), loaded, measure_before=False))
    (tmp_path / "lenet.psz").write_bytes(result.file_bytes)
    reloaded = load_model(tmp_path / "lenet.psz", LoadOptions(trust=True))
    assert reloaded.meta["program"] == "torch.export"
    assert isinstance(reloaded.module.exported, torch.export.ExportedProgram)
    assert reloaded.meta.get("fixed_batch") == loaded.meta.get("fixed_batch")
    state = reloaded.module.state_dict()
    assert (state["fc1.weight"] == 0).float().mean() == pytest.approx(0.5, abs=0.01)
    x = torch.rand(3, 1, 28, 28)
    with torch.inference_mode():
        expected = _eager_with(state, load_zoo_model("lenet300")[0])(x)
        torch.testing.assert_close(reloaded.module(x), expected)
        torch.testing.assert_close(result.model(x), expected)
    with torch.inference_mode():  # the loaded model is untouched by the run
        torch.testing.assert_close(loaded.module(x), load_zoo_model("lenet300")[0](x))


@pytest.mark.parametrize("recipe, message", [
    ("steps: [{kind: low_rank, rank: 4}]", r"steps\[0\] \(low_rank\) changes the model's layers"),
    ("steps: [{kind: prune_structured, amount: 0.5}]", r"\(prune_structured\) changes the model's layers"),
    ("steps: [{kind: quantize, method: kmeans, bits: 4, finetune_epochs: 1}]", r"\(quantize\) trains the model"),
])
def test_steps_that_change_layers_or_train_are_refused_naming_the_ones_that_run(model_files, recipe, message):
    loaded = load_model(model_files["torchscript"], LoadOptions(trust=True))
    with pytest.raises(CompressionError, match=message) as caught:
        run(apply_recipe(Recipe.from_text(recipe), loaded, data=None, measure_before=False))
    assert "compiled program (torchscript)" in str(caught.value)
    assert "prune_magnitude, share_filters, quantize, encode" in str(caught.value)


def test_a_stored_program_that_does_not_load_gets_one_line(model_files, tmp_path):
    loaded = load_model(model_files["torchscript"], LoadOptions(trust=True))
    state = loaded.module.state_dict()
    info = {"arch": None, "name": "x", "source": "x.ts", "structure": []}
    data, _ = container.encode(state, {}, info, program=("torchscript", zlib.compress(b"not a program")))
    (tmp_path / "bad.psz").write_bytes(data)
    with pytest.raises(ModelLoadError, match="bad.psz: not a valid compressed file: its torchscript program does "
                                             "not load"):
        load_model(tmp_path / "bad.psz", LoadOptions(trust=True))


def test_a_program_in_a_file_of_an_older_version_is_refused():
    header = {"v": 4, "model": {"structure": []}, "tensors": [], "program": {"kind": "torchscript", "z": 1}}
    body = zlib.compress(json.dumps(header).encode())
    data = container.PREAMBLE.pack(container.MAGIC, 4, len(body)) + body + b"x"
    data += container.CRC.pack(zlib.crc32(data))
    with pytest.raises(container.CodingError, match="a version 4 file cannot hold a program"):
        container.iter_decode(data)


@pytest.mark.parametrize("kind", ["torchscript", "export"])
def test_a_programs_macs_are_attributed_to_its_layers_as_the_eager_models_are(model_files, kind):
    from core.analysis.cost import count_macs
    from core.eval.zoo import load_zoo_model

    loaded = load_model(model_files[kind], LoadOptions(trust=True))
    x = torch.rand(2, 1, 28, 28)
    program, eager = count_macs(loaded.module, x), count_macs(load_zoo_model("lenet300")[0], x)
    assert program.per_layer == eager.per_layer and program.total == eager.total
    with torch.no_grad():
        loaded.module.fc1.weight[:150] = 0  # half of fc1's rows: half its multiplies by a non-zero weight
    assert count_macs(loaded.module, x).effective_per_layer["fc1"] == eager.per_layer["fc1"] // 2


def test_a_program_copies_its_weights_in_only_when_they_changed(model_files):
    loaded = load_model(model_files["torchscript"], LoadOptions(trust=True))
    model, x = loaded.module, torch.rand(2, 1, 28, 28)
    with torch.inference_mode():
        first = model(x)
    slot = model.program.fc1.weight
    with torch.no_grad():
        slot.fill_(0)  # behind the mirror's back: not copied over again, since the mirror did not change
        assert torch.equal(model(x), model.program(x))
        model.fc1.weight.mul_(1.0)  # the mirror changed (in place): copied in at the next call
        torch.testing.assert_close(model(x), first)
