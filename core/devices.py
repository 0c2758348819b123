"""Where a model runs (``--device``) and in what precision its inputs are given to it.

A loaded model, and every working copy, lives on the CPU in the dtype its file holds (float32, float16 or
bfloat16): inventories, statistics, the compression steps and the encoder read it there. Only the runs of
the model (evaluation, fidelity, latency, activation counts, fine-tuning) go to the chosen device, inside
:func:`placed`, which moves the model there and back and casts each call's inputs to the model's device and
floating dtype (so a float16 model takes the float32 images of a data set).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn

from core.errors import PrunescopeError

CPU = torch.device("cpu")
DEVICE_CHOICES = "auto, cpu, cuda or cuda:N"


class DeviceError(PrunescopeError):
    """A device that cannot be used here: not a device name, or no CUDA."""


def resolve_device(text: str | None = "auto") -> torch.device:
    """The device ``text`` names: ``auto`` (or None) is the first CUDA device when torch sees one, else the
    CPU; ``cpu``; ``cuda`` or ``cuda:N``. Anything else, or CUDA where there is none, raises
    :class:`DeviceError` with one line."""
    name = (text or "auto").strip().lower()
    if name == "auto":
        return torch.device("cuda") if torch.cuda.is_available() else CPU
    if name == "cpu":
        return CPU
    kind, _, index = name.partition(":")
    if kind != "cuda" or (index and not index.isdigit()):
        raise DeviceError(f"--device {text}: not a device; use {DEVICE_CHOICES}")
    if not torch.cuda.is_available():
        raise DeviceError(f"--device {text}: this machine has no CUDA device that torch {torch.__version__} "
                          f"can use (torch.cuda.is_available() is False); use --device cpu")
    count = torch.cuda.device_count()
    if index and int(index) >= count:
        raise DeviceError(f"--device {text}: this machine has {count} CUDA device(s), cuda:0 to cuda:{count - 1}")
    return torch.device(name)


def model_dtype(model: nn.Module) -> torch.dtype | None:
    """The floating dtype of ``model``'s first floating parameter (or buffer); None when it has none."""
    for tensor in (*model.parameters(), *model.buffers()):
        if tensor.is_floating_point():
            return tensor.dtype
    return None


def to_device(obj, device: torch.device, dtype: torch.dtype | None = None):
    """``obj`` (a tensor, or tuples, lists and dicts of them) on ``device``; floating tensors also cast to
    ``dtype`` when one is given. Integer tensors (labels, token ids) keep their dtype; other objects pass."""
    if isinstance(obj, torch.Tensor):
        cast = dtype if dtype is not None and obj.is_floating_point() else None
        return obj.to(device=device, dtype=cast) if cast is not None or obj.device != device else obj
    if isinstance(obj, dict):
        return {k: to_device(v, device, dtype) for k, v in obj.items()}
    if isinstance(obj, (tuple, list)):
        return type(obj)(to_device(v, device, dtype) for v in obj)
    return obj


def model_device(model: nn.Module) -> torch.device:
    """The device of ``model``'s first parameter or buffer (the CPU for a model with none)."""
    for tensor in (*model.parameters(), *model.buffers()):
        return tensor.device
    return CPU


def synchronize(device: torch.device) -> None:
    """Wait for the queued kernels of ``device`` (CUDA runs asynchronously; a clock read needs this)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@contextlib.contextmanager
def placed(model: nn.Module | None, device: torch.device | None = None) -> Iterator[nn.Module | None]:
    """``model`` on ``device`` for the duration, its calls' inputs moved there and cast to its floating dtype;
    then back on the CPU, as it was, also when the run fails or is cancelled. A float32 model run on the CPU
    is left untouched (no hook)."""
    device = device or CPU
    dtype = model_dtype(model) if model is not None else None
    if model is None or (device.type == "cpu" and dtype in (None, torch.float32)):
        yield model
        return
    moved = device.type != "cpu"

    def cast(module, args, kwargs):
        return to_device(args, device, dtype), to_device(kwargs, device, dtype)

    handle = model.register_forward_pre_hook(cast, with_kwargs=True)
    try:
        if moved:
            model.to(device)
        yield model
    finally:
        handle.remove()
        if moved:
            model.to(CPU)
