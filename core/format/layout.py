"""The compressed file's framing and the records the encoder and the decoder share.

Layout::

    "PSCZ"  u16 version  u32 header length  zlib(JSON header)  sections...  u32 CRC-32 of all before

Versions: 1, the first; 2 added the ``masked`` encoding; 3 records the model's structural changes as a
list of structure ops (:mod:`core.format.structure`) instead of one Torch-Pruning history; 4 lets a
quantized tensor share an earlier tensor's codebook (``cbr``: that tensor's name; its own codebook section
is empty), so a codebook shared by several layers (``quantize`` with ``scope: global``) is stored once;
5 may hold a compiled program's code (the header's ``program``: its kind and length) in a section after the
tensors', so a compressed TorchScript or ``torch.export`` program reloads as one.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

import torch

MAGIC = b"PSCZ"
VERSION = 5  # 2: the ``masked`` encoding; 3: structure ops; 4: codebooks shared by reference; 5: a program
PLAIN_VERSION = 4  # what a file without a program is written as, so that readers of version 4 still open it
READS = (1, 2, 3, 4, 5)  # version 1 holds no ``masked`` tensors, versions 1 and 2 one pruning history
PREAMBLE = struct.Struct("<4sHI")
CRC = struct.Struct("<I")
FRAMING_BYTES = PREAMBLE.size + CRC.size
MAX_INDEX_BITS = 16
PROGRAM_KINDS = ("torchscript", "torch.export")  # the compiled programs a file may hold the code of
DTYPES = {"f32": torch.float32, "f16": torch.float16, "bf16": torch.bfloat16, "f64": torch.float64,
           "i64": torch.int64, "i32": torch.int32, "i16": torch.int16, "i8": torch.int8, "u8": torch.uint8,
           "b1": torch.bool}
DTYPE_NAMES = {v: k for k, v in DTYPES.items()}


@dataclass(frozen=True)
class WeightCode:
    """A layer's weights as the pipeline hands them to the encoder.

    ``mask``: kept positions (None: dense). ``codes`` and ``codebook`` (``(k,)``, or ``(rows, k)`` per
    output channel): quantized values; ``codes`` None means raw float values are stored. ``codebook_of``:
    the state_dict name of an earlier tensor whose (per-tensor) codebook this one shares, so the file
    stores that codebook once; None: this tensor stores its own.
    """

    mask: torch.Tensor | None
    codes: torch.Tensor | None
    codebook: torch.Tensor | None
    values: torch.Tensor
    codebook_of: str | None = None


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
    program_bytes: int = 0  # a compiled program's code (zlib-compressed), stored after the tensors

    @property
    def total(self) -> int:
        return self.framing_bytes + self.header_bytes + sum(t.bytes for t in self.tensors) + self.program_bytes


# --------------------------------------------------------------------------------------------- encoding
