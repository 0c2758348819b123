"""Loading models: one loader per format, each recognising a file or passing it on.

:func:`load_model` asks each loader in :data:`LOADERS` in turn whether it recognises the spec (a zoo name, a
file, or a folder); the first that does loads it. A spec no loader accepts gets one message naming every
format tried. Loaders only ever read: the user's file is opened read-only and never written.

Pickles execute code. A whole pickled module is first read with ``torch.load(weights_only=True)``, which
runs nothing; if that fails because the file needs arbitrary classes, it is only unpickled when the caller
passes ``trust=True`` (``--trust`` on the command line, a confirmation naming the risk in the studio).
"""

from __future__ import annotations

import importlib
import os
import zipfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn

from core import zoo
from core.pickle_scan import pickle_globals


class ModelLoadError(ValueError):
    """The model could not be loaded; the message says why, in one line, and what to do."""


class UntrustedPickleError(ModelLoadError):
    """The file can only be loaded by unpickling it, which can run code from it, and it is not trusted."""

    def __init__(self, path: Path, needs: list[str], kind: str = "a pickled Python object") -> None:
        self.path = path
        self.needs = needs
        names = ", ".join(needs[:6]) + (" ..." if len(needs) > 6 else "")
        super().__init__(
            f"{path.name} is {kind}: loading it runs code stored in the file (it needs "
            f"{names or 'Python classes'}), which can do anything your user account can. Load it only if you "
            "trust where it came from: pass --trust (command line) or confirm in the studio.")


@dataclass(frozen=True)
class LoadOptions:
    """How to load: ``trust`` allows unpickling code; ``arch`` is ``package.module:factory`` or a zoo
    architecture for a bare state_dict; ``input_shape`` is a full input shape such as ``(1, 1, 28, 28)``."""

    trust: bool = False
    arch: str | None = None
    input_shape: tuple[int, ...] | None = None


@dataclass
class LoadedModel:
    """A model ready to inspect, with what is known about its inputs and provenance.

    ``probe_inputs`` are batches to call the model with when no data set is given (tensors, tuples, or
    keyword dicts); ``module_types`` overrides the type shown for a module (for graphs whose modules lost
    their classes, such as ``torch.export`` programs).
    """

    module: nn.Module
    name: str
    source: str
    format: str
    dataset: str | None = None
    input_shape: tuple[int, ...] | None = None
    classes: tuple[str, ...] | None = None
    probe_inputs: list[Any] = field(default_factory=list)
    module_types: dict[str, str] = field(default_factory=dict)
    file_bytes: int | None = None
    meta: dict[str, Any] = field(default_factory=dict)


class Loader(Protocol):
    format: str
    describes: str

    def can_load(self, spec: str) -> bool: ...

    def load(self, spec: str, options: LoadOptions) -> LoadedModel: ...


# ------------------------------------------------------------------------------------------------ helpers

def path_bytes(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


def _zip_names(path: Path) -> list[str]:
    try:
        with zipfile.ZipFile(path) as archive:
            return archive.namelist()
    except (zipfile.BadZipFile, OSError):
        return []


def _head(path: Path, n: int = 8) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read(n)
    except OSError:
        return b""


def _is_pickle(path: Path) -> bool:
    """A zip written by ``torch.save`` (with ``data.pkl``, no TorchScript code), or a legacy raw pickle."""
    names = _zip_names(path)
    if names:
        return any(n.endswith("/data.pkl") or n == "data.pkl" for n in names) and not any(
            "/code/" in n for n in names)
    head = _head(path, 2)
    return len(head) == 2 and head[0] == 0x80 and 2 <= head[1] <= 5


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


def import_factory(spec: str) -> nn.Module:
    """Build a model from ``package.module:factory`` (a class or function taking no arguments)."""
    if spec in zoo.ARCHITECTURES:
        return zoo.build(spec)
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise ModelLoadError(f"architecture {spec!r} must look like package.module:factory "
                             f"(or a zoo architecture: {', '.join(zoo.ARCHITECTURES)})")
    try:
        factory = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ModelLoadError(f"cannot import architecture {spec!r}: {exc}") from exc
    try:
        model = factory()
    except Exception as exc:
        raise ModelLoadError(f"architecture {spec!r} failed to build: {type(exc).__name__}: {exc}") from exc
    if not isinstance(model, nn.Module):
        raise ModelLoadError(f"architecture {spec!r} returned a {type(model).__name__}, not a torch.nn.Module")
    return model


def fit_state_dict(model: nn.Module, state: dict[str, torch.Tensor], arch: str) -> None:
    """Load ``state`` into ``model`` strictly, with one readable message when it does not fit."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    mismatched = [f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in expected.items()
                  if k in state and tuple(state[k].shape) != tuple(v.shape)]
    if missing or unexpected or mismatched:
        parts = []
        if missing:
            parts.append(f"missing {', '.join(missing[:4])}{' ...' if len(missing) > 4 else ''}")
        if unexpected:
            parts.append(f"unexpected {', '.join(unexpected[:4])}{' ...' if len(unexpected) > 4 else ''}")
        if mismatched:
            parts.append(f"shape (file vs model) {'; '.join(mismatched[:3])}{' ...' if len(mismatched) > 3 else ''}")
        raise ModelLoadError(f"the state_dict does not fit architecture {arch}: {'; '.join(parts)}")
    model.load_state_dict(state)


# ------------------------------------------------------------------------------------------------ loaders

class ZooLoader:
    format = "zoo"
    describes = "zoo name (zoo:NAME)"

    def can_load(self, spec: str) -> bool:
        return spec.startswith("zoo:")

    def load(self, spec: str, options: LoadOptions) -> LoadedModel:
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


class TorchScriptLoader:
    format = "torchscript"
    describes = "TorchScript (torch.jit.save)"

    def can_load(self, spec: str) -> bool:
        return any("/code/" in n for n in _zip_names(Path(spec)))

    def load(self, spec: str, options: LoadOptions) -> LoadedModel:
        path = Path(spec)
        if not options.trust:  # torch.jit.load unpickles the archive (PyTorch's docs: never on untrusted files)
            raise UntrustedPickleError(path, pickle_globals(path)[:6], "a TorchScript archive")
        try:
            module = torch.jit.load(str(path), map_location="cpu")
        except Exception as exc:
            raise ModelLoadError(f"{path.name}: corrupt TorchScript file ({str(exc).splitlines()[0]})") from exc
        types = {name: m.original_name for name, m in module.named_modules()}
        return LoadedModel(module.eval(), path.stem, str(path), self.format, input_shape=options.input_shape,
                           module_types=types, file_bytes=path_bytes(path))


class ExportedProgramLoader:
    format = "torch.export"
    describes = "torch.export program (.pt2)"

    def can_load(self, spec: str) -> bool:
        return any(n.endswith("archive_format") for n in _zip_names(Path(spec)))

    def load(self, spec: str, options: LoadOptions) -> LoadedModel:
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


class StateDictLoader:
    format = "state_dict"
    describes = "state_dict (.pt/.pth with --arch package.module:factory)"

    def can_load(self, spec: str) -> bool:
        path = Path(spec)
        if not path.is_file() or not _is_pickle(path):
            return False
        try:  # weights_only unpickling runs no code; anything needing classes is not a state_dict
            obj = torch.load(path, map_location="cpu", weights_only=True, mmap=bool(_zip_names(path)))
        except Exception:
            return False
        return _unwrap_state_dict(obj) is not None

    def load(self, spec: str, options: LoadOptions) -> LoadedModel:
        path = Path(spec)
        obj = torch.load(path, map_location="cpu", weights_only=True)
        state = _unwrap_state_dict(obj)
        assert state is not None
        meta = obj.get("meta", {}) if isinstance(obj, dict) and isinstance(obj.get("meta"), dict) else {}
        named = obj.get("arch") if isinstance(obj, dict) and obj.get("format") == zoo.CHECKPOINT_FORMAT else None
        # a file may only name a zoo architecture: importing a factory it names would run code it chose
        arch = options.arch or (named if named in zoo.ARCHITECTURES else None) or zoo.match_architecture(state)
        if arch is None:
            raise ModelLoadError(f"{path.name} holds only weights (a state_dict with {len(state)} tensors); "
                                 "say which architecture they belong to with --arch package.module:factory")
        model = import_factory(arch) if arch not in zoo.ARCHITECTURES else zoo.build(
            arch, int(meta.get("num_classes", 10)))
        fit_state_dict(model, state, arch)
        shape = options.input_shape or (tuple(meta["input_shape"]) if "input_shape" in meta else None)
        if shape is None and arch in zoo.ARCHITECTURES:
            shape = (1, 1, 28, 28)
        return LoadedModel(model.eval(), path.stem, str(path), self.format, dataset=meta.get("dataset"),
                           input_shape=shape, classes=tuple(meta["classes"]) if "classes" in meta else None,
                           file_bytes=path_bytes(path), meta={**meta, "arch": arch})


class HuggingFaceLoader:
    format = "huggingface"
    describes = "Hugging Face folder (save_pretrained; needs the [hf] extra)"

    def can_load(self, spec: str) -> bool:
        path = Path(spec)
        return path.is_dir() and (path / "config.json").is_file()

    def load(self, spec: str, options: LoadOptions) -> LoadedModel:
        from core.hf import load_hf_folder

        return load_hf_folder(Path(spec), options)


class PickledModuleLoader:
    format = "pickle"
    describes = "whole pickled module (torch.save(model); needs --trust)"

    def can_load(self, spec: str) -> bool:
        path = Path(spec)
        return path.is_file() and _is_pickle(path)

    def load(self, spec: str, options: LoadOptions) -> LoadedModel:
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


class CompressedLoader:
    format = "prunescope"
    describes = "Prunescope compressed file (.psz)"

    def can_load(self, spec: str) -> bool:
        path = Path(spec)
        return path.is_file() and _head(path, 4) == b"PSCZ"

    def load(self, spec: str, options: LoadOptions) -> LoadedModel:
        from core.compressed import load_compressed

        return load_compressed(Path(spec), options)


LOADERS: tuple[Loader, ...] = (ZooLoader(), CompressedLoader(), TorchScriptLoader(), ExportedProgramLoader(),
                               StateDictLoader(), HuggingFaceLoader(), PickledModuleLoader())


def _diagnose(path: Path) -> str:
    """Why no loader took an existing path, for the error message."""
    if path.is_dir():
        return "a folder without a Hugging Face config.json"
    size = path.stat().st_size
    if size == 0:
        return "an empty file"
    head = _head(path, 4)
    if head.startswith(b"PK"):
        return "a truncated or corrupt zip archive (PyTorch model files are zip archives)"
    if _is_pickle(path):
        return "a pickle that is truncated or corrupt"
    return "not a PyTorch model file"


def load_model(spec: str | os.PathLike, options: LoadOptions | None = None) -> LoadedModel:
    """Load a model from a zoo name (``zoo:lenet300``), a file, or a folder.

    Raises :class:`ModelLoadError` (one line, naming the formats tried when nothing fits) or its subclass
    :class:`UntrustedPickleError`. The model comes back in eval mode on the CPU.
    """
    options = options or LoadOptions()
    spec = str(spec)
    if not spec.startswith("zoo:"):
        path = Path(spec).expanduser()
        if not path.exists():
            raise ModelLoadError(f"{spec}: no such file or folder")
        if path.is_file() and not os.access(path, os.R_OK):
            raise ModelLoadError(f"{spec}: not readable (permission denied)")
        spec = str(path)
    for loader in LOADERS:
        if loader.can_load(spec):
            loaded = loader.load(spec, options)
            return _check_loaded(loaded)
    tried = "; ".join(loader.describes for loader in LOADERS)
    raise ModelLoadError(f"{Path(spec).name}: {_diagnose(Path(spec))}. Formats tried: {tried}")


def _check_loaded(loaded: LoadedModel) -> LoadedModel:
    if next(iter(loaded.module.parameters()), None) is None:
        raise ModelLoadError(f"{loaded.name}: the model has no parameters, so there is nothing to inspect or "
                             "compress")
    if loaded.input_shape is not None and not loaded.probe_inputs:
        loaded = replace(loaded, probe_inputs=[torch.rand(loaded.input_shape,
                                                          generator=torch.Generator().manual_seed(0))])
    return loaded


def parse_input_shape(text: str) -> tuple[int, ...]:
    """``"1,1,28,28"`` -> ``(1, 1, 28, 28)``, with a clear error for anything else."""
    try:
        shape = tuple(int(part) for part in text.replace("x", ",").split(",") if part.strip())
    except ValueError:
        raise ModelLoadError(f"input shape {text!r} must be comma-separated positive integers, "
                             "like 1,1,28,28") from None
    if not shape or any(d <= 0 for d in shape):
        raise ModelLoadError(f"input shape {text!r} must be comma-separated positive integers, like 1,1,28,28")
    return shape
