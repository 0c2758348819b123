"""Refusing, before any work, a recipe that cannot run on this model and data.

Every rule here reads what the steps declare (:mod:`core.recipe.registry`): the layers a kind works on
(``targets``), what a step needs (``Step.needs``), whether it renames layers. No kind is named.
"""

from __future__ import annotations

from core.analysis.activations import compiled_graph
from core.eval.data import Dataset
from core.errors import one_line
from core.io.base import LoadedModel
from core.io.program import CompiledProgram
from core.pipeline.context import CompressionError, no_match_message
from core.recipe import Need, Recipe, RecipeError, kind_of, kinds
from core.recipe.step import check_step_against, unmatched


def _available(need: Need, data: Dataset | None, step) -> bool:
    if need is Need.TEACHER:  # a step names its teachers (loaded, and refused if they cannot be, before any work)
        return bool(step.teachers())
    return data is not None  # training and calibration both read the labelled data set for now


def _how_to_satisfy(need: Need) -> str:
    return ("name it in the step (teacher: original, or a model)" if need is Need.TEACHER
            else "pass --data NAME (in the studio: the Data set menu)")


def _check_in_place(recipe: Recipe, loaded: LoadedModel) -> None:
    """A compiled program's code cannot change: only steps that change weights in place, without training,
    run on it."""
    allowed = ", ".join(k for k, entry in kinds().items() if entry.in_place)
    for i, step in enumerate(recipe.steps):
        trains = step.needs() & {Need.TRAINING_DATA, Need.TEACHER}
        if not kind_of(step).in_place or trains:
            what = "trains the model" if trains else "changes the model's layers"
            raise CompressionError(one_line(
                f"steps[{i}] ({step.kind}) {what}, and {loaded.name} is a compiled program ({loaded.format}) whose "
                f"code cannot change: that needs the eager model (its weights with the architecture that builds "
                f"them: a state_dict with --arch; in the studio, File > Open model… and its Architecture; or a zoo "
                f"model). On a compiled program these steps run, in place "
                f"on its weights and without training: {allowed}"))


def weights_only_refusal(loaded: LoadedModel) -> str:
    """Why weights with no architecture (a streamed ``.safetensors``) cannot be compressed, and what to do."""
    return (f"{loaded.name} holds weights only, with no architecture, so there are no layers to compress: name "
            "the architecture that builds them with --arch package.module:factory or --arch path/to/file.py:factory "
            "(in the studio: File > Open model… and its Architecture)")


def check(recipe: Recipe, loaded: LoadedModel, data: Dataset | None) -> None:
    """Raise :class:`RecipeError` or :class:`CompressionError` (one line, naming the step) if ``recipe``
    cannot run on ``loaded`` with ``data``; return quietly if it can."""
    if loaded.streamed is not None:
        raise CompressionError(weights_only_refusal(loaded))
    if isinstance(loaded.module, CompiledProgram):
        _check_in_place(recipe, loaded)
    elif compiled_graph(loaded.module):
        raise CompressionError(f"{loaded.name} is a compiled graph ({loaded.format}); compression changes layers, "
                               "so it needs the eager model: its weights with the architecture that builds them (a state_dict "
                               "with --arch; in the studio, File > Open model… and its Architecture), or a zoo model")
    model = loaded.module
    names = [n for n, m in model.named_modules() if next(m.parameters(recurse=False), None) is not None]
    for i, step in enumerate(recipe.steps):  # patterns name layers as they are when the step runs: until a
        check_step_against(step, f"steps[{i}]", names)  # step renames layers, that is as they are now
        kind = kind_of(step)
        if kind.targets is not None:
            candidates = kind.targets(model)
            missing = unmatched(step, candidates)
            if missing is not None:
                raise RecipeError(no_match_message(f"steps[{i}]", step, missing, candidates))
        if step.renames_layers:
            break
    for i, step in enumerate(recipe.steps):
        for need in sorted(step.needs(), key=lambda n: n.name):
            if not _available(need, data, step):
                raise CompressionError(f"steps[{i}] ({step.kind}) needs {need.value}: {_how_to_satisfy(need)}")
    if data is None and not loaded.probe_inputs:
        raise CompressionError("no data set and no input shape, so the model cannot be traced: pass --data NAME or "
                               "--input-shape N,C,H,W (in the studio: the Data set menu, or File > Open model… and "
                               "its Input shape)")
