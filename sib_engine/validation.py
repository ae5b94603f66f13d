"""Validation of measured data against a contract (layer 3: edges; runs great-expectations).

:func:`validate` reads nothing itself beyond what it is given (a path is read through
:mod:`sib_engine.outcome_io`), generates the checks from the contract
(:func:`sib_engine.measured.plan_checks`), runs them as one great-expectations suite in an
ephemeral, in-memory context, runs the checks such a suite cannot express (parsing,
the reader's findings, restatements, rows of a quarantined enrolment) through the same
reporting path, and returns a frozen :class:`ValidationResult`:

* every input row is either **accepted** (possibly flagged with warnings) or
  **quarantined** with a stable reason code; ``rows == n_accepted + n_quarantined``;
* ``failures`` lists every failed check of every row: row, source, column, value, check,
  code, severity, message;
* above the contract's ``data_quality.tolerance`` the submission is on payment **hold**.

Participant identifiers are pseudonymised (:mod:`sib_engine.privacy`) before anything
leaves this module: no result, table or JSON holds a raw identifier.

Structure problems are told apart from row problems: an empty submission (no rows) is on
hold with reason ``empty_submission``; a file without a required column, or read as one
column because of a wrong separator, has every row quarantined with ``missing_column`` or
``wrong_delimiter`` and no other reason, and the submission is on hold.
"""

from __future__ import annotations

import html
import json
import time
from dataclasses import dataclass, field, replace
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd

from sib_engine import measured
from sib_engine.contract import CHECK_CODES, Contract
from sib_engine.errors import SibError
from sib_engine.measured import TREATMENT, Check, Failures
from sib_engine.outcome_io import RawOutcomes, read_outcomes
from sib_engine.privacy import PseudonymKey

__all__ = ["ValidationResult", "validate", "validation_json", "GreatExpectationsError", "WITHDRAWN"]

_STRUCTURE = ("missing_column", "wrong_delimiter")


class GreatExpectationsError(SibError):
    """great-expectations could not evaluate an expectation (a bug, never a data problem)."""


# ------------------------------------------------------------------- the GX runner ---


class _Gx:
    """One ephemeral, in-memory great-expectations context, reused across validations."""

    _instance: "_Gx | None" = None

    def __init__(self) -> None:
        import great_expectations as gx
        from great_expectations.data_context.types.base import (
            DataContextConfig,
            InMemoryStoreBackendDefaults,
            ProgressBarsConfig,
        )

        config = DataContextConfig(
            store_backend_defaults=InMemoryStoreBackendDefaults(init_temp_docs_sites=False),
            progress_bars=ProgressBarsConfig(globally=False, metric_calculations=False),
            analytics_enabled=False,
        )
        self.gx = gx
        self.context = gx.get_context(project_config=config, mode="ephemeral")
        source = self.context.data_sources.add_pandas("sib_engine_measured_data")
        asset = source.add_dataframe_asset("check_frame")
        self.batch_definition = asset.add_batch_definition_whole_dataframe("whole")
        self.counter = 0

    @classmethod
    def get(cls) -> "_Gx":
        if cls._instance is None:
            cls._instance = cls()
        return cls._instance

    def expectation(self, check: Check) -> Any:
        gxe = self.gx.expectations
        meta = {"sib_check": check.id}
        col = check.columns[0]
        if check.kind == "in_set":
            return gxe.ExpectColumnValuesToBeInSet(column=col, value_set=list(check.value_set), meta=meta)
        if check.kind == "between":
            return gxe.ExpectColumnValuesToBeBetween(column=col, min_value=check.low, max_value=check.high, meta=meta)
        if check.kind == "not_null":
            return gxe.ExpectColumnValuesToNotBeNull(column=col, meta=meta)
        if check.kind == "a_ge_b":
            return gxe.ExpectColumnPairValuesAToBeGreaterThanB(
                column_A=check.columns[0], column_B=check.columns[1], or_equal=True,
                ignore_row_if="either_value_is_missing", meta=meta)
        if check.kind == "unique":
            return gxe.ExpectCompoundColumnsToBeUnique(column_list=list(check.columns),
                                                       ignore_row_if="any_value_is_missing", meta=meta)
        raise ValueError(f"unknown check kind {check.kind}")  # pragma: no cover

    def run(self, frame: pd.DataFrame, checks: tuple[Check, ...]) -> dict[str, np.ndarray]:
        """Check id -> index labels of the rows of ``frame`` failing it (``frame`` has a
        unique index).  Raises GreatExpectationsError if any expectation raised inside
        great-expectations."""
        return self.failing_rows(self.validate(frame, self.suite(checks)), checks)

    def suite(self, checks: tuple[Check, ...]) -> Any:
        """The expectation suite of ``checks``."""
        self.counter += 1
        return self.gx.ExpectationSuite(
            name=f"sib-measured-data-{self.counter}",
            expectations=[self.expectation(c) for c in checks],
        )

    def validate(self, frame: pd.DataFrame, suite: Any) -> Any:
        """Validate ``frame`` against ``suite``: the time spent here is great-expectations' own.

        ``Batch.validate`` (what ``batch_definition.get_batch(...).validate(suite)`` does)
        builds a validator that gets the batch again, fingerprinting the whole frame a
        second time: so the validator is built here straight from the batch definition and
        the frame, as ``Batch.validate`` and ``ValidationDefinition.run`` build it, and
        great-expectations gets (and fingerprints) the batch once.
        """
        result_format = {
            "result_format": "COMPLETE",
            "partial_unexpected_count": 0,
            "return_unexpected_index_query": False,
        }
        validator = self._v1_validator(frame, result_format)
        if validator is None:  # pragma: no cover - a great-expectations without it
            batch = self.batch_definition.get_batch(batch_parameters={"dataframe": frame})
            return batch.validate(suite, result_format=result_format)
        return validator.validate_expectation_suite(suite)

    def _v1_validator(self, frame: pd.DataFrame, result_format: dict[str, Any]) -> Any:
        try:
            from great_expectations.validator.v1_validator import Validator
        except ImportError:  # pragma: no cover
            return None
        return Validator(batch_definition=self.batch_definition, batch_parameters={"dataframe": frame},
                         result_format=result_format)

    @staticmethod
    def failing_rows(result: Any, checks: tuple[Check, ...]) -> dict[str, np.ndarray]:
        """Check id -> index labels of the failing rows, from the result of :meth:`validate`."""
        out: dict[str, np.ndarray] = {}
        for r in result.results:
            config = r.expectation_config
            cid = str(((config.meta if config is not None else None) or {}).get("sib_check"))
            _raise_on_exception(cid, r.exception_info)
            res = r.result or {}
            idx = res.get("unexpected_index_list")
            count = res.get("unexpected_count")
            if idx is None or count is None:
                raise GreatExpectationsError(f"check '{cid}': great-expectations returned no row list")
            rows = _labels(idx)
            if rows.size != count:
                raise GreatExpectationsError(
                    f"check '{cid}': {count} rows failed but {rows.size} were listed")
            out[cid] = rows
        missing = {c.id for c in checks} - set(out)
        if missing:
            raise GreatExpectationsError(f"great-expectations returned no result for {sorted(missing)}")
        return out


def _labels(idx: list[Any]) -> np.ndarray:
    """The index labels in ``unexpected_index_list`` (plain labels, or dicts with ``index``)."""
    try:
        return np.fromiter(idx, dtype=np.int64, count=len(idx))
    except (TypeError, ValueError):
        return np.asarray([i if isinstance(i, (int, np.integer)) else i["index"] for i in idx], dtype=np.int64)


def _raise_on_exception(check_id: str, info: Any) -> None:
    """great-expectations reports an expectation that could not run only in
    ``exception_info`` (e.g. a date bound given as text); make that loud."""
    if not info:
        return
    items = [info] if "raised_exception" in info else list(info.values())
    for item in items:
        if isinstance(item, Mapping) and item.get("raised_exception"):
            raise GreatExpectationsError(
                f"check '{check_id}' could not be evaluated by great-expectations: "
                f"{item.get('exception_message')}")


# -------------------------------------------------------------------------- result ---


WITHDRAWN = "withdrawn_row"
"""The reason code of a row of the previous submission missing from this one."""


def _empty_withdrawn() -> pd.DataFrame:
    return pd.DataFrame({
        "previous_row": pd.Series([], dtype="Int64"), "participant_id": pd.Series([], dtype="str"),
        "metric": pd.Series([], dtype="str"), "date": pd.Series([], dtype="datetime64[ns]"),
        "value": pd.Series([], dtype="float64"), "code": pd.Series([], dtype="str"),
        "severity": pd.Series([], dtype="str"), "message": pd.Series([], dtype="str"),
    })


def _withdrawn(current: pd.DataFrame, previous: pd.DataFrame, severity: str) -> pd.DataFrame:
    """Rows of ``previous`` (pseudonymised ``participant_id``, ``metric``, ``date``, and
    ``value`` and ``row`` if it has them) whose participant, metric and date no row of
    ``current`` has: withdrawn from the submission."""
    keys = ["participant_id", "metric", "date"]
    if not len(previous) or any(k not in previous.columns for k in keys):
        return _empty_withdrawn()
    prev = pd.DataFrame({
        "participant_id": previous["participant_id"].astype("str"),
        "metric": previous["metric"].astype("str"),
        "date": pd.to_datetime(previous["date"]).astype("datetime64[ns]"),
        "value": (pd.to_numeric(previous["value"], errors="coerce").astype("float64")
                  if "value" in previous.columns else np.nan),
        "previous_row": (pd.to_numeric(previous["row"], errors="coerce").astype("Int64")
                         if "row" in previous.columns else pd.NA),
    }).reset_index(drop=True)
    prev = prev[previous["participant_id"].notna().to_numpy() & previous["metric"].notna().to_numpy()
                & prev["date"].notna().to_numpy()]
    cur = pd.DataFrame({
        "participant_id": current["participant_id"].astype("str"),
        "metric": current["metric"].astype("str"),
        "date": current["date"].astype("datetime64[ns]"),
    })[current[keys].notna().all(axis=1).to_numpy()].drop_duplicates()
    m = prev.merge(cur.assign(_here=True), on=keys, how="left")
    gone = m[m["_here"].isna()].drop(columns="_here").drop_duplicates(keys).reset_index(drop=True)
    if not len(gone):
        return _empty_withdrawn()
    where = gone["previous_row"].map(lambda r: "" if pd.isna(r) else f" (row {int(r)} there)").astype("str")
    what = np.where(gone["metric"] == measured.ENROLMENT, "the enrolment", gone["metric"].astype(object))
    message = (pd.Series(what, dtype="str") + " of " + gone["participant_id"] + " on "
               + gone["date"].dt.strftime("%Y-%m-%d") + where
               + " was submitted before and is missing from this submission; a withdrawal is a"
               + " restatement: send the row again, or correct it as the contract provides (true-up)")
    out = gone.assign(code=WITHDRAWN, severity=severity, message=message)
    return out[list(_empty_withdrawn().columns)].astype(
        {"participant_id": "str", "metric": "str", "code": "str", "severity": "str", "message": "str"})


def _empty_failures() -> pd.DataFrame:
    return pd.DataFrame({
        "row": pd.Series([], dtype="Int64"), "source": pd.Series([], dtype="str"),
        "column": pd.Series([], dtype="str"), "value": pd.Series([], dtype="str"),
        "check": pd.Series([], dtype="str"), "code": pd.Series([], dtype="str"),
        "severity": pd.Series([], dtype="str"), "message": pd.Series([], dtype="str"),
    })


@dataclass(frozen=True, repr=False, eq=False)
class ValidationResult:
    """What :func:`validate` found: accepted and quarantined rows, every failure, the hold.

    Row numbers (``row``) count the submission's rows from 1; ``source`` is the file and
    line (or row) each came from.
    """

    contract_id: str
    contract_version: int
    rows: int
    accepted: pd.DataFrame
    """Accepted rows in the measured-data format: typed columns, pseudonymised
    ``participant_id``, outcome rows carrying their enrolment's cohort, group and
    attributes; plus ``row`` (input row number) and ``flags`` (warning codes, ``;``-joined)."""
    quarantined: pd.DataFrame
    """Rejected rows: ``row``, ``source``, ``reason`` (the first critical code),
    ``reasons`` (every code), ``message``, then the measured-data columns as submitted
    (``participant_id`` pseudonymised)."""
    failures: pd.DataFrame
    """One line per failed check of a row: ``row``, ``source``, ``column``, ``value``,
    ``check``, ``code``, ``severity``, ``message``.  ``row`` is empty for a failure of the
    submission as a whole."""
    checks: pd.DataFrame
    """Every check run: ``check``, ``code``, ``engine``, ``severity``, ``description``, ``failed``."""
    hold: bool
    hold_reasons: tuple[str, ...]
    tolerance: Decimal
    key_id: str
    """Fingerprint of the pseudonymisation key."""
    sources: tuple[str, ...]
    withdrawn: pd.DataFrame = field(default_factory=lambda: _empty_withdrawn())
    """Rows of the previous submission (``previous``) missing from this one, by participant,
    metric and date: ``previous_row`` (its row number there, if known), ``participant_id``
    (pseudonymised), ``metric``, ``date``, ``value``, ``code`` (``withdrawn_row``),
    ``severity`` (that of ``restated_row`` in the contract) and ``message``.  They are not
    input rows, so they are neither accepted nor quarantined; if critical, the submission
    is on hold."""
    previous_rows: int = 0
    """Rows of the previous submission compared with (0 without one)."""
    timings: Mapping[str, float] = field(default_factory=dict)
    """Seconds: ``total``; ``great_expectations``, the time inside great-expectations'
    validation of the suites (:meth:`_Gx.validate`: it gets the batch -- fingerprinting the
    frame once -- and evaluates every expectation); ``overhead``, the rest (parsing,
    deriving, building the frames and suites, reading results back, reporting, and
    waiting for the pseudonyms); ``step_<stage>`` for each stage (``parse``,
    ``pseudonymise``, ``derive``, ``compact``, ``great_expectations``, ``gx_results``,
    ``pseudonymise_wait``, ``map_failures``, ``restatements``, ``assemble``, ...);
    ``cpu_total``, ``cpu_great_expectations`` and ``cpu_step_<stage>``, the same in CPU
    time of this process (a worker process's is not included); and
    ``pseudonymised_in_worker``, 1.0 when the identifiers were hashed in a worker process
    while the checks ran (see :meth:`PseudonymKey.start_pseudonym_array`), else 0.0."""

    @property
    def n_accepted(self) -> int:
        return len(self.accepted)

    @property
    def n_quarantined(self) -> int:
        return len(self.quarantined)

    @property
    def n_withdrawn(self) -> int:
        """Rows of the previous submission missing from this one (see :attr:`withdrawn`)."""
        return len(self.withdrawn)

    @property
    def n_flagged(self) -> int:
        return int((self.accepted["flags"] != "").sum()) if len(self.accepted) else 0

    @property
    def reasons(self) -> dict[str, int]:
        """Code -> number of rows failing it (a submission-level failure counts once)."""
        f = self.failures
        if not len(f):
            return {}
        key = f["row"].astype("float64").fillna(-1)
        counts = pd.DataFrame({"code": f["code"], "row": key}).drop_duplicates().groupby("code").size()
        order = {c: i for i, c in enumerate(measured.REASON_ORDER)}
        return {str(k): int(v) for k, v in sorted(counts.items(), key=lambda kv: order.get(str(kv[0]), 99))}

    def summary(self) -> pd.DataFrame:
        """One line per reason code found: severity, rows, share of the submission, and an
        example message; withdrawn rows of the previous submission (``withdrawn_row``) last,
        their share being of the previous submission's rows."""
        reasons = self.reasons
        rows = []
        f = self.failures
        for code, count in reasons.items():
            sub = f[f["code"] == code]
            rows.append({
                "code": code,
                "severity": str(sub["severity"].iloc[0]),
                "rows": count,
                "share": count / self.rows if self.rows else 1.0,
                "example": f"{sub['source'].iloc[0]}: {sub['message'].iloc[0]}" if len(sub) else "",
            })
        if len(self.withdrawn):
            w = self.withdrawn.iloc[0]
            rows.append({
                "code": WITHDRAWN,
                "severity": str(w["severity"]),
                "rows": len(self.withdrawn),
                "share": len(self.withdrawn) / self.previous_rows if self.previous_rows else 1.0,
                "example": f"previous submission: {w['message']}",
            })
        frame = pd.DataFrame(rows, columns=["code", "severity", "rows", "share", "example"])
        return frame.set_index("code")

    def explain(self, row: int) -> str:
        """Why input row ``row`` (counted from 1) was accepted, flagged or quarantined."""
        f = self.failures[self.failures["row"] == row]
        if not len(f):
            return f"row {row}: accepted, every check passed"
        state = "quarantined" if (f["severity"] == "critical").any() else "accepted with warnings"
        lines = [f"row {row} ({f['source'].iloc[0]}): {state}"]
        for r in f.itertuples(index=False):
            lines.append(f"  {r.code} [{r.severity}] {r.column}={r.value!s}: {r.message}")
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        """The result as plain JSON data (what ``sib validate --json`` prints)."""
        return {
            "contract": {"id": self.contract_id, "version": self.contract_version},
            "sources": list(self.sources),
            "rows": self.rows,
            "accepted": self.n_accepted,
            "flagged": self.n_flagged,
            "quarantined": self.n_quarantined,
            "reasons": self.reasons,
            "withdrawn": self.n_withdrawn,
            "withdrawn_rows": [
                {"previous_row": None if pd.isna(r.previous_row) else int(r.previous_row),
                 "participant_id": str(r.participant_id), "metric": str(r.metric),
                 "date": None if pd.isna(r.date) else pd.Timestamp(r.date).date().isoformat(),
                 "value": None if pd.isna(r.value) else float(r.value),
                 "code": str(r.code), "severity": str(r.severity)}
                for r in self.withdrawn.itertuples(index=False)
            ],
            "hold": self.hold,
            "hold_reasons": list(self.hold_reasons),
            "tolerance": str(self.tolerance),
            "pseudonym_key_id": self.key_id,
        }

    def __repr__(self) -> str:
        hold = ", HOLD" if self.hold else ""
        gone = f", {self.n_withdrawn} withdrawn" if self.n_withdrawn else ""
        return (f"<ValidationResult {self.contract_id} v{self.contract_version}: {self.rows} rows,"
                f" {self.n_accepted} accepted ({self.n_flagged} flagged),"
                f" {self.n_quarantined} quarantined{gone}{hold}>")

    def _repr_html_(self) -> str:
        state = ("<b style='color:#b00'>payment hold</b>: " + html.escape("; ".join(self.hold_reasons))
                 if self.hold else "<b style='color:#070'>no hold</b>")
        head = (f"<p><b>Validation of {html.escape(self.contract_id)} v{self.contract_version}</b>: "
                f"{self.rows} rows, {self.n_accepted} accepted ({self.n_flagged} flagged), "
                f"{self.n_quarantined} quarantined"
                + (f", {self.n_withdrawn} rows of the previous submission withdrawn" if self.n_withdrawn else "")
                + f"; {state}</p>")
        summ = self.summary()
        table = summ.to_html(float_format=lambda x: f"{x:.1%}") if len(summ) else "<p>Every check passed.</p>"
        return head + table


def validation_json(result: ValidationResult) -> dict[str, Any]:
    """``result.to_json()``: the JSON the CLI prints."""
    return result.to_json()


# ------------------------------------------------------------------------ validate ---


def _severity(contract: Contract, code: str) -> str:
    if code in measured.STRUCTURAL_CODES or code == "empty_submission":
        return "critical"
    return contract.data_quality.severity.get(code, "critical")


def validate(
    contract: Contract,
    data: RawOutcomes | pd.DataFrame | str | Path,
    *,
    previous: "ValidationResult | pd.DataFrame | None" = None,
    key: PseudonymKey | None = None,
) -> ValidationResult:
    """Check measured ``data`` against ``contract``; see the module's docstring.

    ``data`` is what :func:`sib_engine.outcome_io.read_outcomes` returns, a data frame in
    the measured-data format, or the path of a file or folder.  ``previous`` is an earlier
    submission's result (or its ``accepted`` frame): a row for the same participant, metric
    and date with another value is quarantined as ``restated_row``.  ``key`` is the
    pseudonymisation key (by default from the environment, see :mod:`sib_engine.privacy`).
    """
    if key is None:
        key = PseudonymKey.from_environment()
    t_start, cpu_start = time.perf_counter(), time.process_time()
    if isinstance(data, RawOutcomes):
        raw = data
    elif isinstance(data, pd.DataFrame):
        raw = RawOutcomes.from_frame(data)
    else:
        raw = read_outcomes(data)
    n = raw.rows
    failures = Failures()
    engine_of: dict[str, str] = {}
    check_rows: list[dict[str, Any]] = []

    def own(check: str, code: str, description: str) -> None:
        engine_of[check] = "sib-engine"
        check_rows.append({"check": check, "code": code, "engine": "sib-engine", "description": description})

    # 1. what the reader found
    own("reader", "bad_encoding", "every line is UTF-8 text")
    own("reader_fields", "malformed_row", "every line has as many fields as the header")
    rp = raw.row_problems
    for code, check in (("bad_encoding", "reader"), ("malformed_row", "reader_fields")):
        sub = rp[rp["code"] == code]
        if len(sub):
            failures.add(sub["pos"].to_numpy(), sub["column"].iloc[0] or "(line)", sub["value"], check, code,
                         sub["message"])

    # 2. the structure of each file (the columns the terms need on any date)
    regimes = _regimes(contract)
    required = tuple(c for c in measured.COLUMN_NAMES
                     if any(c in measured.required_columns(r.terms) for r in regimes))
    own("columns", "missing_column", "every required column is present: " + ", ".join(required))
    own("separator", "wrong_delimiter", "columns are separated by ',' or ';'")
    structure_failed = np.zeros(n, dtype=bool)
    for f in raw.files:
        rows = np.arange(f.first, f.first + f.rows, dtype=np.int64)
        if f.problem is not None:
            failures.add(rows, "(header)", "", "separator", f.problem[0], f"{Path(f.name).name}: {f.problem[1]}")
            structure_failed[rows] = True
            continue
        missing = [c for c in required if c not in f.columns]
        if missing and f.rows:
            import difflib

            hints = []
            for m in missing:
                close = difflib.get_close_matches(m, [c for c in f.columns if c not in measured.COLUMN_NAMES], n=1)
                hints.append(f"'{m}'" + (f" (is '{close[0]}' meant?)" if close else ""))
            failures.add(rows, missing[0], "", "columns", "missing_column",
                         f"{Path(f.name).name} has no column {', '.join(hints)}")
            structure_failed[rows] = True

    frame = raw.frame
    for name in required:
        if name not in frame.columns:
            frame = frame.assign(**{name: pd.Series(pd.NA, index=frame.index, dtype="str")})

    laps: dict[str, float] = {}
    cpu_laps: dict[str, float] = {}
    lap, cpu_lap = time.perf_counter(), time.process_time()

    def mark(name: str) -> None:
        nonlocal lap, cpu_lap
        now, cpu_now = time.perf_counter(), time.process_time()
        laps[name] = laps.get(name, 0.0) + now - lap
        cpu_laps[name] = cpu_laps.get(name, 0.0) + cpu_now - cpu_lap
        lap, cpu_lap = now, cpu_now

    mark("read_and_structure")
    # 3. types
    own("types", "wrong_type", "numbers and whole numbers parse")
    own("dates", "unparseable_date", "dates parse (YYYY-MM-DD, or DD-MM-YYYY in a ';' file)")
    typed = measured.parse(frame, raw.decimal_comma, failures)
    for name in ("cohort", "group", "municipality", "contract_id", "metric", "participant_id"):
        if name not in typed:
            typed[name] = _blank(typed.index)

    mark("parse")
    # 4. pseudonyms: each distinct identifier is hashed once, in a worker process (for
    # many identifiers) while the checks below run; collected before anything is reported
    codes, uniques = _participants(typed["participant_id"])
    job = key.start_pseudonym_array(*_packed_utf8(uniques), distinct=True)
    try:
        pid = codes.astype(np.int64)

        mark("pseudonymise")
        # 5. the checks generated from the contract, run by great-expectations: each row
        # against the terms in force on its date (contract.at(date)); terms that differ only
        # in what validation does not read (prices, ...) are one regime
        is_enr = measured.enrolment_rows(typed["metric"])
        links = measured.link(typed, pid, is_enr)
        is_out = typed["metric"].notna().to_numpy(dtype=bool) & ~is_enr
        in_regime = _regime_of_rows(regimes, typed["date"])
        gx = _Gx.get()
        found: list[tuple[_Regime, Check, np.ndarray, dict[str, pd.Series]]] = []
        across_done = False
        for k, regime in enumerate(regimes):
            mine = None if in_regime is None else in_regime == k
            if mine is not None and not mine.any():
                continue
            checks = regime.checks
            cf = measured.check_frame(regime.terms, typed, pid, links, is_enr,
                                      {col for c in checks for col in c.columns})
            for c in checks:
                for col in c.columns:
                    if col not in cf:
                        cf[col] = _blank(typed.index)
            failing: dict[str, np.ndarray] = {c.id: np.zeros(0, np.int64) for c in checks}
            runs: list[tuple[tuple[Check, ...], np.ndarray | None]] = []
            for where, where_mask in (("all", None), ("enrolment", is_enr), ("outcome", is_out)):
                group = tuple(c for c in checks if c.where == where and (mine is None or c.id not in _ACROSS))
                runs.append((group, where_mask if mine is None else
                             (mine if where_mask is None else mine & where_mask)))
            if mine is not None and not across_done:
                # a check across rows (uniqueness) sees every row, whatever its terms
                runs.append((tuple(c for c in checks if c.id in _ACROSS), is_enr))
                across_done = True
            for group, mask in runs:
                if not group or not n or (mask is not None and not mask.any()):
                    continue
                mark("derive")
                sub = _compact(cf, group, n, None if mask is None else np.flatnonzero(mask))
                suite = gx.suite(group)
                mark("compact")
                result = gx.validate(sub, suite)
                mark("great_expectations")
                failing.update(gx.failing_rows(result, group))
                del result, sub
                mark("gx_results")
            for c in checks:
                rows = failing[c.id]
                if c.id == "participant_unique":
                    rows = rows[~links.first_enrolment[rows]]
                if rows.size:
                    found.append((regime, c, rows, cf))
            del cf
        pseudonym = measured.categorical(codes, _pseudonym_index(job.result()), typed.index)
        in_worker = job.background
    finally:
        job.close()
    del codes
    mark("pseudonymise_wait")
    described: dict[str, int] = {}
    for regime in regimes:
        for c in regime.checks:
            if c.id in described:
                row = check_rows[described[c.id]]
                if c.description not in row["description"]:
                    row["description"] += f"; from {regime.start}: {c.description}"
                continue
            engine_of[c.id] = "great_expectations"
            described[c.id] = len(check_rows)
            check_rows.append({"check": c.id, "code": c.code, "engine": "great_expectations",
                               "description": c.description})
    for regime, c, rows, cf in found:
        report = c.report
        shown = typed[report].iloc[rows] if report in typed else _at(cf[c.columns[0]], rows)
        if report == "participant_id":
            shown = pseudonym.iloc[rows]
        messages = _messages(c, cf, rows, shown)
        if c.id in regime.notes:
            messages = messages + regime.notes[c.id]
        failures.add(rows, report, shown, c.id, c.code, messages)
    del found

    mark("map_failures")
    # 6. restatements of an earlier submission
    own("restatement", "restated_row", "a row already submitted keeps its value (corrections are true-ups)")
    if previous is not None and n:
        prev = previous.accepted if isinstance(previous, ValidationResult) else previous
        current = pd.DataFrame({"participant_id": pseudonym, "metric": typed["metric"],
                                "date": typed["date"], "value": typed["value"]})
        pos, old, old_row = measured.restated(current, prev)
        if pos.size:
            new = measured._show(typed["value"].iloc[pos].reset_index(drop=True))
            oldv = measured._show(pd.Series(old))
            where = pd.Series(np.where(old_row > 0, " (row " + old_row.astype(str).astype(object) + " there)", ""))
            failures.add(pos, "value", typed["value"].iloc[pos], "restatement", "restated_row",
                         "value " + new + " differs from the " + oldv + " submitted before" + where
                         + "; a correction is a true-up, not a silent change")

    # ... and rows of the earlier submission missing from this one (not input rows: reported
    # apart, with the severity the contract gives restatements)
    own("withdrawal", WITHDRAWN, "every row of the previous submission is still there (a withdrawal is a"
        " restatement: it follows the severity of restated_row)")
    withdrawn_severity = _severity(contract, "restated_row")
    withdrawn, previous_rows = _empty_withdrawn(), 0
    if previous is not None:
        prev = previous.accepted if isinstance(previous, ValidationResult) else previous
        previous_rows = len(prev)
        current_keys = pd.DataFrame({"participant_id": pseudonym, "metric": typed["metric"], "date": typed["date"]})
        withdrawn = _withdrawn(current_keys, prev, withdrawn_severity)

    mark("restatements")
    # 7. severity, structure first, then rows of quarantined enrolments
    own("enrolment_accepted", "unknown_participant", "an outcome row's enrolment row is itself accepted")
    fails = failures.frame()
    if structure_failed.any():
        # a file with a structure problem: only that reason for its rows
        keep = ~structure_failed[fails["row"].to_numpy()] | fails["code"].isin(_STRUCTURE).to_numpy()
        fails = fails[keep]
    sev_map = {code: _severity(contract, code) for code in set(fails["code"]) | set(CHECK_CODES)}
    severity = fails["code"].map(sev_map).astype("str")
    fails = fails.assign(severity=severity)
    critical_rows = np.zeros(n, dtype=bool)
    critical_rows[fails.loc[severity == "critical", "row"].to_numpy()] = True
    er = links.enrolment_row
    orphan = (~is_enr) & (er >= 0) & ~critical_rows
    orphan &= critical_rows[np.maximum(er, 0)]
    if orphan.any():
        rows = np.flatnonzero(orphan)
        enr_codes = fails[fails["severity"] == "critical"].drop_duplicates("row").set_index("row")["code"]
        their = enr_codes.reindex(er[rows]).fillna("").to_numpy(dtype=object)
        extra = Failures()
        extra.add(rows, "participant_id", pseudonym.iloc[rows], "enrolment_accepted", "unknown_participant",
                  pd.Series("the participant's enrolment (row " + (er[rows] + 1).astype(str).astype(object)
                            + ") was quarantined: " + their))
        ef = extra.frame()
        ef = ef.assign(severity=_severity(contract, "unknown_participant"))
        fails = pd.concat([fails, ef], ignore_index=True)
        if _severity(contract, "unknown_participant") == "critical":
            critical_rows[rows] = True

    # 8. assemble
    order = {c: i for i, c in enumerate(measured.REASON_ORDER)}
    fails = fails.assign(_o=fails["code"].map(order).fillna(99)).sort_values(["row", "_o"], kind="stable")
    fails = fails.drop(columns="_o").reset_index(drop=True)
    positions = fails["row"].to_numpy(dtype=np.int64)
    fails.insert(1, "source", raw.sources(positions))
    fails["row"] = (positions + 1).astype("int64")
    fails = fails[["row", "source", "column", "value", "check", "code", "severity", "message"]]
    fails["row"] = fails["row"].astype("Int64")

    q_pos = np.flatnonzero(critical_rows)
    accepted = _accepted(typed, pseudonym, links, critical_rows, fails, is_enr)
    quarantined = _quarantined(frame, pseudonym, raw, q_pos, fails)

    hold_reasons: list[str] = []
    tol = contract.data_quality.tolerance
    if n == 0:
        sub = _empty_failures()
        sub.loc[0] = [pd.NA, ", ".join(f.name for f in raw.files) or "(no files)", "", "", "rows",
                      "empty_submission", "critical", "the submission has no data rows"]
        fails = pd.concat([sub, fails], ignore_index=True) if len(fails) else sub
        hold_reasons.append("the submission has no data rows")
        check_rows.append({"check": "rows", "code": "empty_submission", "engine": "sib-engine",
                           "description": "the submission has data rows"})
    if structure_failed.any():
        bad = sorted({Path(f.name).name for f in raw.files if structure_failed[f.first:f.first + f.rows].any()})
        hold_reasons.append(f"structure problem (missing column or wrong separator) in {', '.join(bad)}")
    if len(withdrawn) and withdrawn_severity == "critical":
        first = withdrawn.iloc[0]
        there = "" if pd.isna(first["previous_row"]) else f", row {int(first['previous_row'])} there"
        hold_reasons.append(
            f"{len(withdrawn)} row{'s' if len(withdrawn) != 1 else ''} of the previous submission"
            f" {'are' if len(withdrawn) != 1 else 'is'} missing from this one ({WITHDRAWN}, e.g. {first['metric']}"
            f" of {first['participant_id']} on {pd.Timestamp(first['date']).date().isoformat()}{there});"
            " a withdrawal is a restatement, and restatements are critical under this contract"
            + (f" [{contract.data_quality.clause}]" if contract.data_quality.clause else ""))
    if n and len(q_pos) / n > float(tol):
        top = fails[fails["severity"] == "critical"].drop_duplicates("row")["code"].value_counts()
        hold_reasons.append(
            f"{len(q_pos)} of {n} rows quarantined ({len(q_pos) / n:.1%}), above the tolerance of"
            f" {float(tol):.1%}" + (f" [{contract.data_quality.clause}]" if contract.data_quality.clause else "")
            + "; mostly " + ", ".join(f"{k} ({v})" for k, v in top.head(3).items()))

    checks_frame = pd.DataFrame(check_rows)
    failed_by = fails.dropna(subset=["row"]).drop_duplicates(["check", "row"]).groupby("check").size()
    checks_frame["severity"] = checks_frame["code"].map(lambda c: _severity(contract, str(c)))
    checks_frame["failed"] = checks_frame["check"].map(failed_by).fillna(0).astype("int64")
    checks_frame.loc[checks_frame["check"] == "withdrawal", ["severity", "failed"]] = [withdrawn_severity,
                                                                                       len(withdrawn)]
    checks_frame = checks_frame[["check", "code", "engine", "severity", "description", "failed"]]

    mark("assemble")
    total = time.perf_counter() - t_start
    gx_seconds = laps.get("great_expectations", 0.0)
    assert len(accepted) + len(quarantined) == n, "rows in must equal accepted + quarantined"
    return ValidationResult(
        contract_id=contract.id,
        contract_version=contract.version,
        rows=n,
        accepted=accepted,
        quarantined=quarantined,
        failures=fails.reset_index(drop=True),
        checks=checks_frame,
        hold=bool(hold_reasons),
        hold_reasons=tuple(hold_reasons),
        tolerance=tol,
        key_id=key.id,
        sources=tuple(f.name for f in raw.files),
        withdrawn=withdrawn,
        previous_rows=previous_rows,
        timings={"total": total, "great_expectations": gx_seconds, "overhead": total - gx_seconds,
                 "pseudonymised_in_worker": float(in_worker),
                 **{f"step_{k}": v for k, v in laps.items()},
                 "cpu_total": time.process_time() - cpu_start,
                 "cpu_great_expectations": cpu_laps.get("great_expectations", 0.0),
                 **{f"cpu_step_{k}": v for k, v in cpu_laps.items()}},
    )


# ------------------------------------------------------------------ terms by date ---


_ACROSS = frozenset({"participant_unique"})
"""Checks of a relation between rows (not of each row): with several regimes they run once,
over every row (what they read does not depend on the terms)."""


@dataclass(frozen=True)
class _Regime:
    """The terms validation reads, in force from ``start`` (``None``: as signed) until the
    next regime's start."""

    start: date | None
    terms: Contract
    checks: tuple[Check, ...]
    notes: Mapping[str, str]
    """Check id -> what is appended to its failure messages: the amendments that made the
    check differ from the contract as signed."""


def _plan(terms: Contract, signed: Contract) -> tuple[Check, ...]:
    """The checks of ``terms``, except that a cohort an amendment removed stays known: its
    rows are not bad data but rows the evaluation leaves out (``dropped_cohort``, stated in
    its notes), and a submission holding them is not put on hold for it."""
    checks = measured.plan_checks(terms)
    ids = [k.id for k in terms.timeline.cohorts]
    old = [k.id for k in signed.timeline.cohorts]
    known = old + [k for k in ids if k not in old]
    if known == ids:
        return checks
    out = []
    for c in checks:
        if c.id == "cohort_known":
            c = replace(c, value_set=tuple(known), message=(
                f"'{{value}}' is not a cohort of the contract (known: {', '.join(known)})"))
        out.append(c)
    return tuple(out)


def _check_inputs(terms: Contract, signed: Contract) -> dict[str, Any]:
    """Check id -> everything of ``terms`` its outcome depends on: the check itself (value
    sets, bounds, message) and the terms its derived columns are computed from."""
    def metrics(field: str) -> tuple[tuple[str, Any], ...]:
        return tuple((m.id, getattr(m, field)) for m in terms.metrics)

    cohorts = tuple((k.id, k.enrolment_start, k.enrolment_end) for k in terms.timeline.cohorts)
    pre = tuple(sorted(measured.pre_metrics(terms)))
    derived: dict[str, Any] = {
        "enrolment_opens": cohorts, "enrolment_closes": cohorts,
        "value_not_negative": metrics("type"), "event_value": metrics("type"), "binary_value": metrics("type"),
        "value_min": metrics("min_value"), "value_max": metrics("max_value"),
        "within_window": (metrics("window_months"), pre),
        "prerequisites_first": (measured.requirements(terms), pre),
        "claim_limit": (measured.claim_limits(terms), pre),
        "date_in_term": pre, "after_enrolment": pre,
    }
    return {c.id: (c, derived.get(c.id)) for c in _plan(terms, signed)}


def _regimes(contract: Contract) -> list[_Regime]:
    """The successive terms validation applies, by date: the contract as signed, then the
    terms in force from each amendment's effective date (``contract.at(date)``) where they
    change what validation checks.  Without amendments, just the contract."""
    if not contract.amendments:
        return [_Regime(None, contract, measured.plan_checks(contract), {})]
    signed = contract if contract.in_force_on is None else contract.at(date.min)
    base = _check_inputs(signed, signed)
    regimes = [_Regime(None, signed, measured.plan_checks(signed), {})]
    inputs, changed_by = base, dict[str, str]()
    for when in sorted({a.effective for a in contract.amendments}):
        terms = contract.at(when)
        now = _check_inputs(terms, signed)
        if now == inputs:
            continue  # nothing validation reads changed (e.g. a price)
        named = "; ".join(f"{a.id} ({a.clause})" for a in contract.amendments if a.effective == when)
        for cid in set(now) | set(inputs):
            if now.get(cid) != inputs.get(cid):
                changed_by[cid] = f" [terms as amended by {named}, in force from {when.isoformat()}]"
        notes = {cid: note for cid, note in changed_by.items() if now.get(cid) != base.get(cid)}
        regimes.append(_Regime(when, terms, _plan(terms, signed), notes))
        inputs = now
    return regimes


def _regime_of_rows(regimes: list[_Regime], dates: pd.Series) -> np.ndarray | None:
    """Per row, the place in ``regimes`` of the terms in force on its date (an undated row:
    the terms as signed); ``None`` when there is one regime."""
    if len(regimes) == 1:
        return None
    starts = np.array([np.datetime64(r.start, "ns") for r in regimes[1:]], dtype="datetime64[ns]")
    d = dates.to_numpy(dtype="datetime64[ns]")
    out: np.ndarray = np.searchsorted(starts, d, side="right")
    out[np.isnat(d)] = 0
    return out


def _blank(index: pd.Index) -> pd.Series:
    """A text column left empty (a column the submission does not have), as a category
    without categories: one byte a row, where text would need an offset a row."""
    return measured.categorical(np.full(len(index), -1, dtype=np.int8), pd.Index([], dtype="str"), index)


def _participants(ids: pd.Series) -> tuple[np.ndarray, pd.Index]:
    """Per row, an integer code of the participant (-1: none), and the distinct
    identifiers in order of first appearance (as ``pd.factorize`` gives them)."""
    codes, cats = measured.codes_of(ids)
    renumbered = measured.first_appearance(codes, len(cats))
    if renumbered is not None:
        codes, order = renumbered
        cats = cats.take(order)
    return codes, cats


def _packed_utf8(texts: pd.Index) -> tuple[Any, np.ndarray]:
    """The UTF-8 bytes of distinct, non-missing ``texts`` packed one after the other, and
    the offsets where each starts (and the last ends): Arrow-backed text is already held
    so, and is used in place; other text is encoded a chunk at a time."""
    arrow = getattr(texts.array, "__arrow_array__", None)
    if arrow is not None:
        import pyarrow as pa

        chunked = arrow()
        arr = chunked.combine_chunks() if isinstance(chunked, pa.ChunkedArray) else chunked
        if arr.null_count == 0 and (pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type)):
            kind = np.int64 if pa.types.is_large_string(arr.type) else np.int32
            buffers = arr.buffers()
            if buffers[2] is None:  # only empty texts
                return b"", np.zeros(len(arr) + 1, dtype=np.int64)
            offsets = np.frombuffer(buffers[1], dtype=kind, count=len(arr) + 1,
                                    offset=arr.offset * np.dtype(kind).itemsize)
            return buffers[2], offsets.astype(np.int64)
    step = 8192
    parts: list[bytes] = []
    lengths = np.zeros(len(texts) + 1, dtype=np.int64)
    for start in range(0, len(texts), step):
        encoded = list(map(str.encode, texts[start:start + step].astype("str").tolist()))
        lengths[start + 1:start + 1 + len(encoded)] = [len(e) for e in encoded]
        parts.append(b"".join(encoded))
    return b"".join(parts), np.cumsum(lengths)


def _pseudonym_index(names: np.ndarray) -> pd.Index:
    """Pseudonyms given as fixed-width bytes (:meth:`PseudonymKey.pseudonym_array`) as a
    text index (Arrow-backed, built straight on those bytes)."""
    import pyarrow as pa

    width = names.dtype.itemsize
    offsets = np.arange(0, (names.size + 1) * width, width, dtype=np.int64)
    arr = pa.Array.from_buffers(pa.large_string(), names.size, [None, pa.py_buffer(offsets), pa.py_buffer(names)])
    return pd.Index(arr, dtype="str")


def _compact(cf: Mapping[str, pd.Series], checks: tuple[Check, ...], n: int, rows: np.ndarray | None) -> pd.DataFrame:
    """The narrow frame great-expectations checks: only the columns ``checks`` read, only
    the ``rows`` they apply to (index: positions in the submission; ``None``: all ``n``
    rows), text as categories and presence-only columns (``*_text``) as a one-category
    categorical, so that its per-expectation copies stay cheap.  A column already holding
    just those rows is used as it is."""
    cols = list(dict.fromkeys(col for c in checks for col in c.columns))
    index = pd.RangeIndex(n) if rows is None else pd.Index(rows)
    out: dict[str, Any] = {}
    for col in cols:
        s = cf[col]
        if col.endswith("_text") and isinstance(s.index, pd.RangeIndex):
            present = s.notna().to_numpy()
            out[col] = measured.presence(present if rows is None else present[rows])
            continue
        values = _on_rows(s, rows, index)
        if col.endswith("_text"):
            values = measured.presence(np.asarray(pd.notna(values)))
        elif values.dtype == "str" or values.dtype == object:
            values = pd.Categorical(values)
        out[col] = values
    return pd.DataFrame(out, index=index, copy=False)


def _on_rows(s: pd.Series, rows: np.ndarray | None, index: pd.Index) -> Any:
    """The values of check-frame column ``s`` on ``rows`` (``None``: every row), as an array."""
    if isinstance(s.index, pd.RangeIndex):
        return s.array if rows is None else s.array.take(rows)
    if rows is not None and len(s) == rows.size and np.array_equal(s.index.to_numpy(), rows):
        return s.array
    return s.reindex(index).array  # a column holding other rows: empty on the rows it lacks


def _at(s: pd.Series, rows: np.ndarray) -> pd.Series:
    """The values of check-frame column ``s`` at positions ``rows`` (empty where it holds none)."""
    return s.iloc[rows] if isinstance(s.index, pd.RangeIndex) else s.reindex(rows)


def _messages(check: Check, cf: Mapping[str, pd.Series], rows: np.ndarray, shown: pd.Series) -> pd.Series:
    text = measured._show(shown.reset_index(drop=True))
    parts = check.message.split("{value}")
    msg = pd.Series(parts[0], index=text.index, dtype="str")
    for p in parts[1:]:
        msg = msg + text + p
    if "{other}" in check.message:
        other_col = _OTHER.get(check.id)
        if other_col is not None:
            other = measured._show(_at(cf[other_col], rows).reset_index(drop=True))
            other = other.where(other != measured.NEVER.strftime("%Y-%m-%d"), "never")
            pieces = msg.str.split("{other}", n=1, regex=False)
            msg = pieces.str[0] + other + pieces.str[1]
    return msg


_OTHER = {
    "value_min": "value_min",
    "value_max": "value_max",
    "enrolment_opens": "cohort_open",
    "enrolment_closes": "cohort_close",
    "after_enrolment": "enrol_date",
    "within_window": "window_end",
    "prerequisites_first": "prereq_date",
    "claim_limit": "claim_no",
}


def _flags(fails: pd.DataFrame, positions: np.ndarray, n: int) -> pd.Series:
    warn = fails[(fails["severity"] == "warning") & fails["row"].notna()]
    if not len(warn):  # no flags: one category, one byte a row
        return measured.categorical(np.zeros(len(positions), dtype=np.int8), pd.Index([""], dtype="str"),
                                    pd.RangeIndex(len(positions)))
    out = pd.Series("", index=pd.RangeIndex(n), dtype="str")
    g = warn.drop_duplicates(["row", "code"]).groupby(warn["row"].astype("int64") - 1)["code"].agg(";".join)
    out.loc[g.index] = g.to_numpy()
    return out.iloc[positions].reset_index(drop=True)


def _accepted(
    typed: pd.DataFrame, pseudonym: pd.Series, links: measured.Links, critical: np.ndarray,
    fails: pd.DataFrame, is_enr: np.ndarray,
) -> pd.DataFrame:
    pos = np.flatnonzero(~critical)
    every = pos.size == len(critical)  # nothing quarantined: the columns are taken whole
    n = len(typed)
    src: np.ndarray | None = None
    last: tuple[np.ndarray, np.ndarray] | None = None

    def take(col: pd.Series, rows: np.ndarray | None) -> pd.Series:
        return col.reset_index(drop=True) if rows is None else col.iloc[rows].reset_index(drop=True)

    cols: dict[str, Any] = {}
    for name in measured.COLUMN_NAMES:
        if name == "participant_id":
            cols[name] = take(pseudonym, None if every else pos)
            continue
        if name not in typed:
            if name == "group":
                cols[name] = pd.Series(TREATMENT, index=range(len(pos)), dtype="str")
            continue
        col = typed[name]
        if name in ("cohort", "group", "municipality", "age", "prior_months"):
            # the row's own value, else (outcome rows) its enrolment row's: one take
            missing = col.isna().to_numpy(dtype=bool)
            if not missing.any() or missing.all():
                own = take(col, None if every else pos)
            else:
                if src is None:  # each accepted row's enrolment row (itself if none)
                    er = links.enrolment_row[pos]
                    src = np.where(er >= 0, er, pos)
                if last is None or not np.array_equal(missing, last[0]):
                    last = (missing, np.where(missing[pos], src, pos))  # the same for most columns
                own = take(col, last[1])
        else:
            own = take(col, None if every else pos)
        if name == "group":
            if own.dtype == "str" and len(own) and bool(own.isna().all()):
                own = pd.Series(TREATMENT, index=own.index, dtype="str")
            else:
                if isinstance(own.dtype, pd.CategoricalDtype) and TREATMENT not in own.cat.categories:
                    own = own.cat.add_categories([TREATMENT])  # a blank group means treatment
                own = own.fillna(TREATMENT)
        if name in ("contract_version", "age", "prior_months"):
            own = own.astype("Int64")
        cols[name] = own
    out = pd.DataFrame(cols, copy=False)
    out["row"] = pos + 1
    out["flags"] = _flags(fails, pos, n)
    return out


def _quarantined(
    frame: pd.DataFrame, pseudonym: pd.Series, raw: RawOutcomes, q_pos: np.ndarray, fails: pd.DataFrame,
) -> pd.DataFrame:
    crit = fails[(fails["severity"] == "critical") & fails["row"].notna()]
    by_row = crit.groupby(crit["row"].astype("int64") - 1, sort=False)
    first = by_row.first()
    allc = crit.drop_duplicates(["row", "code"]).groupby(crit["row"].astype("int64") - 1)["code"].agg(";".join) \
        if len(crit) else pd.Series(dtype="str")
    out = pd.DataFrame({
        "row": (q_pos + 1).astype("int64"),
        "source": raw.sources(q_pos).to_numpy(),
        "reason": first["code"].reindex(q_pos).to_numpy(),
        "reasons": allc.reindex(q_pos).to_numpy(),
        "message": first["message"].reindex(q_pos).to_numpy(),
    })
    for name in measured.COLUMN_NAMES:
        if name == "participant_id":
            out[name] = pseudonym.iloc[q_pos].to_numpy()
        elif name in frame.columns:
            out[name] = measured.as_text(frame[name].iloc[q_pos].reset_index(drop=True)).to_numpy()
    return out.astype({c: "str" for c in out.columns if c != "row"})


def result_to_json_text(result: ValidationResult) -> str:
    """The JSON of :meth:`ValidationResult.to_json`, as text."""
    return json.dumps(result.to_json(), indent=2, default=str)

