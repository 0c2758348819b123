"""Low-rank factorisation: a layer becomes two thinner ones through a truncated SVD.

A Linear ``W`` (out x in) ``= U S Vᵀ`` becomes ``Linear(in, r, bias=False)`` holding ``√S Vᵀ`` followed by
``Linear(r, out)`` holding ``U √S`` and the bias. A Conv2d is factorised the same way in one of two
arrangements of its weight ``(out, in, kh, kw)``:

- ``channel``: the matrix ``(out, in·kh·kw)``: r kh×kw filters (``Conv2d(in, r, k)`` with the layer's
  stride, padding and dilation) followed by a 1×1 ``Conv2d(r, out)`` with the bias;
- ``spatial`` (Jaderberg, Vedaldi and Zisserman 2014, scheme 2): the matrix ``(in·kh, out·kw)`` with
  ``M[(c, y), (o, x)] = W[o, c, y, x]``: r vertical kh×1 filters (the layer's vertical stride, padding and
  dilation) followed by out horizontal 1×kw filters over the r channels (the horizontal ones, and the bias).

Both are exact at full rank. A rank-r factorisation of an m×n matrix stores r(m+n) weights instead of mn:
at or above break-even, mn/(m+n), it saves nothing, and the layer is skipped with a note in the report. The
rank is ``rank``, a per-layer override, or (``rank: 0``) the smallest that keeps ``energy`` of Σσ². Each
step records a ``low_rank`` structure op (layer, rank, method) that rebuilds the two layers on load.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from core.format.structure import StructureError, register_op
from core.methods.replacing import QUANTIZED_FIRST, conv_like, module_at, op_entries, op_int, plain_weight, \
    replace_module
from core.pipeline.context import RunContext
from core.progress import Progress, Task
from core.recipe import Step, register_step
from core.recipe.validate import check_choice, check_int, fail

METHODS = ("channel", "spatial")
MAX_RANK = 1 << 20


@dataclass(frozen=True)
class LowRank(Step):
    """Replace each selected Linear / Conv2d by two thinner layers through a truncated SVD of rank ``rank``
    (0: the smallest rank keeping ``energy`` of Σσ²); convolutions as r k×k filters + 1×1 (``channel``) or
    k×1 + 1×k (``spatial``). Layers at or above break-even are skipped, with a note."""

    kind: ClassVar[str] = "low_rank"
    renames_layers: ClassVar[bool] = True
    not_after: ClassVar[Mapping[str, str]] = {"quantize": QUANTIZED_FIRST}
    rank: int = 0
    energy: float = 0.9
    method: str = "channel"

    def summary(self) -> str:
        return (f"rank {self.rank}" if self.rank else f"low rank {self.energy:.0%} energy") + self._overridden()

    def validate(self, where: str) -> None:
        super().validate(where)
        check_int(f"{where}.rank", self.rank, 0, MAX_RANK)
        if not isinstance(self.energy, (int, float)) or isinstance(self.energy, bool) or not 0 < self.energy <= 1:
            fail(f"{where}.energy", f"must be a number in (0, 1]; got {self.energy!r}")
        check_choice(f"{where}.method", self.method, METHODS)
        for pattern, value in self.select.overrides:
            check_int(f"{where}.overrides[{pattern}]", value, 1, MAX_RANK)


# ----------------------------------------------------------------------------------- the factorisation

def low_rank_targets(model: nn.Module) -> list[str]:
    """The layers low rank works on: Linear, and Conv2d with groups=1 (a grouped convolution is not one
    matrix, and is not offered)."""
    return [n for n, m in model.named_modules()
            if isinstance(m, nn.Linear) or (isinstance(m, nn.Conv2d) and m.groups == 1)]


def matrix_shape(module: nn.Module, method: str = "channel") -> tuple[int, int]:
    """(m, n) of the matrix that is factorised (see the module docstring)."""
    if isinstance(module, nn.Linear):
        return module.out_features, module.in_features
    out, cin, kh, kw = module.weight.shape
    return (out, cin * kh * kw) if method == "channel" else (cin * kh, out * kw)


def weight_matrix(module: nn.Module, method: str = "channel") -> torch.Tensor:
    """The layer's weight arranged as the matrix that is factorised, float32."""
    w = plain_weight(module)
    if isinstance(module, nn.Linear):
        return w
    out, cin, kh, kw = w.shape
    if method == "channel":
        return w.reshape(out, cin * kh * kw)
    return w.permute(1, 2, 0, 3).reshape(cin * kh, out * kw)  # M[(c, y), (o, x)] = W[o, c, y, x]


def singular_values(module: nn.Module, method: str = "channel") -> torch.Tensor:
    """The singular values of the matrix that is factorised, descending, float32 (``min(m, n)`` of them)."""
    return torch.linalg.svdvals(weight_matrix(module, method))


def break_even(module: nn.Module, method: str = "channel") -> float:
    """mn/(m+n): the rank at which the two factors hold as many weights as the layer."""
    m, n = matrix_shape(module, method)
    return m * n / (m + n)


def rank_for_energy(sv: torch.Tensor, energy: float) -> int:
    """The smallest rank whose singular values keep at least ``energy`` of Σσ² (at least 1)."""
    power = sv.double() ** 2
    total = float(power.sum())
    if total <= 0:
        return 1
    cumulative = torch.cumsum(power, 0) / total
    return min(len(sv), int(torch.searchsorted(cumulative, torch.tensor(energy - 1e-12, dtype=cumulative.dtype))) + 1)


def factorised_params(module: nn.Module, rank: int, method: str = "channel") -> int:
    """Weights of the two factors at ``rank``: r(m+n) (the bias, unchanged, is not counted)."""
    m, n = matrix_shape(module, method)
    return rank * (m + n)


def factorised_block(module: nn.Module, rank: int, method: str = "channel") -> nn.Sequential:
    """The two layers replacing ``module`` at ``rank``, with uninitialised weights, on its device."""
    has_bias = module.bias is not None
    dev, dtype = module.weight.device, module.weight.dtype
    if isinstance(module, nn.Linear):
        return nn.Sequential(nn.Linear(module.in_features, rank, bias=False, device=dev, dtype=dtype),
                             nn.Linear(rank, module.out_features, bias=has_bias, device=dev, dtype=dtype))
    cin, out = module.in_channels, module.out_channels
    (kh, kw), (sh, sw), (dh, dw) = module.kernel_size, module.stride, module.dilation
    if method == "channel":
        return nn.Sequential(
            conv_like(module, cin, rank, (kh, kw), (sh, sw), module.padding, (dh, dw)),
            conv_like(module, rank, out, 1, 1, 0, 1, bias=has_bias))
    pad = module.padding
    first_pad, second_pad = (pad, pad) if isinstance(pad, str) else ((pad[0], 0), (0, pad[1]))
    return nn.Sequential(conv_like(module, cin, rank, (kh, 1), (sh, 1), first_pad, (dh, 1)),
                         conv_like(module, rank, out, (1, kw), (1, sw), second_pad, (1, dw), bias=has_bias))


@torch.no_grad()
def factorise(module: nn.Module, rank: int, method: str = "channel") -> nn.Sequential:
    """``module`` as two layers holding its rank-``rank`` truncated SVD (exact at full rank)."""
    u, s, vh = torch.linalg.svd(weight_matrix(module, method), full_matrices=False)
    root = s[:rank].sqrt()
    left, right = u[:, :rank] * root, root[:, None] * vh[:rank]  # (m, r), (r, n)
    block = factorised_block(module, rank, method)
    first, second = block[0], block[1]
    if isinstance(module, nn.Linear) or method == "channel":
        first.weight.copy_(right.reshape(first.weight.shape))
        second.weight.copy_(left.reshape(second.weight.shape))
    else:
        out, _, _, kw = module.weight.shape
        first.weight.copy_(left.T.reshape(first.weight.shape))  # (r, in, kh, 1)
        second.weight.copy_(right.reshape(rank, out, kw).permute(1, 0, 2).reshape(second.weight.shape))
    if module.bias is not None:
        second.bias.copy_(module.bias.detach())
    block.train(module.training)
    return block


# ----------------------------------------------------------------------------------- step and structure op

def run_low_rank(step: LowRank, ctx: RunContext) -> Task[None]:
    names = ctx.layers(step, low_rank_targets(ctx.model))
    done = []
    for i, name in enumerate(names):
        yield Progress("low rank", i, len(names), name)
        module = ctx.model.get_submodule(name)
        method = "channel" if isinstance(module, nn.Linear) else step.method
        rank = step.select.value_for(name, step.rank) or rank_for_energy(singular_values(module, method),
                                                                        step.energy)
        even = break_even(module, method)
        if rank >= even:
            m, n = matrix_shape(module, method)
            ctx.note(f"{name} not factorised: rank {rank} is at or above break-even {even:.1f} for its {m}x{n} "
                     f"matrix ({factorised_params(module, rank, method):,} weights instead of {m * n:,})")
            continue
        replace_module(ctx.model, name, factorise(module, rank, method))
        done.append({"layer": name, "rank": rank, "method": method})
    yield Progress("low rank", len(names), len(names), "done")
    if done:
        ctx.structure.append({"op": "low_rank", "layers": done})


def replay_low_rank(model: nn.Module, example, op: dict) -> None:
    """Rebuild the factorised layers (shapes only; the file's tensors are decoded into them)."""
    for entry in op_entries(op, "low_rank"):
        name = entry.get("layer")
        module = module_at(model, name, (nn.Linear, nn.Conv2d), "low_rank")
        method = entry.get("method")
        if method not in METHODS:
            raise StructureError(f"a low_rank op's method must be one of {', '.join(METHODS)}; got {method!r}")
        if isinstance(module, nn.Conv2d) and module.groups != 1:
            raise StructureError(f"a low_rank op names {name}, a grouped convolution")
        m, n = matrix_shape(module, method)
        rank = op_int(entry, "rank", 1, min(m, n), "low_rank")
        replace_module(model, name, factorised_block(module, rank, method))


register_op("low_rank", replay_low_rank)
register_step(LowRank, run_low_rank, targets=low_rank_targets, family="architecture")
