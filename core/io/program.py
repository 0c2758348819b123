"""Compiled programs (TorchScript archives, ``torch.export`` programs) as models the pipeline can change.

A compiled program runs its layers inside its own graph: its code cannot be changed here, and per-layer
hooks, parametrizations and gradients do not reach inside it. :class:`CompiledProgram` wraps one in an
ordinary ``nn.Module`` whose children *mirror* the program's layers: a Linear of the program is an
``nn.Linear`` here (built without running its constructor), holding a copy of the program's weights under
the same names. Weight-level steps (magnitude pruning, k-means quantization, weight sharing, encoding)
work on the mirror as on any eager model, and every call copies the mirror's weights, as they compute
(through any mask or codebook), into the program before running it. So the program computes with exactly
the weights the pipeline sees, and a structural step, which would need the program's code changed, is
refused before any work (:mod:`core.pipeline.checks`).

Forward hooks on a mirrored layer are honoured by tapping the program: the call runs a copy of the
program's graph that also returns each hooked layer's input and output (:mod:`core.io.program_taps`), and
the hooks are called with them. So activation statistics work on a compiled program too.

The program's code is stored in a compressed file beside the weights (:func:`program_archive`: the
program saved with every tensor zeroed, then zlib-compressed, so the weights are not stored twice), and a
compressed file holding one reloads as the same kind of program (:func:`load_program`), only with trust.
"""

from __future__ import annotations

import copy
import io
import itertools
import warnings
import zlib

import torch
from torch import nn
from torch.nn.utils import parametrize

from core.format.layout import PROGRAM_KINDS
from core.io.program_taps import consumers, tapped_call

KINDS = PROGRAM_KINDS
MIRRORED = {cls.__name__: cls for cls in (
    nn.Linear, nn.Bilinear, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d,
    nn.ConvTranspose3d, nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.LayerNorm, nn.GroupNorm, nn.Embedding)}
"""Layer types mirrored as their own class, so that steps and statistics that ask a layer's type see it."""
ATTRIBUTES = ("in_features", "out_features", "in_channels", "out_channels", "kernel_size", "stride", "padding",
              "dilation", "groups", "padding_mode", "output_padding", "transposed", "num_features", "eps",
              "momentum", "affine", "track_running_stats", "normalized_shape", "elementwise_affine",
              "num_groups", "num_embeddings", "embedding_dim", "padding_idx")
MAX_PROGRAM_BYTES = 1 << 30  # the program's code, inflated: far more than any real program's


def _own_tensors(module: nn.Module) -> tuple[dict, dict]:
    params = {k: v for k, v in module.named_parameters(recurse=False)}
    buffers = {k: v for k, v in module.named_buffers(recurse=False)}
    return params, buffers


def _derived(type_name: str, params: dict) -> dict:
    """What a layer's weight shape says of its configuration, for a program that kept no attributes."""
    weight = params.get("weight")
    if weight is None:
        return {}
    shape = tuple(weight.shape)
    if type_name == "Linear":
        return {"out_features": shape[0], "in_features": shape[1]}
    if type_name.startswith("Conv") and len(shape) >= 3:
        return {"out_channels": shape[0], "in_channels": shape[1], "kernel_size": shape[2:], "groups": 1}
    if type_name.startswith("BatchNorm"):
        return {"num_features": shape[0]}
    if type_name == "Embedding":
        return {"num_embeddings": shape[0], "embedding_dim": shape[1]}
    return {}


def _mirror(type_name: str, source: nn.Module, params: dict, buffers: dict) -> nn.Module:
    """An eager module of the layer's type holding copies of ``source``'s own tensors (no constructor runs:
    the mirror is never called, only read and changed)."""
    cls = MIRRORED.get(type_name, nn.Module)
    mirror = cls.__new__(cls)
    nn.Module.__init__(mirror)
    if cls is not nn.Module:
        for name, value in _derived(type_name, params).items():
            setattr(mirror, name, value)
        for name in ATTRIBUTES:
            try:
                value = getattr(source, name)
            except Exception:  # TorchScript raises its own errors for attributes it does not have
                continue
            if isinstance(value, (int, float, bool, str, tuple, list)):
                setattr(mirror, name, tuple(value) if isinstance(value, list) else value)
    for name, value in params.items():
        mirror.register_parameter(name, nn.Parameter(value.detach().clone(), value.requires_grad))
    for name, value in buffers.items():
        mirror.register_buffer(name, value.detach().clone())
    return mirror


class CompiledProgram(nn.Module):
    """A compiled program with an eager mirror of its layers (see the module's docstring).

    ``program``: the callable program (a TorchScript module, or an exported program's module);
    ``kind``: one of :data:`KINDS`; ``exported``: the ``ExportedProgram`` itself (torch.export), which is
    what is saved; ``types``: the type of each mirrored layer, by name.
    """

    def __init__(self, program: nn.Module, kind: str, types: dict[str, str], exported=None) -> None:
        super().__init__()
        if kind not in KINDS:
            raise ValueError(f"unknown program kind {kind!r}")
        self.__dict__["program"] = program  # not a child: its tensors are the mirror's, copied in at each call
        self.__dict__["exported"] = exported
        self.kind = kind
        self.fixed_batch: int | None = None  # a torch.export program made for one batch size: run in chunks of it
        for name, source in program.named_modules():
            params, buffers = _own_tensors(source)
            if not name:
                for key, value in params.items():
                    self.register_parameter(key, nn.Parameter(value.detach().clone(), value.requires_grad))
                for key, value in buffers.items():
                    self.register_buffer(key, value.detach().clone())
                continue
            parent, _, leaf = name.rpartition(".")
            holder = self.get_submodule(parent) if parent else self
            holder.add_module(leaf, _mirror(types.get(name, ""), source, params, buffers))

    def _slots(self) -> dict[str, torch.Tensor]:
        return dict(self.program.state_dict(keep_vars=True))

    def _signature(self) -> tuple | None:
        """What the mirror's tensors are now (each one's storage and in-place version), or None while a
        parametrization computes a weight (a mask or a codebook: its value is only known by computing it)."""
        if any(parametrize.is_parametrized(m) for m in self.modules()):
            return None
        try:
            return tuple((t.data_ptr(), t._version) for t in itertools.chain(self.parameters(), self.buffers()))
        except RuntimeError:  # an inference-mode tensor keeps no version: copy every time
            return None

    @torch.no_grad()
    def sync(self) -> None:
        """Copy every mirrored tensor, as the mirror computes it, into the program; nothing when nothing
        changed since the last copy (so timing a program does not time copying its weights)."""
        signature = self._signature()
        if signature is not None and signature == self.__dict__.get("_synced"):
            return
        for name, slot in self._slots().items():
            parent, _, leaf = name.rpartition(".")
            value = getattr(self.get_submodule(parent) if parent else self, leaf)
            if value.data_ptr() != slot.data_ptr() or value.stride() != slot.stride():
                slot.copy_(value.detach())
        self.__dict__["_synced"] = signature

    def forward(self, *args, **kwargs):
        batch = self.fixed_batch
        if batch and len(args) == 1 and not kwargs and isinstance(args[0], torch.Tensor) and len(args[0]) != batch:
            return torch.cat([self._in_fixed_batch(args[0][i:i + batch], batch)
                              for i in range(0, len(args[0]), batch)])
        return self._call(*args, **kwargs)

    def _in_fixed_batch(self, chunk: torch.Tensor, batch: int) -> torch.Tensor:
        """A program exported for one batch size run on a smaller chunk: padded with copies of its first
        example, and the padding's outputs dropped."""
        n = len(chunk)
        if n < batch:
            chunk = torch.cat([chunk, chunk[:1].expand(batch - n, *chunk.shape[1:])])
        return self._call(chunk)[:n]

    def _call(self, *args, **kwargs):
        self.sync()
        hooked = {name: m for name, m in self.named_modules() if name and m._forward_hooks}
        if not hooked:
            return self.program(*args, **kwargs)
        output, taps = tapped_call(self.kind, self.program, list(hooked), args, kwargs)
        for name, (inputs, value) in taps.items():
            module = hooked[name]
            for hook in list(module._forward_hooks.values()):
                hook(module, inputs, value)
        return output

    def consumers(self, names: list[str]) -> dict[str, list[str]]:
        """The graph operations each named layer's output goes through (:func:`core.io.program_taps.consumers`)."""
        return consumers(self.kind, self.program, names)

    def __deepcopy__(self, memo):
        """A copy with its own program (torch's pytree warns of its own deprecations copying an exported one)."""
        copied = type(self).__new__(type(self))
        memo[id(self)] = copied
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=FutureWarning, message=r".*LeafSpec")
            for key, value in self.__dict__.items():
                copied.__dict__[key] = copy.deepcopy(value, memo)
        return copied

    def _apply(self, fn, recurse=True):
        """``to()``, ``half()`` and the like move or cast the program with its mirror."""
        super()._apply(fn, recurse)
        self.program._apply(fn)
        self.__dict__["_synced"] = None
        return self

    def train(self, mode: bool = True):
        super().train(mode)
        if self.kind == "torchscript":  # an exported program is fixed in the mode it was exported in
            self.program.train(mode)
        return self


def program_archive(model: CompiledProgram) -> bytes:
    """The program's own file (TorchScript archive or ``.pt2``) with every tensor zeroed, zlib-compressed:
    its code and constants, without a second copy of the weights the compressed file stores. The program's
    tensors are the working copy's to overwrite: the next call copies the mirror's back in."""
    with torch.no_grad():
        model.__dict__["_synced"] = None  # the next call copies the weights back in
        for slot in model._slots().values():
            slot.zero_()
        buffer = io.BytesIO()
        if model.kind == "torchscript":
            torch.jit.save(model.program, buffer)
        else:
            for value in model.exported.state_dict.values():
                value.zero_()
            torch.export.save(model.exported, buffer)
    return zlib.compress(buffer.getvalue(), 6)


def inflate(blob: bytes) -> bytes:
    """A stored program's archive, refusing one that inflates past :data:`MAX_PROGRAM_BYTES`."""
    inflater = zlib.decompressobj()
    data = inflater.decompress(blob, MAX_PROGRAM_BYTES)
    if inflater.unconsumed_tail or not inflater.eof:
        raise ValueError("the stored program is truncated or too large")
    return data


def script_types(module: nn.Module) -> dict[str, str]:
    """Each TorchScript submodule's original class name."""
    return {name: m.original_name for name, m in module.named_modules()}


def export_types(program) -> dict[str, str]:
    """Each exported program module's original class name, from the graph's module stack."""
    types: dict[str, str] = {"": "ExportedProgram"}
    for node in program.graph.nodes:
        for qualified, type_ in (node.meta.get("nn_module_stack") or {}).values():
            name = type_.__name__ if isinstance(type_, type) else str(type_).rsplit(".", 1)[-1]
            types.setdefault(qualified, name)
    return types


def load_program(kind: str, archive: bytes) -> tuple[CompiledProgram, dict[str, str], dict]:
    """(model, module types, meta) from a program's archive (the caller has the person's trust: loading a
    program unpickles it). A torch.export program made for one
    batch size is run in chunks of it."""
    if kind == "torchscript":
        program = torch.jit.load(io.BytesIO(archive), map_location="cpu").eval()
        types = script_types(program)
        return CompiledProgram(program, kind, types), types, {}
    exported = torch.export.load(io.BytesIO(archive))
    types = export_types(exported)
    model, meta = CompiledProgram(exported.module(), kind, types, exported), {}
    args = exported.example_inputs[0] if exported.example_inputs else ()
    if len(args) == 1 and isinstance(args[0], torch.Tensor) and args[0].ndim:
        meta["example"] = args[0]
        if not _accepts_batch(model, args[0]):
            model.fixed_batch = meta["fixed_batch"] = int(args[0].shape[0])
    return model, types, meta


def _accepts_batch(model: CompiledProgram, example: torch.Tensor) -> bool:
    """Whether an exported program runs on a batch twice its example's size (a dynamic batch dimension)."""
    try:
        with torch.inference_mode():
            model(torch.cat([example, example]))
        return True
    except Exception:
        return False
