"""Error messages are API: one deliberately broken contract per error kind.

Each file in ``tests/contracts/invalid/`` has exactly one defect, named by the file and
described in its first line.  The table below pins, for each file, the problem code the
loader must report, the line it must point at and a fragment of its wording; the tests
check that the error is a :class:`ContractError` (never a traceback), that it is located
as ``file:line:col:`` and that it says how to fix it.  A new file without a row in the
table fails :func:`test_every_invalid_file_is_in_the_table`; a new error code without a
file fails :func:`test_every_error_code_has_an_invalid_file`.  The few codes about the file
itself (missing, unreadable, too large) are tested without a checked-in file.  Further
tests check that several independent defects are all reported in one pass.
"""

from __future__ import annotations

import re
import traceback
from pathlib import Path
from typing import NamedTuple

import pytest

from sib_engine.errors import ContractError, Problem
from sib_engine.loader import EXAMPLE, MAX_BYTES, load_contract, parse_contract

ROOT = Path(__file__).resolve().parent.parent
INVALID = ROOT / "tests" / "contracts" / "invalid"

FILE_LEVEL = {
    "file_not_found": "a missing file has no content to break on purpose",
    "file_unreadable": "an unreadable file cannot be checked in",
    "file_too_large": "a file over MAX_BYTES would bloat the repository",
}
"""Codes about the file itself rather than its content: tested below without a file."""

SCENARIO_LEVEL = {
    "wrong_contract": "a scenario file names another contract; tests/test_simulation_contract.py tests it",
}
"""Codes only a separate scenario file can have (a contract file cannot show them)."""


class Expect(NamedTuple):
    code: str
    line: int
    words: str
    """A fragment of the problem's formatted text (message or hint)."""


EXPECTED: dict[str, Expect] = {
    # --- the YAML itself -------------------------------------------------------------
    "yaml_syntax": Expect("yaml_syntax", 18, "mapping values are not allowed here"),
    "tab_indentation": Expect("yaml_syntax", 18, "indent with spaces"),
    "duplicate_key": Expect("duplicate_key", 6, "key 'title' appears twice (first on line 4)"),
    "yaml_tag": Expect("yaml_tag", 4, "the tag '!!python/object:os.system' is not allowed"),
    "yaml_alias": Expect("yaml_alias", 6, "anchors and aliases"),
    "yaml_merge": Expect("yaml_merge", 18, "merge keys ('<<') are not allowed"),
    "empty_file": Expect("not_a_contract", 1, "the file is empty"),
    "multiple_documents": Expect("not_a_contract", 5, "more than one YAML document"),
    "not_a_mapping": Expect("not_a_contract", 2, "not a mapping of keys to values"),
    "bad_encoding": Expect("bad_encoding", 4, "not UTF-8 text (byte 0xe9)"),
    "too_deep": Expect("too_deep", 5, "nested more than 64 levels deep"),
    # --- the format header ---------------------------------------------------------
    "missing_format": Expect("unsupported_format", 2, "the format header is missing"),
    "unsupported_format": Expect("unsupported_format", 2, "format 'sib-contract/2' is not supported"),
    # --- structure: keys, types, values ----------------------------------------------
    "unknown_key": Expect("unknown_key", 5, "did you mean 'summary'?"),
    "missing_key": Expect("missing_key", 16, "triggers[0].clause: required key 'clause' is missing"),
    "wrong_type": Expect("wrong_type", 21, "'about 2750 euro' is not a number"),
    "decimal_comma": Expect("wrong_type", 21, "use a point as the decimal separator"),
    "bad_date": Expect("bad_date", 6, "'2026-02-30' is not a valid date"),
    "bad_currency": Expect("bad_currency", 5, "'EURO' is not an ISO 4217 currency code"),
    "negative_value": Expect("negative_value", 21, "-2750.00 is negative"),
    "out_of_range": Expect("out_of_range", 12, "payers[0].share: 1.5 must be at most 1"),
    "rate_as_percent": Expect("out_of_range", 41, "20% is 0.2"),
    "invalid_choice": Expect("invalid_choice", 27, "'cubic' is not allowed here (hint: use one of: 'step' or 'linear')"),
    "unknown_kind": Expect("unknown_kind", 17, "kind 'ratecard' is not known"),
    "bad_identifier": Expect("bad_identifier", 3, "'Demo Contract' is not a valid identifier"),
    "wrong_length": Expect("wrong_length", 15, "at least 1 item"),
    # --- cross references ------------------------------------------------------------
    "duplicate_id": Expect("duplicate_id", 15, "id 'job' is used twice in metrics"),
    "unknown_metric": Expect("unknown_metric", 20, "'jobs' is not a metric of this contract (hint: known metrics: job)"),
    "unknown_baseline": Expect("unknown_baseline", 24, "'historic' is not a baseline of this contract"),
    "baseline_metric_mismatch": Expect("baseline_metric_mismatch", 24, "baseline 'hist' is for metric 'job', not 'employed'"),
    "missing_baseline": Expect("missing_baseline", 24, "compares with a baseline, but none is named"),
    "baseline_not_used": Expect("baseline_not_used", 24, "a baseline would be ignored"),
    "test_metric_mismatch": Expect("test_metric_mismatch", 26, "use two_proportion_z"),
    "weights_not_one": Expect("weights_not_one", 22, "blend weights add up to 0.9, not 1"),
    "nested_blend": Expect("nested_blend", 25, "blend component 'inner' is itself a blend"),
    "prerequisite_cycle": Expect("prerequisite_cycle", 14, "metric 'job' requires itself through its prerequisites"),
    "metric_type_mismatch": Expect("metric_type_mismatch", 20, "'job' is a count metric"),
    # --- payers ----------------------------------------------------------------------
    "shares_not_one": Expect("shares_not_one", 12, "payer shares add up to 0.9, not 1"),
    "payer_mode": Expect("payer_mode", 12, "gives share and residence"),
    "residence_overlap": Expect("residence_overlap", 14, "'GM0479' is paid for by both 'city' and 'town'"),
    "unknown_party": Expect("unknown_party", 12, "payer 'town' is not among the parties"),
    "wrong_role": Expect("wrong_role", 12, "party 'fund' pays outcomes but has role 'investor'"),
    "no_primary_payer": Expect("no_primary_payer", 11, "every payer is a top-up"),
    # --- schedules and caps ----------------------------------------------------------
    "overlapping_tiers": Expect("overlapping_tiers", 30, "tier at effect 0.05 does not come after the tier at 0.05"),
    "schedule_decreasing": Expect("schedule_decreasing", 30, "value falls from 100000 to 50000"),
    "too_few_points": Expect("too_few_points", 28, "linear interpolation needs at least two points"),
    "cap_below_price": Expect("cap_below_price", 22, "cap 1000 is below the price 2750.00"),
    "cap_above_total": Expect("cap_above_total", 24, "caps.per_participant (250000) is above the contract's total cap"),
    "fallback_above_cohort": Expect("fallback_above_cohort", 30, "pooled fallback threshold (0.12) is above the per-cohort threshold (0.10)"),
    # --- dates and the timeline ------------------------------------------------------
    "dates_out_of_order": Expect("dates_out_of_order", 6, "the term ends (2023-12-31) on or before it starts"),
    "range_inverted": Expect("range_inverted", 9, "age_max (18) is below age_min (30)"),
    "outside_term": Expect("outside_term", 25, "enrolment_end 2027-06-30 is outside the term"),
    "unknown_period": Expect("unknown_period", 27, "'P13' is not a measurement period (there are 12"),
    "determination_after_final": Expect("determination_after_final", 28, "comes after the final determination"),
    "unknown_determination": Expect("unknown_determination", 23, "'last' is not a determination of the timeline"),
    "fallback_not_final": Expect("fallback_not_final", 23, "determination 'mid' is interim"),
    "payment_before_cutoff": Expect("payment_before_cutoff", 27, "paid on 2027-01-30, before its data cutoff 2027-03-31"),
    # --- the capital stack -----------------------------------------------------------
    "drawdowns_not_commitment": Expect("drawdowns_not_commitment", 42, "drawdowns add up to 400000, the commitment is 500000"),
    "conflicting_keys": Expect("conflicting_keys", 44, "both drawdowns and drawdown_schedule are given"),
    "missing_coupon": Expect("missing_coupon", 37, "loan 'senior' has no coupon"),
    "unknown_tranche": Expect("unknown_tranche", 44, "'senoir' is not a tranche of the capital stack (hint: known tranches: senior)"),
    "residual_not_last": Expect("residual_not_last", 44, "the residual step must be the last step"),
    "guarantee_above_principal": Expect("guarantee_above_principal", 44, "600000 is above the covered principal (500000)"),
    # --- data quality and amendments -------------------------------------------------
    "unknown_check": Expect("unknown_check", 24, "'late_row' is not a data check"),
    "bad_amendment": Expect("bad_amendment", 32, "no item named 'jobs'"),
    "change_mode": Expect("change_mode", 32, "exactly one of 'set' or 'remove'"),
    # --- simulation assumptions ------------------------------------------------------
    "bad_distribution": Expect("bad_distribution", 33, "a triangular distribution needs low <= mode <= high"),
    "correlation_invalid": Expect("correlation_invalid", 33, "entry (1, 2) = 0.5: a correlation matrix is symmetric"),
    "missing_assumption": Expect("missing_assumption", 29, "no true effect is assumed for metric 'job'"),
}


def _load_problems(path: Path) -> tuple[Problem, ...]:
    """Load ``path`` and return the problems of the ContractError it must raise."""
    try:
        load_contract(path)
    except ContractError as exc:
        return exc.problems
    except Exception:  # anything else is a bug of the loader: show its traceback
        pytest.fail(f"{path.name} raised something other than ContractError:\n{traceback.format_exc()}")
    pytest.fail(f"{path.name} loaded without error, but it is broken on purpose")


def _with(text: str, *subs: tuple[str, str]) -> str:
    """``text`` with each ``old`` (found exactly once) replaced by ``new``."""
    for old, new in subs:
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    return text


def test_every_invalid_file_is_in_the_table() -> None:
    on_disk = {p.stem for p in INVALID.glob("*.yaml")}
    assert on_disk - set(EXPECTED) == set(), "invalid contract files without a row in EXPECTED"
    assert set(EXPECTED) - on_disk == set(), "rows of EXPECTED without a file"
    assert len(on_disk) >= 35


def test_every_error_code_has_an_invalid_file() -> None:
    """Every code the loader or the consistency checks can report has its broken file, so
    that a new kind of error arrives with a test of its message."""
    source = "".join((ROOT / "sib_engine" / f).read_text() for f in ("loader.py", "consistency.py"))
    raised = set(re.findall(r'(?:\badd|_problem|\bProblem)\(\s*"([a-z_]+)"', source))
    assert len(raised) > 40, "the pattern no longer finds the codes: update it"
    covered = {e.code for e in EXPECTED.values()} | set(FILE_LEVEL) | set(SCENARIO_LEVEL)
    assert raised - covered == set(), "codes without a file in tests/contracts/invalid/"


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_first_line_says_what_is_wrong(name: str) -> None:
    first = (INVALID / f"{name}.yaml").read_bytes().split(b"\n", 1)[0].decode("ascii")
    assert first.startswith(f"# {name}: ") and len(first) > len(f"# {name}: ") + 10


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_invalid_contract_is_reported(name: str) -> None:
    path = INVALID / f"{name}.yaml"
    _check_reported(_load_problems(path), str(path), path.read_bytes().count(b"\n") + 1, EXPECTED[name])


def _check_reported(problems: tuple[Problem, ...], source: str, n_lines: int, expect: Expect) -> None:
    codes = [p.code for p in problems]
    assert expect.code in codes, f"expected {expect.code}, got {codes}"
    problem = next(p for p in problems if p.code == expect.code)
    text = problem.format()

    assert problem.file == source
    assert problem.line == expect.line, text
    assert problem.column is not None and problem.column >= 1, text
    assert text.startswith(f"{source}:{expect.line}:{problem.column}: "), text
    assert expect.words in text, text
    # Every kind of problem says how to fix it; none of them is beyond a hint.
    assert problem.hint.strip(), f"no hint in {text}"
    # Every problem of the file is located somewhere within it.
    for p in problems:
        assert p.line is not None and 1 <= p.line <= n_lines, p.format()


# ------------------------------------------- edge cases that once escaped as tracebacks ---


EDGE_CASES: dict[str, tuple[str, Expect]] = {
    # A control character: PyYAML's reader error has no mark, only a position.
    "nul_character": (
        _with(EXAMPLE, ("title: Demo", "title: De\x00mo")),
        Expect("yaml_syntax", 3, "the character U+0000 is not allowed"),
    ),
    # More digits than Python turns into an int.
    "huge_integer": (
        _with(EXAMPLE, ("count: 12", "count: 1" + "0" * 5000)),
        Expect("wrong_type", 21, "is not a whole number"),
    ),
    # Periods that would end after 9999-12-31.
    "periods_past_year_9999": (
        _with(EXAMPLE, ("end: 2026-12-31}", "end: 9999-12-31}"),
              ("periods: {start: 2024-01-01, months: 3, count: 12}",
               "periods: {start: 9999-01-01, months: 24, count: 400}")),
        Expect("outside_term", 21, "the periods run past the year 9999"),
    ),
    # A sum of money beyond any real deal (and beyond the decimal context's range) is refused.
    "drawdown_overflow": (
        EXAMPLE + """\
capital:
  tranches:
    - {id: loan, kind: senior_loan, funder: fund, commitment: 1000, coupon: {rate: 0.05},
       drawdowns: [{date: 2024-01-01, amount: 1e999999999}]}
  waterfall:
    - {pay: residual, split: {fund: 1}}
""",
        Expect("out_of_range", 27, "must be at most 1E+15"),
    ),
    # The "did you mean" hint looks at the list item the path goes into, not the first.
    "typo_in_second_baseline": (
        _with(EXAMPLE, ("triggers:\n", "baselines:\n"
                        "  - {id: fixed, kind: fixed, metric: job, value: 10}\n"
                        "  - {id: past, kind: historical, metric: job, value: 12, n: 200, perod: 2010-2012}\n"
                        "triggers:\n")),
        Expect("unknown_key", 16, "did you mean 'period'?"),
    ),
}


@pytest.mark.parametrize("name", sorted(EDGE_CASES))
def test_edge_case_is_reported(name: str) -> None:
    text, expect = EDGE_CASES[name]
    try:
        parse_contract(text, source=f"{name}.yaml")
    except ContractError as exc:
        _check_reported(exc.problems, f"{name}.yaml", text.count("\n") + 1, expect)
    else:
        pytest.fail(f"{name} loaded without error")


def test_payment_lag_past_year_9999_is_not_a_traceback() -> None:
    text = _with(EXAMPLE, ("    - {id: c1, enrolment_start: 2024-01-01, enrolment_end: 2024-12-31}\n",
                           "    - {id: c1, enrolment_start: 2024-01-01, enrolment_end: 2024-12-31}\n"
                           "  payment_lag_days: 999999999999\n"
                           "  determinations: [{id: end, kind: final, period: P12, data_cutoff: 2027-01-31}]\n"))
    assert parse_contract(text).timeline.payment_lag_days == 999999999999


def _file_problem(path: Path) -> Problem:
    with pytest.raises(ContractError) as info:
        load_contract(path)
    (problem,) = info.value.problems
    return problem


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.yaml"
    p = _file_problem(path)
    assert p.code == "file_not_found" and p.hint
    assert p.format() == f"{path}: (document): no such file (hint: check the path)"


def test_unreadable_file(tmp_path: Path) -> None:
    p = _file_problem(tmp_path)  # a directory
    assert p.code == "file_unreadable" and p.hint
    assert p.format().startswith(f"{tmp_path}: (document): cannot read the file")


def test_too_large_file(tmp_path: Path) -> None:
    path = tmp_path / "huge.yaml"
    path.write_bytes(b"# " + b"x" * MAX_BYTES + b"\n")
    p = _file_problem(path)
    assert p.code == "file_too_large" and p.hint
    assert p.format().startswith(f"{path}: (document): the file is {MAX_BYTES + 3} bytes")


# --------------------------------------------------------- several defects, one pass ---


def _problems_of(tmp_path: Path, text: str) -> dict[str, Problem]:
    path = tmp_path / "several.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ContractError) as info:
        load_contract(path)
    by_code: dict[str, Problem] = {}
    for p in info.value.problems:
        by_code.setdefault(p.code, p)
    return by_code


def test_structural_defects_are_all_reported_at_once(tmp_path: Path) -> None:
    """A duplicate key, an unknown key, a bad currency, a bad date and a negative price:
    five independent defects, one ContractError naming all five on their own lines."""
    text = _with(
        EXAMPLE,
        ("title: Demo rate card\n", "title: Demo rate card\ntitle: Again\n"),  # line 4
        ("currency: EUR\n", "currency: EURO\n"),  # line 5
        ("end: 2026-12-31}", "end: 2026-13-01}"),  # line 6
        ("  - {party: city, share: 1}\n", "  - {party: city, share: 1, shares: 1}\n"),  # line 12
        ('price: "2750.00"', 'price: "-5"'),  # line 20
    )
    found = _problems_of(tmp_path, text)
    assert {code: p.line for code, p in found.items()} == {
        "duplicate_key": 4,
        "bad_currency": 5,
        "bad_date": 6,
        "unknown_key": 12,
        "negative_value": 20,
    }


def test_cross_reference_defects_are_all_reported_at_once(tmp_path: Path) -> None:
    """Structurally valid, but five parts disagree with others: all five are reported."""
    text = _with(
        EXAMPLE,
        ("  - {id: fund, name: Example Fund, role: investor}\n",
         "  - {id: fund, name: Example Fund, role: investor}\n  - {id: state, name: State, role: payer}\n"),
        ("payers:\n  - {party: city, share: 1}\n",  # line 11
         "payers:\n  - {party: city, share: 0.5}\n  - {party: state, share: 0.4}\n"),
        ("type: event}", "type: event, requires: [job]}"),  # line 15
        ("{metric: job, price:", "{metric: jobs, price:"),  # line 21
        ("enrolment_end: 2024-12-31}", "enrolment_end: 2029-12-31}"),  # line 25
    ) + "data_quality:\n  severity: {late_row: warning}\n"  # line 27
    found = _problems_of(tmp_path, text)
    assert {code: p.line for code, p in found.items()} == {
        "shares_not_one": 11,
        "prerequisite_cycle": 15,
        "unknown_metric": 21,
        "outside_term": 25,
        "unknown_check": 27,
    }
