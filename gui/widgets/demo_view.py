"""Demo mode: the result in large type for the people who decide, the trade-off plot, and an HTML export."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget

from core.report.html_report import summary_line
from core.report.reports import human_bytes
from core.pipeline.variants import Variant, changed_predictions
from gui.widgets.tradeoff_plot import TradeoffPlot


class DemoView(QWidget):
    sig_export = Signal()
    """The user asked for the HTML report."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("demo")
        self.headline = QLabel("Open a model and apply a recipe", objectName="demoHeadline", wordWrap=True)
        self.headline.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.cards = {key: (QLabel("—", objectName="demoValue"), QLabel(caption, objectName="demoCaption"))
                      for key, caption in (("size", "on disk"), ("ratio", "smaller"), ("accuracy", "test accuracy"),
                                           ("changed", "images now wrong"))}
        row = QHBoxLayout()
        for value, caption in self.cards.values():
            card = QWidget(objectName="demoCard")
            card_layout = QVBoxLayout(card)
            value.setAlignment(Qt.AlignmentFlag.AlignCenter)
            caption.setAlignment(Qt.AlignmentFlag.AlignCenter)
            card_layout.addWidget(value)
            card_layout.addWidget(caption)
            row.addWidget(card)
        self.tradeoff = TradeoffPlot(title=False)
        self.export_button = QPushButton("Export HTML report…", objectName="applyButton")
        self.export_button.clicked.connect(self.sig_export)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(30, 20, 30, 20)
        layout.addWidget(self.headline)
        layout.addLayout(row)
        layout.addWidget(self.tradeoff, 1)
        layout.addWidget(self.export_button, 0, Qt.AlignmentFlag.AlignRight)

    def show_result(self, variants: list[Variant], chosen: Variant | None) -> None:
        """Headline the chosen variant against the original (the current one, if it is compressed)."""
        original = variants[0] if variants else None
        self.tradeoff.show_variants(variants, chosen.id if chosen else None)
        self.export_button.setEnabled(bool(original and chosen and not chosen.is_original))
        if original is None or chosen is None or chosen.is_original:
            self.headline.setText("Apply a recipe, then come back here to present it")
            for value, _ in self.cards.values():
                value.setText("—")
            return
        self.headline.setText(summary_line(original, chosen))
        self.cards["size"][0].setText(f"{human_bytes(original.size_bytes)} → {human_bytes(chosen.size_bytes)}")
        self.cards["ratio"][0].setText(f"{original.size_bytes / chosen.size_bytes:.0f}x")
        if original.accuracy is not None and chosen.accuracy is not None:
            self.cards["accuracy"][0].setText(f"{original.accuracy:.2%} → {chosen.accuracy:.2%}")
        self.cards["changed"][0].setText(f"{len(changed_predictions(original, chosen)['now_wrong'])}")
