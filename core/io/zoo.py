"""Zoo models: ``zoo:NAME``, a shipped checkpoint of a zoo architecture."""

from __future__ import annotations

from core.eval import zoo
from core.io.base import LoadedModel, LoadFn, LoadOptions, ModelLoadError


class ZooLoader:
    format = "zoo"
    describes = "zoo name (zoo:NAME)"

    def can_load(self, spec: str) -> bool:
        return spec.startswith("zoo:")

    def load(self, spec: str, options: LoadOptions, load: LoadFn) -> LoadedModel:
        name = spec.removeprefix("zoo:")
        try:
            module, meta = zoo.load_zoo_model(name)
        except zoo.ZooError as exc:
            raise ModelLoadError(str(exc)) from exc
        entry = zoo.zoo_entry(name)
        return LoadedModel(module, name, spec, self.format, dataset=entry.dataset,
                           input_shape=options.input_shape or entry.input_shape,
                           classes=tuple(meta.get("classes", ())) or None,
                           file_bytes=entry.checkpoint.stat().st_size,
                           meta={**meta, "description": entry.description})
