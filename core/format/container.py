"""The compressed file: Deep Compression's storage, in one versioned, checksummed format.

Layout::

    "PSCZ"  u16 version  u32 header length  zlib(JSON header)  sections...  u32 CRC-32 of all before

The header lists every tensor of the state_dict, in order, with its encoding and the byte length of each
of its sections; sections follow in the same order. Encodings:

- ``sparse``: the kept weights of a pruned layer. Positions are relative indices (the gap from the previous
  kept weight) in ``b`` bits; a gap too long for ``b`` bits is bridged by filler entries (Deep Compression,
  section 2). Values are codebook indices (a ``filler`` symbol marks fillers) or raw floats. Both streams
  are Huffman-coded (canonical codes, 4-bit length tables) or fixed-width.
- ``masked``: a codebook index for every position of a pruned, quantized layer, with one more symbol for a
  pruned position. Chosen instead of ``sparse`` when it takes fewer bytes: for a layer that keeps most of
  its weights (LeNet-5's conv1 keeps 66%), positions cost less as a zero symbol than as gaps.
- ``dense``: codebook indices for every weight of an unpruned quantized layer.
- ``raw``: the tensor's bytes (float16 or float32 for floats; biases, BatchNorm, unquantized layers).

:func:`decode` checks the CRC, then every length, count and code against the header, so a corrupt or
truncated file raises :class:`~core.format.huffman.CodingError` with a clear message rather than crashing.
"""

from __future__ import annotations

import json
import struct
import zlib
from dataclasses import dataclass, field

import numpy as np
import torch

from core.format import huffman
from core.format.huffman import CodingError

MAGIC = b"PSCZ"
VERSION = 2  # 2: the ``masked`` encoding
READS = (1, 2)  # version 1 files hold no ``masked`` tensors and read as they always did
PREAMBLE = struct.Struct("<4sHI")
CRC = struct.Struct("<I")
FRAMING_BYTES = PREAMBLE.size + CRC.size
MAX_INDEX_BITS = 16
_DTYPES = {"f32": torch.float32, "f16": torch.float16, "bf16": torch.bfloat16, "f64": torch.float64,
           "i64": torch.int64, "i32": torch.int32, "i16": torch.int16, "i8": torch.int8, "u8": torch.uint8,
           "b1": torch.bool}
_NAMES = {v: k for k, v in _DTYPES.items()}


@dataclass(frozen=True)
class WeightCode:
    """A layer's weights as the pipeline hands them to the encoder.

    ``mask``: kept positions (None: dense). ``codes`` and ``codebook`` (``(k,)``, or ``(rows, k)`` per
    output channel): quantized values; ``codes`` None means raw float values are stored.
    """

    mask: torch.Tensor | None
    codes: torch.Tensor | None
    codebook: torch.Tensor | None
    values: torch.Tensor


@dataclass
class TensorAccount:
    """Bytes one tensor takes in the file, by part."""

    name: str
    encoding: str
    numel: int
    kept: int = 0
    fillers: int = 0
    index_bits: int = 0
    weight_bits: int = 0
    weight_bytes: int = 0
    index_bytes: int = 0
    codebook_bytes: int = 0
    table_bytes: int = 0
    raw_bytes: int = 0

    @property
    def bytes(self) -> int:
        return self.weight_bytes + self.index_bytes + self.codebook_bytes + self.table_bytes + self.raw_bytes


@dataclass
class FileAccount:
    """Every byte of a compressed file: framing + header + tensors == file size."""

    framing_bytes: int
    header_bytes: int
    tensors: list[TensorAccount] = field(default_factory=list)

    @property
    def total(self) -> int:
        return self.framing_bytes + self.header_bytes + sum(t.bytes for t in self.tensors)


# --------------------------------------------------------------------------------------------- encoding

def symbol_counts(symbols: np.ndarray, alphabet: int) -> np.ndarray:
    """``np.bincount(symbols, minlength=alphabet)``, counted by torch: numpy holds the interpreter lock for
    the whole count (tens of ms on a large layer's stream) and the studio's UI thread would wait for it."""
    t = torch.from_numpy(np.ascontiguousarray(symbols))
    if t.dtype not in (torch.int64, torch.int32):
        t = t.to(torch.int64)
    return torch.bincount(t, minlength=alphabet).numpy()


def _stream(symbols: np.ndarray, alphabet: int, use_huffman: bool,
            counts: np.ndarray | None = None) -> tuple[bytes, bytes, int]:
    """(table, stream, fixed width) for a symbol sequence (``counts``: its symbol counts, if known)."""
    if use_huffman:
        lengths = huffman.code_lengths(symbol_counts(symbols, alphabet) if counts is None else counts)
        return huffman.pack_lengths(lengths), huffman.encode(symbols, lengths)[0], 0
    width = max(1, int(np.ceil(np.log2(max(alphabet, 2)))))
    return b"", huffman.pack_bits(symbols, width)[0], width


def _counts_cost(counts: np.ndarray, alphabet: int, use_huffman: bool) -> int:
    """Bytes :func:`_stream` would produce for symbols with these ``counts`` (without producing them)."""
    if use_huffman:
        lengths = huffman.code_lengths(counts)
        return (alphabet * 4 + 7) // 8 + (int((counts * lengths).sum()) + 7) // 8
    width = max(1, int(np.ceil(np.log2(max(alphabet, 2)))))
    return (int(counts.sum()) * width + 7) // 8


def relative_indices(positions: np.ndarray, bits: int) -> tuple[np.ndarray, np.ndarray]:
    """Gap symbols (gap - 1, in ``bits`` bits) and a filler flag per entry, for ascending ``positions``.

    Computed with torch, which lets other threads (the studio's UI) run meanwhile; numpy's scattered
    stores hold the interpreter lock for tens of milliseconds on a large layer.
    """
    span = 1 << bits
    p = torch.from_numpy(np.ascontiguousarray(positions, dtype=np.int64))
    gaps = torch.diff(p, prepend=torch.tensor([-1], dtype=torch.int64))
    fillers = torch.div(gaps - 1, span, rounding_mode="floor")
    last = torch.cumsum(fillers + 1, 0) - 1
    total = int(last[-1]) + 1 if len(last) else 0
    is_filler = torch.ones(total, dtype=torch.bool).index_fill_(0, last, False)
    symbols = torch.full((total,), span - 1, dtype=torch.int64).index_copy_(0, last, gaps - 1 - fillers * span)
    return symbols.numpy(), is_filler.numpy()


def choose_index_bits(positions: np.ndarray, use_huffman: bool, fixed: int = 0) -> int:
    """The index width (1..16) that makes the index stream plus fillers' weight symbols smallest.

    Costs come from the gaps alone: a gap g takes (g - 1) >> bits fillers (each the symbol span - 1) and
    one entry with symbol (g - 1) mod span, so no stream is built for the widths not chosen.
    """
    if fixed:
        return fixed
    p = torch.from_numpy(np.ascontiguousarray(positions, dtype=np.int64))
    gaps = torch.diff(p, prepend=torch.tensor([-1], dtype=torch.int64)) - 1
    best, best_bits = None, 1
    for bits in range(1, MAX_INDEX_BITS + 1):
        span = 1 << bits
        fillers = int((gaps >> bits).sum())
        counts = torch.bincount(gaps & (span - 1), minlength=span).numpy()
        counts[span - 1] += fillers
        cost = _counts_cost(counts, span, use_huffman) + fillers  # fillers cost a weight symbol too
        if best is None or cost < best:
            best, best_bits = cost, bits
    return best_bits


def _dtype_name(dtype: torch.dtype) -> str:
    if dtype not in _NAMES:
        raise CodingError(f"cannot store tensors of dtype {dtype}")
    return _NAMES[dtype]


def _raw(tensor: torch.Tensor, small_float: str) -> tuple[dict, bytes]:
    t = tensor.detach().cpu().contiguous()
    if t.is_floating_point() and small_float == "float16" and t.dtype in (torch.float32, torch.float64):
        t = t.to(torch.float16)
    data = t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b""
    return {"e": "raw", "dt": _dtype_name(t.dtype), "out": _dtype_name(tensor.dtype)}, data


def _codebook_bytes(codebook: torch.Tensor, dtype: str) -> bytes:
    return codebook.detach().cpu().to(torch.float16 if dtype == "f16" else torch.float32).numpy().tobytes()


def quantized_streams(code: WeightCode, numel: int, use_huffman: bool,
                      index_bits: int = 0) -> tuple[str, int, list[tuple[np.ndarray, int, np.ndarray]]]:
    """How a quantized layer is stored: (encoding, index bits, [(symbols, alphabet, counts), ...]), the
    symbol streams in file order (each one Huffman-coded or fixed-width) with their symbol counts.

    ``dense`` (no mask): one codebook index per weight. A pruned layer is ``sparse`` (codebook indices of
    the kept weights, ``k`` for fillers, then relative indices) or ``masked`` (a codebook index per
    position, ``k`` where pruned), whichever takes fewer bytes; both are priced from symbol counts.
    """
    k = int(code.codebook.shape[-1])
    codes = code.codes.reshape(-1).cpu().numpy().astype(np.int64)
    if code.mask is None:
        return "dense", 0, [(codes, k, symbol_counts(codes, k))]
    positions = np.flatnonzero(code.mask.reshape(-1).cpu().numpy())
    bits = choose_index_bits(positions, use_huffman, index_bits)
    gaps, is_filler = relative_indices(positions, bits)
    kept = codes[positions]
    symbols = np.full(len(is_filler), k, np.int64)  # k: the filler symbol
    symbols[~is_filler] = kept
    weight_counts, gap_counts = symbol_counts(symbols, k + 1), symbol_counts(gaps, 1 << bits)
    masked_counts = weight_counts.copy()
    masked_counts[k] = numel - len(kept)  # the pruned positions instead of the fillers
    sparse = _counts_cost(weight_counts, k + 1, use_huffman) + _counts_cost(gap_counts, 1 << bits, use_huffman)
    if not index_bits and _masked_cost(masked_counts, use_huffman) < sparse:  # a width asked for: indices
        masked = np.full(numel, k, np.int64)
        masked[positions] = kept
        return "masked", 0, [(masked, k + 1, masked_counts)]
    return "sparse", bits, [(symbols, k + 1, weight_counts), (gaps, 1 << bits, gap_counts)]


def _masked_cost(counts: np.ndarray, use_huffman: bool) -> int:
    """Bytes of the ``masked`` encoding's table and stream (its own function so tests can force a choice)."""
    return _counts_cost(counts, len(counts), use_huffman)


def encode_tensor(name: str, tensor: torch.Tensor, code: WeightCode | None, use_huffman: bool,
                  index_bits: int, small_float: str) -> tuple[dict, list[bytes], TensorAccount]:
    """One tensor's header entry, its sections, and their accounting."""
    account = TensorAccount(name, "raw", tensor.numel())
    if code is None:
        entry, data = _raw(tensor, small_float)
        account.raw_bytes = len(data)
        entry.update(s=list(tensor.shape), z=[len(data)])
        return entry, [data], account
    cb_dtype = "f16" if small_float == "float16" else "f32"
    per_channel = code.codebook is not None and code.codebook.ndim == 2
    k = 0 if code.codebook is None else int(code.codebook.shape[-1])
    entry: dict = {"s": list(tensor.shape), "out": _dtype_name(tensor.dtype), "huff": use_huffman, "k": k,
                   "pc": int(code.codebook.shape[0]) if per_channel else 0, "cb": cb_dtype}
    codebook = b"" if code.codebook is None else _codebook_bytes(code.codebook, cb_dtype)
    account.codebook_bytes = len(codebook)
    if code.codes is not None:
        encoding, bits, streams = quantized_streams(code, tensor.numel(), use_huffman, index_bits)
        coded = [_stream(symbols, alphabet, use_huffman, counts) for symbols, alphabet, counts in streams]
        w_table, w_stream, width = coded[0]
        entry.update(e=encoding, n=len(streams[0][0]), w=width)
        sections = [codebook, w_table, w_stream]
        account.encoding = encoding
        account.kept = len(streams[0][0]) if code.mask is None else int(code.mask.sum())
        account.weight_bits = int(np.ceil(np.log2(max(k, 2))))  # codebook bits; the stream may be Huffman-coded
        account.table_bytes, account.weight_bytes = len(w_table), len(w_stream)
        if encoding == "sparse":
            i_table, i_stream, _ = coded[1]
            sections += [i_table, i_stream]
            entry["b"] = bits
            account.index_bits, account.fillers = bits, int(streams[0][2][k])
            account.table_bytes += len(i_table)
            account.index_bytes = len(i_stream)
    else:  # pruned, not quantized: float values, zeros for fillers
        positions = np.flatnonzero(code.mask.reshape(-1).cpu().numpy())
        bits = choose_index_bits(positions, use_huffman, index_bits)
        gap_symbols, is_filler = relative_indices(positions, bits)
        i_table, i_stream, _ = _stream(gap_symbols, 1 << bits, use_huffman)
        values = np.zeros(len(is_filler), np.float32)
        values[~is_filler] = code.values.detach().reshape(-1).cpu().float().numpy()[positions]
        raw_dtype = np.float16 if small_float == "float16" else np.float32
        width = 16 if raw_dtype == np.float16 else 32
        entry.update(e="sparse_raw", dt="f16" if raw_dtype == np.float16 else "f32", n=len(is_filler), b=bits,
                     w=width)
        sections = [codebook, b"", values.astype(raw_dtype).tobytes(), i_table, i_stream]
        account.encoding, account.kept, account.fillers = "sparse_raw", len(positions), int(is_filler.sum())
        account.index_bits, account.weight_bits = bits, width
        account.table_bytes, account.weight_bytes, account.index_bytes = len(i_table), len(sections[2]), len(i_stream)
    entry["z"] = [len(s) for s in sections]
    return entry, sections, account


def encode(state: dict[str, torch.Tensor], codes: dict[str, WeightCode], model_info: dict,
           use_huffman: bool = True, index_bits: int = 0, small_float: str = "float16") -> tuple[bytes, FileAccount]:
    """The compressed file's bytes for a state_dict, and the account of every byte."""
    entries, payload, accounts = [], [], []
    for name, tensor in state.items():
        entry, sections, account = encode_tensor(name, tensor, codes.get(name), use_huffman, index_bits, small_float)
        entry["n_"] = name
        entries.append(entry)
        payload.extend(sections)
        accounts.append(account)
    header = zlib.compress(json.dumps({"v": VERSION, "model": model_info, "tensors": entries},
                                      separators=(",", ":")).encode(), 9)
    parts = [PREAMBLE.pack(MAGIC, VERSION, len(header)), header, *payload]
    crc = 0
    for part in parts:  # the checksum part by part, then one copy into the file's bytes (each copy of a big
        crc = zlib.crc32(part, crc)  # model holds the interpreter lock, and with it the studio's UI thread)
    data = b"".join([*parts, CRC.pack(crc)])
    account = FileAccount(FRAMING_BYTES, len(header), accounts)
    assert account.total == len(data), (account.total, len(data))
    return data, account


# --------------------------------------------------------------------------------------------- decoding

MAX_HEADER = 64 << 20
MAX_ELEMENTS = 1 << 34


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise CodingError(message)


def read_header(data: bytes) -> tuple[dict, int]:
    """The parsed header and the offset where sections start; checks magic, version and checksum first."""
    _require(len(data) >= FRAMING_BYTES, f"file too short ({len(data)} bytes) to be a Prunescope compressed file")
    magic, version, header_length = PREAMBLE.unpack_from(data, 0)
    _require(magic == MAGIC, "not a Prunescope compressed file (bad magic bytes)")
    _require(version in READS, f"compressed file format version {version}; this Prunescope reads versions "
             f"{', '.join(map(str, READS))}")
    (stored,) = CRC.unpack_from(data, len(data) - CRC.size)
    _require(zlib.crc32(data[:-CRC.size]) == stored, "checksum mismatch: the file is corrupt or truncated")
    start = PREAMBLE.size
    _require(header_length <= len(data) - FRAMING_BYTES, "header length runs past the end of the file")
    try:
        inflater = zlib.decompressobj()
        text = inflater.decompress(data[start:start + header_length], MAX_HEADER)
        _require(not inflater.unconsumed_tail, "header too large")
        header = json.loads(text)
    except (zlib.error, ValueError, UnicodeDecodeError) as exc:
        raise CodingError(f"unreadable header ({exc})") from None
    _require(isinstance(header, dict) and isinstance(header.get("tensors"), list)
             and isinstance(header.get("model"), dict), "header lacks its tensor list or model description")
    return header, start + header_length


def _shape(entry: dict) -> tuple[int, ...]:
    shape = entry.get("s")
    _require(isinstance(shape, list) and all(isinstance(d, int) and 0 <= d < MAX_ELEMENTS for d in shape),
             f"bad shape {shape!r}")
    _require(int(np.prod(shape, dtype=np.float64)) < MAX_ELEMENTS, "tensor too large")
    return tuple(shape)


def _int(entry: dict, key: str, low: int, high: int) -> int:
    value = entry.get(key)
    _require(isinstance(value, int) and not isinstance(value, bool) and low <= value <= high,
             f"field {key}={value!r} out of range [{low}, {high}]")
    return value


def _dtype(name) -> torch.dtype:
    _require(name in _DTYPES, f"unknown dtype {name!r}")
    return _DTYPES[name]


def _codebook(section: bytes, entry: dict, k: int) -> torch.Tensor:
    rows = max(1, entry.get("pc", 0))
    dtype = {"f16": np.float16, "f32": np.float32}.get(entry.get("cb"))
    _require(dtype is not None, "bad codebook dtype")
    _require(len(section) == rows * k * np.dtype(dtype).itemsize, "codebook size does not match its header")
    values = torch.from_numpy(np.frombuffer(section, dtype).astype(np.float32).copy())
    return values.reshape(rows, k) if entry.get("pc", 0) else values


def _symbols(table: bytes, stream: bytes, count: int, alphabet: int, entry: dict) -> np.ndarray:
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


def decode(data: bytes) -> tuple[dict, dict[str, torch.Tensor]]:
    """(model description, state_dict) from a compressed file's bytes; raises CodingError on any defect."""
    header, offset = read_header(data)
    end = len(data) - CRC.size
    state: dict[str, torch.Tensor] = {}
    for entry in header["tensors"]:
        _require(isinstance(entry, dict) and isinstance(entry.get("n_"), str) and isinstance(entry.get("z"), list),
                 "bad tensor entry in header")
        lengths = entry["z"]
        _require(all(isinstance(z, int) and z >= 0 for z in lengths), "bad section lengths")
        sections = []
        for length in lengths:
            _require(offset + length <= end, f"{entry['n_']}: data runs past the end of the file")
            sections.append(data[offset:offset + length])
            offset += length
        try:
            state[entry["n_"]] = decode_tensor(entry, sections)
        except CodingError as exc:
            raise CodingError(f"{entry['n_']}: {exc}") from None
    _require(offset == end, f"{end - offset} bytes after the last tensor")
    return header["model"], state
