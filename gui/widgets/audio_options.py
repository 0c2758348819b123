"""The two questions a folder of audio inputs needs answered: the sample rate every file must have (and the
model is given), and the window to cut each file into (``--sample-rate``, ``--chunk``). Asked only when the
folder holds audio; the answers are remembered for the next folder."""

from __future__ import annotations

from PySide6.QtCore import QSettings
from PySide6.QtWidgets import QDialog, QDialogButtonBox, QFormLayout, QLabel, QSpinBox, QVBoxLayout, QWidget

RATE_KEY, CHUNK_KEY = "inputs/sample_rate", "inputs/chunk"
MAX_RATE, MAX_CHUNK = 768_000, 1 << 26


def _remembered(settings: QSettings, key: str, top: int) -> int:
    try:
        value = int(settings.value(key, 0))
    except (TypeError, ValueError):
        return 0
    return value if 0 <= value <= top else 0


class AudioOptionsDialog(QDialog):
    """Sample rate (0: the files' own, if they agree) and chunk (0: whole files, all of one length)."""

    def __init__(self, parent: QWidget | None, settings: QSettings, folder: str) -> None:
        super().__init__(parent)
        self.settings = settings
        self.setWindowTitle("Audio inputs")
        self.rate = QSpinBox(objectName="sampleRate", minimum=0, maximum=MAX_RATE, singleStep=1000, suffix=" Hz")
        self.rate.setSpecialValueText("the files' own")
        self.rate.setToolTip("the rate every file must have, passed as the argument the model's forward names "
                             "(sr, sample_rate, fs, ...); a file at another rate is refused, not resampled")
        self.chunk = QSpinBox(objectName="chunk", minimum=0, maximum=MAX_CHUNK, singleStep=160, suffix=" samples")
        self.chunk.setSpecialValueText("whole files")
        self.chunk.setToolTip("cut each file into windows of this many samples, as streaming models expect "
                              "(whole files must all have one length)")
        self.rate.setValue(_remembered(settings, RATE_KEY, MAX_RATE))
        self.chunk.setValue(_remembered(settings, CHUNK_KEY, MAX_CHUNK))
        form = QFormLayout()
        form.addRow("Sample rate", self.rate)
        form.addRow("Window", self.chunk)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Open | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(QLabel(f"{folder} holds audio files: each is one example, or is cut into windows.",
                                wordWrap=True, objectName="caption"))
        layout.addLayout(form)
        layout.addWidget(buttons)

    def values(self) -> tuple[int | None, int | None]:
        """(sample rate, chunk), None for "the files' own" and "whole files"."""
        return self.rate.value() or None, self.chunk.value() or None

    def accept(self) -> None:
        self.settings.setValue(RATE_KEY, self.rate.value())
        self.settings.setValue(CHUNK_KEY, self.chunk.value())
        super().accept()
