"""One broken measured-data file per error kind: its reason code and the counts.

The files are made from tests/data/valid/kitchen.csv by tests/data/make_invalid.py; each
breaks one thing.  Every row ends up accepted or quarantined: rows = accepted + quarantined.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from sib_engine.contract import CHECK_CODES
from sib_engine.loader import load_contract, parse_contract
from sib_engine.privacy import PseudonymKey
from sib_engine.validation import WITHDRAWN, ValidationResult, validate

DATA = Path(__file__).parent / "data"
CONTRACT = load_contract(DATA / "contracts" / "kitchen.yaml")
KEY = PseudonymKey.demo()

# file -> (expected reason code, rows, accepted, quarantined, hold)
CASES: dict[str, tuple[str, int, int, int, bool]] = {
    "missing_column.csv": ("missing_column", 16, 0, 16, True),
    "folder_missing_column": ("missing_column", 16, 4, 12, True),
    "wrong_type_value.csv": ("wrong_type", 16, 15, 1, True),
    "wrong_type_age.csv": ("wrong_type", 16, 11, 5, True),
    "decimal_comma_in_comma_file.csv": ("wrong_type", 16, 15, 1, True),
    "unparseable_date.csv": ("unparseable_date", 16, 15, 1, True),
    "far_future_date.csv": ("unparseable_date", 16, 15, 1, True),
    "duplicate_participant.csv": ("duplicate_participant", 17, 16, 1, True),
    "event_before_enrolment.csv": ("event_before_enrolment", 16, 15, 1, True),
    "event_after_term.csv": ("event_outside_term", 16, 15, 1, True),
    "unknown_metric.csv": ("unknown_metric", 17, 16, 1, True),
    "prerequisite_out_of_order.csv": ("prerequisite_out_of_order", 16, 15, 1, True),
    "unknown_municipality.csv": ("unknown_municipality", 16, 11, 5, True),
    "negative_count.csv": ("negative_value", 16, 15, 1, True),
    "empty.csv": ("empty_submission", 0, 0, 0, True),
    "header_only.csv": ("empty_submission", 0, 0, 0, True),
    "wrong_delimiter.csv": ("wrong_delimiter", 16, 0, 16, True),
    "mixed_encodings.csv": ("bad_encoding", 16, 15, 1, True),
    "utf16.csv": ("bad_encoding", 16, 0, 16, True),
    "restated_row.csv": ("restated_row", 16, 15, 1, True),
    # a row of the previous submission missing: reported apart (not an input row), on hold
    "withdrawn_row.csv": ("withdrawn_row", 15, 15, 0, True),
    # the fixture contract makes claim_limit_exceeded a warning: accepted and flagged
    "claim_limit_exceeded.csv": ("claim_limit_exceeded", 17, 17, 0, False),
    "unknown_participant.csv": ("unknown_participant", 17, 16, 1, True),
    "unknown_cohort.csv": ("unknown_cohort", 16, 14, 2, True),
    "wrong_contract_id.csv": ("wrong_contract", 16, 0, 16, True),
    "wrong_contract_version.csv": ("wrong_contract", 16, 15, 1, True),
    "ineligible_age.csv": ("ineligible", 16, 11, 5, True),
    "ineligible_prior_months.csv": ("ineligible", 16, 14, 2, True),
    "value_out_of_range.csv": ("value_out_of_range", 16, 15, 1, True),
    "event_value_not_one.csv": ("value_out_of_range", 16, 15, 1, True),
    "outside_window.csv": ("outside_window", 16, 15, 1, True),
    "enrolment_outside_cohort_window.csv": ("outside_window", 16, 14, 2, True),
    "missing_participant.csv": ("missing_value", 16, 15, 1, True),
    "missing_value.csv": ("missing_value", 16, 15, 1, True),
    "missing_cohort.csv": ("missing_value", 16, 9, 7, True),
    "malformed_row.csv": ("malformed_row", 16, 15, 1, True),
    "unknown_group.csv": ("unknown_group", 16, 14, 2, True),
}


@pytest.fixture(scope="module")
def baseline() -> ValidationResult:
    return validate(CONTRACT, DATA / "valid" / "kitchen.csv", key=KEY)


def test_the_valid_file_is_clean(baseline: ValidationResult) -> None:
    assert (baseline.rows, baseline.n_accepted, baseline.n_quarantined, baseline.hold) == (16, 16, 0, False)
    assert baseline.reasons == {}


def test_every_broken_file_has_a_case() -> None:
    files = {p.name for p in (DATA / "invalid").iterdir()}
    assert files == set(CASES)
    assert len(CASES) >= 25


@pytest.mark.parametrize("name", sorted(CASES))
def test_broken_file(name: str, baseline: ValidationResult) -> None:
    code, rows, accepted, quarantined, hold = CASES[name]
    previous = baseline if name in ("restated_row.csv", "withdrawn_row.csv") else None
    r = validate(CONTRACT, DATA / "invalid" / name, key=KEY, previous=previous)
    assert r.rows == r.n_accepted + r.n_quarantined
    assert (r.rows, r.n_accepted, r.n_quarantined) == (rows, accepted, quarantined)
    assert code in (r.reasons if code != WITHDRAWN else {WITHDRAWN: r.n_withdrawn} if r.n_withdrawn else {}), \
        r.reasons
    assert code in r.summary().index
    assert r.hold is hold, r.hold_reasons
    assert set(r.failures["code"]) <= set(CHECK_CODES)
    assert list(r.failures.columns) == ["row", "source", "column", "value", "check", "code", "severity", "message"]
    assert r.to_json()["rows"] == rows
    if quarantined:
        # the code's first failure points at the file and line, and the row is quarantined
        f = r.failures[r.failures["code"] == code].iloc[0]
        assert name.split(".")[0] in f["source"] and ":" in f["source"]
        assert int(f["row"]) in set(r.quarantined["row"]) | set(r.accepted["row"])
        assert set(r.quarantined["reason"]) <= set(CHECK_CODES)
        assert r.quarantined["message"].str.len().min() > 0
    if name in ("empty.csv", "header_only.csv"):
        assert r.failures["row"].isna().all()
        assert "no data rows" in r.hold_reasons[0]


def test_structure_failures_hide_row_failures() -> None:
    """A file without a required column is reported once per row as missing_column and
    nothing else: the schema failure is told apart from row failures."""
    r = validate(CONTRACT, DATA / "invalid" / "missing_column.csv", key=KEY)
    assert set(r.failures["code"]) == {"missing_column"}
    assert (r.quarantined["reason"] == "missing_column").all()
    assert "municipality" in r.failures["message"].iloc[0]
    assert any("structure problem" in h for h in r.hold_reasons)


def test_restatement_needs_the_earlier_submission() -> None:
    r = validate(CONTRACT, DATA / "invalid" / "restated_row.csv", key=KEY)
    assert r.n_quarantined == 0


def test_restatement_against_an_accepted_frame(baseline: ValidationResult) -> None:
    r = validate(CONTRACT, DATA / "invalid" / "restated_row.csv", key=KEY, previous=baseline.accepted)
    assert r.reasons == {"restated_row": 1}
    msg = r.failures["message"].iloc[0]
    assert "150" in msg and "120" in msg and "true-up" in msg


def test_withdrawn_row_is_reported_apart(baseline: ValidationResult) -> None:
    """A row of the earlier submission missing from this one cannot be quarantined (it is
    not an input row): it is listed in ``withdrawn``, in the summary and the JSON, and (as
    restatements are critical under the fixture contract) the submission is on hold."""
    r = validate(CONTRACT, DATA / "invalid" / "withdrawn_row.csv", key=KEY, previous=baseline)
    assert (r.rows, r.n_accepted, r.n_quarantined, r.n_withdrawn, r.previous_rows) == (15, 15, 0, 1, 16)
    assert r.reasons == {} and r.failures.empty
    w = r.withdrawn.iloc[0]
    assert (int(w["previous_row"]), w["metric"], str(w["date"].date()), w["code"], w["severity"]) == (
        7, "completes_50", "2024-08-01", WITHDRAWN, "critical")
    assert w["participant_id"].startswith("demo-") and "A001" not in w["message"]
    assert "missing from this submission" in w["message"] and "(row 7 there)" in w["message"]
    assert any("1 row of the previous submission is missing" in h and WITHDRAWN in h for h in r.hold_reasons)
    j = r.to_json()
    assert j["withdrawn"] == 1 and j["withdrawn_rows"][0]["previous_row"] == 7 and j["hold"] is True
    assert "A001" not in str(j)
    assert r.summary().loc[WITHDRAWN, "rows"] == 1 and r.summary().loc[WITHDRAWN, "share"] == 1 / 16
    assert "1 withdrawn" in repr(r) and "withdrawn" in r._repr_html_()
    assert r.checks.set_index("check").loc["withdrawal", "failed"] == 1
    # against the accepted frame (what storage hands back) the same row is found
    again = validate(CONTRACT, DATA / "invalid" / "withdrawn_row.csv", key=KEY, previous=baseline.accepted)
    assert again.withdrawn[["previous_row", "metric"]].values.tolist() == [[7, "completes_50"]]
    # without an earlier submission there is nothing to compare
    alone = validate(CONTRACT, DATA / "invalid" / "withdrawn_row.csv", key=KEY)
    assert alone.n_withdrawn == 0 and alone.to_json()["withdrawn_rows"] == [] and not alone.hold


def test_withdrawn_row_is_a_warning_where_restatements_are(baseline: ValidationResult) -> None:
    """A contract that takes restatements as warnings (true-ups) takes withdrawals so too:
    reported and flagged, no hold."""
    text = (DATA / "contracts" / "kitchen.yaml").read_text()
    relaxed = parse_contract(text.replace("    claim_limit_exceeded: warning\n",
                                          "    claim_limit_exceeded: warning\n    restated_row: warning\n"))
    r = validate(relaxed, DATA / "invalid" / "withdrawn_row.csv", key=KEY, previous=baseline)
    assert r.n_withdrawn == 1 and not r.hold and r.hold_reasons == ()
    assert r.withdrawn["severity"].tolist() == ["warning"]
    assert r.summary().loc[WITHDRAWN, "severity"] == "warning"


def test_a_changed_row_is_restated_not_withdrawn(baseline: ValidationResult) -> None:
    r = validate(CONTRACT, DATA / "invalid" / "restated_row.csv", key=KEY, previous=baseline)
    assert r.reasons == {"restated_row": 1} and r.n_withdrawn == 0


def test_cascade_names_the_enrolment_row() -> None:
    r = validate(CONTRACT, DATA / "invalid" / "ineligible_age.csv", key=KEY)
    cascade = r.failures[r.failures["check"] == "enrolment_accepted"]
    assert len(cascade) == 4
    assert cascade["message"].str.contains(r"\(row 2\) was quarantined: ineligible").all()


def test_messages_explain_the_failure() -> None:
    expect = {
        "event_before_enrolment.csv": "2025-01-20 is before the participant's enrolment on 2025-02-10",
        "outside_window.csv": "attribution window ended on 2024-09-15",
        "prerequisite_out_of_order.csv": "first possible: 2024-05-01",
        "unknown_municipality.csv": "'GM0363' is not a municipality any payer pays for (known: GM0344, GM0356)",
        "ineligible_age.csv": "age 41 is outside the eligible ages (17-35) [Art. 3]",
        "mixed_encodings.csv": "byte 0xeb at column 23 is not UTF-8",
        "malformed_row.csv": "the line has 12 fields, the header 11",
        "wrong_delimiter.csv": "separated by tabs",
    }
    for name, text in expect.items():
        r = validate(CONTRACT, DATA / "invalid" / name, key=KEY)
        assert r.failures["message"].str.contains(text, regex=False).any(), (name, r.failures["message"].tolist())
