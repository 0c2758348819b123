"""``torch.export`` programs (``.pt2``): loading one may unpickle parts of it, so only with trust."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from core.io.base import LoadedModel, LoadFn, LoadOptions, ModelLoadError, UntrustedPickleError
from core.io.files import path_bytes, zip_names


class ExportedProgramLoader:
    format = "torch.export"
    describes = "torch.export program (.pt2)"

    def can_load(self, spec: str) -> bool:
        return any(n.endswith("archive_format") for n in zip_names(Path(spec)))

    def load(self, spec: str, options: LoadOptions, load: LoadFn) -> LoadedModel:
        path = Path(spec)
        if not options.trust:  # torch.export.load falls back to full unpickling for some parts of the archive
            raise UntrustedPickleError(path, ["its example inputs and any pickled constants"],
                                       "a torch.export program")
        try:
            program = torch.export.load(str(path))
        except Exception as exc:
            raise ModelLoadError(f"{path.name}: corrupt torch.export program ({str(exc).splitlines()[0]})") from exc
        module = program.module()
        types: dict[str, str] = {"": "ExportedProgram"}
        for node in program.graph.nodes:
            for qualified, type_ in (node.meta.get("nn_module_stack") or {}).values():
                name = type_.__name__ if isinstance(type_, type) else str(type_).rsplit(".", 1)[-1]
                types.setdefault(qualified, name)
        probes, shape, meta = [], options.input_shape, {}
        args = program.example_inputs[0] if program.example_inputs else ()
        if len(args) == 1 and isinstance(args[0], torch.Tensor) and args[0].ndim:
            if shape is None:
                shape, probes = tuple(args[0].shape), [args[0]]
            if not _accepts_batch(module, args[0]):
                _run_in_fixed_batches(module, args[0].shape[0])
                meta["fixed_batch"] = int(args[0].shape[0])
        return LoadedModel(module, path.stem, str(path), self.format, input_shape=shape, probe_inputs=probes,
                           module_types=types, file_bytes=path_bytes(path), meta=meta)


def _accepts_batch(module: nn.Module, example: torch.Tensor) -> bool:
    """Whether an exported program runs on a batch twice its example's size (a dynamic batch dimension)."""
    try:
        with torch.inference_mode():
            module(torch.cat([example, example]))
        return True
    except Exception:
        return False


def _run_in_fixed_batches(module: nn.Module, batch: int) -> None:
    """Make a program exported for a fixed batch size take any batch, by running it ``batch`` at a time.

    The last chunk is padded with copies of its first example and the padding's outputs are dropped.
    """
    original = module.forward

    def forward(x: torch.Tensor) -> torch.Tensor:
        outputs = []
        for start in range(0, x.shape[0], batch):
            chunk = x[start:start + batch]
            n = chunk.shape[0]
            if n < batch:
                chunk = torch.cat([chunk, chunk[:1].expand(batch - n, *chunk.shape[1:])])
            outputs.append(original(chunk)[:n])
        return torch.cat(outputs)

    module.forward = forward
