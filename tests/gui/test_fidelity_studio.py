"""A model measured by fidelity in the studio (one's own inputs, no labelled data set): the variant rows, the
score card, the trade-off plot's y axis, the compare view and the demo name the metric the output's kind
calls for (a text encoder: cosine, never top-1), sentence pairs add their STS Spearman, the output kind can
be given, and a folder of audio asks its sample rate and window."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from core.methods.coding import Encode
from core.methods.magnitude import PruneMagnitude
from core.recipe import Recipe
from tests.gui.conftest import wait_idle

LINES = ["the quick brown fox jumps over the lazy dog", "pruning removes weights that matter least",
         "quantization stores each weight in fewer bits", "a smaller model on disk is what users asked for",
         "the dog jumps over the fox", "weights that matter least are removed"]


@pytest.fixture(scope="module")
def encoder_files(tmp_path_factory):
    """A tiny BERT encoder (hidden states out), a file of lines and a file of scored sentence pairs."""
    pytest.importorskip("transformers")
    from tests.factories import write_hf_folder

    root = tmp_path_factory.mktemp("encoder")
    folder = write_hf_folder(root / "tiny-encoder", encoder=True)
    (root / "lines.txt").write_text("\n".join(LINES * 4) + "\n", encoding="utf-8")
    pairs = ["sentence1\tsentence2\tscore"] + [f"{LINES[i % 6]}\t{LINES[(i * 5 + 1) % 6]}\t{(i * 7) % 11 / 2:.1f}"
                                               for i in range(20)]
    (root / "pairs.tsv").write_text("\n".join(pairs) + "\n", encoding="utf-8")
    return folder, root / "lines.txt", root / "pairs.tsv"


def _open(qtbot, window, folder, **options):
    window.session.open_model(str(folder), None, **options)
    qtbot.waitUntil(lambda: window.session.variants.original is not None, timeout=120_000)
    wait_idle(qtbot, window)


def _compress(qtbot, window):
    errors = []
    window.session.sig_error.connect(lambda title, message: errors.append(message))
    count = len(window.session.variants.variants)
    assert window.session.apply(Recipe(steps=(PruneMagnitude(sparsity=0.5), Encode()), name="half"))
    qtbot.waitUntil(lambda: len(window.session.variants.variants) == count + 1, timeout=120_000)
    wait_idle(qtbot, window)
    assert not errors
    return window.session.variants.current


def test_a_text_encoder_on_its_own_lines_is_measured_by_cosine_everywhere(qtbot, empty_window, encoder_files):
    folder, lines, _ = encoder_files
    window = empty_window
    _open(qtbot, window, folder, inputs=str(lines))
    assert window.session.data is None
    original = window.session.variants.original
    assert original.fidelity.kind == "embed" and original.fidelity.cosine == pytest.approx(1.0, abs=1e-5)
    variant = _compress(qtbot, window)
    assert variant.accuracy is None and variant.fidelity.top1_agreement is None
    assert 0.0 < variant.fidelity.cosine < 1.0  # half the weights gone: close to, not exactly, the original

    row = window.variant_list.list.item(1).text()
    assert f"cosine {variant.fidelity.cosine:.4f}" in row and "top-1" not in row and "%" not in row.split("·")[-1]
    card = window.metrics.cards["accuracy"]
    assert card.caption.text() == "COSINE TO ORIGINAL" and "embeddings" in card.detail.text()
    assert card.value.text() == f"{variant.fidelity.cosine:.4f}"
    assert "inputs lines.txt" in window.metrics.cards["model"].detail.text()  # a variant's inputs: the original's

    plot = window.tradeoff
    plot.show_variants(window.session.variants.variants, variant.id)
    label = plot.plot.getAxis("left").labelText
    assert label == "cosine to the original (embeddings)" and "top-1" not in label and "accuracy" not in label
    assert [v.id for v in plot.variants] == [0, variant.id]
    ys = sorted(spot.pos().y() for spot in plot.points.points())
    assert ys == pytest.approx(sorted([original.fidelity.cosine, variant.fidelity.cosine]))  # not in %
    assert "cosine" in plot.caption.text() and "top-1" not in plot.caption.text()
    assert plot.title.text().startswith("Cosine against")

    compare = window.compare
    compare.set_variants(window.session.variants.variants, variant.id)
    summary = compare.summary.text()
    assert "<b>Cosine</b>" in summary and f"{variant.fidelity.cosine:.4f}" in summary and "Accuracy" not in summary
    assert "No labelled test set" in compare.changed_title.text()  # not "0 test images wrong"

    window.demo.show_result(window.session.variants.variants, variant)
    value, caption = window.demo.cards["accuracy"]
    assert caption.text() == "cosine to the original (embeddings)" and value.text().endswith(
        f"{variant.fidelity.cosine:.4f}")
    assert "cosine" in window.demo.headline.text() and "accuracy" not in window.demo.headline.text()


def test_sentence_pairs_show_their_spearman_on_the_rows_and_in_the_compare_view(qtbot, empty_window, encoder_files):
    """``studio MODEL --inputs lines.txt --pairs pairs.tsv --task embed``, as the command line passes them."""
    folder, lines, pairs = encoder_files
    window = empty_window
    _open(qtbot, window, folder, inputs=str(lines), pairs=str(pairs), task="embed")
    original = window.session.variants.original
    assert original.pairs is not None and original.pairs.count == 20
    variant = _compress(qtbot, window)
    assert variant.pairs is not None and variant.pairs.spearman is not None
    assert f"STS Spearman {original.pairs.spearman:.4f}" in window.variant_list.list.item(0).text()
    assert f"STS Spearman {variant.pairs.spearman:.4f}" in window.variant_list.list.item(1).text()
    assert f"STS Spearman {variant.pairs.spearman:.4f}" in window.metrics.cards["accuracy"].detail.text()
    window.compare.set_variants(window.session.variants.variants, variant.id)
    assert (f"<b>STS Spearman</b> {original.pairs.spearman:.4f} → {variant.pairs.spearman:.4f}"
            in window.compare.summary.text())


def test_pairs_and_the_output_kind_are_given_from_the_data_menu(qtbot, empty_window, encoder_files):
    folder, lines, pairs = encoder_files
    window = empty_window
    _open(qtbot, window, folder, inputs=str(lines))
    window.data_menu.aboutToShow.emit()
    texts = [a.text() for a in window.data_menu.actions()]
    assert "Sentence pairs (STS)…" in texts
    pairs_action = next(a for a in window.data_menu.actions() if a.text() == "Sentence pairs (STS)…")
    assert pairs_action.isEnabled()
    window.session.use_pairs(str(pairs))
    qtbot.waitUntil(lambda: window.session.variants.original is not None
                    and window.session.variants.original.pairs is not None, timeout=120_000)
    wait_idle(qtbot, window)
    assert window.session.loaded.meta["inputs"] == str(lines)  # the lines stay: the pairs come on top
    assert "STS Spearman" in window.variant_list.list.item(0).text()

    task_menu = next(a.menu() for a in window.data_menu.actions() if a.menu() is not None)
    assert task_menu.actions()[0].text() == "As detected (embed)" and task_menu.actions()[0].isChecked()
    regress = next(a for a in task_menu.actions() if a.text().startswith("regress"))
    regress.trigger()
    qtbot.waitUntil(lambda: window.session.variants.original is not None
                    and window.session.variants.original.fidelity.kind == "regress", timeout=120_000)
    wait_idle(qtbot, window)
    assert window.metrics.cards["accuracy"].caption.text() == "RELATIVE ERROR TO ORIGINAL"
    window.tradeoff.show_variants(window.session.variants.variants, 0)
    assert window.tradeoff.plot.getPlotItem().getViewBox().yInverted()  # lower is better: drawn upward
    window.data_menu.aboutToShow.emit()
    task_menu = next(a.menu() for a in window.data_menu.actions() if a.menu() is not None)
    assert [a.text() for a in task_menu.actions() if a.isChecked()] == ["regress: regression: relative error"]


def test_accuracy_and_fidelity_are_never_drawn_on_one_axis(qtbot, qapp):
    import dataclasses

    from core.eval.fidelity import Fidelity
    from gui.widgets.tradeoff_plot import TradeoffPlot

    plot = TradeoffPlot()
    qtbot.addWidget(plot)
    base = dict(recipe=None, loss=None, latency=None, layers=())
    from core.pipeline.variants import Variant

    original = Variant(0, "original", size_bytes=4000, accuracy=0.9, **base)
    cosine = dataclasses.replace(original, id=1, name="#1", size_bytes=1000, accuracy=None,
                                 fidelity=Fidelity(None, 0.98, 0.1, 10, kind="embed"))
    plot.show_variants([original, cosine], 1)
    assert [v.id for v in plot.variants] == [0]
    assert plot.plot.getAxis("left").labelText == "test accuracy (%)"
    assert "1 variant measured by cosine, not test accuracy, is left out" in plot.caption.text()


def test_a_folder_of_audio_asks_its_sample_rate_and_window_and_remembers_them(qtbot, empty_window, tmp_path):
    soundfile = pytest.importorskip("soundfile")
    from gui.data_menu import open_inputs_folder
    from tests.test_inputs import AudioNet

    rng = np.random.default_rng(0)
    (tmp_path / "clips").mkdir()
    for i, n in enumerate((4000, 3300)):
        soundfile.write(str(tmp_path / "clips" / f"clip{i}.wav"), (rng.standard_normal(n) * 0.1).astype(np.float32),
                        16000, subtype="FLOAT")
    torch.manual_seed(0)
    torch.save(AudioNet(), tmp_path / "audio.pt")
    window = empty_window
    _open(qtbot, window, tmp_path / "audio.pt", trust=True, inputs=str(tmp_path / "clips"), sample_rate=16000,
          chunk=1600)
    dialog = open_inputs_folder(window, window.session, str(tmp_path / "clips"))
    assert dialog is not None and dialog.isVisible()
    assert dialog.values() == (None, None)  # nothing remembered yet: the files' own rate, whole files
    dialog.rate.setValue(16000)
    dialog.chunk.setValue(800)
    dialog.accept()
    wait_idle(qtbot, window)
    ((x, sr),) = window.session.loaded.probe_inputs
    assert x.shape == (9, 800) and sr == 16000  # 4000 -> 5 windows, 3300 -> 4
    assert window.session.loaded.meta["inputs"] == str(tmp_path / "clips")
    again = open_inputs_folder(window, window.session, str(tmp_path / "clips"))
    assert again.values() == (16000, 800)  # remembered
    again.reject()
    (tmp_path / "pics").mkdir()
    assert open_inputs_folder(window, window.session, str(tmp_path / "pics")) is None  # no audio: not asked
    wait_idle(qtbot, window)
