"""Baselines (counterfactuals) and effects against them (layer 2: pure computation).

A baseline estimates what would have happened without the programme.  Each kind of the
contract language (``contract.BASELINE_KINDS``) has one estimator, registered in
:data:`ESTIMATORS`, that turns the baseline, the metric and a :class:`Scope` (the
participants of a cohort or of all cohorts, the data up to a cutoff) into a
:class:`Comparison`: the treatment estimate, the baseline estimate (value, standard error,
size) and the design the named statistical test is run on.

``fixed``
    the value written in the contract; no sampling error; tests are one-sample.
``historical``
    a historical cohort's value with its size (and spread): two-sample tests from
    summary statistics (the number of events is ``value x n``, rounded for the exact
    Poisson test); without ``sd``, the standard error is binomial for a rate and Poisson
    for a count, and a Welch test needs ``sd``.
``expected_duration``
    per treatment participant, the expected days over ``horizon_days`` from the table row
    of their age and prior months, prorated while the horizon has not yet elapsed at the
    cutoff (``(cutoff - enrolment day) / horizon_days``, at most 1: complete on the day
    ``horizon_days`` after enrolment); the actual days are counted over the same horizon,
    up to and including that day (where a duration over the horizon is dated).  The
    baseline is the mean expected days; tests run on the per-participant differences (a
    one-sample t-test), or exactly for Poisson counts.
``comparison_group``
    the comparison participants (``group`` column, same cohorts, enrolled by the cutoff)
    measured alike.  ``difference``: two-sample tests on the raw data.
    ``difference_in_differences``: baseline = comparison after + (treatment before -
    comparison before), from ``pre_metric``; a Welch test runs on per-participant gains,
    other tests use the normal approximation.
``blended``
    the weighted sum of its components' baseline values; the standard error assumes the
    components independent (``sqrt(sum w^2 se^2)``); tests use the normal approximation.

:func:`compute_effect` then applies the effect measure (``level``, ``difference``,
``relative_difference``, ``reduction``, ``relative_reduction``) and the contract's gate:
``significant`` pays only if the test rejects at the level; ``lower_bound`` pays on the
conservative end of the confidence interval of the measure.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Decimal
from typing import Callable, Literal, Mapping, TypeVar

import numpy as np

from sib_engine.contract import (
    Baseline,
    BlendedBaseline,
    ComparisonGroupBaseline,
    Contract,
    Effect,
    ExpectedDurationBaseline,
    FixedBaseline,
    Gate,
    HistoricalBaseline,
    Metric,
)
from sib_engine.metrics import (
    TREATMENT,
    EvaluationError,
    MeasuredData,
    Sample,
    participant_values,
    sample,
)
from sib_engine.stats import (
    Alternative,
    TestResult,
    interval_confidence,
    one_proportion_z,
    one_sample_t,
    poisson_one_sample,
    poisson_rate_ratio,
    to_decimal,
    two_proportion_z,
    wald_z,
    welch_t,
    welch_t_from_samples,
)
from sib_engine.trace import Trace, cite

DEFAULT_TEST: dict[str, str] = {
    "binary": "two_proportion_z",
    "event": "poisson_rate_ratio",
    "count": "welch_t",
    "duration": "welch_t",
    "continuous": "welch_t",
}
"""The test used to report an interval when the contract names none (no gate)."""

REPORT_CONFIDENCE = 0.95


@dataclass(frozen=True, eq=False)
class Scope:
    """Whom and what data a figure is computed over."""

    md: MeasuredData
    terms: Contract
    cutoff_day: int
    cohorts: frozenset[str]
    """The cohorts in scope (one for a per-cohort figure, all in force when pooled)."""
    label: str

    def members(self, group: str = TREATMENT) -> np.ndarray:
        """Mask of the eligible participants of ``group`` in these cohorts, enrolled by the cutoff."""
        md = self.md
        return np.asarray(
            md.column("eligible").astype(bool)
            & (md.column("group") == group)
            & md.in_cohorts(self.cohorts)
            & (md.enrol_day <= self.cutoff_day),
            dtype=bool,
        )


@dataclass(frozen=True, eq=False)
class Estimate:
    """A value with its standard error and size, and where it comes from."""

    label: str
    value: float
    se: float
    n: int | None
    sd: float | None = None
    total: float | None = None
    clause: str | None = None
    detail: str = ""
    exact: Decimal | None = None
    """The value as an exact ``Decimal`` (sums of the data over sizes, contract figures),
    from which effects and units are computed; ``value`` is its float for the tests."""

    def trace(self, name: str) -> Trace:
        parts = [f"{_num(self.value)}"]
        if self.n is not None:
            parts.append(f"n = {self.n}")
        if self.se and not math.isnan(self.se):
            parts.append(f"se = {_num(self.se)}")
        value = ", ".join(parts)
        children = (Trace(self.detail),) if self.detail else ()
        return Trace(f"{name} ({self.label})", value, self.clause, children)


def _num(x: float | Decimal | None) -> str:
    d = x if isinstance(x, Decimal) else to_decimal(x)
    return show(d)


def show(d: Decimal | None) -> str:
    """A figure for people: at most 12 significant digits (marked ``~`` when shortened)."""
    if d is None:
        return "n/a"
    if not d.is_finite():
        return str(d)
    t = d.normalize()
    if len(t.as_tuple().digits) > 12:
        short = to_decimal(float(d))
        return f"~{short:f}" if short is not None else str(d)
    return f"{t:f}"


def exact_mean(total: float, n: int) -> Decimal | None:
    """``total / n`` in ``Decimal`` (the total read with 12 significant digits)."""
    if n == 0:
        return None
    t = to_decimal(total)
    return None if t is None else t / n


@dataclass(frozen=True, eq=False)
class Comparison:
    """A treatment estimate against a baseline estimate, and the design to test it on."""

    metric: Metric
    treatment: Estimate
    baseline: Estimate
    design: Literal["fixed", "summary", "samples", "paired", "gains", "wald"]
    treated: Sample | None = None
    compared: Sample | None = None
    differences: np.ndarray | None = None
    gains: tuple[np.ndarray, np.ndarray] | None = None

    def test(self, name: str | None, alternative: Alternative, confidence: float) -> TestResult:
        """Run the named test (or the metric type's default) of treatment against baseline."""
        name = name or DEFAULT_TEST[self.metric.type]
        t, b = self.treatment, self.baseline
        nt = int(t.n or 0)
        if self.design == "fixed":
            if name == "two_proportion_z":
                return one_proportion_z(t.total or 0.0, nt, b.value, alternative, confidence)
            if name == "welch_t":
                return one_sample_t(t.value, t.sd or 0.0, nt, b.value, alternative, confidence)
            return poisson_one_sample(round(t.total or 0.0), float(nt), b.value, alternative, confidence)
        if self.design == "summary":
            n0 = int(b.n or 0)
            if name == "two_proportion_z":
                return two_proportion_z(t.total or 0.0, nt, b.value * n0, n0, alternative, confidence)
            if name == "welch_t":
                if b.sd is None:
                    raise EvaluationError(
                        f"baseline of '{self.metric.id}' has no standard deviation; add 'sd:' to the "
                        "historical baseline to test it with a Welch t-test"
                    )
                return welch_t(t.value, t.sd or 0.0, nt, b.value, b.sd, n0, alternative, confidence)
            return poisson_rate_ratio(round(t.total or 0.0), nt, round(b.value * n0), n0, alternative, confidence)
        if self.design == "samples":
            assert self.treated is not None and self.compared is not None
            c = self.compared
            if name == "two_proportion_z":
                return two_proportion_z(t.total or 0.0, nt, c.total, c.n, alternative, confidence)
            if name == "welch_t":
                return welch_t_from_samples(self.treated.values, c.values, alternative, confidence)
            return poisson_rate_ratio(round(t.total or 0.0), nt, round(c.total), c.n, alternative, confidence)
        if self.design == "paired":
            d = self.differences if self.differences is not None else np.zeros(0)
            if name == "poisson_rate_ratio":
                return poisson_one_sample(round(t.total or 0.0), float(nt), b.value, alternative, confidence)
            if name == "welch_t" and len(d) > 1:
                return one_sample_t(
                    float(d.mean()) + b.value, float(d.std(ddof=1)), len(d), b.value, alternative, confidence
                )
        if self.design == "gains" and name == "welch_t" and self.gains is not None:
            g1, g0 = self.gains
            r = welch_t_from_samples(g1, g0, alternative, confidence)
            lo, hi = r.difference_ci
            bv = b.value
            return TestResult(
                test=r.test, alternative=alternative, confidence=confidence, statistic=r.statistic,
                p_value=r.p_value, difference=t.value - bv, difference_se=r.difference_se,
                difference_ci=(lo, hi), ratio=None if bv == 0 else t.value / bv,
                ratio_ci=None if bv == 0 else ((bv + lo) / bv, (bv + hi) / bv), df=r.df,
                note="Welch t-test on per-participant gains (difference-in-differences)",
            )
        return wald_z(
            t.value, t.se, b.value, b.se, alternative, confidence,
            note=f"normal approximation ({name} has no exact form for this estimator)",
        )


Estimator = Callable[[Baseline, Metric, Scope], Comparison]


def _clause(b: Baseline, scope: Scope) -> str | None:
    """The baseline's clause, citing the amendment that changed it, if any."""
    return cite(scope.terms, b.clause, f"baselines.{b.id}")


def _treatment(metric: Metric, scope: Scope, **kw: int) -> tuple[Estimate, Sample]:
    vals = participant_values(scope.md, metric, scope.cutoff_day, **kw)  # type: ignore[arg-type]
    s = sample(vals, scope.members(), metric)
    what = "rate" if metric.type == "binary" else "mean"
    est = Estimate(
        label=f"{scope.label}, {what} of {metric.id}", value=s.mean, se=s.se, n=s.n, sd=s.sd,
        total=s.total, exact=exact_mean(s.total, s.n),
        detail=f"{_num(s.total)} {'with the outcome' if metric.type == 'binary' else metric.unit + '(s)'} over {s.n} participant(s)",
    )
    return est, s


def _fixed(b: Baseline, metric: Metric, scope: Scope) -> Comparison:
    assert isinstance(b, FixedBaseline)
    t, s = _treatment(metric, scope)
    base = Estimate(label=f"fixed baseline '{b.id}'", value=float(b.value), se=0.0, n=None,
                    clause=_clause(b, scope), detail=b.source or "", exact=b.value)
    return Comparison(metric, t, base, "fixed", treated=s)


def _historical(b: Baseline, metric: Metric, scope: Scope) -> Comparison:
    assert isinstance(b, HistoricalBaseline)
    t, s = _treatment(metric, scope)
    v, n = float(b.value), b.n
    sd: float | None = float(b.sd) if b.sd is not None else None
    if sd is not None:
        se = sd / math.sqrt(n)
    elif metric.type == "binary":
        se = math.sqrt(max(v * (1 - v), 0.0) / n)
    elif metric.type in ("event", "count"):
        se = math.sqrt(max(v, 0.0) / n)
    else:
        se = float("nan")
    base = Estimate(label=f"historical baseline '{b.id}'", value=v, se=se, n=n, sd=sd, total=v * n,
                    clause=_clause(b, scope), exact=b.value, detail=" ".join(x for x in (b.source, b.period) if x))
    return Comparison(metric, t, base, "summary", treated=s)


def expected_days(b: ExpectedDurationBaseline, scope: Scope, mask: np.ndarray) -> np.ndarray:
    """Per participant of ``mask``: expected days over the horizon, prorated to the cutoff."""
    p = scope.md.participants.loc[mask]
    age = p["age"].to_numpy(dtype=float)
    prior = p["prior_months"].to_numpy(dtype=float)
    out = np.full(len(p), np.nan)
    for row in b.table:
        with np.errstate(invalid="ignore"):
            hit = (age >= row.age_min) & (age <= row.age_max) & (prior >= row.prior_months_min) & (
                prior <= row.prior_months_max
            )
        out[hit & np.isnan(out)] = float(row.expected_days)
    if np.isnan(out).any():
        bad = p["participant_id"].to_numpy()[np.isnan(out)]
        raise EvaluationError(
            f"{len(bad)} participant(s) (e.g. '{bad[0]}') have an age or prior months outside every row "
            f"of the expected-duration table of baseline '{b.id}'; extend the table or check their "
            "enrolment rows"
        )
    elapsed = scope.cutoff_day - p["enrol_day"].to_numpy()  # the horizon ends on enrolment + horizon_days
    frac = np.clip(elapsed / b.horizon_days, 0.0, 1.0)
    return np.asarray(out * frac)


def _expected_duration(b: Baseline, metric: Metric, scope: Scope) -> Comparison:
    assert isinstance(b, ExpectedDurationBaseline)
    t, s = _treatment(metric, scope, horizon_days=b.horizon_days)
    mask = scope.members()
    exp = expected_days(b, scope, mask)
    n = len(exp)
    mean = float(exp.mean()) if n else float("nan")
    base = Estimate(
        label=f"expected duration '{b.id}'", value=mean, se=0.0, n=n, total=float(exp.sum()),
        clause=_clause(b, scope), exact=exact_mean(float(exp.sum()), n),
        detail=f"{_num(float(exp.sum()))} expected day(s) over a {b.horizon_days}-day horizon for {n} participant(s), "
        "from the table by age and prior months",
    )
    actual = participant_values(scope.md, metric, scope.cutoff_day, horizon_days=b.horizon_days)[mask]
    return Comparison(metric, t, base, "paired", treated=s, differences=actual - exp)


def _comparison_group(b: Baseline, metric: Metric, scope: Scope) -> Comparison:
    assert isinstance(b, ComparisonGroupBaseline)
    t, s = _treatment(metric, scope)
    cmask = scope.members(b.group)
    post = participant_values(scope.md, metric, scope.cutoff_day)
    c = sample(post, cmask, metric)
    if b.estimator == "difference":
        base = Estimate(
            label=f"{b.design} comparison group '{b.id}'", value=c.mean, se=c.se, n=c.n, sd=c.sd,
            total=c.total, clause=_clause(b, scope), exact=exact_mean(c.total, c.n),
            detail=f"{_num(c.total)} over {c.n} comparison participant(s) (group '{b.group}')",
        )
        return Comparison(metric, t, base, "samples", treated=s, compared=c)
    assert b.pre_metric is not None
    pre_metric = scope.terms.metric(b.pre_metric)
    pre = participant_values(scope.md, pre_metric, scope.cutoff_day, pre=True)
    tmask = scope.members()
    t_pre, c_pre = sample(pre, tmask, pre_metric), sample(pre, cmask, pre_metric)
    value = c.mean + (t_pre.mean - c_pre.mean)
    se = math.sqrt(c.se**2 + t_pre.se**2 + c_pre.se**2) if min(c.n, t_pre.n, c_pre.n) > 1 else float("nan")
    parts = [exact_mean(c.total, c.n), exact_mean(t_pre.total, t_pre.n), exact_mean(c_pre.total, c_pre.n)]
    exact = None if any(x is None for x in parts) else parts[0] + parts[1] - parts[2]  # type: ignore[operator]
    base = Estimate(
        label=f"difference-in-differences '{b.id}'", value=value, se=se, n=c.n, clause=_clause(b, scope), exact=exact,
        detail=(
            f"comparison after {_num(c.mean)} + (treatment before {_num(t_pre.mean)} - comparison before "
            f"{_num(c_pre.mean)}) from '{pre_metric.id}'"
        ),
    )
    g1 = (post - pre)[tmask]
    g0 = (post - pre)[cmask]
    g1, g0 = g1[~np.isnan(g1)], g0[~np.isnan(g0)]
    gains = (g1, g0) if len(g1) > 1 and len(g0) > 1 else None
    return Comparison(metric, t, base, "gains", treated=s, compared=c, gains=gains)


def _blended(b: Baseline, metric: Metric, scope: Scope) -> Comparison:
    assert isinstance(b, BlendedBaseline)
    parts = []
    for comp in b.components:
        inner = scope.terms.baseline(comp.baseline)
        parts.append((comp.weight, estimate(inner, metric, scope)))
    value = sum(float(w) * c.baseline.value for w, c in parts)
    se = math.sqrt(sum((float(w) * c.baseline.se) ** 2 for w, c in parts))
    detail = " + ".join(f"{w} x {_num(c.baseline.value)} ({c.baseline.label})" for w, c in parts)
    exacts = [c.baseline.exact for _, c in parts]
    exact = None if any(x is None for x in exacts) else sum(
        (w * x for (w, _), x in zip(parts, exacts) if x is not None), Decimal(0))
    base = Estimate(label=f"blended baseline '{b.id}'", value=value, se=se, n=None, clause=_clause(b, scope),
                    detail=detail, exact=exact)
    first = parts[0][1]
    return Comparison(metric, first.treatment, base, "wald", treated=first.treated)


ESTIMATORS: Mapping[str, Estimator] = {
    "fixed": _fixed,
    "historical": _historical,
    "expected_duration": _expected_duration,
    "comparison_group": _comparison_group,
    "blended": _blended,
}
"""Baseline kind -> estimator; one entry per member of ``contract.BASELINE_KINDS``."""


def estimate(b: Baseline, metric: Metric, scope: Scope) -> Comparison:
    """The treatment and baseline estimates of ``b`` over ``scope``."""
    return ESTIMATORS[b.kind](b, metric, scope)


# ------------------------------------------------------------------------ effects ---

_INCREASING = {"level": True, "difference": True, "relative_difference": True,
               "reduction": False, "relative_reduction": False}


@dataclass(frozen=True, eq=False)
class EffectResult:
    """An effect measure with its interval, and what a schedule reads from it."""

    metric: str
    measure: str
    scope: str
    treatment: Estimate
    baseline: Estimate | None
    estimate: Decimal | None
    """The point estimate of the measure (None when it cannot be computed)."""
    ci: tuple[Decimal | None, Decimal | None]
    confidence: float
    test: TestResult | None
    gate: Gate | None
    gate_open: bool
    paid_effect: Decimal | None
    """The effect the payment rule reads: the estimate, or its lower bound under a
    ``lower_bound`` gate; None (pays nothing) when the gate is closed."""
    absolute: Decimal | None
    """The paid effect in units of the metric per participant (relative measures times
    the baseline)."""
    n: int
    note: str = ""
    units_total: Decimal | None = None

    @property
    def units(self) -> Decimal:
        """Units of the metric the programme made a difference by, over all participants,
        never below 0: from the totals (e.g. n x baseline - total for a reduction), or the
        lower bound per participant x n under a ``lower_bound`` gate."""
        u = self.units_total
        if u is None or not u.is_finite() or u <= 0:
            return Decimal(0)
        return u

    def trace(self) -> Trace:
        kids: list[Trace] = [self.treatment.trace("metric")]
        if self.baseline is not None:
            kids.append(self.baseline.trace("baseline"))
        if self.test is not None:
            kids.append(Trace("test", self.test.describe() + (f"; {self.test.note}" if self.test.note else "")))
        lo, hi = self.ci
        ci = f"[{_d(lo)}, {_d(hi)}] at {self.confidence:.0%} confidence" if self.test is not None else "n/a"
        kids.append(Trace("confidence interval", ci))
        if self.gate is not None:
            g = self.gate
            if g.rule == "significant":
                verdict = "significant: pays" if self.gate_open else "not significant: pays nothing"
                p = f"p = {self.test.p_value:.4g}" if self.test else "no test possible"
                kids.append(Trace(f"gate ({g.test}, {g.sides}-sided, level {g.level})", f"{p}; {verdict}", g.clause))
            else:
                kids.append(Trace(f"gate ({g.test}, {g.sides}-sided, level {g.level})",
                                  f"pays on the lower confidence bound {_d(self.paid_effect)}", g.clause))
        if self.note:
            kids.append(Trace("note", self.note))
        return Trace(f"effect: {self.measure} of {self.metric} ({self.scope})", _d(self.estimate), None, tuple(kids))


def _d(x: Decimal | None) -> str:
    return show(x)


def compute_effect(effect: Effect, terms: Contract, scope: Scope) -> EffectResult:
    """The effect of ``effect`` over ``scope`` with the terms in force."""
    metric = terms.metric(effect.metric)
    gate = effect.gate
    increasing = _INCREASING[effect.measure]
    alternative: Alternative = "two-sided" if gate and gate.sides == "two" else (
        "greater" if increasing else "less")
    confidence = interval_confidence(float(gate.level), gate.sides) if gate else REPORT_CONFIDENCE
    note = ""
    if effect.measure == "level" or effect.baseline is None:
        t, s = _treatment(metric, scope)
        comp = Comparison(metric, t, Estimate("zero", 0.0, 0.0, None, exact=Decimal(0)), "wald", treated=s)
        baseline_est = None
    else:
        comp = estimate(terms.baseline(effect.baseline), metric, scope)
        baseline_est = comp.baseline
    t = comp.treatment
    n = int(t.n or 0)
    m, b = t.value, comp.baseline.value
    test: TestResult | None = None
    if n == 0 or math.isnan(m) or math.isnan(b):
        note = "no participants (or no comparison figure) to measure: no effect"
        point = None
    else:
        point = effect_measure(effect.measure, m, b)
        if point is None:
            note = "the baseline is zero, so a relative effect is undefined"
        try:
            if baseline_est is None:
                test = wald_z(m, t.se, 0.0, 0.0, alternative, confidence,
                              note="normal approximation: the level itself against zero")
            else:
                test = comp.test(gate.test if gate else None, alternative, confidence)
        except (ValueError, ZeroDivisionError) as exc:
            note = (note + "; " if note else "") + f"no test possible: {exc}"
    ci = _measure_ci(effect.measure, test, m, b) if test is not None else (None, None)
    me, be = t.exact, comp.baseline.exact
    if point is None:
        est = None
    elif me is not None and be is not None:
        est = effect_measure(effect.measure, me, be)
    else:
        est = to_decimal(point)
    ci_d = (to_decimal(ci[0]), to_decimal(ci[1]))
    gate_open = True
    paid: Decimal | None = est
    on_bound = False
    if gate is not None:
        if gate.rule == "significant":
            gate_open = test is not None and test.p_value < float(gate.level)
            paid = est if gate_open else None
        else:
            paid = ci_d[0] if test is not None and est is not None else None
            gate_open = paid is not None
            on_bound = True
    total = to_decimal(t.total) if t.total is not None else None
    units, absolute = effect_units(effect.measure, paid, on_bound, total, be, n)
    return EffectResult(
        metric=metric.id, measure=effect.measure, scope=scope.label, treatment=t, baseline=baseline_est,
        estimate=est, ci=ci_d, confidence=confidence, test=test, gate=gate, gate_open=gate_open,
        paid_effect=paid, absolute=absolute, n=n, note=note, units_total=units,
    )


def effect_units(measure: str, paid: Decimal | None, on_bound: bool, total: Decimal | None,
                 baseline: Decimal | None, n: int) -> tuple[Decimal | None, Decimal | None]:
    """The units of the metric the programme made a difference by, over all ``n``
    participants, and per participant: ``(units, absolute)``.

    From the measured total against the baseline when the point estimate is paid; from the
    paid effect (a confidence bound, say) otherwise, a relative effect scaled by the
    baseline.  ``(None, None)`` when nothing is paid."""
    if paid is None or not paid.is_finite():
        return None, None
    if not on_bound and total is not None and baseline is not None:
        if measure == "level":
            units = total
        elif measure in ("difference", "relative_difference"):
            units = total - baseline * n
        else:
            units = baseline * n - total
        return units, (units / n if n else None)
    absolute = paid * baseline if measure.startswith("relative") and baseline is not None else paid
    return absolute * n, absolute


N = TypeVar("N", float, Decimal)


def effect_measure(measure: str, m: N, b: N) -> N | None:
    """An effect measure of metric ``m`` against baseline ``b`` (exact for ``Decimal``, and
    the same formula for the simulation's floats); None when a relative measure divides by 0."""
    if measure == "level":
        return m
    if measure == "difference":
        return m - b
    if measure == "reduction":
        return b - m
    if b == 0:
        return None
    if measure == "relative_difference":
        return (m - b) / b
    return (b - m) / b


def _measure_ci(measure: str, r: TestResult, m: float, b: float) -> tuple[float | None, float | None]:
    lo, hi = r.difference_ci
    if measure in ("level", "difference"):
        return (lo + b, hi + b) if measure == "level" else (lo, hi)
    if measure == "reduction":
        return (-hi, -lo)
    if r.ratio_ci is None:
        if b == 0:
            return (None, None)
        rl, rh = (b + lo) / b, (b + hi) / b
    else:
        rl, rh = r.ratio_ci
    if measure == "relative_difference":
        return (rl - 1, rh - 1)
    return (1 - rh, 1 - rl)
