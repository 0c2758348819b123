"""The one figure a variant is judged by, named: its test accuracy on a labelled data set, or else its
fidelity to the original in the metric its output kind calls for (:attr:`core.eval.fidelity.Fidelity.metric`:
top-1 agreement, cosine, perplexity, relative error). The studio's plot, cards and compare view all say it
by this name, so that a cosine is never read as an accuracy.
"""

from __future__ import annotations

from dataclasses import dataclass

from core.eval.fidelity import Fidelity
from core.pipeline.variants import Variant

ACCURACY = "test accuracy"
LOWER_IS_BETTER = ("perplexity", "relative error")
PERCENT = (ACCURACY, "top-1 agreement")
AXIS_TITLES = {
    ACCURACY: "test accuracy (%)",
    "top-1 agreement": "top-1 agreement with the original (%)",
    "cosine": "cosine to the original",
    "perplexity": "perplexity on your inputs (lower is better: axis flipped)",
    "relative error": "relative error to the original (lower is better: axis flipped)",
}
KIND_WORDS = {"embed": "embeddings", "lm": "language model", "classify": "class scores", "regress": "one number"}


@dataclass(frozen=True)
class Score:
    """``name`` (``test accuracy`` or a fidelity metric) and ``value`` (a fraction for the percentages);
    ``kind`` the output kind fidelity was measured for (None for accuracy)."""

    name: str
    value: float
    kind: str | None = None

    @property
    def lower_is_better(self) -> bool:
        return self.name in LOWER_IS_BETTER

    @property
    def percent(self) -> bool:
        return self.name in PERCENT

    @property
    def plotted(self) -> float:
        """The value as the plot's y axis holds it (percentages in %)."""
        return 100 * self.value if self.percent else self.value

    @property
    def better(self) -> float:
        """A number that is larger the better the score is (for the Pareto front)."""
        return -self.value if self.lower_is_better else self.value

    @property
    def axis_title(self) -> str:
        """"cosine to the original (embeddings)", "test accuracy (%)", ..."""
        title = AXIS_TITLES.get(self.name, self.name)
        if self.name == "cosine" and self.kind in KIND_WORDS:
            title += f" ({KIND_WORDS[self.kind]})"
        return title

    def figure(self) -> str:
        """The value alone: "98.12%", "0.9987", "12.3"."""
        if self.percent:
            return f"{self.value:.2%}"
        return f"{self.value:.4f}" if self.name == "cosine" else f"{self.value:.4g}"

    def text(self) -> str:
        """Name and value: "cosine 0.9987", "test accuracy 98.12%"."""
        return f"{self.name} {self.figure()}"

    def change(self, other: Score) -> str:
        """From this score to ``other`` (the same metric): "0.9999 → 0.9987 (-0.0012)"."""
        delta = (other.value - self.value) * (100 if self.percent else 1)
        unit = " points" if self.percent else ""
        digits = ".2f" if self.percent else ".4f" if self.name == "cosine" else ".3g"
        return f"{self.figure()} → {other.figure()} ({delta:+{digits}}{unit})"


def variant_score(variant: Variant) -> Score | None:
    """The variant's figure: test accuracy when it was measured on a labelled set, else its fidelity's
    metric; None when neither was measured."""
    return score_of(variant.accuracy, variant.fidelity)


def score_of(accuracy: float | None, fidelity: Fidelity | None) -> Score | None:
    """The one figure of a measurement: test ``accuracy`` (0-1) when there is one, else ``fidelity``'s
    metric; None when neither was measured."""
    if accuracy is not None:
        return Score(ACCURACY, accuracy)
    if fidelity is not None:
        name, value = fidelity.metric
        return Score(name, float(value), fidelity.kind)
    return None


def pairs_figure(variant: Variant) -> str | None:
    """"STS Spearman 0.8123" when the variant was scored on sentence pairs (None otherwise)."""
    p = variant.pairs
    if p is None:
        return None
    return f"STS Spearman {p.spearman:.4f}" if p.spearman is not None else "STS Spearman: no ranking"


def shared_metric(variants: list[Variant]) -> str | None:
    """The metric one axis shows for these variants: the original's (the first's), else the first measured
    one's; None when none was measured."""
    for v in variants:
        score = variant_score(v)
        if score is not None:
            return score.name
    return None
