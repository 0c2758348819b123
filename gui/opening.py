"""Opening models in the studio: the Open model form, the form shown again when a file needs more than its
path (an architecture), and File > Open recent, remembered with each model's options."""

from __future__ import annotations

import json
import re

from PySide6.QtCore import QObject, QSettings, Qt
from PySide6.QtWidgets import QMainWindow, QMenu

from gui.session import Session
from gui.widgets.open_dialog import OpenDialog, OpenRequest

RECENT_KEY, RECENT_MAX = "files/recent", 8


class Opener(QObject):
    """Opens what the user asks for through the session, and remembers what opened."""

    def __init__(self, window: QMainWindow, session: Session, settings: QSettings) -> None:
        super().__init__(window)
        self.window, self.session, self.settings = window, session, settings
        self.dialog: OpenDialog | None = None
        self.recent_menu = QMenu("Open recent", window)
        self.recent_menu.aboutToShow.connect(self.fill_recent_menu)
        session.sig_needs_options.connect(self.ask_options)
        session.sig_opened.connect(self.remember)

    def open_form(self, initial: OpenRequest | None = None, message: str = "", focus: str = "file") -> OpenDialog:
        """The Open model form (non-blocking): file, architecture, input shape, data set, trust."""
        dialog = OpenDialog(self.window, initial, message, focus)
        dialog.setWindowModality(Qt.WindowModality.WindowModal)
        dialog.accepted.connect(lambda: self.open(dialog.request()))
        dialog.open()
        self.dialog = dialog
        return dialog

    def open(self, request: OpenRequest) -> None:
        self.session.open_model(request.spec, request.data, trust=request.trust, arch=request.arch,
                                input_shape=request.input_shape, source=request.source, inputs=request.inputs)

    def ask_options(self, args: dict, why: str, focus: str) -> None:
        """Opening needs more (an architecture): the form, filled in with what was given, says why."""
        initial = OpenRequest(args.get("spec", ""), args.get("arch"), args.get("input_shape"), args.get("data_name"),
                              source=args.get("source"), inputs=args.get("inputs"))
        self.window.statusBar().showMessage("Opening needs more: see the form", 8000)
        why = re.split(r"[;:] (?:pass|say which) ", why)[0]  # the loader's advice is the command line's
        if focus == "arch" and initial.arch:
            why += ". The architecture it records is filled in: Open imports and runs it."
        elif focus == "arch":
            why += (". Name the architecture that builds it: Browse .py… picks the Python file that defines the "
                    "model, or type package.module:factory.")
        elif focus == "source":
            why += (". Name the model it was made from under Source model" +
                    (" (the file of that name beside it is filled in: Open uses it)." if initial.source else "."))
        self.open_form(initial, why, focus)

    # ------------------------------------------------------------------------------------------ recent
    def recent(self) -> list[OpenRequest]:
        raw = self.settings.value(RECENT_KEY, "[]")
        try:
            items = json.loads(raw) if isinstance(raw, str) else []
        except json.JSONDecodeError:
            items = []
        requests = [OpenRequest.from_dict(d) for d in items if isinstance(d, dict)] if isinstance(items, list) else []
        return [r for r in requests if r is not None]

    def remember(self, args: dict) -> None:
        request = OpenRequest(args["spec"], args.get("arch"), args.get("input_shape"), args.get("data_name"),
                              source=args.get("source"), inputs=args.get("inputs"))
        items = [request] + [r for r in self.recent() if r.spec != request.spec]
        self.settings.setValue(RECENT_KEY, json.dumps([r.to_dict() for r in items[:RECENT_MAX]]))

    def fill_recent_menu(self) -> None:
        self.recent_menu.clear()
        recent = self.recent()
        for request in recent:
            self.recent_menu.addAction(request.label, lambda r=request: self.open(r))
        if not recent:
            self.recent_menu.addAction("(none yet)").setEnabled(False)
        else:
            self.recent_menu.addSeparator()
            self.recent_menu.addAction("Clear the list", lambda: self.settings.setValue(RECENT_KEY, "[]"))
