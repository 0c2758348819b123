"""Loading models: one loader per format, each recognising a file or passing it on.

:func:`load_model` asks each loader in :data:`LOADERS` in turn whether it recognises the spec (a zoo name, a
file, or a folder); the first that does loads it. A spec no loader accepts gets one message naming every
format tried. Loaders only ever read: the user's file is opened read-only and never written.

Pickles execute code. A whole pickled module is first read with ``torch.load(weights_only=True)``, which
runs nothing; if that fails because the file needs arbitrary classes, it is only unpickled when the caller
passes ``trust=True`` (``--trust`` on the command line, a confirmation naming the risk in the studio).
"""

from __future__ import annotations

import math
import os
from dataclasses import replace
from pathlib import Path

import torch

from core.errors import one_line
from core.io.base import Loader, LoadedModel, LoadOptions, ModelLoadError
from core.io.compressed import CompressedLoader
from core.io.exported import ExportedProgramLoader
from core.io.files import check_model_path, head, is_pickle
from core.io.hf import HuggingFaceLoader
from core.io.onnx import OnnxLoader
from core.io.pickled import PickledModuleLoader
from core.io.safetensors_weights import SafetensorsLoader
from core.io.state_dict import StateDictLoader
from core.io.torchscript import TorchScriptLoader
from core.io.zoo import ZooLoader

LOADERS: tuple[Loader, ...] = (ZooLoader(), CompressedLoader(), TorchScriptLoader(), ExportedProgramLoader(),
                               OnnxLoader(), StateDictLoader(), SafetensorsLoader(), HuggingFaceLoader(),
                               PickledModuleLoader())
"""Every format, in the order they are asked: the most specific signatures first, a whole pickle last."""


def _diagnose(path: Path) -> str:
    """Why no loader took an existing path, for the error message."""
    if path.is_dir():
        return "a folder without a Hugging Face config.json or .safetensors files"
    size = path.stat().st_size
    if size == 0:
        return "an empty file"
    if head(path, 4).startswith(b"PK"):
        return "a truncated or corrupt zip archive (PyTorch model files are zip archives)"
    if is_pickle(path):
        return "a pickle that is truncated or corrupt"
    return "not a PyTorch model file"


def load_model(spec: str | os.PathLike, options: LoadOptions | None = None) -> LoadedModel:
    """Load a model from a zoo name (``zoo:lenet300``), a file, or a folder.

    Raises :class:`ModelLoadError` (one line, naming the formats tried when nothing fits) or its subclass
    :class:`UntrustedPickleError`. The model comes back in eval mode on the CPU.
    """
    options = options or LoadOptions()
    spec = str(spec)
    if not spec.startswith("zoo:"):
        path = Path(spec).expanduser()
        check_model_path(path)  # special files, /proc, oversized files and unreadable ones end here
        spec = str(path)
    for loader in LOADERS:
        if loader.can_load(spec):
            loaded = loader.load(spec, options, load_model)
            if options.task:  # the person's word on what the output is, over what the loader or output says
                loaded = with_task(loaded, options.task)
            if options.stride:
                loaded = replace(loaded, meta={**loaded.meta, "lm_stride": options.stride})
            loaded = with_inputs(_check_loaded(loaded), options.inputs, options.sample_rate, options.chunk)
            return with_pairs(loaded, options.pairs)
    tried = "; ".join(loader.describes for loader in LOADERS)
    raise ModelLoadError(one_line(f"{Path(spec).name}: {_diagnose(Path(spec))}. Formats tried: {tried}"))


def _check_loaded(loaded: LoadedModel) -> LoadedModel:
    if loaded.streamed is not None:  # weights only: nothing to run, and no inputs to make
        return loaded
    if next(iter(loaded.module.parameters()), None) is None:
        raise ModelLoadError(f"{loaded.name}: the model has no parameters, so there is nothing to inspect or "
                             "compress")
    if loaded.input_shape is not None and not loaded.probe_inputs:
        loaded = replace(loaded, probe_inputs=[torch.rand(loaded.input_shape,
                                                          generator=torch.Generator().manual_seed(0))])
    return loaded


def with_inputs(loaded: LoadedModel, inputs: str | None, sample_rate: int | None = None,
                 chunk: int | None = None) -> LoadedModel:
    """The model with the person's own inputs (``--inputs``, :mod:`core.eval.inputs`) as its probe inputs,
    said in a load note; ``loaded`` itself is not changed. :class:`InputsError` when they cannot be read."""
    if not inputs or loaded.streamed is not None:  # weights with no architecture run on nothing
        return loaded
    from core.eval.inputs import (TEXT_MAX_TOKENS, InputsError, audio_batches, batches_of, describe, folder_kind,
                                  is_text, read_audio_folder, read_example_set, read_text_lines, tokenized_batches)

    path = Path(inputs).expanduser()
    extra: dict = {}
    if path.is_dir() and folder_kind(path) == "audio":
        samples, rate, said = read_audio_folder(path, sample_rate, chunk)
        batches, how = audio_batches(loaded.module, samples, rate)
        said += how
    elif is_text(inputs):
        if loaded.tokenize is None:
            raise InputsError(f"{path.name}: lines of text are inputs for a model with a tokenizer (a "
                              f"Hugging Face folder holding one); {loaded.name} has none")
        lines = read_text_lines(path)
        batches = tokenized_batches(lines, loaded.tokenize)
        said = (f"{len(lines):,} line{'s' if len(lines) != 1 else ''} of text, tokenized by the model's "
                f"tokenizer (at most {TEXT_MAX_TOKENS} tokens each)")
        stream = getattr(loaded.tokenize, "stream", None)
        if loaded.meta.get("task") == "lm" and stream is not None:  # and the whole text, for perplexity
            extra["lm_stream"] = stream("\n".join(lines))
    else:
        examples = read_example_set(path)
        batches = batches_of(examples)
        said = describe(examples)
    first = batches[0]
    main = first if isinstance(first, torch.Tensor) else first[0] if isinstance(first, tuple) else None
    shape = tuple(main.shape) if isinstance(main, torch.Tensor) else loaded.input_shape
    meta = {k: v for k, v in loaded.meta.items() if k != "lm_stream"}
    earlier = [n for n in meta.get("notes", []) if not n.startswith("inputs: ")]  # inputs read before: replaced
    meta["notes"] = [*earlier, f"inputs: {said}, from {path.name}"]
    meta["inputs"] = str(inputs)
    meta.update(extra)
    return replace(loaded, probe_inputs=batches, input_shape=shape, meta=meta)


def with_task(loaded: LoadedModel, task: str | None) -> LoadedModel:
    """The model with its output kind given for fidelity (``--task``, :data:`core.eval.fidelity.TASKS`);
    None goes back to what the loader said (``lm`` for a causal language model) or the output shows."""
    from core.eval.fidelity import TASKS

    if task is not None and task not in TASKS:
        raise ModelLoadError(f"task {task!r} is none of {', '.join(TASKS)}")
    meta = dict(loaded.meta)
    meta.setdefault("loader_task", meta.get("task"))  # what the loader said, before anyone's word
    meta["task"] = task or meta["loader_task"]
    if meta["task"] is None:
        del meta["task"]
    return replace(loaded, meta=meta)


def with_pairs(loaded: LoadedModel, pairs: str | None) -> LoadedModel:
    """The model with sentence pairs to score (``--pairs``, :mod:`core.eval.pairs`), for a model that has a
    tokenizer: ``meta["pairs"]``, with a note saying how many and how they are pooled."""
    if not pairs:
        return loaded
    from core.eval.pairs import PairsError, Pooling, read_pairs

    path = Path(pairs).expanduser()
    if loaded.tokenize is None:
        raise PairsError(f"{path.name}: sentence pairs are scored by a model with a tokenizer (a Hugging Face "
                         f"folder holding one); {loaded.name} has none")
    read = read_pairs(path)
    pooling = loaded.meta.get("pooling") or Pooling()
    meta = dict(loaded.meta)
    earlier = [n for n in meta.get("notes", []) if not n.startswith("pairs: ")]
    meta["notes"] = [*earlier, f"pairs: {len(read):,} sentence pairs from {path.name}, embedded by {pooling.said}"]
    meta["pairs"], meta["pairs_file"] = read, str(pairs)
    return replace(loaded, meta=meta)


def parse_input_shape(text: str) -> tuple[int, ...]:
    """``"1,1,28,28"`` -> ``(1, 1, 28, 28)``, with a clear error for anything else."""
    try:
        shape = tuple(int(part) for part in text.replace("x", ",").split(",") if part.strip())
    except ValueError:
        raise ModelLoadError(one_line(f"input shape {text!r} must be comma-separated positive integers, "
                                      "like 1,1,28,28")) from None
    if not shape or len(shape) > 8 or any(d <= 0 or d > 1 << 20 for d in shape) or math.prod(shape) > 1 << 28:
        raise ModelLoadError(one_line(f"input shape {text!r} must be 1 to 8 comma-separated positive integers, "
                                      "like 1,1,28,28, of at most 2**28 values in all"))
    return shape
