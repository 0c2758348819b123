"""Shared filters: a layer's filters (Conv2d) or neurons (Linear) clustered by k-means into k representatives.

The layer becomes ``nn.Sequential(layer with k outputs, ChannelGather(index, bias))``: the first holds the k
representative filters (the cluster centres), ``ChannelGather`` an integer ``index`` buffer (one entry per
original output, uint8 for k <= 256) and the per-output bias, computing ``y[:, index] + bias``. So the file
stores k filters and one small index per filter, the k filters go through pruning, quantization and Huffman
coding as an ordinary layer, and only k of the filters are computed. The clustering is Lloyd's algorithm
with k-means++ seeding on the filters as vectors, seeded by the recipe's seed.

Each step records a ``share_filters`` structure op (layer, k) that rebuilds the pair on load; once the
file is decoded, every index is checked to be below k, so a forged file is refused.
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
from core.recipe.validate import check_int

MAX_K = 1 << 16
LLOYD_ITERATIONS = 100


@dataclass(frozen=True)
class ShareFilters(Step):
    """Cluster each selected layer's filters (Conv2d) or neurons (Linear) into ``k`` representatives by
    k-means; the layer stores the k filters and an index per filter."""

    kind: ClassVar[str] = "share_filters"
    renames_layers: ClassVar[bool] = True
    not_after: ClassVar[Mapping[str, str]] = {"quantize": QUANTIZED_FIRST}
    k: int = 16

    def summary(self) -> str:
        return f"{self.k} shared filters{self._overridden()}"

    def validate(self, where: str) -> None:
        super().validate(where)
        check_int(f"{where}.k", self.k, 1, MAX_K)
        for pattern, value in self.select.overrides:
            check_int(f"{where}.overrides[{pattern}]", value, 1, MAX_K)


class ChannelGather(nn.Module):
    """``y.index_select(dim, index) + bias``: output ``i`` is channel ``index[i]`` of the shared layer's output
    (``dim`` 1 after a convolution, -1 after a Linear), plus output ``i``'s own bias."""

    def __init__(self, index: torch.Tensor, bias: torch.Tensor | None, dim: int) -> None:
        super().__init__()
        self.dim = dim
        self.register_buffer("index", index)
        self.bias = None if bias is None else nn.Parameter(bias)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        out = y.index_select(self.dim, self.index.long())
        if self.bias is None:
            return out
        shape = [1] * out.ndim
        shape[self.dim] = -1
        return out + self.bias.view(shape)

    def extra_repr(self) -> str:
        return f"{self.index.numel()} outputs, dim={self.dim}"


def index_dtype(k: int) -> torch.dtype:
    return torch.uint8 if k <= 256 else torch.int32


def sharing_targets(model: nn.Module) -> list[str]:
    """The layers whose filters can be shared: Linear, and Conv2d with groups=1."""
    return [n for n, m in model.named_modules()
            if isinstance(m, nn.Linear) or (isinstance(m, nn.Conv2d) and m.groups == 1)]


def kmeans(rows: torch.Tensor, k: int, seed: int = 0, iterations: int = LLOYD_ITERATIONS) -> tuple[torch.Tensor,
                                                                                                     torch.Tensor]:
    """Lloyd's k-means with k-means++ seeding on ``rows`` (n x d, float32); returns (centres (k x d),
    assignment (n,) int64). An emptied cluster is re-seeded with the row farthest from its centre."""
    n = rows.shape[0]
    g = torch.Generator().manual_seed(seed)
    centres = rows[torch.randint(n, (1,), generator=g)]
    for _ in range(1, k):  # k-means++: each next centre drawn with probability ∝ squared distance
        d2 = torch.cdist(rows, centres).min(dim=1).values ** 2
        pick = torch.multinomial(d2, 1, generator=g) if float(d2.sum()) > 0 else torch.randint(n, (1,), generator=g)
        centres = torch.cat([centres, rows[pick]])
    assign = torch.full((n,), -1, dtype=torch.int64)
    for _ in range(iterations):
        distances = torch.cdist(rows, centres)
        new = distances.argmin(dim=1)
        if torch.equal(new, assign):
            break
        assign = new
        for c in range(k):
            members = assign == c
            if members.any():
                centres[c] = rows[members].mean(dim=0)
            else:
                far = int(distances.gather(1, assign[:, None]).argmax())
                centres[c], assign[far] = rows[far], c
    return centres, assign


def shared_block(module: nn.Module, k: int) -> nn.Sequential:
    """The k-filter layer and the gather replacing ``module``, uninitialised, on its device."""
    dev = module.weight.device
    if isinstance(module, nn.Linear):
        first = nn.Linear(module.in_features, k, bias=False, device=dev, dtype=module.weight.dtype)
        outputs, dim = module.out_features, -1
    else:
        first = conv_like(module, module.in_channels, k, module.kernel_size, module.stride, module.padding,
                          module.dilation)
        outputs, dim = module.out_channels, 1
    bias = None if module.bias is None else torch.zeros(outputs, device=dev, dtype=module.bias.dtype)
    return nn.Sequential(first, ChannelGather(torch.zeros(outputs, dtype=index_dtype(k), device=dev), bias, dim))


@torch.no_grad()
def share(module: nn.Module, k: int, seed: int = 0) -> nn.Sequential:
    """``module`` with its filters replaced by their ``k`` k-means centres and an index per filter."""
    w = plain_weight(module)
    centres, assign = kmeans(w.reshape(w.shape[0], -1), k, seed)
    block = shared_block(module, k)
    block[0].weight.copy_(centres.reshape(block[0].weight.shape))
    block[1].index.copy_(assign.to(block[1].index.dtype))
    if module.bias is not None:
        block[1].bias.copy_(module.bias.detach())
    block.train(module.training)
    return block


def run_share_filters(step: ShareFilters, ctx: RunContext) -> Task[None]:
    names = ctx.layers(step, sharing_targets(ctx.model))
    done = []
    for i, name in enumerate(names):
        yield Progress("share filters", i, len(names), name)
        module = ctx.model.get_submodule(name)
        k = step.select.value_for(name, step.k)
        outputs = module.weight.shape[0]
        if k >= outputs:
            ctx.note(f"{name} not shared: k={k} is not fewer than its {outputs} filters")
            continue
        replace_module(ctx.model, name, share(module, k, ctx.recipe.seed))
        done.append({"layer": name, "k": k})
    yield Progress("share filters", len(names), len(names), "done")
    if done:
        ctx.structure.append({"op": "share_filters", "layers": done})


def replay_share_filters(model: nn.Module, example, op: dict) -> None:
    """Rebuild the shared layers (shapes only; the file's tensors are decoded into them)."""
    for entry in op_entries(op, "share_filters"):
        name = entry.get("layer")
        module = module_at(model, name, (nn.Linear, nn.Conv2d), "share_filters")
        if isinstance(module, nn.Conv2d) and module.groups != 1:
            raise StructureError(f"a share_filters op names {name}, a grouped convolution")
        k = op_int(entry, "k", 1, module.weight.shape[0] - 1, "share_filters")
        replace_module(model, name, shared_block(module, k))


def check_share_filters(model: nn.Module, op: dict) -> None:
    """Every decoded index is a filter of its shared layer (0 <= index < k)."""
    for entry in op_entries(op, "share_filters"):
        name, k = entry["layer"], entry["k"]
        index = model.get_submodule(f"{name}.1").index
        if index.numel() and (int(index.min()) < 0 or int(index.max()) >= k):
            raise StructureError(f"{name}: a shared-filter index is outside 0..{k - 1}")


register_op("share_filters", replay_share_filters, check_share_filters)
register_step(ShareFilters, run_share_filters, targets=sharing_targets, family="architecture",
              in_place=True)
