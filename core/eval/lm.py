"""A causal language model's perplexity on a text, by the usual sliding-window evaluation.

The text (the ``--inputs`` file, read as one stream of tokens) is cut into windows of ``window`` tokens
that start ``stride`` tokens apart. Each window's first tokens are context already scored by the window
before; only its last ``stride`` tokens (all of the first window's, after its first) are scored, each given
every token before it in the window (so with ``stride == window`` each window's first token goes unscored). Perplexity is ``exp`` of the mean negative log-likelihood of every
scored token: with ``stride == window`` that is the plain chunked evaluation, and a smaller stride gives each
token more context, at more cost (Hugging Face's "Perplexity of fixed-length models" describes the method).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from core.eval.evaluate import logits_of
from core.progress import Progress, Task

MAX_WINDOW = 1024


@dataclass(frozen=True)
class StridePerplexity:
    """Perplexity over ``tokens`` scored tokens of a text, windows of ``window`` tokens ``stride`` apart."""

    perplexity: float
    tokens: int
    window: int
    stride: int


def windows(count: int, window: int, stride: int) -> list[tuple[int, int, int]]:
    """(start, end, first scored position within the window) of each window over ``count`` tokens."""
    if window < 2 or not 1 <= stride <= window:
        raise ValueError(f"a window of {window} tokens with stride {stride}: the window needs 2 or more tokens "
                         "and the stride 1 to the window's length")
    out, scored_to = [], 1  # token 0 has no context: it is never scored
    for start in range(0, max(count - 1, 1), stride):
        end = min(start + window, count)
        if end <= scored_to:
            break
        out.append((start, end, max(scored_to - start, 1)))  # a window's first token has no context in it
        scored_to = end
        if end == count:
            break
    return out


def stride_perplexity(model: nn.Module, ids: torch.Tensor, window: int, stride: int) -> Task[StridePerplexity]:
    """The model's perplexity on the token stream ``ids`` (1-D), by :func:`windows`."""
    spans = windows(len(ids), window, stride)
    nll, scored = 0.0, 0
    with torch.inference_mode():
        for i, (start, end, first) in enumerate(spans):
            chunk = ids[start:end].unsqueeze(0)
            logits = logits_of(model(input_ids=chunk, attention_mask=torch.ones_like(chunk))).float()
            targets = chunk[0, first:]
            predicted = logits[0, first - 1:end - start - 1]
            nll += float(nn.functional.cross_entropy(predicted, targets, reduction="sum"))
            scored += len(targets)
            yield Progress("perplexity", i + 1, len(spans), "sliding-window perplexity")
    return StridePerplexity(math.exp(min(nll / max(scored, 1), 700.0)), scored, window, stride)
