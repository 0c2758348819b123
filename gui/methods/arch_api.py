"""The one place the studio imports the architecture and distillation helpers from: the low-rank spectrum,
the separable toggle and the softened-outputs view compute through these names only.

``kind_registered`` says whether a step kind (``low_rank``, ``separable``, ``distill``) is in the engine's
registry: the views write the draft's steps only when it is (a plugin-free install always has them).
"""

from __future__ import annotations

from core.methods.distill import soft_probabilities  # noqa: F401
from core.methods.low_rank import (break_even, factorised_params, low_rank_targets, rank_for_energy,  # noqa: F401
                                   singular_values)
from core.methods.separable import separable_macs, separable_params, separable_targets  # noqa: F401

LOW_RANK, SEPARABLE, DISTILL = "low_rank", "separable", "distill"
LOW_RANK_METHODS = ("channel", "spatial")


def kind_registered(kind: str) -> bool:
    """Whether the engine has a step of this kind (its module is installed and registered)."""
    from core.recipe.registry import step_kind

    try:
        step_kind(kind)
    except KeyError:
        return False
    return True
