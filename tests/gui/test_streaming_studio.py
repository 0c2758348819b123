"""A weights file with no architecture (a .safetensors) in the real studio window: the layer table and the
histograms from the streamed statistics, activations, accuracy and latency marked "not run", and Apply
refused with the reason."""

from __future__ import annotations

import numpy as np
from safetensors.torch import save_file

from core.analysis.streaming import STREAMED_TYPE
from tests.gui.conftest import wait_idle
from tests.test_streaming import tensors


def test_a_safetensors_file_opens_with_its_layers_and_activations_not_run(qtbot, empty_window, tmp_path,
                                                                          untouched):
    window = empty_window
    path = tmp_path / "weights.safetensors"
    save_file(tensors(), path)
    untouched(path)
    window.session.open_model(str(path))
    wait_idle(qtbot, window)
    s, model = window.session, window.table_model
    assert s.loaded is not None and s.loaded.streamed is not None and s.variants.variants == []
    rows = {model.layer_name(r): r for r in range(model.rowCount())}
    assert set(rows) == {"fc1", "fc2", "blocks.0.proj", "blocks.0.norm", ""}  # "scale" is the model's own
    assert model.index(rows["fc1"], 1).data() == STREAMED_TYPE and model.index(rows["fc1"], 3).data() == "94,200"
    window.select_layer("fc2")
    shown = window.histogram.histogram()
    assert shown is not None and int(np.sum(shown.counts)) == 100 * 120  # the streamed fp16 weights
    assert "not run: weights only, no architecture" in window.activations.message.toPlainText()
    assert window.metrics.cards["accuracy"].detail.text() == "not run: weights only, no architecture"
    assert window.metrics.cards["latency"].detail.text() == "not run: weights only, no architecture"
    errors = []
    s.sig_error.connect(lambda title, message: errors.append((title, message)))
    assert s.apply() is False
    assert errors and errors[0][0] == "Compressing needs an architecture" and "--arch" in errors[0][1]
