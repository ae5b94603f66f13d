"""One suite over the whole trigger family (contract.TRIGGER_KINDS), and schedules."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from evalkit import contract, enrol, frame

from sib_engine.contract import TRIGGER_KINDS, Schedule, SchedulePoint, ShareOfSavingsTrigger
from sib_engine.evaluation import evaluate
from sib_engine.triggers import RULES, current_share, schedule_value

CAPITAL = {
    "tranches": [{"id": "bond", "kind": "senior_loan", "funder": "inv", "commitment": "100000",
                  "coupon": {"rate": "0.05"}}],
    "waterfall": [{"pay": "interest", "tranche": "bond"}, {"pay": "principal", "tranche": "bond"}],
}
BASELINES = [{"id": "usual", "kind": "fixed", "metric": "employed", "value": "0.3"}]
EMPLOYED_EFFECT = {"metric": "employed", "baseline": "usual", "measure": "difference"}
STEP = {"interpolation": "step", "points": [{"effect": "0.05", "value": "1000"}, {"effect": "0.2", "value": "3000"}]}

EXAMPLES: dict[str, dict[str, Any]] = {
    "rate_card": {"id": "card", "kind": "rate_card", "clause": "S1",
                  "outcomes": [{"metric": "employed", "price": "500"}]},
    "threshold": {"id": "thr", "kind": "threshold", "clause": "S2", "effect": EMPLOYED_EFFECT,
                  "schedule": STEP, "scope": "per_cohort"},
    "cohort_with_pooled_fallback": {
        "id": "coh", "kind": "cohort_with_pooled_fallback", "clause": "S3", "effect": EMPLOYED_EFFECT,
        "per_cohort": {"pays": "per_participant", "schedule": {"interpolation": "step", "points": [{"effect": "0.2", "value": "100"}]}},
        "pooled_fallback": {"pays": "per_participant", "schedule": {"interpolation": "step", "points": [{"effect": "0.05", "value": "50"}]}}},
    "share_of_savings": {"id": "sos", "kind": "share_of_savings", "clause": "S4", "effect": EMPLOYED_EFFECT,
                         "unit_cost": "1000", "share": "0.5"},
    "banded_return": {"id": "band", "kind": "banded_return", "clause": "S5", "effect": EMPLOYED_EFFECT,
                      "tranches": ["bond"], "bands": {"interpolation": "linear", "points": [
                          {"effect": "0", "value": "0.02"}, {"effect": "0.4", "value": "0.08"}]}},
}


def data(employed_c1: int, employed_c2: int, n: int = 10) -> Any:
    c1 = [f"a{i}" for i in range(n)]
    c2 = [f"b{i}" for i in range(n)]
    rows = enrol(c1, "c1") + enrol(c2, "c2")
    rows += [(p, "employed", "2024-06-01", 1) for p in c1[:employed_c1]]
    rows += [(p, "employed", "2024-06-01", 1) for p in c2[:employed_c2]]
    return frame(rows)


def run(kind: str, employed_c1: int, employed_c2: int) -> Any:
    c = contract(baselines=BASELINES, triggers=[EXAMPLES[kind]], capital=CAPITAL)
    return evaluate(c, data(employed_c1, employed_c2))


def test_every_kind_is_registered_once_and_has_an_example() -> None:
    assert set(RULES) == set(TRIGGER_KINDS) == set(EXAMPLES)


@pytest.mark.parametrize("kind", sorted(EXAMPLES))
def test_amounts_are_exact_and_explained(kind: str) -> None:
    ev = run(kind, 6, 4)
    for ln in ev.lines:
        assert isinstance(ln.amount, Decimal) and ln.amount == ln.amount.quantize(Decimal("0.01"))
        assert ln.clause and ln.trace.clauses()
    assert ev.explain()
    if kind == "banded_return":
        assert ev.rates and all(isinstance(r.rate, Decimal) for r in ev.rates)
    else:
        assert ev.total > 0


@pytest.mark.parametrize("kind", sorted(EXAMPLES))
@pytest.mark.parametrize("worse,better", [((3, 3), (6, 4)), ((4, 4), (4, 9)), ((0, 0), (10, 10))])
def test_never_pays_less_for_better_outcomes(kind: str, worse: tuple[int, int], better: tuple[int, int]) -> None:
    a, b = run(kind, *worse), run(kind, *better)
    assert b.total >= a.total
    for ra, rb in zip(a.rates, b.rates):
        assert rb.rate >= ra.rate


@pytest.mark.parametrize("kind", sorted(k for k in EXAMPLES if k not in ("rate_card", "banded_return")))
def test_no_effect_pays_nothing(kind: str) -> None:
    ev = run(kind, 3, 3)  # exactly the baseline rate 0.3 in both cohorts
    assert ev.total == 0


def test_schedule_step_linear_minimum_maximum() -> None:
    pts = (SchedulePoint(effect=Decimal("0.1"), value=Decimal(100)), SchedulePoint(effect=Decimal("0.5"), value=Decimal(500)))
    step = Schedule(interpolation="step", points=pts)
    lin = Schedule(interpolation="linear", points=pts, minimum_effect=Decimal("0.2"), maximum=Decimal(450))
    assert schedule_value(step, Decimal("0.09"))[0] == 0
    assert schedule_value(step, Decimal("0.1"))[0] == 100
    assert schedule_value(step, Decimal("0.49"))[0] == 100
    assert schedule_value(step, Decimal("9"))[0] == 500
    assert schedule_value(lin, Decimal("0.15"))[0] == 0  # below the minimum effect
    assert schedule_value(lin, Decimal("0.3"))[0] == 300
    assert schedule_value(lin, Decimal("0.45"))[0] == 450  # 450 exactly
    assert schedule_value(lin, Decimal("0.48"))[0] == 450  # 480 capped at the maximum
    assert schedule_value(lin, None)[0] == 0
    assert schedule_value(lin, Decimal("-Infinity"))[0] == 0


def test_share_steps_follow_the_funders_return() -> None:
    t = ShareOfSavingsTrigger.model_validate({
        "id": "s", "kind": "share_of_savings", "clause": "c", "effect": EMPLOYED_EFFECT, "unit_cost": "1",
        "share": "0.5", "share_steps": [{"after_return": "0.05", "share": "0.3"}, {"after_return": "0.1", "share": "0.1"}]})
    assert current_share(t, None)[0] == Decimal("0.5")
    assert current_share(t, Decimal("0.04"))[0] == Decimal("0.5")
    assert current_share(t, Decimal("0.05"))[0] == Decimal("0.3")
    assert current_share(t, Decimal("0.2"))[0] == Decimal("0.1")


def test_fallback_at_a_named_determination() -> None:
    ex = dict(EXAMPLES["cohort_with_pooled_fallback"], fallback_determination="final")
    tl = {"periods": {"start": "2024-01-01", "months": 6, "count": 4},
          "cohorts": [{"id": "c1", "enrolment_start": "2024-01-01", "enrolment_end": "2024-12-31"},
                      {"id": "c2", "enrolment_start": "2024-01-01", "enrolment_end": "2024-12-31"}],
          "determinations": [{"id": "mid", "kind": "interim", "period": "P2"}, {"id": "final", "kind": "final", "period": "P4"}]}
    c = contract(baselines=BASELINES, triggers=[ex], timeline=tl)
    ev = evaluate(c, data(6, 4))
    # c1: 0.6 - 0.3 = 0.3 >= 0.2 -> 100 x 10; c2: 0.1 -> no; pooled 0.5 - 0.3 = 0.2 -> 50 x 10 (c2) at the final
    assert [(ln.determination, ln.outcome, ln.amount) for ln in ev.lines if ln.amount] == [
        ("mid", "cohort c1", Decimal("1000.00")), ("final", "pooled fallback", Decimal("500.00"))]
