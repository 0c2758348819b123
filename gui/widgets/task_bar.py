"""The task bar: what runs in the background, how far it is, and a button to cancel it."""

from __future__ import annotations

from PySide6.QtWidgets import QHBoxLayout, QLabel, QProgressBar, QPushButton, QWidget

from core.progress import Progress
from gui import theme
from gui.workers import TaskRunner


class TaskBar(QWidget):
    def __init__(self, runner: TaskRunner, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.runner = runner
        self.label = QLabel("Ready")
        self.label.setObjectName("caption")
        theme.steady(self.label)
        self.progress = QProgressBar()
        self.progress.setFixedWidth(240)
        self.progress.setTextVisible(True)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setObjectName("cancelButton")
        self.cancel_button.setToolTip("Stop the running task (Esc); the model stays as it was")
        self.cancel_button.clicked.connect(runner.cancel)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(6, 0, 6, 0)
        layout.addWidget(self.label, 1)
        layout.addWidget(self.progress)
        layout.addWidget(self.cancel_button)
        runner.sig_started.connect(self._on_started)
        runner.sig_progress.connect(self._on_progress)
        runner.sig_cancelled.connect(lambda title: self._remember(f"Cancelled: {title}"))
        runner.sig_failed.connect(self._on_failed)
        runner.sig_finished.connect(lambda title, _v: self._remember(f"Done: {title}"))
        runner.sig_idle.connect(self._set_idle)
        self._last = "Ready"
        self._set_idle()

    def _on_started(self, title: str) -> None:
        self.label.setText(title + " …")
        self.progress.setRange(0, 0)  # busy until the first progress report
        self.progress.show()
        self.cancel_button.show()

    def _on_progress(self, p: Progress) -> None:
        if p.total > 0:
            self.progress.setRange(0, 1000)
            self.progress.setValue(int(p.fraction * 1000))
            self.progress.setFormat(f"{p.stage} {p.fraction:.0%}")
        else:
            self.progress.setRange(0, 0)
        self.label.setText(f"{p.stage}: {p.message}" if p.message else p.stage)

    def _on_failed(self, title: str, error: BaseException) -> None:
        from core.io import UntrustedPickleError

        if isinstance(error, UntrustedPickleError):  # not a failure: the studio asks before running its code
            self._remember(f"Waiting for your answer: {title.removeprefix('Opening ')} can run code when loaded")
        else:
            self._remember(f"Failed: {title}")

    def note(self, text: str) -> None:
        """Say ``text`` where the last task's outcome shows (the outcome of a question the task asked)."""
        self._remember(text)
        if not self.runner.busy:
            self.label.setText(text)

    def _remember(self, text: str) -> None:
        self._last = text

    def _set_idle(self) -> None:
        self.label.setText(self._last)
        self.progress.hide()
        self.cancel_button.hide()
