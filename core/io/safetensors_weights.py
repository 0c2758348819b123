"""``.safetensors`` files and folders of shards (``*.safetensors``, with or without
``model.safetensors.index.json``), read without loading them whole.

Every header is decoded and checked here before the safetensors library maps the file: its length against
the file, each tensor's dtype, shape and byte span, and the spans against the data area and each other.
Without ``--arch`` the weights are streamed: a :class:`SafetensorsWeights` reads one tensor at a time, in
slices of whole rows, through a memory map whose pages are let go after each slice. With ``--arch`` the tensors are loaded into the
named architecture like a state_dict. A Hugging Face folder (with ``config.json``) is
:mod:`core.io.hf`'s. The files are opened read-only and never written.
"""

from __future__ import annotations

import json
import math
import mmap
import struct
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import nn

from core.errors import one_line
from core.io.architectures import factory_of, with_weights
from core.io.base import LoadedModel, LoadFn, LoadOptions, ModelLoadError, TensorEntry
from core.io.files import head, path_bytes

SUFFIX = ".safetensors"
INDEX = "model.safetensors.index.json"
MAX_HEADER_BYTES = 100 * 1024 * 1024  # the safetensors library's own limit
DTYPES = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
          "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
          "U16": torch.uint16, "U32": torch.uint32, "U64": torch.uint64, "BOOL": torch.bool,
          "F8_E4M3": torch.float8_e4m3fn, "F8_E5M2": torch.float8_e5m2}
"""The safetensors dtype codes read, as torch dtypes."""


class WeightsFileError(ModelLoadError):
    """A safetensors header or shard index that cannot be true; the message names the file and the field."""


def _bad(path: Path, why: str) -> WeightsFileError:
    return WeightsFileError(one_line(f"{path.name}: not a valid safetensors file: {why}"))


def read_header(path: Path) -> tuple[TensorEntry, ...]:
    """The tensors ``path``'s header describes, in file order, every field checked (see module docstring).
    Raises :class:`WeightsFileError` (one line) for a header that cannot be true."""
    size = path.stat().st_size
    start = head(path, 8)
    if len(start) < 8:
        raise _bad(path, f"{size} bytes, shorter than the 8-byte header length")
    (length,) = struct.unpack("<Q", start)
    if length == 0 or length > MAX_HEADER_BYTES or 8 + length > size:
        raise _bad(path, f"header length {length:,} bytes, beyond the file's {size:,} bytes"
                   if 8 + length > size else f"header length {length:,} bytes")
    with open(path, "rb") as f:
        f.seek(8)
        raw = f.read(length)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _bad(path, f"the header is not UTF-8 JSON ({type(exc).__name__})") from None
    if not isinstance(header, dict):
        raise _bad(path, "the header is not a JSON object")
    metadata = header.pop("__metadata__", {})
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise _bad(path, "__metadata__ is not a map of strings")
    data = size - 8 - length
    entries = sorted((_entry(path, name, spec, 8 + length, data) for name, spec in header.items()),
                     key=lambda e: (e.start, e.end))
    for before, after in zip(entries, entries[1:]):
        if after.start < before.end:
            raise _bad(path, f"tensors {before.name!r} and {after.name!r} overlap")
    return tuple(entries)


def _entry(path: Path, name: str, spec, base: int, data: int) -> TensorEntry:
    where = f"tensor {name[:80]!r}"
    if not name or not isinstance(spec, dict):
        raise _bad(path, f"{where} is not described by a JSON object")
    dtype, shape, offsets = spec.get("dtype"), spec.get("shape"), spec.get("data_offsets")
    if dtype not in DTYPES:
        raise _bad(path, f"{where} has dtype {str(dtype)[:20]!r}, not one of {', '.join(DTYPES)}")
    if not isinstance(shape, list) or len(shape) > 16 or not all(type(d) is int and d >= 0 for d in shape):
        raise _bad(path, f"{where} has shape {str(shape)[:40]}, not a list of non-negative integers")
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(type(o) is int for o in offsets)
            and 0 <= offsets[0] <= offsets[1] <= data):
        raise _bad(path, f"{where} has data_offsets {str(offsets)[:40]}, outside the {data:,} bytes of data")
    itemsize = DTYPES[dtype].itemsize
    if math.prod(shape) * itemsize != offsets[1] - offsets[0]:
        raise _bad(path, f"{where}: shape {shape} of {dtype} is {math.prod(shape) * itemsize:,} bytes, but its "
                         f"data_offsets span {offsets[1] - offsets[0]:,}")
    return TensorEntry(name, str(DTYPES[dtype]).removeprefix("torch."), itemsize, tuple(shape), path,
                       base + offsets[0], base + offsets[1])


def shard_files(folder: Path) -> tuple[list[Path], dict[str, str] | None]:
    """The shards of a folder: those its index names (each checked to be a file in the folder), or else
    every ``*.safetensors`` file in it, in name order; and the index's map of tensor -> shard, if any."""
    index = folder / INDEX
    if not index.is_file():
        return sorted(p for p in folder.glob(f"*{SUFFIX}") if p.is_file()), None
    try:
        weight_map = json.loads(index.read_bytes()).get("weight_map")
    except (UnicodeDecodeError, json.JSONDecodeError, AttributeError):
        weight_map = None
    if not isinstance(weight_map, dict) or not weight_map or not all(isinstance(v, str) for v in weight_map.values()):
        raise WeightsFileError(f"{index.name}: not a shard index (it needs a weight_map of tensor -> file)")
    names = sorted(set(weight_map.values()))
    for name in names:
        if Path(name).name != name or not (folder / name).is_file():
            raise WeightsFileError(one_line(f"{index.name} names shard {name[:80]!r}, which is not a file in "
                                            f"{folder.name}"))
    return [folder / name for name in names], weight_map


def read_entries(path: Path) -> tuple[TensorEntry, ...]:
    """Every tensor of a file or a folder of shards, checked (a name in two shards, or an index that does not
    say where a tensor is, is refused)."""
    files, weight_map = shard_files(path) if path.is_dir() else ([path], None)
    entries = [e for f in files for e in read_header(f)]
    seen: dict[str, Path] = {}
    for e in entries:
        if e.name in seen:
            raise WeightsFileError(one_line(f"{path.name}: tensor {e.name[:80]!r} is in both {seen[e.name].name} "
                                            f"and {e.file.name}"))
        seen[e.name] = e.file
    if weight_map is not None:
        wrong = next((n for n, f in weight_map.items() if n not in seen or seen[n].name != f), None)
        if wrong is not None or len(weight_map) != len(seen):
            name = wrong or next(n for n in seen if n not in weight_map)
            raise WeightsFileError(one_line(f"{INDEX}: tensor {name[:80]!r} is not where the index says"))
    if not entries:
        raise WeightsFileError(f"{path.name}: holds no tensors")
    return tuple(entries)


class SafetensorsWeights:
    """The tensors of a file or folder of shards, read one at a time (:class:`~core.io.base.WeightsSource`).

    A tensor is read through a private memory map of its file (``ACCESS_COPY``, copy-on-write: torch warns
    on a read-only buffer, and nothing written to a private map could reach the file; nothing is written). Each slice's pages are mapped in one call before it is read (``MADV_POPULATE_READ``, where the
    kernel has it) and let go after it (``MADV_DONTNEED``), so only the slice being read is resident, never
    the tensor or the file. ``safe_open`` cannot be told to let pages go; the header it would check is checked
    here (:func:`read_header`) before any byte of data is mapped."""

    def __init__(self, entries: tuple[TensorEntry, ...]) -> None:
        self.entries = entries

    def chunks(self, entry: TensorEntry, elements: int) -> Iterator[torch.Tensor]:
        if entry.numel == 0:
            return
        with open(entry.file, "rb") as f:
            mapped = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_COPY)
        try:
            flat = torch.frombuffer(mapped, dtype=getattr(torch, entry.dtype), count=entry.numel, offset=entry.start)
            values = flat.view(entry.shape)
            del flat
            if not entry.shape:
                yield values
                return
            rows = max(1, elements // max(1, math.prod(entry.shape[1:])))
            row_bytes = entry.itemsize * math.prod(entry.shape[1:])
            for row in range(0, entry.shape[0], rows):
                start = entry.start + row * row_bytes
                end = min(entry.end, start + rows * row_bytes)
                _advise(mapped, POPULATE_READ, start, end)
                yield values[row:row + rows]
                _advise(mapped, mmap.MADV_DONTNEED, start, end)
        finally:
            values = None
            try:
                mapped.close()
            except BufferError:  # the consumer still holds a slice: the map goes with it
                pass


POPULATE_READ = getattr(mmap, "MADV_POPULATE_READ", 22)  # Linux 5.14; Python names it from 3.12 on


def _advise(mapped: mmap.mmap, option: int, start: int, end: int) -> None:
    """``madvise`` over the pages that hold bytes ``[start, end)``; a kernel without ``option`` changes nothing."""
    first = start - start % mmap.PAGESIZE
    try:
        mapped.madvise(option, first, min(len(mapped), end) - first)
    except (OSError, ValueError):
        pass


def _is_weights_folder(path: Path) -> bool:
    return path.is_dir() and not (path / "config.json").exists() and (
        (path / INDEX).is_file() or any(p.is_file() for p in path.glob(f"*{SUFFIX}")))


def _looks_like_safetensors(path: Path) -> bool:
    start = head(path, 9)
    return len(start) == 9 and start[8:9] == b"{" and 8 + struct.unpack("<Q", start[:8])[0] <= path.stat().st_size


class SafetensorsLoader:
    format = "safetensors"
    describes = "safetensors (a .safetensors file or a folder of shards; streamed, or with --arch)"

    def can_load(self, spec: str) -> bool:
        path = Path(spec)
        return _is_weights_folder(path) or path.is_file() and (path.suffix == SUFFIX or _looks_like_safetensors(path))

    def load(self, spec: str, options: LoadOptions, load: LoadFn) -> LoadedModel:
        path = Path(spec)
        entries = read_entries(path)
        name = path.stem if path.is_file() else path.name
        if options.arch:
            from safetensors.torch import load_file

            state = {k: v for f in dict.fromkeys(e.file for e in entries) for k, v in load_file(str(f)).items()}
            notes: list[str] = []
            model = with_weights(factory_of(options.arch), state, options.arch, notes)
            return LoadedModel(model.eval(), name, str(path), self.format, input_shape=options.input_shape,
                               file_bytes=path_bytes(path), meta={"arch": options.arch, "notes": notes})
        files = len({e.file for e in entries})
        note = (f"weights only, no architecture: {len(entries):,} tensors" +
                (f" in {files} shards" if files > 1 else "") + " read one at a time from disk (memory-mapped)")
        return LoadedModel(nn.Module(), name, str(path), self.format, file_bytes=path_bytes(path),
                           streamed=SafetensorsWeights(entries), meta={"notes": [note]})
