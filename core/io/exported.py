"""``torch.export`` programs (``.pt2``): loading one may unpickle parts of it, so only with trust.

The program comes wrapped in :class:`~core.io.program.CompiledProgram`, whose eager mirror of its layers
is what weight-level steps change; one exported for a fixed batch size is run in chunks of it."""

from __future__ import annotations

from pathlib import Path

from core.io.base import LoadedModel, LoadFn, LoadOptions, ModelLoadError, UntrustedPickleError
from core.io.files import path_bytes, zip_names
from core.io.program import load_program


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
            module, types, meta = load_program("torch.export", path.read_bytes())
        except Exception as exc:
            raise ModelLoadError(f"{path.name}: corrupt torch.export program ({str(exc).splitlines()[0]})") from exc
        example = meta.pop("example", None)
        shape, probes = options.input_shape, []
        if example is not None and shape is None:
            shape, probes = tuple(example.shape), [example]
        return LoadedModel(module, path.stem, str(path), self.format, input_shape=shape, probe_inputs=probes,
                           module_types=types, file_bytes=path_bytes(path), meta=meta)
