"""int8 inference through PyTorch's own quantized backends (``torch.ao``), so latency gains are real: the
``quantize_activations`` step.

It is a conversion of the decoded model, not a stored format: the step's handler asks the run to convert
the model decoded from the compressed file, and the int8 model is measured beside it.

``static``: FX graph mode post-training quantization; observers calibrate activation ranges on training
batches, then weights and activations run as int8 (x86 backend, ``onednn``/``fbgemm`` kernels).
``dynamic``: Linear layers get int8 weights; activations are quantized on the fly per batch.
torchao (0.18) is ``torch.ao``'s successor and imports beside torch 2.13, but its pt2e flow only runs
int8 kernels once lowered by ``torch.compile`` (a C++ compiler at run time); run eagerly it simulates
int8 in float and is slower. ``torch.ao``'s x86 kernels give the real speed-up, so they are used, with
their deprecation warning silenced here.
"""

from __future__ import annotations

import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn
from torch.ao.quantization import QConfig, QConfigMapping, quantize_dynamic
from torch.ao.quantization.observer import HistogramObserver, default_per_channel_weight_observer
from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

from core.eval.data import Dataset
from core.modelcopy import clone_module
from core.pipeline.context import Conversion, RunContext
from core.progress import Progress, Task
from core.recipe import Need, Step, register_step
from core.recipe.validate import check_choice, check_int

BACKEND = "x86"


@dataclass(frozen=True)
class QuantizeActivations(Step):
    """int8 inference through PyTorch's quantized backends: ``static`` (calibrated on
    ``calibration_batches`` batches of training data) or ``dynamic`` (Linear layers, weights int8)."""

    kind: ClassVar[str] = "quantize_activations"
    mode: str = "dynamic"
    calibration_batches: int = 8

    def summary(self) -> str:
        return f"int8 {self.mode}"

    def validate(self, where: str) -> None:
        super().validate(where)
        check_choice(f"{where}.mode", self.mode, ("static", "dynamic"))
        check_int(f"{where}.calibration_batches", self.calibration_batches, 1, 10000)

    def needs(self) -> frozenset[Need]:
        return frozenset({Need.CALIBRATION_DATA}) if self.mode == "static" else frozenset()


def _qconfig_mapping() -> QConfigMapping:
    # quint8 activations in 0..127 is what the x86 backend's default does with reduce_range=True (avoiding
    # overflow in its VNNI-less kernels); spelled out here because reduce_range is deprecated
    activation = HistogramObserver.with_args(dtype=torch.quint8, quant_min=0, quant_max=127)
    return QConfigMapping().set_global(QConfig(activation=activation, weight=default_per_channel_weight_observer))


@contextmanager
def _quiet_deprecation():
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"torch\.ao\.quantization is deprecated")
        warnings.filterwarnings("ignore", message=r".*quantized tensor creation functions .* are deprecated")
        yield


def convert(model: nn.Module, mode: str, example: torch.Tensor, data: Dataset | None,
            calibration_batches: int = 8) -> Task[nn.Module]:
    """An int8 copy of ``model`` (which is left as it was)."""
    torch.backends.quantized.engine = BACKEND
    model = clone_module(model).eval()
    if mode == "dynamic":
        yield Progress("int8", 1, 1, "dynamic quantization")
        with _quiet_deprecation():
            return quantize_dynamic(model, {nn.Linear}, dtype=torch.qint8)
    if data is None:
        raise ValueError("static int8 quantization calibrates on data: pass --data")
    with _quiet_deprecation():
        prepared = prepare_fx(model, _qconfig_mapping(), (example,))
    with torch.inference_mode():
        for i, (x, _) in enumerate(data.train.batches(256, limit=256 * calibration_batches)):
            prepared(x)
            yield Progress("int8", i + 1, calibration_batches, "calibrating activation ranges")
    with _quiet_deprecation():
        return convert_fx(prepared)


def run_quantize_activations(step: QuantizeActivations, ctx: RunContext) -> None:
    """Ask for the int8 conversion of the decoded model (the first such step of a recipe decides)."""
    if any(c.name == "int8" for c in ctx.conversions):
        return
    example, data = ctx.example, ctx.data
    ctx.conversions.append(Conversion("int8", lambda model: convert(model, step.mode, example, data,
                                                                      step.calibration_batches)))


register_step(QuantizeActivations, run_quantize_activations, family="quantization")
