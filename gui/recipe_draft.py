"""The recipe being edited in the studio: a core Recipe's steps, held exactly, and the fields its controls
edit, read from and written into those steps.

The draft holds the steps of a :class:`core.recipe.Recipe` as they are: a loaded recipe comes back from
:meth:`RecipeDraft.to_recipe` equal to the file, whatever it holds. The panel's controls edit it through
fields (``draft.set(sparsity=0.9)``): each field reads and writes the step it belongs to, the recipe's
first step of that role (pruning, fine-tuning, quantization, encoding), and every other setting and step is
left as it was. A control whose step is absent remembers its value, so switching a method off and on
again restores it. Steps the controls have no field for are shown read-only by the panel and kept.
"""

from __future__ import annotations

import dataclasses
import re

from PySide6.QtCore import QObject, Signal

from core.methods.coding import Encode
from core.methods.finetune import FineTune
from core.methods.magnitude import IterativePrune, PruneMagnitude
from core.methods.quantize import Quantize
from core.methods.structured import IMPORTANCES, PruneStructured
from core.recipe import Recipe, RecipeError, Selection, Step
from core.recipe.schema import check_order
from core.recipe.step import matches
from gui.draft_kinds import KindEdits

PRUNE_METHODS = ("none", "magnitude", "iterative", "structured")
QUANT_METHODS = ("none", "kmeans", "uniform", "binary", "ternary")
IMPORTANCE = tuple(IMPORTANCES)
PRUNE_KINDS = {"magnitude": PruneMagnitude, "iterative": IterativePrune, "structured": PruneStructured}
ROLES = {"prune": tuple(c.kind for c in PRUNE_KINDS.values()), "finetune": (FineTune.kind,),
         "quantize": (Quantize.kind,), "encode": (Encode.kind,)}
DEFAULTS = {"prune_method": "magnitude", "scope": "layer", "sparsity": 0.8, "layer_sparsity": {}, "importance": "l1",
            "quant_method": "kmeans", "bits": 6, "layer_bits": {}, "huffman": True, "finetune_epochs": 2, "lr": 0.01}
FIELDS = {"prune": {"prune_method", "scope", "sparsity", "layer_sparsity", "importance", "finetune_epochs", "lr"},
          "finetune": {"prune_method", "finetune_epochs", "lr"},
          "quantize": {"quant_method", "bits", "layer_bits", "finetune_epochs", "lr"},
          "encode": {"huffman"}}
MAX_STRUCTURED = 0.9  # the studio removes at most 90% of a layer's units


def _override_text(step: Step, value) -> str:
    if "bits" in {f.name for f in dataclasses.fields(step)}:
        return f"{value} bit"
    if isinstance(value, float):
        return f"{value:.0%} {'of channels' if step.kind == 'prune_structured' else 'pruned'}"
    return f"{step.kind} {value}"


DRAFT_NAME = "studio"
"""The name of a draft that was not loaded from a file: a variant made from it is named by what it does."""


class RecipeDraft(KindEdits, QObject):
    sig_changed = Signal()
    """Something in the draft changed; previews should redraw."""
    sig_refused = Signal(str)
    """An edit would have made an invalid recipe (the reason); the draft is as it was."""

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.name, self.description, self.seed = DRAFT_NAME, "", 0
        self.base: Recipe | None = None  # a loaded chain's earlier links, kept as they are
        self.claimed: set[str] = set()  # kinds whose first step a panel section edits whole (gui.draft_kinds)
        self._memory = dict(DEFAULTS)  # the value of every field, also of those whose step is absent
        self._steps: tuple[Step, ...] = ()
        self._steps = self._edited(set(DEFAULTS))
        self.version = 0  # counts changes, for the cached preview
        self._preview: tuple = (None, None, {})

    # ------------------------------------------------------------------------------------------ the recipe
    @property
    def steps(self) -> tuple[Step, ...]:
        return self._steps

    def to_recipe(self) -> Recipe:
        """The draft as an immutable, validated core Recipe."""
        return Recipe(steps=self._steps, name=self.name, description=self.description, seed=self.seed,
                      base=self.base)

    def load_recipe(self, recipe: Recipe) -> None:
        """Hold exactly ``recipe``; the controls show its steps' settings."""
        self.name, self.description, self.seed = recipe.name, recipe.description, recipe.seed
        self.base = recipe.base
        self._steps = recipe.steps
        self._memory.update({f: getattr(self, f) for f in DEFAULTS})
        self._changed()

    def preview(self, stats: dict) -> dict:
        """The engine's estimate of what the recipe does to each layer in ``stats``
        (:func:`core.analysis.estimate.preview_recipe`), computed once per change of the draft."""
        version, seen, cached = self._preview
        if version != self.version or seen is not stats:
            from core.analysis.estimate import preview_recipe

            cached = preview_recipe(self.to_recipe(), stats)
            self._preview = (self.version, stats, cached)
        return cached

    def role_index(self, role: str) -> int | None:
        """Index of the step the controls of ``role`` edit (the first of its kinds), or None."""
        return next((i for i, s in enumerate(self._steps) if s.kind in ROLES[role]), None)

    def controlled(self) -> set[int]:
        """Indices of the steps the controls edit; the others are shown as they are."""
        return ({i for role in ROLES if (i := self.role_index(role)) is not None}
                | {i for kind in self.claimed if (i := self.kind_index(kind)) is not None})

    def remove_step(self, index: int) -> None:
        """Take one step out of the recipe (the user asked for it)."""
        steps = list(self._steps)
        del steps[index]
        self._steps = tuple(steps)
        self._changed()

    def _step(self, role: str) -> Step | None:
        i = self.role_index(role)
        return None if i is None else self._steps[i]

    def _changed(self) -> None:
        self.version += 1
        self.sig_changed.emit()

    # ------------------------------------------------------------------------------------------ reading
    @property
    def prune_method(self) -> str:
        step = self._step("prune")
        return next((m for m, c in PRUNE_KINDS.items() if isinstance(step, c)), "none")

    @property
    def scope(self) -> str:
        step = self._step("prune")
        return step.scope if isinstance(step, (PruneMagnitude, IterativePrune)) else self._memory["scope"]

    @property
    def sparsity(self) -> float:
        step = self._step("prune")
        if isinstance(step, PruneStructured):  # a remembered value over the cap reads as itself
            remembered = self._memory["sparsity"]
            return remembered if min(remembered, MAX_STRUCTURED) == step.amount else step.amount
        return step.sparsity if step is not None else self._memory["sparsity"]

    @property
    def layer_sparsity(self) -> dict[str, float]:
        step = self._step("prune")
        if step is None or (not isinstance(step, PruneStructured) and step.scope == "global"):
            return dict(self._memory["layer_sparsity"])  # global pruning has no per-layer values
        return dict(step.select.overrides)

    @property
    def importance(self) -> str:
        step = self._step("prune")
        return step.importance if isinstance(step, PruneStructured) else self._memory["importance"]

    @property
    def quant_method(self) -> str:
        step = self._step("quantize")
        return step.method if step is not None else "none"

    @property
    def bits(self) -> int:
        step = self._step("quantize")
        return step.bits if step is not None else self._memory["bits"]

    @property
    def layer_bits(self) -> dict[str, int]:
        step = self._step("quantize")
        return dict(step.select.overrides) if step is not None else dict(self._memory["layer_bits"])

    @property
    def huffman(self) -> bool:
        step = self._step("encode")
        return step.huffman if step is not None else self._memory["huffman"]

    @property
    def finetune_epochs(self) -> int:
        step = self._step("finetune")
        return step.epochs if step is not None else self._memory["finetune_epochs"]

    @property
    def lr(self) -> float:
        step = self._step("finetune")
        return step.lr if step is not None else self._memory["lr"]

    def sparsity_of(self, layer: str) -> float:
        if self.prune_method in ("none", "structured"):
            return 0.0
        return self.layer_sparsity.get(layer, self.sparsity)

    def bits_of(self, layer: str) -> int:
        step = self._step("quantize")
        return 32 if step is None else step.bits_of(layer)

    # ------------------------------------------------------------------------------------------ edits
    def set(self, **values) -> None:
        """Change fields by name (``draft.set(sparsity=0.9)``); emits one ``sig_changed``. An edit that would
        make the recipe invalid (structured pruning after a quantize step) changes nothing and says why."""
        changed, before = set(), dict(self._memory)
        for key, value in values.items():
            if key == "name":
                if value != self.name:
                    self.name = value
                    changed.add(key)
                continue
            if key not in DEFAULTS:
                raise AttributeError(f"recipe draft has no field {key!r}")
            if getattr(self, key) != value or self._memory[key] != value:
                self._memory[key] = value
                changed.add(key)
        if not changed:
            return
        steps = self._edited(changed)
        try:
            check_order(steps)
        except RecipeError as exc:
            self._memory = before
            self.sig_refused.emit(str(exc))
            self.sig_changed.emit()  # the controls go back to what the draft holds
            return
        self._steps = steps
        self._changed()

    def set_layer_sparsity(self, layer: str, sparsity: float | None) -> None:
        """Per-layer override (None removes it); switches to layer-wise scope, which overrides need."""
        overrides = self.layer_sparsity
        if sparsity is None:
            overrides.pop(layer, None)
        else:
            overrides[layer] = min(max(float(sparsity), 0.0), 0.999)
        self.set(layer_sparsity=overrides, scope="layer" if sparsity is not None else self.scope)

    def overrides_of(self, layer: str) -> list[str]:
        """Every per-layer value the recipe gives ``layer`` ("95% pruned", "3 bit"), from every step whose
        overrides name it (exactly or by pattern)."""
        out = []
        for step in self._steps:
            for pattern, value in step.select.overrides:
                try:
                    hit = matches(pattern, layer)
                except re.error:
                    hit = False
                if hit:
                    out.append(_override_text(step, value))
        return out

    def clear_overrides(self) -> None:
        """Take every per-layer override out of every step; the steps' own settings stay."""
        steps = tuple(dataclasses.replace(s, select=dataclasses.replace(s.select, overrides=()))
                      if s.select.overrides else s for s in self._steps)
        if steps == self._steps:
            return
        self._steps = steps
        self._memory.update(layer_sparsity={}, layer_bits={})
        self._changed()

    def set_layer_bits(self, layer: str, bits: int | None) -> None:
        overrides = self.layer_bits
        if bits is None:
            overrides.pop(layer, None)
        else:
            overrides[layer] = int(bits)
        self.set(layer_bits=overrides)

    def _edited(self, changed: set[str]) -> tuple[Step, ...]:
        """The steps with ``changed`` fields written into the steps they belong to (made, edited or taken
        out); every other step, and every setting no control has, stays as it was."""
        steps = list(self._steps)
        for role, build in (("prune", self._prune_step), ("finetune", self._finetune_step),
                            ("quantize", self._quantize_step), ("encode", self._encode_step)):
            if not changed & FIELDS[role]:
                continue
            index = next((i for i, s in enumerate(steps) if s.kind in ROLES[role]), None)
            new = build(None if index is None else steps[index], changed)
            if index is not None and new is None:
                del steps[index]
            elif index is not None:
                steps[index] = new
            elif new is not None:
                steps.insert(self._place(role, steps), new)
        return tuple(steps)

    @staticmethod
    def _place(role: str, steps: list[Step]) -> int:
        """Where a new step of ``role`` goes: pruning first, fine-tuning after it, quantization before
        the encode step, encoding last."""
        kinds = [s.kind for s in steps]
        if role == "prune":
            return 0
        if role == "finetune":
            return next((i + 1 for i, k in enumerate(kinds) if k in ROLES["prune"]), 0)
        if role == "quantize":
            return kinds.index(Encode.kind) if Encode.kind in kinds else len(kinds)
        return len(kinds)

    def _prune_step(self, step: Step | None, changed: set[str]) -> Step | None:
        m = self._memory
        method = m["prune_method"]
        if method == "none":
            return None
        config = PRUNE_KINDS[method]
        kept = step.select if step is not None else Selection()  # layers/ignore the controls do not edit
        overrides = tuple(sorted(m["layer_sparsity"].items()))
        if method == "structured":
            values = dict(amount=min(m["sparsity"], MAX_STRUCTURED), importance=m["importance"],
                          select=dataclasses.replace(kept, overrides=overrides))
            edit_of = {"sparsity": ("amount",), "importance": ("importance",), "layer_sparsity": ("select",)}
        else:  # global pruning has one threshold: the per-layer values are remembered, not used
            values = dict(sparsity=m["sparsity"], scope=m["scope"],
                          select=dataclasses.replace(kept, overrides=overrides if m["scope"] == "layer" else ()))
            edit_of = {"sparsity": ("sparsity",), "scope": ("scope", "select"), "layer_sparsity": ("select",)}
            if method == "iterative":
                values.update(steps=4, epochs_per_step=max(1, m["finetune_epochs"] // 2), lr=m["lr"])
                edit_of.update(finetune_epochs=("epochs_per_step",), lr=("lr",))
        if not isinstance(step, config):
            return config(**values)
        edits = {k: values[k] for f in changed for k in edit_of.get(f, ())}
        return dataclasses.replace(step, **edits) if edits else step

    def _finetune_step(self, step: Step | None, changed: set[str]) -> Step | None:
        m = self._memory
        pruning = m["prune_method"] != "none"  # the controls fine-tune after pruning
        if m["finetune_epochs"] <= 0 or not (pruning or (step is not None and "prune_method" not in changed)):
            return None
        if step is None:
            return FineTune(epochs=m["finetune_epochs"], lr=m["lr"])
        edits = {k: v for f, k, v in (("finetune_epochs", "epochs", m["finetune_epochs"]), ("lr", "lr", m["lr"]))
                 if f in changed}
        return dataclasses.replace(step, **edits) if edits else step

    def _quantize_step(self, step: Step | None, changed: set[str]) -> Step | None:
        m = self._memory
        method = m["quant_method"]
        if method == "none":
            return None
        training = m["finetune_epochs"] if method == "kmeans" else 0  # the controls train k-means codebooks
        values = dict(method=method, bits=m["bits"], finetune_epochs=training, lr=m["lr"] / 10,
                      select=Selection(overrides=tuple(sorted(m["layer_bits"].items()))))
        if step is None:
            return Quantize(**values)
        edits = {}
        if "quant_method" in changed:
            edits.update(method=method, finetune_epochs=training)
            if method == "kmeans":
                edits["granularity"] = "tensor"  # k-means shares one codebook per layer
            else:
                edits["scope"] = "layer"  # a global codebook is made by k-means
        if "bits" in changed:
            edits["bits"] = m["bits"]
        if "layer_bits" in changed:
            edits["select"] = dataclasses.replace(step.select, overrides=values["select"].overrides)
            if values["select"].overrides:
                edits["scope"] = "layer"  # bits per layer: a codebook per layer
        if "finetune_epochs" in changed and method == "kmeans":
            edits["finetune_epochs"] = training
        if "lr" in changed:
            edits["lr"] = values["lr"]
        return dataclasses.replace(step, **edits) if edits else step

    def _encode_step(self, step: Step | None, changed: set[str]) -> Step | None:
        if step is None:
            return Encode(huffman=self._memory["huffman"])
        return dataclasses.replace(step, huffman=self._memory["huffman"])
