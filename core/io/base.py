"""The types every loader shares: what a loaded model is, how to load, and the errors. Nothing else.

Each format's loader (one module per format in this package) imports these and the small helpers in
:mod:`core.io.files` and :mod:`core.io.architectures`, never another loader; :mod:`core.io.loading` tries them
in turn. A loader that needs to load another model (a compressed file rebuilt on its source model) is
handed :func:`~core.io.loading.load_model` as ``load`` instead of importing it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from torch import nn

from core.errors import PrunescopeError, one_line


class ModelLoadError(PrunescopeError):
    """The model could not be loaded; the message says why, in one line, and what to do."""


class NeedsArchitecture(ModelLoadError):
    """The file loads once its architecture is named (``--arch``; the studio asks): a state_dict holds weights
    only, and a compressed file's recorded factory is code, imported only when the person names it too.
    ``suggested``: the architecture the file records, if any (offered, never used unasked)."""

    def __init__(self, message: str, suggested: str | None = None) -> None:
        super().__init__(message)
        self.suggested = suggested


class UntrustedPickleError(ModelLoadError):
    """The file can only be loaded by unpickling it, which can run code from it, and it is not trusted."""

    def __init__(self, path: Path, needs: list[str], kind: str = "a pickled Python object") -> None:
        self.path = path
        self.needs = list(needs)
        names = ", ".join(needs)  # every one: a payload must not hide behind the model's own classes
        super().__init__(one_line(
            f"{path.name} is {kind}: loading it runs code stored in the file (it needs "
            f"{names or 'Python classes'}), which can do anything your user account can. Load it only if you "
            "trust where it came from: pass --trust (command line) or confirm in the studio."))


class SourceModelNeeded(ModelLoadError):
    """A compressed file must be rebuilt on the model it was made from, and nobody has said where that is.

    A ``.psz`` never opens a path written inside it. ``recorded`` is the source's name as the file records
    it (only for messages); ``candidate`` is a file of that name in the ``.psz``'s own folder, if there is
    one, which may be used once the person confirms: load again with ``LoadOptions(source=str(candidate))``.
    """

    def __init__(self, path: Path, recorded: str | None, candidate: Path | None) -> None:
        self.path, self.recorded, self.candidate = path, recorded, candidate
        if candidate is not None:
            hint = (f"a file of that name is in the same folder; to use it, pass --source {candidate} "
                    "(studio: confirm)")
        else:
            hint = "pass --source FILE (the original model), or --arch package.module:factory"
        super().__init__(one_line(f"{path.name} is rebuilt on the model it was made from "
                                  f"({Path(recorded).name if recorded else 'not recorded'}), which Prunescope "
                                  f"does not open by itself: {hint}"))


@dataclass(frozen=True)
class LoadOptions:
    """How to load: ``trust`` allows unpickling code; ``arch`` is ``package.module:factory`` or a zoo
    architecture for a bare state_dict; ``input_shape`` is a full input shape such as ``(1, 1, 28, 28)``;
    ``source`` is the model a compressed file (``.psz``) was made from, as the person names it (a file or
    ``zoo:NAME``): a ``.psz`` whose architecture is neither a zoo one nor ``arch`` is rebuilt on it, and the
    path the file records is never opened (:class:`SourceModelNeeded` says where it may be). ``inputs`` is a
    file of the person's own examples (:mod:`core.eval.inputs`): they become the probe inputs."""

    trust: bool = False
    arch: str | None = None
    input_shape: tuple[int, ...] | None = None
    source: str | None = None
    inputs: str | None = None
    sample_rate: int | None = None  # for a folder of audio inputs: the rate every file must have
    chunk: int | None = None  # for a folder of audio inputs: cut each file into windows of this many samples
    task: str | None = None  # what the output is, for fidelity (core.eval.fidelity.TASKS); None: detected
    pairs: str | None = None  # a .tsv of sentence pairs with gold scores: the STS metric (core.eval.pairs)
    stride: int | None = None  # a language model's sliding-window perplexity: tokens between windows (core.eval.lm)


@dataclass(frozen=True)
class TensorEntry:
    """One tensor of a weights file, as its validated header describes it: ``dtype`` a torch dtype's name
    (``"float16"``), ``itemsize`` bytes per value at that dtype, and its bytes at ``[start, end)`` of ``file``."""

    name: str
    dtype: str
    itemsize: int
    shape: tuple[int, ...]
    file: Path
    start: int
    end: int

    @property
    def numel(self) -> int:
        return math.prod(self.shape)


class WeightsSource(Protocol):
    """Weights read from disk one tensor at a time, with no architecture: ``entries`` in file order, and
    ``chunks(entry, elements)`` the tensor's values at its stored dtype, a slice of whole rows (dim 0) of at
    most ``elements`` values at a time (a row larger than that comes whole)."""

    entries: tuple[TensorEntry, ...]

    def chunks(self, entry: TensorEntry, elements: int) -> Iterator[Any]: ...


@dataclass
class LoadedModel:
    """A model ready to inspect, with what is known about its inputs and provenance.

    ``probe_inputs`` are batches to call the model with when no data set is given (tensors, tuples, or
    keyword dicts); ``tokenize`` turns lines of text into one such batch, for a model that has a tokenizer;
    ``module_types`` overrides the type shown for a module (for graphs whose modules lost
    their classes, such as ``torch.export`` programs). ``streamed``: weights without an architecture, read one
    tensor at a time (:class:`WeightsSource`); ``module`` is then an empty placeholder that nothing may run.
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
    tokenize: Callable[[list[str]], Any] | None = None  # lines of text -> one input batch (a tokenizer's model)
    streamed: WeightsSource | None = None


LoadFn = Callable[[str, LoadOptions], LoadedModel]
"""``load_model`` as a loader receives it: ``load(spec, options)``."""


class Loader(Protocol):
    """One model format: whether a spec is of it, and how to load it."""

    format: str
    describes: str

    def can_load(self, spec: str) -> bool: ...

    def load(self, spec: str, options: LoadOptions, load: LoadFn) -> LoadedModel: ...
