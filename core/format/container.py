"""The compressed file: Deep Compression's storage, in one versioned, checksummed format.

Layout::

    "PSCZ"  u16 version  u32 header length  zlib(JSON header)  sections...  u32 CRC-32 of all before

Versions and the framing are in :mod:`core.format.layout`; reading is :mod:`core.format.decoding`. The
header lists every tensor of the state_dict, in order, with its encoding and the byte length of each
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

A quantized tensor whose codebook is an earlier tensor's (one codebook shared by several layers) names that
tensor in ``cbr`` and leaves its own codebook section empty: the codebook is stored once (version 4).

The account of every byte (:class:`FileAccount`) comes with the file; :func:`price` gives the same
account for options not written (the Deep Compression stages), from symbol counts, without writing them.
:func:`decode` checks the CRC, then every length, count and code against the header, so a corrupt or
truncated file raises :class:`~core.format.huffman.CodingError` with a clear message rather than crashing.
"""

from __future__ import annotations

import json
import zlib

import numpy as np
import torch

from core.format import huffman
from core.format.decoding import decode, decode_tensor, iter_decode, read_header  # noqa: F401 (the file's API)
from core.format.huffman import CodingError
from core.format.layout import (CRC, DTYPE_NAMES, FRAMING_BYTES, MAGIC, MAX_INDEX_BITS, PLAIN_VERSION,  # noqa: F401
                                PREAMBLE, READS, VERSION, FileAccount, TensorAccount, WeightCode)


def symbol_counts(symbols: np.ndarray, alphabet: int) -> np.ndarray:
    """``np.bincount(symbols, minlength=alphabet)``, counted by torch: numpy holds the interpreter lock for
    the whole count (tens of ms on a large layer's stream) and the studio's UI thread would wait for it."""
    t = torch.from_numpy(np.ascontiguousarray(symbols))
    if t.dtype not in (torch.int64, torch.int32):
        t = t.to(torch.int64)
    return torch.bincount(t, minlength=alphabet).numpy()


def _stream(symbols: np.ndarray, alphabet: int, use_huffman: bool, counts: np.ndarray | None = None,
            build: bool = True) -> tuple[bytes | int, bytes | int, int]:
    """(table, stream, fixed width) for a symbol sequence (``counts``: its symbol counts, if known). With
    ``build=False``, the table's and the stream's lengths in bytes instead, priced from the counts."""
    if use_huffman:
        counts = symbol_counts(symbols, alphabet) if counts is None else counts
        lengths = huffman.code_lengths(counts)
        if not build:
            return (alphabet * 4 + 7) // 8, (int((counts * lengths).sum()) + 7) // 8, 0
        return huffman.pack_lengths(lengths), huffman.encode(symbols, lengths)[0], 0
    width = max(1, int(np.ceil(np.log2(max(alphabet, 2)))))
    if not build:
        return 0, (len(symbols) * width + 7) // 8, width
    return b"", huffman.pack_bits(symbols, width)[0], width


def _size(section: bytes | int) -> int:
    return section if isinstance(section, int) else len(section)


def _counts_cost(counts: np.ndarray, alphabet: int, use_huffman: bool) -> int:
    """Bytes :func:`_stream` would produce for symbols with these ``counts`` (without producing them)."""
    return sum(_section_sizes(counts, alphabet, use_huffman))


def _section_sizes(counts: np.ndarray, alphabet: int, use_huffman: bool) -> tuple[int, int]:
    """(table, stream) bytes :func:`_stream` would produce for symbols with these ``counts``."""
    if use_huffman:
        lengths = huffman.code_lengths(counts)
        return (alphabet * 4 + 7) // 8, (int((counts * lengths).sum()) + 7) // 8
    width = max(1, int(np.ceil(np.log2(max(alphabet, 2)))))
    return 0, (int(counts.sum()) * width + 7) // 8


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
    one entry with symbol (g - 1) mod span, so no stream is built for the widths not chosen (see
    :func:`_index_width`).
    """
    return fixed or _index_width(positions, use_huffman)[0]


def _index_width(positions: np.ndarray, use_huffman: bool, fixed: int = 0) -> tuple[int, np.ndarray, int]:
    """(index width, the index stream's symbol counts at it, fillers): ``fixed``, or the cheapest width.

    Every width is priced from one histogram of the gaps (its length is the longest gap, not the number
    of entries); the widths past the first that every gap fits cost more (no fillers, the same symbol
    counts, a larger table or wider symbols), so they are not priced.
    """
    p = torch.from_numpy(np.ascontiguousarray(positions, dtype=np.int64))
    gaps = torch.diff(p, prepend=torch.tensor([-1], dtype=torch.int64)) - 1
    histogram = torch.bincount(gaps)  # histogram[g]: how many gaps have the value g (a gap of g + 1)
    values = torch.arange(len(histogram), dtype=torch.int64)
    best = None
    for bits in [fixed] if fixed else range(1, MAX_INDEX_BITS + 1):
        span = 1 << bits
        fillers = int((histogram * (values >> bits)).sum())
        padded = torch.nn.functional.pad(histogram, (0, -len(histogram) % span))
        counts = padded.reshape(-1, span).sum(0).numpy()  # counts[s]: the gaps with symbol s = g mod span
        counts[span - 1] += fillers
        cost = _counts_cost(counts, span, use_huffman) + fillers  # fillers cost a weight symbol too
        if best is None or cost < best[0]:
            best = (cost, bits, counts, fillers)
        if len(histogram) <= span:  # every gap fits: no wider width is cheaper
            break
    return best[1:]


def _dtype_name(dtype: torch.dtype) -> str:
    if dtype not in DTYPE_NAMES:
        raise CodingError(f"cannot store tensors of dtype {dtype}")
    return DTYPE_NAMES[dtype]


def _raw(tensor: torch.Tensor, small_float: str, build: bool = True) -> tuple[dict, bytes | int]:
    stored = tensor.dtype
    if tensor.is_floating_point() and small_float == "float16" and stored in (torch.float32, torch.float64):
        stored = torch.float16
    entry = {"e": "raw", "dt": _dtype_name(stored), "out": _dtype_name(tensor.dtype)}
    if not build:
        return entry, tensor.numel() * torch.empty(0, dtype=stored).element_size()
    t = tensor.detach().cpu().contiguous().to(stored)
    return entry, t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b""


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
    codes = code.codes.reshape(-1).cpu().numpy()  # uint8 for up to 256 levels: no wider copy of a whole layer
    if code.mask is None:
        return "dense", 0, [(codes, k, symbol_counts(codes, k))]
    positions = np.flatnonzero(code.mask.reshape(-1).cpu().numpy())
    bits = choose_index_bits(positions, use_huffman, index_bits)
    gaps, is_filler = relative_indices(positions, bits)
    kept = codes[positions].astype(np.int64)
    symbols = np.full(len(is_filler), k, np.int64)  # k: the filler symbol
    symbols[~is_filler] = kept
    weight_counts, gap_counts = symbol_counts(symbols, k + 1), symbol_counts(gaps, 1 << bits)
    masked_counts = weight_counts.copy()
    masked_counts[k] = numel - len(kept)  # the pruned positions instead of the fillers
    sparse = _counts_cost(weight_counts, k + 1, use_huffman) + _counts_cost(gap_counts, 1 << bits, use_huffman)
    if not index_bits and _masked_cost(masked_counts, use_huffman) < sparse:  # a width asked for: indices
        masked = np.full(numel, k, np.int16 if k < 1 << 15 else np.int64)
        masked[positions] = kept
        return "masked", 0, [(masked, k + 1, masked_counts)]
    return "sparse", bits, [(symbols, k + 1, weight_counts), (gaps, 1 << bits, gap_counts)]


def _masked_cost(counts: np.ndarray, use_huffman: bool) -> int:
    """Bytes of the ``masked`` encoding's table and stream (its own function so tests can force a choice)."""
    return _counts_cost(counts, len(counts), use_huffman)


def encode_tensor(name: str, tensor: torch.Tensor, code: WeightCode | None, use_huffman: bool,
                  index_bits: int, small_float: str, build: bool = True) -> tuple[dict, list, TensorAccount]:
    """One tensor's header entry, its sections, and their accounting (``build=False``: each section's
    length in bytes instead of the section)."""
    account = TensorAccount(name, "raw", tensor.numel())
    if code is None:
        entry, data = _raw(tensor, small_float, build)
        account.raw_bytes = _size(data)
        entry.update(s=list(tensor.shape), z=[_size(data)])
        return entry, [data], account
    cb_dtype = "f16" if small_float == "float16" else "f32"
    per_channel = code.codebook is not None and code.codebook.ndim == 2
    k = 0 if code.codebook is None else int(code.codebook.shape[-1])
    entry: dict = {"s": list(tensor.shape), "out": _dtype_name(tensor.dtype), "huff": use_huffman, "k": k,
                   "pc": int(code.codebook.shape[0]) if per_channel else 0, "cb": cb_dtype}
    codebook = b"" if code.codebook is None else _codebook_bytes(code.codebook, cb_dtype)
    if code.codebook_of is not None:  # stored once, with the tensor it names (checked by _header)
        entry["cbr"], codebook = code.codebook_of, b""
    account.codebook_bytes = len(codebook)
    if code.codes is not None:
        encoding, bits, streams = quantized_streams(code, tensor.numel(), use_huffman, index_bits)
        coded = [_stream(symbols, alphabet, use_huffman, counts, build) for symbols, alphabet, counts in streams]
        w_table, w_stream, width = coded[0]
        entry.update(e=encoding, n=len(streams[0][0]), w=width)
        sections = [codebook, w_table, w_stream]
        account.encoding = encoding
        account.kept = len(streams[0][0]) if code.mask is None else int(code.mask.sum())
        account.weight_bits = int(np.ceil(np.log2(max(k, 2))))  # codebook bits; the stream may be Huffman-coded
        account.table_bytes, account.weight_bytes = _size(w_table), _size(w_stream)
        if encoding == "sparse":
            i_table, i_stream, _ = coded[1]
            sections += [i_table, i_stream]
            entry["b"] = bits
            account.index_bits, account.fillers = bits, int(streams[0][2][k])
            account.table_bytes += _size(i_table)
            account.index_bytes = _size(i_stream)
    else:  # pruned, not quantized: float values, zeros for fillers
        positions = np.flatnonzero(code.mask.reshape(-1).cpu().numpy())
        raw_dtype = np.float16 if small_float == "float16" else np.float32
        width = 16 if raw_dtype == np.float16 else 32
        if build:
            bits = choose_index_bits(positions, use_huffman, index_bits)
            gap_symbols, is_filler = relative_indices(positions, bits)
            i_table, i_stream, _ = _stream(gap_symbols, 1 << bits, use_huffman)
            values = np.zeros(len(is_filler), np.float32)
            values[~is_filler] = code.values.detach().reshape(-1).cpu().float().numpy()[positions]
            value_bytes, fillers = values.astype(raw_dtype).tobytes(), int(is_filler.sum())
        else:  # priced from the gaps' symbol counts: no stream, no filler flags
            bits, gap_counts, fillers = _index_width(positions, use_huffman, index_bits)
            i_table, i_stream = _section_sizes(gap_counts, 1 << bits, use_huffman)
            value_bytes = (len(positions) + fillers) * width // 8
        entry.update(e="sparse_raw", dt="f16" if raw_dtype == np.float16 else "f32", n=len(positions) + fillers,
                     b=bits, w=width)
        sections = [codebook, b"", value_bytes, i_table, i_stream]
        account.encoding, account.kept, account.fillers = "sparse_raw", len(positions), fillers
        account.index_bits, account.weight_bits = bits, width
        account.table_bytes, account.weight_bytes = _size(i_table), _size(value_bytes)
        account.index_bytes = _size(i_stream)
    entry["z"] = [_size(s) for s in sections]
    return entry, sections, account


def _check_references(state: dict[str, torch.Tensor], codes: dict[str, WeightCode]) -> None:
    """A tensor that shares a codebook names an earlier quantized tensor that stores the same per-tensor
    codebook itself (so the decoder finds it, once, before it is needed)."""
    earlier: set[str] = set()
    for name in state:
        code = codes.get(name)
        if code is not None and code.codebook_of is not None:
            owner = codes.get(code.codebook_of)
            if (code.codebook_of not in earlier or owner is None or owner.codebook_of is not None
                    or owner.codes is None or code.codes is None or owner.codebook.ndim != 1
                    or not torch.equal(owner.codebook.detach().cpu(), code.codebook.detach().cpu())):
                raise CodingError(f"{name} shares the codebook of {code.codebook_of}, which is not an earlier "
                                  "tensor storing that same per-tensor codebook")
        earlier.add(name)


def _header(state: dict[str, torch.Tensor], codes: dict[str, WeightCode], model_info: dict, use_huffman: bool,
            index_bits: int, small_float: str, build: bool,
            program: tuple[str, bytes] | None = None) -> tuple[bytes, list, list[TensorAccount]]:
    entries, payload, accounts = [], [], []
    _check_references(state, codes)
    for name, tensor in state.items():
        entry, sections, account = encode_tensor(name, tensor, codes.get(name), use_huffman, index_bits, small_float,
                                                 build)
        entry["n_"] = name
        entries.append(entry)
        payload.extend(sections)
        accounts.append(account)
    fields = {"v": VERSION if program is not None else PLAIN_VERSION, "model": model_info, "tensors": entries}
    if program is not None:
        fields["program"] = {"kind": program[0], "z": len(program[1])}
    header = zlib.compress(json.dumps(fields, separators=(",", ":")).encode(), 9)
    return header, payload, accounts


def encode(state: dict[str, torch.Tensor], codes: dict[str, WeightCode], model_info: dict,
           use_huffman: bool = True, index_bits: int = 0, small_float: str = "float16",
           program: tuple[str, bytes] | None = None) -> tuple[bytes, FileAccount]:
    """The compressed file's bytes for a state_dict, and the account of every byte. ``program``: a compiled
    program's (kind, compressed archive), stored after the tensors (:mod:`core.io.program`)."""
    header, payload, accounts = _header(state, codes, model_info, use_huffman, index_bits, small_float, True, program)
    version = VERSION if program is not None else PLAIN_VERSION
    parts = [PREAMBLE.pack(MAGIC, version, len(header)), header, *payload, *([program[1]] if program else [])]
    crc = 0
    for part in parts:  # the checksum part by part, then one copy into the file's bytes (each copy of a big
        crc = zlib.crc32(part, crc)  # model holds the interpreter lock, and with it the studio's UI thread)
    data = b"".join([*parts, CRC.pack(crc)])
    account = FileAccount(FRAMING_BYTES, len(header), accounts, len(program[1]) if program else 0)
    assert account.total == len(data), (account.total, len(data))
    return data, account


def price(state: dict[str, torch.Tensor], codes: dict[str, WeightCode], model_info: dict,
          use_huffman: bool = True, index_bits: int = 0, small_float: str = "float16",
          program: tuple[str, bytes] | None = None) -> FileAccount:
    """The account :func:`encode` would give for these arguments, to the byte, without writing any stream:
    each stream's length comes from its symbol counts, a raw tensor's from its shape and dtype."""
    header, _, accounts = _header(state, codes, model_info, use_huffman, index_bits, small_float, False, program)
    return FileAccount(FRAMING_BYTES, len(header), accounts, len(program[1]) if program else 0)
