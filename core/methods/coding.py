"""How the compressed file stores the result, as the recipe's last step: ``encode``.

Huffman coding on or off, the relative-index width (0: chosen per layer to minimise bytes; a layer that
keeps most of its weights may then mark pruned positions with a symbol of their own instead), and whether
biases and other small tensors are kept in float16 or float32. The file itself is written by
:mod:`core.format.container` once every step has run; without an encode step these defaults apply.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from core.pipeline.context import EncodeOptions, RunContext
from core.recipe import Step, register_step
from core.recipe.validate import check_choice, check_int


@dataclass(frozen=True)
class Encode(Step):
    """How the compressed file stores the result: Huffman coding on or off, relative-index bits per layer
    (0: chosen per layer to minimise bytes, a layer that keeps most of its weights may then mark pruned
    positions with a zero symbol instead), and how biases and other small tensors are kept."""

    kind: ClassVar[str] = "encode"
    last: ClassVar[bool] = True
    huffman: bool = True
    index_bits: int = 0
    small_tensors: str = "float16"

    def summary(self) -> str:
        return "" if self.huffman else "no Huffman"

    def validate(self, where: str) -> None:
        super().validate(where)
        check_int(f"{where}.index_bits", self.index_bits, 0, 16)
        check_choice(f"{where}.small_tensors", self.small_tensors, ("float32", "float16"))


def run_encode(step: Encode, ctx: RunContext) -> None:
    ctx.encoding = EncodeOptions(huffman=step.huffman, index_bits=step.index_bits, small_float=step.small_tensors)


register_step(Encode, run_encode, family="coding", in_place=True)
