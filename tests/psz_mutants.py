"""Hostile compressed files: real ``.psz`` files whose JSON header is mutated and whose checksum is re-sealed.

The checksum catches every corrupted byte; what it cannot catch is a header that is wrong on purpose. So
each mutant keeps the original sections, changes one to three header fields (a type swapped, a number out
of range, a key removed or added, an entry dropped or repeated, nesting added) and gets a fresh CRC, so
that it is the header checks that are tested. Used by ``tests/test_psz_fuzz.py`` (a few thousand mutants)
and ``bench/fuzz_psz.py`` (the long run).
"""

from __future__ import annotations

import copy
import json
import random
import zlib
from pathlib import Path

from core.format.layout import CRC, PREAMBLE

BASE_RECIPES = {
    # sparse and masked tensors, a Huffman-coded codebook, raw biases
    "lenet300-kmeans": ("zoo:lenet300", "steps: [{kind: prune_magnitude, sparsity: 0.9, overrides: {fc3: 0.3}}, "
                                        "{kind: quantize, method: kmeans, bits: 4}, {kind: encode}]"),
    # structure ops (a Torch-Pruning history), sparse_raw tensors, fixed-width streams
    "lenet300-structured": ("zoo:lenet300", "steps: [{kind: prune_structured, amount: 0.25, layers: [fc1]}, "
                                            "{kind: prune_magnitude, sparsity: 0.5}, {kind: encode, huffman: false}]"),
    # one codebook shared by every layer, stored once (``cbr`` references, format version 4)
    "lenet300-global": ("zoo:lenet300", "steps: [{kind: prune_magnitude, sparsity: 0.9}, "
                                        "{kind: quantize, bits: 3, scope: global}, {kind: encode}]"),
    # dense per-channel codebooks on a residual CNN
    "resnet8-uniform": ("zoo:resnet8-fashion", "steps: [{kind: quantize, method: uniform, bits: 4, "
                                               "granularity: channel}, {kind: encode}]"),
}

MODEL_KEYS = ("arch", "num_classes", "source", "name", "structure", "dataset", "input_shape", "classes")
ENTRY_KEYS = ("n_", "e", "s", "z", "dt", "out", "huff", "k", "pc", "cb", "n", "w", "b", "cbr")


def make_bases(folder: Path) -> dict[str, Path]:
    """Write one real compressed file per base recipe into ``folder`` (once; reused when present)."""
    from core.io import load_model
    from core.pipeline.apply import apply_recipe
    from core.progress import run
    from core.recipe import Recipe

    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, (model, text) in BASE_RECIPES.items():
        path = folder / f"{name}.psz"
        if not path.exists():
            loaded = load_model(model)
            result = run(apply_recipe(Recipe.from_text(text), loaded, None, measure_before=False))
            path.write_bytes(result.file_bytes)
        paths[name] = path
    return paths


def split(data: bytes) -> tuple[dict, int, bytes]:
    """(header, version, sections) of a valid compressed file."""
    _, version, length = PREAMBLE.unpack_from(data, 0)
    header = json.loads(zlib.decompress(data[PREAMBLE.size:PREAMBLE.size + length]))
    return header, version, data[PREAMBLE.size + length:-CRC.size]


def seal(header, version: int, sections: bytes, raw_json: bytes | None = None) -> bytes:
    """A compressed file with this header (or this JSON text) and these sections, with a valid checksum."""
    text = raw_json if raw_json is not None else json.dumps(header, separators=(",", ":")).encode()
    packed = zlib.compress(text, 6)
    body = PREAMBLE.pack(b"PSCZ", version, len(packed)) + packed + sections
    return body + CRC.pack(zlib.crc32(body))


def _values(rng: random.Random, current):
    pool = [None, True, False, 0, 1, -1, 2, 7, 255, 256, 65536, 65537, 2 ** 31, 2 ** 63, -(2 ** 31), 10 ** 9,
            10 ** 30, 0.5, -0.0, 1e308, "", "x", "f32", "f16", "b1", "i64", "raw", "sparse", "masked", "dense",
            "sparse_raw", "fc1.weight", "fc3.weight", "fc1.bias", "lenet300", "resnet8", "zoo:lenet300", "../x", "/dev/zero", "tests.factories:Evil",
            "a\nb", [], [[]], [1], [-1], [0, 0], [1, 1, 28, 28], [10 ** 6] * 4, ["x"], {}, {"a": 1},
            {"op": "torch_pruning"}, {"op": "torch_pruning", "history": [["fc1", True, [10 ** 9]]]}]
    choice = rng.random()
    if isinstance(current, bool) or current is None:
        return rng.choice(pool)
    if isinstance(current, int) and choice < 0.5:
        return rng.choice([current + 1, current - 1, current * 2, -current, current * 1000, current // 2,
                           current + 2 ** 32])
    if isinstance(current, list) and current and choice < 0.5:
        mutated = list(current)
        op = rng.randrange(4)
        if op == 0:
            del mutated[rng.randrange(len(mutated))]
        elif op == 1:
            mutated.append(copy.deepcopy(rng.choice(mutated)))
        elif op == 2:
            i = rng.randrange(len(mutated))
            mutated[i] = _values(rng, mutated[i])
        else:
            mutated = [mutated]
        return mutated
    return copy.deepcopy(rng.choice(pool))


def _mutate_mapping(rng: random.Random, mapping: dict, keys) -> None:
    key = rng.choice(list(keys) + list(mapping) + ["zz"])
    if key in mapping and rng.random() < 0.15:
        del mapping[key]
    else:
        mapping[key] = _values(rng, mapping.get(key))


def mutate(header: dict, rng: random.Random) -> dict:
    """A copy of ``header`` with one to three fields changed."""
    header = copy.deepcopy(header)
    for _ in range(rng.choice((1, 1, 1, 2, 3))):
        where = rng.random()
        tensors = header.get("tensors")
        model = header.get("model")
        if where < 0.55 and isinstance(tensors, list) and tensors:
            entry = rng.choice(tensors)
            if isinstance(entry, dict):
                _mutate_mapping(rng, entry, ENTRY_KEYS)
            else:
                tensors[rng.randrange(len(tensors))] = _values(rng, entry)
        elif where < 0.85 and isinstance(model, dict):
            structure = model.get("structure")
            if isinstance(structure, list) and structure and rng.random() < 0.3:
                i = rng.randrange(len(structure))
                op = structure[i]
                if isinstance(op, dict) and isinstance(op.get("history"), list) and op["history"]:
                    entries = op["history"]
                    j = rng.randrange(len(entries))
                    entries[j] = _values(rng, entries[j])
                else:
                    structure[i] = _values(rng, op)
            else:
                _mutate_mapping(rng, model, MODEL_KEYS)
        elif where < 0.95 and isinstance(tensors, list) and tensors:
            op = rng.randrange(3)
            if op == 0:
                del tensors[rng.randrange(len(tensors))]
            elif op == 1:
                tensors.insert(rng.randrange(len(tensors) + 1), copy.deepcopy(rng.choice(tensors)))
            else:
                rng.shuffle(tensors)
        else:
            key = rng.choice(["model", "tensors", "v", "zz"])
            header[key] = _values(rng, header.get(key))
    return header


def mutants(bases: dict[str, Path], seed: int, count: int, start: int = 0):
    """``(index, base name, file bytes)`` for mutants ``start`` .. ``count - 1`` of the run seeded ``seed``.

    Mutant ``i`` depends only on ``seed`` and ``i``, so any one can be made again alone. One in twenty is
    raw JSON text instead (deep nesting, NaN, huge numbers, not an object).
    """
    parsed = {name: split(path.read_bytes()) for name, path in sorted(bases.items())}
    names = sorted(parsed)
    for i in range(start, count):
        rng = random.Random(f"{seed}:{i}")
        name = rng.choice(names)
        header, version, sections = parsed[name]
        if rng.random() < 0.05:
            raw = rng.choice([b"[" * 100_000 + b"]" * 100_000, b'{"model": {}, "tensors": NaN}',
                              b'{"model": {"num_classes": ' + b"9" * 5000 + b'}, "tensors": []}', b"[]", b"null",
                              b'{"model": {"a": ' + b"[" * 5000 + b"]" * 5000 + b'}, "tensors": []}',
                              b'{"model": {}, "tensors": [' + b'{"n_": "x"},' * 1000 + b'{}]}', b"\xff\xfe"])
            yield i, name, seal(None, version, sections, raw)
        else:
            yield i, name, seal(mutate(header, rng), version, sections)
