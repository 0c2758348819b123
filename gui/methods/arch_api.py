"""The one place the studio imports the architecture and distillation helpers of issue 13 from.

The spectrum view, the separable toggle and the softened-outputs view compute through these names only.
They come from :mod:`core.methods._interim_arch` until the real modules are on this branch; at integration
the import below switches to them (and ``_interim_arch`` is deleted):

    from core.methods.low_rank import (break_even, factorised_params, low_rank_targets, rank_for_energy,
                                       singular_values)
    from core.methods.separable import separable_params, separable_targets
    from core.methods.distill import soft_probabilities

``kind_registered`` says whether a step kind (``low_rank``, ``separable``, ``distill``) is in the engine's
registry: the views write the draft's steps only when it is.
"""

from __future__ import annotations

# INTERIM (switch at integration, see above)
from core.methods._interim_arch import (break_even, factorised_params, low_rank_targets,  # noqa: F401
                                        rank_for_energy, separable_params, separable_targets,
                                        singular_values, soft_probabilities)

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
