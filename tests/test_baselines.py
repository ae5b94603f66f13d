"""One suite over the whole baseline family (contract.BASELINE_KINDS), and the effect
measures and gates."""

from __future__ import annotations

import math
from decimal import Decimal
from typing import Any

import numpy as np
import pytest
from evalkit import contract, enrol, frame

from sib_engine.baselines import ESTIMATORS, Scope, compute_effect, estimate
from sib_engine.contract import BASELINE_KINDS, STAT_TESTS, Effect, Gate
from sib_engine.metrics import day_of, prepare

BASELINES: list[dict[str, Any]] = [
    {"id": "fixed", "kind": "fixed", "metric": "bed_days", "value": "12"},
    {"id": "historical", "kind": "historical", "metric": "bed_days", "value": "12", "n": 50, "sd": "3"},
    {"id": "expected_duration", "kind": "expected_duration", "metric": "bed_days", "horizon_days": 365,
     "table": [{"age_min": 18, "age_max": 30, "prior_months_min": 0, "prior_months_max": 24, "expected_days": "12"},
               {"age_min": 31, "age_max": 60, "prior_months_min": 0, "prior_months_max": 24, "expected_days": "14"}]},
    {"id": "comparison_group", "kind": "comparison_group", "metric": "bed_days", "design": "randomised"},
    {"id": "did", "kind": "comparison_group", "metric": "bed_days", "design": "matched",
     "estimator": "difference_in_differences", "pre_metric": "pre_bed_days"},
    {"id": "blended", "kind": "blended", "metric": "bed_days",
     "components": [{"baseline": "comparison_group", "weight": "0.8"}, {"baseline": "did", "weight": "0.2"}]},
]
KIND_CASES = ["fixed", "historical", "expected_duration", "comparison_group", "did", "blended"]

C = contract(baselines=BASELINES, triggers=[
    {"id": "card", "kind": "rate_card", "clause": "S1", "outcomes": [{"metric": "job", "price": "1"}]},
])


def data(treated_days: list[int], shift: int = 0) -> Any:
    t = [f"t{i}" for i in range(len(treated_days))]
    k = [f"k{i}" for i in range(5)]
    rows = enrol(t, age=25, prior=6) + enrol(k, group="comparison", age=40, prior=6)
    rows += [(p, "bed_days", "2024-03-01", v + shift) for p, v in zip(t, treated_days)]
    rows += [(p, "bed_days", "2024-03-01", v) for p, v in zip(k, [11, 12, 13, 14, 15])]
    rows += [(p, "pre_bed_days", "2023-06-01", 12) for p in t + k]
    return frame(rows)


def scope(df: Any, cutoff: str = "2025-12-31") -> Scope:
    md = prepare(df, C)
    return Scope(md, C, day_of(__import__("datetime").date.fromisoformat(cutoff)), frozenset({"c1"}), "pooled")


def test_every_kind_is_registered_once() -> None:
    assert set(ESTIMATORS) == set(BASELINE_KINDS)
    assert {b["kind"] for b in BASELINES} == set(BASELINE_KINDS)


@pytest.mark.parametrize("bid", KIND_CASES)
def test_estimate_value_se_n(bid: str) -> None:
    comp = estimate(C.baseline(bid), C.metric("bed_days"), scope(data([8, 9, 10, 7, 6])))
    b = comp.baseline
    assert math.isfinite(b.value) and b.exact is not None
    assert b.se >= 0 or math.isnan(b.se)
    assert comp.treatment.n == 5 and comp.treatment.value == pytest.approx(8.0)
    assert b.trace("baseline").render()


@pytest.mark.parametrize("bid", KIND_CASES)
@pytest.mark.parametrize("test", sorted(t for t, types in STAT_TESTS.items() if "count" in types))
def test_every_named_test_runs(bid: str, test: str) -> None:
    comp = estimate(C.baseline(bid), C.metric("bed_days"), scope(data([8, 9, 10, 7, 6])))
    r = comp.test(test, "less", 0.9)
    assert 0 <= r.p_value <= 1
    assert r.difference_ci[0] <= r.difference_ci[1]


@pytest.mark.parametrize("bid", KIND_CASES)
def test_better_outcomes_give_a_larger_reduction(bid: str) -> None:
    eff = Effect(metric="bed_days", baseline=bid, measure="reduction")
    worse = compute_effect(eff, C, scope(data([8, 9, 10, 7, 6], shift=2)))
    better = compute_effect(eff, C, scope(data([8, 9, 10, 7, 6])))
    assert worse.estimate is not None and better.estimate is not None
    assert better.estimate - worse.estimate == Decimal(2)
    assert better.units >= worse.units


@pytest.mark.parametrize("bid", KIND_CASES)
def test_measures_are_consistent(bid: str) -> None:
    sc = scope(data([8, 9, 10, 7, 6]))
    get = {m: compute_effect(Effect(metric="bed_days", baseline=bid, measure=m), C, sc) for m in
           ("difference", "reduction", "relative_difference", "relative_reduction")}
    assert get["difference"].estimate == -get["reduction"].estimate  # type: ignore[operator]
    assert get["relative_difference"].estimate == -get["relative_reduction"].estimate  # type: ignore[operator]
    # the same units avoided, whichever way the effect is measured
    assert get["reduction"].units == get["relative_reduction"].units


@pytest.mark.parametrize("bid", KIND_CASES)
def test_data_are_not_mutated(bid: str) -> None:
    df = data([8, 9, 10, 7, 6])
    before = df.copy()
    compute_effect(Effect(metric="bed_days", baseline=bid, measure="reduction"), C, scope(df))
    assert df.equals(before)


def test_expected_duration_prorates_before_the_horizon() -> None:
    # enrolled 2024-01-10; at 2024-04-09 (90 days after enrolment, of 365) the expected 12
    # days are 12 x 90/365; the horizon is complete on 2025-01-09, 365 days after enrolment
    comp = estimate(C.baseline("expected_duration"), C.metric("bed_days"), scope(data([8, 9]), "2024-04-09"))
    assert comp.baseline.value == pytest.approx(12 * 90 / 365)
    for cutoff, share in (("2025-01-08", 364 / 365), ("2025-01-09", 1.0), ("2025-06-30", 1.0)):
        comp = estimate(C.baseline("expected_duration"), C.metric("bed_days"), scope(data([8, 9]), cutoff))
        assert comp.baseline.value == pytest.approx(12 * share)


def test_a_duration_over_the_horizon_is_dated_at_its_end() -> None:
    # 365 days from 2024-01-10 end on 2025-01-09 (included), as a 12-month window from
    # 2024-01-15 ends on 2025-01-15 (included); the next day is outside the horizon
    df = frame(enrol(["a", "b"], age=25, prior=6) + [("a", "bed_days", "2025-01-09", 5),
                                                    ("b", "bed_days", "2025-01-10", 7)])
    comp = estimate(C.baseline("expected_duration"), C.metric("bed_days"), scope(df))
    assert comp.treatment.total == 5  # a's record counts, b's is a day late


def test_expected_duration_refuses_participants_outside_the_table() -> None:
    df = frame(enrol(["x"], age=70, prior=6) + [("x", "bed_days", "2024-03-01", 5)])
    with pytest.raises(Exception, match="outside every row"):
        estimate(C.baseline("expected_duration"), C.metric("bed_days"), scope(df))


def test_gate_significant_and_lower_bound() -> None:
    sc = scope(data([2, 3, 2, 3, 2]))
    sig = Effect(metric="bed_days", baseline="comparison_group", measure="reduction",
                 gate=Gate(test="welch_t", level=Decimal("0.05"), sides="one", rule="significant"))
    lb = Effect(metric="bed_days", baseline="comparison_group", measure="reduction",
                gate=Gate(test="welch_t", level=Decimal("0.05"), sides="one", rule="lower_bound"))
    r1, r2 = compute_effect(sig, C, sc), compute_effect(lb, C, sc)
    assert r1.gate_open and r1.paid_effect == r1.estimate == Decimal("10.6")
    assert r2.paid_effect is not None and r2.estimate is not None
    assert Decimal(0) < r2.paid_effect < r2.estimate
    assert r2.units == r2.paid_effect * 5
    # not significant: the gate closes and nothing is paid on it
    weak = compute_effect(sig, C, scope(data([12, 14, 10, 13, 11])))
    assert not weak.gate_open and weak.paid_effect is None and weak.units == 0


def test_no_participants_no_effect() -> None:
    df = frame(enrol(["k1", "k2"], group="comparison"))
    r = compute_effect(Effect(metric="bed_days", baseline="fixed", measure="reduction"), C, scope(df))
    assert r.estimate is None and r.units == 0 and r.note


def test_level_measure_has_no_baseline() -> None:
    r = compute_effect(Effect(metric="bed_days", measure="level"), C, scope(data([8, 9, 10, 7, 6])))
    assert r.baseline is None and r.estimate == Decimal(8) and r.units == Decimal(40)
    assert np.isfinite(r.test.p_value)  # type: ignore[union-attr]
