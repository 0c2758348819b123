"""How often each attention head fires: a transformer's heads counted as units.

A head's output, for one token, is its slice of the attention's context vector: the input of the
attention's output projection (BERT's ``attention.output.dense``, GPT-2's ``c_proj``, LLaMA's ``o_proj``,
``out_proj``), split into ``heads`` slices of ``head_dim``. A head fires on a token when the RMS of its slice
is above ε, :data:`~core.analysis.firing.EPS_FRACTION` of the layer's RMS on the first batch: a head whose
output is near zero everywhere contributes nothing and can go. The number of heads is the attention
module's own (``num_attention_heads``, ``num_heads``, ``n_head``, or its config's).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from core.analysis.activations import ActivationStats, forward_hooks
from core.analysis.firing import EPS_FRACTION
from core.eval.evaluate import call_model, evaluating
from core.progress import Progress, Task

HEAD_COUNTS = ("num_attention_heads", "num_heads", "n_head", "n_heads")
PROJECTIONS = ("o_proj", "out_proj", "c_proj", "output.dense", "o")
RULE = "head output RMS > ε"


def _heads_of(module: nn.Module) -> int | None:
    for owner in (module, getattr(module, "self", None), getattr(module, "config", None)):
        for key in HEAD_COUNTS:
            value = getattr(owner, key, None) if owner is not None else None
            if isinstance(value, int) and value > 0:
                return value
    return None


def attention_heads(model: nn.Module) -> dict[str, tuple[str, nn.Module, int]]:
    """Each attention module whose heads can be told apart: name -> (its output projection's name, the
    projection, the number of heads). An attention module that calls its projection as a function
    (``nn.MultiheadAttention``) is left out: its heads' outputs are not seen."""
    found = {}
    for name, module in model.named_modules():
        if isinstance(module, nn.MultiheadAttention):
            continue
        heads = _heads_of(module)
        if heads is None:
            continue
        for attribute in PROJECTIONS:
            try:
                projection = module.get_submodule(attribute)
            except AttributeError:
                continue
            width = getattr(projection, "in_features", None) or getattr(projection, "nx", None)
            if isinstance(width, int) and width % heads == 0 and heads > 1:
                found[name] = (f"{name}.{attribute}" if name else attribute, projection, heads)
                break
    return found


def head_stats(model: nn.Module, batches: Iterable, total_batches: int | None = None) -> Task[dict[str, ActivationStats]]:
    """Per attention module, how often each of its heads fires over ``batches`` (see the module's docstring)."""
    attentions = attention_heads(model)
    if not attentions:
        return {}
    fired: dict[str, torch.Tensor] = {}
    sums: dict[str, torch.Tensor] = {}
    seen: dict[str, int] = {}
    epsilon: dict[str, float] = {}

    def make_hook(name: str, heads: int):
        def hook(module, inputs, output):
            x = inputs[0].detach().float()
            rms = x.reshape(-1, heads, x.shape[-1] // heads).square().mean(-1).sqrt()  # (tokens, heads)
            if name not in epsilon:
                epsilon[name] = EPS_FRACTION * float(x.square().mean().sqrt())
            fired[name] = fired.get(name, 0) + (rms > epsilon[name]).sum(0, dtype=torch.int64)
            sums[name] = sums.get(name, 0) + rms.sum(0, dtype=torch.float64)
            seen[name] = seen.get(name, 0) + rms.shape[0]
        return hook

    hooks = {projection: make_hook(name, heads) for name, (_, projection, heads) in attentions.items()}
    with evaluating(model), forward_hooks(hooks), torch.inference_mode():
        for i, inputs in enumerate(batches):
            call_model(model, inputs)
            yield Progress("heads", i + 1, total_batches or 0, "counting firing attention heads")
    return {name: ActivationStats(name, int(fired[name].numel()), seen[name], (fired[name].double() / seen[name]).numpy(),
                                  (sums[name] / seen[name]).numpy(), attentions[name][0], RULE, epsilon[name])
            for name in seen}
