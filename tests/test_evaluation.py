"""The evaluation API: the frozen result, its views, the timeline and the errors."""

from __future__ import annotations

import dataclasses
import json
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
from evalkit import contract, d, enrol, frame

from sib_engine.evaluation import Evaluation, EvaluationError, evaluate
from sib_engine.payments import CAP_ORDER, STEPS

CARD = {"id": "card", "kind": "rate_card", "clause": "Schedule 1",
        "outcomes": [{"metric": "job", "price": "2750.00", "clause": "Schedule 1 para 2"},
                     {"metric": "start", "price": "220.00"}]}
C = contract(triggers=[CARD])
DATA = frame(enrol(["a", "b", "c"]) + [
    ("a", "job", "2024-02-01", 1), ("b", "job", "2024-05-01", 1), ("c", "start", "2024-05-02", 1),
    ("c", "job", "2024-11-20", 1)])


def test_result_is_frozen_and_exact() -> None:
    ev = evaluate(C, DATA)
    assert isinstance(ev, Evaluation)
    with pytest.raises(dataclasses.FrozenInstanceError):
        ev.lines = ()  # type: ignore[misc]
    assert ev.total == Decimal("8470.00") and isinstance(ev.total, Decimal)
    assert ev.by_payer == {"city": Decimal("8470.00")}
    assert all(isinstance(ln.amount, Decimal) for ln in ev.lines)


def test_repr_is_one_line() -> None:
    r = repr(evaluate(C, DATA, d("2024-06-30")))
    assert "\n" not in r and r.startswith("<Evaluation t:") and "EUR 5,720.00" in r


def test_to_frame_summary_and_html() -> None:
    ev = evaluate(C, DATA)
    f = ev.to_frame()
    assert list(f.columns) == ["determination", "period", "payment_date", "payer", "trigger", "outcome", "units",
                               "amount", "clause", "kind", "note"]
    assert len(f) == len(ev.lines) == 4
    assert all(isinstance(x, Decimal) for x in f["amount"])
    s = ev.summary()
    assert list(s["determination"]) == [f"P{i}" for i in range(1, 9)]
    assert sum(s["net"]) == ev.total and "city" in s.columns
    html = ev._repr_html_()
    assert "<table>" in html and "EUR 8,470.00" in html


def test_to_json_has_the_cli_fields() -> None:
    j = evaluate(C, DATA).to_json()
    json.dumps(j)  # plain data
    assert j["contract"] == "t" and j["currency"] == "EUR" and j["total"] == "8470.00"
    assert j["by_payer"] == {"city": "8470.00"}
    line = j["lines"][0]
    assert {"period", "payer", "trigger", "units", "amount", "clause"} <= set(line)
    assert line == {"determination": "P1", "kind": "payment", "period": "P1", "payment_date": "2024-04-30",
                    "payer": "city", "trigger": "card", "outcome": "job", "units": "1", "amount": "2750.00",
                    "clause": "Schedule 1 para 2"}


def test_explain_traces_every_amount_to_its_clause() -> None:
    text = evaluate(C, DATA).explain()
    assert "Schedule 1 para 2" in text and "x price EUR 2,750.00" in text
    assert text.count("- payment") == 4
    assert "total EUR 8,470.00" in text


def test_accepts_a_validation_result() -> None:
    assert evaluate(C, SimpleNamespace(accepted=DATA)).total == evaluate(C, DATA).total
    with pytest.raises(EvaluationError, match="DataFrame"):
        evaluate(C, [1, 2, 3])


def test_as_of_makes_only_the_determinations_due() -> None:
    ev = evaluate(C, DATA, d("2024-06-30"))
    assert [x.id for x in ev.determinations] == ["P1", "P2"]
    assert ev.total == Decimal("5720.00")  # c's job of 2024-11-20 is later
    early = evaluate(C, DATA, d("2024-03-30"))
    assert early.determinations == () and early.total == 0 and early.notes
    assert evaluate(C, DATA, pd.Timestamp("2024-06-30")).total == ev.total  # type: ignore[arg-type]


def test_data_are_not_mutated() -> None:
    before = DATA.copy()
    evaluate(C, DATA)
    pd.testing.assert_frame_equal(DATA, before)


def test_float_and_decimal_values_agree() -> None:
    f = DATA.copy()
    f["value"] = [None if v is None else float(v) for v in f["value"]]
    assert evaluate(C, f).to_json() == evaluate(C, DATA).to_json()


def test_errors_say_how_to_fix() -> None:
    with pytest.raises(EvaluationError, match="not 't'"):
        evaluate(C, DATA.assign(contract_id="other"))
    with pytest.raises(EvaluationError, match="measured-data.md"):
        evaluate(C, DATA.drop(columns=["date"]))
    res = contract(triggers=[CARD], payers=[{"party": "city", "residence": ["GM1"]}])
    with pytest.raises(EvaluationError, match="residence"):
        evaluate(res, DATA)


def test_ineligible_and_unknown_participants_are_reported() -> None:
    c = contract(triggers=[CARD], eligibility={"age_min": 18})
    f = frame(enrol(["a"], age=30) + enrol(["kid"], age=12) + [
        ("a", "job", "2024-02-01", 1), ("kid", "job", "2024-02-01", 1), ("ghost", "job", "2024-02-01", 1)])
    ev = evaluate(c, f)
    assert ev.total == Decimal("2750.00")
    assert any("eligibility" in n for n in ev.notes) and any("without an enrolment row" in n for n in ev.notes)


def test_comparison_participants_are_never_paid() -> None:
    f = frame(enrol(["a"]) + enrol(["k"], group="comparison") + [
        ("a", "job", "2024-02-01", 1), ("k", "job", "2024-02-01", 1)])
    assert evaluate(C, f).total == Decimal("2750.00")


def test_restatement_against_an_earlier_evaluation() -> None:
    first = evaluate(C, DATA, d("2024-06-30"))
    restated = DATA[DATA["participant_id"] != "b"]  # b's job withdrawn
    ev = evaluate(C, restated, d("2024-09-30"), previous=first)
    assert ev.lines[: len(first.lines)] == first.lines  # what was recorded stands
    claw = [ln for ln in ev.lines if ln.kind == "clawback"]
    assert [(ln.period, ln.amount, ln.note) for ln in claw] == [("P2", Decimal("-2750.00"), "restated data")]
    assert ev.total == Decimal("2970.00")  # P1 2,750 (a) + P2 220 (c started)
    with pytest.raises(EvaluationError, match="earlier"):
        evaluate(C, DATA, d("2024-03-31"), previous=first)
    other = contract(triggers=[CARD], id="other")
    with pytest.raises(EvaluationError, match="contract"):
        evaluate(other, DATA.assign(contract_id="other"), previous=first)


def test_same_data_restated_changes_nothing() -> None:
    first = evaluate(C, DATA, d("2024-06-30"))
    again = evaluate(C, DATA, d("2024-06-30"), previous=first)
    assert again.lines == first.lines


def test_metrics_and_effects_views() -> None:
    c = contract(triggers=[CARD, {"id": "thr", "kind": "threshold", "clause": "S2",
                                  "effect": {"metric": "job", "measure": "level"},
                                  "schedule": {"interpolation": "step", "points": [{"effect": "0.5", "value": "100"}]}}])
    ev = evaluate(c, DATA, d("2024-06-30"))
    m = ev.metrics()
    jobs = m[(m["metric"] == "job") & (m["period"] == "P2")]
    assert int(jobs["records"].sum()) == 1 and int(jobs["participants"].sum()) == 3
    assert int(jobs["participant_periods"].sum()) == 6
    e = ev.effects_frame()
    assert list(e["determination"]) == ["P1", "P2"] and e["effect"].iloc[-1] == Decimal("2") / 3


def test_cap_order_is_documented() -> None:
    import sib_engine.payments as payments

    doc = payments.__doc__ or ""
    for _, label in STEPS:
        assert label.split()[-1] in doc
    assert CAP_ORDER[: len(STEPS)] == tuple(label for _, label in STEPS)


def test_layering_is_declared() -> None:
    text = (Path(__file__).resolve().parent.parent / "pyproject.toml").read_text()
    for module in ("metrics", "stats", "baselines", "triggers", "payments", "evaluation", "trace"):
        assert f"sib_engine.{module}" in text


def test_an_amended_schedule_applies_from_the_determination_after_its_date() -> None:
    thr = {"id": "thr", "kind": "threshold", "clause": "S2", "effect": {"metric": "job", "measure": "level"},
           "schedule": {"interpolation": "step", "points": [{"effect": "0.1", "value": "100"}]}}
    c = contract(triggers=[thr], amendments=[{
        "id": "a1", "effective": "2024-05-15", "clause": "Amendment 1", "summary": "tier raised",
        "changes": [{"set": "triggers.thr.schedule.points", "to": [{"effect": "0.1", "value": "300"}]}]}])
    ev = evaluate(c, DATA, d("2024-06-30"))
    # P1 (ends 2024-03-31): the signed 100; P2 (ends 2024-06-30, after the amendment): 300 in all
    assert [(ln.period, ln.amount) for ln in ev.lines if ln.amount] == [("P1", Decimal("100.00")), ("P2", Decimal("200.00"))]
    assert ev.determinations[1].amendments == ("a1",) and ev.determinations[0].amendments == ()


def test_a_raised_cap_is_applied_by_later_determinations_as_a_true_up() -> None:
    c = contract(triggers=[{"id": "card", "kind": "rate_card", "clause": "S1", "outcomes": [{"metric": "job", "price": "1000"}]}],
                 caps={"total": "2000", "clause": "Clause 9"},
                 amendments=[{"id": "a1", "effective": "2024-07-01", "clause": "Amendment 1", "summary": "cap raised",
                              "changes": [{"set": "caps.total", "to": "3000"}]}])
    f = frame(enrol(["a", "b", "c"]) + [(p, "job", "2024-02-01", 1) for p in ("a", "b", "c")])
    ev = evaluate(c, f, d("2024-09-30"))
    assert [(ln.determination, ln.period, ln.kind, ln.amount) for ln in ev.lines] == [
        ("P1", "P1", "payment", Decimal("2000.00")), ("P3", "P1", "true_up", Decimal("1000.00"))]
    assert "caps.total 2000" in ev.lines[0].trace.render()
