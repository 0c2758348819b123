"""Loading a Prunescope compressed file back into a working ``nn.Module``.

The file names its architecture. A zoo architecture is rebuilt directly. A ``package.module:factory``
architecture is code: it is only imported when the user names the same factory with ``--arch`` (or passes
``--trust``), never just because a file says so. Otherwise the file is rebuilt on the model it was made
from, and only where the person says that is (``LoadOptions.source``, ``--source FILE``): the path the
file records is never opened, since a downloaded file could name any file on the machine. A ``zoo:``
source is rebuilt without reading any path. The recorded structure ops are then replayed, the file's
tensor names and shapes checked against the result, and the weights decoded into it one tensor at a time.
A file made from a compiled program holds the program's code and reloads as that program
(:mod:`core.io.program`), only with trust, since loading a program unpickles it.

Every header field is checked in type and range before use (:mod:`core.format.header`). A file larger
than :data:`READ_WHOLE_BELOW` has its header read and checked against the file's length before the rest
is read, so a large file that only starts like a compressed file is refused without reading it.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch

from core.errors import one_line
from core.eval import zoo
from core.eval.data import BUILTIN_DATASETS
from core.fileio import GB, MB, check_input, read_input
from core.format.decoding import iter_decode, peek_header
from core.format.huffman import CodingError
from core.format.structure import StructureError, check_decoded, ops_from_file, replay
from core.io.architectures import fit_shapes, import_factory, same_kind
from core.io.base import (LoadedModel, LoadFn, LoadOptions, ModelLoadError, NeedsArchitecture, SourceModelNeeded,
                          UntrustedPickleError)
from core.io.files import head
from core.io.program import inflate, load_program

MAX_PSZ_BYTES = 16 * GB
READ_WHOLE_BELOW = 64 * MB


def _invalid(name: str, exc: Exception) -> ModelLoadError:
    return ModelLoadError(one_line(f"{name}: not a valid compressed file: {exc}"))


def _candidate(path: Path, recorded: str | None) -> Path | None:
    """A file in ``path``'s own folder with the recorded source's name, offered for confirmation only."""
    if not recorded:
        return None
    name = Path(recorded.replace("\\", "/")).name
    if name in ("", ".", "..") or name == path.name:
        return None
    candidate = path.parent / name
    return candidate if candidate.is_file() else None


def load_source(path: Path, options: LoadOptions, load: LoadFn) -> torch.nn.Module:
    """The model ``options.source`` names, as the skeleton for ``path``: never a compressed file (its
    structure is already changed, and a chain of them could loop), and never ``path`` itself."""
    spec = options.source
    nested = replace(options, source=None, inputs=None)
    if not spec.startswith("zoo:"):
        source = Path(spec).expanduser()
        if head(source, 4) == b"PSCZ":
            raise ModelLoadError(one_line(f"--source {spec}: a compressed file; the source must be the original "
                                          "model the compressed file was made from"))
    return load(spec, nested).module


def skeleton(info: dict, options: LoadOptions, name: str, load: LoadFn, path: Path | None = None) -> torch.nn.Module:
    """A fresh, unpruned instance of the architecture a compressed file describes."""
    arch = info.get("arch")
    if arch in zoo.ARCHITECTURES:
        return zoo.build(arch, info.get("num_classes") or 10)
    if options.arch:
        return import_factory(options.arch)
    if arch and options.trust:
        return import_factory(arch)
    if arch:
        raise NeedsArchitecture(one_line(f"{name} was made from architecture {arch}; building it imports and runs "
                                         f"that code: pass --arch {arch} (or --trust)"), suggested=arch)
    if options.source:
        return load_source(path or Path(name), options, load)
    source = info.get("source")
    if source and source.startswith("zoo:"):  # a zoo name is not a path: nothing of the file's choosing is read
        return load(source, replace(options, source=None, inputs=None)).module
    path = path or Path(name)
    raise SourceModelNeeded(path, source, _candidate(path, source))


def _program(path: Path, program: dict, ops: list, options: LoadOptions) -> tuple[torch.nn.Module, dict, dict]:
    """The compiled program a file holds the code of, as the skeleton its weights are decoded into: loaded
    only with trust (loading a program unpickles it), and never with structure ops (its code is fixed)."""
    kind = program["kind"]
    if not options.trust:
        label = {"torchscript": "TorchScript"}.get(kind, kind)
        raise UntrustedPickleError(path, [f"the {label} code it holds"], f"a compressed {label} program")
    if ops:
        raise _invalid(path.name, ValueError("a compiled program's file records structure changes"))
    try:
        model, types, meta = load_program(kind, inflate(program["data"]))
    except Exception as exc:
        raise _invalid(path.name, ValueError(f"its {kind} program does not load ({str(exc).splitlines()[0]})")) from None
    return model, types, {**meta, "program": kind}


def read_compressed(path: Path) -> bytes:
    """The file's bytes, a large file only once its header has been checked against its length."""
    size = check_input(path, MAX_PSZ_BYTES, "compressed file", error=ModelLoadError).st_size
    if size > READ_WHOLE_BELOW:
        try:
            with open(path, "rb") as f:
                peek_header(f, size)
        except CodingError as exc:
            raise _invalid(path.name, exc) from None
    return read_input(path, MAX_PSZ_BYTES, "compressed file", error=ModelLoadError)


def load_compressed(path: Path, options: LoadOptions, load: LoadFn) -> LoadedModel:
    data = read_compressed(path)
    try:
        header, tensors = iter_decode(data)
        info = header["model"]
        ops = ops_from_file(info.get("structure"), header["v"])
    except (CodingError, StructureError) as exc:
        raise _invalid(path.name, exc) from None
    types, extra = {}, {}
    if "program" in header:
        model, types, extra = _program(path, header["program"], ops, options)
    else:
        model = skeleton(info, options, path.name, load, path)
    shape = tuple(info["input_shape"]) if info.get("input_shape") else options.input_shape
    if ops:
        if shape is None:
            raise ModelLoadError(f"{one_line(path.name)}: rebuilding its pruned structure needs --input-shape")
        try:
            replay(model, torch.zeros(shape), ops)
        except StructureError as exc:
            raise ModelLoadError(one_line(f"{path.name}: {exc}")) from None
        except Exception as exc:  # tracing runs the model on the recorded input shape, which may not fit it
            raise ModelLoadError(one_line(f"{path.name}: its recorded structure cannot be replayed on this "
                                          f"architecture ({type(exc).__name__}: {str(exc)[:200]})")) from None
    arch = info.get("arch") or options.arch or "the source model"
    fit_shapes(model, {e["n_"]: tuple(e["s"]) for e in header["tensors"]}, arch)  # before decoding anything
    targets = model.state_dict(keep_vars=True)
    try:
        with torch.no_grad():
            for name, tensor in tensors:  # one tensor at a time: never the file's state beside the model's
                target = targets[name]  # a float16/bfloat16 tensor stays as the file stores it
                target.data = tensor if same_kind(tensor.dtype, target.dtype) else tensor.to(target.dtype)
    except CodingError as exc:
        raise _invalid(path.name, exc) from None
    try:
        check_decoded(model, ops)
    except StructureError as exc:
        raise _invalid(path.name, exc) from None
    dataset = info.get("dataset")
    notes = []
    if dataset and dataset not in BUILTIN_DATASETS:  # a path the file names is never opened: the user says
        notes.append(f"the file was made with data set {one_line(dataset)!r}; pass --data to measure on it")
        dataset = None
    extra.pop("example", None)
    return LoadedModel(model.eval(), path.stem, str(path), "prunescope", dataset=dataset,
                       input_shape=options.input_shape or shape, module_types=types,
                       classes=tuple(info["classes"]) if info.get("classes") else None,
                       file_bytes=len(data), meta={"arch": info.get("arch"), "compressed_from": info.get("source"),
                                                   "structure": ops, "notes": notes, **extra})


class CompressedLoader:
    format = "prunescope"
    describes = "Prunescope compressed file (.psz)"

    def can_load(self, spec: str) -> bool:
        path = Path(spec)
        return path.is_file() and head(path, 4) == b"PSCZ"

    def load(self, spec: str, options: LoadOptions, load: LoadFn) -> LoadedModel:
        return load_compressed(Path(spec), options, load)
