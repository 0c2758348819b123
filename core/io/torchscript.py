"""TorchScript archives (``torch.jit.save``): loading one unpickles it, so only with trust.

The program comes wrapped in :class:`~core.io.program.CompiledProgram`, whose eager mirror of its layers
is what weight-level steps change."""

from __future__ import annotations

from pathlib import Path

from core.io.base import LoadedModel, LoadFn, LoadOptions, ModelLoadError, UntrustedPickleError
from core.io.files import path_bytes, zip_names
from core.io.pickle_scan import pickle_globals
from core.io.program import load_program


class TorchScriptLoader:
    format = "torchscript"
    describes = "TorchScript (torch.jit.save)"

    def can_load(self, spec: str) -> bool:
        return any("/code/" in n for n in zip_names(Path(spec)))

    def load(self, spec: str, options: LoadOptions, load: LoadFn) -> LoadedModel:
        path = Path(spec)
        if not options.trust:  # torch.jit.load unpickles the archive (PyTorch's docs: never on untrusted files)
            raise UntrustedPickleError(path, pickle_globals(path), "a TorchScript archive")
        try:
            module, types, _ = load_program("torchscript", path.read_bytes())
        except Exception as exc:
            raise ModelLoadError(f"{path.name}: corrupt TorchScript file ({str(exc).splitlines()[0]})") from exc
        return LoadedModel(module.eval(), path.stem, str(path), self.format, input_shape=options.input_shape,
                           module_types=types, file_bytes=path_bytes(path))
