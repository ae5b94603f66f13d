"""Published output protection: small counts are suppressed (a pure helper)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sib_engine.disclosure import DEFAULT_MIN_CELL, min_cell_size, show_count, suppress, suppress_counts


def test_counts_below_the_minimum_are_suppressed() -> None:
    assert DEFAULT_MIN_CELL == 10
    assert [suppress(n) for n in (0, 1, 9, 10, 11)] == [None, None, None, 10, 11]
    assert suppress(3, min_cell=3) == 3 and suppress(2, min_cell=3) is None
    with pytest.raises(ValueError):
        suppress(-1)


def test_one_suppressed_cell_next_to_a_total_takes_the_smallest_other_with_it() -> None:
    assert suppress_counts({"a": 4, "b": 50, "c": 12}, with_total=True) == {"a": None, "b": 50, "c": None}
    assert suppress_counts({"a": 4, "b": 50, "c": 12}) == {"a": None, "b": 50, "c": 12}
    assert suppress_counts({"a": 4, "b": 5, "c": 12}, with_total=True) == {"a": None, "b": None, "c": 12}
    assert suppress_counts({"a": 40, "b": 50}, with_total=True) == {"a": 40, "b": 50}


@given(st.dictionaries(st.text(min_size=1, max_size=3), st.integers(0, 100), max_size=8), st.integers(1, 20))
def test_no_suppressed_cell_can_be_recovered_from_the_total(counts: dict[str, int], k: int) -> None:
    out = suppress_counts(counts, k, with_total=True)
    assert set(out) == set(counts)
    assert all(v is None or v >= k for v in out.values())
    assert all(v is None or v == counts[key] for key, v in out.items())
    hidden = [key for key, v in out.items() if v is None]
    assert len(hidden) != 1 or len(counts) == 1


def test_the_minimum_is_configurable() -> None:
    assert min_cell_size(None, {}) == 10
    assert min_cell_size(None, {"SIB_MIN_CELL": "5"}) == 5
    assert min_cell_size(20, {"SIB_MIN_CELL": "5"}) == 20
    for bad in ("0", "x"):
        with pytest.raises(ValueError):
            min_cell_size(None, {"SIB_MIN_CELL": bad})
    assert show_count(None) == "<10 (suppressed)" and show_count(1234) == "1,234"
