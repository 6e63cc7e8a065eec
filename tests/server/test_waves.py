"""Waves: rows split so that no account appears twice in one wave, each account's rows in order across waves."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from server._pipeline import _waves


def _reference(keys: list[int]) -> list[list[int]]:
    seen: dict[int, int] = {}
    wave_of = []
    for key in keys:
        wave_of.append(seen.get(key, 0))
        seen[key] = wave_of[-1] + 1
    return [[i for i, w in enumerate(wave_of) if w == wave] for wave in range(max(wave_of) + 1)]


@given(st.lists(st.integers(min_value=0, max_value=2**64 - 1) | st.sampled_from([1, 2, 3]), min_size=1, max_size=300))
def test_waves_equal_the_row_by_row_definition(keys: list[int]) -> None:
    """A row's wave is the count of earlier rows of its account; rows keep their order inside each wave."""
    got = [w.tolist() for w in _waves(np.array(keys, dtype=np.uint64))]  # account keys are uint64
    assert got == _reference(keys)


def test_one_account_repeated_gives_one_row_per_wave() -> None:
    """Five rows of one account are five waves of one row each, in order."""
    assert [w.tolist() for w in _waves(np.full(5, 7, dtype=np.uint64))] == [[0], [1], [2], [3], [4]]
