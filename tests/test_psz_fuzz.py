"""Fuzzing the compressed-file loader: mutated headers with valid checksums are refused with Prunescope's
own error, in one line, or load correctly; never a traceback, a hang or a huge allocation.

2,000 seeded mutants of three real files (see tests/psz_mutants.py); bench/fuzz_psz.py runs 100,000+.
"""

from __future__ import annotations

import collections

import pytest
import torch

from core.errors import PrunescopeError
from core.io import load_model
from tests.psz_mutants import make_bases, mutants

CASES = 2000
SEED = 12


@pytest.fixture(scope="module")
def bases(tmp_path_factory):
    return make_bases(tmp_path_factory.mktemp("psz-bases"))


def test_every_mutated_header_is_refused_cleanly_or_loads(bases, tmp_path):
    outcomes: collections.Counter = collections.Counter()
    crashes = []
    path = tmp_path / "mutant.psz"
    for i, name, data in mutants(bases, SEED, CASES):
        path.write_bytes(data)
        try:
            loaded = load_model(path)
        except PrunescopeError as exc:
            assert "\n" not in str(exc), (i, name, str(exc))
            outcomes[type(exc).__name__] += 1
            continue
        except Exception as exc:  # noqa: BLE001 - what the test is looking for
            crashes.append(f"mutant {i} of {name}: {type(exc).__name__}: {str(exc)[:200]}")
            continue
        assert isinstance(loaded.module, torch.nn.Module) and loaded.format == "prunescope"
        outcomes["loaded"] += 1
    assert crashes == []
    assert sum(outcomes.values()) == CASES
    assert outcomes["ModelLoadError"] > CASES // 2 and outcomes["loaded"] > 0, outcomes
