"""Exporting a (decompressed) model: a state_dict, a TorchScript file, or ONNX (the ``[onnx]`` extra)."""

from __future__ import annotations

import contextlib
import io
import logging
import os
import warnings

import torch
from torch import nn

from core.errors import PrunescopeError
from core.fileio import atomic_write

FORMATS = ("state_dict", "torchscript", "onnx")
SUFFIX = {"state_dict": ".pt", "torchscript": ".ts.pt", "onnx": ".onnx"}


class ExportError(PrunescopeError):
    """An export could not be made; the message says why."""


def export(model: nn.Module, example: torch.Tensor, fmt: str, path: str | os.PathLike) -> None:
    """Write ``model`` to ``path`` in format ``fmt`` (see :data:`FORMATS`), atomically."""
    data = export_bytes(model, example, fmt)
    with atomic_write(path) as f:
        f.write(data)


def export_bytes(model: nn.Module, example: torch.Tensor, fmt: str) -> bytes:
    """``model`` as the bytes of a file in format ``fmt`` (see :data:`FORMATS`)."""
    model = model.eval()
    buffer = io.BytesIO()
    if fmt == "state_dict":
        torch.save(model.state_dict(), buffer)
    elif fmt == "torchscript":
        with warnings.catch_warnings():  # TorchScript is deprecated upstream but still what many runtimes load
            warnings.filterwarnings("ignore", category=DeprecationWarning, message=r".*torch\.jit")
            if getattr(model, "kind", None) == "torchscript":  # a compiled TorchScript program: itself, as it now is
                model.sync()
                scripted = model.program
            else:
                try:
                    scripted = torch.jit.script(model)
                except Exception:
                    scripted = torch.jit.trace(model, example)
            torch.jit.save(scripted, buffer)
    elif fmt == "onnx":
        try:
            import onnx  # noqa: F401
            import onnxscript  # noqa: F401
        except ImportError:
            raise ExportError("ONNX export needs the optional onnx packages: pip install -e '.[onnx]'") from None
        # the exporter prints progress, logs about torchvision, and trips over torch's own deprecations
        onnx_log = logging.getLogger("torch.onnx")
        level = onnx_log.level
        onnx_log.setLevel(logging.ERROR)
        try:
            with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)
                warnings.simplefilter("ignore", DeprecationWarning)
                torch.onnx.export(model, (example,), buffer, dynamo=True, verbose=False)
        finally:
            onnx_log.setLevel(level)
    else:
        raise ExportError(f"unknown export format {fmt!r}; known: {', '.join(FORMATS)}")
    return buffer.getvalue()
