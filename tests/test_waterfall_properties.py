"""Waterfall invariants over random capital stacks and payment streams (hypothesis).

- conservation to the cent: everything into the SPV leaves it or is its closing balance,
  and every flow is a positive whole number of cents;
- order: a step left short for want of cash leaves nothing for the steps after it (so the
  senior is paid before the junior);
- a guarantee never pays more than its share of the loss, its amount or the loss;
- no tranche is repaid more principal than was drawn;
- the contract and the payment stream are not changed.
"""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sib_engine.contract import Contract
from sib_engine.money import round_money
from sib_engine.waterfall import OutcomePayment, run_waterfall

from funding_helpers import base_body

D = Decimal
START = date(2024, 1, 1)
END = date(2026, 12, 31)
PARTIES = [
    {"id": "city", "name": "City", "role": "payer"},
    {"id": "club", "name": "Club", "role": "provider"},
    {"id": "inv1", "name": "Investor 1", "role": "investor"},
    {"id": "inv2", "name": "Investor 2", "role": "investor"},
    {"id": "inv3", "name": "Investor 3", "role": "investor"},
    {"id": "gua", "name": "Guarantor", "role": "guarantor"},
]
KINDS = ["senior_loan", "junior_loan", "quasi_equity", "recoverable_grant", "first_loss", "deferred_fee"]

money = st.integers(min_value=1, max_value=50_000_000).map(lambda c: D(c).scaleb(-2))
days = st.integers(min_value=0, max_value=(END - START).days)
rates = st.sampled_from(["0", "0.03", "0.05", "0.08", "0.12", "0.2"]).map(D)
fractions = st.sampled_from(["0.1", "0.25", "0.3333", "0.5", "0.75", "1"]).map(D)


@st.composite
def tranches(draw: Any, i: int) -> dict[str, Any]:
    kind = draw(st.sampled_from(KINDS))
    funder = "club" if kind == "deferred_fee" else draw(st.sampled_from(["inv1", "inv2", "inv3"]))
    commitment = draw(money)
    t: dict[str, Any] = {"id": f"t{i}", "kind": kind, "funder": funder, "commitment": commitment}
    if draw(st.booleans()) or kind in ("senior_loan", "junior_loan"):
        t["coupon"] = {
            "rate": draw(rates),
            "compounding": draw(st.sampled_from(["simple", "annual", "semiannual", "quarterly", "monthly"])),
            "day_count": draw(st.sampled_from(["act/365", "act/360", "30/360"])),
        }
    how = draw(st.sampled_from(["default", "schedule", "explicit"]))
    if how == "schedule":
        t["drawdown_schedule"] = {
            "start": START + timedelta(days=draw(st.integers(0, 300))),
            "parts": draw(st.integers(1, 8)),
            "every_months": draw(st.integers(1, 4)),
        }
    elif how == "explicit":
        n = draw(st.integers(1, 4))
        cents = int(commitment * 100)
        cuts = sorted(draw(st.lists(st.integers(1, max(1, cents - 1)), min_size=n - 1, max_size=n - 1, unique=True))) if cents > n else []
        bounds = [0, *cuts, cents]
        amounts = [D(b - a).scaleb(-2) for a, b in zip(bounds, bounds[1:]) if b > a]
        t["drawdowns"] = [
            {"date": START + timedelta(days=draw(st.integers(0, 400))), "amount": a} for a in amounts
        ]
        t["commitment"] = sum(amounts, D(0))
    if draw(st.integers(0, 4)) == 0:
        t["max_return"] = draw(st.sampled_from(["0", "0.04", "0.1"]).map(D))
    if draw(st.integers(0, 5)) == 0:
        t["maturity"] = START + timedelta(days=draw(st.integers(200, 1000)))
    return t


@st.composite
def capitals(draw: Any) -> dict[str, Any]:
    n = draw(st.integers(1, 4))
    ts = [draw(tranches(i)) for i in range(n)]
    steps: list[dict[str, Any]] = []
    for t in ts:
        steps.append({"pay": "interest", "tranche": t["id"]})
        steps.append({"pay": "principal" if t["kind"] != "deferred_fee" else "fee", "tranche": t["id"]})
    steps = draw(st.permutations(steps))
    steps = list(steps)
    if draw(st.booleans()):
        steps.insert(draw(st.integers(0, len(steps))), {"pay": "costs", "amount": draw(money)})
    if draw(st.booleans()):
        steps.insert(draw(st.integers(0, len(steps))), {"pay": "bonus", "amount": draw(money), "split": {"club": D(1)}})
    if draw(st.booleans()):
        who = draw(st.lists(st.sampled_from(["club", "inv1", "inv2", "inv3", "city"]), min_size=1, max_size=3, unique=True))
        raw = [draw(st.integers(1, 5)) for _ in who]
        shares = [D(r) / D(sum(raw)) for r in raw]
        shares = [s.quantize(D("0.0001")) for s in shares]
        shares[-1] = D(1) - sum(shares[:-1], D(0))
        if all(s > 0 for s in shares):
            steps.append({"pay": "residual", "split": dict(zip(who, shares))})
    guarantees = []
    for j in range(draw(st.integers(0, 2))):
        g: dict[str, Any] = {
            "id": f"g{j}", "guarantor": "gua", "covers": draw(st.sampled_from([t["id"] for t in ts])),
            "basis": draw(st.sampled_from(["principal", "principal_and_interest"])),
        }
        form = draw(st.sampled_from(["share", "amount", "both"]))
        if form in ("share", "both"):
            g["share"] = draw(fractions)
        if form in ("amount", "both"):
            g["amount"] = draw(money)
        if draw(st.booleans()):
            g["called_on"] = START + timedelta(days=draw(days))
        guarantees.append(g)
    cap: dict[str, Any] = {"tranches": ts, "guarantees": guarantees, "waterfall": steps}
    if draw(st.booleans()):
        cap["service_budget"] = draw(money)
    if draw(st.booleans()):
        cap["recycling"] = {"share": draw(fractions), "until": START + timedelta(days=draw(days))}
    return cap


@st.composite
def streams(draw: Any) -> list[OutcomePayment]:
    n = draw(st.integers(0, 10))
    out = []
    for _ in range(n):
        cents = draw(st.integers(-2_000_000, 300_000_000))
        if cents == 0:
            continue
        out.append(OutcomePayment(START + timedelta(days=draw(st.integers(30, (END - START).days + 120))),
                                  D(cents).scaleb(-2), "city", "card"))
    return out


def build(cap: dict[str, Any]) -> Contract:
    return Contract.model_validate(base_body(cap, START, END, PARTIES))


SETTINGS = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(capitals(), streams())
def test_conservation_to_the_cent(cap: dict[str, Any], lines: list[OutcomePayment]) -> None:
    r = run_waterfall(build(cap), lines)
    c = r.conservation()
    assert c.into_spv == c.out_of_spv + c.closing_balance
    assert c.closing_balance >= 0
    for f in r.flows:
        assert f.amount > 0 and round_money(f.amount, "EUR") == f.amount
    # every outcome payment entered the SPV; clawbacks repaid never exceed those owed
    paid_in = sum((p.amount for p in lines if p.amount > 0), D(0))
    assert sum((f.amount for f in r.flows if f.kind == "outcome_payment"), D(0)) == paid_in
    owed_back = -sum((p.amount for p in lines if p.amount < 0), D(0))
    repaid = sum((f.amount for f in r.flows if f.kind == "clawback"), D(0))
    assert repaid + r.clawback_outstanding == owed_back
    # drawdowns in = service funding out
    drawn = sum((f.amount for f in r.flows if f.kind == "drawdown"), D(0))
    assert drawn == sum((f.amount for f in r.flows if f.kind == "service_funding"), D(0))
    assert drawn == sum((D(t["commitment"]) for t in cap["tranches"]), D(0))
    # each distribution: cash available = cash paid out by clawbacks, recycling, steps + carried
    for dist in r.distributions:
        out = dist.clawbacks + dist.recycled + sum((s.paid for s in dist.steps), D(0))
        assert dist.received + dist.carried_in == out + dist.carried_out


@SETTINGS
@given(capitals(), streams())
def test_a_step_short_of_cash_leaves_nothing_for_later_steps(cap: dict[str, Any], lines: list[OutcomePayment]) -> None:
    r = run_waterfall(build(cap), lines)
    for dist in r.distributions:
        for i, s in enumerate(dist.steps):
            if s.shortfall > 0 and not s.note:  # short for want of cash, not capped
                assert all(later.paid == 0 for later in dist.steps[i + 1:]), (dist, i)
                break


@SETTINGS
@given(capitals(), streams())
def test_senior_before_junior(cap: dict[str, Any], lines: list[OutcomePayment]) -> None:
    """Whenever a step of an earlier tranche is short of cash, no later tranche gets paid."""
    r = run_waterfall(build(cap), lines)
    order = [s.get("tranche") for s in cap["waterfall"]]
    for dist in r.distributions:
        short = [i for i, s in enumerate(dist.steps) if s.shortfall > 0 and not s.note and s.tranche]
        if short:
            first = short[0]  # 0-based; flows carry 1-based step numbers
            paid_later = [f for f in r.flows if f.date == dist.date and f.step is not None and f.step > first + 1
                          and f.tranche != order[first] and f.kind in ("interest", "principal", "fee")]
            assert not paid_later


@SETTINGS
@given(capitals(), streams())
def test_guarantees_never_pay_more_than_their_cap_or_share(cap: dict[str, Any], lines: list[OutcomePayment]) -> None:
    r = run_waterfall(build(cap), lines)
    terms = {g["id"]: g for g in cap["guarantees"]}
    assert len(r.guarantees) == len(terms)
    for call in r.guarantees:
        g = terms[call.id]
        assert 0 <= call.paid <= call.loss
        if "share" in g:
            assert call.paid <= round_money(call.loss * g["share"], "EUR")
        if "amount" in g:
            assert call.paid <= g["amount"]
        assert 0 <= call.reimbursed <= call.paid
    by_tranche: dict[str, Decimal] = {}
    for call in r.guarantees:
        by_tranche[call.covers] = by_tranche.get(call.covers, D(0)) + call.paid
    for tid, paid in by_tranche.items():
        t = r.tranche(tid)
        assert paid <= t.drawn + t.interest_accrued + D("0.01")


@SETTINGS
@given(capitals(), streams())
def test_positions_are_consistent_and_inputs_untouched(cap: dict[str, Any], lines: list[OutcomePayment]) -> None:
    contract = build(cap)
    before = contract.model_dump()
    copy = list(lines)
    r = run_waterfall(contract, lines)
    assert contract.model_dump() == before and lines == copy
    for t in r.tranches:
        assert 0 <= t.principal_repaid <= t.drawn
        assert t.principal_repaid + t.principal_outstanding == t.drawn
        assert t.interest_paid <= t.interest_accrued + D("0.01") * (1 + len(r.distributions))
        assert t.interest_due >= 0
