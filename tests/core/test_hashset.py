"""The compact hash set used for duplicate detection behaves like a set of 64-bit ints."""

from __future__ import annotations

import random

from hypothesis import given
from hypothesis import strategies as st

from runner.core.hashset import HashSet


@given(st.lists(st.integers(min_value=2, max_value=2**64 - 1), max_size=300))
def test_add_and_contains_match_a_python_set(values: list[int]) -> None:
    """add() says whether a value is new, exactly like membership in a set, through growth."""
    hs, ref = HashSet(capacity=1), set()
    for v in values:
        assert hs.add(v) == (v not in ref)
        ref.add(v)
    assert len(hs) == len(ref)
    assert all(v in hs for v in ref)


def test_grows_and_stays_compact() -> None:
    """100,000 keys fit in at most 32 bytes each and none is lost while growing."""
    rng = random.Random(7)
    values = {rng.getrandbits(64) | 2 for _ in range(100_000)}
    hs = HashSet()
    for v in values:
        assert hs.add(v)
    assert len(hs) == len(values)
    assert hs.nbytes <= 32 * len(values)
    assert all(v in hs for v in list(values)[:1000])
    assert "not an int" not in hs
