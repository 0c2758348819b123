"""Colours and fonts shared by the studio's widgets (the stylesheet is resources/styles/studio.qss)."""

from __future__ import annotations

BACKGROUND = "#16191f"
PANEL = "#1f232b"
GRID = "#2c313a"
TEXT = "#e8eaed"
MUTED = "#9aa0a6"
ACCENT = "#4fc3f7"      # weights, neurons that fire
ACCENT_FILL = (79, 195, 247, 90)
WARM = "#ffb74d"        # rarely firing units
DANGER = "#ef5350"      # dead units, errors
GOOD = "#81c784"


def plot_defaults() -> None:
    """pyqtgraph settings for every plot: dark background, antialiasing."""
    import pyqtgraph as pg

    pg.setConfigOptions(antialias=True, background=PANEL, foreground=MUTED)
