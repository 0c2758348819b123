"""A model's raw outputs (logits) on chosen test images: what the studio's softened-outputs view softens.

A task (a generator, :mod:`core.progress`) so that the studio runs it in the background; the CLI or a
script drains it with :func:`core.progress.run`.
"""

from __future__ import annotations

import numpy as np
import torch

from core.eval.data import Dataset, to_float
from core.eval.evaluate import call_model, logits_of
from core.io import LoadedModel, LoadOptions
from core.progress import Progress, Task


def logits_on_test_images(loaded: LoadedModel, data: Dataset, indices: list[int]) -> Task[np.ndarray]:
    """The model's logits for test images ``indices``: float32, shape (len(indices), classes), in eval
    and inference mode (the model's training flag is restored). IndexError for an index outside the test
    split."""
    n = len(data.test)
    bad = [i for i in indices if not 0 <= i < n]
    if bad:
        raise IndexError(f"test image {bad[0]} is outside the test split (0 to {n - 1})")
    yield Progress("logits", 0, 1, f"running {loaded.name} on {len(indices)} test image(s)")
    x = to_float(data.test.images[list(indices)])
    shape = loaded.input_shape
    if shape is not None and len(shape) == 2 and shape[1] == x[0].numel():  # the model takes flat vectors
        x = x.reshape(len(indices), shape[1])
    model = loaded.module
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            out = logits_of(call_model(model, x)).to(torch.float32)
    finally:
        model.train(was_training)
    if out.ndim != 2 or out.shape[0] != len(indices):
        raise ValueError(f"{loaded.name} outputs shape {tuple(out.shape)}, not one row of class scores per image")
    yield Progress("logits", 1, 1, "done")
    return out.numpy().copy()


def load_teacher(spec: str, trust: bool = False) -> Task[LoadedModel]:
    """Load a teacher model (a zoo name ``zoo:lenet300``, or a file the loaders read) in the background."""
    from core.io.loading import load_model

    yield Progress("load", 0, 1, f"loading teacher {spec}")
    loaded = load_model(spec, LoadOptions(trust=trust))
    yield Progress("load", 1, 1, "loaded")
    return loaded
