"""The evaluation API: the frozen result, its views, the timeline and the errors."""

from __future__ import annotations

import dataclasses
import json
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
from evalkit import BASE, contract, d, enrol, frame

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
    assert claw[0].units == Decimal(-1)  # the event taken back, not the events left (0)
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


# -- payer caps, the contract's total cap and schedule amounts split by residence --------

RESIDENCE = [{"party": "city", "residence": ["GM0001"]}, {"party": "city2", "residence": ["GM0002"]}]
JOB = {"id": "card", "kind": "rate_card", "clause": "S1", "outcomes": [{"metric": "job", "price": "1000"}]}


def test_the_total_cap_is_not_spent_on_what_a_payer_cap_refuses() -> None:
    # city may pay 1,000 in all, the contract 2,000.  Two jobs of city's residents and one of
    # city2's: city pays 1,000 (its cap), city2 1,000; the total cap is not reached.  (Were
    # the total cap applied first, city's two jobs would fill it, city2's job would be cut,
    # and city's cap would then refuse half of what the total let through: 1,000 in all,
    # less than the 2,000 paid without city's second job.)
    payers = [dict(RESIDENCE[0], cap="1000"), RESIDENCE[1]]
    c = contract(triggers=[JOB], payers=payers, caps={"total": "2000", "clause": "Clause 9"})
    rows = enrol(["a", "a2"], municipality="GM0001") + enrol(["b"], municipality="GM0002")
    jobs = [("a", "job", "2024-01-20", 1), ("a2", "job", "2024-02-01", 1), ("b", "job", "2024-03-01", 1)]
    full = evaluate(c, frame(rows + jobs))
    fewer = evaluate(c, frame(rows + [j for j in jobs if j[0] != "a2"]))
    assert full.by_payer == {"city": Decimal("1000.00"), "city2": Decimal("1000.00")}
    assert fewer.total == full.total == Decimal("2000.00")
    line = next(ln for ln in full.lines if ln.payer == "city")
    assert "payer cap: city pays at most EUR 1,000.00 in all: -EUR 1,000.00" in line.trace.render()
    # a total cap that binds cuts what the payers pay after their own caps, in key order
    tight = evaluate(contract(triggers=[JOB], payers=payers, caps={"total": "1500", "clause": "Clause 9"}),
                     frame(rows + jobs))
    assert tight.by_payer == {"city": Decimal("1000.00"), "city2": Decimal("500.00")}
    assert "cap: caps.total 1500: -EUR 500.00  [Clause 9]" in tight.explain()


THRESHOLD_PP = {"id": "thr", "kind": "threshold", "clause": "S2", "pays": "per_participant",
                "effect": {"metric": "employed", "measure": "level"},
                "schedule": {"interpolation": "step", "points": [{"effect": "0", "value": "100"}]}}


def test_a_schedule_amount_is_split_cumulatively_by_residence() -> None:
    # 100 per participant in scope.  P1: a (city) and b (city2): 200, 100 each.  P2: c and d
    # (city2) join: 400 in all, of which city's resident stands for 100 and city2's three for
    # 300; the change of 200 is city2's alone (city: 100 - 100 = 0).  Splitting the change
    # itself 1 : 3 would have charged city 50 more for no new resident.
    rows = (enrol(["a"], municipality="GM0001") + enrol(["b"], municipality="GM0002")
            + enrol(["c", "d"], on="2024-04-10", municipality="GM0002"))
    ev = evaluate(contract(triggers=[THRESHOLD_PP], payers=RESIDENCE), frame(rows), d("2024-06-30"))
    assert ev.by_payer == {"city": Decimal("100.00"), "city2": Decimal("300.00")}
    p2 = {ln.payer: ln.amount for ln in ev.lines if ln.period == "P2"}
    assert p2 == {"city2": Decimal("200.00")}
    assert "of the cumulative EUR 400.00" in ev.explain()


def test_a_falling_schedule_amount_is_clawed_back_only_below_a_cap() -> None:
    # 100 per participant while at least half are employed; the city pays at most 150.
    # P1: a and b employed -> 200, paid 150.  P2: c, d, e join, not employed (2 of 5 < 0.5):
    # 0 is owed now, so the 150 is clawed back (and no more: a cap never pays below zero).
    # P3: c and d employed (4 of 5): 500 owed, 150 paid.
    thr = dict(THRESHOLD_PP, schedule={"interpolation": "step", "points": [{"effect": "0.5", "value": "100"}]})
    c = contract(triggers=[thr], payers=[{"party": "city", "share": "1", "cap": "150"}])
    rows = (enrol(["a", "b"]) + enrol(["c", "d", "e"], on="2024-04-10")
            + [("a", "employed", "2024-02-01", 1), ("b", "employed", "2024-02-01", 1),
               ("c", "employed", "2024-08-01", 1), ("d", "employed", "2024-08-01", 1)])
    assert evaluate(c, frame(rows), d("2024-03-31")).total == Decimal("150.00")
    assert evaluate(c, frame(rows), d("2024-06-30")).total == Decimal("0.00")
    assert evaluate(c, frame(rows), d("2024-09-30")).total == Decimal("150.00")
    # while the amount owed stays above the cap, a fall is not clawed back at all: 200 per
    # participant when all are employed (P1: 3 x 200 = 600, paid 150), 100 from half (P2: x
    # joins, 3 of 4: 4 x 100 = 400, still 150)
    thr2 = dict(THRESHOLD_PP, schedule={"interpolation": "step", "points": [
        {"effect": "0.5", "value": "100"}, {"effect": "1", "value": "200"}]})
    c2 = contract(triggers=[thr2], payers=[{"party": "city", "share": "1", "cap": "150"}])
    rows2 = enrol(["a", "b", "c"]) + [(p, "employed", "2024-02-01", 1) for p in ("a", "b", "c")]
    rows2 += enrol(["x"], on="2024-04-10")
    ev = evaluate(c2, frame(rows2), d("2024-06-30"))
    assert [(ln.period, ln.amount) for ln in ev.lines if ln.amount] == [("P1", Decimal("150.00"))]


def test_the_zaanstad_example_pays_no_more_for_fewer_outcomes() -> None:
    """The reported case: 25 payers by residence with their own caps, a rate card and a
    pooled threshold paying per participant, a total cap.  Keeping the outcomes of a seeded
    80% of the participants paid EUR 1,034,993.64 against EUR 1,030,247.28 for all of them
    while the total cap was spent before the payers' caps."""
    import numpy as np

    from sib_engine.loader import load_contract
    from sib_engine.privacy import PseudonymKey
    from sib_engine.validation import validate

    root = Path(__file__).resolve().parent.parent
    c = load_contract(root / "contracts" / "zaanstad_placement_2015.yaml")
    frame_ = validate(c, root / "outcomes" / "zaanstad_placement_2015.csv", key=PseudonymKey.demo()).accepted
    people = np.sort(frame_.loc[frame_["metric"] == "enrolment", "participant_id"].unique())
    shuffled = np.random.default_rng(20150401).permutation(people)  # as notebooks/investor_returns.ipynb
    totals = []
    for level in (1.0, 0.9, 0.8, 0.7):
        keep = set(shuffled[: int(round(level * len(shuffled)))])
        ev = evaluate(c, frame_[(frame_["metric"] == "enrolment") | frame_["participant_id"].isin(keep)])
        totals.append(ev.total)
        assert c.caps is not None and c.caps.total is not None and ev.total <= c.caps.total
        for p in c.payers:
            assert p.cap is not None and ev.by_payer.get(p.party, Decimal(0)) <= p.cap
    assert totals == sorted(totals, reverse=True), totals


# -- outcome rows that no figure counts are reported, never silently dropped ---------------


def test_rows_left_out_are_counted_by_reason_in_notes_and_explain() -> None:
    metrics = [dict(m, window_months=6) if m["id"] == "job" else m for m in BASE["metrics"]]
    card = dict(JOB, outcomes=JOB["outcomes"] + [{"metric": "start", "price": "10"}])
    c = contract(
        metrics=metrics, triggers=[card],
        timeline={"periods": {"start": "2024-01-01", "months": 6, "count": 4}, "payment_lag_days": 90,
                  "cohorts": [{"id": "c1", "enrolment_start": "2024-01-01", "enrolment_end": "2024-12-31"},
                              {"id": "c2", "enrolment_start": "2024-01-01", "enrolment_end": "2024-12-31"}],
                  "determinations": [{"id": "mid", "kind": "interim", "period": "P2"},
                                     {"id": "final", "kind": "final", "period": "P4", "data_cutoff": "2026-02-28"}]},
        amendments=[{"id": "a2", "effective": "2024-07-01", "clause": "Amendment 2", "summary": "c2 ends",
                     "changes": [{"remove": "timeline.cohorts.c2"}]}])
    rows = enrol(["a", "b", "e"]) + enrol(["k"], cohort="c2") + [
        ("a", "job", "2024-02-01", 1),   # counted
        ("b", "job", "2024-01-05", 1),   # before b's enrolment on 2024-01-10
        ("b", "job", "2024-07-11", 1),   # after b's 6-month window (to 2024-07-10)
        ("k", "job", "2024-03-01", 1),   # counted (c2 in force then)
        ("k", "job", "2024-07-05", 1),   # c2 removed from 2024-07-01
        ("e", "job", "2024-02-01", 1),
    ]
    ev = evaluate(c, frame(rows))
    assert ev.total == Decimal("3000.00")
    got = {(x.reason, x.metric): x.rows for x in ev.excluded}
    assert got == {("before_enrolment", "job"): 1, ("outside_window", "job"): 1, ("dropped_cohort", "job"): 1}
    text = ev.explain()
    assert "note: 1 outcome row(s) not counted: dated after their metric's attribution window (job 1)" in text
    assert "cohort c2 removed as amended by Amendment 2 (from 2024-07-01)" in text
    # as of the interim: what is dated after its cutoff is not counted yet
    early = evaluate(c, frame(rows + [("e", "job", "2025-03-01", 1)]), d("2025-01-31"))
    assert ("after_cutoff", "job", 1) in {(x.reason, x.metric, x.rows) for x in early.excluded}
    assert any("after the data cutoff of the last determination made (2024-12-31; later determinations will "
               "read them) (job 1)" in n for n in early.notes)
    # a rate card pays events in the term only (the final cutoff is after the term's end)
    late = evaluate(c, frame(rows + [("e", "start", "2026-01-15", 1)]))
    assert ("outside_term", "start", 1) in {(x.reason, x.metric, x.rows) for x in late.excluded}
    assert any("outside the contract's term (2024-01-01 to 2025-12-31)" in n for n in late.notes)


def test_the_utrecht_club_example_counts_its_benefit_days() -> None:
    """Benefit days over a 365-day horizon are dated at its end, 365 days after enrolment,
    which the horizon includes (as a 12-month window includes the same day a year later):
    every record counts, and the deal pays for the days saved, not the full expected days."""
    from sib_engine.loader import load_contract
    from sib_engine.privacy import PseudonymKey
    from sib_engine.validation import validate

    root = Path(__file__).resolve().parent.parent
    c = load_contract(root / "contracts" / "utrecht_club_2015.yaml")
    data = validate(c, root / "outcomes" / "utrecht_club_2015.csv", key=PseudonymKey.demo()).accepted
    ev = evaluate(c, data)
    assert ev.excluded == () and not any("not counted" in n for n in ev.notes)
    final = [e for e in ev.effects if e.determination == ev.determinations[-1].id][0].effect
    assert final.treatment.value > 100  # benefit days per participant, read from the data
    assert final.baseline is not None and final.treatment.value < final.baseline.value
    # a record a day after the horizon is left out, and said so
    days_rows = data.index[data["metric"] == "benefit_days"][:3]
    late = data.copy()
    late.loc[days_rows, "date"] = late.loc[days_rows, "date"] + pd.Timedelta(days=1)
    ev2 = evaluate(c, late)
    assert [(x.reason, x.metric, x.rows) for x in ev2.excluded] == [("after_horizon", "benefit_days", 3)]
    assert any("dated after the horizon of an expected-duration baseline (365 days after enrolment, "
               "inclusive) (benefit_days 3)" in n for n in ev2.notes)
    assert ev2.total > ev.total  # three participants now read 0 days against their expected days
