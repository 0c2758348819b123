"""The STS metric of an embedding model: how well the cosine similarity of its sentence embeddings ranks
sentence pairs as people scored them (``--pairs FILE.tsv``).

The file has one pair per line: ``sentence1<TAB>sentence2<TAB>gold score``; a first line whose third field
is not a number is a header. The result is the Spearman and Pearson correlation (``scipy.stats``) of the
cosines with the gold scores, the STS benchmark's convention, for the model before and after compression.

Token states become one embedding per sentence as the model folder says: sentence-transformers'
``modules.json`` names a Pooling module whose ``config.json`` says the mode (mean, CLS token, max, mean
divided by the square root of the length, last token), and a Normalize module; without them, mean pooling
over the attention mask. The same pooled embedding is what cosine fidelity compares
(:func:`core.eval.fidelity.pooled`).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from core.errors import PrunescopeError, one_line
from core.eval.evaluate import call_model, logits_of
from core.progress import Progress, Task

POOLING_MODES = {"pooling_mode_mean_tokens": "mean", "pooling_mode_cls_token": "cls",
                 "pooling_mode_max_tokens": "max", "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len",
                 "pooling_mode_lasttoken": "lasttoken"}
MAX_PAIRS_BYTES = 64 << 20
BATCH = 64


class PairsError(PrunescopeError):
    """The pairs file cannot be used; the message says why, in one line."""


@dataclass(frozen=True)
class Pooling:
    """How token states become a sentence embedding: ``mode`` (mean, cls, max, mean_sqrt_len, lasttoken),
    whether it is L2-normalised, and where that was read (``said``)."""

    mode: str = "mean"
    normalize: bool = False
    said: str = "mean pooling over the attention mask (the folder names no pooling)"


@dataclass(frozen=True)
class PairsScore:
    """Spearman and Pearson correlation of the cosines of ``count`` pairs with their gold scores (None when
    every cosine is the same, as for a model pruned to nothing: no ranking to correlate)."""

    spearman: float | None
    pearson: float | None
    count: int


def read_pooling(folder: Path) -> Pooling:
    """The pooling a sentence-transformers folder names (``modules.json``, ``1_Pooling/config.json``)."""
    modules_file = folder / "modules.json"
    if not modules_file.is_file():
        return Pooling()
    try:
        modules = json.loads(modules_file.read_text(encoding="utf-8"))
        types = {m["type"].rsplit(".", 1)[-1]: m.get("path", "") for m in modules}
        config = json.loads((folder / types["Pooling"] / "config.json").read_text(encoding="utf-8")) \
            if "Pooling" in types else {}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise PairsError(one_line(f"{folder.name}: unreadable sentence-transformers modules.json or pooling "
                                  f"config ({exc})")) from None
    modes = [mode for key, mode in POOLING_MODES.items() if config.get(key)]
    if len(modes) > 1:
        raise PairsError(f"{folder.name}: the pooling config names several modes ({', '.join(modes)}); "
                         "Prunescope pools one way")
    mode = modes[0] if modes else "mean"
    normalize = "Normalize" in types
    return Pooling(mode, normalize, f"{mode} pooling{' then L2-normalised' if normalize else ''}, as "
                                    f"{folder.name}'s modules.json says")


def pool(states: torch.Tensor, mask: torch.Tensor | None, pooling: Pooling) -> torch.Tensor:
    """Token states (N, T, H) as one embedding per row (N, H); other outputs are flattened."""
    n = states.shape[0]
    if states.ndim != 3:
        out = states.reshape(n, -1).float()
    else:
        m = (mask if mask is not None and mask.shape == states.shape[:2]
             else torch.ones(states.shape[:2], dtype=torch.long)).to(states.dtype).unsqueeze(-1)
        if pooling.mode == "cls":
            out = states[:, 0]
        elif pooling.mode == "max":
            out = states.masked_fill(m == 0, float("-inf")).amax(1)
        elif pooling.mode == "lasttoken":
            last = m.squeeze(-1).sum(1).long().clamp_min(1) - 1
            out = states[torch.arange(n), last]
        else:
            total = (states * m).sum(1)
            length = m.sum(1).clamp_min(1e-9)
            out = total / (length.sqrt() if pooling.mode == "mean_sqrt_len" else length)
        out = out.float()
    return torch.nn.functional.normalize(out, dim=1) if pooling.normalize else out


def read_pairs(path: str | Path) -> list[tuple[str, str, float]]:
    """The file's (sentence1, sentence2, gold score) pairs; :class:`PairsError` naming the line otherwise."""
    from core.fileio import read_input_text

    path = Path(path).expanduser()
    if not path.is_file():
        raise PairsError(f"{path}: no such file")
    text = read_input_text(path, MAX_PAIRS_BYTES, "pairs file", PairsError)
    pairs, first = [], True
    for number, line in enumerate(text.split("\n"), 1):
        line = line.rstrip("\r")
        if not line.strip():
            continue
        header_allowed, first = first, False
        fields = line.split("\t")
        if len(fields) != 3:
            raise PairsError(f"{path.name}, line {number}: {len(fields)} tab-separated fields; each line is "
                             "sentence1<TAB>sentence2<TAB>gold score")
        try:
            score = float(fields[2])
        except ValueError:
            if header_allowed:  # a header line
                continue
            raise PairsError(f"{path.name}, line {number}: the gold score {fields[2][:40]!r} is not a number") from None
        if not math.isfinite(score):
            raise PairsError(f"{path.name}, line {number}: the gold score is not a finite number")
        pairs.append((fields[0], fields[1], score))
    if len(pairs) < 3:
        raise PairsError(f"{path.name}: {len(pairs)} pairs; a correlation needs at least 3")
    if len({p[2] for p in pairs}) < 2:
        raise PairsError(f"{path.name}: every gold score is the same, so nothing correlates with them")
    return pairs


def embed(model, tokenize, sentences: list[str], pooling: Pooling) -> torch.Tensor:
    """Each sentence's pooled embedding, through the model's own tokenizer, in batches of :data:`BATCH`."""
    out = []
    with torch.inference_mode():
        for start in range(0, len(sentences), BATCH):
            batch = tokenize(sentences[start:start + BATCH])
            states = logits_of(call_model(model, batch)).float()
            out.append(pool(states, batch.get("attention_mask") if isinstance(batch, dict) else None, pooling))
    return torch.cat(out)


def pairs_score(model, tokenize, pairs: list[tuple[str, str, float]], pooling: Pooling) -> Task[PairsScore]:
    """The correlation of the model's cosine similarities with the gold scores."""
    from scipy import stats

    yield Progress("pairs", 0, 2, f"embedding {len(pairs):,} sentence pairs")
    first = embed(model, tokenize, [p[0] for p in pairs], pooling)
    yield Progress("pairs", 1, 2, f"embedding {len(pairs):,} sentence pairs")
    second = embed(model, tokenize, [p[1] for p in pairs], pooling)
    cosines = torch.nn.functional.cosine_similarity(first, second, dim=1).double().cpu().numpy()
    gold = np.array([p[2] for p in pairs], dtype=np.float64)
    yield Progress("pairs", 2, 2, "correlating")
    if np.ptp(cosines) == 0:
        return PairsScore(None, None, len(pairs))
    return PairsScore(float(stats.spearmanr(cosines, gold).statistic), float(stats.pearsonr(cosines, gold).statistic),
                      len(pairs))
