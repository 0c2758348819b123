"""The user's own inputs for a model (``--inputs PATH``): unlabelled examples to run the model on.

They stand where a model without a data set has only its probe inputs: activation counts, calibration and
fidelity to the original all run on them. A labelled set stays ``--data``.

One reader per kind of file, registered by suffix (:data:`READERS`). Each returns the whole set as one
*example set*: a tensor, a tuple of tensors (positional arguments) or a dict of named tensors (keyword
arguments), every tensor batched along its first dimension. :func:`read_inputs` validates it and cuts it into
batches.

- ``.npy``: one array.
- ``.npz``: ``np.savez(f, a, b)`` (keys ``arr_0``, ``arr_1``, ...) is positional; named keys are keyword
  arguments. Pickled object arrays are refused (``allow_pickle=False``).
- ``.pt`` / ``.pth``: a tensor, a tuple or list of tensors, or a dict of named tensors, read with
  ``torch.load(weights_only=True)``, which runs no code.
- a folder of images (:data:`FOLDER_READERS`): every image in it, one size, as float32 in [0, 1], (N, C, H, W).

Floating-point arrays of float64 become float32 (what models take); integer arrays (token ids) stay integers.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from core.errors import PrunescopeError, one_line

DEFAULT_BATCH = 64
MAX_TENSORS = 64  # more named inputs than any model's signature takes: a malformed file


class InputsError(PrunescopeError):
    """The inputs file cannot be read or does not hold an example set."""


Reader = Callable[[Path], Any]
READERS: dict[str, Reader] = {}


def reader(*suffixes: str):
    def register(fn: Reader) -> Reader:
        for suffix in suffixes:
            READERS[suffix] = fn
        return fn
    return register


@reader(".npy")
def _read_npy(path: Path):
    return _array(np.load(path, allow_pickle=False), path.name)


@reader(".npz")
def _read_npz(path: Path):
    with np.load(path, allow_pickle=False) as archive:
        names = list(archive.files)
        if not names:
            raise InputsError(f"{path.name}: the archive holds no arrays")
        if len(names) > MAX_TENSORS:
            raise InputsError(f"{path.name}: {len(names)} arrays; a model takes at most {MAX_TENSORS} inputs")
        arrays = {name: _array(archive[name], f"{path.name}[{name}]") for name in names}
    if len(names) == 1:
        return next(iter(arrays.values()))
    if sorted(names, key=_arr_index) == [f"arr_{i}" for i in range(len(names))]:
        return tuple(arrays[f"arr_{i}"] for i in range(len(names)))  # np.savez(f, a, b): positional
    return arrays


def _arr_index(name: str) -> int:
    match = re.fullmatch(r"arr_(\d+)", name)
    return int(match.group(1)) if match else -1


@reader(".pt", ".pth")
def _read_pt(path: Path):
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many kinds for a file that is not a plain tensor file
        raise InputsError(one_line(f"{path.name}: not a tensor file torch can read without running code "
                                   f"({type(exc).__name__}: {exc})")) from None
    if isinstance(obj, torch.Tensor):
        return _tensor(obj, path.name)
    if isinstance(obj, (tuple, list)) and obj and len(obj) <= MAX_TENSORS:
        return tuple(_tensor(t, f"{path.name}[{i}]") for i, t in enumerate(obj))
    if isinstance(obj, dict) and obj and len(obj) <= MAX_TENSORS and all(isinstance(k, str) for k in obj):
        return {k: _tensor(t, f"{path.name}[{k!r}]") for k, t in obj.items()}
    raise InputsError(f"{path.name}: holds {type(obj).__name__}; it must hold a tensor, a tuple or list of "
                      f"tensors, or a dict of named tensors (at most {MAX_TENSORS})")


FOLDER_READERS: dict[str, Reader] = {}  # kind of folder -> reader, tried in order by :func:`folder_kind`


def _read_image_folder(folder: Path):
    """Every image file in the folder (sorted by name, subfolders included), one size, as float32 in [0, 1]
    shaped (N, C, H, W), as the image data sets are given to a model."""
    from core.eval.data import IMAGE_SUFFIXES, DataError, image_tensor, read_image, to_float

    files = sorted(f for f in folder.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
    images, shape = [], None
    try:
        for file in files:
            arr = read_image(file)
            if shape is not None and arr.shape != shape:
                raise InputsError(f"{file.name}: image is {arr.shape}, the others are {shape}; resize them to "
                                  "one size")
            shape = arr.shape
            images.append(arr)
        return to_float(image_tensor(images, folder.name))
    except DataError as exc:
        raise InputsError(one_line(str(exc))) from None


FOLDER_READERS["images"] = _read_image_folder


AUDIO_SUFFIXES = {".wav", ".flac", ".ogg"}
RATE_NAMES = ("sr", "sample_rate", "sampling_rate", "samplerate", "fs", "rate")
"""Names a model's forward gives the argument that takes the sample rate."""


def read_audio_folder(folder: Path, sample_rate: int | None = None, chunk: int | None = None):
    """Every mono audio file in the folder (name order, subfolders included) as float32 samples shaped
    (N, T): one row per file, all of one length, or with ``chunk`` each file cut into windows of ``chunk``
    samples (the tail shorter than a window is left out). Returns ``(samples, rate, description)``; every
    file must be at ``sample_rate`` (when given) and all at one rate."""
    try:
        import soundfile
    except ImportError:
        raise InputsError(f"{folder.name}: reading audio needs the optional soundfile package: "
                          "pip install -e '.[audio]'") from None
    from core.fileio import check_input

    if chunk is not None and chunk < 1:
        raise InputsError(f"--chunk must be at least 1 sample, not {chunk}")
    files = sorted(f for f in folder.rglob("*") if f.is_file() and f.suffix.lower() in AUDIO_SUFFIXES)
    rows, rate, dropped, skipped = [], sample_rate, 0, 0
    for file in files:
        check_input(file, MAX_AUDIO_BYTES, "audio file", error=InputsError)
        try:
            info = soundfile.info(str(file))
            if info.channels != 1:
                raise InputsError(f"{file.name}: {info.channels} channels; audio inputs are mono")
            if rate is not None and info.samplerate != rate:
                said = "--sample-rate is" if sample_rate is not None else "the others are"
                raise InputsError(f"{file.name}: {info.samplerate} Hz, {said} {rate} Hz; resample it")
            rate = info.samplerate
            samples, _ = soundfile.read(str(file), dtype="float32", always_2d=False)
        except (RuntimeError, soundfile.LibsndfileError) as exc:
            raise InputsError(one_line(f"{file.name}: cannot read audio ({exc})")) from None
        samples = np.asarray(samples, dtype=np.float32).reshape(-1)
        if chunk is None:
            if rows and len(samples) != rows[0].shape[-1]:
                raise InputsError(f"{file.name}: {len(samples):,} samples, {files[0].name} has "
                                  f"{rows[0].shape[-1]:,}; pass --chunk N to cut them into windows of N samples")
            rows.append(samples[None])
        else:
            whole = len(samples) // chunk
            skipped += whole == 0
            dropped += len(samples) - whole * chunk
            if whole:
                rows.append(samples[:whole * chunk].reshape(whole, chunk))
    if not rows:
        raise InputsError(f"{folder.name}: no audio long enough for one window of {chunk:,} samples"
                          if files else f"{folder.name}: no audio files")
    x = torch.from_numpy(np.concatenate(rows))
    said = f"{x.shape[0]:,} {'windows' if chunk else 'clips'} of {x.shape[1]:,} samples at {rate:,} Hz " \
           f"from {len(files):,} audio file{'s' if len(files) != 1 else ''}"
    if dropped:
        said += f" ({dropped:,} tail samples left out{f', {skipped} files shorter than a window' if skipped else ''})"
    return x, rate, said


def forward_parameters(module) -> list[tuple[str, str | None]]:
    """The (name, type) of each argument of the model's forward, after ``self``; the type is TorchScript's
    (``"int"``, ``"Tensor"``), None for an eager model. A compiled program's wrapper
    (:class:`~core.io.program.CompiledProgram`) is asked of its program's forward."""
    import inspect

    program = getattr(module, "program", None)
    module = program if isinstance(program, torch.nn.Module) else module
    schema = getattr(module.forward, "schema", None)  # a TorchScript method
    if schema is not None:
        return [(a.name, str(a.type)) for a in schema.arguments][1:]
    try:
        parameters = inspect.signature(module.forward).parameters.values()
    except (TypeError, ValueError):
        return []
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD,
             inspect.Parameter.KEYWORD_ONLY)
    return [(p.name, None) for p in parameters if p.kind in kinds]


def audio_batches(module, samples: torch.Tensor, rate: int, batch_size: int = DEFAULT_BATCH) -> tuple[list, str]:
    """Batches of samples, with the sample rate as the extra argument the model's forward names (one of
    :data:`RATE_NAMES`), positional when it is the second argument; and how it was passed, for a note."""
    params = forward_parameters(module)
    named = [(i, name, kind) for i, (name, kind) in enumerate(params) if name in RATE_NAMES and i > 0]
    value = rate
    if named and named[0][2] == "Tensor":
        value = torch.tensor(rate)
    batches = []
    for start in range(0, samples.shape[0], batch_size):
        part = samples[start:start + batch_size]
        if not named:
            batches.append(part)
        elif named[0][0] == 1:
            batches.append((part, value))
        else:
            batches.append({params[0][0]: part, named[0][1]: value})
    how = f", the rate passed as {named[0][1]}" if named else ""
    return batches, how


def _image_suffixes() -> set[str]:
    from core.eval.data import IMAGE_SUFFIXES

    return IMAGE_SUFFIXES


def folder_kind(folder: Path, limit: int | None = None) -> str | None:
    """``audio`` or ``images`` by the files' suffixes (the first ``limit`` entries only, when given: a quick
    look before reading); None for neither."""
    from itertools import islice

    from core.eval.data import IMAGE_SUFFIXES

    suffixes = {f.suffix.lower() for f in islice(folder.rglob("*"), limit) if f.is_file()}
    if suffixes & AUDIO_SUFFIXES:
        return "audio"
    if suffixes & IMAGE_SUFFIXES:
        return "images"
    return None


def _array(a: np.ndarray, what: str) -> torch.Tensor:
    if a.dtype.kind not in "fiub":
        raise InputsError(f"{what}: arrays of dtype {a.dtype} are not model inputs; use numbers")
    if a.ndim == 0:  # before ascontiguousarray, which makes a 0-d array 1-d
        raise InputsError(f"{what}: a single number; inputs are batched along their first dimension")
    if a.dtype == np.float64:
        a = a.astype(np.float32)
    return _tensor(torch.from_numpy(np.ascontiguousarray(a)), what)


def _tensor(t, what: str) -> torch.Tensor:
    if not isinstance(t, torch.Tensor):
        raise InputsError(f"{what}: holds {type(t).__name__}, not a tensor")
    if t.dim() == 0:
        raise InputsError(f"{what}: a single number; inputs are batched along their first dimension")
    if t.dtype == torch.float64:
        t = t.float()
    return t


TEXT_SUFFIXES = (".txt",)
MAX_TEXT_BYTES = 256 << 20
MAX_AUDIO_BYTES = 2 << 30
TEXT_MAX_TOKENS = 128  # each line is truncated to this many tokens


def is_text(path: str | Path) -> bool:
    return Path(path).suffix.lower() in TEXT_SUFFIXES


def read_text_lines(path: str | Path) -> list[str]:
    """A text file's examples: one per non-blank line, UTF-8, the line ending taken off."""
    from core.fileio import read_input_text

    path = Path(path).expanduser()
    if not path.is_file():
        raise InputsError(f"{path}: no such file")
    text = read_input_text(path, MAX_TEXT_BYTES, "text inputs file", InputsError)
    lines = [line.rstrip("\r") for line in text.split("\n") if line.strip()]
    if not lines:
        raise InputsError(f"{path.name}: holds no lines of text")
    return lines


def tokenized_batches(lines: list[str], tokenize, batch_size: int = DEFAULT_BATCH) -> list[Any]:
    """Lines of text as the model's input batches, through its own tokenizer."""
    return [tokenize(lines[i:i + batch_size], TEXT_MAX_TOKENS) for i in range(0, len(lines), batch_size)]


def read_example_set(path: str | Path):
    """The file's example set (tensor, tuple or dict of tensors), validated; :class:`InputsError` otherwise."""
    path = Path(path).expanduser()
    if not path.exists():
        raise InputsError(f"{path}: no such file")
    if path.is_dir():
        kind = folder_kind(path)
        if kind is None:
            raise InputsError(f"{path}: a folder of inputs holds images ({', '.join(sorted(_image_suffixes()))}) "
                              f"or audio ({', '.join(sorted(AUDIO_SUFFIXES))})")
        if kind not in FOLDER_READERS:
            raise InputsError(f"{path}: a folder of {kind} is read with the model (see read_audio_folder)")
        read = FOLDER_READERS[kind]
    elif not path.is_file():
        raise InputsError(f"{path}: not a file or a folder")
    else:
        read = READERS.get(path.suffix.lower())
    if read is None:
        raise InputsError(f"{path.name}: inputs are {', '.join(sorted(READERS))} files, a .txt of lines (for a "
                          "model with a tokenizer), or a folder of images")
    try:
        examples = read(path)
    except InputsError:
        raise
    except (OSError, ValueError, EOFError) as exc:
        raise InputsError(one_line(f"{path.name}: cannot be read ({exc})")) from None
    tensors = _tensors_of(examples)
    counts = {t.shape[0] for t in tensors}
    if len(counts) != 1:
        raise InputsError(one_line(f"{path.name}: its tensors hold different numbers of examples along the "
                                   f"first dimension ({', '.join(str(t.shape[0]) for t in tensors)})"))
    if counts == {0}:
        raise InputsError(f"{path.name}: holds no examples (the first dimension is 0)")
    return examples


def _tensors_of(examples) -> list[torch.Tensor]:
    if isinstance(examples, torch.Tensor):
        return [examples]
    if isinstance(examples, tuple):
        return list(examples)
    return list(examples.values())


def example_count(examples) -> int:
    return _tensors_of(examples)[0].shape[0]


def batches_of(examples, batch_size: int = DEFAULT_BATCH) -> list[Any]:
    """The example set cut along the first dimension into batches of the same structure."""
    if batch_size < 1:
        raise InputsError(f"batch size must be at least 1, not {batch_size}")
    n = example_count(examples)
    out = []
    for start in range(0, n, batch_size):
        part = slice(start, start + batch_size)
        if isinstance(examples, torch.Tensor):
            out.append(examples[part])
        elif isinstance(examples, tuple):
            out.append(tuple(t[part] for t in examples))
        else:
            out.append({k: t[part] for k, t in examples.items()})
    return out


def read_inputs(path: str | Path, batch_size: int = DEFAULT_BATCH) -> list[Any]:
    """The file's examples as batches to call the model with (see the module's docstring)."""
    return batches_of(read_example_set(path), batch_size)


def describe(examples) -> str:
    """One line for a report or a status bar: ``"1,000 examples of 1x28x28 float32"``."""
    n = example_count(examples)
    if isinstance(examples, torch.Tensor):
        parts = [_shape(examples)]
    elif isinstance(examples, tuple):
        parts = [_shape(t) for t in examples]
    else:
        parts = [f"{k} {_shape(t)}" for k, t in examples.items()]
    return f"{n:,} example{'s' if n != 1 else ''} of " + ", ".join(parts)


def _shape(t: torch.Tensor) -> str:
    dims = "x".join(str(d) for d in t.shape[1:]) or "scalar"
    return f"{dims} {str(t.dtype).removeprefix('torch.')}"
