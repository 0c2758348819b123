"""What the studio knows about the current model: the inspection's measurements as they arrive, and a layer's
singular-value spectrum (plain data, made in the background)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from core.analysis.activations import ActivationStats
from core.analysis.cost import Cost
from core.analysis.inventory import Inventory
from core.analysis.stats import WeightStats
from core.eval.evaluate import Accuracy, Latency
from core.eval.fidelity import Fidelity


@dataclass(frozen=True)
class Spectrum:
    """One layer's singular values as the low-rank step would factorise it (plain numpy, made in the background).

    ``energy[r - 1]`` and ``factorised[r - 1]`` are the fraction of Σσ² kept and the factors' weights at rank r;
    ``weights`` is the layer's weight count now; a rank at or above ``break_even`` (m n / (m + n)) saves nothing."""

    layer: str
    method: str
    values: np.ndarray
    energy: np.ndarray
    factorised: np.ndarray
    weights: int
    break_even: float


@dataclass
class Measurements:
    """What is known so far about the current model; filled in as the inspection task reports."""

    inventory: Inventory | None = None
    weights: dict[str, WeightStats] = field(default_factory=dict)
    activations: dict[str, ActivationStats] = field(default_factory=dict)
    test: Accuracy | None = None
    fidelity: Fidelity | None = None
    latency: Latency | None = None
    saved_bytes: int | None = None
    notes: list[str] = field(default_factory=list)
    cost: Cost | None = None  # multiply-accumulates per sample, measured by the inspection (off the UI thread)
