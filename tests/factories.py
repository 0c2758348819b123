"""Writes real model files of every supported format (and broken ones) for the loader tests."""

from __future__ import annotations

import io
import pickle
from pathlib import Path

import torch
from torch import nn

from core.eval.zoo import LeNet300, load_zoo_model

MARKER_NAME = "pickle-code-ran.txt"


def leave_marker(path: str) -> str:
    Path(path).write_text("the pickle ran code")
    return path


class Evil:
    """Unpickling this writes a marker file: proof that the pickle's code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (leave_marker, (str(self.marker),))


class NoParams(nn.Module):
    def forward(self, x):
        return torch.relu(x)


class Wrapped(nn.Module):
    """A model class defined in the tests package (importable), for whole-module pickles."""

    def __init__(self) -> None:
        super().__init__()
        self.body = LeNet300()

    def forward(self, x):
        return self.body(x)


def make_lenet300() -> nn.Module:
    return LeNet300()


def make_wrong() -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 10))


def write_model_files(folder: Path) -> dict[str, Path]:
    model, _ = load_zoo_model("lenet300")
    example = torch.rand(1, 1, 28, 28)
    files: dict[str, Path] = {}

    files["torchscript"] = folder / "lenet300.ts.pt"
    torch.jit.save(torch.jit.script(model), files["torchscript"])

    files["export"] = folder / "lenet300.pt2"
    batch = torch.export.Dim("batch", min=1, max=4096)
    torch.export.save(torch.export.export(model, (example.repeat(2, 1, 1, 1),), dynamic_shapes=({0: batch},)),
                      files["export"])
    files["export_static"] = folder / "lenet300_batch1.pt2"
    torch.export.save(torch.export.export(model, (example,)), files["export_static"])

    files["state_dict"] = folder / "lenet300_state.pt"
    torch.save(model.state_dict(), files["state_dict"])

    files["wrapped_state_dict"] = folder / "lenet300_ckpt.pth"
    torch.save({"epoch": 3, "model_state_dict": model.state_dict()}, files["wrapped_state_dict"])

    wrapped = Wrapped()
    wrapped.body.load_state_dict(model.state_dict())
    files["pickle"] = folder / "whole_model.pt"
    torch.save(wrapped, files["pickle"])

    files["no_params"] = folder / "no_params.pt"
    torch.save(NoParams(), files["no_params"])

    files["no_params_ts"] = folder / "no_params.ts.pt"
    torch.jit.save(torch.jit.script(NoParams()), files["no_params_ts"])

    marker = folder / MARKER_NAME
    files["marker"] = marker
    files["evil"] = folder / "evil.pt"
    buffer = io.BytesIO()
    pickle.dump({"model": Evil(marker)}, buffer, protocol=2)
    files["evil"].write_bytes(buffer.getvalue())
    files["evil_zip"] = folder / "evil_zip.pt"
    torch.save({"model": Evil(marker)}, files["evil_zip"])

    files["mismatch"] = folder / "wrong_arch_state.pt"
    torch.save(make_wrong().state_dict(), files["mismatch"])

    data = files["state_dict"].read_bytes()
    files["truncated"] = folder / "truncated.pt"
    files["truncated"].write_bytes(data[: len(data) // 2])
    files["truncated_pickle"] = folder / "truncated_legacy.pt"
    legacy = io.BytesIO()
    torch.save(model.state_dict(), legacy, _use_new_zipfile_serialization=False)
    files["truncated_pickle"].write_bytes(legacy.getvalue()[:200])
    files["legacy"] = folder / "legacy_state.pt"
    files["legacy"].write_bytes(legacy.getvalue())

    files["text"] = folder / "notes.txt"
    files["text"].write_text("this is not a model\n")
    files["png"] = folder / "picture.png"
    files["png"].write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(64))
    files["empty"] = folder / "empty.pt"
    files["empty"].write_bytes(b"")
    files["empty_dir"] = folder / "not_a_model"
    files["empty_dir"].mkdir()
    return files


def write_hf_folder(folder: Path, with_tokenizer: bool = True, encoder: bool = False, causal: bool = False) -> Path:
    """A tiny BERT sequence classifier (with ``encoder``, the bare encoder, whose output is hidden states;
    with ``causal``, a decoder predicting each next token: a causal language model) saved with
    save_pretrained (and its own WordPiece tokenizer)."""
    from transformers import BertConfig, BertForSequenceClassification, BertLMHeadModel, BertModel, BertTokenizer

    folder.mkdir(parents=True, exist_ok=True)
    words = ("the quick brown fox jumps over lazy dog pruning removes weights that matter least quantization "
             "stores each weight in fewer bits a smaller model on disk is what users asked for .").split()
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *sorted(set(words))]
    config = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, num_labels=3, max_position_embeddings=64, is_decoder=causal)
    torch.manual_seed(0)
    cls = BertLMHeadModel if causal else BertModel if encoder else BertForSequenceClassification
    cls(config).save_pretrained(folder)
    if with_tokenizer:
        (folder / "vocab.txt").write_text("\n".join(vocab), encoding="utf-8")
        BertTokenizer(str(folder / "vocab.txt")).save_pretrained(folder)
    return folder


OWN_CNN = '''
import torch
from torch import nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 16, 3, padding=1)
        self.fc1 = nn.Linear(16 * 7 * 7, 32)
        self.fc2 = nn.Linear(32, 10)

    def forward(self, x):
        x = torch.max_pool2d(torch.relu(self.conv1(x)), 2)
        x = torch.max_pool2d(torch.relu(self.conv2(x)), 2)
        return self.fc2(torch.relu(self.fc1(x.flatten(1))))


def make():
    return Net()
'''
"""A user's own small CNN, as the source of a ``.py`` file of theirs (not on the import path)."""


def write_own_cnn(folder: Path, module: str = "ownnet") -> tuple[Path, Path, dict]:
    """``folder/<module>.py`` defining ``make`` and ``folder/net.pt``, its bare state_dict (seeded)."""
    folder.mkdir(parents=True, exist_ok=True)
    source = folder / f"{module}.py"
    source.write_text(OWN_CNN)
    namespace: dict = {}
    exec(compile(OWN_CNN, str(source), "exec"), namespace)
    torch.manual_seed(0)
    state = namespace["make"]().state_dict()
    torch.save(state, folder / "net.pt")
    return folder / "net.pt", source, state


def write_small_npz(path: Path, dataset, count: int = 2000) -> Path:
    """The first ``count`` training and test images of ``dataset`` as an ``.npz`` data set, so that a
    command-line test measures and trains on a few thousand images instead of the whole set."""
    import numpy as np

    train, test = dataset.train.subset(count), dataset.test.subset(count)
    np.savez(path, x_train=train.images.numpy(), y_train=train.labels.numpy(), x_test=test.images.numpy(),
             y_test=test.labels.numpy(), classes=np.array(dataset.classes))
    return path
