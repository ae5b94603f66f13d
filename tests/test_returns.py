"""Returns: the vectorised IRR/XIRR solver against pyxirr and numpy-financial, its
invariants (hypothesis), and funder returns from a waterfall."""

from __future__ import annotations

import math
from datetime import date, timedelta
from decimal import Decimal

import numpy as np
import numpy_financial as npf
import pytest
import pyxirr
from hypothesis import given, settings
from hypothesis import strategies as st

from sib_engine.returns import (
    NO_ROOT_IN_RANGE,
    NO_SIGN_CHANGE,
    OK_BRACKET,
    OK_NEWTON,
    funder_returns,
    irr,
    irr_many,
    multiple,
    npv,
    payback_date,
    solve_rates,
    xirr,
    xirr_many,
)
from sib_engine.waterfall import run_waterfall

from funding_helpers import quarterly_payments, reference_contract

D = Decimal


def random_vectors(rng: np.random.Generator, n: int, k: int) -> np.ndarray:
    """Conventional investments: money out first, then 0.3 to 2.2 times it back."""
    a = np.zeros((n, k))
    out = rng.integers(1, max(2, k // 3), n)
    for i in range(n):
        a[i, : out[i]] = -rng.uniform(10, 1000, out[i])
        a[i, out[i]:] = rng.uniform(0.3, 2.2) * rng.dirichlet(np.ones(k - out[i])) * (-a[i, : out[i]].sum())
    return a


def test_xirr_matches_pyxirr_on_random_dated_vectors() -> None:
    rng = np.random.default_rng(20261122)
    for k in (2, 5, 12, 20):
        amounts = random_vectors(rng, 150, k)
        for row in amounts:
            gaps = rng.integers(28, 400, k - 1)
            dates = [date(2020, 1, 1)] + [date(2020, 1, 1) + timedelta(days=int(g)) for g in np.cumsum(gaps)]
            ours = xirr(dates, list(row))
            ref = pyxirr.xirr(dates, list(row), silent=True)
            assert ref is not None and ours.ok
            assert ours.rate == pytest.approx(ref, abs=1e-7, rel=1e-7)


def test_xirr_many_matches_pyxirr_on_shared_dates() -> None:
    rng = np.random.default_rng(7)
    dates = [date(2024, 1, 1) + timedelta(days=91 * i + int(rng.integers(0, 3))) for i in range(20)]
    amounts = random_vectors(rng, 2000, 20)
    sol = xirr_many(dates, amounts)
    ref = np.array([pyxirr.xirr(dates, row, silent=True) for row in amounts.tolist()], dtype=float)
    assert sol.failed_count == 0
    np.testing.assert_allclose(sol.rates, ref, rtol=1e-7, atol=1e-7)


def test_periodic_irr_matches_numpy_financial_and_pyxirr() -> None:
    rng = np.random.default_rng(11)
    amounts = random_vectors(rng, 300, 10)
    sol = irr_many(amounts)
    for i, row in enumerate(amounts):
        assert sol.rates[i] == pytest.approx(npf.irr(row), abs=1e-7)
        assert sol.rates[i] == pytest.approx(pyxirr.irr(list(row)), abs=1e-7)
    assert irr([-100, 60, 60]).rate == pytest.approx(0.130662, abs=1e-6)


def test_no_sign_change_is_reported_not_guessed() -> None:
    r = xirr([date(2024, 1, 1), date(2025, 1, 1)], [-100, -5])
    assert math.isnan(r.rate) and not r.ok and "no sign change" in r.reason
    sol = solve_rates([0, 1, 2], [[1, 2, 3], [0, 0, 0], [-1, 2, 0]])
    assert list(sol.status) == [NO_SIGN_CHANGE, NO_SIGN_CHANGE, OK_NEWTON]
    assert math.isnan(sol.rates[0]) and math.isnan(sol.rates[1]) and sol.rates[2] == pytest.approx(1.0)
    assert "no sign change" in sol.reason(0)


def test_no_root_in_range_is_reported() -> None:
    # NPV = -1 + 2(1+r)^-1 - 1.5(1+r)^-2 has no real root: the quadratic has no real zero
    sol = solve_rates([0, 1, 2], [[-1, 2, -1.5]])
    assert sol.status[0] == NO_ROOT_IN_RANGE and math.isnan(sol.rates[0])
    assert "no rate r with" in sol.reason(0)


def test_bracketing_fallback_solves_what_newton_cannot() -> None:
    rng = np.random.default_rng(3)
    amounts = random_vectors(rng, 50, 8)
    sol = solve_rates(np.arange(8.0), amounts, max_iter=1)  # Newton gets one step only
    assert sol.fallback_count > 0 and sol.failed_count == 0
    assert set(np.unique(sol.status)) <= {OK_NEWTON, OK_BRACKET}
    np.testing.assert_allclose(sol.rates, [npf.irr(r) for r in amounts], atol=1e-9)
    # a far-off guess drives Newton out of range; the fallback still finds the root
    far = solve_rates(np.arange(8.0), amounts, guess=5000.0)
    np.testing.assert_allclose(far.rates, sol.rates, atol=1e-9)


def test_solution_is_read_only_and_inputs_untouched() -> None:
    amounts = np.array([[-100.0, 50.0, 70.0]])
    times = np.array([0.0, 1.0, 2.0])
    a0, t0 = amounts.copy(), times.copy()
    sol = solve_rates(times, amounts)
    assert np.array_equal(amounts, a0) and np.array_equal(times, t0)
    with pytest.raises(ValueError):
        sol.rates[0] = 1.0
    assert "1 vectors" in repr(sol)


def test_per_row_times() -> None:
    times = np.array([[0.0, 1.0, 2.0], [0.0, 0.5, 1.0]])
    amounts = np.array([[-100.0, 0.0, 121.0], [-100.0, 0.0, 110.0]])
    sol = solve_rates(times, amounts)
    np.testing.assert_allclose(sol.rates, [0.1, 0.1], atol=1e-12)
    with pytest.raises(ValueError):
        solve_rates(np.zeros((3, 2)), amounts)


def test_a_rows_rate_does_not_depend_on_the_other_rows() -> None:
    # the simulation relies on it: a world's IRR must not depend on which worlds share its
    # chunk, nor on how the chunk is laid out in memory
    rng = np.random.default_rng(11)
    amounts = random_vectors(rng, 300, 12)
    amounts[:40, 4:] *= 0.01  # near -100%: Newton's slow cases and the bracketing fallback
    amounts[40:45] = -np.abs(amounts[40:45])  # no rate at all
    times = np.sort(rng.uniform(0, 6, 12))
    for max_iter in (50, 2):  # 2: most rows left to the bracketing fallback
        together = solve_rates(times, amounts, max_iter=max_iter)
        assert (together.fallback_count > 100) == (max_iter == 2)
        columns = np.ascontiguousarray(amounts.T).T  # the same rows, column-major
        assert np.array_equal(solve_rates(times, columns, max_iter=max_iter).rates, together.rates, equal_nan=True)
        order = rng.permutation(len(amounts))
        shuffled = solve_rates(times, amounts[order], chunk=7, max_iter=max_iter)
        assert np.array_equal(shuffled.rates, together.rates[order], equal_nan=True)
        alone = [solve_rates(times, row[None, :], max_iter=max_iter).rates[0] for row in amounts]
        assert np.array_equal(alone, together.rates, equal_nan=True)


def test_a_guess_per_row() -> None:
    amounts = np.array([[-100.0, 0.0, 121.0], [-100.0, 0.0, 144.0]])
    sol = solve_rates([0.0, 1.0, 2.0], amounts, guess=[0.05, 0.3])
    np.testing.assert_allclose(sol.rates, [0.1, 0.2], atol=1e-12)
    with pytest.raises(ValueError):
        solve_rates([0.0, 1.0, 2.0], amounts, guess=[0.05, 0.3, 0.1])


# ---------------------------------------------------------------- invariants ---

flows = st.lists(st.floats(min_value=1, max_value=1e6), min_size=1, max_size=8)


@st.composite
def investments(draw) -> tuple[list[float], list[float]]:  # type: ignore[no-untyped-def]
    out = draw(st.lists(st.floats(min_value=1, max_value=1e6), min_size=1, max_size=4))
    back = draw(st.lists(st.floats(min_value=0, max_value=1e6), min_size=1, max_size=8))
    if sum(back) < 1e-3 * sum(out):
        back[-1] += sum(out) * 0.5
    amounts = [-x for x in out] + back
    gaps = draw(st.lists(st.floats(min_value=0.05, max_value=2), min_size=len(amounts) - 1, max_size=len(amounts) - 1))
    times = [0.0] + list(np.cumsum(gaps))
    return times, amounts


@settings(max_examples=200, deadline=None)
@given(investments(), st.floats(min_value=0.1, max_value=3))
def test_shifting_inflows_later_lowers_the_irr(inv: tuple[list[float], list[float]], shift: float) -> None:
    times, amounts = inv
    later = [t + shift if a > 0 else t for t, a in zip(times, amounts)]
    base = solve_rates(times, [amounts])
    moved = solve_rates(later, [amounts])
    if base.ok[0] and moved.ok[0]:
        r0, r1 = base.rates[0], moved.rates[0]
        if r0 > 1e-9:
            assert r1 < r0
        elif r0 < -1e-9:
            assert r1 > r0  # a loss spread over a longer time is a smaller loss a year
        else:
            assert abs(r1) <= 1e-6


@settings(max_examples=200, deadline=None)
@given(investments(), st.floats(min_value=1e-3, max_value=1e4))
def test_scaling_all_flows_leaves_the_irr_unchanged(inv: tuple[list[float], list[float]], k: float) -> None:
    times, amounts = inv
    a = solve_rates(times, [amounts])
    b = solve_rates(times, [[k * x for x in amounts]])
    assert a.status[0] == b.status[0]
    if a.ok[0]:
        assert b.rates[0] == pytest.approx(a.rates[0], rel=1e-8, abs=1e-9)


@settings(max_examples=100, deadline=None)
@given(investments())
def test_inputs_are_not_mutated(inv: tuple[list[float], list[float]]) -> None:
    times, amounts = inv
    t_copy, a_copy = list(times), list(amounts)
    arr_t, arr_a = np.array(times), np.array([amounts])
    solve_rates(times, [amounts])
    solve_rates(arr_t, arr_a)
    assert times == t_copy and amounts == a_copy
    assert arr_t.tolist() == t_copy and arr_a[0].tolist() == a_copy


@settings(max_examples=150, deadline=None)
@given(investments())
def test_the_rate_sets_npv_to_zero(inv: tuple[list[float], list[float]]) -> None:
    times, amounts = inv
    sol = solve_rates(times, [amounts])
    if sol.ok[0]:
        x = math.log1p(sol.rates[0])
        terms = [a * math.exp(-t * x) for a, t in zip(amounts, times)]
        assert abs(sum(terms)) <= 1e-8 * sum(abs(v) for v in terms)


# ------------------------------------------------------------ other metrics ---


def test_npv_multiple_and_payback() -> None:
    cf = [(date(2024, 1, 1), D("-100.00")), (date(2025, 1, 1), D("60.00")), (date(2026, 1, 1), D("60.00"))]
    assert npv(D(0), cf, date(2024, 1, 1), "EUR") == D("20.00")
    # 60 / 1.1^(366/365) + 60 / 1.1^(731/365)
    expected = D(-100) + D(60) / D("1.1") ** (D(366) / 365) + D(60) / D("1.1") ** (D(731) / 365)
    assert npv(D("0.1"), cf, date(2024, 1, 1), "EUR") == expected.quantize(D("0.01"))
    assert multiple(cf) == D("1.2")
    assert multiple([(date(2024, 1, 1), D("5"))]) is None
    assert payback_date(cf) == date(2026, 1, 1)
    assert payback_date(cf[:2]) is None


def test_funder_returns_of_the_reference_structure() -> None:
    wf = run_waterfall(reference_contract(), quarterly_payments(D("2800000.00")))
    rets = funder_returns(wf, [D(0), D("0.035")])
    bank, fund, found = rets.funder("bank"), rets.funder("fund"), rets.funder("found")
    assert bank.irr.ok and bank.irr.rate == pytest.approx(0.0509, abs=0.0005)
    assert bank.loss == 0 and bank.payback is not None
    assert fund.loss_before_guarantee > 0
    assert fund.guarantee_received == wf.guarantees[0].paid
    assert fund.loss == fund.loss_before_guarantee - fund.guarantee_received
    assert found.role == "guarantor" and found.guarantee_paid == wf.guarantees[0].paid
    # XIRR agrees with pyxirr on the funder's own flows
    ref = pyxirr.xirr([d for d, _ in fund.flows], [float(a) for _, a in fund.flows])
    assert fund.irr.rate == pytest.approx(ref, abs=1e-7)
    npv0 = dict(fund.npv)[D(0)]
    assert npv0 == fund.received + fund.guarantee_received - fund.invested
    frame = rets.to_frame()
    assert list(frame["party"]) == ["bank", "fund", "found"]
    assert {"irr", "moic", "loss", "npv_0", "npv_0.035"} <= set(frame.columns)
    js = rets.as_json()
    assert set(js) == {"bank", "fund"} and set(js["bank"]) == {"invested", "received", "irr", "moic", "loss"}
    assert "IRR" in rets.explain() and repr(rets).startswith("<ReturnsResult reference:")
    assert "<table" in rets._repr_html_()
    cash = rets.cash_flows_frame()
    last = cash[cash["party"] == "bank"]["cumulative"].iloc[-1]
    assert last == bank.net


def test_funder_with_nothing_back_has_no_irr() -> None:
    wf = run_waterfall(reference_contract(), [])
    bank = funder_returns(wf).funder("bank")
    assert not bank.irr.ok and "no sign change" in bank.irr.reason
    assert bank.loss == D("2000000.00") and bank.moic == 0
