"""Checking a compressed file's JSON header, every field in type and range, before anything uses it.

A header whose checksum is valid can still be hostile: the checksum proves only that the file is what its
writer wrote. :func:`check_header` runs right after the header is parsed and refuses, with a
:class:`~core.format.huffman.CodingError` naming the field, anything a reader would otherwise trip over:
a wrong type (``dt: []``, ``arch: {}``, ``pc: "x"``), a count or length out of range (``z: []``, a
negative or billion-class ``num_classes``), nesting deeper than a header needs, too many tensors, or
sections that do not fit the file. Fields a newer writer may add are allowed; known ones are checked.
"""

from __future__ import annotations

import math

from core.format.huffman import CodingError
from core.format.layout import DTYPES, MAX_INDEX_BITS, PROGRAM_KINDS

MAX_DEPTH = 12
"""JSON nesting a header needs: model -> structure -> op -> history -> entry -> units is 7 deep."""
MAX_TENSORS = 1 << 17
MAX_NAME = 1024
MAX_TEXT = 4096
MAX_CLASSES = 100_000
MAX_DIMS = 16
MAX_ELEMENTS = 1 << 31
"""Elements of one tensor (8 GB as float32): a tensor's decoded size is bounded before it is allocated."""
MAX_INPUT_VALUES = 1 << 24
"""Values of the recorded input shape (the zeros a structure replay traces the model with: 64 MB)."""
SECTIONS = {"raw": 1, "dense": 3, "masked": 3, "sparse": 5, "sparse_raw": 5}
"""How many sections each encoding has."""


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise CodingError(message)


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_depth(obj, limit: int = MAX_DEPTH) -> None:
    """Refuse JSON nested deeper than ``limit`` (checked without recursion)."""
    stack = [(obj, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, (dict, list)):
            _require(depth <= limit, f"header nested deeper than {limit} levels")
            stack.extend((v, depth + 1) for v in (value.values() if isinstance(value, dict) else value))


def _optional_text(info: dict, key: str, limit: int = MAX_TEXT) -> None:
    value = info.get(key)
    _require(value is None or (isinstance(value, str) and len(value) <= limit),
             f"model field {key} must be text of at most {limit} characters; got {type(value).__name__}")


def check_shape(shape, what: str) -> tuple[int, ...]:
    _require(isinstance(shape, list) and len(shape) <= MAX_DIMS and all(_is_int(d) and d >= 0 for d in shape),
             f"{what}: bad shape")
    _require(math.prod(shape) <= MAX_ELEMENTS, f"{what}: a tensor of more than {MAX_ELEMENTS:,} elements")
    return tuple(shape)


def check_model_info(info: dict) -> None:
    """The model description: how to rebuild the architecture, its inputs and classes."""
    for key in ("arch", "source", "name", "dataset"):
        _optional_text(info, key)
    n = info.get("num_classes")
    _require(n is None or (_is_int(n) and 1 <= n <= MAX_CLASSES),
             f"model field num_classes must be an integer in [1, {MAX_CLASSES:,}]; got {n!r:.40}")
    shape = info.get("input_shape")
    if shape is not None:
        _require(isinstance(shape, list) and 1 <= len(shape) <= 8 and all(_is_int(d) and 1 <= d for d in shape)
                 and math.prod(shape) <= MAX_INPUT_VALUES,
                 f"model field input_shape must be 1 to 8 positive integers of at most {MAX_INPUT_VALUES:,} "
                 "values in all")
    classes = info.get("classes")
    if classes is not None:
        _require(isinstance(classes, list) and len(classes) <= MAX_CLASSES
                 and all(isinstance(c, str) and len(c) <= MAX_NAME for c in classes),
                 "model field classes must be a list of names")
        _require(n is None or len(classes) == n, "model fields classes and num_classes disagree")
    structure = info.get("structure")
    _require(structure is None or isinstance(structure, list), "model field structure must be a list")


def _text_field(entry: dict, key: str, choices, where: str, default=None) -> None:
    value = entry.get(key, default)
    _require(isinstance(value, str) and value in choices, f"{where}: field {key}={value!r:.40} must be one of "
             f"{', '.join(choices)}")


def _int_field(entry: dict, key: str, low: int, high: int, where: str, required: bool = True) -> int | None:
    if key not in entry and not required:
        return None
    value = entry.get(key)
    _require(_is_int(value) and low <= value <= high,
             f"{where}: field {key}={value!r:.40} must be an integer in [{low}, {high}]")
    return value


def check_entry(entry, names: dict[str, dict]) -> None:
    """One tensor's entry: name, encoding, shape, section lengths, dtypes and coding parameters.
    ``names``: the entries before it, by name (a shared codebook must name one of them)."""
    _require(isinstance(entry, dict), "bad tensor entry in header")
    name = entry.get("n_")
    _require(isinstance(name, str) and 0 < len(name) <= MAX_NAME, "tensor entry without a valid name")
    where = repr(name[:80])
    _require(name not in names, f"tensor {where} is listed twice")
    kind = entry.get("e")
    _require(isinstance(kind, str) and kind in SECTIONS, f"{where}: unknown tensor encoding {kind!r:.40}")
    shape = check_shape(entry.get("s"), where)
    lengths = entry.get("z")
    _require(isinstance(lengths, list) and len(lengths) == SECTIONS[kind]
             and all(_is_int(z) and z >= 0 for z in lengths),
             f"{where}: {kind} needs {SECTIONS[kind]} section lengths")
    _text_field(entry, "out", DTYPES, where, "f32")
    _require(kind != "raw" or "cbr" not in entry, f"{where}: only a quantized tensor shares a codebook")
    if kind == "raw":
        _text_field(entry, "dt", DTYPES, where)
        return
    _require(isinstance(entry.get("huff", False), bool), f"{where}: field huff must be true or false")
    _int_field(entry, "k", 0, 1 << 16, where)
    _int_field(entry, "w", 0, 64, where, required=False)
    numel = math.prod(shape)
    n = _int_field(entry, "n", 0, MAX_ELEMENTS, where)
    if kind in ("dense", "masked"):
        _require(n == numel, f"{where}: {kind} tensor count mismatch")
    else:
        _int_field(entry, "b", 1, MAX_INDEX_BITS, where)
    if kind == "sparse_raw":
        _text_field(entry, "dt", ("f16", "f32"), where)
    pc = _int_field(entry, "pc", 0, shape[0] if shape else 0, where, required=False) or 0
    _require(pc == 0 or pc == shape[0], f"{where}: per-channel codebook rows do not match the tensor")
    _text_field(entry, "cb", ("f16", "f32"), where, "f32")
    if "cbr" in entry:
        _check_reference(entry, names, where)


def _check_reference(entry: dict, earlier: dict[str, dict], where: str) -> None:
    """A shared codebook (``cbr``): an earlier quantized tensor's own per-tensor codebook of the same size
    and dtype, and no codebook section of this tensor's own."""
    ref = entry["cbr"]
    owner = earlier.get(ref) if isinstance(ref, str) else None
    _require(owner is not None, f"{where}: field cbr={ref!r:.40} must name an earlier tensor")
    _require(entry["e"] in ("dense", "masked", "sparse") and owner.get("e") in ("dense", "masked", "sparse"),
             f"{where}: only a quantized tensor shares the codebook of a quantized tensor")
    _require("cbr" not in owner and owner["z"][0] > 0, f"{where}: the tensor named by cbr does not store a codebook")
    _require(entry["z"][0] == 0, f"{where}: a tensor sharing a codebook stores none of its own")
    _require(not entry.get("pc") and not owner.get("pc") and entry.get("k") == owner.get("k")
             and entry.get("cb", "f32") == owner.get("cb", "f32"),
             f"{where}: the shared codebook differs in size or dtype from the one it names")


def check_header(header, file_bytes: int) -> None:
    """Every field of a parsed header, and its sections' total length against the file's."""
    _require(isinstance(header, dict) and isinstance(header.get("tensors"), list)
             and isinstance(header.get("model"), dict), "header lacks its tensor list or model description")
    check_depth(header)
    _require(len(header["tensors"]) <= MAX_TENSORS, f"header lists more than {MAX_TENSORS:,} tensors")
    check_model_info(header["model"])
    earlier: dict[str, dict] = {}
    total = 0
    for entry in header["tensors"]:
        check_entry(entry, earlier)
        earlier[entry["n_"]] = entry
        total += sum(entry["z"])
    program = header.get("program")
    if program is not None:
        _require(isinstance(program, dict) and program.get("kind") in PROGRAM_KINDS,
                 f"the header's program is not one of {', '.join(PROGRAM_KINDS)}")
        total += _int_field(program, "z", 1, file_bytes, "program")
    _require(total <= file_bytes, "the header's sections add up to more than the file holds")
