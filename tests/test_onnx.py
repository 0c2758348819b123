"""ONNX models: made here with torch's exporter, opened through onnx2torch, inspected, compressed, and exported
back to ONNX, whose outputs (onnx's own reference runtime) match the compressed model's."""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import sys
import warnings

import numpy as np
import pytest
import torch
from torch import nn

from core.io import LoadOptions, ModelLoadError, load_model
from tests.test_cli import prunescope

pytestmark = pytest.mark.skipif(importlib.util.find_spec("onnx2torch") is None,
                                reason="onnx2torch is not installed: pip install --no-deps onnx2torch")
onnx = pytest.importorskip("onnx")
RECIPE = "resources/recipes/prune-quantize-no-training.yaml"


class SmallCNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.bn = nn.Conv2d(1, 8, 3), nn.BatchNorm2d(8)
        self.conv2, self.fc = nn.Conv2d(8, 16, 3), nn.Linear(16 * 4 * 4, 10)

    def forward(self, x):
        x = torch.max_pool2d(torch.relu(self.bn(self.conv1(x))), 2)
        return self.fc(torch.flatten(torch.relu(self.conv2(x)), 1))


def small_mlp() -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(196, 32), nn.ReLU(), nn.Linear(32, 10))


def export_onnx(model: nn.Module, path, **kwargs) -> None:
    """``model`` as an ONNX file with a dynamic batch dimension. The legacy exporter: the dynamo one writes
    opset 18+ Reshape, which onnx2torch 1.5 does not convert."""
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        torch.onnx.export(model.eval(), (torch.rand(2, 1, 14, 14),), str(path), dynamo=False, input_names=["x"],
                          dynamic_axes={"x": {0: "batch"}}, **kwargs)


@pytest.fixture(scope="module")
def cnn(tmp_path_factory):
    torch.manual_seed(0)
    model = SmallCNN().eval()
    with torch.no_grad():  # BatchNorm statistics that are not the identity, folded into conv1 by the exporter
        model.bn.running_mean.uniform_(-0.2, 0.2)
        model.bn.running_var.uniform_(0.5, 2.0)
    path = tmp_path_factory.mktemp("onnx") / "cnn.onnx"
    export_onnx(model, path)
    return model, path


def reference_outputs(path, x: torch.Tensor) -> np.ndarray:
    from onnx.reference import ReferenceEvaluator

    proto = onnx.load(str(path))
    return ReferenceEvaluator(proto).run(None, {proto.graph.input[0].name: x.numpy()})[0]


@pytest.mark.parametrize("make", [SmallCNN, small_mlp])
def test_an_onnx_file_loads_and_computes_what_the_torch_model_did(tmp_path, make):
    torch.manual_seed(1)
    model = make().eval()
    path = tmp_path / "model.onnx"
    export_onnx(model, path)
    loaded = load_model(path)
    assert loaded.format == "onnx" and loaded.name == "model" and loaded.file_bytes == path.stat().st_size
    assert loaded.input_shape == (1, 1, 14, 14)  # the dynamic batch dimension becomes 1
    x = torch.rand(5, 1, 14, 14)  # and any batch runs
    with torch.no_grad():
        assert torch.allclose(loaded.module(x), model(x), atol=1e-5)
    layers = {n: t for n, t in loaded.module_types.items() if "Gemm" in t or "Conv" in t}
    assert len(layers) == (3 if make is SmallCNN else 2)  # BatchNorm folded into conv1
    assert all(t in ("Gemm (Linear)", "Conv (Conv2d)") for t in layers.values())


def test_an_onnx2torch_graph_is_an_eager_model_and_a_torch_export_program_is_not(cnn, model_files):
    from core.analysis.activations import compiled_graph

    assert isinstance(load_model(cnn[1]).module, torch.fx.GraphModule)
    assert not compiled_graph(load_model(cnn[1]).module)
    exported = load_model(model_files["export"], LoadOptions(trust=True)).module
    assert compiled_graph(exported.program)  # hooks do not run in it: it comes wrapped, its layers mirrored
    assert not compiled_graph(exported)


def test_inspect_reports_layers_and_activations_and_leaves_the_file_alone(cnn, tmp_path, untouched):
    untouched(cnn[1])
    report = tmp_path / "r.json"
    result = prunescope("inspect", str(cnn[1]), "--json", str(report), "--quiet")
    assert result.returncode == 0, result.stderr
    r = json.loads(report.read_text())
    layers = {layer["name"]: layer for layer in r["layers"]}
    assert set(layers) == {"conv1/Conv", "conv2/Conv", "fc/Gemm"}
    assert layers["conv2/Conv"]["type"] == "Conv (Conv2d)" and layers["conv2/Conv"]["params"] == 16 * 8 * 9 + 16
    assert len(layers["conv2/Conv"]["activation_nonzero"]) == 16  # forward hooks ran on the converted modules


def test_compress_reloads_on_its_source_and_exports_back_to_onnx(cnn, tmp_path, untouched):
    untouched(cnn[1])
    out = tmp_path / "out"
    result = prunescope("compress", str(cnn[1]), "--recipe", RECIPE, "--out", str(out), "--export", "onnx",
                        "--quiet")
    assert result.returncode == 0, result.stderr
    with pytest.raises(ModelLoadError, match="--source"):  # a .psz never opens the path it records
        load_model(out / "cnn.psz")
    compressed = load_model(out / "cnn.psz", LoadOptions(source=str(cnn[1])))
    weight = compressed.module.get_submodule("fc/Gemm").weight
    assert 0.6 < (weight == 0).float().mean() < 0.8 and len(weight.unique()) <= 2 ** 5 + 1  # pruned, 5-bit codes
    exported = out / "cnn.decompressed.onnx"
    onnx.checker.check_model(onnx.load(str(exported)), full_check=True)
    x = torch.rand(1, 1, 14, 14)
    with torch.no_grad():
        expected = compressed.module(x).numpy()
    assert np.allclose(reference_outputs(exported, x), expected, atol=1e-5)
    assert not np.allclose(reference_outputs(cnn[1], x), expected, atol=1e-3)  # it is the compressed model


def test_structural_steps_replay_on_the_onnx_source(cnn, tmp_path):
    from core.pipeline.apply import apply_recipe
    from core.progress import run
    from core.recipe import Recipe

    loaded = load_model(cnn[1])
    recipe = Recipe.from_text("steps: [{kind: prune_structured, amount: 0.5}, {kind: low_rank, rank: 4, layers: "
                              "[fc/Gemm]}, {kind: quantize, bits: 4}, {kind: encode}]")
    result = run(apply_recipe(recipe, loaded, None))
    (tmp_path / "cnn.psz").write_bytes(result.file_bytes)
    reloaded = load_model(tmp_path / "cnn.psz", LoadOptions(source=str(cnn[1])))
    assert reloaded.module.get_submodule("conv2/Conv").out_channels == 8
    assert reloaded.module.get_submodule("fc/Gemm.0").out_features == 4
    x = torch.rand(3, 1, 14, 14)
    with torch.no_grad():
        assert torch.allclose(reloaded.module(x), result.model(x), atol=1e-5)


def custom_op_model(path, *ops: tuple[str, str], last: str = "Gemm") -> None:
    """A graph of a Relu, then ``ops`` (domain, type), each of one input and one output, then ``last`` (Gemm
    or MatMul) by a 4x4 weight of ones."""
    from onnx import TensorProto, helper

    nodes = [helper.make_node("Relu", ["x"], ["y0"])]
    for i, (domain, op) in enumerate(ops):
        nodes.append(helper.make_node(op, [f"y{i}"], [f"y{i + 1}"], domain=domain))
    weight = helper.make_tensor("w", TensorProto.FLOAT, [4, 4], np.ones(16, np.float32))
    nodes.append(helper.make_node(last, [f"y{len(ops)}", "w"], ["out"]))
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 4])], [weight])
    domains = {d for d, _ in ops if d}
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17),
                                                    *(helper.make_opsetid(d, 1) for d in sorted(domains))])
    path.write_bytes(model.SerializeToString())


def test_ops_onnx2torch_cannot_convert_are_named_in_one_line(tmp_path, untouched):
    path = tmp_path / "custom.onnx"
    custom_op_model(path, ("com.example", "Frobnicate"), ("com.example", "Twiddle"), ("com.example", "Frobnicate"))
    untouched(path)
    with pytest.raises(ModelLoadError) as caught:
        load_model(path)
    assert str(caught.value) == ("custom.onnx: cannot convert ONNX op(s) com.example.Frobnicate, "
                                 "com.example.Twiddle to PyTorch (onnx2torch does not support them)")
    result = prunescope("inspect", str(path))
    assert result.returncode == 2 and result.stderr.strip().splitlines() == [f"prunescope: error: {caught.value}"]


def test_a_plain_onnx_graph_of_supported_ops_loads(tmp_path):
    path = tmp_path / "plain.onnx"
    custom_op_model(path, ("", "Sigmoid"))
    loaded = load_model(path)
    x = torch.rand(1, 4)
    assert torch.allclose(loaded.module(x), torch.sigmoid(torch.relu(x)) @ torch.ones(4, 4))
    assert loaded.module_types["Gemm"] == "Gemm (Linear)"


def test_weights_onnx2torch_keeps_as_constants_are_no_layers_and_say_so(tmp_path):
    path = tmp_path / "matmul.onnx"
    custom_op_model(path, last="MatMul")
    with pytest.raises(ModelLoadError, match=r"^matmul\.onnx: onnx2torch keeps all its weights as constants"):
        load_model(path)


@pytest.mark.parametrize("content", [b"", b"\x08\x07garbage that is not protobuf \xff\xff\xff", "truncated"])
def test_a_corrupt_onnx_file_is_refused_in_one_line(cnn, tmp_path, content):
    path = tmp_path / "bad.onnx"
    path.write_bytes(cnn[1].read_bytes()[:200] if content == "truncated" else content)
    with pytest.raises(ModelLoadError, match=r"^bad\.onnx: (not a valid ONNX|an empty file)") as caught:
        load_model(path)
    assert "\n" not in str(caught.value)


def test_weights_in_an_external_data_file_load_and_a_missing_one_is_named(cnn, tmp_path):
    model = onnx.load(str(cnn[1]))
    path = tmp_path / "ext.onnx"
    onnx.save_model(model, str(path), save_as_external_data=True, location="ext.onnx.data", size_threshold=0)
    loaded = load_model(path)
    x = torch.rand(2, 1, 14, 14)
    with torch.no_grad():
        assert torch.allclose(loaded.module(x), cnn[0](x), atol=1e-5)
    assert loaded.file_bytes == path.stat().st_size + (tmp_path / "ext.onnx.data").stat().st_size
    (tmp_path / "ext.onnx.data").unlink()
    with pytest.raises(ModelLoadError, match=r"^ext\.onnx: its weights are in ext\.onnx\.data, which is not "):
        load_model(path)


def test_without_onnx2torch_the_message_says_how_to_install(monkeypatch):
    from core.io import onnx as onnx_loader

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnx2torch" else real(name, *a))
    with pytest.raises(ModelLoadError, match=r"need onnx and onnx2torch: pip install .*--no-deps onnx2torch"):
        onnx_loader.onnx2torch_module.__wrapped__()


def test_the_torchvision_stand_in_is_gone_after_import(cnn, tmp_path):
    from core.io.onnx import onnx2torch_module

    load_model(cnn[1])
    _, with_torchvision = onnx2torch_module()
    if with_torchvision:
        pytest.skip("torchvision works here: onnx2torch imported it, no stand-in was used")
    assert "torchvision" not in sys.modules and "torchvision.ops" not in sys.modules
    from onnx import TensorProto, helper

    node = helper.make_node("RoiAlign", ["x", "rois", "index"], ["out"], output_height=2, output_width=2)
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 4, 4]),
              helper.make_tensor_value_info("rois", TensorProto.FLOAT, [1, 4]),
              helper.make_tensor_value_info("index", TensorProto.INT64, [1])]
    output = helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 1, 2, 2])
    graph = helper.make_graph([node], "g", inputs, [output])
    path = tmp_path / "roi.onnx"
    path.write_bytes(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString())
    with pytest.raises(ModelLoadError, match=r"op\(s\) RoiAlign \(needs torchvision\) to PyTorch"):
        load_model(path)


def test_an_external_data_location_outside_the_models_folder_is_refused(cnn, tmp_path):
    (tmp_path / "secret.bin").write_bytes(b"\0" * 4096)
    model = onnx.load(str(cnn[1]))
    tensor = model.graph.initializer[0]
    tensor.ClearField("raw_data")
    tensor.data_location = onnx.TensorProto.EXTERNAL
    entry = tensor.external_data.add()
    entry.key, entry.value = "location", "../secret.bin"
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "m.onnx").write_bytes(model.SerializeToString())
    with pytest.raises(ModelLoadError, match=r"^m\.onnx: not a valid ONNX model \(.*points outside the directory"):
        load_model(tmp_path / "sub" / "m.onnx")
