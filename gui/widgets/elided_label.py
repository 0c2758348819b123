"""A one-line label that shows what fits of its text, ending in "…" when cut, with the whole text as its
tooltip (a plain QLabel clipped titles mid-letter: "Linear 295×7", "How often conv2's cl")."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QPainter
from PySide6.QtWidgets import QLabel, QSizePolicy


class ElidedLabel(QLabel):
    """Never widens its layout for a long text (like :func:`gui.theme.steady`) and never cuts a letter."""

    def __init__(self, text: str = "", parent=None, **kwargs) -> None:
        super().__init__(text, parent, **kwargs)
        policy = QSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        policy.setHorizontalStretch(10)
        self.setSizePolicy(policy)
        self.setMinimumWidth(1)
        self._detail = ""
        self._update_tip()

    def displayed_text(self) -> str:
        """The text as drawn now: the whole text, or its start and "…"."""
        return self.fontMetrics().elidedText(self.text(), Qt.TextElideMode.ElideRight, self.contentsRect().width())

    def is_elided(self) -> bool:
        return self.displayed_text() != self.text()

    def setText(self, text: str) -> None:
        super().setText(text)
        self._update_tip()

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        self._update_tip()

    def set_detail(self, text: str) -> None:
        """A tooltip for when the whole text shows (when it is cut, the tooltip is the whole text, then this)."""
        self._detail = text
        self._update_tip()

    def _update_tip(self) -> None:
        whole = self.text() if self.is_elided() else ""
        self.setToolTip("\n".join(t for t in (whole, getattr(self, "_detail", "")) if t))

    def paintEvent(self, _event) -> None:
        painter = QPainter(self)
        self.style().drawItemText(painter, self.contentsRect(), int(self.alignment() | Qt.AlignmentFlag.AlignVCenter),
                                  self.palette(), self.isEnabled(), self.displayed_text(), self.foregroundRole())
        painter.end()
