"""Effective-dated amendments: ``contract.at(date)`` gives the terms in force on a date."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from sib_engine import ContractError, parse_contract
from sib_engine.contract import RateCardTrigger
from sib_engine.loader import EXAMPLE

AMENDED = EXAMPLE + """\
amendments:
  - id: a1
    effective: 2025-01-01
    clause: "Amendment 1, clause 4.2"
    summary: Price of a sustained job renegotiated
    changes:
      - {set: triggers.card.outcomes.job.price, to: "3000.00"}
  - id: a2
    effective: 2025-07-01
    clause: "Amendment 2, clause 2.1"
    summary: Second cohort dropped, price lowered again
    changes:
      - {remove: timeline.cohorts.c2}
      - {set: triggers.card.outcomes.job.price, to: "2900"}
"""
AMENDED = AMENDED.replace(
    "    - {id: c1, enrolment_start: 2024-01-01, enrolment_end: 2024-12-31}\n",
    "    - {id: c1, enrolment_start: 2024-01-01, enrolment_end: 2024-12-31}\n"
    "    - {id: c2, enrolment_start: 2025-01-01, enrolment_end: 2025-12-31}\n",
)


def _price(c: object) -> Decimal:
    trigger = c.triggers[0]  # type: ignore[attr-defined]
    assert isinstance(trigger, RateCardTrigger)
    return trigger.outcomes[0].price


def test_terms_in_force_follow_effective_dates() -> None:
    c = parse_contract(AMENDED)
    assert _price(c) == Decimal("2750.00")
    assert _price(c.at(date(2024, 12, 31))) == Decimal("2750.00")
    assert _price(c.at(date(2025, 1, 1))) == Decimal("3000.00")
    later = c.at(date(2025, 7, 1))
    assert _price(later) == Decimal("2900")
    assert [co.id for co in later.timeline.cohorts] == ["c1"]
    assert [a.id for a in later.applied_amendments] == ["a1", "a2"]
    assert later.in_force_on == date(2025, 7, 1)


def test_at_never_mutates_and_always_starts_from_the_signed_contract() -> None:
    c = parse_contract(AMENDED)
    later = c.at(date(2026, 1, 1))
    earlier_from_later = later.at(date(2024, 6, 1))
    assert _price(earlier_from_later) == Decimal("2750.00")
    assert len(earlier_from_later.timeline.cohorts) == 2
    assert _price(c) == Decimal("2750.00") and c.in_force_on is None
    with pytest.raises(Exception):
        c.title = "changed"  # type: ignore[misc]


def test_an_amendment_that_breaks_the_terms_is_reported_at_load() -> None:
    text = AMENDED.replace("to: \"2900\"", "to: \"-5\"")
    with pytest.raises(ContractError) as info:
        parse_contract(text, "amended.yaml")
    problem = info.value.problems[0]
    assert problem.code == "bad_amendment"
    assert "a2" in problem.message
    assert problem.line is not None and problem.format().startswith("amended.yaml:")


def test_an_amendment_naming_a_missing_item_is_reported() -> None:
    text = AMENDED.replace("remove: timeline.cohorts.c2", "remove: timeline.cohorts.c9")
    with pytest.raises(ContractError) as info:
        parse_contract(text)
    assert info.value.codes == ("bad_amendment",)
    assert "no item named 'c9'" in info.value.problems[0].message
