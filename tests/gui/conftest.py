"""Fixtures for driving the real studio window offscreen (QT_QPA_PLATFORM=offscreen, set in tests/conftest.py)."""

from __future__ import annotations

import pytest
from PySide6.QtCore import QSettings


@pytest.fixture
def settings(tmp_path):
    return QSettings(str(tmp_path / "studio.ini"), QSettings.Format.IniFormat)


def wait_idle(qtbot, window, timeout: int = 120_000) -> None:
    qtbot.waitUntil(lambda: not window.session.runner.busy, timeout=timeout)


@pytest.fixture
def window(qtbot, qapp, settings):
    from gui.app import apply_style, create_window

    apply_style(qapp)
    w = create_window("zoo:lenet300", settings=settings)
    qtbot.addWidget(w, before_close_func=lambda _: stop_tasks(qtbot, w))  # pytest-qt closes widgets first
    w.show()
    wait_idle(qtbot, w)
    return w


@pytest.fixture
def empty_window(qtbot, qapp, settings):
    """The studio with no model opened."""
    from gui.app import apply_style, create_window

    apply_style(qapp)
    w = create_window(None, settings=settings)
    qtbot.addWidget(w, before_close_func=lambda _: stop_tasks(qtbot, w))
    w.show()
    return w


def stop_tasks(qtbot, window) -> None:
    window.session.cancel()
    wait_idle(qtbot, window)
    window.confirm_close = lambda unsaved: True  # the real question is a modal dialog: nobody would answer it

