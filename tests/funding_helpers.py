"""Contracts and payment streams shared by the waterfall, returns and report tests."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any

from sib_engine.contract import Contract
from sib_engine.loader import parse_contract
from sib_engine.waterfall import OutcomePayment

HEAD = """\
format: sib-contract/1
id: {id}
title: {title}
currency: EUR
term: {{start: {start}, end: {end}}}
parties:
  - {{id: city, name: City of Example, role: payer}}
  - {{id: bank, name: Senior Bank, role: investor}}
  - {{id: fund, name: Junior Fund, role: investor}}
  - {{id: club, name: Example Club, role: provider}}
  - {{id: found, name: Guarantee Foundation, role: guarantor}}
payers:
  - {{party: city, share: 1}}
metrics:
  - {{id: job, name: Job held six months, type: event}}
triggers:
  - id: card
    kind: rate_card
    clause: Schedule 1
    outcomes:
      - {{metric: job, price: "2750.00"}}
timeline:
  periods: {{start: {start}, months: 3, count: 4}}
  cohorts:
    - {{id: c1, enrolment_start: {start}, enrolment_end: {start}}}
"""


def deal(capital: str, *, start: str = "2024-01-01", end: str = "2025-12-31", id: str = "deal",
         title: str = "Test deal", extra: str = "") -> Contract:
    """A one-payer rate-card contract with the given ``capital:`` section (YAML text)."""
    return parse_contract(HEAD.format(id=id, title=title, start=start, end=end) + capital + extra)


REFERENCE_CAPITAL = """\
capital:
  clause: Funding agreement
  tranches:
    - id: senior
      kind: senior_loan
      funder: bank
      commitment: "2000000.00"
      coupon: {rate: 0.05, compounding: quarterly, day_count: act/365}
      drawdown_schedule: {start: 2024-01-01, parts: 8, every_months: 3}
      clause: Loan agreement 2
    - id: junior
      kind: junior_loan
      funder: fund
      commitment: "1000000.00"
      coupon: {rate: 0.08, compounding: quarterly, day_count: act/365}
      drawdown_schedule: {start: 2024-01-01, parts: 8, every_months: 3}
      clause: Loan agreement 3
  guarantees:
    - {id: first_loss_cover, guarantor: found, covers: junior, share: 0.5, basis: principal, clause: Guarantee 1}
  waterfall:
    - {pay: interest, tranche: senior, clause: W1}
    - {pay: principal, tranche: senior, clause: W2}
    - {pay: interest, tranche: junior, clause: W3}
    - {pay: principal, tranche: junior, clause: W4}
    - {pay: residual, split: {fund: 0.5, club: 0.5}, clause: W5}
"""


def reference_contract() -> Contract:
    """The benchmark reference structure: 2,000,000 senior at 5% and 1,000,000 junior at 8%,
    each drawn in 8 equal quarterly parts, quarterly compounding; senior then junior;
    residual 50/50 junior funder / provider; a guarantee of 50% of junior's unrepaid
    principal."""
    return deal(REFERENCE_CAPITAL, end="2028-12-31", id="reference", title="Reference capital stack")


def quarterly_payments(total: Decimal, first: date = date(2025, 3, 31), count: int = 16) -> list[OutcomePayment]:
    """``count`` equal quarterly payments by the city adding up to ``total``."""
    from sib_engine.money import allocate
    from sib_engine.periods import add_months

    parts = allocate(total, [Decimal(1)] * count, "EUR")
    return [
        OutcomePayment(add_months(first, 3 * i), part, "city", "card", f"d{i + 1}", f"P{i + 1}", "Schedule 1")
        for i, part in enumerate(parts)
    ]


def base_body(capital: dict[str, Any] | None, start: date = date(2024, 1, 1), end: date = date(2026, 12, 31),
              parties: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """A contract as a plain dict (for generated contracts in property tests)."""
    return {
        "format": "sib-contract/1",
        "id": "generated",
        "title": "Generated deal",
        "currency": "EUR",
        "term": {"start": start, "end": end},
        "parties": parties
        or [
            {"id": "city", "name": "City", "role": "payer"},
            {"id": "club", "name": "Club", "role": "provider"},
        ],
        "payers": [{"party": "city", "share": Decimal(1)}],
        "metrics": [{"id": "job", "name": "Job", "type": "event"}],
        "triggers": [
            {"id": "card", "kind": "rate_card", "clause": "S1", "outcomes": [{"metric": "job", "price": Decimal(1)}]}
        ],
        "timeline": {
            "periods": {"start": start, "months": 3, "count": 4},
            "cohorts": [{"id": "c1", "enrolment_start": start, "enrolment_end": start}],
        },
        "capital": capital,
    }
