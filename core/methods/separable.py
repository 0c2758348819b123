"""Depthwise-separable replacement: a k×k convolution becomes a depthwise k×k followed by a pointwise 1×1.

MobileNet's factorisation: ``Conv2d(in, out, k)`` (groups=1) becomes ``Conv2d(in, in, k, groups=in,
bias=False)`` (the layer's stride, padding and dilation) followed by ``Conv2d(in, out, 1)`` with the bias,
storing ``in·k² + in·out`` weights instead of ``in·out·k²`` (a cost ratio of 1/out + 1/k²).

The new block starts from the best separable approximation of the old weights (for each input channel
``c``, the rank-1 SVD of ``W[:, c]`` (out x k²) gives the depthwise filter and the pointwise column), then
is fitted to the old layer's outputs: the layer's inputs are captured on calibration batches (the training
split, or the model's probe inputs without data) with a forward hook on the working model, and Adam
minimises the mean squared error for ``fit_steps`` steps. Layers are done in model order, so each later
layer's inputs come from the already-replaced earlier ones. Fine-tune (or distil) afterwards.
Each step records a ``separable`` structure op (the layers) that rebuilds the blocks on load.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from core.devices import placed
from core.eval.evaluate import call_model, evaluating
from core.format.structure import StructureError, register_op
from core.methods.replacing import QUANTIZED_FIRST, conv_like, module_at, op_entries, plain_weight, replace_module
from core.pipeline.context import RunContext
from core.progress import Progress, Task
from core.recipe import Step, register_step
from core.recipe.validate import check_int, check_positive

CALIBRATION_BATCH = 128
PROGRESS_EVERY = 10  # optimiser steps between progress reports (and chances to cancel)


@dataclass(frozen=True)
class Separable(Step):
    """Replace each selected k×k convolution (groups=1) by a depthwise k×k + pointwise 1×1, fitted to the old
    layer's outputs on ``batches`` calibration batches for ``fit_steps`` Adam steps at ``fit_lr``."""

    kind: ClassVar[str] = "separable"
    renames_layers: ClassVar[bool] = True
    not_after: ClassVar[Mapping[str, str]] = {"quantize": QUANTIZED_FIRST}
    fit_steps: int = 300
    fit_lr: float = 0.01
    batches: int = 8

    def summary(self) -> str:
        return "separable" + self._overridden()

    def validate(self, where: str) -> None:
        super().validate(where)
        check_int(f"{where}.fit_steps", self.fit_steps, 0, 100_000)
        check_positive(f"{where}.fit_lr", self.fit_lr)
        check_int(f"{where}.batches", self.batches, 1, 10_000)


def separable_targets(model: nn.Module) -> list[str]:
    """The convolutions that can be made separable: Conv2d with groups=1 and a kernel larger than 1×1."""
    return [n for n, m in model.named_modules()
            if isinstance(m, nn.Conv2d) and m.groups == 1 and tuple(m.kernel_size) != (1, 1)]


def separable_params(conv: nn.Conv2d) -> tuple[int, int]:
    """Weights of ``conv`` before and after the replacement: ``(out·in·kh·kw, in·kh·kw + in·out)``."""
    out, cin, kh, kw = conv.weight.shape
    return out * cin * kh * kw, cin * kh * kw + cin * out


def separable_macs(conv: nn.Conv2d, macs_before: int) -> int:
    """MACs per sample of the depthwise + pointwise pair replacing ``conv``, given ``conv``'s own measured
    MACs. Both new layers compute at ``conv``'s output positions (the depthwise keeps its stride and
    padding; the pointwise is 1x1), so the count scales with the weights: ``macs · after / before``."""
    before, after = separable_params(conv)
    return macs_before * after // before


def separable_block(conv: nn.Conv2d) -> nn.Sequential:
    """The depthwise + pointwise pair replacing ``conv``, uninitialised, on its device."""
    cin, out = conv.in_channels, conv.out_channels
    return nn.Sequential(
        conv_like(conv, cin, cin, conv.kernel_size, conv.stride, conv.padding, conv.dilation, groups=cin),
        conv_like(conv, cin, out, 1, 1, 0, 1, bias=conv.bias is not None))


@torch.no_grad()
def separable_init(conv: nn.Conv2d) -> nn.Sequential:
    """The block holding the best separable approximation of ``conv``'s weights: for each input channel,
    the rank-1 SVD of its slice ``W[:, c]`` (out x kh·kw)."""
    w = plain_weight(conv)
    out, cin, kh, kw = w.shape
    u, s, vh = torch.linalg.svd(w.permute(1, 0, 2, 3).reshape(cin, out, kh * kw), full_matrices=False)
    root = s[:, 0].sqrt()
    block = separable_block(conv)
    block[0].weight.copy_((vh[:, 0, :] * root[:, None]).reshape(cin, 1, kh, kw))
    block[1].weight.copy_((u[:, :, 0] * root[:, None]).T.reshape(out, cin, 1, 1))
    if conv.bias is not None:
        block[1].bias.copy_(conv.bias.detach())
    return block


def calibration_inputs(ctx: RunContext, batches: int) -> list:
    """Up to ``batches`` input batches: the training split's, else the model's probe inputs."""
    if ctx.data is not None:
        shape = ctx.loaded.input_shape
        flat = shape is not None and len(shape) == 2
        return [x.reshape(x.shape[0], -1) if flat else x
                for x, _ in ctx.data.train.batches(CALIBRATION_BATCH, limit=batches * CALIBRATION_BATCH)]
    return list(ctx.loaded.probe_inputs)[:batches] or [ctx.example]


def layer_inputs(model: nn.Module, layer: nn.Module, inputs: list) -> list[torch.Tensor]:
    """What ``layer`` receives when ``model`` runs on each batch of ``inputs`` (eval mode)."""
    seen: list[torch.Tensor] = []
    handle = layer.register_forward_pre_hook(lambda mod, args: seen.append(args[0].detach()))
    try:
        with evaluating(model), placed(model), torch.no_grad():  # on the CPU, inputs in the model's dtype
            for x in inputs:
                call_model(model, x)
    finally:
        handle.remove()
    return seen


def fit_block(block: nn.Module, conv: nn.Module, inputs: list[torch.Tensor], steps: int, lr: float,
              label: str) -> Task[float]:
    """Adam on the mean squared error between ``block(x)`` and ``conv(x)``; returns the last batch's error."""
    with torch.no_grad():
        targets = [conv(x) for x in inputs]
    optimiser = torch.optim.Adam(block.parameters(), lr=lr)
    loss = torch.zeros(())
    for i in range(steps):
        x, target = inputs[i % len(inputs)], targets[i % len(inputs)]
        optimiser.zero_grad(set_to_none=True)
        loss = torch.nn.functional.mse_loss(block(x), target)
        loss.backward()
        optimiser.step()
        loss = loss.detach()
        if (i + 1) % PROGRESS_EVERY == 0:
            yield Progress("separable fit", i + 1, steps, f"{label}: mse {loss.item():.3g}")
    return loss.item()


def run_separable(step: Separable, ctx: RunContext) -> Task[None]:
    names = ctx.layers(step, separable_targets(ctx.model))
    inputs = calibration_inputs(ctx, step.batches) if step.fit_steps else []
    done = []
    for i, name in enumerate(names):
        yield Progress("separable", i, len(names), name)
        conv = ctx.model.get_submodule(name)
        before, after = separable_params(conv)
        if after >= before:
            ctx.note(f"{name} not made separable: it would hold {after:,} weights instead of {before:,}")
            continue
        block = separable_init(conv)
        if inputs:
            captured = layer_inputs(ctx.model, conv, inputs)
            with torch.enable_grad():
                yield from fit_block(block, conv, captured, step.fit_steps, step.fit_lr, name)
        block.train(conv.training)
        replace_module(ctx.model, name, block)
        done.append({"layer": name})
    yield Progress("separable", len(names), len(names), "done")
    if done:
        ctx.structure.append({"op": "separable", "layers": done})


def replay_separable(model: nn.Module, example, op: dict) -> None:
    """Rebuild the separable blocks (shapes only; the file's tensors are decoded into them)."""
    for entry in op_entries(op, "separable"):
        name = entry.get("layer")
        conv = module_at(model, name, (nn.Conv2d,), "separable")
        if conv.groups != 1:
            raise StructureError(f"a separable op names {name}, a grouped convolution")
        replace_module(model, name, separable_block(conv))


register_op("separable", replay_separable)
register_step(Separable, run_separable, targets=separable_targets, family="architecture")
