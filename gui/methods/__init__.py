"""The recipe panel's sections: one per kind of step, chosen by kind from a registry, as napari picks a
layer's controls by its type.

A section module registers its class for the kinds it has controls for (:func:`register_section`); the
panel asks :func:`section_for` about every kind in the engine's step registry, in its order, and shows one
section per class found. Steps of a kind without a section, and steps beyond the one a section edits, are
shown read-only (:class:`gui.methods.readonly.StepCard`) and kept.
"""

from __future__ import annotations

_SECTIONS: dict[str, type] = {}


def register_section(*kinds: str):
    """Class decorator: the section that has controls for steps of these kinds."""
    def register(cls: type) -> type:
        for kind in kinds:
            _SECTIONS[kind] = cls
        return cls
    return register


def section_for(kind: str) -> type | None:
    """The section class for a kind of step, or None when the studio has no controls for it."""
    return _SECTIONS.get(kind)


def sections_for(kinds) -> list[type]:
    """One section class per class found for ``kinds`` (in their order)."""
    found: list[type] = []
    for kind in kinds:
        cls = section_for(kind)
        if cls is not None and cls not in found:
            found.append(cls)
    return found


# isort: off (registration)
from gui.methods import pruning, architecture, distill, finetune, quantize, coding  # noqa: E402,F401
