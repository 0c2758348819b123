"""The recipe being edited in the studio: mutable, evented, and frozen into a core Recipe on Apply.

Widgets change the draft; the draft says ``sig_changed``; previews and the histogram's threshold redraw
from it. Only :meth:`RecipeDraft.to_recipe` crosses into the engine, as an immutable, validated Recipe,
and it is the same YAML the command line takes.
"""

from __future__ import annotations

from PySide6.QtCore import QObject, Signal

from core.methods.coding import Encode
from core.methods.finetune import FineTune
from core.methods.magnitude import IterativePrune, PruneMagnitude
from core.methods.quantize import Quantize
from core.methods.structured import IMPORTANCES, PruneStructured
from core.recipe import Recipe, Selection

PRUNE_METHODS = ("none", "magnitude", "iterative", "structured")
QUANT_METHODS = ("none", "kmeans", "uniform", "binary", "ternary")
IMPORTANCE = tuple(IMPORTANCES)


class RecipeDraft(QObject):
    sig_changed = Signal()
    """Something in the draft changed; previews should redraw."""

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.prune_method = "magnitude"
        self.scope = "layer"
        self.sparsity = 0.8
        self.layer_sparsity: dict[str, float] = {}
        self.importance = "l1"
        self.quant_method = "kmeans"
        self.bits = 6
        self.layer_bits: dict[str, int] = {}
        self.huffman = True
        self.finetune_epochs = 2
        self.lr = 0.01
        self.name = "studio"

    # ------------------------------------------------------------------------------------------ edits
    def set(self, **values) -> None:
        """Change fields by name (``draft.set(sparsity=0.9)``); emits one ``sig_changed``."""
        changed = False
        for key, value in values.items():
            if not hasattr(self, key) or key.startswith("sig_"):
                raise AttributeError(f"recipe draft has no field {key!r}")
            if getattr(self, key) != value:
                setattr(self, key, value)
                changed = True
        if changed:
            self.sig_changed.emit()

    def set_layer_sparsity(self, layer: str, sparsity: float | None) -> None:
        """Per-layer override (None removes it); switches to layer-wise scope, which overrides need."""
        overrides = dict(self.layer_sparsity)
        if sparsity is None:
            overrides.pop(layer, None)
        else:
            overrides[layer] = min(max(float(sparsity), 0.0), 0.999)
        self.set(layer_sparsity=overrides, scope="layer" if sparsity is not None else self.scope)

    def set_layer_bits(self, layer: str, bits: int | None) -> None:
        overrides = dict(self.layer_bits)
        if bits is None:
            overrides.pop(layer, None)
        else:
            overrides[layer] = int(bits)
        self.set(layer_bits=overrides)

    # ------------------------------------------------------------------------------------------ reading
    def sparsity_of(self, layer: str) -> float:
        if self.prune_method in ("none", "structured"):
            return 0.0
        return self.layer_sparsity.get(layer, self.sparsity)

    def bits_of(self, layer: str) -> int:
        if self.quant_method == "none":
            return 32
        if self.quant_method in ("binary", "ternary"):
            return 1
        return self.layer_bits.get(layer, self.bits)

    def to_recipe(self) -> Recipe:
        """The draft as an immutable, validated core Recipe."""
        steps = []
        overrides = tuple(sorted(self.layer_sparsity.items()))
        select = Selection(overrides=overrides if self.scope == "layer" else ())
        if self.prune_method == "magnitude":
            steps.append(PruneMagnitude(sparsity=self.sparsity, scope=self.scope, select=select))
        elif self.prune_method == "iterative":
            steps.append(IterativePrune(sparsity=self.sparsity, scope=self.scope, steps=4,
                                        epochs_per_step=max(1, self.finetune_epochs // 2), lr=self.lr,
                                        select=select))
        elif self.prune_method == "structured":
            steps.append(PruneStructured(amount=min(self.sparsity, 0.9), importance=self.importance,
                                         select=Selection(overrides=overrides)))
        if self.finetune_epochs and self.prune_method != "none":
            steps.append(FineTune(epochs=self.finetune_epochs, lr=self.lr))
        if self.quant_method != "none":
            bit_overrides = tuple(sorted(self.layer_bits.items()))
            steps.append(Quantize(method=self.quant_method, bits=self.bits,
                                  finetune_epochs=self.finetune_epochs if self.quant_method == "kmeans" else 0,
                                  lr=self.lr / 10, select=Selection(overrides=bit_overrides)))
        steps.append(Encode(huffman=self.huffman))
        return Recipe(steps=tuple(steps), name=self.name)

    def load_recipe(self, recipe: Recipe) -> None:
        """Take the settings of a recipe's first pruning and quantization steps (the studio's view of it)."""
        values: dict = {"prune_method": "none", "quant_method": "none", "layer_sparsity": {}, "layer_bits": {},
                        "name": recipe.name or "loaded"}
        for step in recipe.steps:
            if isinstance(step, (PruneMagnitude, IterativePrune)):
                values.update(prune_method="magnitude" if isinstance(step, PruneMagnitude) else "iterative",
                              sparsity=step.sparsity, scope=step.scope,
                              layer_sparsity=dict(step.select.overrides))
            elif isinstance(step, PruneStructured):
                values.update(prune_method="structured", sparsity=step.amount, importance=step.importance,
                              layer_sparsity=dict(step.select.overrides))
            elif isinstance(step, Quantize):
                values.update(quant_method=step.method, bits=step.bits, layer_bits=dict(step.select.overrides))
            elif isinstance(step, FineTune):
                values.update(finetune_epochs=step.epochs, lr=step.lr)
            elif isinstance(step, Encode):
                values.update(huffman=step.huffman)
        self.set(**values)
