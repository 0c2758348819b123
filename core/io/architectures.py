"""Building an architecture to load weights into: a zoo architecture or a ``package.module:factory``.

Importing a factory runs its code, so only factories the person names (``--arch``) are imported; a file
may only ever name a zoo architecture by itself.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Callable, Iterable
from pathlib import Path

import torch
from torch import nn

from core.eval import zoo
from core.io.base import ModelLoadError


def factory_of(spec: str) -> Callable[[], nn.Module]:
    """The callable ``package.module:factory`` names (or a zoo architecture's builder), imported."""
    if spec in zoo.ARCHITECTURES:
        return lambda: zoo.build(spec)
    module_name, sep, attr = spec.rpartition(":")
    if not sep or not module_name or not attr:
        raise ModelLoadError(f"architecture {spec!r} must look like package.module:factory or "
                             f"path/to/file.py:factory (or a zoo architecture: {', '.join(zoo.ARCHITECTURES)})")
    try:
        module = _module_from_file(module_name) if module_name.endswith(".py") else importlib.import_module(module_name)
        return getattr(module, attr)
    except ModuleNotFoundError as exc:
        hint = ""
        if exc.name and module_name.split(".")[0] == exc.name.split(".")[0]:
            hint = (f"; put the folder that holds {exc.name.split('.')[0]} on PYTHONPATH, or name the file: "
                    f"--arch path/to/{module_name.replace('.', '/')}.py:{attr}")
        raise ModelLoadError(f"cannot import architecture {spec!r}: {exc}{hint}") from exc
    except (ImportError, AttributeError) as exc:
        raise ModelLoadError(f"cannot import architecture {spec!r}: {exc}") from exc


def _module_from_file(path_text: str):
    """Import a ``.py`` file as a module; its folder goes on the import path, so that it can import the
    modules beside it (as running it as a script would)."""
    path = Path(path_text).expanduser().resolve()
    if not path.is_file():
        raise ModelLoadError(f"architecture file {path_text} does not exist")
    folder = str(path.parent)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    name = path.stem
    existing = sys.modules.get(name)
    if existing is not None and Path(getattr(existing, "__file__", "") or "").resolve() == path:
        return existing
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ModelLoadError(f"architecture file {path_text} cannot be imported")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # pickles and torch.save of its classes find them by module name
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        sys.modules.pop(name, None)
        raise ModelLoadError(f"architecture file {path.name} failed to import: {type(exc).__name__}: {exc}") from exc
    return module


def build(factory: Callable[[], nn.Module], spec: str) -> nn.Module:
    try:
        model = factory()
    except Exception as exc:
        raise ModelLoadError(f"architecture {spec!r} failed to build: {type(exc).__name__}: {exc}") from exc
    if not isinstance(model, nn.Module):
        raise ModelLoadError(f"architecture {spec!r} returned a {type(model).__name__}, not a torch.nn.Module")
    return model


def import_factory(spec: str) -> nn.Module:
    """Build a model from ``package.module:factory`` (a class or function taking no arguments)."""
    return build(factory_of(spec), spec)


WRAPPER_PREFIXES = {"module.": "DataParallel or DistributedDataParallel", "_orig_mod.": "torch.compile"}
"""Key prefixes a wrapper adds to every name of the model it wraps, and the wrapper that adds each."""


def strip_wrapper_prefixes(state: dict[str, torch.Tensor],
                           expected: Iterable[str] | None = None) -> tuple[dict[str, torch.Tensor], list[str]]:
    """``state`` with the prefixes of wrappers (``module.`` of DataParallel, ``_orig_mod.`` of torch.compile)
    taken off its keys, and the prefixes taken off. A prefix is taken off only where every key carries it and,
    given the model's own keys ``expected``, none of the keys fits the model as it is (a model whose own
    submodule is named ``module`` keeps its names)."""
    expected = set(expected) if expected is not None else None
    removed: list[str] = []
    while state and (expected is None or not expected & set(state)):
        prefix = next((p for p in WRAPPER_PREFIXES if all(k.startswith(p) for k in state)), None)
        if prefix is None:
            break
        state = {k[len(prefix):]: v for k, v in state.items()}
        removed.append(prefix)
    return state, removed


def with_weights(factory: Callable[[], nn.Module], state: dict[str, torch.Tensor], arch: str,
                 notes: list[str] | None = None) -> nn.Module:
    """A model from ``factory`` holding ``state``'s weights, checked to fit strictly. Keys that a wrapper
    prefixed (:func:`strip_wrapper_prefixes`) are mapped back, with a line in ``notes`` saying so.

    Where it can, the model is built on the meta device and takes ``state``'s tensors as its own, so the
    weights are in memory once, not twice (a random initialisation beside the loaded file). A factory that
    cannot build on the meta device, a model with tensors the state does not hold (non-persistent
    buffers), tied weights or other dtypes is built normally and the weights copied in.
    """
    try:
        with torch.device("meta"):
            skeleton = factory()
    except Exception:
        skeleton = None

    def said(removed: list[str]) -> None:
        if removed and notes is not None:
            notes.append("the weights' names carried the prefix " + " and ".join(
                f"'{p}' ({WRAPPER_PREFIXES[p]})" for p in removed) + ", taken off to fit the architecture")

    if isinstance(skeleton, nn.Module):
        mapped, removed = strip_wrapper_prefixes(state, skeleton.state_dict(keep_vars=True))
        if _takes_as_is(skeleton, mapped):
            fit_shapes(skeleton, {k: tuple(v.shape) for k, v in mapped.items()}, arch)
            skeleton.load_state_dict(mapped, assign=True)
            said(removed)
            return skeleton
    model = build(factory, arch)
    mapped, removed = strip_wrapper_prefixes(state, model.state_dict(keep_vars=True))
    fit_state_dict(model, mapped, arch)
    said(removed)
    return model


def _takes_as_is(skeleton: nn.Module, state: dict[str, torch.Tensor]) -> bool:
    expected = skeleton.state_dict(keep_vars=True)
    tensors = [*skeleton.named_parameters(remove_duplicate=False), *skeleton.named_buffers(remove_duplicate=False)]
    return (len(tensors) == len(expected) == len({id(t) for _, t in tensors})  # every tensor in the state, none tied
            and all(k in state and same_kind(state[k].dtype, t.dtype) and state[k].device.type == "cpu"
                    for k, t in expected.items()))


def same_kind(stored: torch.dtype, built: torch.dtype) -> bool:
    """A stored tensor can stand in for a built one: the same dtype, or both floating point (a half or
    bfloat16 checkpoint keeps its own precision instead of being widened to the factory's float32)."""
    return stored == built or (stored.is_floating_point and built.is_floating_point)


def fit_shapes(model: nn.Module, shapes: dict[str, tuple[int, ...]], arch: str) -> None:
    """Refuse, with one readable message, weights (by name and shape) that do not fit ``model`` exactly."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in shapes]
    unexpected = [k for k in shapes if k not in expected]
    mismatched = [f"{k} {tuple(shapes[k])} vs {tuple(v.shape)}" for k, v in expected.items()
                  if k in shapes and tuple(shapes[k]) != tuple(v.shape)]
    if missing or unexpected or mismatched:
        parts = []
        if missing:
            parts.append(f"missing {', '.join(missing[:4])}{' ...' if len(missing) > 4 else ''}")
        if unexpected:
            parts.append(f"unexpected {', '.join(unexpected[:4])}{' ...' if len(unexpected) > 4 else ''}")
        if mismatched:
            parts.append(f"shape (file vs model) {'; '.join(mismatched[:3])}{' ...' if len(mismatched) > 3 else ''}")
        raise ModelLoadError(f"the state_dict does not fit architecture {arch}: {'; '.join(parts)}")


def fit_state_dict(model: nn.Module, state: dict[str, torch.Tensor], arch: str) -> None:
    """Load ``state`` into ``model`` strictly, with one readable message when it does not fit. A floating
    tensor keeps the dtype ``state`` holds it in (a float16 checkpoint loads as float16)."""
    fit_shapes(model, {k: tuple(v.shape) for k, v in state.items()}, arch)
    with torch.no_grad():
        for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
            stored = state.get(name)
            if stored is not None and stored.dtype != tensor.dtype and same_kind(stored.dtype, tensor.dtype):
                tensor.data = tensor.data.to(stored.dtype)
    model.load_state_dict(state)
