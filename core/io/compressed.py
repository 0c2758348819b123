"""Loading a Prunescope compressed file back into a working ``nn.Module``.

The file names its architecture. A zoo architecture is rebuilt directly. A ``package.module:factory``
architecture is code: it is only imported when the user names the same factory with ``--arch`` (or passes
``--trust``), never just because a file says so. Otherwise the model the file was made from (its recorded
source) serves as the skeleton. The recorded structure ops are then replayed, the file's tensor names and
shapes checked against the result, and the weights decoded into it one tensor at a time.
"""

from __future__ import annotations

from pathlib import Path

import torch

from core.eval import zoo
from core.format.decoding import iter_decode
from core.format.huffman import CodingError
from core.format.structure import StructureError, ops_from_file, replay
from core.io.architectures import fit_shapes, import_factory
from core.io.base import LoadedModel, LoadFn, LoadOptions, ModelLoadError
from core.io.files import head


def skeleton(info: dict, options: LoadOptions, name: str, load: LoadFn) -> torch.nn.Module:
    """A fresh, unpruned instance of the architecture a compressed file describes."""
    arch = info.get("arch")
    if arch in zoo.ARCHITECTURES:
        return zoo.build(arch, int(info.get("num_classes") or 10))
    if options.arch:
        return import_factory(options.arch)
    if arch and options.trust:
        return import_factory(arch)
    if arch:
        raise ModelLoadError(f"{name} was made from architecture {arch}; building it imports and runs that code: "
                             f"pass --arch {arch} (or --trust)")
    source = info.get("source")
    if source and (source.startswith("zoo:") or Path(source).exists()):
        return load(source, options).module
    raise ModelLoadError(f"{name} does not say how to rebuild its model, and its source {source!r} is not here: "
                         "pass --arch package.module:factory")


def load_compressed(path: Path, options: LoadOptions, load: LoadFn) -> LoadedModel:
    data = path.read_bytes()
    try:
        header, tensors = iter_decode(data)
        info = header["model"]
        ops = ops_from_file(info.get("structure"), header["v"])
    except (CodingError, StructureError) as exc:
        raise ModelLoadError(f"{path.name}: not a valid compressed file: {exc}") from None
    model = skeleton(info, options, path.name, load)
    shape = tuple(info["input_shape"]) if info.get("input_shape") else options.input_shape
    if ops:
        if shape is None:
            raise ModelLoadError(f"{path.name}: rebuilding its pruned structure needs --input-shape")
        try:
            replay(model, torch.zeros(shape), ops)
        except StructureError as exc:
            raise ModelLoadError(f"{path.name}: {exc}") from None
    arch = info.get("arch") or options.arch or "the source model"
    fit_shapes(model, {e["n_"]: tuple(e["s"]) for e in header["tensors"]}, arch)  # before decoding anything
    targets = model.state_dict(keep_vars=True)
    try:
        with torch.no_grad():
            for name, tensor in tensors:  # one tensor at a time: never the file's state beside the model's
                targets[name].data = tensor.to(targets[name].dtype)
    except CodingError as exc:
        raise ModelLoadError(f"{path.name}: not a valid compressed file: {exc}") from None
    return LoadedModel(model.eval(), path.stem, str(path), "prunescope", dataset=info.get("dataset"),
                       input_shape=options.input_shape or shape,
                       classes=tuple(info["classes"]) if info.get("classes") else None,
                       file_bytes=len(data), meta={"arch": info.get("arch"), "compressed_from": info.get("source"),
                                                   "structure": ops})


class CompressedLoader:
    format = "prunescope"
    describes = "Prunescope compressed file (.psz)"

    def can_load(self, spec: str) -> bool:
        path = Path(spec)
        return path.is_file() and head(path, 4) == b"PSCZ"

    def load(self, spec: str, options: LoadOptions, load: LoadFn) -> LoadedModel:
        return load_compressed(Path(spec), options, load)
