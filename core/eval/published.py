"""The task metrics users publish, measured on what the person gave: the STS correlation of an embedding
model on sentence pairs (``--pairs``, :mod:`core.eval.pairs`) and a language model's sliding-window
perplexity on the ``--inputs`` text (:mod:`core.eval.lm`). Each is measured for every model compared (the
original and each compressed variant), so the report can set them side by side."""

from __future__ import annotations

from dataclasses import dataclass

from core.eval.lm import MAX_WINDOW, StridePerplexity, stride_perplexity
from core.eval.pairs import PairsScore, Pooling, pairs_score
from core.io.base import LoadedModel
from core.progress import Task


@dataclass
class Published:
    pairs: PairsScore | None = None
    perplexity: StridePerplexity | None = None


def lm_window(loaded: LoadedModel) -> tuple[int, int]:
    """(window, stride) of the sliding-window perplexity: the model's positions (at most
    :data:`~core.eval.lm.MAX_WINDOW`), and ``--stride`` (half the window by default)."""
    window = min(getattr(loaded.tokenize, "positions", None) or MAX_WINDOW, MAX_WINDOW)
    stride = loaded.meta.get("lm_stride") or max(window // 2, 1)
    return window, min(stride, window)


def published(model, loaded: LoadedModel) -> Task[Published]:
    """The metrics ``loaded``'s meta asks for (pairs, a token stream), measured on ``model``."""
    out = Published()
    if loaded.meta.get("pairs"):
        out.pairs = yield from pairs_score(model, loaded.tokenize, loaded.meta["pairs"],
                                           loaded.meta.get("pooling") or Pooling())
    stream = loaded.meta.get("lm_stream")
    if stream is not None and len(stream) >= 2:
        out.perplexity = yield from stride_perplexity(model, stream, *lm_window(loaded))
    return out
