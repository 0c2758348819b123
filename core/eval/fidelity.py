"""Fidelity: how closely a model's outputs follow a reference model's on the same inputs, in the metric its
kind of output calls for.

The kind (:data:`TASKS`) is detected from the output (:func:`output_kind`) or given (``--task``):

- ``classify`` (scores over classes, per example or per token): top-1 agreement and the KL divergence of the
  model's softmax from the reference's;
- ``embed`` (hidden states or an embedding): cosine similarity, its mean and 5th percentile, of the embedding
  (token states mean-pooled over the attention mask) and the relative error; no top-1 agreement, since an
  arg-max over hidden dimensions means nothing;
- ``lm`` (a causal language model's logits): the perplexity of each model on the inputs' own next tokens
  (masked by the attention mask) and the KL divergence per token;
- ``regress`` (one number per example): the relative error.

When the output has several tensors (a tuple, a dict, a Hugging Face output), each one is compared too,
by name (``elements``: ``logits``, ``hidden_states``..., or ``output[1]`` for a tuple).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field

import torch
from torch import nn

from core.eval.evaluate import call_model, logits_of
from core.eval.pairs import Pooling, pool
from core.progress import Progress, Task

TASKS = ("classify", "embed", "lm", "regress")


@dataclass(frozen=True)
class Fidelity:
    """How closely a model follows its reference (see the module's docstring for each ``kind``).

    ``top1_agreement``: fraction of inputs (or tokens) where both pick the same arg-max, for ``classify``
    only; ``cosine``: mean cosine similarity per input of the flattened (or pooled) outputs, ``cosine_p5``
    its 5th percentile; ``relative_error``: ||a - b|| / ||b|| over all outputs; ``kl``: mean KL(reference ||
    model) per example (per token for ``lm``) in nats; ``perplexity`` / ``reference_perplexity``: each
    model's perplexity on the inputs' next tokens (``lm``); ``elements``: (cosine, relative error) of each
    named output tensor, when the output has more than one (cosine None for one number per example).
    """

    top1_agreement: float | None
    cosine: float
    relative_error: float
    count: int
    kind: str = "classify"
    cosine_p5: float | None = None
    kl: float | None = None
    perplexity: float | None = None
    reference_perplexity: float | None = None
    elements: dict[str, tuple[float | None, float]] = field(default_factory=dict)

    @property
    def metric(self) -> tuple[str, float]:
        """The one figure to plot for this kind, and its name: higher or lower is better as the name says."""
        if self.kind == "classify" and self.top1_agreement is not None:
            return "top-1 agreement", self.top1_agreement
        if self.kind == "lm" and self.perplexity is not None:
            return "perplexity", self.perplexity
        if self.kind == "regress":
            return "relative error", self.relative_error
        return "cosine", self.cosine


def output_kind(output, main: torch.Tensor) -> str:
    """What a model's output is, from the output itself: ``embed`` for hidden states (a ``last_hidden_state``
    with no ``logits``, or any 3-D tensor that is not called logits), ``regress`` for one number per example,
    else ``classify``. A causal language model's logits look like per-token classes: ``lm`` is given
    (``--task lm``, or a Hugging Face model that says it is causal)."""
    has_logits = getattr(output, "logits", None) is not None or (isinstance(output, dict) and "logits" in output)
    if not has_logits and (getattr(output, "last_hidden_state", None) is not None
                           or (isinstance(output, dict) and "last_hidden_state" in output)):
        return "embed"
    if main.ndim >= 3 and not has_logits:
        return "embed"
    if main.ndim == 1 or (main.ndim == 2 and main.shape[1] == 1):
        return "regress"
    return "classify"


def pooled(states: torch.Tensor, batch, pooling: Pooling | None = None) -> torch.Tensor:
    """Token states (N, T, H) pooled as the model folder says (:mod:`core.eval.pairs`; by default mean
    pooling over the batch's attention mask); other outputs flattened."""
    mask = batch.get("attention_mask") if isinstance(batch, dict) else None
    return pool(states, mask if isinstance(mask, torch.Tensor) else None, pooling or Pooling())


def named_tensors(output) -> dict[str, torch.Tensor]:
    """The output's tensors by name: a dict's (or a Hugging Face output's) keys, ``output[i]`` for a tuple;
    nested tuples (a cache) and non-tensors are left out."""
    if isinstance(output, torch.Tensor):
        return {"output": output}
    if isinstance(output, dict):  # Hugging Face's ModelOutput is a dict too
        return {str(k): v for k, v in output.items() if isinstance(v, torch.Tensor)}
    if isinstance(output, (tuple, list)):
        return {f"output[{i}]": v for i, v in enumerate(output) if isinstance(v, torch.Tensor)}
    return {}


def _kl(model_logits: torch.Tensor, reference_logits: torch.Tensor) -> torch.Tensor:
    """KL(reference || model) over the last dimension, one value per row, in nats."""
    ref = reference_logits.log_softmax(-1)
    return (ref.exp() * (ref - model_logits.log_softmax(-1))).sum(-1)


def _next_token_nll(logits: torch.Tensor, batch) -> tuple[float, int]:
    """Summed negative log-likelihood of each next token of the batch's ``input_ids``, and the count."""
    ids = batch.get("input_ids") if isinstance(batch, dict) else None
    if not isinstance(ids, torch.Tensor) or ids.ndim != 2 or logits.ndim != 3 or ids.shape[1] < 2:
        return 0.0, 0
    mask = batch.get("attention_mask")
    keep = (mask[:, 1:] > 0) if isinstance(mask, torch.Tensor) else torch.ones_like(ids[:, 1:], dtype=torch.bool)
    nll = nn.functional.cross_entropy(logits[:, :-1].transpose(1, 2), ids[:, 1:], reduction="none")
    return float(nll[keep].sum()), int(keep.sum())


class _Sums:
    """What :func:`fidelity` adds up over the batches."""

    def __init__(self) -> None:
        self.agree = self.diff_sq = self.ref_sq = self.kl = 0.0
        self.count = self.kl_rows = self.tokens = 0
        self.nll = self.ref_nll = 0.0
        self.cosines: list[torch.Tensor] = []
        self.elements: dict[str, list[float]] = {}

    def add_elements(self, raw_a, raw_b) -> None:
        a_all, b_all = named_tensors(raw_a), named_tensors(raw_b)
        if len(b_all) < 2:
            return
        for name, b in b_all.items():
            a = a_all.get(name)
            if a is None or a.shape != b.shape or not b.is_floating_point():
                continue
            a, b = a.float(), b.float()
            sums = self.elements.setdefault(name, [0.0, 0.0, 0.0, 0])
            if a.ndim >= 2:
                a, b = a.reshape(len(a), -1), b.reshape(len(b), -1)
                sums[0] += float(nn.functional.cosine_similarity(a, b, dim=1, eps=1e-12).sum())
                sums[3] += a.shape[0]
            sums[1] += float(((a - b) ** 2).sum())
            sums[2] += float((b ** 2).sum())


def fidelity(model: nn.Module, reference: nn.Module, inputs: Iterable, task: str | None = None,
             pooling: Pooling | None = None) -> Task[Fidelity]:
    """Compare ``model`` to ``reference`` on the same inputs (tensors, tuples, or keyword dicts); ``task``
    (one of :data:`TASKS`) overrides the kind detected from the reference's output; ``pooling`` is how an
    embedding model's token states become one embedding (by default, mean pooling)."""
    if task is not None and task not in TASKS:
        raise ValueError(f"unknown task {task!r}; one of {', '.join(TASKS)}")
    inputs = list(inputs)
    s = _Sums()
    kind = task
    with torch.inference_mode():
        for i, batch in enumerate(inputs):
            raw_b, raw_a = call_model(reference, batch), call_model(model, batch)
            b, a = logits_of(raw_b).float(), logits_of(raw_a).float()
            kind = kind or output_kind(raw_b, b)
            n = a.shape[0]
            if kind in ("classify", "lm") and a.ndim >= 2:
                if kind == "classify":
                    s.agree += float((a.argmax(-1) == b.argmax(-1)).float().reshape(n, -1).mean(1).sum())
                kl = _kl(a, b)
                if kind == "lm":
                    nll, tokens = _next_token_nll(a, batch)
                    ref_nll, _ = _next_token_nll(b, batch)
                    s.nll, s.ref_nll, s.tokens = s.nll + nll, s.ref_nll + ref_nll, s.tokens + tokens
                    mask = batch.get("attention_mask") if isinstance(batch, dict) else None
                    kl = kl[mask > 0] if isinstance(mask, torch.Tensor) and mask.shape == kl.shape else kl
                s.kl += float(kl.sum())
                s.kl_rows += kl.numel()
            if kind == "embed":
                a2, b2 = pooled(a, batch, pooling), pooled(b, batch, pooling)
            else:
                a2, b2 = a.reshape(n, -1), b.reshape(n, -1)
            s.cosines.append(nn.functional.cosine_similarity(a2, b2, dim=1, eps=1e-12))
            s.diff_sq += float(((a - b) ** 2).sum())
            s.ref_sq += float((b ** 2).sum())
            s.count += n
            s.add_elements(raw_a, raw_b)
            yield Progress("evaluate", i + 1, len(inputs), "fidelity")
    return _result(s, kind or "classify")


def _relative(diff_sq: float, ref_sq: float) -> float:
    return (diff_sq ** 0.5) / (ref_sq ** 0.5) if ref_sq > 0 else float(diff_sq > 0)


def _result(s: _Sums, kind: str) -> Fidelity:
    every = torch.cat(s.cosines) if s.cosines else torch.zeros(0)
    elements = {name: (cos / rows if rows else None, _relative(d, r))
                for name, (cos, d, r, rows) in s.elements.items()}
    ppl = (lambda nll: math.exp(min(nll / s.tokens, 700.0))) if s.tokens else None
    return Fidelity(s.agree / max(s.count, 1) if kind == "classify" else None,
                    float(every.mean()) if s.count else 0.0, _relative(s.diff_sq, s.ref_sq), s.count, kind,
                    float(torch.quantile(every.double(), 0.05)) if s.count else None,
                    max(s.kl / s.kl_rows, 0.0) if s.kl_rows else None,  # >= 0 but for rounding
                    ppl(s.nll) if ppl else None, ppl(s.ref_nll) if ppl else None, elements)
