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


# -- what an amendment changed is cited with it --------------------------------------------


def test_a_line_priced_by_an_amended_term_cites_the_amendment() -> None:
    import pandas as pd

    from sib_engine.evaluation import evaluate

    c = parse_contract(AMENDED.replace("price: \"2750.00\"}", "price: \"2750.00\", clause: \"Annex 2, row 4\"}"))
    data = pd.DataFrame({
        "participant_id": ["a", "a", "b", "b"],
        "metric": ["enrolment", "job", "enrolment", "job"],
        "date": pd.to_datetime(["2024-01-10", "2024-03-01", "2024-01-20", "2025-02-03"]),
        "value": [None, 1, None, 1],
        "cohort": ["c1", None, "c1", None],
    })
    ev = evaluate(c, data)
    before, after = ev.lines
    assert before.clause == "Annex 2, row 4"  # priced as signed
    assert after.clause == "Annex 2, row 4 as amended by Amendment 1, clause 4.2 (from 2025-01-01)"
    assert after.amount == Decimal("3000.00")
    price = after.trace.find("1 outcome(s) 'job'")
    assert price is not None and price.clause == after.clause
    assert "x price EUR 3,000.00 from 2025-01-01" in price.label
    text = ev.explain()
    assert "amendments in force: a1 (Amendment 1, clause 4.2, from 2025-01-01)" in text
    assert "a1 (Amendment 1, clause 4.2, from 2025-01-01), a2 (Amendment 2, clause 2.1, from 2025-07-01)" in text


def test_amended_caps_schedules_and_shares_cite_the_amendment() -> None:
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent))
    from evalkit import contract, d, enrol, frame

    from sib_engine.evaluation import evaluate

    thr = {"id": "thr", "kind": "threshold", "clause": "Schedule 2", "pays": "per_participant",
           "effect": {"metric": "employed", "measure": "level"},
           "schedule": {"interpolation": "step", "points": [{"effect": "0.1", "value": "100"}]}}
    c = contract(
        triggers=[thr],
        payers=[{"party": "city", "share": "0.5", "clause": "Clause 4"}, {"party": "city2", "share": "0.5"}],
        caps={"total": "10000", "clause": "Clause 9"},
        amendments=[{"id": "a1", "effective": "2024-04-01", "clause": "Amendment 1, cl. 3", "summary": "terms",
                     "changes": [{"set": "triggers.thr.schedule.points", "to": [{"effect": "0.1", "value": "3000"}]},
                                 {"set": "caps.total", "to": "5000"},
                                 {"set": "payers.city.share", "to": "0.6"},
                                 {"set": "payers.city2.share", "to": "0.4"}]}])
    f = frame(enrol(["a", "b"]) + [("a", "employed", "2024-02-01", 1)])
    ev = evaluate(c, f, d("2024-06-30"))
    p2 = [ln for ln in ev.lines if ln.period == "P2"]
    cited = "as amended by Amendment 1, cl. 3 (from 2024-04-01)"
    assert p2 and all(ln.clause == f"Schedule 2 {cited}" for ln in p2)
    text = "\n".join(ln.trace.render() for ln in p2)
    assert f"schedule: step: effect 0.5 reaches the tier from 0.1: 3000  [Schedule 2 {cited}]" in text
    assert f"cap: caps.total 5000: -EUR 1,000.00  [Clause 9 {cited}]" in text
    assert f"city pays 0.6 of EUR 6,000.00 = EUR 3,600.00 (largest remainder)  [Clause 4 {cited}]" in text
    # P1, before the amendment, cites the terms as signed
    p1 = [ln for ln in ev.lines if ln.period == "P1"]
    assert p1 and all(ln.clause == "Schedule 2" for ln in p1) and "amended" not in p1[0].trace.render()


SCHEDULED = EXAMPLE.replace(
    "    - {id: c1, enrolment_start: 2024-01-01, enrolment_end: 2024-12-31}\n",
    "    - {id: c1, enrolment_start: 2024-01-01, enrolment_end: 2024-12-31}\n"
    "  determinations:\n"
    "    - {id: first, kind: interim, period: P4}\n"
    "    - {id: final, kind: final, period: P12}\n",
) + """\
amendments:
  - id: early_end
    effective: 2025-03-01
    clause: "Deed of variation"
    summary: The first determination is moved (too late, it was made) and the final one brought forward
    changes:
      - {set: timeline.determinations.first.period, to: P6}
      - {set: timeline.determinations.final.period, to: P8}
"""


def test_an_amended_determination_schedule_is_followed_from_its_date() -> None:
    import pandas as pd

    from sib_engine.evaluation import evaluate

    c = parse_contract(SCHEDULED)
    schedule = [(d.id, d.period.id) for d in c.determination_schedule()]
    # 'first' (P4, ended 2024-12-31) was made before the amendment took effect: it stays;
    # 'final' had not been made: it moves to P8, as amended
    assert schedule == [("first", "P4"), ("final", "P8")]
    data = pd.DataFrame({
        "participant_id": ["a", "a"], "metric": ["enrolment", "job"],
        "date": pd.to_datetime(["2024-01-10", "2024-03-01"]), "value": [None, 1], "cohort": ["c1", None],
    })
    ev = evaluate(c, data)
    assert [(d.id, d.period, d.period_end) for d in ev.determinations] == [
        ("first", "P4", date(2024, 12, 31)), ("final", "P8", date(2025, 12, 31))]
    assert ev.determinations[1].amendments == ("early_end",)
    # as signed (no amendment), the final determination is on P12
    signed = parse_contract(SCHEDULED.split("amendments:")[0])
    assert [d.period.id for d in signed.determination_schedule()] == ["P4", "P12"]
