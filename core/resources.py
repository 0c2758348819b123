"""Where the shipped resources (data, checkpoints, styles, recipes) live.

``resources/`` sits beside ``core/`` both in a source checkout and in an installed wheel (it is packaged as
the top-level ``resources`` package), so one path rule serves both.
"""

from __future__ import annotations

from pathlib import Path

RESOURCES = Path(__file__).resolve().parent.parent / "resources"


def resource_path(*parts: str) -> Path:
    """Path of a shipped resource, e.g. ``resource_path("checkpoints", "lenet300.pt")``."""
    return RESOURCES.joinpath(*parts)
