"""Encoding a run's result and decoding it back, within the memory of the run's one working copy.

After the last step the working copy's masks and codebooks are read off (:func:`weight_codes`), its
parametrizations are removed in place (a quantized layer's float weights are never rebuilt: only its
codes are stored), the compressed file is written, and the file's tensors are decoded back one at a time
into the same working copy. What the run measures afterwards is the file's content, and at no point does
the run hold more than the original, the working copy and the file.
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils import parametrize

from core.format import container
from core.format.structure import StructureError, replay
from core.io.base import LoadedModel
from core.io.program import CompiledProgram, program_archive
from core.methods.codebooks import Shared, shared_of
from core.methods.masks import current_mask, prunable_layers
from core.modelcopy import clone_module
from core.pipeline.context import CompressionError, EncodeOptions, RunContext


@dataclass
class Encoded:
    """The compressed file, its byte account, what it says of the model, and the codebooks it holds."""

    data: bytes
    account: container.FileAccount
    model_info: dict
    stages: dict[str, int]
    codebooks: dict[str, list[float]]


def weight_codes(model: nn.Module) -> dict[str, container.WeightCode]:
    """What the encoder stores for each pruned or quantized layer, keyed by state_dict name (the values
    are the layer's weights as it computes them: call on a model whose parametrizations are in place)."""
    return _codes(_coded_layers(model))


def _codes(layers: dict[str, tuple[nn.Module, Shared | None, torch.Tensor | None]]) -> dict[str, container.WeightCode]:
    """Each layer's code; a codebook shared by several layers (one Parameter: ``scope: global``) is stored by
    the first of them and referenced by the others."""
    codes, owners = {}, {}
    for name, (module, shared, mask) in layers.items():
        code = _code(shared, mask, module.weight.detach())
        if shared is not None and not shared.per_channel:
            owner = owners.setdefault(id(shared.codebook), name)
            if owner != name:
                code = dataclasses.replace(code, codebook_of=owner)
        codes[name] = code
    return codes


def _coded_layers(model: nn.Module) -> dict[str, tuple[nn.Module, Shared | None, torch.Tensor | None]]:
    out = {}
    for name, module in prunable_layers(model).items():
        shared, mask = shared_of(module), current_mask(module)
        if shared is not None or mask is not None:
            out[f"{name}.weight" if name else "weight"] = (module, shared, mask)
    return out


def _code(shared: Shared | None, mask: torch.Tensor | None, values: torch.Tensor) -> container.WeightCode:
    dense = shared is not None and bool(shared.mask.all())
    return container.WeightCode(
        mask=None if dense else (shared.mask if shared is not None else mask),
        codes=None if shared is None else shared.packed, codebook=None if shared is None else shared.codebook.detach(),
        values=values)


def strip_for_encoding(model: nn.Module) -> dict[str, container.WeightCode]:
    """Remove every parametrization of ``model`` in place and return what the encoder stores for each
    pruned or quantized layer. A pruned layer keeps its masked values (they are what is stored); a
    quantized layer keeps only a zero-stride placeholder of its shape, since its codes are what is stored
    and the file is decoded back into it."""
    layers = _coded_layers(model)
    for module in model.modules():
        if parametrize.is_parametrized(module):
            for tensor_name in list(module.parametrizations.keys()):
                quantized = tensor_name == "weight" and shared_of(module) is not None
                if quantized:  # the placeholder keeps the state_dict's order, names, shapes and dtypes
                    trainable = module.parametrizations.weight.original.requires_grad  # the decoded weight's
                    placeholder = torch.zeros((), dtype=module.weight.dtype).expand(module.weight.shape)
                    module.parametrizations.weight.original = nn.Parameter(placeholder, requires_grad=trainable)
                parametrize.remove_parametrizations(module, tensor_name, leave_parametrized=not quantized)
    return _codes(layers)


def describe(loaded: LoadedModel, structure: list[dict], example, arch: str | None = None) -> dict:
    """How to rebuild the architecture: its zoo or factory name, the structure ops, its inputs. ``arch``,
    when a step replaced the model (a distilled student), is the architecture to record instead of the
    loaded model's, and ``structure`` then starts from it (nothing of the loaded model's history)."""
    from core.eval import zoo

    if arch is not None:
        ops = list(structure)
    else:
        arch = loaded.meta.get("arch")
        if loaded.format == "zoo":
            arch = zoo.zoo_entry(loaded.name).arch
        ops = list(loaded.meta.get("structure", [])) + list(structure)  # a variant carries its own history
    shape = loaded.input_shape
    if shape is None and isinstance(example, torch.Tensor) and example.ndim:  # what the run traced with
        shape = (1, *example.shape[1:])
    return {"arch": arch, "num_classes": len(loaded.classes) if loaded.classes else None, "source": loaded.source,
            "name": loaded.name.split(" · ")[0], "structure": ops, "dataset": loaded.dataset,
            "input_shape": list(shape) if shape else None,
            "classes": list(loaded.classes) if loaded.classes else None}


def check_replay(original: nn.Module, ops: list[dict], shape, model: nn.Module) -> None:
    """Refuse a run whose structure ops would not rebuild ``model``'s architecture from ``original`` when the
    file is loaded. The ops are replayed on a copy of ``original`` on the meta device (shapes, no memory)."""
    if not ops:
        return
    if shape is None:
        raise CompressionError("the recipe changes the model's structure, and rebuilding it from the file needs "
                               "the model's input shape: pass --input-shape N,C,H,W")
    try:
        skeleton, example = meta_copy(original), torch.zeros(shape, device="meta")
        replay(skeleton, example, ops)
    except StructureError:
        raise
    except Exception:  # an operation the meta device cannot run: replay on a real copy instead
        skeleton, example = clone_module(original), torch.zeros(shape)
        replay(skeleton, example, ops)
    rebuilt = {k: tuple(v.shape) for k, v in skeleton.state_dict().items()}
    if rebuilt != {k: tuple(v.shape) for k, v in model.state_dict().items()}:
        raise CompressionError("the recorded structure does not rebuild the compressed model's architecture")


def meta_copy(module: nn.Module) -> nn.Module:
    """``module``'s structure with every parameter and buffer on the meta device (shapes only)."""
    memo: dict[int, object] = {}
    for t in itertools.chain(module.parameters(), module.buffers()):
        if id(t) not in memo:
            empty = torch.empty_like(t, device="meta")
            memo[id(t)] = nn.Parameter(empty, t.requires_grad) if isinstance(t, nn.Parameter) else empty
    return copy.deepcopy(module, memo)


def encode_run(ctx: RunContext) -> Encoded:
    """Write the working copy as a compressed file (the working copy is left without parametrizations)."""
    codes = strip_for_encoding(ctx.model)
    state = ctx.model.state_dict()
    info = describe(ctx.loaded, ctx.structure, ctx.example, ctx.arch)
    base = ctx.base_module if ctx.base_module is not None else ctx.loaded.module
    check_replay(base, ctx.structure, info["input_shape"], ctx.model)
    options = ctx.encoding
    program = (ctx.model.kind, program_archive(ctx.model)) if isinstance(ctx.model, CompiledProgram) else None
    data, account = container.encode(state, codes, info, use_huffman=options.huffman,
                                     index_bits=options.index_bits, small_float=options.small_float, program=program)
    stages = stage_sizes(state, codes, info, options, data, program)
    codebooks = {k.removesuffix(".weight"): [float(v) for v in c.codebook.reshape(-1)] for k, c in codes.items()
                 if c.codebook is not None and c.codebook.ndim == 1}
    return Encoded(data, account, info, stages, codebooks)


def decode_into(model: nn.Module, data: bytes) -> nn.Module:
    """Replace every tensor of ``model`` (a working copy with no parametrizations) by the file's, one at a
    time; the names and shapes must be the model's own."""
    targets = model.state_dict(keep_vars=True)
    seen = set()
    for name, tensor in container.iter_decode(data)[1]:
        target = targets.get(name)
        if target is None or target.shape != tensor.shape:
            raise CompressionError(f"the encoded file does not fit the compressed model at {name}")
        with torch.no_grad():
            target.data = tensor.to(target.dtype)
        seen.add(name)
    if seen != set(targets):
        raise CompressionError(f"the encoded file lacks {sorted(set(targets) - seen)[:3]}")
    return model.eval()


def stage_sizes(state: dict, codes: dict, model_info: dict, options: EncodeOptions, final: bytes,
                program: tuple[str, bytes] | None = None) -> dict[str, int]:
    """Bytes of real encodings at each Deep Compression stage: pruned (float32 values, fixed-width indices),
    quantized (fixed-width codes), and the final file (with Huffman coding, if the recipe asks). The
    stages before the final one are priced from their symbol counts (:func:`core.format.container.price`),
    to the byte, without writing them."""
    stages = {}
    if any(c.mask is not None for c in codes.values()):
        pruned = {k: container.WeightCode(c.mask, None, None, c.values) for k, c in codes.items() if c.mask is not None}
        stages["pruned"] = container.price(state, pruned, model_info, use_huffman=False, index_bits=options.index_bits,
                                           small_float="float32", program=program).total
    if any(c.codes is not None for c in codes.values()):
        stages["quantized"] = (container.price(state, codes, model_info, use_huffman=False,
                                               index_bits=options.index_bits, small_float=options.small_float,
                                               program=program).total
                               if options.huffman else len(final))  # without Huffman, that is the file
    stages["huffman" if options.huffman else "final"] = len(final)
    return stages
