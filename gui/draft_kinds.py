"""Edits of the draft's steps by kind, for the kinds whose controls edit a whole step (distillation, low
rank, separable layers): the first step of a kind, its fields, the layers it selects and their values.

A step is made from the kind's registered config (``step_kind(kind).config``); no kind is named here. A new
step goes where the registry lists its family (pruning, architecture, distillation, training,
quantization, coding); an edit that would make the recipe invalid changes nothing and says why
(``sig_refused``), as the draft's other edits do.
"""

from __future__ import annotations

import dataclasses

from core.recipe import RecipeError, Selection, Step
from core.recipe.registry import kinds, step_kind
from core.recipe.schema import check_order


class KindEdits:
    """Mixed into :class:`gui.recipe_draft.RecipeDraft` (which provides ``_steps``, ``_changed`` and
    ``sig_refused``)."""

    claimed: set[str]

    def claim(self, *names: str) -> None:
        """The panel has controls for the whole first step of these kinds: it is not listed read-only."""
        self.claimed.update(names)

    def kind_index(self, kind: str) -> int | None:
        return next((i for i, s in enumerate(self._steps) if s.kind == kind), None)

    def step_of(self, kind: str) -> Step | None:
        """The first step of ``kind`` in the recipe, or None."""
        i = self.kind_index(kind)
        return None if i is None else self._steps[i]

    def set_step(self, kind: str, **fields) -> bool:
        """Set fields of the first step of ``kind``, making it (from its config's defaults) when absent.
        Returns False, with ``sig_refused`` and nothing changed, when the step or recipe would be invalid."""
        steps, i = list(self._steps), self.kind_index(kind)
        try:
            if i is None:
                steps.insert(self._kind_place(kind, steps), step_kind(kind).config(**fields))
            else:
                steps[i] = dataclasses.replace(steps[i], **fields)
            check_order(tuple(steps))
        except (RecipeError, ValueError, TypeError) as exc:
            self.sig_refused.emit(str(exc))
            self.sig_changed.emit()  # the controls go back to what the draft holds
            return False
        if tuple(steps) != self._steps:
            self._steps = tuple(steps)
            self._changed()
        return True

    def drop_kind(self, kind: str) -> None:
        """Take the first step of ``kind`` out of the recipe (nothing happens when there is none)."""
        i = self.kind_index(kind)
        if i is not None:
            self.remove_step(i)

    @staticmethod
    def _kind_place(kind: str, steps: list[Step]) -> int:
        order = list(kinds())
        rank = order.index(kind)
        return next((i for i, s in enumerate(steps) if s.kind in order and order.index(s.kind) > rank), len(steps))

    # ------------------------------------------------------------------------------------------ per layer
    def selects(self, kind: str, layer: str) -> bool:
        """Whether the first step of ``kind`` works on ``layer`` (its layers and ignore patterns)."""
        step = self.step_of(kind)
        return step is not None and bool(step.select.select([layer]))

    def layer_value(self, kind: str, layer: str):
        """The first step of ``kind``'s own value for ``layer`` (its overrides), or None."""
        step = self.step_of(kind)
        return None if step is None else step.select.value_for(layer, None)

    def set_layer_value(self, kind: str, layer: str, value, **fields) -> bool:
        """Give ``layer`` its own value in the first step of ``kind`` (None removes it), and make sure that
        step works on ``layer``; ``fields`` are set on the step too (the step is made when absent)."""
        return self.set_layer_values(kind, {layer: value}, **fields)

    def set_layer_values(self, kind: str, values: dict, **fields) -> bool:
        """:meth:`set_layer_value` for many layers at once (``values``: layer -> value, None removes it):
        one edit of the step, one ``sig_changed``."""
        step = self.step_of(kind)
        select = step.select if step is not None else Selection(layers=tuple(values))
        for layer, value in values.items():
            overrides = tuple((p, v) for p, v in select.overrides if p != layer)
            if value is not None:
                overrides = ((layer, value),) + overrides  # the first matching override wins
            select = self._including(select, layer, overrides)
        return self.set_step(kind, select=select, **fields)

    def set_layer_selected(self, kind: str, layer: str, on: bool) -> bool:
        """Add ``layer`` to the layers the first step of ``kind`` works on (making the step), or take it
        out (the step goes when it would select nothing named, since no layers would mean every layer)."""
        step = self.step_of(kind)
        if on:
            select = step.select if step is not None else Selection(layers=(layer,))
            return self.set_step(kind, select=self._including(select, layer, select.overrides))
        if step is None or not step.select.select([layer]):
            return True
        select = step.select
        overrides = tuple((p, v) for p, v in select.overrides if p != layer)
        if layer in select.layers:
            layers = tuple(p for p in select.layers if p != layer)
            if not layers:
                self.drop_kind(kind)
                return True
            return self.set_step(kind, select=dataclasses.replace(select, layers=layers, overrides=overrides))
        return self.set_step(kind, select=dataclasses.replace(select, ignore=select.ignore + (layer,),
                                                              overrides=overrides))

    @staticmethod
    def _including(select: Selection, layer: str, overrides) -> Selection:
        layers = select.layers
        if layers and not select.select([layer]) and layer not in layers:
            layers = layers + (layer,)
        ignore = tuple(p for p in select.ignore if p != layer)
        return dataclasses.replace(select, layers=layers, ignore=ignore, overrides=overrides)
