"""Bare state_dicts and checkpoints holding one, with the architecture named by ``--arch`` or the zoo.

Read with ``torch.load(weights_only=True)``, which runs no code.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from core.eval import zoo
from core.io.architectures import factory_of, strip_wrapper_prefixes, with_weights
from core.io.base import LoadedModel, LoadFn, LoadOptions, ModelLoadError, NeedsArchitecture
from core.io.files import is_pickle, load_weights_only, path_bytes, zip_names


def _tensor_dict(obj: Any) -> dict[str, torch.Tensor] | None:
    if isinstance(obj, dict) and obj and all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                             for k, v in obj.items()):
        return obj
    return None


def _unwrap_state_dict(obj: Any) -> dict[str, torch.Tensor] | None:
    """The state_dict inside a checkpoint: the dict itself, or under a common key."""
    direct = _tensor_dict(obj)
    if direct is not None:
        return direct
    if isinstance(obj, dict):
        for key in ("state_dict", "model_state_dict", "model", "net", "weights"):
            inner = _tensor_dict(obj.get(key))
            if inner is not None:
                return inner
    return None


class StateDictLoader:
    format = "state_dict"
    describes = "state_dict (.pt/.pth with --arch package.module:factory)"

    def can_load(self, spec: str) -> bool:
        path = Path(spec)
        if not path.is_file() or not is_pickle(path):
            return False
        try:  # weights_only unpickling runs no code; anything needing classes is not a state_dict
            obj = load_weights_only(path, mmap=bool(zip_names(path)))
        except Exception:
            return False
        return _unwrap_state_dict(obj) is not None

    def load(self, spec: str, options: LoadOptions, load: LoadFn) -> LoadedModel:
        path = Path(spec)
        obj = load_weights_only(path)
        state = _unwrap_state_dict(obj)
        assert state is not None
        meta = obj.get("meta", {}) if isinstance(obj, dict) and isinstance(obj.get("meta"), dict) else {}
        named = obj.get("arch") if isinstance(obj, dict) and obj.get("format") == zoo.CHECKPOINT_FORMAT else None
        # a file may only name a zoo architecture: importing a factory it names would run code it chose
        arch = (options.arch or (named if named in zoo.ARCHITECTURES else None)
                or zoo.match_architecture(strip_wrapper_prefixes(state)[0]))  # DataParallel's names too
        if arch is None:
            raise NeedsArchitecture(f"{path.name} holds only weights (a state_dict with {len(state)} tensors); "
                                    "say which architecture they belong to with --arch package.module:factory "
                                    "or --arch path/to/file.py:factory")
        factory = (factory_of(arch) if arch not in zoo.ARCHITECTURES
                   else lambda: zoo.build(arch, int(meta.get("num_classes", 10))))
        notes: list[str] = []
        model = with_weights(factory, state, arch, notes)
        shape = options.input_shape or (tuple(meta["input_shape"]) if "input_shape" in meta else None)
        if shape is None and arch in zoo.ARCHITECTURES:
            shape = (1, 1, 28, 28)
        return LoadedModel(model.eval(), path.stem, str(path), self.format, dataset=meta.get("dataset"),
                           input_shape=shape, classes=tuple(meta["classes"]) if "classes" in meta else None,
                           file_bytes=path_bytes(path),
                           meta={**meta, "arch": arch, "notes": notes})  # the loader's notes, never the file's
