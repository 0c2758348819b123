"""Reading a compressed file: every field is checked against the header before it is used.

:func:`decode` (and :func:`iter_decode`, one tensor at a time) checks the CRC, then every length, count and
code against the header, so a corrupt or truncated file raises :class:`~core.format.huffman.CodingError`
with a clear message rather than crashing or reading out of bounds.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Iterator
from typing import BinaryIO

import numpy as np
import torch

from core.format import header as header_checks
from core.format import huffman
from core.format.huffman import CodingError
from core.format.layout import CRC, DTYPES, FRAMING_BYTES, MAGIC, MAX_INDEX_BITS, PREAMBLE, READS

MAX_HEADER = 64 << 20
MAX_ELEMENTS = header_checks.MAX_ELEMENTS


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise CodingError(message)


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not a number a header may hold")


def parse_header(compressed, file_bytes: int, version: int) -> dict:
    """The header from its zlib-compressed JSON, every field checked (:mod:`core.format.header`)."""
    try:
        inflater = zlib.decompressobj()
        text = inflater.decompress(compressed, MAX_HEADER)
        _require(not inflater.unconsumed_tail, "header too large")
        header = json.loads(text, parse_constant=_refuse_constant)
    except (zlib.error, ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise CodingError(f"unreadable header ({str(exc)[:200]})") from None
    header_checks.check_header(header, file_bytes)
    _require("program" not in header or version >= 5, f"a version {version} file cannot hold a program")
    header["v"] = version  # the framing's version is the one that counts
    return header


def _preamble(data, file_bytes: int) -> tuple[int, int]:
    _require(file_bytes >= FRAMING_BYTES, f"file too short ({file_bytes} bytes) to be a Prunescope compressed file")
    magic, version, header_length = PREAMBLE.unpack_from(data, 0)
    _require(magic == MAGIC, "not a Prunescope compressed file (bad magic bytes)")
    _require(version in READS, f"compressed file format version {version}; this Prunescope reads versions "
             f"{', '.join(map(str, READS))}")
    _require(header_length <= file_bytes - FRAMING_BYTES, "header length runs past the end of the file")
    return version, header_length


def read_header(data: bytes) -> tuple[dict, int]:
    """The parsed header and the offset where sections start; checks magic, version and checksum first."""
    _require(len(data) >= FRAMING_BYTES, f"file too short ({len(data)} bytes) to be a Prunescope compressed file")
    version, header_length = _preamble(data, len(data))
    (stored,) = CRC.unpack_from(data, len(data) - CRC.size)
    _require(zlib.crc32(memoryview(data)[:-CRC.size]) == stored, "checksum mismatch: the file is corrupt or truncated")
    start = PREAMBLE.size
    header = parse_header(memoryview(data)[start:start + header_length], len(data), version)
    return header, start + header_length


def peek_header(f: BinaryIO, file_bytes: int) -> dict:
    """The header of an open compressed file of ``file_bytes`` bytes, read without reading the rest: every
    field is checked, and the sections it lists must fill the file exactly. So a large file that is not
    what its first bytes claim is refused before it is read (the checksum is checked when it is)."""
    f.seek(0)
    version, header_length = _preamble(f.read(PREAMBLE.size).ljust(PREAMBLE.size, b"\0"), file_bytes)
    _require(header_length <= MAX_HEADER, "header too large")
    header = parse_header(f.read(header_length), file_bytes, version)
    sections = sum(sum(entry["z"]) for entry in header["tensors"]) + header.get("program", {}).get("z", 0)
    _require(FRAMING_BYTES + header_length + sections == file_bytes,
             f"the header describes a file of {FRAMING_BYTES + header_length + sections:,} bytes, not {file_bytes:,}")
    return header


def _shape(entry: dict) -> tuple[int, ...]:
    return header_checks.check_shape(entry.get("s"), "tensor")


def _int(entry: dict, key: str, low: int, high: int) -> int:
    value = entry.get(key)
    _require(isinstance(value, int) and not isinstance(value, bool) and low <= value <= high,
             f"field {key}={value!r} out of range [{low}, {high}]")
    return value


def _dtype(name) -> torch.dtype:
    _require(name in DTYPES, f"unknown dtype {name!r}")
    return DTYPES[name]


def _codebook(section: bytes, entry: dict, k: int) -> torch.Tensor:
    rows = max(1, entry.get("pc", 0))
    dtype = {"f16": np.float16, "f32": np.float32}.get(entry.get("cb"))
    _require(dtype is not None, "bad codebook dtype")
    _require(len(section) == rows * k * np.dtype(dtype).itemsize, "codebook size does not match its header")
    values = torch.from_numpy(np.frombuffer(section, dtype).astype(np.float32).copy())
    return values.reshape(rows, k) if entry.get("pc", 0) else values


def _symbols(table: bytes, stream: bytes, count: int, alphabet: int, entry: dict) -> np.ndarray:
    _require(count <= len(stream) * 8, f"{count:,} symbols cannot fit in a stream of {len(stream):,} bytes")
    if entry.get("huff"):
        _require(len(table) == (alphabet * 4 + 7) // 8, "Huffman table size does not match its alphabet")
        out = huffman.decode(stream, count, huffman.unpack_lengths(table, alphabet))
    else:  # fixed width: the width the encoder uses for this alphabet
        out = huffman.unpack_fixed(stream, count, max(1, int(np.ceil(np.log2(max(alphabet, 2))))))
    _require(bool(np.all(out < alphabet)), "symbol out of range")
    return out


def _values(codes: np.ndarray, positions: np.ndarray, codebook: torch.Tensor, shape, numel: int) -> torch.Tensor:
    codes_t = torch.from_numpy(codes)
    if codebook.ndim == 2:  # per output channel: the row follows from the position
        rows = torch.from_numpy(positions) // max(1, numel // max(1, shape[0]))
        _require(codebook.shape[0] == shape[0], "per-channel codebook rows do not match the tensor")
        return codebook[rows, codes_t]
    return codebook[codes_t]


def decode_tensor(entry: dict, sections: list[bytes]) -> torch.Tensor:
    shape = _shape(entry)
    numel = int(np.prod(shape, dtype=np.int64))
    out_dtype = _dtype(entry.get("out", "f32"))
    kind = entry.get("e")
    if kind == "raw":
        dtype = _dtype(entry.get("dt"))
        _require(len(sections[0]) == numel * torch.empty(0, dtype=dtype).element_size(), "raw tensor size mismatch")
        flat = torch.frombuffer(bytearray(sections[0]), dtype=dtype) if numel else torch.empty(0, dtype=dtype)
        return flat.reshape(shape).to(out_dtype)
    k = _int(entry, "k", 0, 1 << 16)
    if kind == "dense":
        _require(len(sections) == 3 and _int(entry, "n", 0, MAX_ELEMENTS) == numel, "dense tensor count mismatch")
        codebook = _codebook(sections[0], entry, k)
        codes = _symbols(sections[1], sections[2], numel, k, entry)
        return _values(codes, np.arange(numel), codebook, shape, numel).reshape(shape).to(out_dtype)
    if kind == "masked":
        _require(len(sections) == 3 and _int(entry, "n", 0, MAX_ELEMENTS) == numel, "masked tensor count mismatch")
        codebook = _codebook(sections[0], entry, k)
        symbols = _symbols(sections[1], sections[2], numel, k + 1, entry)
        positions = np.flatnonzero(symbols < k)
        dense = torch.zeros(numel, dtype=torch.float32)
        dense[torch.from_numpy(positions)] = _values(symbols[positions], positions, codebook, shape, numel).float()
        return dense.reshape(shape).to(out_dtype)
    _require(kind in ("sparse", "sparse_raw") and len(sections) == 5, f"unknown tensor encoding {kind!r}")
    n = _int(entry, "n", 0, MAX_ELEMENTS)
    bits = _int(entry, "b", 1, MAX_INDEX_BITS)
    gaps = _symbols(sections[3], sections[4], n, 1 << bits, entry) + 1
    positions = np.cumsum(gaps) - 1
    _require(n == 0 or int(positions[-1]) < numel, "sparse positions run past the end of the tensor")
    if kind == "sparse":
        codebook = _codebook(sections[0], entry, k)
        symbols = _symbols(sections[1], sections[2], n, k + 1, entry)
        real = symbols < k
        values = _values(symbols[real], positions[real], codebook, shape, numel)
        positions = positions[real]
    else:
        dtype = {"f16": np.float16, "f32": np.float32}.get(entry.get("dt"))
        _require(dtype is not None and len(sections[2]) == n * np.dtype(dtype).itemsize, "sparse values size mismatch")
        values = torch.from_numpy(np.frombuffer(sections[2], dtype).astype(np.float32))
    dense = torch.zeros(numel, dtype=torch.float32)
    dense[torch.from_numpy(positions)] = values.float()
    return dense.reshape(shape).to(out_dtype)


def iter_decode(data: bytes) -> tuple[dict, Iterator[tuple[str, torch.Tensor]]]:
    """(header, tensors): the parsed header (``v``: the file's format version, ``model``: its model
    description, ``program``, if the file holds one: its ``kind`` and its compressed archive, ``data``) and an iterator over (name, tensor) in file order, each decoded only when reached.

    The checksum, the header and the layout of every section (each length within the file, nothing left
    over) are checked before this returns; each tensor's fields are checked before it is decoded. A
    defect raises :class:`CodingError` naming the tensor.
    """
    header, offset = read_header(data)
    end = len(data) - CRC.size
    view = memoryview(data)
    layout = []
    for entry in header["tensors"]:  # every field checked by read_header; now the sections' places
        starts = []
        for length in entry["z"]:
            _require(offset + length <= end, f"{entry['n_']}: data runs past the end of the file")
            starts.append(offset)
            offset += length
        layout.append((entry, starts))
    if "program" in header:  # a compiled program's code (checked by read_header), after the tensors
        length = header["program"]["z"]
        _require(offset + length <= end, "the program runs past the end of the file")
        header["program"]["data"] = bytes(view[offset:offset + length])
        offset += length
    _require(offset == end, f"{end - offset} bytes after the last tensor")

    def tensors() -> Iterator[tuple[str, torch.Tensor]]:
        codebooks: dict[str, bytes] = {}  # the codebook sections later tensors may share (checked by the header)
        for entry, starts in layout:
            sections = [bytes(view[s:s + z]) for s, z in zip(starts, entry["z"])]
            if "cbr" in entry:
                sections[0] = codebooks[entry["cbr"]]
            elif entry["e"] != "raw":
                codebooks[entry["n_"]] = sections[0]
            try:
                tensor = decode_tensor(entry, sections)
            except CodingError as exc:
                raise CodingError(f"{entry['n_']}: {exc}") from None
            yield entry["n_"], tensor

    return header, tensors()


def decode(data: bytes) -> tuple[dict, dict[str, torch.Tensor]]:
    """(model description, state_dict) from a compressed file's bytes; raises CodingError on any defect."""
    header, tensors = iter_decode(data)
    return header["model"], dict(tensors)
