"""The compressed file: Huffman coding, relative indices with fillers, exact accounting, and a fuzzed decoder."""

from __future__ import annotations

import random
import struct
import zlib

import numpy as np
import pytest
import torch

from core.format import container

from core.format import huffman
from core.format.container import WeightCode
from core.format.huffman import CodingError


def test_huffman_round_trip_and_entropy():
    rng = np.random.default_rng(0)
    symbols = rng.choice(64, size=50_000, p=np.r_[np.full(63, 0.5 / 63), 0.5])
    counts = np.bincount(symbols, minlength=64)
    lengths = huffman.code_lengths(counts)
    data, bits = huffman.encode(symbols, lengths)
    np.testing.assert_array_equal(huffman.decode(data, len(symbols), lengths), symbols)
    assert huffman.entropy_bits(counts) <= bits <= huffman.entropy_bits(counts) + len(symbols)  # Huffman bound
    assert len(data) == (bits + 7) // 8


def test_length_limit_keeps_a_prefix_code():
    counts = np.array([2 ** i for i in range(30)])
    lengths = huffman.code_lengths(counts)
    assert lengths.max() == huffman.MAX_LENGTH and np.sum(2.0 ** -lengths) <= 1.0
    symbols = np.repeat(np.arange(30), 3)
    np.testing.assert_array_equal(huffman.decode(huffman.encode(symbols, lengths)[0], 90, lengths), symbols)


def test_fixed_width_round_trip():
    values = np.array([0, 5, 31, 7, 16])
    data, bits = huffman.pack_bits(values, 5)
    assert bits == 25 and len(data) == 4
    np.testing.assert_array_equal(huffman.unpack_fixed(data, 5, 5), values)


def test_compiled_packer_matches_the_vectorised_one():
    """The compiled bit packer and its numpy fallback write the same bytes for mixed widths (0 included)."""
    rng = np.random.default_rng(0)
    widths = rng.integers(0, 13, 5000)
    values = rng.integers(0, 1 << 12, 5000) & ((1 << widths) - 1)
    data, bits = huffman.pack_bits(values, widths)
    assert bits == int(widths.sum())
    assert data == huffman._pack_numpy(values.astype(np.int64), widths.astype(np.int64), bits).tobytes()


@pytest.mark.parametrize("bits", [1, 2, 3, 5, 8])
def test_relative_indices_with_fillers(bits):
    positions = np.array([0, 1, 2, 40, 41, 300, 301, 1000])
    symbols, is_filler = container.relative_indices(positions, bits)
    assert symbols.max() < 2 ** bits
    decoded = np.cumsum(symbols + 1) - 1
    np.testing.assert_array_equal(decoded[~is_filler], positions)
    assert is_filler.sum() == sum((g - 1) // 2 ** bits for g in np.diff(np.r_[-1, positions]))


def sample_state():
    torch.manual_seed(0)
    weight = torch.randn(40, 50)
    mask = weight.abs() > 1.2
    codebook = torch.linspace(-3, 3, 16)
    codes = torch.bucketize(weight, (codebook[1:] + codebook[:-1]) / 2)
    dense_codes = torch.randint(0, 4, (8, 9))
    dense_kept = torch.randn(20, 1, 5, 5)  # keeps 66%, as LeNet-5's conv1 does
    levels = torch.linspace(-2, 2, 64)
    state = {"a.weight": weight, "a.bias": torch.randn(40), "b.weight": torch.randn(8, 9),
             "c.weight": torch.randn(30, 30), "d.weight": dense_kept, "bn.num_batches_tracked": torch.tensor(7)}
    codes_by_tensor = {
        "a.weight": WeightCode(mask, codes, codebook, weight),
        "d.weight": WeightCode(dense_kept.abs() > 0.44, torch.bucketize(dense_kept, (levels[1:] + levels[:-1]) / 2),
                               levels, dense_kept),
        "b.weight": WeightCode(None, dense_codes, torch.tensor([-1.0, -0.25, 0.25, 1.0]), state["b.weight"]),
        "c.weight": WeightCode(state["c.weight"].abs() > 1, None, None, state["c.weight"]),
    }
    return state, codes_by_tensor


@pytest.mark.parametrize("use_huffman", [True, False])
def test_encode_decode_and_account_every_byte(use_huffman):
    state, codes = sample_state()
    data, account = container.encode(state, codes, {"arch": "x"}, use_huffman=use_huffman, small_float="float32")
    assert account.total == len(data)
    info, decoded = container.decode(data)
    assert info == {"arch": "x"} and list(decoded) == list(state)
    codebook = codes["a.weight"].codebook
    expected = torch.where(codes["a.weight"].mask, codebook[codes["a.weight"].codes], torch.zeros(()))
    torch.testing.assert_close(decoded["a.weight"], expected)
    torch.testing.assert_close(decoded["b.weight"], torch.tensor([-1.0, -0.25, 0.25, 1.0])[codes["b.weight"].codes])
    torch.testing.assert_close(decoded["c.weight"], state["c.weight"] * (state["c.weight"].abs() > 1))
    assert torch.equal(decoded["a.bias"], state["a.bias"]) and decoded["bn.num_batches_tracked"].item() == 7
    sparse = next(t for t in account.tensors if t.name == "a.weight")
    assert sparse.kept == int(codes["a.weight"].mask.sum()) and sparse.index_bits >= 1
    d = codes["d.weight"]
    torch.testing.assert_close(decoded["d.weight"], torch.where(d.mask, d.codebook[d.codes], torch.zeros(())))
    masked = next(t for t in account.tensors if t.name == "d.weight")
    assert masked.encoding == ("masked" if use_huffman else "sparse") and masked.kept == int(d.mask.sum())


@pytest.mark.parametrize("use_huffman", [True, False])
def test_a_mostly_kept_layer_stores_its_positions_the_smaller_way(use_huffman, monkeypatch):
    """Huffman-coded, a layer keeping 66% of its weights takes fewer bytes with a zero symbol per pruned
    position than with relative indices, and is stored so; a layer keeping 23%, or any layer in fixed-width
    codes (where a zero symbol costs a whole codebook index), is smaller with relative indices."""
    state, codes = sample_state()
    _, chosen = container.encode(state, codes, {}, use_huffman=use_huffman)
    monkeypatch.setattr(container, "_masked_cost", lambda *a: 1 << 62)  # relative indices for every layer
    sparse_data, sparse_only = container.encode(state, codes, {}, use_huffman=use_huffman)
    monkeypatch.setattr(container, "_masked_cost", lambda *a: -1)  # a zero symbol for every layer
    masked_data, masked_only = container.encode(state, codes, {}, use_huffman=use_huffman)
    assert torch.equal(container.decode(masked_data)[1]["a.weight"], container.decode(sparse_data)[1]["a.weight"])
    for name in ("a.weight", "d.weight"):
        picked, sparse, masked = (next(t for t in a.tensors if t.name == name)
                                  for a in (chosen, sparse_only, masked_only))
        assert (sparse.encoding, masked.encoding) == ("sparse", "masked")
        assert picked.bytes == min(sparse.bytes, masked.bytes) and sparse.bytes != masked.bytes
        assert picked.encoding == ("masked" if use_huffman and name == "d.weight" else "sparse")


def test_version_1_files_still_load():
    state, codes = sample_state()
    del codes["d.weight"]  # version 1 had no masked tensors
    data = container.encode(state, codes, {})[0]
    magic, _version, header_length = struct.unpack_from("<4sHI", data)
    old = refresh_crc(struct.pack("<4sHI", magic, 1, header_length) + data[10:-4])
    torch.testing.assert_close(container.decode(old)[1]["a.bias"], container.decode(data)[1]["a.bias"])


def test_float16_small_tensors_halve_their_bytes():
    state, codes = sample_state()
    _, f32 = container.encode(state, codes, {}, small_float="float32")
    _, f16 = container.encode(state, codes, {}, small_float="float16")
    bias32 = next(t for t in f32.tensors if t.name == "a.bias").bytes
    assert next(t for t in f16.tensors if t.name == "a.bias").bytes == bias32 // 2


def good_file() -> bytes:
    state, codes = sample_state()
    return container.encode(state, codes, {"arch": "x"})[0]


def test_truncated_and_corrupted_files_are_refused():
    data = good_file()
    for cut in (0, 3, 10, len(data) // 2, len(data) - 1):
        with pytest.raises(CodingError):
            container.decode(data[:cut])
    with pytest.raises(CodingError, match="bad magic"):
        container.decode(b"XXXX" + data[4:])
    with pytest.raises(CodingError, match="checksum mismatch"):
        container.decode(data[:100] + bytes([data[100] ^ 1]) + data[101:])


def refresh_crc(body: bytes) -> bytes:
    return body + struct.pack("<I", zlib.crc32(body))


def test_valid_checksum_but_inconsistent_contents():
    data = good_file()
    body = data[:-4]
    magic, version, header_length = struct.unpack_from("<4sHI", body)
    header = zlib.decompress(body[10:10 + header_length])
    for old, new in ((b'"k":16', b'"k":15'), (b'"n":', b'"n":9'), (b'"s":[40,50]', b'"s":[4,5]'),
                     (b'"b":', b'"b":9'), (b'"e":"sparse"', b'"e":"spars"'),
                     (b'"e":"masked"', b'"e":"sparse"'), (b'"e":"masked"', b'"e":"dense"')):
        bad = zlib.compress(header.replace(old, new, 1))
        forged = refresh_crc(struct.pack("<4sHI", magic, version, len(bad)) + bad + body[10 + header_length:])
        with pytest.raises(CodingError):
            container.decode(forged)
    with pytest.raises(CodingError, match="version 9"):
        container.decode(refresh_crc(struct.pack("<4sHI", magic, 9, header_length) + body[10:]))


def test_fuzzed_files_never_crash_or_hang():
    """Random bytes, and valid files with random bytes changed (CRC recomputed so the decoder must cope)."""
    rng = random.Random(0)
    data = good_file()
    for _ in range(300):
        blob = bytearray(data[:-4])
        for _ in range(rng.randint(1, 8)):
            blob[rng.randrange(10, len(blob))] = rng.randrange(256)
        if rng.random() < 0.3:
            blob = blob[: rng.randrange(10, len(blob))]
        for candidate in (refresh_crc(bytes(blob)), bytes(rng.randrange(256) for _ in range(rng.randrange(64)))):
            try:
                container.decode(candidate)
            except CodingError:
                pass


def test_index_width_choice_is_the_smallest_real_stream():
    """choose_index_bits prices each width from the gaps alone; building every stream agrees with it."""
    rng = np.random.default_rng(3)
    for n, k in ((5_000, 400), (200_000, 3_000), (60_000, 59_000)):
        positions = np.sort(rng.choice(n, k, replace=False))
        for use_huffman in (True, False):
            costs = {}
            for bits in range(1, container.MAX_INDEX_BITS + 1):
                symbols, is_filler = container.relative_indices(positions, bits)
                table, stream, _ = container._stream(symbols, 1 << bits, use_huffman)
                costs[bits] = len(table) + len(stream) + int(is_filler.sum())
            chosen = container.choose_index_bits(positions, use_huffman)
            assert costs[chosen] == min(costs.values()), (n, k, use_huffman)


def test_symbol_counts_match_numpy():
    symbols = np.random.default_rng(4).integers(0, 40, 10_000)
    np.testing.assert_array_equal(container.symbol_counts(symbols, 64), np.bincount(symbols, minlength=64))
    np.testing.assert_array_equal(container.symbol_counts(symbols.astype(np.uint8), 64),
                                  np.bincount(symbols, minlength=64))
    assert container.symbol_counts(np.zeros(0, np.int64), 8).tolist() == [0] * 8


@pytest.mark.parametrize("options", [dict(use_huffman=True), dict(use_huffman=False),
                                     dict(use_huffman=True, small_float="float32"),
                                     dict(use_huffman=False, index_bits=3), dict(use_huffman=True, index_bits=9)])
def test_pricing_gives_the_account_of_encoding_without_writing(options):
    """The Deep Compression stages are priced, not written: the price is the real file's account, to the byte."""
    state, codes = sample_state()
    data, account = container.encode(state, codes, {"arch": "x"}, **options)
    priced = container.price(state, codes, {"arch": "x"}, **options)
    assert priced == account and priced.total == len(data)
    raw = {k: container.WeightCode(c.mask, None, None, c.values) for k, c in codes.items() if c.mask is not None}
    assert container.price(state, raw, {}, **options).total == len(container.encode(state, raw, {}, **options)[0])


def test_decoding_one_tensor_at_a_time_checks_the_whole_layout_first():
    data = good_file()
    header, tensors = container.iter_decode(data)
    assert header["v"] == container.PLAIN_VERSION and [name for name, _ in tensors] == list(sample_state()[0])
    longer = refresh_crc(data[:-4] + b"\0")  # a byte after the last tensor: refused before any tensor is handed out
    with pytest.raises(CodingError, match="1 bytes after the last tensor"):
        container.iter_decode(longer)
