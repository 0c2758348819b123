"""Canonical, length-limited Huffman coding and fixed-width bit packing, vectorised with numpy.

A code is described by one length per symbol (0: the symbol does not occur), at most 15 bits, so a table is
stored as 4-bit lengths. Decoding is table-driven (one 2**maxlen lookup per symbol); every input is checked,
so a corrupt stream raises :class:`CodingError` instead of looping or reading out of bounds.
"""

from __future__ import annotations

import heapq

import numpy as np

from core.errors import PrunescopeError

MAX_LENGTH = 15


class CodingError(PrunescopeError):
    """A coded stream or table is malformed."""


def code_lengths(counts: np.ndarray, max_length: int = MAX_LENGTH) -> np.ndarray:
    """Huffman code lengths for symbol ``counts`` (0 for absent symbols), limited to ``max_length`` bits."""
    counts = np.asarray(counts, dtype=np.int64)
    present = np.flatnonzero(counts)
    lengths = np.zeros(len(counts), np.int64)
    if len(present) == 0:
        return lengths
    if len(present) == 1:
        lengths[present[0]] = 1
        return lengths
    heap = [(int(counts[s]), i, (int(s),)) for i, s in enumerate(present)]
    heapq.heapify(heap)
    tie = len(heap)
    while len(heap) > 1:
        c1, _, s1 = heapq.heappop(heap)
        c2, _, s2 = heapq.heappop(heap)
        for s in s1 + s2:
            lengths[s] += 1
        heapq.heappush(heap, (c1 + c2, tie, s1 + s2))
        tie += 1
    return _limit(lengths, counts, max_length)


def _limit(lengths: np.ndarray, counts: np.ndarray, max_length: int) -> np.ndarray:
    """Cap lengths at ``max_length`` and restore the Kraft inequality by lengthening the rarest short codes."""
    if lengths.max() <= max_length:
        return lengths
    lengths = np.minimum(lengths, max_length)
    present = np.flatnonzero(lengths)
    kraft = np.sum(2.0 ** -lengths[present])
    order = present[np.argsort(counts[present], kind="stable")]  # rarest first
    while kraft > 1.0 + 1e-12:
        for s in order:
            if lengths[s] < max_length:
                kraft -= 2.0 ** -lengths[s] - 2.0 ** -(lengths[s] + 1)
                lengths[s] += 1
                if kraft <= 1.0 + 1e-12:
                    break
    return lengths


def canonical_codes(lengths: np.ndarray) -> np.ndarray:
    """Canonical code values for given lengths (shorter codes first, then by symbol)."""
    lengths = np.asarray(lengths, dtype=np.int64)
    codes = np.zeros(len(lengths), np.int64)
    code = 0
    previous = 0
    for s in sorted(np.flatnonzero(lengths), key=lambda s: (lengths[s], s)):
        code <<= int(lengths[s]) - previous
        codes[s] = code
        previous = int(lengths[s])
        code += 1
    return codes


def pack_bits(values: np.ndarray, widths: np.ndarray | int) -> tuple[bytes, int]:
    """Concatenate each value's low ``widths`` bits, most significant first; returns (bytes, bit count)."""
    values = np.ascontiguousarray(values, dtype=np.int64).ravel()
    widths = np.ascontiguousarray(np.broadcast_to(np.asarray(widths, dtype=np.int64), values.shape))
    total = int(widths.sum())
    if total == 0:
        return b"", 0
    return _pack(values, widths, total).tobytes(), total


def _pack_py(values, widths, total):  # pragma: no cover - compiled when numba is there
    """One pass, one output byte array: no per-bit temporaries (a 10M-value stream would need gigabytes),
    and, compiled, it runs without the interpreter lock, so the studio's UI thread is not held up."""
    out = np.zeros((total + 7) // 8, np.uint8)
    position = 0
    for i in range(values.size):
        value = values[i]
        for j in range(widths[i] - 1, -1, -1):
            if (value >> j) & 1:
                out[position >> 3] |= np.uint8(0x80 >> (position & 7))
            position += 1
    return out


def _pack_numpy(values, widths, total):
    """The same as :func:`_pack_py`, vectorised, for when numba is not installed."""
    starts = np.cumsum(widths) - widths
    owner = np.repeat(np.arange(len(values)), widths)
    k = np.arange(total) - starts[owner]
    bits = (values[owner] >> (widths[owner] - 1 - k)) & 1
    return np.packbits(bits.astype(np.uint8))


def unpack_fixed(data: bytes, count: int, width: int) -> np.ndarray:
    """Inverse of :func:`pack_bits` for ``count`` values of one ``width``."""
    if count == 0:
        return np.zeros(0, np.int64)
    if width <= 0 or len(data) * 8 < count * width:
        raise CodingError(f"fixed-width stream too short: {len(data)} bytes for {count} values of {width} bits")
    bits = np.unpackbits(np.frombuffer(data, np.uint8))[: count * width].reshape(count, width).astype(np.int64)
    return bits @ (1 << np.arange(width - 1, -1, -1, dtype=np.int64))


def encode(symbols: np.ndarray, lengths: np.ndarray) -> tuple[bytes, int]:
    """Huffman-code ``symbols`` with a table of code ``lengths``; returns (bytes, bit count)."""
    symbols = np.asarray(symbols, dtype=np.int64)
    codes = canonical_codes(lengths)
    return pack_bits(codes[symbols], np.asarray(lengths)[symbols])


def _lookup_table(lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    lengths = np.asarray(lengths, dtype=np.int64)
    present = np.flatnonzero(lengths)
    if len(present) == 0:
        raise CodingError("Huffman table has no symbols")
    if lengths.max() > MAX_LENGTH or lengths.min() < 0:
        raise CodingError("Huffman code length out of range")
    if np.sum(2.0 ** -lengths[present]) > 1.0 + 1e-12:  # incomplete codes are fine: unused codes are errors
        raise CodingError("Huffman table is not a prefix code (Kraft sum above 1)")
    width = int(lengths.max())
    codes = canonical_codes(lengths)
    symbol_at = np.full(1 << width, -1, np.int64)
    length_at = np.zeros(1 << width, np.int64)
    for s in present:
        shift = width - int(lengths[s])
        start = int(codes[s]) << shift
        symbol_at[start:start + (1 << shift)] = s
        length_at[start:start + (1 << shift)] = lengths[s]
    return symbol_at, length_at, width


def decode(data: bytes, count: int, lengths: np.ndarray) -> np.ndarray:
    """Decode ``count`` symbols from a Huffman-coded stream (see :func:`encode`)."""
    if count == 0:
        return np.zeros(0, np.int64)
    if count > len(data) * 8:  # every code is at least one bit: checked before the output is allocated
        raise CodingError(f"Huffman stream of {len(data):,} bytes cannot hold {count:,} symbols")
    symbol_at, length_at, width = _lookup_table(lengths)
    out = _walk(np.frombuffer(data, np.uint8), symbol_at, length_at, width, count)
    if len(out) != count:
        raise CodingError(f"Huffman stream ended after {len(out)} of {count} symbols")
    return out


def _walk_py(data, symbol_at, length_at, width, count):  # pragma: no cover - compiled when numba is there
    """Table-driven decoding; stops early (returning fewer symbols) at the end of data or an invalid code."""
    out = np.empty(count, np.int64)
    n_bits = data.size * 8
    position = 0
    for i in range(count):
        if position >= n_bits:
            return out[:i]
        window = 0
        for j in range(width):
            p = position + j
            bit = (data[p >> 3] >> (7 - (p & 7))) & 1 if p < n_bits else 0
            window = (window << 1) | bit
        symbol = symbol_at[window]
        length = length_at[window]
        if symbol < 0 or position + length > n_bits:
            return out[:i]
        out[i] = symbol
        position += length
    return out


try:
    import numba

    _walk = numba.njit(cache=True, nogil=True)(_walk_py)
    _pack = numba.njit(cache=True, nogil=True)(_pack_py)
except ImportError:  # pragma: no cover
    _walk, _pack = _walk_py, _pack_numpy


def warm_up() -> None:
    """Load the compiled packer and decoder now, for each kind of argument they get (see
    :func:`core.analysis.stats.warm_up`)."""
    lengths = code_lengths(np.array([3, 1, 1]))
    data, _ = encode(np.array([0, 1, 2, 0]), lengths)
    decode(data, 4, lengths)
    unpack_lengths(pack_lengths(lengths), 3)


def pack_lengths(lengths: np.ndarray) -> bytes:
    """A table of code lengths as 4-bit values."""
    return pack_bits(np.asarray(lengths, dtype=np.int64), 4)[0]


def unpack_lengths(data: bytes, alphabet: int) -> np.ndarray:
    return unpack_fixed(data, alphabet, 4)


def entropy_bits(counts: np.ndarray) -> float:
    """Shannon entropy of the symbol distribution times the number of symbols, in bits."""
    counts = np.asarray(counts, dtype=np.float64)
    counts = counts[counts > 0]
    n = counts.sum()
    return float(-(counts * np.log2(counts / n)).sum()) if n else 0.0
