"""The studio's Data set menu: the built-in data sets, a data folder of one's own, and one's own unlabelled
inputs (a file or a folder, as ``--inputs`` takes them); each choice goes to the session, which reads it in
the background."""

from __future__ import annotations

from PySide6.QtWidgets import QFileDialog, QMenu, QWidget

from core.eval.data import BUILTIN_DATASETS, FASHION_HELP, dataset_available

INPUTS_FILTER = "Inputs (*.npy *.npz *.pt *.pth *.txt);;All files (*)"


def fill_data_menu(menu: QMenu, parent: QWidget, session) -> None:
    """Fill ``menu`` as it opens (a data set installed meanwhile shows up)."""
    menu.clear()
    for name in BUILTIN_DATASETS:
        action = menu.addAction(name, lambda n=name: session.use_dataset(n))
        if not dataset_available(name):
            action.setEnabled(False)
            action.setText(f"{name} (not installed)")
            action.setToolTip(FASHION_HELP)
    menu.setToolTipsVisible(True)
    menu.addSeparator()
    menu.addAction("Open data folder…", lambda: _ask_folder(
        parent, "Open data folder (IDX files, or one folder per class)", session.use_dataset))
    menu.addSeparator()
    menu.addAction("Open inputs…", lambda: _ask_file(parent, session.use_inputs)).setToolTip(
        "Your own unlabelled examples for activations and fidelity: .npy, .npz or .pt (a tensor, a tuple or "
        "a dict of named tensors), or a .txt of lines for a model with a tokenizer")
    menu.addAction("Open inputs folder…", lambda: _ask_folder(
        parent, "Open inputs folder (images, or mono audio files)", session.use_inputs)).setToolTip(
        "A folder of images, or of mono audio files at one sample rate")


def _ask_folder(parent: QWidget, title: str, use) -> None:
    path = QFileDialog.getExistingDirectory(parent, title)
    if path:
        use(path)


def _ask_file(parent: QWidget, use) -> None:
    path, _ = QFileDialog.getOpenFileName(parent, "Open inputs", "", INPUTS_FILTER)
    if path:
        use(path)
