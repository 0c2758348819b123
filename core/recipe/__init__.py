"""Recipes: what to do to a model, as data (see :mod:`core.recipe.schema`)."""

from core.recipe.schema import *  # noqa: F401,F403
