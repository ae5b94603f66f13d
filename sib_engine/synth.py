"""Synthetic measured data for any contract (layer 2: pure numpy/pandas, seeded).

:func:`synthesise` makes a submission in the measured-data format that a contract accepts:
participants per cohort (the cohort's ``target_size``, or :data:`DEFAULT_COHORT_SIZE`),
enrolled within their cohort's enrolment window and the term; ages and prior months within
the eligibility; a municipality among the residence payers' codes; a comparison group of
the same size where a baseline compares with one (measured on that baseline's metrics,
with the treatment group doing better); and outcome events and measurements per metric
that respect prerequisites, attribution windows, claim limits and the term.  Rates are
plausible for employment and training programmes, not estimates of any real deal.

**Counts and durations** (``count``, ``duration``) are one record per participant, dated
at the end of what they measure: the metric's attribution window (``window_months``, else
12 months) or, for a metric an expected-duration baseline reads, the end of its horizon
(the day ``horizon_days`` after enrolment, inclusive: see :mod:`sib_engine.metrics`),
whichever comes first.  Their size follows the contract: without the programme (the
comparison group), a participant's mean is

1. the expected days of the participant's row of an expected-duration baseline's table;
2. else the value of a ``fixed`` or ``historical`` baseline of the metric (with the
   historical ``sd``, when given, for the spread);
3. else :data:`MAX_SHARE` of the metric's ``max_value``;
4. else, for a metric counted in units of time (its ``unit`` names days, weeks, months,
   quarters or years, e.g. bed days or quarters employed), :data:`TIME_SHARE` of the
   measurement window in that unit;
5. else :data:`DEFAULT_COUNT`.

The treatment group's mean is that divided by :data:`UPLIFT` (counts where lower is
better) or multiplied by it.  Values are overdispersed counts (gamma-Poisson with shape
:data:`DISPERSION`, or the shape the historical ``sd`` implies), never above the
``max_value`` nor, for time units, the window's length.

Same contract, same seed, same options: the same frame, row for row.

>>> from sib_engine.loader import EXAMPLE, parse_contract
>>> frame = synthesise(parse_contract(EXAMPLE), seed=1, participants=3)
>>> frame["metric"].value_counts().to_dict()
{'enrolment': 3, 'job': 2}
"""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd

import re

from sib_engine.contract import (
    ComparisonGroupBaseline,
    Contract,
    ExpectedDurationBaseline,
    FixedBaseline,
    HistoricalBaseline,
    Metric,
)
from sib_engine.measured import (
    ENROLMENT,
    TREATMENT,
    claim_limits,
    comparison_groups,
    pre_metrics,
    required_columns,
    requirements,
    residence_codes,
)

DEFAULT_COHORT_SIZE = 150
EVENT_RATE = 0.72
"""Chance that a participant reaches an outcome event with no prerequisite (treatment)."""
FOLLOW_RATE = 0.68
"""Chance of reaching an event once its prerequisites are met (treatment)."""
REPEAT_RATE = 0.25
"""Chance of each further claim of an outcome that may be claimed more than once."""
UPLIFT = 1.3
"""Treatment rates are this many times the comparison group's (counts: 1/UPLIFT where lower
is better)."""
MAX_SHARE = 0.45
"""A count or duration with a ``max_value`` and no baseline to scale it: this share of it."""
TIME_SHARE = 0.5
"""A count of units of time with no baseline or maximum to scale it (bed days, quarters
employed): this share of the measurement window."""
DEFAULT_COUNT = 3.0
"""Any other count with nothing to scale it: this many per participant."""
DISPERSION = 4.0
"""Shape of the gamma mixing the Poisson counts (variance ``m + m**2 / shape``)."""
DAYS_PER: dict[str, float] = {"day": 1.0, "week": 7.0, "month": 365.25 / 12, "quarter": 365.25 / 4, "year": 365.25}
"""Days per unit of time, for a count whose unit names one."""


def _enrolment_days(c: Contract, cohort: str, lo: np.datetime64, hi: np.datetime64) -> np.ndarray:
    """The days from ``lo`` to ``hi`` on which the terms in force let ``cohort`` enrol.

    An amendment that shortens a cohort's enrolment window, or cancels the cohort, from its
    effective date means no participant enrols in it after that date (the validation checks
    each row against the terms in force on its date)."""
    days = np.arange(lo, hi + np.timedelta64(1, "D"), dtype="datetime64[D]")
    open_ = np.ones(days.size, dtype=bool)
    dates = sorted({a.effective for a in c.amendments})
    for i, eff in enumerate(dates):
        until = _days(dates[i + 1]) if i + 1 < len(dates) else days[-1] + np.timedelta64(1, "D")
        span = (days >= _days(eff)) & (days < until)
        if not span.any():
            continue
        cohorts = {k.id: k for k in c.at(eff).timeline.cohorts}
        k = cohorts.get(cohort)
        if k is None:
            open_[span] = False
        else:
            open_[span] &= (days[span] >= _days(k.enrolment_start)) & (days[span] <= _days(k.enrolment_end))
    return days[open_]


def _days(d: date) -> np.datetime64:
    return np.datetime64(d, "D")


def _add_months(days: np.ndarray, months: int) -> np.ndarray:
    s = pd.Series(days.astype("datetime64[ns]")) + pd.DateOffset(months=months)
    out: np.ndarray = s.to_numpy(dtype="datetime64[D]")
    return out


def _order(contract: Contract) -> list[Metric]:
    """Metrics with every prerequisite before the metrics needing it."""
    reqs = requirements(contract)
    done: list[Metric] = []
    left = list(contract.metrics)
    while left:
        ready = [m for m in left if all(r in {d.id for d in done} for r in reqs.get(m.id, ()))]
        if not ready:  # a cycle (refused by the loader); keep the rest in file order
            ready = left[:1]
        for m in ready:
            done.append(m)
            left.remove(m)
    return done


def synthesise(
    contract: Contract,
    *,
    seed: int,
    participants: int | None = None,
    scale: float = 1.0,
) -> pd.DataFrame:
    """A synthetic submission for ``contract`` (typed columns, raw participant ids).

    ``participants`` sets every cohort's size (default: its ``target_size`` or
    :data:`DEFAULT_COHORT_SIZE`), ``scale`` multiplies it.
    """
    c = contract
    rng = np.random.default_rng(seed)
    term_start, term_end = _days(c.term.start), _days(c.term.end)
    residence = residence_codes(c)
    groups = comparison_groups(c)
    comparison_metrics = {b.metric for b in c.baselines if isinstance(b, ComparisonGroupBaseline)}
    pre = pre_metrics(c)
    comparison_metrics |= set(pre)
    reqs = requirements(c)
    limits = claim_limits(c)
    e = c.eligibility
    age_lo = e.age_min if e and e.age_min is not None else 18
    age_hi = e.age_max if e and e.age_max is not None else max(age_lo, 64)
    pm_lo = e.prior_months_min if e and e.prior_months_min is not None else 0
    pm_hi = e.prior_months_max if e and e.prior_months_max is not None else pm_lo + 48
    ordered = _order(c)

    enrol_parts: list[pd.DataFrame] = []
    out_parts: list[pd.DataFrame] = []
    for k, cohort in enumerate(c.timeline.cohorts):
        size = participants if participants is not None else (cohort.target_size or DEFAULT_COHORT_SIZE)
        size = max(1, int(round(size * scale)))
        lo = max(_days(cohort.enrolment_start), term_start)
        hi = min(_days(cohort.enrolment_end), term_end)
        if hi < lo:
            continue
        open_days = _enrolment_days(c, cohort.id, lo, hi)
        if open_days.size == 0:
            continue
        for g_index, group in enumerate((TREATMENT,) + groups):
            treated = group == TREATMENT
            n = size
            enrol = open_days[rng.integers(0, open_days.size, n)]
            letter = "T" if treated else chr(ord("C") + g_index - 1)
            ids = np.char.add(f"{letter}{k + 1:02d}-", np.char.zfill(np.arange(1, n + 1).astype(str), 6))
            enr = {
                "participant_id": ids,
                "metric": np.full(n, ENROLMENT, dtype=object),
                "date": enrol,
                "value": np.full(n, np.nan),
                "cohort": np.full(n, cohort.id, dtype=object),
                "group": np.full(n, group, dtype=object),
            }
            if residence:
                w = np.linspace(2.0, 1.0, len(residence))
                enr["municipality"] = rng.choice(np.array(residence, dtype=object), n, p=w / w.sum())
            enr["age"] = rng.integers(age_lo, age_hi + 1, n).astype("float64")
            enr["prior_months"] = rng.integers(pm_lo, pm_hi + 1, n).astype("float64")
            enrol_parts.append(pd.DataFrame(enr))

            happened: dict[str, np.ndarray] = {}
            first_date: dict[str, np.ndarray] = {}
            for m in ordered:
                if not treated and m.id not in comparison_metrics:
                    continue
                window_end = _add_months(enrol, m.window_months) if m.window_months else None
                limit_end = term_end if window_end is None else np.minimum(window_end, term_end)
                if m.id in pre:
                    dates = enrol - rng.integers(20, 60, n).astype("timedelta64[D]")
                    measured = np.full(n, 365.0)  # a year before enrolment
                    mean, shape = _scale(c, m, enr["age"], enr["prior_months"], measured)
                    values = _measure(m, rng, n, treated=False, mean=mean, shape=shape, span=measured)
                    out_parts.append(_rows(ids, m.id, dates, values, np.ones(n, bool)))
                    continue
                if m.type == "event":
                    prereq = reqs.get(m.id, ())
                    if prereq:
                        can = np.ones(n, bool)
                        start = enrol.copy()
                        for r in prereq:
                            can &= happened.get(r, np.zeros(n, bool))
                            rd = first_date.get(r, np.full(n, np.datetime64("NaT"), "datetime64[D]"))
                            start = np.where(can & (rd > start), rd, start)
                        rate = FOLLOW_RATE
                    else:
                        can = np.ones(n, bool)
                        start = enrol
                        rate = EVENT_RATE
                    if not treated:
                        rate /= UPLIFT
                    horizon = (m.window_months or 18) * 30
                    gap = rng.integers(7, max(8, horizon // 2), n).astype("timedelta64[D]")
                    dates = start + gap
                    ok = can & (rng.random(n) < rate) & (dates <= limit_end)
                    happened[m.id] = ok
                    first_date[m.id] = np.where(ok, dates, np.datetime64("NaT"))
                    out_parts.append(_rows(ids, m.id, dates, np.ones(n), ok))
                    extra_ok, last = ok, dates
                    for _ in range(1, limits.get(m.id, 1)):
                        last = last + rng.integers(30, 200, n).astype("timedelta64[D]")
                        extra_ok = extra_ok & (rng.random(n) < REPEAT_RATE) & (last <= limit_end)
                        out_parts.append(_rows(ids, m.id, last, np.ones(n), extra_ok))
                else:
                    months = m.window_months or 12
                    dates = _add_months(enrol, months)
                    if window_end is not None:
                        dates = np.minimum(dates, window_end)
                    h_days = _horizon(c, m)
                    if h_days is not None:  # dated at the end of the horizon it is measured over
                        dates = np.minimum(dates, enrol + np.timedelta64(h_days, "D"))
                    ok = dates <= term_end
                    measured = (dates - enrol).astype(np.int64).astype("float64")
                    mean, shape = _scale(c, m, enr["age"], enr["prior_months"], measured)
                    values = _measure(m, rng, n, treated=treated, mean=mean, shape=shape, span=measured)
                    out_parts.append(_rows(ids, m.id, dates, values, ok))

    frame = pd.concat(enrol_parts + out_parts, ignore_index=True)
    frame.insert(0, "contract_version", c.version)
    frame.insert(0, "contract_id", c.id)
    frame["date"] = frame["date"].astype("datetime64[ns]")
    frame = frame.sort_values(["date", "participant_id", "metric"], kind="stable").reset_index(drop=True)
    is_enr = frame["metric"] == ENROLMENT
    # outcome rows leave the participant's attributes to the enrolment row
    for col in ("cohort", "group", "municipality", "age", "prior_months"):
        if col in frame:
            frame[col] = frame[col].where(is_enr)
    cols = [col for col in required_columns(c)]
    if groups and "group" not in cols:
        cols.append("group")
    frame = frame[cols]
    frame["participant_id"] = frame["participant_id"].astype("str")
    for col in ("contract_id", "metric", "cohort", "group", "municipality"):
        if col in frame:  # few distinct values: categories, as Parquet dictionary columns read
            frame[col] = frame[col].astype("str").where(frame[col].notna()).astype("category")
    return frame


def _rows(ids: np.ndarray, metric: str, dates: np.ndarray, values: np.ndarray, keep: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame({
        "participant_id": ids[keep],
        "metric": np.full(int(keep.sum()), metric, dtype=object),
        "date": dates[keep],
        "value": np.asarray(values, dtype="float64")[keep],
    })


def _horizon(c: Contract, m: Metric) -> int | None:
    """The shortest horizon of the expected-duration baselines reading ``m``, if any."""
    hs = [b.horizon_days for b in c.baselines if isinstance(b, ExpectedDurationBaseline) and b.metric == m.id]
    return min(hs) if hs else None


def _time_unit(m: Metric) -> float | None:
    """Days per unit of the metric's ``unit`` when it names a unit of time, else None."""
    for word, days in DAYS_PER.items():
        if re.search(rf"\b{word}s?\b", m.unit or "", flags=re.IGNORECASE):
            return days
    return None


def _scale(c: Contract, m: Metric, age: np.ndarray, prior: np.ndarray,
           span: np.ndarray) -> tuple[np.ndarray, float]:
    """Per participant, the mean of a count or duration without the programme, and the
    gamma shape of its spread (see the module docstring); ``span``: days measured."""
    n = len(span)
    shape = DISPERSION
    for b in c.baselines:
        if isinstance(b, ExpectedDurationBaseline) and b.metric == m.id:
            out = np.full(n, np.nan)
            for row in b.table:
                hit = (age >= row.age_min) & (age <= row.age_max) & (prior >= row.prior_months_min) & (
                    prior <= row.prior_months_max)
                out[hit & np.isnan(out)] = float(row.expected_days)
            return np.where(np.isnan(out), float(np.nanmean(out)) if not np.isnan(out).all() else 0.0, out), shape
    for b in c.baselines:
        if isinstance(b, (FixedBaseline, HistoricalBaseline)) and b.metric == m.id:
            mean = float(b.value)
            sd = float(b.sd) if isinstance(b, HistoricalBaseline) and b.sd is not None else None
            if sd is not None and sd * sd > mean > 0:
                shape = mean * mean / (sd * sd - mean)
            return np.full(n, mean), shape
    if m.max_value is not None:
        return np.full(n, float(m.max_value) * MAX_SHARE), shape
    unit = _time_unit(m)
    if unit is not None:
        return TIME_SHARE * span / unit, shape
    return np.full(n, DEFAULT_COUNT), shape


def _measure(m: Metric, rng: np.random.Generator, n: int, *, treated: bool, mean: np.ndarray | None = None,
             shape: float = DISPERSION, span: np.ndarray | None = None) -> np.ndarray:
    """Plausible values of a non-event metric; the treatment group does better.  A count or
    duration draws around ``mean`` (per participant, without the programme) with gamma
    shape ``shape``; it never exceeds ``span`` (days measured) in its unit of time."""
    lo = float(m.min_value) if m.min_value is not None else None
    hi = float(m.max_value) if m.max_value is not None else None
    better_high = m.better == "higher"
    if m.type == "binary":
        p = 0.35 * (UPLIFT if treated and better_high else 1.0)
        p = p / UPLIFT if treated and not better_high else p
        return (rng.random(n) < min(p, 0.95)).astype("float64")
    if m.type in ("count", "duration"):
        base = np.full(n, DEFAULT_COUNT) if mean is None else np.asarray(mean, dtype="float64")
        if treated:
            base = base / UPLIFT if not better_high else base * UPLIFT
        rate = rng.gamma(shape, np.maximum(base, 0.0) / shape)
        v = rng.poisson(rate).astype("float64")
        unit = _time_unit(m)
        if unit is not None and span is not None:
            v = np.minimum(v, np.floor(span / unit))
    else:
        mid = (lo + hi) / 2 if lo is not None and hi is not None else (lo or 0.0) + 25.0
        sd = (hi - lo) / 8 if lo is not None and hi is not None else 3.0
        shift = sd * 0.4 if treated else 0.0
        v = np.round(rng.normal(mid + (shift if better_high else -shift), sd, n), 1)
    if lo is not None:
        v = np.maximum(v, lo)
    if hi is not None:
        v = np.minimum(v, hi)
    if m.type != "continuous":
        v = np.maximum(v, 0.0)
    return np.asarray(v, dtype="float64")
