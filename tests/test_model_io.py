"""Every loader on a real file, and every kind of bad input: a clear error, and nothing written."""

from __future__ import annotations

import io

import pytest
import torch

from core.io import LOADERS, LoadOptions, ModelLoadError, UntrustedPickleError, load_model, \
    parse_input_shape
from tests import factories


def reference_logits(x):
    from core.eval.zoo import load_zoo_model

    model, _ = load_zoo_model("lenet300")
    with torch.inference_mode():
        return model(x)


X = torch.rand(4, 1, 28, 28, generator=torch.Generator().manual_seed(1))
TRUST = LoadOptions(trust=True)


def logits(loaded):
    with torch.inference_mode():
        return loaded.module(X)


def test_zoo_loader_gives_the_trained_model():
    loaded = load_model("zoo:lenet300")
    assert loaded.format == "zoo" and loaded.dataset == "mnist" and loaded.input_shape == (1, 1, 28, 28)
    assert loaded.meta["test_accuracy"] >= 0.982
    assert loaded.file_bytes > 1_000_000


@pytest.mark.parametrize("kind, fmt", [("torchscript", "torchscript"), ("export", "torch.export"),
                                       ("export_static", "torch.export"),
                                       ("state_dict", "state_dict"), ("wrapped_state_dict", "state_dict"),
                                       ("legacy", "state_dict")])
def test_each_format_loads_the_same_network(model_files, untouched, kind, fmt):
    path = model_files[kind]
    untouched(path)
    loaded = load_model(path, LoadOptions(arch="core.eval.zoo:LeNet300", trust=True))
    assert loaded.format == fmt
    assert loaded.file_bytes == path.stat().st_size
    torch.testing.assert_close(logits(loaded), reference_logits(X), rtol=1e-5, atol=1e-5)


def test_torchscript_and_export_keep_layer_types(model_files):
    from core.analysis.inventory import inventory

    for kind in ("torchscript", "export"):
        loaded = load_model(model_files[kind], TRUST)
        inv = inventory(loaded.module, loaded.module_types)
        assert [(layer.name, layer.type) for layer in inv.layers] == [("fc1", "Linear"), ("fc2", "Linear"),
                                                                     ("fc3", "Linear")]
        assert inv.params == 266_610


def test_export_program_brings_its_example_input(model_files):
    loaded = load_model(model_files["export"], TRUST)
    assert loaded.input_shape == (2, 1, 28, 28)
    assert len(loaded.probe_inputs) == 1 and "fixed_batch" not in loaded.meta


def test_export_program_with_a_fixed_batch_runs_any_batch(model_files):
    loaded = load_model(model_files["export_static"], TRUST)
    assert loaded.meta["fixed_batch"] == 1
    x = torch.rand(5, 1, 28, 28)
    torch.testing.assert_close(logits(loaded), reference_logits(X), rtol=1e-5, atol=1e-5)
    assert loaded.module(x).shape == (5, 10)


def test_state_dict_of_a_zoo_architecture_needs_no_arch(model_files):
    loaded = load_model(model_files["state_dict"])
    assert loaded.meta["arch"] == "lenet300"


def test_state_dict_with_unknown_architecture_asks_for_arch(model_files):
    with pytest.raises(ModelLoadError, match="--arch package.module:factory"):
        load_model(model_files["mismatch"])


def test_state_dict_that_does_not_fit_the_architecture(model_files, untouched):
    untouched(model_files["mismatch"])
    with pytest.raises(ModelLoadError, match=r"does not fit architecture tests.factories:make_lenet300: "
                                             r"missing fc1.weight.*unexpected 1.weight"):
        load_model(model_files["mismatch"], LoadOptions(arch="tests.factories:make_lenet300"))


@pytest.mark.parametrize("arch, message", [("nonsense", "must look like package.module:factory"),
                                           ("no.such.module:f", "cannot import architecture"),
                                           ("tests.factories:missing", "cannot import architecture"),
                                           ("tests.factories:leave_marker", "failed to build")])
def test_bad_architecture_specs(model_files, arch, message):
    with pytest.raises(ModelLoadError, match=message):
        load_model(model_files["mismatch"], LoadOptions(arch=arch))


def test_untrusted_pickle_is_refused_and_its_code_never_runs(model_files, untouched):
    marker = model_files["marker"]
    for kind in ("evil", "evil_zip"):
        untouched(model_files[kind])
        with pytest.raises(UntrustedPickleError, match="runs code stored in the file.*--trust") as info:
            load_model(model_files[kind])
        assert "tests.factories.leave_marker" in info.value.needs
        assert not marker.exists(), "the pickle's code ran while it was only being identified"


def test_whole_module_pickle_needs_trust_then_loads(model_files, untouched):
    untouched(model_files["pickle"])
    with pytest.raises(UntrustedPickleError, match="tests.factories.Wrapped"):
        load_model(model_files["pickle"])
    loaded = load_model(model_files["pickle"], LoadOptions(trust=True))
    assert loaded.format == "pickle" and type(loaded.module).__name__ == "Wrapped"
    torch.testing.assert_close(logits(loaded), reference_logits(X))


def test_trusted_pickle_that_is_not_a_module(model_files):
    with pytest.raises(ModelLoadError, match="holds a dict, not a torch.nn.Module"):
        load_model(model_files["evil_zip"], LoadOptions(trust=True))


@pytest.mark.parametrize("kind, message", [
    ("truncated", "truncated or corrupt zip archive"),
    ("truncated_pickle", "truncated or corrupt"),
    ("text", "not a PyTorch model file. Formats tried: zoo name"),
    ("png", "not a PyTorch model file"),
    ("empty", "an empty file"),
    ("empty_dir", "a folder without a Hugging Face config.json"),
])
def test_files_no_loader_accepts(model_files, untouched, kind, message):
    untouched(model_files[kind])
    with pytest.raises(ModelLoadError, match=message) as info:
        load_model(model_files[kind])
    assert "\n" not in str(info.value)


def test_message_names_every_format_tried(model_files):
    with pytest.raises(ModelLoadError) as info:
        load_model(model_files["text"])
    for loader in LOADERS:
        assert loader.describes in str(info.value)


def test_missing_file_and_unknown_zoo_name(tmp_path):
    with pytest.raises(ModelLoadError, match="no such file or folder"):
        load_model(tmp_path / "nope.pt")
    with pytest.raises(ModelLoadError, match="unknown zoo model 'nope'; the zoo has: lenet300"):
        load_model("zoo:nope")


@pytest.mark.parametrize("kind", ["no_params", "no_params_ts"])
def test_model_without_parameters(model_files, kind):
    with pytest.raises(ModelLoadError, match="has no parameters"):
        load_model(model_files[kind], LoadOptions(trust=True))


def test_input_shape_gives_probe_inputs(model_files):
    loaded = load_model(model_files["torchscript"], LoadOptions(input_shape=(2, 1, 28, 28), trust=True))
    assert loaded.input_shape == (2, 1, 28, 28) and loaded.probe_inputs[0].shape == (2, 1, 28, 28)


def test_parse_input_shape():
    assert parse_input_shape("1,1,28,28") == (1, 1, 28, 28)
    for bad in ("", "a,b", "1,-1", "1,0"):
        with pytest.raises(ModelLoadError, match="comma-separated positive integers"):
            parse_input_shape(bad)


def test_hugging_face_folder_with_tokenizer(tmp_path, untouched):
    pytest.importorskip("transformers")
    folder = factories.write_hf_folder(tmp_path / "tiny-bert")
    untouched(folder)
    loaded = load_model(folder)
    assert loaded.format == "huggingface" and type(loaded.module).__name__ == "BertForSequenceClassification"
    inputs = loaded.probe_inputs[0]
    assert set(inputs) >= {"input_ids", "attention_mask"}
    assert inputs["input_ids"][0, 0].item() == 2  # [CLS]: the folder's own tokenizer made these
    assert loaded.classes == ("LABEL_0", "LABEL_1", "LABEL_2")
    with torch.inference_mode():
        assert loaded.module(**inputs).logits.shape == (4, 3)


def test_hugging_face_folder_without_tokenizer_uses_vocab_ids(tmp_path):
    pytest.importorskip("transformers")
    loaded = load_model(factories.write_hf_folder(tmp_path / "bare", with_tokenizer=False))
    ids = loaded.probe_inputs[0]["input_ids"]
    assert ids.shape == (4, 16) and int(ids.max()) < loaded.module.config.vocab_size


def test_broken_hugging_face_folder(tmp_path):
    pytest.importorskip("transformers")
    folder = tmp_path / "broken"
    folder.mkdir()
    (folder / "config.json").write_text("{not json")
    with pytest.raises(ModelLoadError, match="cannot load Hugging Face model"):
        load_model(folder)


@pytest.mark.parametrize("kind, what", [("torchscript", "a TorchScript archive"),
                                        ("export", "a torch.export program")])
def test_torchscript_and_export_programs_need_trust(model_files, untouched, kind, what):
    untouched(model_files[kind])
    with pytest.raises(UntrustedPickleError, match=what):
        load_model(model_files[kind])


def test_a_pt2_with_a_pickled_weight_runs_nothing_untrusted(model_files, tmp_path):
    """torch.export.load unpickles weights marked use_pickle with weights_only=False, so a .pt2 can carry
    code: untrusted, nothing of it runs; trusted, it does (which is why the question is asked)."""
    import json
    import zipfile

    evil = tmp_path / "evil.pt2"
    marker = tmp_path / "pt2-code-ran.txt"
    payload = io.BytesIO()
    torch.save(factories.Evil(marker), payload)
    with zipfile.ZipFile(model_files["export"]) as source, zipfile.ZipFile(evil, "w") as target:
        config_name = next(n for n in source.namelist() if n.endswith("model_weights_config.json"))
        config = json.loads(source.read(config_name))
        name = next(iter(config["config"]))
        config["config"][name]["use_pickle"] = True
        weight_file = config_name.rsplit("/", 1)[0] + "/" + config["config"][name]["path_name"]
        for item in source.infolist():
            data = source.read(item.filename)
            if item.filename == config_name:
                data = json.dumps(config).encode()
            elif item.filename == weight_file:
                data = payload.getvalue()
            target.writestr(item, data)
    with pytest.raises(UntrustedPickleError):
        load_model(evil)
    assert not marker.exists()
    with pytest.raises(ModelLoadError):
        load_model(evil, TRUST)
    assert marker.exists(), "the crafted file did not carry code: this test would prove nothing"


def test_a_checkpoint_cannot_name_code_to_import(tmp_path):
    """A weights-only file may name a zoo architecture, never a factory: that would run code it chose."""
    from core.eval.zoo import CHECKPOINT_FORMAT

    path = tmp_path / "named.pt"
    torch.save({"format": CHECKPOINT_FORMAT, "arch": "tests.factories:leave_marker",
                "state_dict": {"w": torch.zeros(2)}, "meta": {}}, path)
    with pytest.raises(ModelLoadError, match="--arch package.module:factory"):
        load_model(path)


# ------------------------------------------------------------------------------ names a wrapper prefixed
def _lenet300():
    from core.eval.zoo import load_zoo_model

    return load_zoo_model("lenet300")[0]


@pytest.mark.parametrize("wrap, prefix", [(torch.nn.DataParallel, "module."),
                                          (lambda m: torch.compile(m), "_orig_mod."),
                                          (lambda m: torch.nn.DataParallel(torch.compile(m)), "module._orig_mod.")])
def test_a_state_dict_saved_through_a_wrapper_loads_with_its_names_mapped(tmp_path, untouched, wrap, prefix):
    state = wrap(_lenet300()).state_dict()
    assert all(k.startswith(prefix) for k in state)  # what the wrapper really writes
    path = tmp_path / "wrapped.pt"
    torch.save(state, path)
    untouched(path)
    loaded = load_model(str(path))
    assert loaded.meta["arch"] == "lenet300"  # recognised with the prefix taken off, no --arch needed
    assert torch.equal(logits(loaded), reference_logits(X))
    (note,) = loaded.meta["notes"]
    assert note.startswith("the weights' names carried the prefix 'module.' (DataParallel"
                           if prefix.startswith("module.") else "the weights' names carried the prefix '_orig_mod.'")
    assert all(f"'{part}.'" in note for part in prefix.rstrip(".").split("."))  # each prefix taken off is named


def test_a_model_whose_own_submodule_is_named_module_keeps_its_names(tmp_path):
    from core.io.architectures import strip_wrapper_prefixes

    class Holder(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.module = torch.nn.Linear(3, 2)

    state = Holder().state_dict()
    assert strip_wrapper_prefixes(state, Holder().state_dict()) == (state, [])
    assert strip_wrapper_prefixes({"module.w": torch.zeros(1), "head.w": torch.zeros(1)}, {"w"})[1] == []


def test_a_wrapped_state_dict_that_does_not_fit_names_the_keys(tmp_path, untouched):
    state = torch.nn.DataParallel(_lenet300()).state_dict()
    state["module.extra.weight"] = torch.zeros(3)
    del state["module.fc3.bias"]
    path = tmp_path / "wrapped-extra.pt"
    torch.save(state, path)
    untouched(path)
    with pytest.raises(ModelLoadError, match=r"does not fit architecture lenet300: missing fc3.bias; "
                                             r"unexpected extra.weight"):
        load_model(str(path), LoadOptions(arch="lenet300"))
