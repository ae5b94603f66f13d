"""The capital stack and the waterfall: known answers, one mechanism at a time."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from decimal import Decimal

import pytest

from sib_engine.contract import TRANCHE_KINDS
from sib_engine.money import allocate
from sib_engine.returns import xirr
from sib_engine.waterfall import (
    SPV,
    OutcomePayment,
    drawdown_schedule,
    payments_from_frame,
    run_waterfall,
    year_fraction,
)

from funding_helpers import deal, quarterly_payments, reference_contract

D = Decimal


def pay(d: date, amount: str, payer: str = "city", trigger: str | None = "card") -> OutcomePayment:
    return OutcomePayment(d, D(amount), payer, trigger)


def flows_of(result, kind: str, target: str | None = None) -> list[tuple[date, Decimal]]:
    return [(f.date, f.amount) for f in result.flows if f.kind == kind and (target is None or f.target == target)]


LOAN = """\
capital:
  tranches:
    - id: loan
      kind: senior_loan
      funder: bank
      commitment: "100000.00"
      coupon: {rate: 0.06, compounding: simple, day_count: act/365}
  waterfall:
    - {pay: interest, tranche: loan}
    - {pay: principal, tranche: loan}
    - {pay: residual, split: {club: 1}}
"""


def test_simple_loan_hand_computed_schedule() -> None:
    c = deal(LOAN, end="2025-01-01")
    r = run_waterfall(c, [pay(date(2024, 7, 1), "10000.00"), pay(date(2025, 1, 1), "100000.00")])
    # 2024-01-01 -> 2024-07-01 is 182 days: 100,000 x 6% x 182/365 = 2,991.7808 -> 2,991.78;
    # the rest of the 10,000 repays principal: 7,008.22, leaving 92,991.78.
    # 2024-07-01 -> 2025-01-01 is 184 days: 92,991.78 x 6% x 184/365 = 2,812.6829
    # (+ 0.0008 carried from the first rounding) -> 2,812.68; principal 92,991.78;
    # residual 100,000 - 2,812.68 - 92,991.78 = 4,195.54 to the provider.
    assert flows_of(r, "interest") == [(date(2024, 7, 1), D("2991.78")), (date(2025, 1, 1), D("2812.68"))]
    assert flows_of(r, "principal") == [(date(2024, 7, 1), D("7008.22")), (date(2025, 1, 1), D("92991.78"))]
    assert flows_of(r, "residual") == [(date(2025, 1, 1), D("4195.54"))]
    t = r.tranche("loan")
    assert t.principal_outstanding == 0 and t.interest_due == 0
    assert t.interest_paid == D("5804.46")
    assert r.conservation().exact
    assert [(f.source, f.target) for f in r.flows[:2]] == [("bank", SPV), (SPV, "club")]


def test_quarterly_compounding_hand_computed() -> None:
    cap = LOAN.replace("100000.00", "1000000.00").replace("rate: 0.06, compounding: simple", "rate: 0.08, compounding: quarterly")
    c = deal(cap, end="2025-01-01")
    r = run_waterfall(c, [pay(date(2025, 1, 1), "1200000.00")])
    # capitalised on 04-01, 07-01, 10-01 (91, 91, 92 days), then 92 days to 2025-01-01:
    # 1,000,000 x [(1 + .08x91/365)^2 (1 + .08x92/365)^2 - 1] = 82,664.7473 -> 82,664.75
    assert flows_of(r, "interest") == [(date(2025, 1, 1), D("82664.75"))]
    assert flows_of(r, "principal") == [(date(2025, 1, 1), D("1000000.00"))]
    assert flows_of(r, "residual") == [(date(2025, 1, 1), D("117335.25"))]


def test_simple_interest_does_not_compound_but_stays_due() -> None:
    c = deal(LOAN, end="2026-01-01")
    r = run_waterfall(c, [pay(date(2026, 1, 1), "200000.00")])
    # two years simple: 100,000 x 6% x 731/365 = 12,016.44 (2024 is a leap year)
    assert flows_of(r, "interest") == [(date(2026, 1, 1), D("12016.44"))]


def test_shortfall_is_carried_forward_and_paid_later() -> None:
    c = deal(LOAN, end="2025-01-01")
    r = run_waterfall(c, [pay(date(2024, 7, 1), "1000.00"), pay(date(2025, 1, 1), "120000.00")])
    first = r.distributions[0]
    assert first.steps[0].due == D("2991.78") and first.steps[0].paid == D("1000.00")
    assert first.steps[0].shortfall == D("1991.78")
    assert first.steps[1].paid == 0
    second = r.distributions[1]
    # unpaid simple interest stays due (no interest on it): 1,991.78 + 100,000 x 6% x 184/365
    assert second.steps[0].due == D("1991.78") + D("3024.66")
    assert r.tranche("loan").principal_outstanding == 0


@pytest.mark.parametrize(
    "day_count, start, end, expected",
    [
        ("act/365", date(2024, 1, 1), date(2025, 1, 1), D(366) / D(365)),
        ("act/360", date(2024, 1, 1), date(2024, 7, 1), D(182) / D(360)),
        ("30/360", date(2024, 1, 31), date(2024, 3, 31), D("60") / D(360)),
        ("30/360", date(2024, 1, 15), date(2024, 3, 31), D("76") / D(360)),
        ("30/360", date(2024, 2, 29), date(2025, 2, 28), D("359") / D(360)),
    ],
)
def test_day_counts(day_count: str, start: date, end: date, expected: Decimal) -> None:
    assert year_fraction(start, end, day_count) == expected


def test_act_360_accrues_more_than_act_365() -> None:
    a = run_waterfall(deal(LOAN, end="2025-01-01"), [pay(date(2025, 1, 1), "200000.00")])
    b = run_waterfall(deal(LOAN.replace("act/365", "act/360"), end="2025-01-01"), [pay(date(2025, 1, 1), "200000.00")])
    assert flows_of(a, "interest")[0][1] == D("6016.44")  # 100,000 x 6% x 366/365
    assert flows_of(b, "interest")[0][1] == D("6100.00")  # 100,000 x 6% x 366/360


def test_drawdowns_explicit_schedule_and_default() -> None:
    c = reference_contract()
    draws = [d for d in drawdown_schedule(c) if d.tranche == "senior"]
    assert [d.amount for d in draws] == [D("250000.00")] * 8
    assert [d.date for d in draws][:3] == [date(2024, 1, 1), date(2024, 4, 1), date(2024, 7, 1)]
    odd = deal(LOAN.replace('commitment: "100000.00"', 'commitment: "100.00"').replace(
        "      coupon:", "      drawdown_schedule: {start: 2024-02-01, parts: 3, every_months: 1}\n      coupon:"))
    parts = [d.amount for d in drawdown_schedule(odd)]
    assert parts == [D("33.34"), D("33.33"), D("33.33")] and sum(parts) == D("100.00")
    default = drawdown_schedule(deal(LOAN))
    assert [(d.date, d.amount) for d in default] == [(date(2024, 1, 1), D("100000.00"))]


def test_interest_accrues_only_on_drawn_capital() -> None:
    c = reference_contract()
    r = run_waterfall(c, [])
    senior = r.tranche("senior")
    # drawn 250,000 a quarter: interest accrues on the growing balance only
    full = D(2_000_000) * (D(1) + D("0.05") / 4) ** 20 - D(2_000_000)
    assert 0 < senior.interest_accrued < full


def test_reference_structure_paid_in_full() -> None:
    c = reference_contract()
    r = run_waterfall(c, quarterly_payments(D("4000000.00")))
    assert r.conservation().exact
    s, j = r.tranche("senior"), r.tranche("junior")
    assert s.principal_outstanding == 0 and j.principal_outstanding == 0
    assert s.interest_due == 0 and j.interest_due == 0
    residual = [f for f in r.flows if f.kind == "residual"]
    by_date: dict[date, dict[str, Decimal]] = {}
    for f in residual:
        by_date.setdefault(f.date, {})[f.target] = f.amount
    for d, parts in by_date.items():
        total = sum(parts.values(), D(0))
        assert [parts.get("fund", D(0)), parts.get("club", D(0))] == allocate(total, [D("0.5"), D("0.5")], "EUR")
    assert r.guarantees[0].paid == 0
    # senior is paid in full before the junior gets anything, on every date
    for dist in r.distributions:
        senior_short = dist.steps[0].shortfall + dist.steps[1].shortfall
        if senior_short > 0:
            assert dist.steps[2].paid == dist.steps[3].paid == dist.steps[4].paid == 0
    # the senior's XIRR is its quarterly-compounded coupon: (1 + .05 x 91.25/365)^4 - 1 ~ 5.09%
    senior_rate = xirr(*zip(*r.investment_flows("bank"))).rate  # type: ignore[arg-type]
    assert senior_rate == pytest.approx(0.0509, abs=0.0005)


def test_reference_structure_guarantee_pays_half_of_unrepaid_junior_principal() -> None:
    c = reference_contract()
    r = run_waterfall(c, quarterly_payments(D("2800000.00")))
    j = r.tranche("junior")
    assert r.tranche("senior").principal_outstanding == 0
    assert 0 < j.principal_outstanding < D("1000000.00")
    (call,) = r.guarantees
    assert call.date == date(2028, 12, 31)  # term end, after the last payment
    assert call.loss == j.principal_outstanding
    assert call.paid == (j.principal_outstanding * D("0.5")).quantize(D("0.01"))
    g = [f for f in r.flows if f.kind == "guarantee"]
    assert [(f.source, f.target, f.amount) for f in g] == [("found", "fund", call.paid)]
    assert r.conservation().exact


def test_reference_structure_nothing_paid() -> None:
    r = run_waterfall(reference_contract(), [])
    assert r.guarantees[0].paid == D("500000.00")
    assert r.tranche("senior").principal_outstanding == D("2000000.00")
    assert r.total_paid_by_payers == 0 and r.conservation().exact


GUARANTEED = """\
capital:
  tranches:
    - id: loan
      kind: junior_loan
      funder: fund
      commitment: "100000.00"
      coupon: {{rate: 0.05, compounding: annual}}
  guarantees:
    - {{id: g, guarantor: found, covers: loan, {terms}}}
  waterfall:
    - {{pay: interest, tranche: loan}}
    - {{pay: principal, tranche: loan}}
    - {{pay: residual, split: {{club: 1}}}}
"""


@pytest.mark.parametrize(
    "terms, expected",
    [
        ("share: 0.5", D("30000.00")),  # 50% of 60,000 unrepaid
        ("amount: '20000.00'", D("20000.00")),  # up to 20,000
        ("amount: '90000.00'", D("60000.00")),  # never more than the loss
        ("share: 0.5, amount: '25000.00'", D("25000.00")),  # the lower of the two
        ("share: 0.25, amount: '25000.00'", D("15000.00")),
    ],
)
def test_guarantee_share_and_amount(terms: str, expected: Decimal) -> None:
    c = deal(GUARANTEED.format(terms=terms), end="2024-12-31")
    # 365 days at 5%: interest 5,000; the other 40,000 repays principal: 60,000 lost
    r = run_waterfall(c, [pay(date(2024, 12, 31), "45000.00")])
    assert r.tranche("loan").principal_outstanding == D("60000.00")
    assert r.guarantees[0].paid == expected


def test_guarantee_on_principal_and_interest() -> None:
    c = deal(GUARANTEED.format(terms="share: 1, basis: principal_and_interest"), end="2024-12-31")
    r = run_waterfall(c, [])
    t = r.tranche("loan")
    assert r.guarantees[0].paid == t.principal_outstanding + t.interest_due
    assert t.interest_due == D("5000.00")  # 100,000 x 5% x 365/365 (2024-01-01 to 12-31)


def test_guarantee_called_early_is_reimbursed_from_later_payments() -> None:
    c = deal(GUARANTEED.format(terms="share: 0.5, called_on: 2024-06-30"), end="2025-12-31")
    r = run_waterfall(c, [pay(date(2025, 6, 30), "150000.00")])
    call = r.guarantees[0]
    assert call.paid == D("50000.00")  # half of 100,000 unrepaid on 2024-06-30
    assert call.reimbursed == D("50000.00")  # the later principal repays the guarantor first
    rec = [f for f in r.flows if f.kind == "guarantee_recovery"]
    assert rec and rec[0].target == "found"
    fund_principal = sum((f.amount for f in r.flows if f.kind == "principal" and f.target == "fund"), D(0))
    assert fund_principal == D("50000.00")
    assert r.conservation().exact


MAX_RETURN = """\
capital:
  tranches:
    - id: equity
      kind: quasi_equity
      funder: fund
      commitment: "100000.00"
      coupon: {rate: 0.20, compounding: annual}
      max_return: 0.08
  waterfall:
    - {pay: principal, tranche: equity}
    - {pay: interest, tranche: equity}
    - {pay: residual, split: {fund: 0.5, club: 0.5}}
"""


def test_max_return_caps_interest_and_residual_share() -> None:
    c = deal(MAX_RETURN, end="2026-01-01")
    r = run_waterfall(c, [pay(date(2026, 1, 1), "300000.00")])
    rate = xirr(*zip(*r.investment_flows("fund"))).rate  # type: ignore[arg-type]
    assert rate == pytest.approx(0.08, abs=1e-6)
    assert r.tranche("equity").capped
    club = sum((f.amount for f in r.flows if f.target == "club" and f.kind == "residual"), D(0))
    fund_total = sum((f.amount for f in r.flows if f.target == "fund"), D(0))
    # everything above the fund's capped 8% a year goes to the club
    assert club + fund_total == D("300000.00")
    assert r.conservation().exact


def test_max_return_with_nobody_else_leaves_cash_in_the_spv() -> None:
    c = deal(MAX_RETURN.replace("split: {fund: 0.5, club: 0.5}", "split: {fund: 1}"), end="2026-01-01")
    r = run_waterfall(c, [pay(date(2026, 1, 1), "300000.00")])
    assert r.closing_balance > 0
    assert any("left in the SPV" in n for n in r.notes)
    assert r.conservation().exact


DEFERRED = """\
capital:
  service_budget: "150000.00"
  recycling: {share: 0.5, until: 2024-12-31}
  tranches:
    - id: loan
      kind: senior_loan
      funder: bank
      commitment: "100000.00"
      coupon: {rate: 0}
    - id: fee
      kind: deferred_fee
      funder: club
      commitment: "20000.00"
  waterfall:
    - {pay: principal, tranche: loan}
    - {pay: costs}
    - {pay: fee, tranche: fee}
    - {pay: bonus, amount: "5000.00", split: {club: 1}}
    - {pay: residual, split: {bank: 0.5, city: 0.5}}
"""


def test_recycling_costs_deferred_fee_and_bonus() -> None:
    c = deal(DEFERRED)
    r = run_waterfall(c, [pay(date(2024, 6, 30), "40000.00"), pay(date(2025, 6, 30), "150000.00")])
    # unfunded budget: 150,000 - (100,000 + 20,000) = 30,000; recycling takes half of the
    # first payment (20,000); the costs step pays the remaining 10,000 of the budget.
    assert flows_of(r, "recycling") == [(date(2024, 6, 30), D("20000.00"))]
    assert sum((a for _, a in flows_of(r, "costs")), D(0)) == D("10000.00")
    assert sum((a for _, a in flows_of(r, "fee")), D(0)) == D("20000.00")
    assert flows_of(r, "bonus") == [(date(2025, 6, 30), D("5000.00"))]
    # the deferred fee is drawn by the provider itself
    assert ("club", SPV, D("20000.00")) in [(f.source, f.target, f.amount) for f in r.flows if f.kind == "drawdown"]
    assert r.conservation().exact
    assert r.total_paid_by_payers == D("190000.00")


def test_first_loss_repaid_first_is_noted() -> None:
    cap = """\
capital:
  tranches:
    - {id: fl, kind: first_loss, funder: found, commitment: "10000.00"}
    - {id: loan, kind: senior_loan, funder: bank, commitment: "10000.00", coupon: {rate: 0.05}}
  waterfall:
    - {pay: principal, tranche: fl}
    - {pay: principal, tranche: loan}
"""
    r = run_waterfall(deal(cap), [])
    assert any("first-loss" in n for n in r.notes)


def test_clawback_is_repaid_from_the_next_payment() -> None:
    c = deal(LOAN, end="2025-01-01")
    r = run_waterfall(c, [pay(date(2024, 7, 1), "-500.00"), pay(date(2024, 10, 1), "3000.00")])
    claw = [f for f in r.flows if f.kind == "clawback"]
    assert [(f.source, f.target, f.amount) for f in claw] == [(SPV, "city", D("500.00"))]
    assert r.clawback_outstanding == 0
    assert r.total_paid_by_payers == D("2500.00")
    r2 = run_waterfall(c, [pay(date(2024, 7, 1), "-500.00")])
    assert r2.clawback_outstanding == D("500.00")


def test_coupon_rates_override_a_banded_return() -> None:
    c = deal(LOAN, end="2025-01-01")
    r = run_waterfall(c, [pay(date(2025, 1, 1), "200000.00")], coupon_rates={"loan": D("0.10")})
    assert flows_of(r, "interest")[0][1] == D("10027.40")  # 100,000 x 10% x 366/365


def test_amended_coupon_applies_from_its_effective_date() -> None:
    amendment = """\
amendments:
  - id: a1
    effective: 2024-07-01
    clause: Amendment 1
    summary: coupon renegotiated
    changes:
      - {set: capital.tranches.loan.coupon.rate, to: 0.12}
"""
    c = deal(LOAN, end="2025-01-01", extra=amendment)
    r = run_waterfall(c, [pay(date(2025, 1, 1), "200000.00")])
    # 182 days at 6% + 184 days at 12% on 100,000
    expected = D(100000) * (D("0.06") * 182 + D("0.12") * 184) / 365
    assert flows_of(r, "interest")[0][1] == expected.quantize(D("0.01"))


def test_share_of_savings_share_changes_once_funders_reach_a_return() -> None:
    from sib_engine.loader import parse_contract

    body = """\
format: sib-contract/1
id: steps
title: Share steps
currency: EUR
term: {start: 2024-01-01, end: 2026-12-31}
parties:
  - {id: city, name: City, role: payer}
  - {id: bank, name: Bank, role: investor}
  - {id: club, name: Club, role: provider}
payers:
  - {party: city, share: 1}
metrics:
  - {id: days, name: Care days, type: count, better: lower}
baselines:
  - {id: base, kind: fixed, metric: days, value: 100}
triggers:
  - id: savings
    kind: share_of_savings
    clause: Schedule 2
    effect: {metric: days, baseline: base, measure: reduction}
    unit_cost: "100.00"
    share: 0.5
    share_steps:
      - {after_return: 0.05, share: 0.25}
timeline:
  periods: {start: 2024-01-01, months: 6, count: 6}
  cohorts:
    - {id: c1, enrolment_start: 2024-01-01, enrolment_end: 2024-06-30}
capital:
  tranches:
    - {id: loan, kind: senior_loan, funder: bank, commitment: "100000.00", coupon: {rate: 0.06}}
  waterfall:
    - {pay: interest, tranche: loan}
    - {pay: principal, tranche: loan}
    - {pay: residual, split: {club: 1}}
"""
    c = parse_contract(body)
    lines = [pay(date(2025, 1, 1), "120000.00", trigger="savings"), pay(date(2026, 1, 1), "40000.00", trigger="savings")]
    r = run_waterfall(c, lines)
    (adj,) = r.adjustments
    assert adj.line == 1 and adj.original_amount == D("40000.00") and adj.amount == D("20000.00")
    assert r.payments[1].amount == D("20000.00")
    assert r.received_payments()[1].amount == D("40000.00")
    off = run_waterfall(c, lines, apply_share_steps=False)
    assert not off.adjustments and off.payments[1].amount == D("40000.00")


def test_no_capital_pays_the_provider() -> None:
    from sib_engine.loader import EXAMPLE, parse_contract

    r = run_waterfall(parse_contract(EXAMPLE), [pay(date(2024, 6, 30), "2750.00")])
    assert [(f.source, f.target, f.amount) for f in r.flows] == [
        ("city", SPV, D("2750.00")), (SPV, "club", D("2750.00"))
    ]


def test_inputs_are_not_mutated_and_result_is_frozen() -> None:
    c = reference_contract()
    before = c.model_dump()
    lines = quarterly_payments(D("3000000.00"))
    copy = list(lines)
    r = run_waterfall(c, lines)
    assert c.model_dump() == before and lines == copy
    with pytest.raises(AttributeError):
        r.closing_balance = D(1)  # type: ignore[misc]


def test_payment_amounts_must_be_exact_cents() -> None:
    with pytest.raises(TypeError, match="Decimal"):
        OutcomePayment(date(2024, 1, 1), 10.5, "city")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="minor units"):
        run_waterfall(deal(LOAN), [pay(date(2024, 6, 1), "10.005")])


def test_result_api_frames_and_text() -> None:
    r = run_waterfall(reference_contract(), quarterly_payments(D("2800000.00")))
    frame = r.to_frame()
    assert list(frame.columns[:6]) == ["date", "from", "from_name", "to", "to_name", "amount"]
    assert len(frame) == len(r.flows)
    assert set(frame["kind"]) <= {
        "outcome_payment", "drawdown", "service_funding", "interest", "principal", "residual", "guarantee"
    }
    assert list(r.tranches_frame().index) == ["senior", "junior"]
    assert len(r.guarantees_frame()) == 1 and len(r.steps_frame()) == 16 * 5
    parties = r.parties_frame().set_index("party")
    assert parties.loc[SPV, "net"] == 0
    text = r.explain()
    assert "guarantee first_loss_cover" in text and "Conservation" in text and "exact" in text
    assert repr(r).startswith("<WaterfallResult reference:") and "\n" not in repr(r)
    assert "<table" in r._repr_html_()


def test_payments_from_frame() -> None:
    import pandas as pd

    frame = pd.DataFrame(
        [
            {"determination": "d1", "period": "P1", "payment_date": pd.Timestamp("2024-06-30"), "payer": "city",
             "trigger": "card", "outcome": "job", "units": D(2), "amount": D("5500.00"), "clause": "S1",
             "kind": "payment", "note": ""},
            {"determination": "d2", "period": "P2", "payment_date": date(2024, 9, 30), "payer": "city",
             "trigger": "card", "outcome": "job", "units": None, "amount": D("0.00"), "clause": "S1",
             "kind": "payment", "note": ""},
            {"determination": "d2", "period": "P1", "payment_date": date(2024, 9, 30), "payer": "city",
             "trigger": "card", "outcome": "job", "units": D(-1), "amount": D("-2750.00"), "clause": "S1",
             "kind": "clawback", "note": "restated data"},
        ]
    )
    lines = payments_from_frame(frame)
    assert [(p.payment_date, p.amount, p.kind) for p in lines] == [
        (date(2024, 6, 30), D("5500.00"), "payment"), (date(2024, 9, 30), D("-2750.00"), "clawback")
    ]
    assert lines[1].description == "restated data" and lines[0].units == 2
    with pytest.raises(ValueError, match="payer"):
        payments_from_frame(frame.drop(columns=["payer"]))


@pytest.mark.parametrize("kind", TRANCHE_KINDS)
def test_every_tranche_kind_runs_and_conserves(kind: str) -> None:
    funder = "club" if kind == "deferred_fee" else "fund"
    coupon = "coupon: {rate: 0.07, compounding: monthly, day_count: 30/360}" if kind != "recoverable_grant" else ""
    cap = f"""\
capital:
  tranches:
    - {{id: t, kind: {kind}, funder: {funder}, commitment: "50000.00", {coupon}}}
  waterfall:
    - {{pay: interest, tranche: t}}
    - {{pay: principal, tranche: t}}
    - {{pay: residual, split: {{club: 1}}}}
"""
    r = run_waterfall(deal(cap), [pay(date(2024, 9, 30), "20000.00"), pay(date(2025, 9, 30), "45000.00")])
    assert r.conservation().exact
    t = r.tranche("t")
    assert t.kind == kind and t.drawn == D("50000.00")
    assert t.principal_repaid + t.principal_outstanding == t.drawn


EXAMPLES = sorted((Path(__file__).resolve().parent.parent / "contracts").glob("*.yaml"))


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_every_example_contract_runs_through_the_waterfall(path: Path) -> None:
    from sib_engine.loader import load_contract
    from sib_engine.periods import add_months
    from sib_engine.returns import funder_returns
    from sib_engine.value_for_money import value_for_money

    c = load_contract(path)
    committed = sum((t.commitment for t in c.capital.tranches), D(0)) if c.capital else D("100000")
    payers = [p.party for p in c.payers if p.mode != "top_up"] or [c.payers[0].party]
    parts = allocate((committed * D("1.3")).quantize(D("0.01")), [D(1)] * 8, c.currency)
    lines = [
        OutcomePayment(add_months(c.term.start, 6 * (i + 1)), part, payers[i % len(payers)], c.triggers[0].id)
        for i, part in enumerate(parts)
    ]
    r = run_waterfall(c, lines)
    assert r.conservation().exact
    rets = funder_returns(r)
    assert {f.party for f in rets.funders} >= set(r.funders)
    vfm = value_for_money(c, r)
    assert vfm.total_paid == sum((p.amount for p in r.payments), D(0))
