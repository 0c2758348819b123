"""The user's own inputs (``--inputs``): each kind of file, its batches, its refusals, and the CLI using them
for activations and fidelity instead of the model's default data set."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from core.eval.fidelity import fidelity
from core.eval.inputs import InputsError, batches_of, describe, read_example_set, read_inputs
from core.io import LoadOptions
from core.io.loading import load_model
from core.progress import run
from tests.test_cli import prunescope

RNG = np.random.default_rng(0)


def test_an_npy_file_is_one_tensor_cut_into_batches(tmp_path):
    x = RNG.random((150, 3, 8)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    batches = read_inputs(tmp_path / "x.npy", batch_size=64)
    assert [b.shape[0] for b in batches] == [64, 64, 22]
    assert torch.equal(torch.cat(batches), torch.from_numpy(x))


def test_float64_becomes_float32_and_token_ids_stay_integers(tmp_path):
    np.savez(tmp_path / "t.npz", input_ids=RNG.integers(0, 100, (10, 7)), attention_mask=np.ones((10, 7), np.int64),
             scale=RNG.random((10, 1)))
    examples = read_example_set(tmp_path / "t.npz")
    assert set(examples) == {"input_ids", "attention_mask", "scale"}  # named keys: keyword arguments
    assert examples["input_ids"].dtype == torch.int64 and examples["scale"].dtype == torch.float32
    assert describe(examples) == "10 examples of input_ids 7 int64, attention_mask 7 int64, scale 1 float32"


def test_npz_saved_positionally_is_a_tuple_in_order(tmp_path):
    a, b = RNG.random((5, 2)), RNG.random((5, 3))
    names = {f"arr_{i}": np.full((5, 1), i) for i in range(12)}  # arr_10 must come after arr_9, not arr_1
    np.savez(tmp_path / "p.npz", a, b)
    np.savez(tmp_path / "many.npz", **names)
    first, second = read_example_set(tmp_path / "p.npz")
    assert first.shape == (5, 2) and second.shape == (5, 3)
    many = read_example_set(tmp_path / "many.npz")
    assert isinstance(many, tuple) and [int(t[0, 0]) for t in many] == list(range(12))


@pytest.mark.parametrize("kind", ["tensor", "tuple", "list", "dict"])
def test_a_pt_file_holds_a_tensor_a_tuple_or_a_dict(tmp_path, kind):
    x, s = torch.randn(9, 4), torch.randn(9, 1)
    obj = {"tensor": x, "tuple": (x, s), "list": [x, s], "dict": {"x": x, "sr": s}}[kind]
    torch.save(obj, tmp_path / "i.pt")
    batches = read_inputs(tmp_path / "i.pt", batch_size=4)
    assert len(batches) == 3
    first = batches[0]
    if kind == "tensor":
        assert torch.equal(first, x[:4])
    elif kind == "dict":
        assert set(first) == {"x", "sr"} and torch.equal(first["sr"], s[:4])
    else:
        assert isinstance(first, tuple) and torch.equal(first[1], s[:4])


def test_a_pt_file_that_would_run_code_is_refused_and_runs_nothing(tmp_path):
    from tests.factories import Evil

    marker = tmp_path / "ran"
    torch.save({"x": Evil(marker)}, tmp_path / "evil.pt")
    with pytest.raises(InputsError, match="without running code"):
        read_inputs(tmp_path / "evil.pt")
    assert not (tmp_path / "ran").exists()


@pytest.mark.parametrize("make, message", [
    (lambda p: np.savez(p / "f.npz", a=np.zeros((3, 2)), b=np.zeros((4, 2))), "different numbers of examples"),
    (lambda p: np.save(p / "f.npy", np.array(["a", "b"])), "not model inputs"),
    (lambda p: np.save(p / "f.npy", np.array(3.0)), "a single number"),
    (lambda p: np.save(p / "f.npy", np.zeros((0, 4))), "no examples"),
    (lambda p: np.savez(p / "f.npz"), "no arrays"),
    (lambda p: torch.save({"x": 3}, p / "f.pt"), "not a tensor"),
    (lambda p: torch.save("text", p / "f.pt"), "it must hold a tensor"),
    (lambda p: (p / "f.pt").write_bytes(b"not a zip"), "without running code"),
    (lambda p: (p / "f.npy").write_bytes(b"\x93NUMPY garbage"), "cannot be read"),
    (lambda p: (p / "f.csv").write_text("1,2\n"), "inputs are .npy, .npz, .pt, .pth files"),
])
def test_a_bad_inputs_file_gets_one_clear_line(tmp_path, make, message):
    make(tmp_path)
    (path,) = [f for f in tmp_path.iterdir() if f.name.startswith("f.")]
    with pytest.raises(InputsError, match=message) as info:
        read_inputs(path)
    assert "\n" not in str(info.value)


def test_batches_keep_the_structure_and_every_example(tmp_path):
    examples = {"a": torch.arange(10).view(10, 1), "b": torch.arange(10.0)}
    batches = batches_of(examples, 3)
    assert [len(b["b"]) for b in batches] == [3, 3, 3, 1]
    assert torch.equal(torch.cat([b["a"] for b in batches]), examples["a"])


class TwoInputs(nn.Module):
    """A model called as ``model(x, scale)``, the way a tuple of inputs is passed."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(6, 3)

    def forward(self, x, scale):
        return self.fc(x) * scale


def test_loading_with_inputs_makes_them_the_probe_inputs_and_fidelity_runs_on_every_example(tmp_path):
    torch.manual_seed(0)
    model = TwoInputs()
    torch.save(model, tmp_path / "m.pt")
    x, scale = torch.randn(70, 6), torch.rand(70, 1) + 0.5
    torch.save((x, scale), tmp_path / "in.pt")
    loaded = load_model(tmp_path / "m.pt", LoadOptions(trust=True, inputs=str(tmp_path / "in.pt")))
    assert len(loaded.probe_inputs) == 2 and torch.equal(loaded.probe_inputs[1][0], x[64:])
    assert any("70 examples" in note for note in loaded.meta["notes"])
    from core.io.loading import with_inputs

    torch.save((x[:5], scale[:5]), tmp_path / "fewer.pt")
    again = with_inputs(loaded, str(tmp_path / "fewer.pt"))  # other inputs replace the first, note and all
    assert [n for n in again.meta["notes"] if n.startswith("inputs:")] == ["inputs: 5 examples of 6 float32, "
                                                                          "1 float32, from fewer.pt"]
    assert len(loaded.probe_inputs) == 2  # the model read first is not changed
    other = TwoInputs()
    result = run(fidelity(other, loaded.module, loaded.probe_inputs))
    assert result.count == 70
    with torch.no_grad():
        expected = (other(x, scale).argmax(1) == loaded.module(x, scale).argmax(1)).float().mean().item()
    assert result.top1_agreement == pytest.approx(expected)


def test_inspect_and_compress_run_on_the_inputs_not_the_models_own_data_set(tmp_path):
    x = torch.rand(120, 1, 28, 28)
    torch.save(x, tmp_path / "x.pt")
    report = tmp_path / "r.json"
    result = prunescope("inspect", "zoo:lenet5", "--inputs", str(tmp_path / "x.pt"), "--json", str(report),
                        "--quiet")
    assert result.returncode == 0, result.stderr
    assert "inputs: 120 examples of 1x28x28 float32, from x.pt" in result.stdout + result.stderr
    r = json.loads(report.read_text())
    assert r["model"]["inputs"] == str(tmp_path / "x.pt")
    assert "test" not in r["metrics"]  # no labelled data: no accuracy from MNIST behind the person's back
    assert all(layer["activation_observations"] in (None, 120) or layer["activation_observations"] % 120 == 0
               for layer in r["layers"])
    assert any(layer["activation_observations"] for layer in r["layers"])

    recipe = tmp_path / "r.yaml"
    recipe.write_text("steps:\n  - {kind: prune_magnitude, sparsity: 0.5}\n")
    out = tmp_path / "out"
    result = prunescope("compress", "zoo:lenet5", "--inputs", str(tmp_path / "x.pt"), "--recipe", str(recipe),
                        "--out", str(out), "--quiet")
    assert result.returncode == 0, result.stderr
    c = json.loads((out / "report.json").read_text())
    assert c["inputs"] == str(tmp_path / "x.pt")
    after = c["metrics"]["after"]
    assert after["fidelity"]["count"] == 120 and "test" not in after


def test_inputs_the_model_cannot_take_are_said_before_any_work(tmp_path, untouched):
    np.save(tmp_path / "x.npy", RNG.random((8, 5)).astype(np.float32))
    untouched(tmp_path / "x.npy")
    result = prunescope("inspect", "zoo:lenet300", "--inputs", str(tmp_path / "x.npy"), "--quiet")
    assert result.returncode != 0
    assert "the inputs of x.npy shaped (8, 5)" in result.stderr and "Traceback" not in result.stderr


def test_a_folder_of_images_is_every_image_in_name_order_scaled_to_0_1(tmp_path):
    from PIL import Image

    folder = tmp_path / "imgs"
    (folder / "more").mkdir(parents=True)
    pixels = [RNG.integers(0, 256, (28, 28), dtype=np.uint8) for _ in range(3)]
    for name, arr in zip(["b.png", "a.png", "more/c.png"], pixels):
        Image.fromarray(arr).save(folder / name)
    (folder / "notes.txt").write_text("not an image")
    examples = read_example_set(folder)
    assert examples.shape == (3, 1, 28, 28) and examples.dtype == torch.float32
    expected = [pixels[1], pixels[0], pixels[2]]  # a.png, b.png, more/c.png
    assert torch.equal(examples[:, 0], torch.from_numpy(np.stack(expected)).float() / 255)


def test_a_folder_of_images_of_different_sizes_or_none_gets_one_line(tmp_path):
    from PIL import Image

    Image.fromarray(np.zeros((28, 28), np.uint8)).save(tmp_path / "a.png")
    Image.fromarray(np.zeros((14, 14), np.uint8)).save(tmp_path / "b.png")
    with pytest.raises(InputsError, match="b.png: image is \\(14, 14\\), the others are \\(28, 28\\)"):
        read_example_set(tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "x.txt").write_text("")
    with pytest.raises(InputsError, match="a folder of inputs holds images"):
        read_example_set(empty)
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "x.png").write_bytes(b"not a png")
    with pytest.raises(InputsError, match="cannot read image"):
        read_example_set(tmp_path / "broken")


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory):
    pytest.importorskip("transformers")
    from tests.factories import write_hf_folder

    return write_hf_folder(tmp_path_factory.mktemp("hf") / "tiny-bert")


def test_lines_of_text_go_through_the_models_own_tokenizer_every_line_counted(tmp_path, tiny_bert):
    words = "the quick brown fox jumps over lazy dog pruning removes weights".split()
    lines = [" ".join(words[i % 7:i % 7 + 3 + i % 4]) for i in range(150)]
    lines[3] = " ".join(words * 20)  # longer than the model's 64 positions: truncated, not a crash
    (tmp_path / "lines.txt").write_text("\n".join(lines[:75]) + "\n\n  \n" + "\r\n".join(lines[75:]) + "\n",
                                        encoding="utf-8")
    loaded = load_model(tiny_bert, LoadOptions(inputs=str(tmp_path / "lines.txt")))
    assert sum(b["input_ids"].shape[0] for b in loaded.probe_inputs) == 150  # blank lines are not examples
    assert max(b["input_ids"].shape[1] for b in loaded.probe_inputs) <= 64
    assert any(n.startswith("inputs: 150 lines of text, tokenized") for n in loaded.meta["notes"])
    result = run(fidelity(loaded.module, loaded.module, loaded.probe_inputs))
    assert result.count == 150 and result.cosine == pytest.approx(1.0)


def test_text_for_a_model_without_a_tokenizer_or_not_utf8_is_refused(tmp_path, tiny_bert):
    (tmp_path / "lines.txt").write_text("one line\n")
    with pytest.raises(InputsError, match="lines of text are inputs for a model with a tokenizer"):
        load_model("zoo:lenet300", LoadOptions(inputs=str(tmp_path / "lines.txt")))
    (tmp_path / "latin.txt").write_bytes("caf\xe9\n".encode("latin-1"))
    with pytest.raises(InputsError, match="not UTF-8"):
        load_model(tiny_bert, LoadOptions(inputs=str(tmp_path / "latin.txt")))
    (tmp_path / "blank.txt").write_text("\n \n")
    with pytest.raises(InputsError, match="no lines of text"):
        load_model(tiny_bert, LoadOptions(inputs=str(tmp_path / "blank.txt")))


class AudioNet(nn.Module):
    """An audio-style model called as ``model(x, sr)``: framed samples through a small conv stack."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv1d(1, 8, 16, stride=8)
        self.act = nn.ReLU()
        self.fc = nn.Linear(8, 4)

    def forward(self, x: torch.Tensor, sr: int) -> torch.Tensor:
        assert sr == 16000, "the model was given the wrong sample rate"
        h = self.act(self.conv(x.unsqueeze(1)))
        return self.fc(h.mean(-1))


def _write_wavs(folder, lengths, rate=16000, channels=1):
    soundfile = pytest.importorskip("soundfile")
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for i, n in enumerate(lengths):
        samples = (RNG.standard_normal((n, channels) if channels > 1 else n) * 0.1).astype(np.float32)
        soundfile.write(str(folder / f"clip{i:02d}.wav"), samples, rate, subtype="FLOAT")
        written.append(samples)
    return written


def test_a_wav_folder_is_cut_into_windows_and_the_rate_goes_where_forward_names_it(tmp_path):
    written = _write_wavs(tmp_path / "wavs", [4000, 3300, 1000])
    torch.manual_seed(0)
    torch.save(AudioNet(), tmp_path / "audio.pt")
    options = LoadOptions(trust=True, inputs=str(tmp_path / "wavs"), sample_rate=16000, chunk=1600)
    loaded = load_model(tmp_path / "audio.pt", options)
    # 4000 -> 2 windows, 3300 -> 2, 1000 -> none: 4 windows, 800 + 100 + 1000 tail samples left out
    ((x, sr),) = loaded.probe_inputs
    assert x.shape == (4, 1600) and sr == 16000
    assert torch.equal(x[2], torch.from_numpy(written[1][:1600]))
    note = next(n for n in loaded.meta["notes"] if n.startswith("inputs:"))
    assert "4 windows of 1,600 samples at 16,000 Hz from 3 audio files" in note and "1,900 tail samples" in note
    assert "the rate passed as sr" in note
    assert run(fidelity(loaded.module, loaded.module, loaded.probe_inputs)).count == 4


def test_a_scripted_audio_model_takes_the_rate_as_its_typed_int(tmp_path):
    _write_wavs(tmp_path / "wavs", [3200, 3200])
    torch.manual_seed(0)
    torch.jit.script(AudioNet()).save(str(tmp_path / "audio.ts"))
    options = LoadOptions(trust=True, inputs=str(tmp_path / "wavs"), sample_rate=16000, chunk=1600)
    loaded = load_model(tmp_path / "audio.ts", options)
    ((x, sr),) = loaded.probe_inputs
    assert x.shape == (4, 1600) and sr == 16000 and isinstance(sr, int)
    result = prunescope("inspect", str(tmp_path / "audio.ts"), "--trust", "--inputs", str(tmp_path / "wavs"),
                        "--sample-rate", "16000", "--chunk", "1600", "--reference", str(tmp_path / "audio.ts"),
                        "--quiet")
    assert result.returncode == 0, result.stderr
    assert "fidelity to reference: top-1 agreement 100.00%" in result.stdout


@pytest.mark.parametrize("lengths, options, message", [
    ([1600, 1700], {}, "pass --chunk N"),
    ([1600], {"sample_rate": 8000}, "16000 Hz, --sample-rate is 8000 Hz; resample it"),
    ([100], {"chunk": 1600}, "no audio long enough for one window of 1,600 samples"),
    ([1600], {"chunk": 0}, "--chunk must be at least 1"),
])
def test_audio_that_does_not_fit_gets_one_line(tmp_path, lengths, options, message):
    _write_wavs(tmp_path / "wavs", lengths)
    torch.save(AudioNet(), tmp_path / "audio.pt")
    with pytest.raises(InputsError, match=message):
        load_model(tmp_path / "audio.pt", LoadOptions(trust=True, inputs=str(tmp_path / "wavs"), **options))


def test_stereo_or_broken_audio_is_refused(tmp_path):
    _write_wavs(tmp_path / "stereo", [1600], channels=2)
    torch.save(AudioNet(), tmp_path / "audio.pt")
    with pytest.raises(InputsError, match="2 channels; audio inputs are mono"):
        load_model(tmp_path / "audio.pt", LoadOptions(trust=True, inputs=str(tmp_path / "stereo")))
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "x.wav").write_bytes(b"RIFF not really")
    with pytest.raises(InputsError, match="cannot read audio"):
        load_model(tmp_path / "audio.pt", LoadOptions(trust=True, inputs=str(tmp_path / "broken")))


class Encoder(nn.Module):
    """Token states (N, T, H) from ids: an embedding model's output, where arg-max means nothing."""

    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(50, 16)
        self.fc = nn.Linear(16, 16)

    def forward(self, input_ids, attention_mask):
        return self.fc(self.emb(input_ids))


def test_an_embedding_models_fidelity_is_pooled_cosine_with_its_5th_percentile_and_no_top1():
    torch.manual_seed(0)
    model, other = Encoder(), Encoder()
    other.load_state_dict(model.state_dict())
    with torch.no_grad():
        other.fc.weight.add_(torch.randn_like(other.fc.weight) * 0.3)
    ids = torch.randint(0, 50, (40, 9))
    mask = (torch.arange(9) < torch.randint(2, 10, (40, 1))).long()  # padded sentences of 2-9 tokens
    batches = [{"input_ids": ids[:25], "attention_mask": mask[:25]}, {"input_ids": ids[25:], "attention_mask": mask[25:]}]
    result = run(fidelity(other, model, batches))
    assert result.kind == "embed" and result.top1_agreement is None and result.count == 40
    with torch.no_grad():
        m = mask.float().unsqueeze(-1)
        pool = lambda net: (net(ids, mask) * m).sum(1) / m.sum(1)  # noqa: E731
        cos = nn.functional.cosine_similarity(pool(other), pool(model), dim=1).numpy()
    assert result.cosine == pytest.approx(float(cos.mean()), abs=1e-6)
    assert result.cosine_p5 == pytest.approx(float(np.percentile(cos, 5)), abs=1e-6)
    assert result.cosine_p5 < result.cosine < 1


def test_a_classifier_keeps_top1_and_a_one_number_output_is_a_regression():
    torch.manual_seed(0)
    x = torch.randn(30, 6)
    classifier = nn.Linear(6, 4)
    regressor = nn.Linear(6, 1)
    assert run(fidelity(classifier, classifier, [x])).kind == "classify"
    r = run(fidelity(regressor, regressor, [x]))
    assert r.kind == "regress" and r.top1_agreement is None and r.relative_error == 0


def test_inspect_a_text_encoder_on_ones_lines_reports_cosine_over_every_line_and_no_top1(tmp_path):
    pytest.importorskip("transformers")
    from tests.factories import write_hf_folder

    folder = write_hf_folder(tmp_path / "encoder", encoder=True)
    words = "the quick brown fox jumps over lazy dog".split()
    (tmp_path / "lines.txt").write_text("\n".join(" ".join(words[i % 5:]) for i in range(70)), encoding="utf-8")
    report = tmp_path / "r.json"
    result = prunescope("inspect", str(folder), "--inputs", str(tmp_path / "lines.txt"), "--reference",
                        str(folder), "--json", str(report), "--quiet")
    assert result.returncode == 0, result.stderr
    assert "fidelity to reference: cosine 1.0000 (5th percentile 1.0000)" in result.stdout
    assert "over 70 inputs (embeddings)" in result.stdout and "top-1" not in result.stdout
    f = json.loads(report.read_text())["metrics"]["fidelity"]
    assert f["kind"] == "embed" and f["top1_agreement"] is None and f["count"] == 70
