"""The studio's Data set menu: the built-in data sets, a data folder of one's own, one's own unlabelled
inputs (a file or a folder, as ``--inputs`` takes them; a folder of audio asks its sample rate and window),
sentence pairs to score (``--pairs``) and what the output is for fidelity (``--task``); each choice goes to
the session, which reads it in the background."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtGui import QActionGroup
from PySide6.QtWidgets import QFileDialog, QMenu, QWidget

from core.eval.data import BUILTIN_DATASETS, FASHION_HELP, dataset_available
from core.eval.fidelity import TASKS

INPUTS_FILTER = "Inputs (*.npy *.npz *.pt *.pth *.txt);;All files (*)"
PAIRS_FILTER = "Sentence pairs (*.tsv *.txt);;All files (*)"
TASK_WORDS = {"classify": "classifier: top-1 agreement, KL", "embed": "embeddings: cosine",
              "lm": "language model: perplexity", "regress": "regression: relative error"}
AUDIO_LOOK = 2000  # entries of a folder looked at for audio files before asking (the UI thread lists them)


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
        parent, "Open inputs folder (images, or mono audio files)",
        lambda path: open_inputs_folder(parent, session, path))).setToolTip(
        "A folder of images, or of mono audio files at one sample rate")
    tokenizer = session.loaded is not None and session.loaded.tokenize is not None
    pairs = menu.addAction("Sentence pairs (STS)…", lambda: _ask_file(parent, session.use_pairs, PAIRS_FILTER,
                                                                       "Open sentence pairs"))
    pairs.setEnabled(tokenizer)
    pairs.setToolTip("sentence1<TAB>sentence2<TAB>gold score per line: the Spearman correlation of the "
                     "embeddings' cosines with the scores, for every variant" if tokenizer else
                     "for a text model with a tokenizer (a Hugging Face folder holding one)")
    _fill_task_menu(menu.addMenu("Output kind (fidelity)"), session)


def _fill_task_menu(menu: QMenu, session) -> None:
    """As detected, or one of the kinds: what fidelity to the original is measured in."""
    meta = session.loaded.meta if session.loaded is not None else {}
    given = meta.get("task") if meta.get("task") != meta.get("loader_task", meta.get("task")) else None
    original = session.variants.original
    detected = original.fidelity.kind if original is not None and original.fidelity is not None and not given \
        else meta.get("loader_task")
    group = QActionGroup(menu)
    for task in (None, *TASKS):
        text = (f"As detected ({detected})" if detected else "As detected") if task is None else \
            f"{task}: {TASK_WORDS.get(task, task)}"
        action = menu.addAction(text, lambda t=task: session.use_task(t))
        action.setCheckable(True)
        action.setChecked(task == given)
        action.setEnabled(session.loaded is not None)
        group.addAction(action)


def open_inputs_folder(parent: QWidget, session, path: str):
    """Use a folder of inputs: images at once; audio after its sample rate and window are asked (the dialog,
    non-blocking, is returned; None when nothing is asked)."""
    from core.eval.inputs import folder_kind
    from gui.widgets.audio_options import AudioOptionsDialog

    if folder_kind(Path(path), AUDIO_LOOK) != "audio":
        session.use_inputs(path)
        return None
    dialog = AudioOptionsDialog(parent, parent.settings, Path(path).name)
    dialog.accepted.connect(lambda: session.use_inputs(path, *dialog.values()))
    dialog.open()
    parent.audio_dialog = dialog  # kept, and reachable for tests
    return dialog


def _ask_folder(parent: QWidget, title: str, use) -> None:
    path = QFileDialog.getExistingDirectory(parent, title)
    if path:
        use(path)


def _ask_file(parent: QWidget, use, kinds: str = INPUTS_FILTER, title: str = "Open inputs") -> None:
    path, _ = QFileDialog.getOpenFileName(parent, title, "", kinds)
    if path:
        use(path)
