"""INTERIM: local copies of the low-rank, separable and distillation helpers the studio's views need.

    *** TO BE REPLACED AT INTEGRATION, AND THEN DELETED. ***

The shared interface of issue 13 (notes/rules.md, "Shared interface") gives these functions to other
modules, built at the same time on other branches:

- ``singular_values``, ``break_even``, ``rank_for_energy``, ``factorised_params``, ``low_rank_targets``:
  :mod:`core.methods.low_rank` (the archsteps helper);
- ``separable_params``, ``separable_targets``: :mod:`core.methods.separable` (the archsteps helper);
- ``soft_probabilities``: :mod:`core.methods.distill` (the distill helper).

Until they land on the ``views`` branch, the studio computes with the copies below, written to the same
names and meanings. The GUI imports them in exactly one place, :mod:`gui.methods.arch_api`; when the real
modules are merged, that module's imports switch to them and this file is deleted (nothing else imports
it; ``tests/gui/test_arch_views.py`` exercises the views, not these copies).

Conventions assumed here, which the integrator checks against the real helpers:

- ``singular_values(module, method="channel")`` takes the conv method as a second argument (the interface
  names only ``module``, but describes both arrangements); a Linear ignores it.
- ``factorised_params`` counts the weights of the two factors only (``rank * (m + n)``), not the bias,
  which the factorised pair keeps unchanged; the views compare it with the layer's weight count ``m * n``,
  so that break-even is exactly ``m n / (m + n)``.
- ``separable_params`` counts weights only (depthwise ``C k_h k_w`` + pointwise ``C N``), no biases.
"""

from __future__ import annotations

import torch
from torch import nn

METHODS = ("channel", "spatial")


def _conv_ok(module: nn.Module) -> bool:
    return isinstance(module, nn.Conv2d) and module.groups == 1


def factor_shape(module: nn.Module, method: str = "channel") -> tuple[int, int]:
    """(m, n): the shape of the matrix a layer's weight is factorised as.

    Linear: (out, in). Conv2d, ``channel``: (out, in·kh·kw) (r kh×kw filters, then a 1×1). Conv2d,
    ``spatial`` (Jaderberg et al. 2014): (in·kh, out·kw) (a kh×1 then a 1×kw convolution)."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}; got {method!r}")
    if isinstance(module, nn.Linear):
        return module.out_features, module.in_features
    if _conv_ok(module):
        out, cin, kh, kw = module.weight.shape
        return (out, cin * kh * kw) if method == "channel" else (cin * kh, out * kw)
    raise ValueError(f"{type(module).__name__} cannot be factorised (a Linear, or a Conv2d with groups=1)")


def factor_matrix(module: nn.Module, method: str = "channel") -> torch.Tensor:
    """The layer's weight arranged as the (m, n) matrix of :func:`factor_shape` (float32, a copy)."""
    m, n = factor_shape(module, method)
    w = module.weight.detach().to(torch.float32)
    if isinstance(module, nn.Linear) or method == "channel":
        return w.reshape(m, n).clone()
    out, cin, kh, kw = w.shape
    # W[o, c, y, x] -> M[(c, y), (o, x)]: rank r gives a (kh x 1) conv to r channels and a (1 x kw) conv
    return w.permute(1, 2, 0, 3).reshape(cin * kh, out * kw).clone()


def singular_values(module: nn.Module, method: str = "channel") -> torch.Tensor:
    """The singular values (descending, float32, 1-D of length min(m, n)) of the layer's weight matrix
    as :func:`factor_matrix` arranges it."""
    with torch.no_grad():
        return torch.linalg.svdvals(factor_matrix(module, method))


def break_even(module: nn.Module, method: str = "channel") -> float:
    """The rank at which the two factors hold as many weights as the layer: m n / (m + n)."""
    m, n = factor_shape(module, method)
    return m * n / (m + n)


def rank_for_energy(sv: torch.Tensor, energy: float) -> int:
    """The smallest rank r whose first r singular values keep at least ``energy`` of Σσ² (at least 1)."""
    if not 0.0 < energy <= 1.0:
        raise ValueError(f"energy must be in (0, 1]; got {energy!r}")
    power = sv.detach().to(torch.float64) ** 2
    total = float(power.sum())
    if total <= 0:
        return 1
    kept = torch.cumsum(power, 0) / total
    return int(min(int(torch.searchsorted(kept, torch.tensor(energy - 1e-12, dtype=torch.float64))) + 1,
                   len(sv)))


def factorised_params(module: nn.Module, rank: int, method: str = "channel") -> int:
    """The weights of the two factors at ``rank``: rank · (m + n) (the bias is kept as it was)."""
    m, n = factor_shape(module, method)
    if rank < 1:
        raise ValueError(f"rank must be at least 1; got {rank!r}")
    return int(rank) * (m + n)


def low_rank_targets(model: nn.Module) -> list[str]:
    """Qualified names of the layers a low-rank step can factorise: Linear, and Conv2d with groups=1."""
    return [name for name, m in model.named_modules() if isinstance(m, nn.Linear) or _conv_ok(m)]


def separable_targets(model: nn.Module) -> list[str]:
    """Qualified names of the convolutions a separable step can replace: Conv2d, groups=1, kernel > 1×1."""
    return [name for name, m in model.named_modules()
            if _conv_ok(m) and tuple(m.kernel_size) != (1, 1)]


def separable_params(conv: nn.Conv2d) -> tuple[int, int]:
    """(weights before, weights after) for a depthwise kh×kw + pointwise 1×1 replacement of ``conv``:
    before N·C·kh·kw, after C·kh·kw + N·C (MobileNet's ratio 1/N + 1/k²)."""
    if not _conv_ok(conv) or tuple(conv.kernel_size) == (1, 1):
        raise ValueError(f"{type(conv).__name__} is not a k×k convolution with groups=1")
    out, cin, kh, kw = conv.weight.shape
    return out * cin * kh * kw, cin * kh * kw + cin * out


def soft_probabilities(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """softmax(z / T) over the last dimension: the softened class probabilities at temperature ``T``."""
    if not temperature > 0:
        raise ValueError(f"temperature must be positive; got {temperature!r}")
    return torch.softmax(logits.to(torch.float64) / float(temperature), dim=-1)
