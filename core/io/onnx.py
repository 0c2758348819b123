"""ONNX models (``.onnx``), converted to PyTorch by onnx2torch (the ``[onnx]`` extra, imported on first use).

An ONNX file is a protobuf: it holds no pickles and no code. onnx2torch builds every node from its own
registry of converters (torch modules the package defines), keyed by op type and opset, so the file only
chooses among those; no trust is needed. The result is a ``torch.fx.GraphModule`` that calls one eager
module per ONNX node, so per-layer hooks run and the layers prune and quantize like any model's.

Weights kept in external data files (``model.onnx`` + ``model.onnx.data``) are read from beside the model:
onnx itself refuses a location outside the model's folder, and every file is checked as any input is.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import sys
import types
from pathlib import Path

import numpy as np
import torch

from core.errors import one_line
from core.fileio import check_input
from core.io.base import LoadedModel, LoadFn, LoadOptions, ModelLoadError
from core.io.files import MAX_MODEL_BYTES, path_bytes

TORCHVISION_OPS = ("NonMaxSuppression", "RoiAlign")
"""The ops whose onnx2torch converters call torchvision (its ``nms.py`` and ``roialign.py``)."""
INSTALL = "pip install -e '.[onnx]' && pip install --no-deps onnx2torch"


def _torchvision_works() -> bool:
    if importlib.util.find_spec("torchvision") is None:
        return False
    try:
        import torchvision  # noqa: F401
        return True
    except Exception:  # PyPI's CUDA build beside a CPU torch: "operator torchvision::nms does not exist"
        return False


def _not_installed(*args, **kwargs):
    raise RuntimeError("torchvision is not installed")


def _any_function(name: str):
    if name.startswith("__"):  # what inspect and pickle ask a module: it has none of them
        raise AttributeError(name)
    return _not_installed


@contextlib.contextmanager
def _placeholder_torchvision():
    """A stand-in ``torchvision`` while onnx2torch imports, taken out of ``sys.modules`` again afterwards.

    onnx2torch imports torchvision at the top of the two converters that use it; everything else runs on
    torch alone, and a CPU torch from PyPI has no torchvision there that loads beside it. The stand-in's
    functions are never called: :func:`unsupported_ops` refuses :data:`TORCHVISION_OPS` first."""
    ops = types.ModuleType("torchvision.ops")
    ops.__getattr__ = _any_function
    package = types.ModuleType("torchvision")
    package.ops = ops
    saved = {key: sys.modules.get(key) for key in ("torchvision", "torchvision.ops")}
    sys.modules.update({"torchvision": package, "torchvision.ops": ops})
    try:
        yield
    finally:
        for key, module in saved.items():
            if module is None:
                sys.modules.pop(key, None)
            else:
                sys.modules[key] = module


@functools.cache
def onnx2torch_module():
    """The ``onnx2torch`` package and whether torchvision works beside it; ModelLoadError without it."""
    if importlib.util.find_spec("onnx2torch") is None or importlib.util.find_spec("onnx") is None:
        raise ModelLoadError(f"ONNX models need onnx and onnx2torch: {INSTALL}")
    with_torchvision = _torchvision_works()
    imported = with_torchvision or "onnx2torch" in sys.modules
    with contextlib.nullcontext() if imported else _placeholder_torchvision():
        import onnx2torch
    return onnx2torch, with_torchvision


def unsupported_ops(proto, with_torchvision: bool) -> list[str]:
    """The graph's op types onnx2torch has no converter for (at the model's opset), in graph order."""
    from onnx2torch.node_converters.registry import _CONVERTER_REGISTRY, get_converter

    opsets = {o.domain: o.version for o in proto.opset_import}
    known = {(d.domain, d.operation_type) for d in _CONVERTER_REGISTRY}
    missing: dict[str, None] = {}
    for node in proto.graph.node:
        name = f"{node.domain}.{node.op_type}" if node.domain else node.op_type
        if node.op_type in TORCHVISION_OPS and not node.domain and not with_torchvision:
            missing[f"{name} (needs torchvision)"] = None
            continue
        try:
            get_converter(operation_type=node.op_type, version=opsets.get(node.domain, 1), domain=node.domain)
        except NotImplementedError:
            at = f" (opset {opsets.get(node.domain, 1)})" if (node.domain, node.op_type) in known else ""
            missing[name + at] = None
    return list(missing)


def _read_proto(path: Path):
    import onnx

    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # protobuf's DecodeError and friends
        raise ModelLoadError(one_line(f"{path.name}: not a valid ONNX file ({type(exc).__name__}: "
                                      f"{str(exc)[:160]})")) from None
    if not proto.graph.node:
        raise ModelLoadError(one_line(f"{path.name}: not a valid ONNX model (its graph has no nodes)"))
    external = sorted({entry.value for t in _tensors(proto) if t.data_location == onnx.TensorProto.EXTERNAL
                       for entry in t.external_data if entry.key == "location"})
    for location in external:
        where = path.parent / location
        if not where.exists():
            raise ModelLoadError(one_line(f"{path.name}: its weights are in {location}, which is not beside it "
                                          f"in {path.parent}; put the data file next to the model"))
        check_input(where, MAX_MODEL_BYTES, "ONNX external data file", error=ModelLoadError)
    try:
        onnx.checker.check_model(str(path))  # the path form reads external data with onnx's own checks
        if external:
            onnx.load_external_data_for_model(proto, str(path.parent))
    except Exception as exc:
        raise ModelLoadError(one_line(f"{path.name}: not a valid ONNX model ({str(exc).strip()[:200]})")) from None
    return proto, sum(path_bytes(path.parent / location) for location in external)


def _tensors(proto):
    yield from proto.graph.initializer
    for node in proto.graph.node:
        for attribute in node.attribute:
            if attribute.HasField("t"):
                yield attribute.t


def graph_inputs(proto, input_shape: tuple[int, ...] | None) -> tuple[tuple[int, ...] | None, list]:
    """The input shape (single float input) and the probe inputs: the graph's own static dimensions, a
    dynamic first (batch) dimension as 1; ``(None, [])`` where another dimension is unknown."""
    import onnx

    initializers = {t.name for t in proto.graph.initializer}
    inputs = [v for v in proto.graph.input if v.name not in initializers]
    shapes, dtypes = [], []
    for value in inputs:
        tensor_type = value.type.tensor_type
        dims = [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None
                for d in tensor_type.shape.dim]
        if dims and dims[0] is None:
            dims[0] = 1
        if None in dims or not tensor_type.HasField("elem_type"):
            return input_shape, []
        shapes.append(tuple(dims))
        dtypes.append(onnx.helper.tensor_dtype_to_np_dtype(tensor_type.elem_type))
    if len(inputs) == 1 and np.issubdtype(dtypes[0], np.floating):
        return input_shape or shapes[0], []  # the loader's own probe: seeded uniform values of this shape
    if input_shape or not inputs:
        return input_shape, []
    probe = tuple(torch.from_numpy(np.zeros(s, d)) for s, d in zip(shapes, dtypes))
    return None, [probe[0] if len(probe) == 1 else probe]


def module_types(proto, module: torch.nn.Module) -> dict[str, str]:
    """Each converted module's type as the ONNX op it came from, with the torch module it became."""
    from onnx2torch.onnx_graph import OnnxGraph  # the converter's own node names are the module names

    types_ = {"": "ONNX graph"}
    modules = dict(module.named_modules())
    for name, node in OnnxGraph(proto.graph).nodes.items():
        if name in modules:
            torch_type = type(modules[name]).__name__
            op = node.operation_type
            types_[name] = op if torch_type in (op, f"Onnx{op}") else f"{op} ({torch_type})"
    return types_


class OnnxLoader:
    format = "onnx"
    describes = "ONNX model (.onnx, with onnx2torch)"

    def can_load(self, spec: str) -> bool:
        path = Path(spec)
        return path.suffix.lower() == ".onnx" and path.is_file()

    def load(self, spec: str, options: LoadOptions, load: LoadFn) -> LoadedModel:
        path = Path(spec)
        onnx2torch, with_torchvision = onnx2torch_module()
        proto, external_bytes = _read_proto(path)
        missing = unsupported_ops(proto, with_torchvision)
        if missing:
            raise ModelLoadError(one_line(f"{path.name}: cannot convert ONNX op(s) {', '.join(missing)} to "
                                          "PyTorch (onnx2torch does not support them)"))
        try:
            module = onnx2torch.convert(proto)
        except Exception as exc:
            raise ModelLoadError(one_line(f"{path.name}: onnx2torch could not convert it ({type(exc).__name__}: "
                                          f"{str(exc)[:200]})")) from None
        if next(module.parameters(), None) is None and next(module.buffers(), None) is not None:
            raise ModelLoadError(one_line(f"{path.name}: onnx2torch keeps all its weights as constants (inputs of "
                                          "ops such as MatMul, not Gemm or Conv layers), so there are no layers to "
                                          "inspect or compress"))
        shape, probes = graph_inputs(proto, options.input_shape)
        return LoadedModel(module.eval(), path.stem, str(path), self.format, input_shape=shape, probe_inputs=probes,
                           module_types=module_types(proto, module), file_bytes=path_bytes(path) + external_bytes,
                           meta={"opset": {o.domain or "ai.onnx": o.version for o in proto.opset_import}})
