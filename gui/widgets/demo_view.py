"""Demo mode: the result in large type for the people who decide, the trade-off plot, and an HTML export."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QHBoxLayout, QLabel, QPushButton, QSizePolicy, QVBoxLayout, QWidget

from core.report.html_report import summary_phrases
from core.report.reports import human_bytes, size_change, times
from core.pipeline.scores import pairs_figure, variant_score
from core.pipeline.variants import Variant, at_chance, chance_level, changed_predictions
from gui.widgets.tradeoff_plot import TradeoffPlot


class DemoView(QWidget):
    sig_export = Signal()
    """The user asked for the HTML report."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("demo")
        # broken into lines between its phrases only, never inside one (see _lay_out_headline)
        self.headline = QLabel("Open a model and apply a recipe", objectName="demoHeadline")
        self.headline.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.headline.setMinimumWidth(1)
        self._phrases: list[str] = []
        self.headline.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.variant_name = QLabel("", objectName="demoVariant", wordWrap=True)  # which variant the numbers are of
        self.variant_name.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.warning = QLabel("", objectName="demoWarning", wordWrap=True)  # accuracy down to guessing
        self.warning.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.warning.hide()
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
        layout.addWidget(self.variant_name)
        layout.addWidget(self.headline)
        layout.addWidget(self.warning)
        layout.addLayout(row)
        layout.addWidget(self.tradeoff, 1)
        layout.addWidget(self.export_button, 0, Qt.AlignmentFlag.AlignRight)

    def show_result(self, variants: list[Variant], chosen: Variant | None) -> None:
        """Headline the chosen variant against the original (the current one, if it is compressed)."""
        original = variants[0] if variants else None
        self.tradeoff.show_variants(variants, chosen.id if chosen else None)
        self.export_button.setEnabled(bool(original and chosen and not chosen.is_original))
        if original is None or chosen is None or chosen.is_original:
            self._phrases = []
            self.headline.setText("Apply a recipe, then come back here to present it")
            self.variant_name.setText("")
            self.warning.hide()
            for value, _ in self.cards.values():
                value.setText("—")
            return
        self._phrases = summary_phrases(original, chosen)
        self._lay_out_headline()
        self.variant_name.setText(f"{chosen.name}, against the original")
        self.cards["size"][0].setText(f"{human_bytes(original.size_bytes)} → {human_bytes(chosen.size_bytes)}")
        smaller = chosen.size_bytes <= original.size_bytes
        ratio = original.size_bytes / chosen.size_bytes if smaller else chosen.size_bytes / original.size_bytes
        self.cards["ratio"][0].setText(times(ratio))
        self.cards["ratio"][1].setText("smaller" if smaller else "larger")
        self._show_score(original, chosen)
        chance = chance_level(chosen)
        self.warning.setVisible(at_chance(chosen))
        if at_chance(chosen):
            change = size_change(original.size_bytes, chosen.size_bytes)
            self.warning.setText(f"⚠ Accuracy {chosen.accuracy:.1%} is no better than guessing ({chance:.0%} for "
                                 f"{round(1 / chance)} classes): {change}, but this variant no longer does the task.")

    def _show_score(self, original: Variant, chosen: Variant) -> None:
        """The score card by its metric's name ("cosine to the original"), and the images now wrong, or
        without labels the STS Spearman of sentence pairs."""
        before, after = variant_score(original), variant_score(chosen)
        same = before is not None and after is not None and before.name == after.name
        self.cards["accuracy"][0].setText(f"{before.figure()} → {after.figure()}" if same else "—")
        self.cards["accuracy"][1].setText(after.axis_title.replace(" (%)", "") if same else "not measured alike")
        if chosen.predictions is not None:
            self.cards["changed"][0].setText(f"{len(changed_predictions(original, chosen)['now_wrong'])}")
            self.cards["changed"][1].setText("images now wrong")
        elif original.pairs is not None and chosen.pairs is not None:
            figure = pairs_figure(chosen).removeprefix("STS Spearman ")
            self.cards["changed"][0].setText(f"{pairs_figure(original).removeprefix('STS Spearman ')} → {figure}")
            self.cards["changed"][1].setText("STS Spearman (sentence pairs)")
        else:
            self.cards["changed"][0].setText("—")
            self.cards["changed"][1].setText("no labelled test set")

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        self._lay_out_headline()

    def _lay_out_headline(self) -> None:
        """The headline's phrases, as many to a line as fit: it wrapped mid-phrase ("accuracy 98.94% →" on
        one line, "97.53%" on the next)."""
        if not self._phrases:
            return
        self.headline.ensurePolished()  # the stylesheet's 26pt, not the default font
        width = self.headline.contentsRect().width() - 2 * self.headline.margin() - 36  # its padding
        metrics = self.headline.fontMetrics()
        lines = [self._phrases[0]]
        for phrase in self._phrases[1:]:
            joined = f"{lines[-1]}, {phrase}"
            if metrics.horizontalAdvance(joined) <= width:
                lines[-1] = joined
            else:
                lines[-1] += ","
                lines.append(phrase)
        self.headline.setText("\n".join(lines))
