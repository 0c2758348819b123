"""Recipes as data: steps and their layer selections (:mod:`~core.recipe.step`), the registry of step kinds
(:mod:`~core.recipe.registry`), the recipe itself (:mod:`~core.recipe.schema`) and the checks a step's
config runs on its fields (:mod:`~core.recipe.validate`)."""

from core.recipe.registry import STEP_TYPES, StepKind, kind_of, kinds, register_step, step_kind, unregister_step
from core.recipe.schema import RECIPE_VERSION, Recipe, check_against, step_from_dict, step_to_dict
from core.recipe.step import Need, Selection, Step, matches
from core.recipe.validate import RecipeError

__all__ = ["RECIPE_VERSION", "STEP_TYPES", "Need", "Recipe", "RecipeError", "Selection", "Step", "StepKind",
           "check_against", "kind_of", "kinds", "matches", "register_step", "step_from_dict", "step_kind",
           "step_to_dict", "unregister_step"]
