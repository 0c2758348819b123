"""Each step of the architecture families applied from the real window: the studio compresses the original
in the background into a ``.psz`` whose size on disk is the size the variant and its report give, with the
recipe recorded exactly, and the variant's module is the one the step describes.

Each model has its own window here, and every test starts from the original being current, so the order of
tests (or what other modules leave current) cannot change what a test applies to."""

from __future__ import annotations

import pytest
import torch

from core.recipe import Recipe
from tests.gui.test_arch_views import _close, _open


@pytest.fixture(scope="module")
def lenet300_runs(qapp, tmp_path_factory):
    w = _open(qapp, tmp_path_factory, "zoo:lenet300")
    yield w
    _close(qapp, w)


@pytest.fixture(scope="module")
def lenet5_runs(qapp, tmp_path_factory):
    w = _open(qapp, tmp_path_factory, "zoo:lenet5")
    yield w
    _close(qapp, w)


def _distilled(original, m) -> bool:
    return type(m.fc1).__name__ == "Linear" and not torch.equal(m.fc1.weight, original.fc1.weight)


def _shared(original, m) -> bool:
    fc2 = m.get_submodule("fc2")
    return fc2[0].out_features == 8 and fc2[1].index.numel() == original.fc2.out_features


def _global_codebook(original, m) -> bool:
    values = torch.cat([p.detach().flatten() for name, p in m.named_parameters() if name.endswith("weight")])
    return torch.unique(values).numel() <= 16 and torch.unique(values).numel() > 2


def _factorised(original, m) -> bool:
    first, second = m.get_submodule("fc1.0"), m.get_submodule("fc1.1")
    return (first.in_features == original.fc1.in_features and first.out_features == second.in_features == 20
            and second.out_features == original.fc1.out_features)


def _separable(original, m) -> bool:
    depthwise, pointwise = m.get_submodule("conv2.0"), m.get_submodule("conv2.1")
    return (depthwise.groups == original.conv2.in_channels == depthwise.out_channels
            and pointwise.kernel_size == (1, 1) and pointwise.out_channels == original.conv2.out_channels)


STUDIO_RUNS = {  # (window fixture, the recipe's first step, a check of the variant's module against the original)
    "distill": ("lenet300_runs", "{kind: distill, teacher: original, temperature: 4, alpha: 0.7, epochs: 1, lr: 0.01}",
                _distilled),
    "share_filters": ("lenet300_runs", "{kind: share_filters, k: 8, layers: [fc2]}", _shared),
    "quantize_global": ("lenet300_runs", "{kind: quantize, method: kmeans, bits: 4, scope: global}",
                        _global_codebook),
    "low_rank": ("lenet300_runs", "{kind: low_rank, layers: [fc1], rank: 20}", _factorised),
    "separable": ("lenet5_runs", "{kind: separable, layers: [conv2], fit_steps: 20, batches: 2}", _separable),
}


@pytest.mark.parametrize("name", list(STUDIO_RUNS))
def test_each_new_step_runs_from_the_studio_into_a_file_of_the_reported_size(qtbot, request, name):
    fixture, step, check = STUDIO_RUNS[name]
    w = request.getfixturevalue(fixture)
    s = w.session
    store = s.variants
    qtbot.waitUntil(lambda: not s.runner.busy, timeout=120_000)
    s.make_current(store.original.id)
    qtbot.waitUntil(lambda: not s.runner.busy, timeout=120_000)
    original = store.models.get(store.original.id, s.loaded).module
    before = len(store.variants)
    recipe = Recipe.from_text(f"name: studio-{name}\nsteps: [{step}, {{kind: encode}}]")
    assert s.apply(recipe, on=store.original.id)
    qtbot.waitUntil(lambda: len(store.variants) == before + 1 and not s.runner.busy, timeout=240_000)
    variant = store.current
    assert variant.parent is None  # made from the original, not from what an earlier test left current
    report = store.reports[variant.id]
    assert store.files[variant.id].stat().st_size == variant.size_bytes == report["compressed_bytes"]
    assert Recipe.from_dict(report["recipe"]) == recipe
    assert variant.accuracy is not None and variant.accuracy > 0.5  # measured on the test images, not guessed
    assert check(original, store.models[variant.id].module)
