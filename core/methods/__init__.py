"""The compression methods: one module per family, each defining its kinds of step (config + handler, and
optionally a preview and a structure op) and registering them (:mod:`core.recipe.registry`).

Importing this package registers the built-in methods; :func:`core.plugins.discover` does so on the first
look-up, so nothing else names them. The order here is the order kinds are listed (the studio's panel too).
Shared parts: ``masks`` (pruning masks as parametrizations), ``codebooks`` (shared weights: k-means,
uniform, binary, ternary), ``distill`` (the distillation loss, the ``distill`` step and the block every step that
trains takes), ``replacing`` (putting a block of new layers in a layer's place, for the architecture steps:
low_rank, separable, sharing).
"""

# isort: off (the order of registration)
from core.methods import magnitude  # noqa: F401
from core.methods import structured  # noqa: F401
from core.methods import low_rank  # noqa: F401
from core.methods import separable  # noqa: F401
from core.methods import sharing  # noqa: F401
from core.methods import early_exit  # noqa: F401
from core.methods import distill  # noqa: F401
from core.methods import finetune  # noqa: F401
from core.methods import quantize  # noqa: F401
from core.methods import int8  # noqa: F401
from core.methods import coding  # noqa: F401
from core.methods import allocation  # noqa: F401
