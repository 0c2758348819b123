"""Window-level shortcuts that work wherever the focus is, and the help page that lists them.

A spin box or a line edit claims Ctrl+Z, Ctrl+Shift+Z and Ctrl+Y for undoing its own text: Qt first sends
the focused widget a ShortcutOverride event, and a text field accepts it for those keys, so the window's
Undo never fires (issue 12, finding 6: type the epochs, Ctrl+Return, Ctrl+Z did nothing). The studio's
undo is what a user means there (the field's text has already gone into the recipe), so a filter stops
the override for the studio's own shortcuts, and only for fields of the studio's main window: a dialog's
fields keep their text undo.
"""

from __future__ import annotations

import html
from pathlib import Path

from PySide6.QtCore import QEvent, QObject, Qt, QUrl
from PySide6.QtGui import QAction, QKeySequence, QShortcut
from PySide6.QtWidgets import (QAbstractSpinBox, QComboBox, QDialog, QDialogButtonBox, QLabel, QLineEdit,
                               QPlainTextEdit, QTextBrowser, QTextEdit, QVBoxLayout, QWidget)

TEXT_FIELDS = (QAbstractSpinBox, QLineEdit, QTextEdit, QPlainTextEdit, QComboBox)


class StudioShortcutsWin(QObject):
    """An application event filter: in a text field of ``window``, the window's ``actions``' shortcuts
    win over the field's own handling of the same keys."""

    def __init__(self, window: QWidget, actions: list[QAction]) -> None:
        super().__init__(window)
        self.window, self.actions = window, actions

    def claims(self, event) -> bool:
        """Whether the key is an enabled action's shortcut (a disabled one leaves the key to the field)."""
        sequence = QKeySequence(event.keyCombination())
        return any(action.isEnabled() and any(s.matches(sequence) == QKeySequence.SequenceMatch.ExactMatch
                                              for s in action.shortcuts()) for action in self.actions)

    def eventFilter(self, obj, event) -> bool:
        if (event.type() == QEvent.Type.ShortcutOverride and isinstance(obj, QWidget) and obj.window() is self.window
                and _in_text_field(obj) and self.claims(event)):
            return True  # not accepted: Qt goes on to the window's shortcut
        return False


def _in_text_field(widget: QWidget) -> bool:
    while widget is not None:
        if isinstance(widget, TEXT_FIELDS):
            return True
        widget = widget.parentWidget() if not widget.isWindow() else None
    return False


def install(window: QWidget, undo: QAction, redo: QAction, others: list[QAction]) -> StudioShortcutsWin:
    """Give ``undo`` and ``redo`` their keys (Ctrl+Z; Ctrl+Shift+Z and Ctrl+Y) at window level and make
    them, and ``others``, win in the window's text fields."""
    from PySide6.QtWidgets import QApplication

    undo.setShortcuts([QKeySequence("Ctrl+Z")])
    redo.setShortcuts([QKeySequence("Ctrl+Shift+Z"), QKeySequence("Ctrl+Y")])
    for action in (undo, redo, *others):
        action.setShortcutContext(Qt.ShortcutContext.WindowShortcut)
    keeper = StudioShortcutsWin(window, [undo, redo, *others])
    QApplication.instance().installEventFilter(keeper)
    return keeper


# ---------------------------------------------------------------------------------------------- help
def shortcut_rows(window: QWidget) -> list[tuple[str, str]]:
    """(what, keys) for every action and shortcut of ``window`` that has a key, read from the window itself."""
    rows: dict[str, str] = {}
    for action in window.findChildren(QAction):
        keys = action.shortcuts()
        if keys and action.text():
            what = action.text().replace("&", "").rstrip("…").strip()
            what = what.split("  —  ")[0]
            rows.setdefault(_keys_text(keys), what)
    for shortcut in window.findChildren(QShortcut):
        keys = [shortcut.key()] if not shortcut.key().isEmpty() else []
        what = shortcut.whatsThis() or shortcut.objectName()
        if keys and what:
            rows.setdefault(_keys_text(keys), what)
    return sorted(((what, keys) for keys, what in rows.items()), key=lambda r: r[0].lower())


def _keys_text(keys) -> str:
    return ", ".join(k.toString(QKeySequence.SequenceFormat.NativeText) for k in keys)


def readme_url() -> QUrl | None:
    """The README beside the program (a source checkout or an sdist), as a file URL; None when absent."""
    path = Path(__file__).resolve().parent.parent / "README.md"
    return QUrl.fromLocalFile(str(path)) if path.is_file() else None


def app_version() -> str:
    """The installed distribution's version, else the one pyproject.toml declares, else "unknown"."""
    import importlib.metadata
    import re

    try:
        return importlib.metadata.version("prunescope")
    except importlib.metadata.PackageNotFoundError:
        pyproject = Path(__file__).resolve().parent.parent / "pyproject.toml"
        found = re.search(r'^version\s*=\s*"([^"]+)"', pyproject.read_text(encoding="utf-8"), re.M) \
            if pyproject.is_file() else None
        return found.group(1) if found else "unknown"


def _docs_link() -> str:
    url = readme_url()
    return (f"<a href='{url.toString()}'>README.md</a>" if url is not None
            else "README.md (in the source distribution)")


def about_html() -> str:
    return (f"<b>Prunescope {html.escape(app_version())}</b><br>See what compression does to a neural network. "
            f"Honest bytes, measured accuracy.<br><br>Documentation: {_docs_link()}<br>Keyboard shortcuts: F1")


class HelpDialog(QDialog):
    """Every shortcut of the window, read from its actions, and a link to the README."""

    def __init__(self, window: QWidget) -> None:
        super().__init__(window)
        self.setWindowTitle("Prunescope help")
        self.rows = shortcut_rows(window)
        body = "".join(f"<tr><td style='padding:2px 16px 2px 0'>{html.escape(what)}</td>"
                       f"<td><b>{html.escape(keys)}</b></td></tr>" for what, keys in self.rows)
        self.text = QTextBrowser(openExternalLinks=True)
        self.text.setHtml(f"<h3>Keyboard shortcuts</h3><table>{body}</table>"
                          f"<p>They work wherever the focus is in the main window, spin boxes included.</p>"
                          f"<p>The full guide: {_docs_link()}</p>")
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(QLabel(f"Prunescope {html.escape(app_version())}", objectName="panelTitle"))
        layout.addWidget(self.text, 1)
        layout.addWidget(buttons)
        self.resize(520, 560)
