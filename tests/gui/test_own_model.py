"""One's own model in the studio: a state_dict whose architecture is a factory in a .py file of one's own,
opened through the Open form (or asked for when it is missing), remembered in Open Recent, and compressed
structurally with no input shape given (the data set's inputs trace it)."""

from __future__ import annotations

import pytest
import torch

from core.methods.coding import Encode
from core.methods.structured import PruneStructured
from core.recipe import Recipe
from tests.factories import write_own_cnn
from tests.gui.conftest import wait_idle


@pytest.fixture
def own_model(tmp_path):
    """A folder of one's own (not on the import path): ``mycnn_<id>.py`` and ``net.pt``, a bare state_dict."""
    name = f"mycnn_{tmp_path.name.replace('-', '_')}"  # a module name no other test has imported
    return write_own_cnn(tmp_path / "mine", name)


def test_a_state_dict_with_a_factory_from_a_py_file_opens_in_the_studio(qtbot, empty_window, own_model):
    window = empty_window
    weights, source, state = own_model
    dialog = window.opener.open_form()
    dialog.file.setText(str(weights))
    dialog.use_architecture_file(str(source))
    assert dialog.factory.currentText() == "make" and "Net" in [dialog.factory.itemText(i)
                                                                 for i in range(dialog.factory.count())]
    dialog.data.setCurrentText("mnist")
    dialog.accept()
    wait_idle(qtbot, window)
    loaded = window.session.loaded
    assert loaded is not None and loaded.meta["arch"] == f"{source.resolve()}:make"
    assert torch.equal(loaded.module.state_dict()["conv2.weight"], state["conv2.weight"])
    assert window.table_model.rowCount() == 4  # conv1, conv2, fc1, fc2
    assert window.opener.recent()[0].arch == f"{source.resolve()}:make" and window.opener.recent()[0].data == "mnist"


def test_a_missing_architecture_is_asked_for_in_the_form_not_refused(qtbot, empty_window, own_model):
    window = empty_window
    weights, source, _ = own_model
    window.session.open_model(str(weights), "mnist")
    qtbot.waitUntil(lambda: window.opener.dialog is not None and window.opener.dialog.isVisible(), timeout=60_000)
    dialog = window.opener.dialog
    assert dialog.file.text() == str(weights) and "holds only weights" in dialog.message.text()
    assert dialog.data.currentText() == "mnist"
    dialog.arch.setText(f"{source}:make")
    dialog.accept()
    wait_idle(qtbot, window)
    assert window.session.loaded is not None and window.session.loaded.meta["arch"] == f"{source}:make"


def test_open_recent_reopens_with_the_same_options(qtbot, empty_window, own_model):
    window = empty_window
    weights, source, _ = own_model
    window.session.open_model(str(weights), "mnist", arch=f"{source}:make")
    wait_idle(qtbot, window)
    window.session.open_model("zoo:lenet300")
    wait_idle(qtbot, window)
    assert [r.spec for r in window.opener.recent()] == ["zoo:lenet300", str(weights)]
    window.opener.fill_recent_menu()
    action = next(a for a in window.opener.recent_menu.actions() if a.text().startswith(str(weights)))
    assert f"--arch {source}:make" in action.text()
    action.trigger()
    wait_idle(qtbot, window)
    assert window.session.loaded.source == str(weights) and window.session.data.name.lower().startswith("mnist")


def open_own(qtbot, window, weights, source):
    window.session.open_model(str(weights), "mnist", arch=f"{source}:make")  # no input shape given
    wait_idle(qtbot, window)
    qtbot.waitUntil(lambda: window.session.variants.original is not None, timeout=60_000)
    wait_idle(qtbot, window)
    assert window.session.loaded.input_shape is None


def test_structured_pruning_of_ones_own_cnn_with_no_input_shape(qtbot, empty_window, own_model):
    window = empty_window
    weights, source, _ = own_model
    open_own(qtbot, window, weights, source)
    errors = []
    window.session.sig_error.connect(lambda title, message: errors.append(message))
    recipe = Recipe(steps=(PruneStructured(amount=0.5), Encode()), name="half the channels")
    assert window.session.apply(recipe)
    qtbot.waitUntil(lambda: len(window.session.variants.variants) == 2, timeout=120_000)
    wait_idle(qtbot, window)
    assert not errors
    model = window.session.loaded.module
    assert model.conv1.out_channels == 4 and model.conv2.out_channels == 8
    assert model(torch.zeros(2, 1, 28, 28)).shape == (2, 10)


def test_remove_selected_units_of_ones_own_cnn(qtbot, empty_window, own_model):
    window = empty_window
    weights, source, _ = own_model
    open_own(qtbot, window, weights, source)
    errors = []
    window.session.sig_error.connect(lambda title, message: errors.append(message))
    assert window.session.remove_units("conv1", [0, 3, 5])
    qtbot.waitUntil(lambda: len(window.session.variants.variants) == 2, timeout=120_000)
    wait_idle(qtbot, window)
    assert not errors
    assert window.session.loaded.module.conv1.out_channels == 5


def test_on_a_torchscript_model_the_draft_does_not_train_and_apply_compresses_it_in_place(qtbot, empty_window,
                                                                                           model_files):
    window = empty_window
    session = window.session
    assert session.draft.finetune_epochs > 0  # the default draft fine-tunes
    session.open_model(str(model_files["torchscript"]), "mnist", trust=True)
    wait_idle(qtbot, window)
    qtbot.waitUntil(lambda: session.variants.original is not None, timeout=60_000)
    wait_idle(qtbot, window)
    assert session.draft.finetune_epochs == 0 and not any(s.needs() for s in session.draft.steps)
    errors = []
    session.sig_error.connect(lambda title, message: errors.append(message))
    count = len(session.variants.variants)
    assert session.apply()
    qtbot.waitUntil(lambda: len(session.variants.variants) == count + 1, timeout=120_000)
    assert errors == []
    session.open_model("zoo:lenet300", "mnist")  # an eager model with a labelled set: the draft trains again
    wait_idle(qtbot, window)
    qtbot.waitUntil(lambda: session.loaded is not None and session.loaded.name == "lenet300", timeout=60_000)
    assert session.draft.finetune_epochs > 0


def write_psz(loaded, folder):
    from core.pipeline.apply import apply_recipe
    from core.progress import run

    recipe = Recipe.from_text("steps: [{kind: prune_magnitude, sparsity: 0.5}, {kind: encode}]")
    result = run(apply_recipe(recipe, loaded, None, measure_before=False))
    path = folder / f"{loaded.name}.psz"
    path.write_bytes(result.file_bytes)
    return path, result


def test_a_compressed_file_of_ones_own_model_asks_for_its_architecture_and_offers_the_recorded_one(
        qtbot, empty_window, own_model):
    from core.io import LoadOptions, load_model

    window = empty_window
    weights, source, _ = own_model
    arch = f"{source}:make"
    psz, result = write_psz(load_model(str(weights), LoadOptions(arch=arch, input_shape=(1, 1, 28, 28))),
                            weights.parent)
    window.session.open_model(str(psz))
    qtbot.waitUntil(lambda: window.opener.dialog is not None and window.opener.dialog.isVisible(), timeout=60_000)
    dialog = window.opener.dialog
    assert dialog.arch.text() == arch and "runs that code" in dialog.message.text()  # offered, not imported
    dialog.accept()
    wait_idle(qtbot, window)
    assert window.session.loaded.format == "prunescope"
    assert torch.equal(window.session.loaded.module.conv2.weight, result.model.conv2.weight)


def test_a_compressed_file_without_a_recorded_architecture_asks_for_its_source_and_offers_the_one_beside_it(
        qtbot, empty_window, model_files, tmp_path):
    import shutil

    from core.io import LoadOptions, load_model

    window = empty_window
    original = tmp_path / "whole_model.pt"
    shutil.copy(model_files["pickle"], original)
    psz, result = write_psz(load_model(str(original), LoadOptions(trust=True, input_shape=(1, 1, 28, 28))), tmp_path)
    window.session.open_model(str(psz), "mnist")
    qtbot.waitUntil(lambda: window.opener.dialog is not None and window.opener.dialog.isVisible(), timeout=60_000)
    dialog = window.opener.dialog
    assert dialog.source.text() == str(original) and "Source model" in dialog.message.text()
    dialog.trust.setChecked(True)  # the source is a whole pickled model: it runs code
    dialog.accept()
    wait_idle(qtbot, window)
    assert window.session.loaded.format == "prunescope"
    assert torch.equal(window.session.loaded.module.state_dict()["body.fc1.weight"],
                       result.model.state_dict()["body.fc1.weight"])


def test_what_loading_changed_is_said_in_the_status_bar(qtbot, empty_window, tmp_path):
    from core.eval.zoo import load_zoo_model

    path = tmp_path / "dp.pt"
    torch.save(torch.nn.DataParallel(load_zoo_model("lenet300")[0]).state_dict(), path)
    empty_window.session.open_model(str(path), "mnist")
    qtbot.waitUntil(lambda: empty_window.session.loaded is not None, timeout=60_000)
    message = empty_window.statusBar().currentMessage()
    assert message.startswith("dp: the weights' names carried the prefix 'module.'")
    wait_idle(qtbot, empty_window)
    assert [n for n, _ in empty_window.session.loaded.module.named_parameters()][0] == "fc1.weight"


def test_the_studio_opens_a_model_on_ones_own_inputs_and_remembers_them(qtbot, empty_window, tmp_path):
    """``studio MODEL --inputs FILE``: the examples stand in for the model's default data set, the status bar
    says what was read, and Open Recent reopens with the same inputs."""
    torch.save(torch.rand(90, 1, 28, 28), tmp_path / "mine.pt")
    session = empty_window.session
    session.open_model("zoo:lenet5", None, inputs=str(tmp_path / "mine.pt"))
    qtbot.waitUntil(lambda: session.loaded is not None, timeout=60_000)
    assert "inputs: 90 examples of 1x28x28 float32, from mine.pt" in empty_window.statusBar().currentMessage()
    wait_idle(qtbot, empty_window)
    assert session.data is None  # not MNIST, the zoo model's own set, behind the person's back
    assert sum(b.shape[0] for b in session.loaded.probe_inputs) == 90
    assert "inputs mine.pt" in empty_window.metrics.cards["model"].detail.text()  # not "no data set"
    assert empty_window.opener.recent()[0].inputs == str(tmp_path / "mine.pt")


def test_open_inputs_runs_the_model_on_them_and_a_bad_file_changes_nothing(qtbot, empty_window, tmp_path):
    """Data set > Open inputs…: the model as opened runs on the file's examples; a file that cannot be read
    is said, and the model and its data set stay as they were."""
    session = empty_window.session
    session.open_model("zoo:lenet5", "mnist")
    qtbot.waitUntil(lambda: session.loaded is not None, timeout=60_000)
    wait_idle(qtbot, empty_window)
    empty_window.data_menu.aboutToShow.emit()  # the menu fills as it opens
    assert [a.text() for a in empty_window.data_menu.actions() if a.text().startswith("Open inputs")] == \
        ["Open inputs…", "Open inputs folder…"]
    before, data = session.loaded, session.data
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    session.use_inputs(str(tmp_path / "bad.npz"))
    wait_idle(qtbot, empty_window)
    assert session.loaded is before and session.data is data
    box = empty_window.dialog  # the error, said in a dialog that does not block the studio
    assert box is not None and box.isVisible() and "bad.npz" in box.text()
    box.close()

    torch.save(torch.rand(33, 1, 28, 28), tmp_path / "mine.pt")
    session.use_inputs(str(tmp_path / "mine.pt"))
    wait_idle(qtbot, empty_window)
    assert session.data is None and sum(b.shape[0] for b in session.loaded.probe_inputs) == 33
    assert session.loaded.module is before.module  # the same model, not loaded again from disk


def test_an_onnx_model_opens_through_the_form_and_the_file_filter_lists_it(qtbot, empty_window, tmp_path):
    import importlib.util

    from gui.widgets.open_dialog import MODEL_FILTER

    assert "*.onnx" in MODEL_FILTER.split(";;")[0]
    if importlib.util.find_spec("onnx2torch") is None:
        pytest.skip("onnx2torch is not installed: pip install --no-deps onnx2torch")
    from tests.test_onnx import SmallCNN, export_onnx

    export_onnx(SmallCNN(), tmp_path / "cnn.onnx")
    dialog = empty_window.opener.open_form()
    dialog.file.setText(str(tmp_path / "cnn.onnx"))
    dialog.accept()
    wait_idle(qtbot, empty_window)
    assert empty_window.session.loaded.format == "onnx"
    assert empty_window.table_model.rowCount() == 3  # conv1/Conv, conv2/Conv, fc/Gemm
