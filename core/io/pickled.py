"""Whole pickled modules (``torch.save(model)``): unpickled only when trusted, since that runs code."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from core.io.base import LoadedModel, LoadFn, LoadOptions, ModelLoadError, UntrustedPickleError
from core.io.files import is_pickle, path_bytes
from core.io.pickle_scan import pickle_globals


class PickledModuleLoader:
    format = "pickle"
    describes = "whole pickled module (torch.save(model); needs --trust)"

    def can_load(self, spec: str) -> bool:
        path = Path(spec)
        return path.is_file() and is_pickle(path)

    def load(self, spec: str, options: LoadOptions, load: LoadFn) -> LoadedModel:
        path = Path(spec)
        if not options.trust:
            needs = pickle_globals(path)  # what it would call, read without running any of it
            if not needs:
                raise ModelLoadError(f"{path.name}: a pickle that is truncated or corrupt, or that holds no model")
            raise UntrustedPickleError(path, needs)
        try:
            obj = torch.load(path, map_location="cpu", weights_only=False)
        except (AttributeError, ModuleNotFoundError) as exc:
            raise ModelLoadError(f"{path.name}: the pickle refers to code that is not importable here ({exc}); "
                                 "save a state_dict instead, or make the model's module importable") from exc
        except Exception as exc:
            raise ModelLoadError(f"{path.name}: cannot unpickle ({type(exc).__name__}: {exc})") from exc
        if not isinstance(obj, nn.Module):
            raise ModelLoadError(f"{path.name}: the pickle holds a {type(obj).__name__}, not a torch.nn.Module")
        return LoadedModel(obj.eval(), path.stem, str(path), self.format, input_shape=options.input_shape,
                           file_bytes=path_bytes(path), meta={"trusted": True})
