"""A log axis of byte counts whose labels never run into each other.

The trade-off plot's x is log10(bytes). pyqtgraph's log axis labels every minor tick it has room for
on average, but log spacing is uneven: "7·10³8·10³9·10³10⁴" ran together (issue 12). This axis labels
1-2-5, 1-3 or 1 per decade, or every other decade, whichever is the densest whose closest two labels
still have room between them, writes them as sizes ("20 KB"), and keeps the other mantissas as
unlabelled minor ticks for the grid. The same axis writes other quantities (parameters, MACs, milliseconds)
with the formatter it is given (:meth:`BytesLogAxis.set_formatter`).
"""

from __future__ import annotations

import math

import pyqtgraph as pg

from core.report.reports import human_bytes

LABEL_SETS = ((1, 2, 5), (1, 3), (1,))
"""Mantissas labelled per decade, densest first."""
GAP_PX = 14
"""Room between two neighbouring labels, in pixels."""


class BytesLogAxis(pg.AxisItem):
    """Tick positions are log10(value); labels are byte sizes (or what :meth:`set_formatter` writes)."""

    formatter = staticmethod(human_bytes)

    def set_formatter(self, formatter) -> None:
        """``formatter(value) -> str`` writes a tick's value (10 ** position)."""
        self.formatter = formatter
        self.picture = None
        self.update()

    def _label_width(self, value: float) -> float:
        from PySide6.QtGui import QFontMetricsF

        return QFontMetricsF(self.style.get("tickFont") or self.font()).horizontalAdvance(self.formatter(10 ** value))

    def labelled_ticks(self, low: float, high: float, size: float) -> list[float]:
        """The labelled positions (log10 bytes) from ``low`` to ``high``, on an axis ``size`` px long."""
        if not (math.isfinite(low) and math.isfinite(high)) or high <= low or size <= 0:
            return []
        px = size / (high - low)
        for step in (1, 2, 3, 5, 10):
            for mantissas in (LABEL_SETS if step == 1 else ((1,),)):
                decades = [d for d in range(math.floor(low) - 1, math.ceil(high) + 1) if d % step == 0]
                values = [d + math.log10(m) for d in decades for m in mantissas]
                values = [v for v in values if low <= v <= high]
                if len(values) < 2 or all(
                        (b - a) * px >= (self._label_width(a) + self._label_width(b)) / 2 + GAP_PX
                        for a, b in zip(values, values[1:])):
                    return values
        return values[:1]

    def tickValues(self, minVal, maxVal, size):
        low, high = min(minVal, maxVal), max(minVal, maxVal)
        labelled = self.labelled_ticks(low, high, size)
        decades = range(math.floor(low), math.ceil(high) + 1)
        minor = [d + math.log10(m) for d in decades for m in range(1, 10)]
        minor = [v for v in minor if low <= v <= high and all(abs(v - t) > 1e-9 for t in labelled)]
        self._labelled = labelled
        return [(1.0, labelled), (0.1, minor)]

    def tickStrings(self, values, scale, spacing):
        if spacing != 1.0:
            return [""] * len(values)  # the minor ticks only draw grid lines
        return [self.formatter(10 ** v) for v in values]
