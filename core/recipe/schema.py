"""Recipes: a versioned, validated, immutable description of a compression, as an ordered list of steps.

Every step is a frozen dataclass validated in ``__post_init__``; a recipe round-trips through
``to_dict``/``from_dict`` (and YAML/JSON) exactly. ``from_dict`` accepts only known kinds and known fields,
so a typo is refused with a message naming it, before any work. :func:`check_against` then checks a
recipe against a model: every layer pattern must match a layer.

Layer patterns: a pattern matches a layer whose qualified name equals it, or else that it matches as a
regular expression (``re.fullmatch``). ``layers`` (empty: every eligible layer) selects, ``ignore``
removes, and ``overrides`` (pattern -> value) set a per-layer value; the first matching override wins.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import yaml

from core.errors import PrunescopeError

RECIPE_VERSION = 1


class RecipeError(PrunescopeError):
    """A recipe is invalid; the message names the field (``steps[1].sparsity``) and why."""


def _fail(where: str, message: str) -> None:
    raise RecipeError(f"{where}: {message}")


def _check_fraction(where: str, value: float, upper_open: bool = True) -> None:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not (
            0.0 <= value < 1.0 if upper_open else 0.0 <= value <= 1.0):
        _fail(where, f"must be a number in [0, 1{')' if upper_open else ']'}; got {value!r}")


def _check_choice(where: str, value: str, choices: Iterable[str]) -> None:
    choices = tuple(choices)
    if value not in choices:
        _fail(where, f"must be one of {', '.join(choices)}; got {value!r}")


def _check_patterns(where: str, patterns: tuple[str, ...]) -> None:
    for i, pattern in enumerate(patterns):
        if not isinstance(pattern, str) or not pattern:
            _fail(f"{where}[{i}]", f"must be a non-empty layer name or regular expression; got {pattern!r}")
        try:
            re.compile(pattern)
        except re.error as exc:
            _fail(f"{where}[{i}]", f"invalid regular expression {pattern!r} ({exc})")


def _check_int(where: str, value, low: int, high: int | None = None) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < low or (high is not None and value > high):
        _fail(where, f"must be an integer in [{low}, {high if high is not None else '...'}]; got {value!r}")


def _check_positive(where: str, value) -> None:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not value > 0:
        _fail(where, f"must be a positive number; got {value!r}")


def matches(pattern: str, name: str) -> bool:
    """Whether layer ``name`` is selected by ``pattern`` (exact name, else a full regex match)."""
    return pattern == name or re.fullmatch(pattern, name) is not None


@dataclass(frozen=True)
class Selection:
    """Which layers a step applies to, with optional per-layer values."""

    layers: tuple[str, ...] = ()
    ignore: tuple[str, ...] = ()
    overrides: tuple[tuple[str, Any], ...] = ()

    def select(self, names: Iterable[str]) -> list[str]:
        """The names chosen: matching ``layers`` (all when empty), minus those matching ``ignore``."""
        return [n for n in names if (not self.layers or any(matches(p, n) for p in self.layers))
                and not any(matches(p, n) for p in self.ignore)]

    def value_for(self, name: str, default):
        for pattern, value in self.overrides:
            if matches(pattern, name):
                return value
        return default

    def patterns(self) -> list[tuple[str, str]]:
        """(field, pattern) for every pattern, for checking against a model."""
        return ([("layers", p) for p in self.layers] + [("ignore", p) for p in self.ignore]
                + [("overrides", p) for p, _ in self.overrides])


@dataclass(frozen=True)
class Step:
    """Base of every step: ``kind`` names it in files; ``select`` chooses its layers."""

    kind: ClassVar[str] = ""
    select: Selection = field(default_factory=Selection)

    def __post_init__(self) -> None:
        if not isinstance(self.select, Selection):
            _fail(f"{self.kind}.select", "must be a Selection")
        self.validate(self.kind)

    def validate(self, where: str) -> None:
        _check_patterns(f"{where}.layers", self.select.layers)
        _check_patterns(f"{where}.ignore", self.select.ignore)
        _check_patterns(f"{where}.overrides", tuple(p for p, _ in self.select.overrides))


@dataclass(frozen=True)
class PruneMagnitude(Step):
    """Zero the smallest-magnitude weights: ``sparsity`` per layer, or one threshold across the layers
    (``scope: global``). The zeros are masks that stay in force through later fine-tuning."""

    kind: ClassVar[str] = "prune_magnitude"
    sparsity: float = 0.5
    scope: str = "layer"

    def validate(self, where: str) -> None:
        super().validate(where)
        _check_fraction(f"{where}.sparsity", self.sparsity)
        _check_choice(f"{where}.scope", self.scope, ("layer", "global"))
        for pattern, value in self.select.overrides:
            _check_fraction(f"{where}.overrides[{pattern}]", value)


@dataclass(frozen=True)
class IterativePrune(Step):
    """Prune a little, fine-tune, repeat: ``steps`` rounds up to ``sparsity``, each removing the same
    fraction of what is left, with ``epochs_per_step`` epochs of fine-tuning at ``lr`` after each."""

    kind: ClassVar[str] = "iterative_prune"
    sparsity: float = 0.9
    scope: str = "layer"
    steps: int = 4
    epochs_per_step: int = 1
    lr: float = 0.01
    augment: bool = False

    def validate(self, where: str) -> None:
        super().validate(where)
        _check_fraction(f"{where}.sparsity", self.sparsity)
        _check_choice(f"{where}.scope", self.scope, ("layer", "global"))
        _check_int(f"{where}.steps", self.steps, 1, 100)
        _check_int(f"{where}.epochs_per_step", self.epochs_per_step, 0, 1000)
        _check_positive(f"{where}.lr", self.lr)
        for pattern, value in self.select.overrides:
            _check_fraction(f"{where}.overrides[{pattern}]", value)


@dataclass(frozen=True)
class PruneStructured(Step):
    """Physically remove a fraction ``amount`` of the neurons (Linear) or filters (Conv) of each selected
    layer, keeping coupled layers consistent; units ranked by ``importance``."""

    kind: ClassVar[str] = "prune_structured"
    amount: float = 0.25
    importance: str = "l1"
    scope: str = "layer"
    seed: int = 0

    IMPORTANCE: ClassVar[tuple[str, ...]] = ("l1", "l2", "activation", "bn_scale", "random")

    def validate(self, where: str) -> None:
        super().validate(where)
        _check_fraction(f"{where}.amount", self.amount)
        _check_choice(f"{where}.importance", self.importance, self.IMPORTANCE)
        _check_choice(f"{where}.scope", self.scope, ("layer", "global"))
        _check_int(f"{where}.seed", self.seed, 0)
        for pattern, value in self.select.overrides:
            _check_fraction(f"{where}.overrides[{pattern}]", value)


@dataclass(frozen=True)
class RemoveUnits(Step):
    """Remove exactly these output units (neurons or filters) of one layer, by index."""

    kind: ClassVar[str] = "remove_units"
    layer: str = ""
    units: tuple[int, ...] = ()

    def validate(self, where: str) -> None:
        super().validate(where)
        if not self.layer:
            _fail(f"{where}.layer", "must name a layer")
        if not self.units:
            _fail(f"{where}.units", "must list at least one unit index")
        for i, unit in enumerate(self.units):
            _check_int(f"{where}.units[{i}]", unit, 0)
        if len(set(self.units)) != len(self.units):
            _fail(f"{where}.units", "lists a unit twice")


@dataclass(frozen=True)
class FineTune(Step):
    """Train on the training split for ``epochs`` (SGD, cosine ``lr``); masks and codebooks stay in force."""

    kind: ClassVar[str] = "finetune"
    epochs: int = 1
    lr: float = 0.01
    augment: bool = False
    batch_size: int = 128

    def validate(self, where: str) -> None:
        super().validate(where)
        _check_int(f"{where}.epochs", self.epochs, 0, 1000)
        _check_positive(f"{where}.lr", self.lr)
        _check_int(f"{where}.batch_size", self.batch_size, 1, 65536)


@dataclass(frozen=True)
class Quantize(Step):
    """Store weights in fewer bits: ``uniform`` levels (per tensor or channel, symmetric or affine),
    ``kmeans`` weight sharing (a codebook per layer, linear initialisation, then ``finetune_epochs`` of
    codebook training), or ``binary``/``ternary`` weights. ``overrides`` set bits per layer."""

    kind: ClassVar[str] = "quantize"
    method: str = "kmeans"
    bits: int = 8
    granularity: str = "tensor"
    symmetric: bool = True
    finetune_epochs: int = 0
    lr: float = 0.001
    augment: bool = False

    METHODS: ClassVar[tuple[str, ...]] = ("uniform", "kmeans", "binary", "ternary")

    def validate(self, where: str) -> None:
        super().validate(where)
        _check_choice(f"{where}.method", self.method, self.METHODS)
        _check_int(f"{where}.bits", self.bits, 1, 8)
        _check_choice(f"{where}.granularity", self.granularity, ("tensor", "channel"))
        if self.method == "kmeans" and self.granularity != "tensor":
            _fail(f"{where}.granularity", "k-means shares one codebook per layer: use granularity tensor")
        _check_int(f"{where}.finetune_epochs", self.finetune_epochs, 0, 1000)
        _check_positive(f"{where}.lr", self.lr)
        for pattern, value in self.select.overrides:
            _check_int(f"{where}.overrides[{pattern}]", value, 1, 8)


@dataclass(frozen=True)
class QuantizeActivations(Step):
    """int8 inference through PyTorch's quantized backends: ``static`` (calibrated on
    ``calibration_batches`` batches of training data) or ``dynamic`` (Linear layers, weights int8)."""

    kind: ClassVar[str] = "quantize_activations"
    mode: str = "dynamic"
    calibration_batches: int = 8

    def validate(self, where: str) -> None:
        super().validate(where)
        _check_choice(f"{where}.mode", self.mode, ("static", "dynamic"))
        _check_int(f"{where}.calibration_batches", self.calibration_batches, 1, 10000)


@dataclass(frozen=True)
class Encode(Step):
    """How the compressed file stores the result: Huffman coding on or off, relative-index bits per layer
    (0: chosen per layer to minimise bytes, a layer that keeps most of its weights may then mark pruned
    positions with a zero symbol instead), and how biases and other small tensors are kept."""

    kind: ClassVar[str] = "encode"
    huffman: bool = True
    index_bits: int = 0
    small_tensors: str = "float16"

    def validate(self, where: str) -> None:
        super().validate(where)
        _check_int(f"{where}.index_bits", self.index_bits, 0, 16)
        _check_choice(f"{where}.small_tensors", self.small_tensors, ("float32", "float16"))


STEP_TYPES: dict[str, type[Step]] = {t.kind: t for t in (PruneMagnitude, IterativePrune, PruneStructured,
                                                          RemoveUnits, FineTune, Quantize, QuantizeActivations,
                                                          Encode)}


@dataclass(frozen=True)
class Recipe:
    """An ordered list of steps, with a name and a seed; validated on construction."""

    steps: tuple[Step, ...] = ()
    name: str = ""
    description: str = ""
    seed: int = 0
    version: int = RECIPE_VERSION

    def __post_init__(self) -> None:
        if self.version != RECIPE_VERSION:
            _fail("version", f"this Prunescope reads recipe version {RECIPE_VERSION}; got {self.version!r}")
        _check_int("seed", self.seed, 0)
        if not isinstance(self.steps, tuple):
            _fail("steps", "must be a tuple of steps")
        for i, step in enumerate(self.steps):
            if not isinstance(step, Step) or type(step) is Step:
                _fail(f"steps[{i}]", f"is not a step: {step!r}")
            step.validate(f"steps[{i}]")
        encodes = [i for i, s in enumerate(self.steps) if isinstance(s, Encode)]
        if len(encodes) > 1 or (encodes and encodes[0] != len(self.steps) - 1):
            _fail(f"steps[{encodes[0]}]", "encode must be the last step, once")

    # ---------------------------------------------------------------------------------------- dicts
    def to_dict(self) -> dict:
        return {"version": self.version, "name": self.name, "description": self.description, "seed": self.seed,
                "steps": [_step_to_dict(s) for s in self.steps]}

    @classmethod
    def from_dict(cls, data: Mapping) -> Recipe:
        if not isinstance(data, Mapping):
            _fail("recipe", f"must be a mapping with a steps list; got {type(data).__name__}")
        unknown = set(data) - {"version", "name", "description", "seed", "steps"}
        if unknown:
            _fail(sorted(unknown)[0], "unknown field (known: version, name, description, seed, steps)")
        steps = data.get("steps", [])
        if not isinstance(steps, list):
            _fail("steps", f"must be a list; got {type(steps).__name__}")
        return cls(steps=tuple(_step_from_dict(s, f"steps[{i}]") for i, s in enumerate(steps)),
                   name=str(data.get("name", "")), description=str(data.get("description", "")),
                   seed=data.get("seed", 0), version=data.get("version", RECIPE_VERSION))

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=None)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1)

    @classmethod
    def from_text(cls, text: str) -> Recipe:
        """Parse YAML or JSON (JSON is YAML), never constructing arbitrary objects."""
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise RecipeError(f"recipe: not valid YAML or JSON ({str(exc).splitlines()[0]})") from None
        return cls.from_dict(data)


def _step_to_dict(step: Step) -> dict:
    out: dict[str, Any] = {"kind": step.kind}
    for f in dataclasses.fields(step):
        if f.name == "select":
            sel = step.select
            if sel.layers:
                out["layers"] = list(sel.layers)
            if sel.ignore:
                out["ignore"] = list(sel.ignore)
            if sel.overrides:
                out["overrides"] = {p: v for p, v in sel.overrides}
        else:
            value = getattr(step, f.name)
            out[f.name] = list(value) if isinstance(value, tuple) else value
    return out


def _step_from_dict(data, where: str) -> Step:
    if not isinstance(data, Mapping):
        _fail(where, f"must be a mapping with a kind; got {type(data).__name__}")
    kind = data.get("kind")
    if kind not in STEP_TYPES:
        _fail(f"{where}.kind", f"unknown step {kind!r}; known: {', '.join(STEP_TYPES)}")
    step_type = STEP_TYPES[kind]
    names = {f.name for f in dataclasses.fields(step_type)} - {"select"}
    allowed = names | {"kind", "layers", "ignore", "overrides"}
    unknown = sorted(set(data) - allowed)
    if unknown:
        _fail(f"{where}.{unknown[0]}", f"unknown field for {kind} (known: {', '.join(sorted(allowed - {'kind'}))})")
    overrides = data.get("overrides", {}) or {}
    if not isinstance(overrides, Mapping):
        _fail(f"{where}.overrides", "must map layer patterns to values")
    for key in ("layers", "ignore"):
        if not isinstance(data.get(key, []), list):
            _fail(f"{where}.{key}", "must be a list of layer names or regular expressions")
    select = Selection(tuple(data.get("layers", [])), tuple(data.get("ignore", [])),
                       tuple((str(p), v) for p, v in overrides.items()))
    values = {k: (tuple(v) if isinstance(v, list) else v) for k, v in data.items() if k in names}
    try:
        return step_type(select=select, **values)
    except TypeError as exc:
        raise RecipeError(f"{where}: {exc}") from None
    except RecipeError as exc:  # name the step by its place in the recipe, not by its kind
        raise RecipeError(where + str(exc)[len(kind):]) from None


def check_against(recipe: Recipe, layer_names: Iterable[str]) -> None:
    """Refuse, before any work, a recipe whose layer patterns match no layer of the model."""
    names = list(layer_names)
    for i, step in enumerate(recipe.steps):
        for key, pattern in step.select.patterns():
            if not any(matches(pattern, n) for n in names):
                _fail(f"steps[{i}].{key}", f"pattern {pattern!r} matches no layer (layers: "
                      f"{', '.join(names[:8])}{' ...' if len(names) > 8 else ''})")
        if isinstance(step, RemoveUnits) and step.layer not in names:
            _fail(f"steps[{i}].layer", f"no layer named {step.layer!r}")
