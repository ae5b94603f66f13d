"""Metrics from validated measured data (layer 2: pure computation).

The input is the accepted table of the measured-data format (``docs/measured-data.md``):
one long table with enrolment rows (``metric == "enrolment"``) and outcome rows.  It is
assumed validated; this module only types it, indexes it once (:func:`prepare`), and
computes, with numpy group-bys rather than per-row Python:

* per participant, the value of a metric over its attribution window up to a cutoff
  (:func:`participant_values`): ``event``/``count``/``duration`` sum the values,
  ``binary`` is 1 if any record is 1, ``continuous`` is the latest measurement;
* per cohort, group and measurement period, the counts, sums, rates, means and
  participant-periods a commissioner reads (:func:`metric_table`).

Rules (the same everywhere):

* an outcome counts only on or after the participant's enrolment date, and, when the
  metric has ``window_months``, up to and including the same day that many months later
  (a 12-month window from 2024-01-15 ends on 2025-01-15, as the validator checks it); an
  expected-duration horizon of ``horizon_days`` likewise ends on, and includes, the day
  that many days after enrolment (365 days from 2024-01-15 end on 2025-01-14): a duration
  measured over the horizon is dated at its end; a baseline's ``pre_metric`` is exempt
  from both, since it is measured before enrolment;
* participants outside the contract's eligibility (age, prior months) are left out, and
  so is a participant whose age or prior months is missing when eligibility needs it;
  their number is reported (``MeasuredData.notes``), never silently dropped;
* ``group`` is ``treatment`` when empty; comparison participants are never paid;
* outcome rows of a participant without an enrolment row are left out and counted.

Dates are held as whole days since 1970-01-01 (``int64``) so that windows and cutoffs
are integer comparisons.  Values (``Decimal`` or float in the accepted table) are held as
float64: exact for counts and for decimals of up to 15 significant digits.  Money is never
computed from them directly: events are counted as integers, and statistics become
``Decimal`` at 12 significant digits in one place (:func:`sib_engine.stats.to_decimal`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any, Mapping

import numpy as np
import pandas as pd

from sib_engine.contract import Contract, Metric
from sib_engine.errors import SibError
from sib_engine.periods import Period

ENROLMENT = "enrolment"
TREATMENT = "treatment"
REQUIRED_COLUMNS = ("participant_id", "metric", "date")
EPOCH = date(1970, 1, 1)


class EvaluationError(SibError):
    """The measured data cannot be evaluated against the contract (says how to fix it)."""


def day_of(d: date) -> int:
    """Whole days since 1970-01-01."""
    return (d - EPOCH).days


def date_of(day: int) -> date:
    return EPOCH + timedelta(days=int(day))


@dataclass(frozen=True, eq=False)
class OutcomeRows:
    """The outcome records of one metric, sorted by date."""

    pcode: np.ndarray
    """Participant number (row of ``MeasuredData.participants``), int64."""
    day: np.ndarray
    """Date of the record, days since 1970-01-01, int64, non-decreasing."""
    value: np.ndarray
    """The recorded value, float64."""

    def __len__(self) -> int:
        return len(self.day)

    def upto(self, cutoff_day: int) -> "OutcomeRows":
        """The records dated on or before ``cutoff_day``."""
        k = int(np.searchsorted(self.day, cutoff_day, side="right"))
        return OutcomeRows(self.pcode[:k], self.day[:k], self.value[:k])


_EMPTY = OutcomeRows(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, float))


@dataclass(frozen=True, eq=False)
class MeasuredData:
    """Validated measured data, typed and indexed for computation.

    ``participants`` has one row per enrolled participant (row number = participant
    number ``pcode``) with columns ``participant_id``, ``cohort``, ``group``,
    ``enrol_day``, ``municipality``, ``age``, ``prior_months`` and ``eligible``.
    """

    participants: pd.DataFrame
    outcomes: Mapping[str, OutcomeRows]
    notes: tuple[str, ...] = ()
    _windows: dict[tuple[str, int | None], np.ndarray] = field(default_factory=dict, repr=False)
    _columns: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    _masks: dict[tuple[str, tuple[str, ...]], np.ndarray] = field(default_factory=dict, repr=False)

    @property
    def size(self) -> int:
        return len(self.participants)

    def rows(self, metric: str) -> OutcomeRows:
        return self.outcomes.get(metric, _EMPTY)

    def column(self, name: str) -> np.ndarray:
        """A participants column as a numpy array (object for text), read once."""
        got = self._columns.get(name)
        if got is None:
            col = self.participants[name]
            got = np.asarray(col.to_numpy(dtype=object) if col.dtype.kind not in "biufM" else col.to_numpy())
            self._columns[name] = got
        return got

    @property
    def enrol_day(self) -> np.ndarray:
        return np.asarray(self.column("enrol_day"), dtype=np.int64)

    def in_cohorts(self, cohorts: frozenset[str]) -> np.ndarray:
        """Mask of the participants enrolled in one of ``cohorts``."""
        key = ("cohorts", tuple(sorted(cohorts)))
        got = self._masks.get(key)
        if got is None:
            got = np.isin(self.column("cohort"), list(cohorts))
            self._masks[key] = got
        return got

    def window_last(self, *, months: int | None = None, days: int | None = None) -> np.ndarray:
        """Per participant, the last day of a window from enrolment (included): the same day
        ``months`` later, or the day ``days`` days later."""
        key = ("m", months) if months is not None else ("d", int(days or 0))
        cached = self._windows.get(key)
        if cached is not None:
            return cached
        enrol = self.enrol_day
        if months is not None:
            out = add_months_days(enrol, months)
        else:
            out = enrol + int(days or 0)
        self._windows[key] = out
        return out


def lexsort(keys: tuple[np.ndarray, ...]) -> np.ndarray:
    """As :func:`numpy.lexsort` (the last key is the primary one), faster on integer keys:
    one stable sort per key, least significant first, as a 16-bit radix sort whenever the
    key's range fits."""
    if not keys or len(keys[0]) == 0:
        return np.zeros(0, dtype=np.int64)
    order = np.arange(len(keys[0]), dtype=np.int64)
    for key in keys:
        k = np.asarray(key)[order]
        lo, hi = (int(k.min()), int(k.max())) if len(k) else (0, 0)
        if hi - lo < 65536:
            k = (k - lo).astype(np.uint16)
        order = order[np.argsort(k, kind="stable")]
    return order


def add_months_days(days: np.ndarray, months: int) -> np.ndarray:
    """Vectorised :func:`sib_engine.periods.add_months` over day numbers."""
    d = days.astype("datetime64[D]")
    m = d.astype("datetime64[M]")
    dom = (d - m.astype("datetime64[D]")).astype(np.int64)
    target = m + np.timedelta64(months, "M")
    length = ((target + np.timedelta64(1, "M")).astype("datetime64[D]") - target.astype("datetime64[D]")).astype(np.int64)
    out = target.astype("datetime64[D]") + np.minimum(dom, length - 1).astype("timedelta64[D]")
    return np.asarray(out.astype(np.int64))


def frame_of(data: Any) -> pd.DataFrame:
    """The accepted table: a DataFrame, or the ``.accepted`` DataFrame of a validation result."""
    if isinstance(data, pd.DataFrame):
        return data
    accepted = getattr(data, "accepted", None)
    if isinstance(accepted, pd.DataFrame):
        return accepted
    raise EvaluationError(
        f"cannot evaluate a {type(data).__name__}: pass the validated data as a pandas "
        "DataFrame in the measured-data format, or the result of validation (its .accepted)"
    )


def _days(col: pd.Series) -> np.ndarray:
    if not pd.api.types.is_datetime64_any_dtype(col):
        col = pd.to_datetime(col)
    return np.asarray(col.to_numpy().astype("datetime64[D]").astype(np.int64))


def _text(col: pd.Series) -> pd.Series:
    return col.astype(object).where(col.notna(), None)


def prepare(data: Any, contract: Contract) -> MeasuredData:
    """Type and index the validated measured data for ``contract``."""
    frame = frame_of(data)
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise EvaluationError(
            f"the data lack the column{'s' if len(missing) > 1 else ''} {', '.join(missing)}; "
            "see docs/measured-data.md for the format (validate the data first)"
        )
    notes: list[str] = []
    if "contract_id" in frame.columns and len(frame):
        ids = {str(x) for x in frame["contract_id"].dropna().unique()}
        other = ids - {contract.id}
        if other:
            raise EvaluationError(
                f"the data are for contract {', '.join(sorted(map(str, other)))}, not '{contract.id}'; "
                "evaluate each contract with its own data"
            )
    mcodes, mnames_idx = pd.factorize(frame["metric"])
    mnames = [str(x) for x in mnames_idx]
    is_enrol = mcodes == (mnames.index(ENROLMENT) if ENROLMENT in mnames else -2)
    enrol_idx = np.flatnonzero(is_enrol)
    enrol = frame.iloc[enrol_idx]
    if "cohort" not in frame.columns and len(enrol):
        raise EvaluationError("enrolment rows need a 'cohort' column; see docs/measured-data.md")
    pid_codes, pid_names = pd.factorize(frame["participant_id"])
    pid_codes = np.asarray(pid_codes, dtype=np.int64)
    all_days = _days(frame["date"]) if len(frame) else np.zeros(0, np.int64)
    parts = pd.DataFrame(
        {
            "participant_id": np.asarray([str(x) for x in pid_names], dtype=object)[pid_codes[enrol_idx]]
            if len(enrol_idx) else np.zeros(0, dtype=object),
            "pid_code": pid_codes[enrol_idx],
            "cohort": _text(enrol["cohort"]).to_numpy() if "cohort" in enrol else None,
            "group": (
                _text(enrol["group"]).fillna(TREATMENT).to_numpy()
                if "group" in enrol.columns
                else np.full(len(enrol), TREATMENT, dtype=object)
            ),
            "enrol_day": all_days[enrol_idx],
            "municipality": _text(enrol["municipality"]).to_numpy() if "municipality" in enrol.columns else None,
            "age": pd.to_numeric(enrol["age"]).to_numpy(dtype=float) if "age" in enrol.columns else np.nan,
            "prior_months": (
                pd.to_numeric(enrol["prior_months"]).to_numpy(dtype=float)
                if "prior_months" in enrol.columns
                else np.nan
            ),
        }
    )
    parts = parts.sort_values(["enrol_day", "participant_id"], kind="stable")
    dup = parts["pid_code"].duplicated()
    if dup.any():
        notes.append(
            f"{int(dup.sum())} repeated enrolment row(s) ignored: each participant counts from their first enrolment"
        )
        parts = parts.loc[~dup]
    parts = parts.sort_values("participant_id", kind="stable").reset_index(drop=True)
    parts["eligible"] = _eligible(parts, contract)
    n_inel = int((~parts["eligible"]).sum())
    if n_inel:
        notes.append(f"{n_inel} participant(s) outside the contract's eligibility left out of every figure")
    to_pcode = np.full(len(pid_names) + 1, -1, dtype=np.int64)
    to_pcode[parts["pid_code"].to_numpy(dtype=np.int64)] = np.arange(len(parts), dtype=np.int64)
    parts = parts.drop(columns=["pid_code"])

    out_idx = np.flatnonzero(~is_enrol)
    outcomes: dict[str, OutcomeRows] = {}
    if len(out_idx):
        if "value" not in frame.columns:
            raise EvaluationError("outcome rows need a 'value' column; see docs/measured-data.md")
        pcode = to_pcode[pid_codes[out_idx]]
        days = all_days[out_idx]
        col = frame["value"]
        values = (col.to_numpy(dtype=float) if pd.api.types.is_float_dtype(col) else
                  pd.to_numeric(col).to_numpy(dtype=float))[out_idx]
        values = np.where(np.isnan(values), 0.0, values)
        mc_all = mcodes[out_idx]
        known = pcode >= 0
        if not known.all():
            notes.append(f"{int((~known).sum())} outcome row(s) of participants without an enrolment row left out")
        order = lexsort((days, mc_all))
        order = order[known[order]]
        mc = mc_all[order]
        pc, dd, vv = pcode[order], days[order], values[order]
        bounds = np.searchsorted(mc, np.arange(len(mnames) + 1))
        for i, name in enumerate(mnames):
            s0, e0 = bounds[i], bounds[i + 1]
            if e0 > s0 and name != ENROLMENT:
                outcomes[name] = OutcomeRows(pc[s0:e0], dd[s0:e0], vv[s0:e0])
    return MeasuredData(parts, outcomes, tuple(notes))


def _eligible(parts: pd.DataFrame, contract: Contract) -> np.ndarray:
    ok = np.ones(len(parts), dtype=bool)
    e = contract.eligibility
    if e is None:
        return ok
    age = parts["age"].to_numpy(dtype=float)
    prior = parts["prior_months"].to_numpy(dtype=float)
    for arr, lo, hi in ((age, e.age_min, e.age_max), (prior, e.prior_months_min, e.prior_months_max)):
        if lo is None and hi is None:
            continue
        with np.errstate(invalid="ignore"):
            good = ~np.isnan(arr)
            if lo is not None:
                good &= arr >= lo
            if hi is not None:
                good &= arr <= hi
        ok &= good
    return ok


# ------------------------------------------------------------------ per participant ---


def participant_values(
    md: MeasuredData,
    metric: Metric,
    cutoff_day: int,
    *,
    pre: bool = False,
    horizon_days: int | None = None,
) -> np.ndarray:
    """Per participant (all of ``md.participants``), the metric's value from records dated
    on or before ``cutoff_day``, within the attribution window.

    ``event``, ``count``, ``duration``: the sum of the values (0 without records);
    ``binary``: 1.0 if any record is 1 (else 0.0); ``continuous``: the latest measurement
    (NaN without one).  ``pre=True`` reads a pre-enrolment measure (no window);
    ``horizon_days`` narrows the window to that many days from enrolment.
    """
    rows = md.rows(metric.id).upto(cutoff_day)
    pc, day, val = rows.pcode, rows.day, rows.value
    if not pre:
        enrol = md.enrol_day
        keep = day >= enrol[pc]
        if metric.window_months is not None:
            keep &= day <= md.window_last(months=metric.window_months)[pc]
        if horizon_days is not None:
            keep &= day <= md.window_last(days=horizon_days)[pc]
        pc, day, val = pc[keep], day[keep], val[keep]
    n = md.size
    if metric.type == "continuous":
        out = np.full(n, np.nan)
        if len(pc):
            rev_pc = pc[::-1]
            uniq, first = np.unique(rev_pc, return_index=True)
            out[uniq] = val[::-1][first]
        return out
    if metric.type == "binary":
        return (np.bincount(pc, weights=(val >= 1).astype(float), minlength=n) > 0).astype(float)
    return np.bincount(pc, weights=val, minlength=n).astype(float)


@dataclass(frozen=True, eq=False)
class Sample:
    """The values of one metric over a set of participants."""

    metric: str
    type: str
    values: np.ndarray
    """Per participant in the set (missing continuous measurements dropped)."""

    @property
    def n(self) -> int:
        return int(len(self.values))

    @property
    def total(self) -> float:
        return float(self.values.sum()) if self.n else 0.0

    @property
    def mean(self) -> float:
        return float(self.values.mean()) if self.n else float("nan")

    @property
    def sd(self) -> float:
        return float(self.values.std(ddof=1)) if self.n > 1 else float("nan")

    @property
    def se(self) -> float:
        """Standard error of the mean (binomial for a rate)."""
        if self.n == 0:
            return float("nan")
        if self.type == "binary":
            p = self.mean
            return float(np.sqrt(p * (1 - p) / self.n))
        return self.sd / float(np.sqrt(self.n)) if self.n > 1 else float("nan")


def sample(values: np.ndarray, mask: np.ndarray, metric: Metric) -> Sample:
    v = values[mask]
    if metric.type == "continuous":
        v = v[~np.isnan(v)]
    return Sample(metric.id, metric.type, v)


# ------------------------------------------------------------ per cohort and period ---


def metric_table(md: MeasuredData, contract: Contract, periods: tuple[Period, ...], cutoff_day: int) -> pd.DataFrame:
    """Per metric, cohort, group and measurement period (up to ``cutoff_day``):

    ``participants`` enrolled (and eligible) by the period's end, ``participant_periods``
    (enrolled participants summed over the periods so far), ``records`` counted in the
    period (after enrolment, within the window), ``participants_with_outcome``, ``sum`` of
    the values, ``rate`` (participants with an outcome / participants) and ``mean`` (sum /
    participants).
    """
    cols = ["metric", "cohort", "group", "period", "participants", "participant_periods",
            "records", "participants_with_outcome", "sum", "rate", "mean"]
    live = [p for p in periods if day_of(p.start) <= cutoff_day]
    if not live or md.size == 0:
        return pd.DataFrame(columns=cols)
    parts = md.participants.loc[md.participants["eligible"]]
    ends = np.array([day_of(p.end) for p in live])
    starts = np.array([day_of(p.start) for p in live])
    # enrolled by each period's end, per cohort and group
    keys = parts[["cohort", "group"]].drop_duplicates().sort_values(["cohort", "group"]).itertuples(index=False)
    base = []
    for cohort, group in keys:
        sel = parts[(parts["cohort"] == cohort) & (parts["group"] == group)]
        ed = np.sort(sel["enrol_day"].to_numpy())
        counts = np.searchsorted(ed, ends, side="right")
        cum = np.cumsum(counts)
        for i, p in enumerate(live):
            base.append((cohort, group, p.id, int(counts[i]), int(cum[i])))
    base_df = pd.DataFrame(base, columns=["cohort", "group", "period", "participants", "participant_periods"])
    frames = []
    eligible = md.participants["eligible"].to_numpy()
    enrol = md.enrol_day
    for m in contract.metrics:
        rows = md.rows(m.id).upto(cutoff_day)
        keep = (rows.day >= enrol[rows.pcode]) & eligible[rows.pcode]
        if m.window_months is not None:
            keep &= rows.day <= md.window_last(months=m.window_months)[rows.pcode]
        pc, day, val = rows.pcode[keep], rows.day[keep], rows.value[keep]
        pidx = np.searchsorted(starts, day, side="right") - 1
        ok = (pidx >= 0) & (day <= ends[np.clip(pidx, 0, len(ends) - 1)])
        df = pd.DataFrame(
            {
                "cohort": md.participants["cohort"].to_numpy()[pc[ok]],
                "group": md.participants["group"].to_numpy()[pc[ok]],
                "period": np.array([p.id for p in live], dtype=object)[pidx[ok]],
                "pcode": pc[ok],
                "value": val[ok],
            }
        )
        agg = (
            df.groupby(["cohort", "group", "period"], sort=False)
            .agg(records=("value", "size"), participants_with_outcome=("pcode", "nunique"), sum=("value", "sum"))
            .reset_index()
        )
        merged = base_df.merge(agg, on=["cohort", "group", "period"], how="left")
        merged.insert(0, "metric", m.id)
        frames.append(merged)
    out = pd.concat(frames, ignore_index=True)
    out["records"] = out["records"].fillna(0).astype(int)
    out["participants_with_outcome"] = out["participants_with_outcome"].fillna(0).astype(int)
    out["sum"] = out["sum"].fillna(0.0)
    denom = out["participants"].where(out["participants"] > 0)
    out["rate"] = out["participants_with_outcome"] / denom
    out["mean"] = out["sum"] / denom
    return out[cols]
