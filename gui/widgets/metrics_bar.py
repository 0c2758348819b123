"""The model's headline numbers as a row of cards: parameters, bytes on disk, MACs, accuracy, latency."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QVBoxLayout, QWidget

from core.analysis.cost import human_macs
from core.pipeline.scores import KIND_WORDS, pairs_figure, variant_score
from core.report.reports import (human_bytes, latency_basis, latency_figure, latency_median, latency_plus_minus,
                                 latency_spread)
from gui import theme
from gui.session import Session
from gui.widgets.elided_label import ElidedLabel

NOT_RUN = "not run: weights only, no architecture"


class Card(QFrame):
    def __init__(self, caption: str, tooltip: str = "", parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("card")
        self.setToolTip(tooltip)
        self.caption = QLabel(caption.upper(), objectName="cardCaption")
        self.value = ElidedLabel("—", objectName="cardValue")  # a long value ends in "…", whole in its tooltip
        self.detail = QLabel("", objectName="cardDetail")
        self.detail.setWordWrap(True)
        theme.steady(self.detail, 2)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(14, 8, 14, 8)
        layout.setSpacing(1)
        for w in (self.caption, self.value, self.detail):
            layout.addWidget(w)

    def set(self, value: str, detail: str = "") -> None:
        self.value.setText(value)
        self.value.setToolTip(value)  # a long value is clipped to the card's width
        self.detail.setText(detail)


class MetricsBar(QWidget):
    """Cards for the current model; updated from the session's measurements."""

    def __init__(self, session: Session, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.session = session
        self.cards = {
            "model": Card("Model"),
            "params": Card("Parameters", "parameters in layers that own them (shared ones once)"),
            "disk": Card("Size on disk", "bytes of the model file as loaded, measured with os.path.getsize"),
            "macs": Card("MACs", "multiply-accumulates for one input, counted by torch's FLOP counter; a pruned "
                                 "weight still runs in the dense kernel (the detail line counts non-zero ones)"),
            "accuracy": Card("Test accuracy", "top-1 accuracy on the data set's whole test split"),
            "latency": Card("Latency", "median wall-clock time of one forward pass of a batch, on this CPU"),
        }
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(8)
        for card in self.cards.values():
            layout.addWidget(card, 2 if card is self.cards["model"] else 1)
        session.sig_model_changed.connect(self.refresh)
        session.sig_measured.connect(self._on_measured)
        session.variants.sig_changed.connect(self.refresh)  # a variant measured by fidelity arrived
        self.refresh()

    def _on_measured(self, _key: str) -> None:
        self.refresh()

    def refresh(self) -> None:
        s, m = self.session, self.session.measurements
        if s.loaded is None:
            for card in self.cards.values():
                card.set("—")
            return
        inputs = s.variants.models.get(0, s.loaded).meta.get("inputs")  # a variant's are its original's
        data = s.data.name if s.data else f"inputs {Path(inputs).name}" if inputs else "no data set"
        description = s.loaded.meta.get("description") or s.loaded.source
        # the model's name on the big line, the variant's on the detail line ("lenet300 · #3 95% pru" was cut)
        name, _, variant = s.loaded.name.partition(" · ")
        # a variant's description ("compressed from ...") names its whole chain: the tooltip has it
        shown = (variant, s.loaded.format, data) if variant else (description, s.loaded.format, data)
        self.cards["model"].set(name, "  ·  ".join(p for p in shown if p))
        self.cards["model"].setToolTip(f"{s.loaded.name}\n{description}")
        inv = m.inventory
        self.cards["params"].set(f"{inv.params:,}" if inv else "…",
                                 f"{human_bytes(inv.bytes)} of weights, {len(inv.layers)} layers" if inv else "")
        disk = s.loaded.file_bytes
        self.cards["disk"].set(human_bytes(disk) if disk is not None else "—",
                               f"{disk:,} bytes" if disk is not None else "")
        if m.cost is not None:
            self.cards["macs"].set(human_macs(m.cost.total), f"{human_macs(m.cost.effective_total)} with non-zero "
                                   "weights")
        else:
            self.cards["macs"].set("…" if m.inventory is None else "—", "")
        self._show_score()
        if m.latency is not None:  # the current variant's one measurement (see Session.inspect)
            lat = m.latency
            self.cards["latency"].set(latency_median(lat), f"{latency_plus_minus(lat)} {latency_basis(lat)}")
            self.cards["latency"].setToolTip(f"wall-clock time of one forward pass, on this CPU: "
                                             f"{latency_figure(lat)} ({latency_spread(lat)})")
        else:
            self.cards["latency"].set(*(("—", NOT_RUN) if s.loaded.streamed is not None else ("…", "")))

    def _show_score(self) -> None:
        """Test accuracy, or without a labelled set the current variant's fidelity by its metric's name
        ("cosine to the original") and its STS Spearman when there are sentence pairs."""
        s, m, card = self.session, self.session.measurements, self.cards["accuracy"]
        variant = s.variants.current
        score = variant_score(variant) if variant is not None and s.data is None else None
        # a short caption (a long one squeezed the other cards at 1366 pixels); the output's kind on the detail line
        card.caption.setText("TEST ACCURACY" if score is None else f"{score.name} to original".upper())
        if m.test is not None:
            card.set(f"{m.test.accuracy:.2%}", f"{m.test.count:,} images, loss {m.test.loss:.3f}")
        elif score is not None:
            count = f"{variant.fidelity.count:,} inputs" + (", the original itself" if variant.is_original else "")
            kind = KIND_WORDS.get(score.kind)
            card.set(score.figure(), "  ·  ".join(p for p in (kind, count, pairs_figure(variant)) if p))
        elif s.loaded.streamed is not None:
            card.set("—", NOT_RUN)
        else:
            card.set("…" if s.data is not None or s.loaded.probe_inputs else "—",
                     "measuring" if s.data is not None else "needs a labelled data set or your inputs")
        card.setToolTip("top-1 accuracy on the data set's whole test split" if score is None else
                        f"with no labelled data set: {score.name} of this variant's outputs to the original's, on "
                        "the same inputs (the metric the output's kind calls for)")
