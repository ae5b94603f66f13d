"""The example contracts: each loads, and together they express every mechanism of
DESIGN.md section 3 (a mechanism no example uses fails this test)."""

from __future__ import annotations

from pathlib import Path

import pytest

from sib_engine import load_contract
from sib_engine.contract import (
    BandedReturnTrigger,
    BlendedBaseline,
    CohortTrigger,
    ComparisonGroupBaseline,
    Contract,
    RateCardTrigger,
    Schedule,
    ShareOfSavingsTrigger,
    ThresholdTrigger,
)

CONTRACTS = sorted((Path(__file__).resolve().parent.parent / "contracts").glob("*.yaml"))

SEED_DEALS = (
    "rotterdam_youth_2013",
    "utrecht_club_2015",
    "utrecht_training_kitchen_2015",
    "zaanstad_placement_2015",
    "brussels_mentoring_2014",
    "brussels_reemployment_2018",
)
INTERNATIONAL = ("essex", "newpin", "benevolent_society", "massachusetts", "fair_chance_fund")


def mechanisms(c: Contract) -> set[str]:
    """The DESIGN.md section 3 mechanisms a contract uses."""
    found: set[str] = set()

    def schedule(s: Schedule) -> None:
        found.add(f"schedule_{s.interpolation}")
        if s.minimum_effect is not None:
            found.add("schedule_minimum_effect")
        if s.maximum is not None:
            found.add("schedule_maximum")

    for t in c.triggers:
        found.add(f"trigger_{t.kind}")
        if t.cap is not None:
            found.add("cap_trigger")
        if isinstance(t, RateCardTrigger):
            for o in t.outcomes:
                if o.requires:
                    found.add("prerequisites")
                if o.max_claims > 1:
                    found.add("claim_limit_repeat")
                if o.cap_units is not None or o.cap_amount is not None:
                    found.add("cap_outcome")
            if t.cap_per_participant is not None:
                found.add("cap_participant")
            if t.cap_per_period is not None:
                found.add("cap_period")
        else:
            gate = t.effect.gate
            if gate is not None:
                found.add(f"test_{gate.test}")
                found.add(f"gate_{gate.rule}")
        if isinstance(t, ThresholdTrigger):
            schedule(t.schedule)
            found.add(f"pays_{t.pays}")
        if isinstance(t, CohortTrigger):
            schedule(t.per_cohort.schedule)
            schedule(t.pooled_fallback.schedule)
        if isinstance(t, ShareOfSavingsTrigger) and t.share_steps:
            found.add("share_steps")
        if isinstance(t, BandedReturnTrigger):
            schedule(t.bands)
            if t.minimum_coupon is not None:
                found.add("minimum_coupon")
            if t.capital_protection:
                found.add("capital_protection")
    for b in c.baselines:
        found.add(f"baseline_{b.kind}")
        if isinstance(b, ComparisonGroupBaseline):
            found.add(f"comparison_{b.design}")
            found.add(f"estimator_{b.estimator}")
        if isinstance(b, BlendedBaseline):
            found.add("baseline_blended")
    for p in c.payers:
        found.add(f"payer_{p.mode}")
        if p.cap is not None:
            found.add("cap_payer")
    if len([p for p in c.payers if p.mode != "top_up"]) > 1:
        found.add("multiple_payers")
    if c.caps is not None:
        if c.caps.total is not None:
            found.add("cap_contract")
        if c.caps.per_participant is not None:
            found.add("cap_participant")
        if c.caps.per_period is not None:
            found.add("cap_period")
    if c.capital is not None:
        for tr in c.capital.tranches:
            found.add(f"tranche_{tr.kind}")
            if tr.drawdowns or tr.drawdown_schedule is not None:
                found.add("drawdowns")
            if tr.coupon is not None and tr.coupon.rate > 0:
                found.add("coupon")
        if c.capital.guarantees:
            found.add("guarantee")
        if c.capital.recycling is not None:
            found.add("recycling")
        for step in c.capital.waterfall:
            found.add(f"waterfall_{step.pay}")
    for d in c.timeline.determinations:
        found.add(f"determination_{d.kind}")
    if c.timeline.payment_lag_days or any(d.payment_lag_days for d in c.timeline.determinations):
        found.add("payment_lag")
    if c.amendments:
        found.add("amendment")
        for a in c.amendments:
            for ch in a.changes:
                found.add("amendment_set" if ch.set is not None else "amendment_remove")
    if c.value_for_money is not None:
        if c.value_for_money.savings:
            found.add("savings_per_outcome")
        if c.value_for_money.fee_for_service_cost is not None:
            found.add("fee_for_service")
    if c.eligibility is not None:
        found.add("eligibility")
    return found


REQUIRED = {
    # 1 rate card
    "trigger_rate_card", "prerequisites", "claim_limit_repeat", "cap_outcome", "cap_participant",
    "cap_period", "cap_payer", "cap_contract", "cap_trigger",
    # 2 threshold and step schedules
    "trigger_threshold", "schedule_step", "schedule_linear", "schedule_minimum_effect", "schedule_maximum",
    # 3 per-cohort triggers with a pooled fallback
    "trigger_cohort_with_pooled_fallback",
    # 4 share of savings
    "trigger_share_of_savings", "share_steps",
    # 5 banded returns
    "trigger_banded_return", "minimum_coupon", "capital_protection",
    # 6 baselines
    "baseline_fixed", "baseline_historical", "baseline_expected_duration", "baseline_comparison_group",
    "baseline_blended", "comparison_matched", "comparison_randomised", "estimator_difference_in_differences",
    # 7 statistical gating
    "test_two_proportion_z", "test_welch_t", "test_poisson_rate_ratio", "gate_significant", "gate_lower_bound",
    # 8 multiple payers
    "payer_share", "payer_residence", "payer_top_up", "multiple_payers",
    # 9 capital stack and waterfall
    "drawdowns", "coupon", "tranche_senior_loan", "tranche_junior_loan", "tranche_quasi_equity",
    "tranche_recoverable_grant", "tranche_deferred_fee", "waterfall_bonus", "guarantee", "recycling",
    # 10 timeline
    "determination_interim", "determination_final", "payment_lag",
    # 11 amendments
    "amendment_set", "amendment_remove",
    # 12 value for money
    "savings_per_outcome", "fee_for_service",
}


@pytest.mark.parametrize("path", CONTRACTS, ids=lambda p: p.stem)
def test_example_contract_loads(path: Path) -> None:
    contract = load_contract(path)
    assert contract.id and contract.title
    text = path.read_text(encoding="utf-8")
    assert text.lstrip().startswith("#"), "an example opens with a comment saying what the deal is"
    assert contract.sources, "an example names its sources"
    for a in contract.amendments:
        contract.at(a.effective)  # every amendment applies cleanly


def test_there_are_enough_examples_and_every_seed_deal_is_one() -> None:
    stems = {p.stem for p in CONTRACTS}
    assert len(stems) >= 10
    for seed in SEED_DEALS:
        assert seed in stems, f"seed deal {seed} has no example contract"
    for name in INTERNATIONAL:
        assert any(name in s for s in stems), f"no example for the {name} deal"


def test_examples_together_express_every_mechanism() -> None:
    covered: set[str] = set()
    for path in CONTRACTS:
        covered |= mechanisms(load_contract(path))
    missing = REQUIRED - covered
    assert not missing, f"no example contract uses: {sorted(missing)}"
