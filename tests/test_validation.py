"""validate(): the result object, severity and tolerance, the great-expectations suite
generated from the contract, and the invariant rows = accepted + quarantined."""

from __future__ import annotations

import dataclasses
from datetime import date
import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sib_engine import measured
from sib_engine.contract import CHECK_CODES
from sib_engine.loader import load_contract, parse_contract
from sib_engine.measured import Check
from sib_engine.privacy import PseudonymKey
from sib_engine.validation import WITHDRAWN, GreatExpectationsError, ValidationResult, validate, validation_json

DATA = Path(__file__).parent / "data"
CONTRACT_PATH = DATA / "contracts" / "kitchen.yaml"
CONTRACT = load_contract(CONTRACT_PATH)
VALID = DATA / "valid" / "kitchen.csv"
KEY = PseudonymKey.demo()


@pytest.fixture(scope="module")
def clean() -> ValidationResult:
    return validate(CONTRACT, VALID, key=KEY)


def with_quality(block: str) -> object:
    text = CONTRACT_PATH.read_text()
    head, _ = text.split("data_quality:")
    return parse_contract(head + block)


def test_result_is_frozen_and_reads_well(clean: ValidationResult) -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        clean.hold = True  # type: ignore[misc]
    assert repr(clean) == "<ValidationResult test-kitchen v2: 16 rows, 16 accepted (0 flagged), 0 quarantined>"
    assert "\n" not in repr(clean)
    assert "no hold" in clean._repr_html_()
    assert clean.explain(3) == "row 3: accepted, every check passed"
    j = clean.to_json()
    assert j == validation_json(clean)
    assert {"rows", "accepted", "quarantined", "reasons", "hold"} <= set(j)
    json.dumps(j)
    assert clean.timings["total"] >= clean.timings["great_expectations"] > 0


def test_accepted_is_the_typed_measured_data_format(clean: ValidationResult) -> None:
    a = clean.accepted
    assert list(a.columns) == list(measured.COLUMN_NAMES) + ["row", "flags"]
    assert a["date"].dtype == "datetime64[ns]"
    assert a["value"].dtype == "float64"
    assert str(a["contract_version"].dtype) == "Int64" and str(a["age"].dtype) == "Int64"
    # outcome rows carry their enrolment's cohort, group and residence
    b001 = a[a["participant_id"] == a.loc[a["row"] == 3, "participant_id"].item()]
    assert set(b001["cohort"]) == {"c1"} and set(b001["group"]) == {"comparison"}
    assert set(b001["municipality"]) == {"GM0344"}
    assert (a["flags"] == "").all()
    assert a["row"].tolist() == list(range(1, 17))


def test_checks_table_lists_the_generated_suite(clean: ValidationResult) -> None:
    checks = clean.checks
    # withdrawn_row is a reason of the submission (rows of the previous one missing), with
    # the contract's severity for restated_row
    assert set(checks["code"]) <= set(CHECK_CODES) | {WITHDRAWN}
    gx = checks[checks["engine"] == "great_expectations"]
    assert len(gx) >= 20 and (gx["failed"] == 0).all()
    assert {"municipality_known", "age_eligible", "prior_eligible", "claim_limit", "prerequisites_first",
            "within_window", "participant_unique", "date_in_term", "participant_enrolled"} <= set(gx["check"])
    assert {"reader", "columns", "types", "restatement", "enrolment_accepted"} <= set(checks["check"])


def test_suite_follows_the_contract() -> None:
    demo = parse_contract(__import__("sib_engine.loader", fromlist=["EXAMPLE"]).EXAMPLE)
    ids = {c.id for c in measured.plan_checks(demo)}
    assert "municipality_known" not in ids and "age_eligible" not in ids
    assert measured.required_columns(demo) == ("contract_id", "contract_version", "participant_id",
                                               "metric", "date", "value", "cohort")
    assert measured.required_columns(CONTRACT)[-4:] == ("group", "municipality", "age", "prior_months")
    assert measured.requirements(CONTRACT) == {"completes_25": ("starts_training",),
                                               "completes_50": ("completes_25",),
                                               "diploma": ("starts_training",)}
    assert measured.claim_limits(CONTRACT)["diploma"] == 2


def test_warning_is_accepted_and_flagged() -> None:
    r = validate(CONTRACT, DATA / "invalid" / "claim_limit_exceeded.csv", key=KEY)
    assert r.n_quarantined == 0 and r.n_flagged == 1 and not r.hold
    assert r.accepted.loc[r.accepted["row"] == 17, "flags"].item() == "claim_limit_exceeded"
    assert r.summary().loc["claim_limit_exceeded", "severity"] == "warning"
    assert "accepted with warnings" in r.explain(17)


def test_tolerance_decides_the_hold() -> None:
    lenient = with_quality("data_quality:\n  tolerance: 0.5\n  clause: Art. 9\n")
    r = validate(lenient, DATA / "invalid" / "unknown_municipality.csv", key=KEY)  # type: ignore[arg-type]
    assert r.n_quarantined == 5 and not r.hold
    strict = with_quality("data_quality:\n  tolerance: 0.2\n  clause: Art. 9\n")
    r = validate(strict, DATA / "invalid" / "unknown_municipality.csv", key=KEY)  # type: ignore[arg-type]
    assert r.hold and "5 of 16 rows quarantined (31.2%), above the tolerance of 20.0% [Art. 9]" in r.hold_reasons[0]
    assert "payment hold" in r._repr_html_() and "HOLD" in repr(r)


def test_structural_codes_stay_critical() -> None:
    c = with_quality("data_quality:\n  severity: {missing_value: warning, unknown_municipality: warning}\n")
    r = validate(c, DATA / "invalid" / "missing_value.csv", key=KEY)  # type: ignore[arg-type]
    assert r.n_quarantined == 1
    r = validate(c, DATA / "invalid" / "unknown_municipality.csv", key=KEY)  # type: ignore[arg-type]
    assert r.n_quarantined == 0 and r.n_flagged == 1


def test_a_data_frame_with_any_index_and_typed_columns(clean: ValidationResult) -> None:
    frame = pd.read_csv(VALID, dtype=str)
    frame["date"] = pd.to_datetime(frame["date"])
    frame["value"] = pd.to_numeric(frame["value"])
    frame.index = [7] * len(frame)  # labels that are not unique: rows are numbered anew
    r = validate(CONTRACT, frame, key=KEY)
    assert r.rows == 16 and r.n_quarantined == 0


def test_a_failing_expectation_is_loud(monkeypatch: pytest.MonkeyPatch) -> None:
    """A date bound given as text fails silently inside great-expectations (only in
    exception_info); validate turns that into an error."""
    real = measured.plan_checks

    def with_text_bounds(contract: object) -> tuple[Check, ...]:
        bad = Check("text_bounds", "event_outside_term", "between", ("term_date",), "date", "d", "m",
                    low="2024-01-01", high="2027-12-31")
        return real(contract) + (bad,)  # type: ignore[arg-type]

    monkeypatch.setattr(measured, "plan_checks", with_text_bounds)
    with pytest.raises(GreatExpectationsError, match="text_bounds"):
        validate(CONTRACT, VALID, key=KEY)


def test_nothing_is_written_to_the_working_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    validate(CONTRACT, VALID, key=KEY)
    validate(CONTRACT, DATA / "invalid" / "wrong_contract_id.csv", key=KEY)
    assert os.listdir(tmp_path) == []


def test_large_failures_map_to_the_right_rows() -> None:
    frame = pd.read_csv(VALID, dtype=str)
    big = pd.concat([frame] * 50, ignore_index=True)
    big["participant_id"] = big["participant_id"] + "-" + (np.arange(len(big)) // 16).astype(str)
    bad = np.arange(len(big)) % 16 == 13  # every copy of row 14: benefit days
    big.loc[bad, "value"] = "-1"
    r = validate(CONTRACT, big, key=KEY)
    assert r.reasons == {"negative_value": 50}
    assert sorted(r.quarantined["row"]) == [i + 1 for i in np.flatnonzero(bad)]


LINES = VALID.read_text().splitlines()
JUNK = st.sampled_from(["", "x", "-3", "9999", "2024-02-30", "c9", "enrolment", "GM0363", "A001",
                        "1,5", "\u00e9", "diploma", "2030-01-01", "2023-12-31", "2", "test-kitchen"])


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    edits=st.lists(st.tuples(st.integers(1, 16), st.integers(0, 10), JUNK), max_size=6),
    drops=st.lists(st.integers(1, 16), max_size=3),
    dups=st.lists(st.integers(1, 16), max_size=3),
    extra_field=st.booleans(),
)
def test_rows_in_equal_accepted_plus_quarantined(
    edits: list[tuple[int, int, str]], drops: list[int], dups: list[int], extra_field: bool
) -> None:
    rows = [ln.split(",") for ln in LINES[1:]]
    for r, c, v in edits:
        rows[r - 1][c] = v
    body = [",".join(r) for i, r in enumerate(rows, 1) if i not in drops]
    body += [",".join(rows[i - 1]) for i in dups]
    if extra_field and body:
        body[0] += ",surplus"
    text = "\n".join([LINES[0], *body]) + "\n"
    from sib_engine.outcome_io import read_csv_text

    result = validate(CONTRACT, read_csv_text(text, name="fuzz.csv"), key=KEY)
    assert result.rows == len(body)
    assert result.rows == result.n_accepted + result.n_quarantined
    assert set(result.quarantined["row"]).isdisjoint(set(result.accepted["row"]))
    assert set(result.quarantined["row"]) | set(result.accepted["row"]) == set(range(1, len(body) + 1))
    assert set(result.failures["code"]) <= set(CHECK_CODES)
    critical = set(result.failures.loc[result.failures["severity"] == "critical", "row"].dropna().astype(int))
    assert critical == set(result.quarantined["row"])


def test_blank_group_is_treatment_even_when_no_row_says_treatment() -> None:
    """Regression: a categorical ``group`` column holding only a comparison label and blanks
    used to raise TypeError (new category) instead of reading the blanks as treatment."""
    import pandas as pd

    from sib_engine import load_contract
    from sib_engine.privacy import PseudonymKey
    from sib_engine.validation import validate as run

    contract = load_contract("contracts/brussels_mentoring_2014.yaml")
    frame = pd.read_csv("outcomes/brussels_mentoring_2014.csv", sep=";", dtype=str, encoding="utf-8-sig")
    enrol = frame["metric"] == "enrolment"
    frame.loc[enrol & (frame["group"] == "treatment"), "group"] = None
    frame["group"] = frame["group"].astype("category")
    result = run(contract, frame, key=PseudonymKey.demo())
    assert result.rows == result.n_accepted + result.n_quarantined
    groups = set(result.accepted.loc[result.accepted["metric"] == "enrolment", "group"].astype(str))
    assert "treatment" in groups


# -------------------------------------------------------------- terms in force by date ---

AMENDED = load_contract(DATA / "contracts" / "kitchen_amended.yaml")
"""The fixture contract with an amendment from 2025-01-01 (ages up to 40 eligible, benefit
days at most 300) and one from 2026 that changes only a price."""


def _amended_rows(tmp_path: Path) -> Path:
    extra = [
        "test-kitchen,2,A004,enrolment,2025-03-01,,c2,treatment,GM0344,38,12",  # 38: eligible from 2025 only
        "test-kitchen,2,A005,enrolment,2024-06-01,,c1,treatment,GM0344,38,12",  # 38 in 2024: ineligible
        "test-kitchen,2,A004,benefit_days,2025-06-01,350,,,,,",  # 350 days: valid as signed, not after 2025
        "test-kitchen,2,A002,benefit_days,2024-12-01,350,,,,,",  # 350 days in 2024: valid then
        "test-kitchen,2,A004,job_6m,2026-03-01,1,,,,,",  # after the price-only amendment
    ]
    path = tmp_path / "amended.csv"
    path.write_text(VALID.read_text().rstrip("\n") + "\n" + "\n".join(extra) + "\n")
    return path


def test_rows_are_checked_against_the_terms_in_force_on_their_date(tmp_path: Path) -> None:
    path = _amended_rows(tmp_path)
    r = validate(AMENDED, path, key=KEY)
    assert r.rows == r.n_accepted + r.n_quarantined == 21
    by_row = r.quarantined.set_index("row")
    # valid only under the amended terms, dated after the amendment: accepted
    assert {17, 20, 21} <= set(r.accepted["row"]) and 17 not in by_row.index
    # valid only under the terms as signed, dated after the amendment: quarantined, naming it
    assert by_row.loc[19, "reason"] == "value_out_of_range"
    msg = by_row.loc[19, "message"]
    assert "350 is above the metric's maximum 300" in msg
    assert "older-trainees (Amendment 1, art. 2), in force from 2025-01-01" in msg
    # before the amendment the signed terms apply (and the message names no amendment)
    assert by_row.loc[18, "reason"] == "ineligible"
    assert "(17-35) [Art. 3]" in by_row.loc[18, "message"] and "amended" not in by_row.loc[18, "message"]
    assert set(r.quarantined["row"]) == {18, 19}
    # the check list says what changed and from when
    desc = r.checks.set_index("check").loc["age_eligible", "description"]
    assert "17..35" in desc and "from 2025-01-01" in desc and "17..40" in desc

    # the same rows against the contract as signed: the other way round
    signed = validate(CONTRACT, path, key=KEY)
    q = signed.quarantined.set_index("row")
    assert q.loc[17, "reason"] == "ineligible" and q.loc[18, "reason"] == "ineligible"
    assert 19 not in q.loc[q["reason"] == "value_out_of_range"].index


def test_an_amendment_validation_does_not_read_adds_no_regime() -> None:
    from sib_engine.validation import _regimes

    assert [r.start for r in _regimes(AMENDED)] == [None, date(2025, 1, 1)]  # price-2026 changes a price only
    assert len(_regimes(CONTRACT)) == 1
    assert sorted(_regimes(AMENDED)[1].notes) == ["age_eligible", "value_max"]


def test_a_cohort_an_amendment_removed_is_left_to_the_evaluation() -> None:
    """Rows of a cohort an amendment dropped are not bad data: the evaluation leaves them
    out (``dropped_cohort``) and says so; a changed enrolment window is applied."""
    from sib_engine.validation import _regimes

    brussels = load_contract(Path(__file__).parent.parent / "contracts" / "brussels_reemployment_2018.yaml")
    later = _regimes(brussels)[1]
    known = next(c for c in later.checks if c.id == "cohort_known")
    assert "c2020" in known.value_set and "cohort_known" not in later.notes


# ---------------------------------------------------------- pseudonyms in a worker ---


def test_pseudonyms_from_the_worker_process_are_the_same() -> None:
    import hashlib
    import hmac

    from sib_engine.privacy import PseudonymKey

    key = PseudonymKey(b"a-test-key-of-some-length")
    ids = [f"P{i:05d}" for i in range(300)] + ["é-ü", ""]
    data = "".join(ids).encode("utf-8")
    offsets = np.cumsum([0] + [len(i.encode("utf-8")) for i in ids])
    job = key.start_pseudonym_array(data, offsets, distinct=True, background=True)
    names = job.result()
    assert job.background  # the worker ran
    inline = key.start_pseudonym_array(data, offsets, distinct=True, background=False)
    assert names.tolist() == inline.result().tolist() and not inline.background
    expected = ["ps-" + hmac.new(b"a-test-key-of-some-length", i.encode(), hashlib.sha256).hexdigest()[:20]
                for i in ids]
    assert [n.decode() for n in names.tolist()] == expected == key.pseudonyms(ids)
    # a job no longer wanted stops its worker
    stopped = key.start_pseudonym_array(data, offsets, background=True)
    stopped.close()
    stopped.close()


def test_validation_with_the_worker_gives_the_same_result(monkeypatch: pytest.MonkeyPatch,
                                                           clean: ValidationResult) -> None:
    from sib_engine import privacy

    monkeypatch.setattr(privacy, "BACKGROUND_MIN", 1)
    r = validate(CONTRACT, DATA / "invalid" / "duplicate_participant.csv", key=KEY)
    assert r.timings["pseudonymised_in_worker"] == 1.0
    assert clean.timings["pseudonymised_in_worker"] == 0.0  # 4 participants: hashed in place
    monkeypatch.setattr(privacy, "BACKGROUND_MIN", 10**9)
    same = validate(CONTRACT, DATA / "invalid" / "duplicate_participant.csv", key=KEY)
    pd.testing.assert_frame_equal(r.accepted, same.accepted)
    pd.testing.assert_frame_equal(r.quarantined, same.quarantined)
    pd.testing.assert_frame_equal(r.failures, same.failures)


def test_a_duplicate_enrolment_across_an_amendment_is_still_found(tmp_path: Path) -> None:
    """Uniqueness is a relation between rows: it is checked over every row, not within the
    rows of each stretch of terms."""
    path = tmp_path / "dup.csv"
    path.write_text(VALID.read_text().rstrip("\n")
                    + "\ntest-kitchen,2,A001,enrolment,2025-02-01,,c1,treatment,GM0344,22,12\n")
    r = validate(AMENDED, path, key=KEY)
    codes = set(r.failures.loc[r.failures["row"] == 17, "code"])
    assert "duplicate_participant" in codes, r.failures
    assert r.rows == r.n_accepted + r.n_quarantined
