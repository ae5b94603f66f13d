"""Exact money: rounding in one place, largest-remainder splits, minor units."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sib_engine.money import (
    allocate,
    exponent,
    format_money,
    from_minor_units,
    is_currency,
    round_money,
    to_minor_units,
)


def test_round_half_away_from_zero() -> None:
    assert round_money(Decimal("0.005"), "EUR") == Decimal("0.01")
    assert round_money(Decimal("-0.005"), "EUR") == Decimal("-0.01")
    assert round_money(Decimal("0.004999"), "EUR") == Decimal("0.00")
    assert round_money(Decimal("2.5"), "JPY") == Decimal("3")
    assert round_money(Decimal("1.0005"), "KWD") == Decimal("1.001")


def test_currency_codes() -> None:
    assert is_currency("EUR") and is_currency("GBP") and is_currency("AUD")
    assert not is_currency("EUX") and not is_currency("eur") and not is_currency("€")
    assert (exponent("EUR"), exponent("JPY"), exponent("BHD")) == (2, 0, 3)


def test_minor_units_round_trip_and_refuse_fractions() -> None:
    assert to_minor_units(Decimal("1234.56"), "EUR") == 123456
    assert from_minor_units(123456, "EUR") == Decimal("1234.56")
    assert to_minor_units(Decimal("500"), "JPY") == 500
    with pytest.raises(ValueError, match="minor units"):
        to_minor_units(Decimal("0.001"), "EUR")


def test_allocate_known_answers() -> None:
    assert allocate(Decimal("100.00"), [Decimal(1)] * 3, "EUR") == [
        Decimal("33.34"), Decimal("33.33"), Decimal("33.33")
    ]
    # the largest remainder wins the leftover cent, not the first part
    assert allocate(Decimal("1.00"), [Decimal("0.1"), Decimal("0.6"), Decimal("0.3")], "EUR") == [
        Decimal("0.10"), Decimal("0.60"), Decimal("0.30")
    ]
    assert allocate(Decimal("0.05"), [Decimal(1), Decimal(2)], "EUR") == [Decimal("0.02"), Decimal("0.03")]
    assert allocate(Decimal("-10.00"), [Decimal(1)] * 3, "EUR") == [
        Decimal("-3.34"), Decimal("-3.33"), Decimal("-3.33")
    ]


def test_allocate_refuses_bad_weights() -> None:
    with pytest.raises(ValueError):
        allocate(Decimal("1.00"), [], "EUR")
    with pytest.raises(ValueError):
        allocate(Decimal("1.00"), [Decimal(0)], "EUR")
    with pytest.raises(ValueError):
        allocate(Decimal("1.00"), [Decimal(1), Decimal(-1)], "EUR")


def test_format_money() -> None:
    assert format_money(Decimal("3032950"), "GBP") == "GBP 3,032,950.00"
    assert format_money(Decimal("1234.5"), "JPY") == "JPY 1,235"


cents = st.integers(min_value=-10**12, max_value=10**12)
weights = st.lists(st.decimals(min_value=0, max_value=10**6, places=4), min_size=1, max_size=30).filter(
    lambda ws: sum(ws) > 0
)


@given(cents, weights)
def test_allocate_sums_exactly_and_is_fair(total_cents: int, ws: list[Decimal]) -> None:
    total = from_minor_units(total_cents, "EUR")
    parts = allocate(total, ws, "EUR")
    assert sum(parts, Decimal(0)) == total
    wsum = sum(ws, Decimal(0))
    for part, w in zip(parts, ws):
        exact = total * w / wsum
        assert abs(part - exact) < Decimal("0.01")  # never more than one cent from the exact share
        assert part == round_money(part, "EUR")
