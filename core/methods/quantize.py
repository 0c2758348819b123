"""Weight quantization as a step: ``quantize`` stores each selected layer's weights as indices into a few
shared levels (k-means weight sharing, uniform levels, binary, ternary), per layer or per output channel.

The levels and codes are made by :mod:`core.methods.codebooks`; k-means codebooks (and binary/ternary
scales) are then trained for ``finetune_epochs`` with the rest of the model (Deep Compression, section 3.3).
Uniform levels are fixed; with ``finetune_epochs`` they get quantization-aware training first (straight
through the rounding), then the final levels.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from core.analysis.estimate import Plan
from core.methods.codebooks import METHODS, fake_quantize_layer, quantize_layer, quantize_layers_global
from core.methods.magnitude import prunable_names
from core.methods.masks import prunable_layers
from core.methods.distill import DistillSpec, check_distill_block, distill_needs, distill_teachers
from core.pipeline.context import RunContext
from core.progress import Task
from core.recipe import Need, Step, register_step
from core.recipe.validate import check_choice, check_int, check_positive, fail


@dataclass(frozen=True)
class Quantize(Step):
    """Store weights in fewer bits: ``uniform`` levels (per tensor or channel, symmetric or affine),
    ``kmeans`` weight sharing (a codebook per layer, linear initialisation, then ``finetune_epochs`` of
    codebook training), or ``binary``/``ternary`` weights. ``overrides`` set bits per layer. ``scope``:
    ``layer`` (a codebook per layer) or ``global`` (k-means only: one codebook shared by every selected
    layer, made from the union of their kept weights, trained by all of them and stored once)."""

    kind: ClassVar[str] = "quantize"
    method: str = "kmeans"
    bits: int = 8
    granularity: str = "tensor"
    symmetric: bool = True
    finetune_epochs: int = 0
    lr: float = 0.001
    augment: bool = False
    scope: str = "layer"
    distill: DistillSpec | None = None  # codebook fine-tuning distills from its teacher

    def summary(self) -> str:
        method = {"kmeans": "k-means"}.get(self.method, self.method)
        bits = "" if self.method in ("binary", "ternary") else f"{self.bits}-bit "
        scope = ", one global codebook" if self.scope == "global" else ""
        return f"{bits}{method}{scope}{self._overridden()}"

    def validate(self, where: str) -> None:
        super().validate(where)
        check_choice(f"{where}.method", self.method, METHODS)
        check_int(f"{where}.bits", self.bits, 1, 8)
        check_choice(f"{where}.granularity", self.granularity, ("tensor", "channel"))
        if self.method == "kmeans" and self.granularity != "tensor":
            fail(f"{where}.granularity", "k-means shares one codebook per layer: use granularity tensor")
        check_int(f"{where}.finetune_epochs", self.finetune_epochs, 0, 1000)
        check_positive(f"{where}.lr", self.lr)
        for pattern, value in self.select.overrides:
            check_int(f"{where}.overrides[{pattern}]", value, 1, 8)
        check_choice(f"{where}.scope", self.scope, ("layer", "global"))
        if self.scope == "global" and self.method != "kmeans":
            fail(f"{where}.scope", f"a global codebook is made by k-means: use method kmeans, not {self.method}")
        if self.scope == "global" and self.select.overrides:
            fail(f"{where}.overrides", "one global codebook has one size: set bits, not bits per layer")
        check_distill_block(f"{where}.distill", self.distill)

    def needs(self) -> frozenset[Need]:
        if not self.finetune_epochs:
            return frozenset()
        return frozenset({Need.TRAINING_DATA}) | distill_needs(self.distill)

    def teachers(self) -> tuple[str, ...]:
        return distill_teachers(self.distill) if self.finetune_epochs else ()

    def bits_of(self, layer: str) -> int:
        """Bits per stored index for ``layer`` (binary and ternary weights take one)."""
        return 1 if self.method in ("binary", "ternary") else self.select.value_for(layer, self.bits)


def run_quantize(step: Quantize, ctx: RunContext) -> Task[None]:
    layers = prunable_layers(ctx.model)
    names = ctx.layers(step, list(layers))
    per_channel = step.granularity == "channel"
    if step.scope == "global":
        quantize_layers_global([layers[n] for n in names], step.bits)
        yield from ctx.finetune(step.finetune_epochs, step.lr, step.augment, distill=step.distill)
        return
    if step.method == "uniform" and step.finetune_epochs:
        for n in names:
            fake_quantize_layer(layers[n], step.select.value_for(n, step.bits), per_channel, step.symmetric)
        yield from ctx.finetune(step.finetune_epochs, step.lr, step.augment, distill=step.distill)
    for n in names:
        quantize_layer(layers[n], step.method, step.select.value_for(n, step.bits), per_channel, step.symmetric)
    if step.method != "uniform":
        yield from ctx.finetune(step.finetune_epochs, step.lr, step.augment, distill=step.distill)


def preview_quantize(step: Quantize, plan: Plan) -> None:
    for n in plan.layers(step):
        plan.bits[n] = step.bits_of(n)


register_step(Quantize, run_quantize, preview=preview_quantize, targets=prunable_names, family="quantization",
              in_place=True)
