"""What each payer pays in each simulated world: the exact path's triggers, caps and payers
over many worlds at once (layer 2).

The same steps as :mod:`sib_engine.evaluation`, in the same order, on arrays with one row
per world:

1. *Rows.*  Each rate-card outcome of a cohort is one block of rows, dated on the day the
   outcome is recorded (``units`` events at the price in force); each schedule-based
   trigger's change at a determination is one row per scope, dated on the
   determination's data day, after the events of that day.  Blocks are ordered as the
   exact path orders rows (date, events before schedule changes, trigger, outcome,
   participant: participants of earlier cohorts come first).
2. *Caps* in the order of :data:`sib_engine.payments.STEPS`, each as a running cap over the
   blocks (``paid so far = S + min(0, running min(cap - S))``, exact in integers).
3. *Determinations*: per key (trigger, outcome or scope, period), the amount up to each
   determination, rounded to the minor unit; split among the primary payers by largest
   remainder (integer arithmetic on the shares, which add up to exactly 1); payer caps;
   top-ups and their caps; the lines are the differences with what the earlier
   determinations recorded (payments, true-ups, clawbacks).

Schedule amounts (:func:`scope_amounts`) are computed in float64 with the exact path's own
formulas (the gate's test on arrays by :func:`gate_vec`, with the same scipy functions); a
world whose effect lies within ``1e-9`` of a schedule point or the minimum effect, whose
p-value lies within ``1e-9`` (relative) of the gate's level, whose confidence bound (under
``lower_bound``) is too close to a tie in its twelfth significant digit for the float
error of its terms, whose gate the float path does not decide (two-sided Poisson tests,
Poisson bounds, a zero standard error), or whose amount lies within ``1e-6`` cent (plus
float error) of half a cent, is recomputed by :func:`exact_scope_amount`, which runs
``baselines.Comparison.test`` on the world's per-participant values
(:func:`participant_sample`) and follows ``baselines.compute_effect``,
``triggers.schedule_value`` and ``money.round_money`` step by step (memoised by its inputs:
the counts of the scope, per cohort where the test reads the spread of the values).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Decimal
from typing import Callable, Sequence

import numpy as np
import numpy.typing as npt
from scipy import stats as _st

from sib_engine.baselines import Comparison, Estimate, _measure_ci, effect_measure, effect_units, exact_mean
from sib_engine.contract import Metric, Schedule
from sib_engine.metrics import Sample
from sib_engine.money import allocate, round_money
from sib_engine.simulation.plan import DetPlan, EffectPlan, Plan, SchedPlan, share_step_triggers
from sib_engine.simulation.world import World, continuous_values
from sib_engine.stats import Alternative, TestResult, to_decimal, wald_z
from sib_engine.triggers import schedule_value

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

EFFECT_TOL = 1e-9
P_TOL = 1e-10
CENT_TOL = 1e-6


# ------------------------------------------------------------- exact, one scope ---


@dataclass(frozen=True)
class ExactEffect:
    paid: Decimal | None
    units: Decimal
    """Units of the metric the programme made a difference by (never below 0)."""
    absolute: Decimal | None
    n: int


Parts = tuple[tuple[int, int, int, int, int, int, int, int, int], ...]
"""Per cohort of a scope, in cohort order: ``(x1, n1, x0, n0, s1, s0, p1, p0)`` (the
treated participants' total and number, the comparison group's, for a continuous metric the
spread of each group's values, see :func:`~sib_engine.simulation.world.continuous_values`,
for a difference-in-differences baseline each group's pre-enrolment total, and for an
expected-duration baseline the days from the cohort's enrolment to the cutoff)."""


def participant_sample(metric: Metric, parts: Sequence[tuple[int, int, int]]) -> Sample:
    """The per-participant values of a group over cohorts ``parts`` (``(total, size,
    spread)`` each), in the order the exact path reads them from
    :func:`~sib_engine.simulation.exact.world_data`: cohort by cohort, participant ``j``
    with one more than the others while ``j`` is below the remainder of the total over the
    size (for a rate: the first ``total`` have it), and for a continuous metric, in
    hundredths, the spread added to the first half and taken from the second."""
    chunks: list[np.ndarray] = []
    for x, n, spread in parts:
        if n <= 0:
            continue
        q, r = divmod(int(x), int(n))
        h = n // 2
        j = np.arange(n)
        # continuous_values(x, n, spread), on arrays
        v = (q + (j < r) + spread * (j < h) - spread * ((j >= h) & (j < 2 * h))).astype(np.float64)
        chunks.append(v / 100.0 if metric.type == "continuous" else v)
    values = np.concatenate(chunks) if chunks else np.zeros(0)
    return Sample(metric.id, metric.type, values)


def _expected_days(ep: EffectPlan, elapsed: int) -> float:
    """One participant's expected days (``baselines.expected_days``): the row's days times
    the share of the horizon elapsed at the cutoff (float64, as the exact path computes it)."""
    frac = np.clip(np.asarray([elapsed], dtype=np.int64) / ep.horizon, 0.0, 1.0)
    return float((np.asarray([float(ep.value)]) * frac)[0])


def _did_estimate(metric: Metric, pre_metric: Metric | None, s: Sample,
                  cohorts: Parts) -> tuple[Estimate, Sample, tuple[np.ndarray, np.ndarray] | None]:
    """``baselines._comparison_group`` with ``difference_in_differences``: the baseline
    estimate, the comparison sample and the per-participant gains."""
    assert pre_metric is not None
    c = participant_sample(metric, [(p[2], p[3], p[5]) for p in cohorts])
    t_pre = participant_sample(pre_metric, [(p[6], p[1], 0) for p in cohorts])
    c_pre = participant_sample(pre_metric, [(p[7], p[3], 0) for p in cohorts])
    value = c.mean + (t_pre.mean - c_pre.mean)
    se = math.sqrt(c.se**2 + t_pre.se**2 + c_pre.se**2) if min(c.n, t_pre.n, c_pre.n) > 1 else float("nan")
    ex = [exact_mean(c.total, c.n), exact_mean(t_pre.total, t_pre.n), exact_mean(c_pre.total, c_pre.n)]
    exact = None if any(x is None for x in ex) else ex[0] + ex[1] - ex[2]  # type: ignore[operator]
    g1, g0 = s.values - t_pre.values, c.values - c_pre.values
    gains = (g1, g0) if len(g1) > 1 and len(g0) > 1 else None
    return Estimate("difference-in-differences", value, se, c.n, exact=exact), c, gains


def exact_effect(ep: EffectPlan, mtype: str, x1: int, n1: int, x0: int, n0: int,
                 parts: Parts | None = None, metric: Metric | None = None,
                 pre_metric: Metric | None = None) -> ExactEffect:
    """``baselines.compute_effect`` for a scope whose treated participants have ``x1`` in
    all (``n1`` of them) and whose comparison group ``x0`` (``n0``); ``parts``: the same per
    cohort, where the test reads the spread of the per-participant values."""
    if metric is None:
        metric = Metric(id="metric", name="metric", type=mtype)
    cohorts: Parts = parts if parts else ((x1, n1, x0, n0, 0, 0, 0, 0, 0),)
    s = participant_sample(metric, [(p[0], p[1], p[4]) for p in cohorts])
    spread = ep.gate_level is not None and (ep.test == "welch_t" or ep.baseline in ("none", "did", "blended"))
    t = Estimate(label="treatment", value=s.mean, se=s.se if spread else math.nan, n=s.n,
                 sd=s.sd if spread else math.nan, total=s.total, exact=exact_mean(s.total, s.n))
    level = ep.baseline == "none"
    if level:
        base = Estimate("zero", 0.0, 0.0, None, exact=Decimal(0))
        comp = Comparison(metric, t, base, "wald", treated=s)
    elif ep.baseline == "fixed":
        base = Estimate("fixed", float(ep.value), 0.0, None, exact=ep.value)
        comp = Comparison(metric, t, base, "fixed", treated=s)
    elif ep.baseline == "historical":
        v = float(ep.value)
        base = Estimate("historical", v, math.nan, ep.hist_n, sd=ep.hist_sd, total=v * ep.hist_n, exact=ep.value)
        comp = Comparison(metric, t, base, "summary", treated=s)
    elif ep.baseline == "expected":
        # baselines._expected_duration: each participant's expected days, prorated to the cutoff
        exp = np.concatenate([np.full(p[1], _expected_days(ep, p[8])) for p in cohorts]) if cohorts else np.zeros(0)
        ne = len(exp)
        base = Estimate("expected duration", float(exp.mean()) if ne else float("nan"), 0.0, ne,
                        total=float(exp.sum()), exact=exact_mean(float(exp.sum()), ne))
        comp = Comparison(metric, t, base, "paired", treated=s, differences=s.values - exp)
    elif ep.baseline == "did":
        base, c, gains = _did_estimate(metric, pre_metric, s, cohorts)
        comp = Comparison(metric, t, base, "gains", treated=s, compared=c, gains=gains)
    elif ep.baseline == "blended":
        # baselines._blended over the components' estimates
        ests: list[tuple[Decimal, Estimate]] = []
        for part in ep.components:
            if part.kind == "fixed":
                ests.append((part.weight, Estimate("fixed", float(part.value), 0.0, None, exact=part.value)))
            elif part.kind == "historical":
                v, k = float(part.value), part.hist_n
                if part.hist_sd is not None:
                    hse = part.hist_sd / math.sqrt(k)
                elif metric.type == "binary":
                    hse = math.sqrt(max(v * (1 - v), 0.0) / k)
                elif metric.type in ("event", "count"):
                    hse = math.sqrt(max(v, 0.0) / k)
                else:
                    hse = float("nan")
                ests.append((part.weight, Estimate("historical", v, hse, k, exact=part.value)))
            elif part.kind == "did":
                ests.append((part.weight, _did_estimate(metric, pre_metric, s, cohorts)[0]))
            else:
                c = participant_sample(metric, [(p[2], p[3], p[5]) for p in cohorts])
                ests.append((part.weight, Estimate("comparison", c.mean, c.se, c.n, exact=exact_mean(c.total, c.n))))
        value = sum(float(w) * e.value for w, e in ests)
        se = math.sqrt(sum((float(w) * e.se) ** 2 for w, e in ests))
        exacts = [e.exact for _, e in ests]
        exact = None if any(x is None for x in exacts) else sum(
            (w * x for (w, _), x in zip(ests, exacts) if x is not None), Decimal(0))
        base = Estimate("blended", value, se, None, exact=exact)
        comp = Comparison(metric, t, base, "wald", treated=s)
    else:
        c = participant_sample(metric, [(p[2], p[3], p[5]) for p in cohorts])
        base = Estimate("comparison", c.mean, c.se, c.n, sd=c.sd, total=c.total, exact=exact_mean(c.total, c.n))
        comp = Comparison(metric, t, base, "samples", treated=s, compared=c)
    n = int(t.n or 0)
    m, b = t.value, base.value
    test: TestResult | None = None
    alt: Alternative = ep.alternative  # type: ignore[assignment]
    if n == 0 or math.isnan(m) or math.isnan(b):
        point = None
    else:
        point = effect_measure(ep.measure, m, b)
        if ep.gate_level is not None:  # without a gate, the test only reports
            try:
                if level:
                    test = wald_z(m, t.se, 0.0, 0.0, alt, ep.confidence)
                else:
                    test = comp.test(ep.test, alt, ep.confidence)
            except (ValueError, ZeroDivisionError):
                test = None
    me, be = t.exact, base.exact
    if point is None:
        est = None
    elif me is not None and be is not None:
        est = effect_measure(ep.measure, me, be)
    else:  # pragma: no cover - both exact here
        est = to_decimal(point)
    paid: Decimal | None = est
    on_bound = False
    if ep.gate_level is not None:
        if ep.rule == "significant":
            paid = est if test is not None and test.p_value < ep.gate_level else None
        else:
            ci = _measure_ci(ep.measure, test, m, b) if test is not None else (None, None)
            paid = to_decimal(ci[0]) if test is not None and est is not None else None
            on_bound = True
    tot = to_decimal(t.total) if t.total is not None else None
    units, absolute = effect_units(ep.measure, paid, on_bound, tot, be, n)
    u = units if units is not None and units.is_finite() and units > 0 else Decimal(0)
    return ExactEffect(paid, u, absolute, n)


def _poisson_one_sample_p(k1: FloatArray, mu: FloatArray, alt: str) -> FloatArray | None:
    """One-sided p-values of the exact one-sample Poisson test (``stats.poisson_one_sample``)
    of ``k1`` events against ``mu`` expected, per world; None for a two-sided test, whose
    p-value scipy finds by search (those worlds are computed exactly)."""
    if alt == "greater":
        return np.asarray(_st.poisson.sf(k1 - 1, mu), dtype=np.float64)
    if alt == "less":
        return np.asarray(_st.poisson.cdf(k1, mu), dtype=np.float64)
    return None


def _pays(basis: str, value: Decimal, eff: ExactEffect, n: int, units: Decimal | None) -> Decimal:
    if basis == "amount":
        return value
    if basis == "per_participant":
        return value * n
    u = units if units is not None else eff.units
    return value * u


def exact_scope_amount(
    plan: Plan, sp: SchedPlan, label: str, x1: int, n1: int, x0: int, n0: int, n_rest: int = 0,
    parts: Parts | None = None,
) -> Decimal:
    """The rounded amount a schedule-based trigger is owed for one scope, exactly as
    :mod:`sib_engine.triggers` computes it (``n_rest``: for a pooled fallback, the
    participants of the cohorts without their own payment; ``parts``: the counts per
    cohort, where the gate's test reads the spread of per-participant values)."""
    mp = plan.metrics[sp.effect.metric]
    pre = plan.contract.metric(plan.metrics[sp.effect.pre].id) if sp.effect.pre >= 0 else None
    eff = exact_effect(sp.effect, mp.type, x1, n1, x0, n0, parts, plan.contract.metric(mp.id), pre)
    cur = plan.currency
    if sp.kind == "share_of_savings":
        raw = sp.share * eff.units * sp.unit_cost
    elif label == "pooled fallback":
        assert sp.fallback_schedule is not None
        value, _ = schedule_value(sp.fallback_schedule, eff.paid)
        if n_rest == 0:
            raw = Decimal(0)
        elif sp.fallback_pays == "amount":
            raw = value * n_rest / eff.n if eff.n else Decimal(0)
        else:
            a = eff.absolute
            u = (a * n_rest) if (a is not None and a.is_finite() and a > 0) else Decimal(0)
            raw = _pays(sp.fallback_pays, value, eff, n_rest, u)
    else:
        assert sp.schedule is not None
        value, _ = schedule_value(sp.schedule, eff.paid)
        raw = _pays(sp.pays, value, eff, eff.n, None)
    return round_money(raw, cur)


# ------------------------------------------------------------ vectorised scopes ---


@dataclass(frozen=True)
class GateResult:
    """A gate over many worlds: where it lets a payment through, the effect it pays on,
    and the worlds too close to a decision to trust float64."""

    open: BoolArray
    paid: FloatArray | None
    """Under ``lower_bound``: the lower confidence bound of the measure at the 12
    significant digits of :func:`sib_engine.stats.to_decimal` (NaN: none)."""
    near: BoolArray


def _spread(parts: Sequence[tuple[IntArray, IntArray, IntArray]], total: IntArray, n: IntArray,
            unit: float = 1.0, offsets: Sequence[FloatArray] | None = None) -> FloatArray:
    """The standard deviation (``n - 1``) of the per-participant values of a group over
    cohorts ``parts`` (total, size, spread), spread as :func:`participant_sample` spreads
    them (totals in units of ``unit``), less ``offsets`` (one per cohort, in the metric's
    own units) where given."""
    with np.errstate(all="ignore"):
        nf = n.astype(np.float64)
        m = total.astype(np.float64) / nf
        if offsets is not None:
            m = m - sum((k.astype(np.float64) * o / unit for (_, k, _), o in zip(parts, offsets)),
                        np.zeros_like(m)) / nf
        ss = np.zeros_like(m)
        for i, (x, k, sp) in enumerate(parts):
            off = offsets[i] / unit if offsets is not None else 0.0
            q = np.where(k > 0, x // np.maximum(k, 1), 0)
            r = x - q * k
            h = k // 2
            bps = np.sort(np.stack([r, h, 2 * h]), axis=0)
            lows = [np.zeros_like(k), bps[0], bps[1], bps[2]]
            highs = [bps[0], bps[1], bps[2], k]
            for lo, hi in zip(lows, highs):
                cnt = np.maximum(hi - lo, 0).astype(np.float64)
                v = q + (lo < r) + sp * (lo < h) - sp * ((lo >= h) & (lo < 2 * h))
                ss = ss + cnt * (v.astype(np.float64) - off - m) ** 2
        return np.asarray(np.where(nf > 1, np.sqrt(ss / (nf - 1)) * unit, np.nan), dtype=np.float64)


def _baseline_values(ep: EffectPlan, st: "ScopeStats", x0: FloatArray, n0: FloatArray,
                     n1: FloatArray) -> tuple[FloatArray, FloatArray]:
    """A difference-in-differences or blended baseline's value in every world (as
    ``baselines._comparison_group`` and ``_blended`` add it up), and the sum of the
    magnitudes of its terms (where the value is small against it, the terms cancel and
    the exact path's ``Decimal`` baseline may differ from float64 even in sign)."""
    n = len(x0)
    with np.errstate(all="ignore"):
        xp1 = sum((a[6] for a in st.parts), np.zeros(n, dtype=np.int64)).astype(np.float64)
        xp0 = sum((a[7] for a in st.parts), np.zeros(n, dtype=np.int64)).astype(np.float64)
        did = x0 / n0 + (xp1 / n1 - xp0 / n0)
        did_mag = np.abs(x0 / n0) + np.abs(xp1 / n1) + np.abs(xp0 / n0)
        if ep.baseline == "did":
            return did, did_mag
        values: list[FloatArray] = []
        mags: list[FloatArray] = []
        for part in ep.components:
            if part.kind in ("fixed", "historical"):
                values.append(np.full(n, float(part.value)))
                mags.append(np.abs(values[-1]))
            elif part.kind == "did":
                values.append(did)
                mags.append(did_mag)
            else:
                values.append(x0 / n0)
                mags.append(np.abs(values[-1]))
        total: FloatArray = np.zeros(n)
        mag: FloatArray = np.zeros(n)
        first = True
        for part, v, mg in zip(ep.components, values, mags):
            term = float(part.weight) * v
            total = term if first else total + term  # sum() starts from 0: 0 + x is x
            mag = mag + float(part.weight) * mg
            first = False
        return total, mag


def _se_of(mtype: str, total: FloatArray, n: FloatArray, parts: Sequence[tuple[IntArray, IntArray, IntArray]],
           unit: float = 1.0) -> FloatArray:
    """``metrics.Sample.se`` on arrays: binomial for a rate, ``sd / sqrt(n)`` otherwise."""
    with np.errstate(all="ignore"):
        if mtype == "binary":
            p = total / n
            return np.asarray(np.sqrt(p * (1 - p) / n), dtype=np.float64)
        nn = np.asarray(n, dtype=np.float64)
        sd = _spread(parts, np.rint(total / unit).astype(np.int64), nn.astype(np.int64), unit)
        return np.asarray(np.where(nn > 1, sd / np.sqrt(nn), np.nan), dtype=np.float64)


def _gain_spread(parts: Sequence[tuple[IntArray, IntArray, IntArray, IntArray]], total: IntArray,
                 n: IntArray) -> FloatArray:
    """The standard deviation (``n - 1``) of per-participant gains: a count spread by
    :func:`~sib_engine.simulation.world.continuous_values` (with the world's spread) less its
    pre-enrolment measure (spread evenly), over cohorts ``parts`` (post total, size, pre
    total, post spread)."""
    with np.errstate(all="ignore"):
        nf = n.astype(np.float64)
        m = total.astype(np.float64) / nf
        ss = np.zeros_like(m)
        for xa, k, xb, sa in parts:
            kk = np.maximum(k, 1)
            qa, qb = np.where(k > 0, xa // kk, 0), np.where(k > 0, xb // kk, 0)
            ra, rb = xa - qa * k, xb - qb * k
            h = k // 2
            bps = np.sort(np.stack([ra, rb, h, 2 * h]), axis=0)
            lows = [np.zeros_like(k), bps[0], bps[1], bps[2], bps[3]]
            highs = [bps[0], bps[1], bps[2], bps[3], k]
            for lo, hi in zip(lows, highs):
                cnt = np.maximum(hi - lo, 0).astype(np.float64)
                post = qa + (lo < ra) + sa * (lo < h) - sa * ((lo >= h) & (lo < 2 * h))
                v = post - (qb + (lo < rb))
                ss = ss + cnt * (v.astype(np.float64) - m) ** 2
        return np.asarray(np.where(nf > 1, np.sqrt(ss / (nf - 1)), np.nan), dtype=np.float64)


def _baseline_se(plan: Plan, ep: EffectPlan, st: "ScopeStats", x0: FloatArray, n0: FloatArray, n1: FloatArray,
                 unit: float) -> FloatArray:
    """The standard error of a difference-in-differences or blended baseline (as the
    exact path's estimators give it)."""
    mtype = plan.metrics[ep.metric].type
    p0s = [(a[2], a[3], a[5]) for a in st.parts]
    n = len(x0)
    with np.errstate(all="ignore"):
        se_c = _se_of(mtype, x0, n0, p0s, unit)
        if ep.pre >= 0:
            pre_type = plan.metrics[ep.pre].type
            xp1 = sum((a[6] for a in st.parts), np.zeros(n, dtype=np.int64)).astype(np.float64)
            xp0 = sum((a[7] for a in st.parts), np.zeros(n, dtype=np.int64)).astype(np.float64)
            se_tp = _se_of(pre_type, xp1, n1, [(a[6], a[1], 0 * a[1]) for a in st.parts])
            se_cp = _se_of(pre_type, xp0, n0, [(a[7], a[3], 0 * a[3]) for a in st.parts])
            se_did = np.where((n0 > 1) & (n1 > 1), np.sqrt(se_c**2 + se_tp**2 + se_cp**2), np.nan)
        else:
            se_did = np.full(n, np.nan)
        if ep.baseline == "did":
            return np.asarray(se_did, dtype=np.float64)
        acc: FloatArray = np.zeros(n)
        for part in ep.components:
            if part.kind == "fixed":
                se_i = np.zeros(n)
            elif part.kind == "historical":
                v, k = float(part.value), part.hist_n
                if part.hist_sd is not None:
                    se_i = np.full(n, part.hist_sd / math.sqrt(k))
                elif mtype == "binary":
                    se_i = np.full(n, math.sqrt(max(v * (1 - v), 0.0) / k))
                elif mtype in ("event", "count"):
                    se_i = np.full(n, math.sqrt(max(v, 0.0) / k))
                else:
                    se_i = np.full(n, np.nan)
            elif part.kind == "did":
                se_i = se_did
            else:
                se_i = se_c
            acc = acc + (float(part.weight) * se_i) ** 2
        return np.asarray(np.sqrt(acc), dtype=np.float64)


def _z_from(diff: FloatArray, se: FloatArray) -> FloatArray:
    """The statistic ``diff / se`` with the exact path's conventions for ``se = 0``."""
    with np.errstate(all="ignore"):
        return np.asarray(np.where(se > 0, diff / se, np.where(diff == 0, 0.0, np.copysign(np.inf, diff))),
                          dtype=np.float64)


def _p_from(stat: FloatArray, alternative: str, df: FloatArray | None = None) -> FloatArray:
    """``stats._p_from_z`` / ``_p_from_t`` on arrays (the same scipy functions)."""
    bad = np.isnan(stat) if df is None else (np.isnan(stat) | np.isnan(df))
    s = np.where(bad, 0.0, stat)
    dist: tuple[Callable[..., FloatArray], Callable[..., FloatArray]]
    if df is None:
        dist = (lambda x: _st.norm.sf(x), lambda x: _st.norm.cdf(x))
    else:
        d = np.where(bad, 1.0, df)
        dist = (lambda x: _st.t.sf(x, d), lambda x: _st.t.cdf(x, d))
    p: FloatArray
    if alternative == "greater":
        p = np.asarray(dist[0](s), dtype=np.float64)
    elif alternative == "less":
        p = np.asarray(dist[1](s), dtype=np.float64)
    else:
        p = np.asarray(2 * dist[0](np.abs(s)), dtype=np.float64)
    return np.asarray(np.where(bad, 1.0, p), dtype=np.float64)


def _log_ratio(m: FloatArray, b: FloatArray, se_m: FloatArray, se_b: FloatArray,
               confidence: float) -> tuple[FloatArray, FloatArray, BoolArray]:
    """``stats._log_ratio_ci`` on arrays: (low, high, defined)."""
    with np.errstate(all="ignore"):
        ok = (m > 0) & (b > 0)
        r = m / b
        se_log = np.sqrt((se_m / m) ** 2 + (se_b / b) ** 2)
        z = float(_st.norm.ppf(0.5 + confidence / 2))
        return r * np.exp(-z * se_log), r * np.exp(z * se_log), ok


def _twelve_digits(x: FloatArray, tol: FloatArray) -> tuple[FloatArray, BoolArray]:
    """``x`` at 12 significant digits (as :func:`sib_engine.stats.to_decimal`, read back as
    float64) and the worlds where ``x``, known to within ``tol``, is too close to a
    rounding tie (or to a power of ten, or to zero) to be sure of those digits."""
    with np.errstate(all="ignore"):
        ax = np.abs(x)
        ok = np.isfinite(x) & (ax > 0)
        lg = np.log10(np.where(ok, ax, 1.0))
        k = np.floor(lg).astype(np.int64) - 11
        near = ~ok | (np.abs(lg - np.rint(lg)) < 1e-9) | (k >= 0) | (k < -300)
        j = np.clip(-k, 1, 300)
        big = j > 22  # 10**j not exact: leave it to the exact path
        near |= big
        scale = 10.0 ** np.minimum(j, 22)
        scaled = x * scale
        frac = np.abs(scaled) - np.floor(np.abs(scaled))
        near |= np.abs(frac - 0.5) <= tol * scale + 1e-3
        out = np.rint(scaled) / scale
        return np.asarray(np.where(ok, out, x), dtype=np.float64), np.asarray(near, dtype=bool)


BOUND_TOL = 1e-14
"""Relative error (of the terms summed) within which a confidence bound of float64 may
differ from the exact path's own float computation of it."""


def gate_vec(plan: Plan, ep: EffectPlan, st: "ScopeStats", m: FloatArray, b: FloatArray) -> GateResult:
    """The gate of ``ep`` in every world, as ``baselines.compute_effect`` decides it with the
    test the contract names (the designs of ``baselines.Comparison.test``)."""
    assert ep.gate_level is not None
    mtype = plan.metrics[ep.metric].type
    unit = plan.metrics[ep.metric].unit
    level = ep.gate_level
    alt = ep.alternative
    conf = ep.confidence
    x1, n1 = np.asarray(st.x1 * unit, dtype=np.float64), st.n1.astype(np.float64)
    x0, n0 = np.asarray(st.x0 * unit, dtype=np.float64), st.n0.astype(np.float64)
    p1s = [(a[0], a[1], a[4]) for a in st.parts]
    p0s = [(a[2], a[3], a[5]) for a in st.parts]
    nw = len(x1)
    invalid = np.zeros(nw, dtype=bool)
    exact_all = np.zeros(nw, dtype=bool)
    zc = float(_st.norm.ppf(0.5 + conf / 2))
    df: FloatArray | None = None
    r_lo = r_hi = np.full(nw, np.nan)
    r_ok = np.zeros(nw, dtype=bool)
    p = np.ones(nw)
    lo = hi = np.full(nw, np.nan)
    mag = np.zeros(nw)
    with np.errstate(all="ignore"):
        if ep.baseline == "none":
            # the level against zero: wald_z(m, se, 0, 0) with the sample's standard error
            if mtype == "binary":
                se_m = np.sqrt(m * (1 - m) / n1)
            else:
                sd = _spread(p1s, st.x1, st.n1, unit)
                se_m = np.where(n1 > 1, sd / np.sqrt(n1), np.nan)
            se = np.sqrt(se_m**2 + 0.0**2)
            diff = m - 0.0
            stat = _z_from(diff, se)
            p = _p_from(stat, alt)
            lo, hi = diff - zc * se, diff + zc * se
            mag = np.abs(diff) + np.abs(zc * se)
            exact_all |= ~(se > 0)
        elif ep.baseline == "expected" and (ep.test == "poisson_rate_ratio" or (ep.test == "welch_t")):
            if ep.test == "poisson_rate_ratio":
                # poisson_one_sample(round(total), n, mean expected days)
                invalid |= n1 <= 0
                one_sided = _poisson_one_sample_p(np.round(x1), b * n1, alt)
                if one_sided is None:
                    exact_all[:] = True
                else:
                    p = one_sided
                if ep.rule != "significant":
                    exact_all[:] = True
                p = np.asarray(np.where(np.isnan(p), 1.0, p), dtype=np.float64)
            else:
                # paired: one_sample_t(mean difference + b, sd of the differences, n, b); with
                # fewer than two differences, the exact path's normal approximation
                offsets = [np.full(nw, _expected_days(ep, int(a[8][0]))) for a in st.parts]
                sd_d = _spread(p1s, st.x1, st.n1, unit, offsets)
                exp_sum = sum((a[1] * o for a, o in zip(st.parts, offsets)), np.zeros(nw))
                mean_d = (x1 - exp_sum) / n1
                paired = n1 > 1
                se = sd_d / np.sqrt(n1)
                df = n1 - 1
                diff = (mean_d + b) - b
                stat = _z_from(diff, se)
                tc = _st.t.ppf(0.5 + conf / 2, np.where(paired, df, 1.0))
                lo, hi = diff - tc * se, diff + tc * se
                r_ok = b != 0
                r_lo, r_hi = (b + lo) / b, (b + hi) / b
                mag = np.abs(mean_d) + np.abs(b) + np.abs(tc * se)
                mag = np.where(r_ok, mag / np.abs(b) + 1, mag)
                p = _p_from(stat, alt, df)
                exact_all |= ~paired | ~(se > 0)
        elif ep.baseline in ("blended", "expected") or (ep.baseline == "did" and ep.test != "welch_t"):
            # the normal approximation of the metric against the baseline (wald_z)
            se_m = _se_of(mtype, x1, n1, p1s, unit)
            se_b = _baseline_se(plan, ep, st, x0, n0, n1, unit) if ep.baseline != "expected" else np.zeros(nw)
            se = np.sqrt(se_m**2 + se_b**2)
            diff = m - b
            stat = _z_from(diff, se)
            p = _p_from(stat, alt)
            lo, hi = diff - zc * se, diff + zc * se
            r_lo, r_hi, r_ok = _log_ratio(m, b, se_m, se_b, conf)
            mag = np.abs(m) + np.abs(b) + np.abs(zc * se)
            mag = np.where(r_ok, np.abs(r_lo) + 1, mag)
            exact_all |= ~(se > 0)
        elif ep.baseline == "did":
            xp1 = sum((a[6] for a in st.parts), np.zeros(nw, dtype=np.int64))
            xp0 = sum((a[7] for a in st.parts), np.zeros(nw, dtype=np.int64))
            if ep.test == "welch_t":
                # Welch on per-participant gains (post - pre), where both groups have two or more
                gains = (n1 > 1) & (n0 > 1)
                g1 = _gain_spread([(a[0], a[1], a[6], a[4]) for a in st.parts], st.x1 - xp1, st.n1)
                g0 = _gain_spread([(a[2], a[3], a[7], a[5]) for a in st.parts], st.x0 - xp0, st.n0)
                v1, v0 = g1**2 / n1, g0**2 / n0
                se = np.sqrt(v1 + v0)
                diff = (st.x1 - xp1) / n1 - (st.x0 - xp0) / n0
                df = np.where(se == 0, n1 + n0 - 2, (v1 + v0) ** 2 / (v1**2 / (n1 - 1) + v0**2 / (n0 - 1)))
                stat = _z_from(diff, se)
                tc = _st.t.ppf(0.5 + conf / 2, np.where(~gains | np.isnan(df), 1.0, df))
                lo, hi = diff - tc * se, diff + tc * se
                r_ok = b != 0
                r_lo, r_hi = (b + lo) / b, (b + hi) / b
                mag = np.abs(diff) + np.abs(tc * se)
                mag = np.where(r_ok, mag / np.abs(b) + 1, mag)
                p = _p_from(stat, alt, df)
                exact_all |= gains & ~(se > 0)
                # without two gains a group, the exact path falls back to the normal approximation
                exact_all |= ~gains
        elif ep.test == "two_proportion_z":
            p1 = x1 / n1
            if ep.baseline == "fixed":
                p0 = b
                arg0 = p0 * (1 - p0) / n1
                se0 = np.sqrt(arg0)
                stat = _z_from(p1 - p0, se0)
                arg = p1 * (1 - p1) / n1
                se = np.sqrt(arg)
                invalid |= (arg0 < 0) | (arg < 0) | (n1 <= 0)
                lo, hi = (p1 - p0) - zc * se, (p1 - p0) + zc * se
                r_ok = p0 != 0
                r_lo, r_hi = (p0 + lo) / p0, (p0 + hi) / p0
                mag = np.abs(p1) + np.abs(p0) + np.abs(zc * se)
                mag = np.where(r_ok, mag / np.abs(p0) + 1, mag)
            else:
                if ep.baseline == "historical":
                    x0 = b * ep.hist_n
                    n0 = np.full_like(n1, float(ep.hist_n))
                p0 = x0 / n0
                pooled = (x1 + x0) / (n1 + n0)
                arg_t = pooled * (1 - pooled) * (1 / n1 + 1 / n0)
                stat = _z_from(p1 - p0, np.sqrt(arg_t))
                arg = p1 * (1 - p1) / n1 + p0 * (1 - p0) / n0
                se = np.sqrt(arg)
                lo, hi = (p1 - p0) - zc * se, (p1 - p0) + zc * se
                ratio = p1 / p0
                r_ok = (x1 > 0) & (x0 > 0) & np.isfinite(ratio)
                arg_k = (1 - p1) / x1 + (1 - p0) / x0
                invalid |= (arg_t < 0) | (arg < 0) | (r_ok & (arg_k < 0)) | (n1 <= 0) | (n0 <= 0)
                se_log = np.sqrt(arg_k)
                r_lo, r_hi = ratio * np.exp(-zc * se_log), ratio * np.exp(zc * se_log)
                mag = np.abs(p1) + np.abs(p0) + np.abs(zc * se)
                mag = np.where(r_ok, np.abs(r_lo) + 1, mag)
            p = _p_from(stat, alt)
        elif ep.test == "welch_t":
            sd1 = _spread(p1s, st.x1, st.n1, unit)
            if ep.baseline == "fixed":
                # one_sample_t(m, sd, n, b)
                invalid |= n1 < 2
                se = sd1 / np.sqrt(n1)
                df = n1 - 1
                diff = m - b
                stat = _z_from(diff, se)
                tc = _st.t.ppf(0.5 + conf / 2, np.where(invalid, 1.0, df))
                lo, hi = diff - tc * se, diff + tc * se
                r_ok = b != 0
                r_lo, r_hi = (b + lo) / b, (b + hi) / b
                mag = np.abs(m) + np.abs(b) + np.abs(tc * se)
                mag = np.where(r_ok, mag / np.abs(b) + 1, mag)
            else:
                if ep.baseline == "historical":
                    assert ep.hist_sd is not None
                    m0 = b
                    sd0 = np.full(nw, ep.hist_sd)
                    k0 = np.full(nw, float(ep.hist_n))
                else:
                    m0 = x0 / n0
                    sd0 = _spread(p0s, st.x0, st.n0, unit)
                    k0 = n0
                invalid |= (n1 < 2) | (k0 < 2)
                v1, v0 = sd1**2 / n1, sd0**2 / k0
                se = np.sqrt(v1 + v0)
                diff = m - m0
                df = np.where(se == 0, n1 + k0 - 2, (v1 + v0) ** 2 / (v1**2 / (n1 - 1) + v0**2 / (k0 - 1)))
                stat = _z_from(diff, se)
                tc = _st.t.ppf(0.5 + conf / 2, np.where(invalid | np.isnan(df), 1.0, df))
                lo, hi = diff - tc * se, diff + tc * se
                r_lo, r_hi, r_ok = _log_ratio(m, m0, np.sqrt(v1), np.sqrt(v0), conf)
                mag = np.abs(m) + np.abs(m0) + np.abs(tc * se)
                mag = np.where(r_ok, np.abs(r_lo) + 1, mag)
            exact_all |= ~(se > 0)
            p = _p_from(stat, alt, df)
        else:  # poisson_rate_ratio (exact tests: one-sided p-values on arrays, the rest exactly)
            k1 = np.round(x1)
            if ep.baseline == "fixed":
                invalid |= n1 <= 0
                one_sided = _poisson_one_sample_p(k1, b * n1, alt)
                if one_sided is None:
                    exact_all[:] = True
                else:
                    p = one_sided
            else:
                if ep.baseline == "historical":
                    k0 = np.full(nw, float(round(float(ep.value) * ep.hist_n)))
                    t0 = np.full(nw, float(ep.hist_n))
                else:
                    k0, t0 = np.round(x0), n0
                invalid |= (n1 <= 0) | (t0 <= 0)
                tot = k1 + k0
                p_null = n1 / (n1 + t0)
                if alt == "greater":
                    p = _st.binom.sf(k1 - 1, tot, p_null)
                elif alt == "less":
                    p = _st.binom.cdf(k1, tot, p_null)
                else:
                    exact_all[:] = True
                p = np.where(tot == 0, 1.0, p)
            if ep.rule != "significant":
                exact_all[:] = True
            p = np.asarray(np.where(np.isnan(p), 1.0, p), dtype=np.float64)
    near = exact_all.copy()
    if ep.rule == "significant":
        open_ = ~invalid & (p < level)
        near |= np.abs(p - level) <= P_TOL_TESTS * level
        return GateResult(np.asarray(open_, dtype=bool), None, near)
    # lower_bound: baselines._measure_ci, lower end
    meas = ep.measure
    with np.errstate(all="ignore"):
        if meas == "level":
            bound = lo + b
        elif meas == "difference":
            bound = lo
        elif meas == "reduction":
            bound = -hi
        else:
            rl = np.where(r_ok, r_lo, (b + lo) / b)
            rh = np.where(r_ok, r_hi, (b + hi) / b)
            defined = r_ok | (b != 0)
            bound = np.where(defined, rl - 1 if meas == "relative_difference" else 1 - rh, np.nan)
    bound = np.where(invalid, np.nan, bound)
    paid, near_d = _twelve_digits(bound, BOUND_TOL * mag)
    near |= near_d & ~np.isnan(bound)
    open_ = ~np.isnan(bound)
    return GateResult(np.asarray(open_, dtype=bool), np.asarray(paid, dtype=np.float64), near)


P_TOL_TESTS = 1e-9
"""Relative distance of a p-value from the gate's level within which a world is decided
exactly (the t-tests' spreads are summed in another order than numpy's)."""


def _schedule_f(s: Schedule, e: FloatArray) -> tuple[FloatArray, BoolArray]:
    """Schedule values at effects ``e`` (NaN: no effect) and the worlds too close to a
    schedule point to trust float."""
    pe = np.array([float(p.effect) for p in s.points])
    pv = np.array([float(p.value) for p in s.points])
    ok = ~np.isnan(e)
    ee = np.where(ok, e, pe[0] - 1.0)
    if s.interpolation == "step" or len(pe) == 1:
        idx = np.clip(np.searchsorted(pe, ee, side="right") - 1, 0, len(pe) - 1)
        v = pv[idx]
    else:
        idx = np.clip(np.searchsorted(pe, ee, side="right") - 1, 0, len(pe) - 2)
        ea, eb, va, vb = pe[idx], pe[idx + 1], pv[idx], pv[idx + 1]
        v = va + (vb - va) * (ee - ea) / (eb - ea)
        v = np.where(ee >= pe[-1], pv[-1], v)
    below = ~ok | (ee < pe[0])
    thresholds = list(pe)
    if s.minimum_effect is not None:
        below |= ee < float(s.minimum_effect)
        thresholds.append(float(s.minimum_effect))
    v = np.where(below, 0.0, v)
    if s.maximum is not None:
        v = np.minimum(v, float(s.maximum))
    near = np.zeros(e.shape, dtype=bool)
    for t in thresholds:
        near |= ok & (np.abs(ee - t) <= EFFECT_TOL * max(1.0, abs(t)))
    return np.asarray(v, dtype=np.float64), near


@dataclass(frozen=True)
class ScopeStats:
    x1: IntArray
    n1: IntArray
    x0: IntArray
    n0: IntArray
    parts: tuple[tuple[IntArray, IntArray, IntArray, IntArray, IntArray, IntArray, IntArray, IntArray, IntArray],
                 ...] = ()
    """Per cohort of the scope (x1, n1, x0, n0, s1, s0, p1, p0: see :data:`Parts`), where
    the gate's test reads the spread of the per-participant values, the metric is
    continuous or the baseline a difference in differences (:func:`needs_parts`); empty
    otherwise."""

    def columns(self) -> list[IntArray]:
        return [self.x1, self.n1, self.x0, self.n0] + [c for part in self.parts for c in part]


def needs_parts(plan: Plan, ep: EffectPlan) -> bool:
    """Whether the gate's test reads more than the scope's totals: a t-test, or the
    standard error of a count's level."""
    if plan.metrics[ep.metric].type == "continuous" or ep.baseline in ("did", "blended", "expected"):
        return True
    if ep.gate_level is None:
        return False
    if ep.baseline == "none":
        return plan.metrics[ep.metric].type != "binary"
    return ep.test == "welch_t"


def scope_amounts(
    plan: Plan, sp: SchedPlan, label: str, st: ScopeStats, memo: dict[tuple[object, ...], int],
    n_rest: IntArray | None = None,
) -> IntArray:
    """The rounded amount (minor units) of one scope of a schedule-based trigger in every
    world: float64, with :func:`exact_scope_amount` for the worlds near a decision."""
    ep = sp.effect
    n = st.x1.shape[0]
    base_cols = st.columns()
    cols = base_cols[:4] + ([n_rest] if n_rest is not None else []) + base_cols[4:]
    np_ = len(st.parts)

    def exact_row(row: list[int]) -> int:
        """The exact amount of one world's counts (``x1, n1, x0, n0, n_rest, parts...``), memoised."""
        key = (sp.index, sp.version, label == "pooled fallback", *row)
        got = memo.get(key)
        if got is None:
            flat = row[5:]
            parts = tuple((flat[9 * i], flat[9 * i + 1], flat[9 * i + 2], flat[9 * i + 3], flat[9 * i + 4],
                           flat[9 * i + 5], flat[9 * i + 6], flat[9 * i + 7], flat[9 * i + 8]) for i in range(np_))
            amt = exact_scope_amount(plan, sp, label, row[0], row[1], row[2], row[3], row[4], parts or None)
            got = int(amt.scaleb(plan.minor))
            memo[key] = got
        return got

    if n and all(int(c.min()) == int(c.max()) for c in cols):
        # the same counts in every world (e.g. nothing measured yet): one exact amount
        first = [int(c[0]) for c in cols]
        row = first[:4] + ([first[4]] if n_rest is not None else [0]) + first[4 + (n_rest is not None):]
        return np.full(n, exact_row(row), dtype=np.int64)
    unit = plan.metrics[ep.metric].unit
    x1, n1 = np.asarray(st.x1 * unit, dtype=np.float64), st.n1.astype(np.float64)
    x0, n0 = np.asarray(st.x0 * unit, dtype=np.float64), st.n0.astype(np.float64)
    on_bound = ep.gate_level is not None and ep.rule == "lower_bound"
    with np.errstate(all="ignore"):
        m = x1 / n1
        if ep.baseline == "none":
            b = np.zeros(n)
        elif ep.baseline in ("fixed", "historical"):
            b = np.full(n, float(ep.value))
        elif ep.baseline in ("did", "blended"):
            b, b_mag = _baseline_values(ep, st, x0, n0, n1)
        elif ep.baseline == "expected":
            # the mean expected days; the exact path reads their sum at 12 digits
            exp_sum = np.asarray(sum((a[1] * _expected_days(ep, int(a[8][0])) for a in st.parts), np.zeros(n)),
                                 dtype=np.float64)
            b_test = exp_sum / n1
            s12, near_b = _twelve_digits(exp_sum, 1e-13 * np.abs(exp_sum))
            b = s12 / n1
        else:
            b = x0 / n0
        valid = (st.n1 > 0) & ~np.isnan(b)
        meas = ep.measure
        if meas == "level":
            e = m
        elif meas == "difference":
            e = m - b
        elif meas == "reduction":
            e = b - m
        else:
            valid &= b != 0
            e = (m - b) / b if meas == "relative_difference" else (b - m) / b
        near = np.zeros(n, dtype=bool)
        if ep.baseline == "expected":
            near |= valid & near_b
        if ep.baseline in ("did", "blended"):
            near |= (st.n1 > 0) & (np.abs(b) <= 1e-9 * b_mag)  # terms that cancel: decide exactly
        if ep.gate_level is not None:
            g = gate_vec(plan, ep, st, m, b_test if ep.baseline == "expected" else b)
            near |= g.near & valid  # a world without an effect to measure pays nothing either way
            valid &= g.open
            if g.paid is not None:
                e = g.paid
                near |= valid & ~np.isfinite(e)
        e = np.where(valid, e, np.nan)
        # units of effect over all participants (never below 0), where the payment uses them
        need_units = sp.kind == "share_of_savings" or sp.pays == "per_unit" or (
            label == "pooled fallback" and sp.fallback_pays == "per_unit")
        units = np.zeros(n)
        absolute = np.zeros(n)
        if need_units and on_bound:
            # the paid effect per participant (relative measures times the baseline), x n
            if ep.baseline == "comparison":
                be = x0 / n0
            else:
                be = b
            absolute = np.where(valid, e * be if meas.startswith("relative") else e, 0.0)
            units = np.where(valid & (absolute > 0), absolute * n1, 0.0)
        elif need_units:
            if ep.baseline == "comparison":
                be_n = (x0 * n1) / n0
            else:
                be_n = b * n1
            if meas == "level":
                units = x1
            elif meas in ("difference", "relative_difference"):
                units = x1 - be_n
            else:
                units = be_n - x1
            units = np.where(valid & (units > 0), units, 0.0)
            absolute = units / n1  # units > 0 exactly when the absolute effect is
        if sp.kind == "share_of_savings":
            raw = float(sp.share) * units * float(sp.unit_cost)
        elif label == "pooled fallback":
            assert sp.fallback_schedule is not None and n_rest is not None
            value, near_s = _schedule_f(sp.fallback_schedule, e)
            near |= near_s
            nr = n_rest.astype(np.float64)
            if sp.fallback_pays == "amount":
                raw = np.where(n1 > 0, value * nr / n1, 0.0)
            elif sp.fallback_pays == "per_participant":
                raw = value * nr
            else:
                raw = value * np.where(absolute > 0, absolute * nr, 0.0)
            raw = np.where(nr > 0, raw, 0.0)
        else:
            assert sp.schedule is not None
            value, near_s = _schedule_f(sp.schedule, e)
            near |= near_s
            if sp.pays == "amount":
                raw = value
            elif sp.pays == "per_participant":
                raw = value * n1
            else:
                raw = value * units
    q = 10.0 ** plan.minor
    scaled = raw * q
    frac = scaled - np.floor(scaled)
    near |= np.abs(frac - 0.5) <= CENT_TOL + 8 * np.finfo(np.float64).eps * np.abs(scaled)
    near |= ~np.isfinite(scaled)
    out = np.floor(np.where(np.isfinite(scaled), scaled, 0.0) + 0.5).astype(np.int64)
    idx = np.flatnonzero(near)
    if idx.size:
        rest = n_rest if n_rest is not None else np.zeros(n, dtype=np.int64)
        sel = [c[idx] for c in base_cols[:4]] + [rest[idx]] + [c[idx] for c in base_cols[4:]]
        packed, radix = _pack(sel)
        if packed is not None and (packed == packed[0]).all():
            inv = np.zeros(len(idx), dtype=np.intp)
            rows = [[int(c[0]) for c in sel]]
        elif packed is not None:
            uniq, first_i, inv = np.unique(packed, return_index=True, return_inverse=True)
            rows = [[int(c[j]) for c in sel] for j in first_i]
        else:  # counts beyond what one int64 key holds
            u2, inv = np.unique(np.stack(sel, axis=1), axis=0, return_inverse=True)
            rows = u2.tolist()
        vals = np.array([exact_row(r) for r in rows], dtype=np.int64)
        out[idx] = vals[np.asarray(inv).reshape(-1)]
    return out


def _pack(cols: list[IntArray]) -> tuple[IntArray | None, list[int]]:
    """Columns of non-negative integers packed into one int64 key (None if they do not fit)."""
    radix = [int(c.max()) + 1 if len(c) else 1 for c in cols]
    total = 1
    for r in radix:
        total *= r
    if total >= 2**62:
        return None, radix
    key = np.zeros(len(cols[0]), dtype=np.int64)
    for c, r in zip(cols, radix):
        key = key * r + c
    return key, radix


# ---------------------------------------------------------------------- caps ---


def running_cap(a: IntArray, cap: int, axis: int = 1) -> IntArray:
    """What each column (in order along ``axis``) is paid under a running cap, per world:
    after each column the total paid is the lesser of the total owed so far and the cap
    (:func:`sib_engine.payments.running_cap`)."""
    if a.shape[axis] == 0:
        return a
    total = np.minimum(np.cumsum(a, axis=axis), cap)
    out = np.diff(total, axis=axis, prepend=0)
    return np.asarray(out, dtype=np.int64)


# ----------------------------------------------------------------- one group ---


@dataclass
class PaymentResult:
    """Payment lines of a set of worlds, summed: per determination, trigger and payer."""

    lines: IntArray
    """(n, determinations, triggers, payers) positive line amounts in minor units."""
    lines_neg: IntArray
    """(n, determinations, triggers, payers) negative line amounts (clawbacks, true-downs)."""
    pos: IntArray
    """(n, determinations, payers) sum of the positive lines."""
    neg: IntArray
    """(n, determinations, payers) sum of the negative lines (as a negative number)."""
    steps: IntArray | None = None
    """(n, determinations, share-step triggers, periods, payers) the positive lines of each
    ``share_of_savings`` trigger with ``share_steps`` (:func:`~sib_engine.simulation.plan.share_step_triggers`),
    one per key as the exact path makes them: the waterfall rescales each line on its own."""


@dataclass(frozen=True)
class _Block:
    day: int
    kind: int
    trig: int
    outc: int
    cohort: int
    det: int
    period: int
    metric: int = -1
    price: int = 0
    units_cap: int | None = None


def _scope_labels(plan: Plan, sp: SchedPlan) -> list[str]:
    labels: list[str] = []
    for d in plan.dets:
        for label, _ in sp.scopes(len(plan.cohorts), d, len(plan.dets)):
            if label not in labels:
                labels.append(label)
    return labels


def _card_blocks(plan: Plan, delay: int) -> list[_Block]:
    """Rate-card blocks that are payable at all (window, term, periods, prerequisites)."""
    t = plan.timing(delay)
    first_day = int(plan.period_starts[0])
    data_days = np.array([d.data_day for d in plan.dets], dtype=np.int64)
    last_day = int(data_days.max())
    out: list[_Block] = []
    nc = len(plan.cohorts)
    for card in plan.cards:
        # validity per (metric, cohort), prerequisites recursively, as rate_card_claims
        card_reqs: dict[int, set[int]] = {}
        for o in card.outcomes:
            card_reqs.setdefault(o.metric, set()).update(o.requires)
        cache: dict[tuple[int, int], bool] = {}

        def valid(mi: int, c: int, depth: int = 0) -> bool:
            key = (mi, c)
            got = cache.get(key)
            if got is not None:
                return got
            day = int(t.measure_day[mi, c])
            sg = plan.segments[plan.segment_of(day)] if plan.segments else None
            term_start, term_end = (sg.term_start_day, sg.term_end_day) if sg else (
                plan.term_start_day, plan.term_end_day)
            ok = first_day <= day <= last_day and term_start <= day <= term_end \
                and bool(t.window_ok[mi, c]) and day >= int(t.enrol_day[c]) and (sg is None or sg.cohorts[c])
            metric_reqs = set(_contract_requires(plan, mi)) | card_reqs.get(mi, set())
            for r in metric_reqs:
                ok = ok and depth < 32 and valid(r, c, depth + 1) and int(t.measure_day[r, c]) <= day
            cache[key] = ok
            return ok

        for oi, o in enumerate(card.outcomes):
            for c in range(nc):
                if not valid(o.metric, c):
                    continue
                day = int(t.measure_day[o.metric, c])
                det = int(np.searchsorted(data_days, day, side="left"))
                period = int(np.searchsorted(plan.period_starts, day, side="right") - 1)
                price = o.price_on(plan.segment_of(day)) if o.seg_price_units else o.price_units
                out.append(_Block(day, 0, card.index, oi, c, det, period, o.metric, price))
    return out


def _contract_requires(plan: Plan, mi: int) -> tuple[int, ...]:
    mid = plan.metrics[mi].id
    m = plan.contract.metric(mid)
    return tuple(plan.metric_index(r) for r in m.requires)


def payments(plan: Plan, world: World, memo: dict[tuple[object, ...], int]) -> PaymentResult:
    """The payment lines of every world (grouped by start delay: same dates, same order)."""
    n = world.n
    K, T, P = len(plan.dets), len(plan.trigger_ids), len(plan.payers)
    lines = np.zeros((n, K, T, P), dtype=np.int64)
    lines_neg = np.zeros((n, K, T, P), dtype=np.int64)
    pos = np.zeros((n, K, P), dtype=np.int64)
    neg = np.zeros((n, K, P), dtype=np.int64)
    steps = _step_lines(plan, n)
    for d in np.unique(world.delay):
        rows = np.flatnonzero(world.delay == d)
        sub = world.take(rows) if len(rows) < n else world
        r = _group(plan, sub, int(d), memo)
        lines[rows], lines_neg[rows], pos[rows], neg[rows] = r.lines, r.lines_neg, r.pos, r.neg
        if steps is not None and r.steps is not None:
            steps[rows] = r.steps
    return PaymentResult(lines, lines_neg, pos, neg, steps)


def _step_lines(plan: Plan, n: int) -> IntArray | None:
    """Zeros for :attr:`PaymentResult.steps` (share-of-savings lines), or None without share steps."""
    st = share_step_triggers(plan)
    if not st:
        return None
    return np.zeros((n, len(plan.dets), len(st), len(plan.period_starts), len(plan.payers)), dtype=np.int64)


def _record_step(plan: Plan, steps: IntArray | None, k: int, key: tuple[int, int, int], up: IntArray) -> None:
    """A share-of-savings trigger's positive line (``up``: worlds x payers) of one key."""
    if steps is None:
        return
    st = share_step_triggers(plan)
    if key[1] in st:
        steps[:, k, st.index(key[1]), key[0], :] += up


def _group(plan: Plan, w: World, delay: int, memo: dict[tuple[object, ...], int]) -> PaymentResult:
    n = w.n
    t = plan.timing(delay)
    K, T, P = len(plan.dets), len(plan.trigger_ids), len(plan.payers)
    nc = len(plan.cohorts)
    up = 10 ** (plan.scale - plan.minor)
    blocks: list[_Block] = _card_blocks(plan, delay)
    amounts: list[IntArray] = []
    units: list[IntArray] = []
    res: list[IntArray] = []  # payers by residence: each block's weight of each municipality
    nm = len(plan.metrics)
    g = math.gcd(*[b.price for b in blocks]) or 1
    for b in blocks:
        u = w.x_t[:, b.metric, b.cohort]
        units.append(u)
        amounts.append(u * b.price)
        if plan.munis:  # what is paid for the residents among those with the outcome
            res.append(w.mu[:, b.metric, b.cohort, :] * (b.price // g))
    # schedule-based triggers: amounts at each determination, cumulative, then the changes
    for signed_sp in plan.scheds:
        labels = _scope_labels(plan, signed_sp)
        before: dict[str, IntArray] = {}
        prev_stats: dict[str, tuple[int, tuple[IntArray, ...]]] = {}
        for det in plan.dets:
            sp = plan.sched_at(signed_sp, det)  # the trigger's terms in force at the determination
            scopes = sp.scopes(nc, det, K)
            per_cohort: dict[int, IntArray] = {}
            for label, cohorts in scopes:
                st = _stats(plan, w, t, sp, det, cohorts)
                n_rest = None
                if label == "pooled fallback":
                    n_rest = np.zeros(n, dtype=np.int64)
                    for c in cohorts:
                        n_rest += np.where(per_cohort[c] <= 0, _members(w, t, det, (c,)), 0)
                key_stats = tuple(st.columns()) + ((n_rest,) if n_rest is not None else ())
                prev = prev_stats.get(label)
                if prev is not None and prev[0] == sp.version and len(prev[1]) == len(key_stats) and all(
                        np.array_equal(a, b) for a, b in zip(prev[1], key_stats)):
                    amt = before[label]  # nothing new to read under the same terms: the same amount
                else:
                    amt = scope_amounts(plan, sp, label, st, memo, n_rest)
                prev_stats[label] = (sp.version, key_stats)
                if label.startswith("c") and label[1:].isdigit():
                    per_cohort[int(label[1:])] = amt
                change = amt - before.get(label, np.zeros(n, dtype=np.int64))
                before[label] = amt
                blocks.append(_Block(det.data_day, 1, sp.index, labels.index(label), -1, det.index, det.period))
                amounts.append(change * up)
                units.append(np.zeros(n, dtype=np.int64))
                if plan.munis:  # the scope's members by municipality (a pooled fallback's: of the
                    # cohorts without their own payment, as it pays for them)
                    res.append(sum((w.mu[:, nm, c, :] * (per_cohort[c] <= 0)[:, None] if n_rest is not None
                                    else w.mu[:, nm, c, :] for c in cohorts if t.enrol_day[c] <= det.cutoff_day),
                                   np.zeros((n, len(plan.munis)), dtype=np.int64)))
    order = sorted(range(len(blocks)), key=lambda i: (blocks[i].day, blocks[i].kind, blocks[i].trig,
                                                      blocks[i].outc, blocks[i].cohort))
    blocks = [blocks[i] for i in order]
    # blocks x worlds: a block's amounts are contiguous
    A = np.stack([amounts[i] for i in order]) if blocks else np.zeros((0, n), dtype=np.int64)
    U = np.stack([units[i] for i in order]) if blocks else np.zeros((0, n), dtype=np.int64)
    if plan.cap_views:  # the caps in force at each determination (running caps: a prefix is capped alike)
        capped = [_apply_caps(view, blocks, A, U) for view in plan.cap_views]
        return _determinations(plan, blocks, capped[0], w.n, capped)
    A = _apply_caps(plan, blocks, A, U)
    return _determinations(plan, blocks, A, w.n, residents=[res[i] for i in order] if plan.munis else None)


def _members(w: World, t: "object", det: DetPlan, cohorts: Sequence[int]) -> IntArray:
    enrol = getattr(t, "enrol_day")
    out = np.zeros(w.n, dtype=np.int64)
    for c in cohorts:
        if enrol[c] <= det.cutoff_day:
            out += w.n_t[:, c]
    return out


def _stats(plan: Plan, w: World, t: "object", sp: SchedPlan, det: DetPlan, cohorts: Sequence[int]) -> ScopeStats:
    enrol = getattr(t, "enrol_day")
    meas = getattr(t, "measure_day")
    wok = getattr(t, "window_ok")
    mi = sp.effect.metric
    n = w.n
    x1 = np.zeros(n, dtype=np.int64)
    n1 = np.zeros(n, dtype=np.int64)
    x0 = np.zeros(n, dtype=np.int64)
    n0 = np.zeros(n, dtype=np.int64)
    parts: list[tuple[IntArray, IntArray, IntArray, IntArray, IntArray, IntArray, IntArray, IntArray, IntArray]] = []
    pre = sp.effect.pre
    horizon = sp.effect.horizon if sp.effect.baseline == "expected" else 0
    split = needs_parts(plan, sp.effect)
    measured_only = plan.metrics[mi].type == "continuous"  # no measurement: not in the sample
    zero = np.zeros(n, dtype=np.int64)
    for c in cohorts:
        if enrol[c] > det.cutoff_day:
            continue
        seen = bool(meas[mi, c] <= det.cutoff_day and wok[mi, c])
        if horizon:  # counted over the horizon from enrolment (its last day included)
            seen = seen and bool(meas[mi, c] <= enrol[c] + horizon)
        k1 = w.n_t[:, c] if seen or not measured_only else zero
        k0 = w.n_c[:, c] if seen or not measured_only else zero
        n1 += k1
        n0 += k0
        if seen:
            x1 += w.x_t[:, mi, c]
            x0 += w.x_c[:, mi, c]
        if split:
            parts.append((w.x_t[:, mi, c] if seen else zero, k1, w.x_c[:, mi, c] if seen else zero, k0,
                          w.s_t[:, mi, c] if seen else zero, w.s_c[:, mi, c] if seen else zero,
                          w.x_t[:, pre, c] if pre >= 0 else zero, w.x_c[:, pre, c] if pre >= 0 else zero,
                          np.full(n, int(det.cutoff_day - enrol[c]), dtype=np.int64)))
    return ScopeStats(x1, n1, x0, n0, tuple(parts))


def _apply_caps(plan: Plan, blocks: list[_Block], A: IntArray, U: IntArray) -> IntArray:
    """The caps on rows, in order, on ``A`` (blocks x worlds)."""
    A = A.copy()
    if not blocks:
        return A
    is_claim = np.array([b.kind == 0 for b in blocks])
    trig = np.array([b.trig for b in blocks])
    outc = np.array([b.outc for b in blocks])
    period = np.array([b.period for b in blocks])
    price = np.array([b.price for b in blocks], dtype=np.int64)
    cards = {c.index: c for c in plan.cards}
    # outcome cap_units, then cap_amount
    for ti, one in cards.items():
        for oi, o in enumerate(one.outcomes):
            cols = np.flatnonzero(is_claim & (trig == ti) & (outc == oi))
            if not len(cols):
                continue
            if o.cap_units is not None:
                u = U[cols]
                cum_before = np.cumsum(u, axis=0) - u
                paid_units = np.clip(o.cap_units - cum_before, 0, u)
                A[cols] = paid_units * price[cols][:, None]
            if o.cap_amount is not None:
                A[cols] = running_cap(A[cols], o.cap_amount, axis=0)
    # per participant: each card's cap_per_participant, then caps.per_participant (the plan
    # refuses a binding caps.per_participant behind a rate card's period or total cap)
    pp_cards = {cd.index: cd.cap_participant for cd in plan.cards if cd.cap_participant is not None}
    if pp_cards or plan.cap_participant is not None:
        cohort = np.array([b.cohort for b in blocks])
        A = participant_caps(A, is_claim, trig, cohort, price, pp_cards, plan.cap_participant)
    # trigger caps: per period, then in all
    sched_caps = {sp.index: sp for sp in plan.scheds}
    for ti in range(len(plan.trigger_ids)):
        card = cards.get(ti)
        if card is not None and card.cap_period is not None:
            for p in np.unique(period[trig == ti]):
                cols = np.flatnonzero((trig == ti) & (period == p))
                A[cols] = running_cap(A[cols], card.cap_period, axis=0)
        cap = _trigger_cap(plan, ti) if (card is not None or ti in sched_caps) else None
        if cap is not None:
            cols = np.flatnonzero(trig == ti)
            A[cols] = running_cap(A[cols], cap, axis=0)
    if plan.cap_period is not None:
        for p in np.unique(period):
            cols = np.flatnonzero(period == p)
            A[cols] = running_cap(A[cols], plan.cap_period, axis=0)
    return A


def participant_caps(A: IntArray, is_claim: BoolArray, trig: IntArray, cohort: IntArray, price: IntArray,
                     per_card: dict[int, int], per_contract: int | None) -> IntArray:
    """Per-participant running caps on the claim blocks (blocks x worlds, in row order).

    A world holds counts, not participants; the participants are nevertheless determined:
    of a cohort, participant ``j`` has an outcome when ``j`` is below the count (those
    with an outcome are nested within those with its prerequisites, as
    :func:`~sib_engine.simulation.exact.world_data` writes them out), and the caps before
    these (``cap_units``, ``cap_amount``) take rows in participant order, so a block's
    rows after them are ``F`` full prices, then one row of ``R`` (the rest), then nothing
    (``F, R = divmod(amount, price)``).  The breakpoints ``F`` and ``F + 1`` of a cohort's
    blocks, sorted per world, cut its participants into segments whose members have the
    same rows in every block; each segment's rows are capped as one participant's (a
    running cap over its rows in row order) and counted as often as it has members.
    """
    A = A.copy()
    if not is_claim.any():
        return A
    for c in np.unique(cohort[is_claim]):
        rows = np.flatnonzero(is_claim & (cohort == c))
        k = len(rows)
        pr = price[rows][:, None]
        amount = A[rows]
        full = np.where(pr > 0, amount // np.maximum(pr, 1), 0)
        rest = amount - full * pr
        bps = np.sort(np.concatenate([full, full + 1]), axis=0)  # (2k, n)
        starts = np.concatenate([np.zeros((1, bps.shape[1]), dtype=np.int64), bps[:-1]], axis=0)
        size = bps - starts
        j = starts[:, None, :]
        seg = np.where(j < full[None], pr[None], np.where(j == full[None], rest[None], 0))  # (2k, k, n)
        groups: list[tuple[list[int], int]] = []
        for ti, cap in per_card.items():
            cols = [b for b in range(k) if trig[rows[b]] == ti]
            if cols:
                groups.append((cols, cap))
        if per_contract is not None:
            groups.append((list(range(k)), per_contract))
        for cols, cap in groups:
            paid = np.minimum(np.cumsum(seg[:, cols, :], axis=1), cap)
            seg[:, cols, :] = np.diff(paid, axis=1, prepend=0)
        A[rows] = np.einsum("iw,ibw->bw", size, seg)
    return A


def _trigger_cap(plan: Plan, ti: int) -> int | None:
    t = plan.contract.triggers[ti]
    if t.cap is None:
        return None
    return int(t.cap.scaleb(plan.scale))


# ------------------------------------------------------------- determinations ---


def _half_up_div(x: IntArray, d: int) -> IntArray:
    """``x / d`` rounded half away from zero (``d > 0``), exactly."""
    if d == 1:
        return x
    mag = (2 * np.abs(x) + d) // (2 * d)
    return np.asarray(np.sign(x) * mag, dtype=np.int64)


def _rational(d: Decimal) -> tuple[int, int]:
    """``d`` as ``(numerator, 10**k)``."""
    k = max(0, -int(d.as_tuple().exponent))
    return int(d.scaleb(k)), 10**k


def allocate_int(amount: IntArray, shares: Sequence[Decimal]) -> IntArray:
    """``money.allocate`` of ``amount`` (minor units, per world) by ``shares`` adding up to
    exactly 1: floors, then the leftover units to the largest remainders (ties to the
    earlier share).  Shape (n, len(shares))."""
    k = max(max(0, -int(s.as_tuple().exponent)) for s in shares)
    q = 10**k
    p = np.array([int(s.scaleb(k)) for s in shares], dtype=np.int64)
    mag = np.abs(amount)[:, None]
    prod = mag * p[None, :]
    floors = prod // q
    rem = prod % q
    left = mag[:, 0] - floors.sum(axis=1)
    # rank of each share: larger remainder first, ties to the earlier share
    n_sh = len(shares)
    rank = np.zeros_like(rem)
    for i in range(n_sh):
        for j in range(n_sh):
            if j == i:
                continue
            rank[:, i] += (rem[:, j] > rem[:, i]) | ((rem[:, j] == rem[:, i]) & (j < i))
    parts = floors + (rank < left[:, None])
    return np.asarray(np.sign(amount)[:, None] * parts, dtype=np.int64)


def allocate_weights(amount: IntArray, weights: IntArray, currency: str, minor: int) -> IntArray:
    """``money.allocate`` of ``amount`` (minor units, per world) by integer ``weights`` (n,
    k) per world, among the parts of nonzero weight (as ``payments.split_among_payers``
    by residence): floors, then the leftover units to the largest remainders (ties to the
    earlier part).  A world whose weights are all zero gets nothing.  Shape (n, k).

    Remainders are compared exactly in integers; where two are equal, ``money.allocate``
    compares them as its 28-digit ``Decimal`` quotients, whose rounding depends on the
    size of each part (a tie need not stay a tie), so those worlds are split by
    ``money.allocate`` itself."""
    n, k = weights.shape
    total = weights.sum(axis=1)
    safe = np.maximum(total, 1)[:, None]
    mag = np.abs(amount)[:, None]
    prod = mag * weights
    floors = prod // safe
    rem = prod % safe
    left = mag[:, 0] - floors.sum(axis=1)
    # larger remainder first, ties to the earlier part; parts of zero weight last
    key = np.where(weights > 0, -rem * (k + 1) + np.arange(k)[None, :], np.iinfo(np.int64).max)
    order = np.argsort(key, axis=1, kind="stable")
    rank = np.empty_like(order)
    np.put_along_axis(rank, order, np.broadcast_to(np.arange(k), (n, k)), axis=1)
    parts = np.where(total[:, None] > 0, floors + (rank < left[:, None]), 0)
    out = np.asarray(np.sign(amount)[:, None] * parts, dtype=np.int64)
    live = (weights > 0) & (rem > 0)
    srt = np.sort(np.where(live, rem, -1 - np.arange(k)[None, :]), axis=1)
    tied = np.flatnonzero((left > 0) & (srt[:, 1:] == srt[:, :-1]).any(axis=1))
    for i in tied:  # the exact path's own Decimal split
        nz = np.flatnonzero(weights[i] > 0)
        got = allocate(Decimal(int(amount[i])).scaleb(-minor), [Decimal(int(x)) for x in weights[i, nz]], currency)
        out[i] = 0
        out[i, nz] = [int(g.scaleb(minor)) for g in got]
    return out


def _determinations(plan: Plan, blocks: list[_Block], A: IntArray, n: int,
                    by_view: Sequence[IntArray] = (), residents: Sequence[IntArray] | None = None) -> PaymentResult:
    """Per determination, what each payer owes per key and the lines that changes make
    (``A``: capped amounts, blocks x worlds; ``by_view``: the amounts capped by each of
    ``plan.cap_views``, where amendments change the caps; ``residents``: for payers by
    residence, each block's weight of each municipality, worlds x municipalities).  Arrays
    are kept with the worlds last, so that each key's amounts are contiguous."""
    K, T, P = len(plan.dets), len(plan.trigger_ids), len(plan.payers)
    down = 10 ** (plan.scale - plan.minor)
    # keys (trigger, outcome, period) in the order (period, trigger, outcome)
    keys = sorted({(b.period, b.trig, b.outc) for b in blocks})
    key_index = {k: i for i, k in enumerate(keys)}
    nk = len(keys)
    key_trig = [k[1] for k in keys]
    sched = {sp.index for sp in plan.scheds}
    primary = [i for i, p in enumerate(plan.payers) if p.mode == "share"]
    tops = [i for i, p in enumerate(plan.payers) if p.mode == "top_up"]
    shares = [plan.payers[i].share for i in primary]
    coupled = (len(primary) != 1 or bool(tops) or any(p.cap is not None for p in plan.payers)
               or plan.cap_total is not None or bool(by_view) or residents is not None)
    # payers by residence: municipality -> primary payer (0/1), and each key's weights
    owner = np.array([[code in plan.payers[i].residence for i in primary] for code in plan.munis],
                     dtype=np.int64).reshape(len(plan.munis), len(primary))
    key_w = np.zeros((nk, n, len(primary)), dtype=np.int64)
    # a schedule-based trigger's keys of one scope, in period order: split cumulatively
    groups: dict[tuple[int, int], list[int]] = {}
    for j, (period, trig, outc) in enumerate(keys):
        if trig in sched:
            groups.setdefault((trig, outc), []).append(j)
    grouped = {j for js in groups.values() for j in js}
    lines = np.zeros((n, K, T, P), dtype=np.int64)
    lines_neg = np.zeros((n, K, T, P), dtype=np.int64)
    pos = np.zeros((n, K, P), dtype=np.int64)
    neg = np.zeros((n, K, P), dtype=np.int64)
    steps = _step_lines(plan, n)
    if not coupled:
        return _single_payer(plan, blocks, A, keys, key_index, primary[0], lines, lines_neg, pos, neg, steps)
    sums = np.zeros((nk, n), dtype=np.int64)
    ledger = np.zeros((nk, P, n), dtype=np.int64)
    by_det: dict[int, list[int]] = {}
    for col, b in enumerate(blocks):
        by_det.setdefault(b.det, []).append(col)
    view = -1
    for det in plan.dets:
        k = det.index
        if by_view and plan.det_cap_view[k] != view:
            # other caps in force: every row so far, capped by them
            view = plan.det_cap_view[k]
            A = by_view[view]
            sums = np.zeros((nk, n), dtype=np.int64)
            for kk in range(k):
                for col in by_det.get(kk, []):
                    sums[key_index[(blocks[col].period, blocks[col].trig, blocks[col].outc)]] += A[col]
        cap_total = plan.caps_at(k).cap_total
        cols = by_det.get(k, [])
        changed: list[int] = []
        for col in cols:
            j = key_index[(blocks[col].period, blocks[col].trig, blocks[col].outc)]
            sums[j] += A[col]
            if residents is not None:  # a rate card's rows add up; a scope's members are the latest
                by_payer = residents[col] @ owner
                key_w[j] = key_w[j] + by_payer if j not in grouped else by_payer
            if j not in changed:
                changed.append(j)
        amount = _half_up_div(sums, down)
        # the split among the primary payers (as evaluation._Run._splits)
        parts = np.zeros((nk, len(primary), n), dtype=np.int64)
        for j in range(nk):
            if j not in grouped:
                parts[j] = (_split(amount[j], shares) if residents is None
                            else allocate_weights(amount[j], key_w[j], plan.currency, plan.minor)).T
        for js in groups.values():
            cum = np.zeros(n, dtype=np.int64)
            prev = np.zeros((len(primary), n), dtype=np.int64)
            wts = np.zeros((n, len(primary)), dtype=np.int64)
            for j in js:
                cum = cum + amount[j]
                if residents is None:
                    now = _split(cum, shares).T
                else:  # a scope left without participants keeps its split
                    wts = np.where((key_w[j].sum(axis=1) > 0)[:, None], key_w[j], wts)
                    now = allocate_weights(cum, wts, plan.currency, plan.minor).T
                parts[j] = now - prev
                prev = now
        # payer caps, then the contract's total cap over every part (key, then payer order)
        for pi, i in enumerate(primary):
            cap = plan.payers[i].cap
            if cap is not None:
                parts[:, pi, :] = running_cap(parts[:, pi, :], cap, axis=0)
        if cap_total is not None:
            flat = parts.reshape(nk * len(primary), n)
            parts = running_cap(flat, cap_total, axis=0).reshape(nk, len(primary), n)
        ents = np.zeros((nk, P, n), dtype=np.int64)
        ents[:, primary, :] = parts
        primary_by_key = parts.sum(axis=1)
        for i in tops:
            num, den = _rational(plan.payers[i].share)
            ents[:, i, :] = _half_up_div(primary_by_key * num, den)
            cap = plan.payers[i].cap
            if cap is not None:
                ents[:, i, :] = running_cap(ents[:, i, :], cap, axis=0)
        delta = ents - ledger
        ledger = ents
        up = np.maximum(delta, 0)
        dn = np.minimum(delta, 0)
        pos[:, k, :] = up.sum(axis=0).T
        neg[:, k, :] = dn.sum(axis=0).T
        for j in range(nk):
            lines[:, k, key_trig[j], :] += up[j].T
            lines_neg[:, k, key_trig[j], :] += dn[j].T
            _record_step(plan, steps, k, keys[j], up[j].T)
    return PaymentResult(lines, lines_neg, pos, neg, steps)


def _single_payer(plan: Plan, blocks: list[_Block], A: IntArray, keys: list[tuple[int, int, int]],
                  key_index: dict[tuple[int, int, int], int], payer: int, lines: IntArray, lines_neg: IntArray,
                  pos: IntArray, neg: IntArray, steps: IntArray | None = None) -> PaymentResult:
    """One payer, no payer caps, no top-ups, no total cap: a key's amount changes only at the
    determinations that bring it new rows, and each change is a line."""
    down = 10 ** (plan.scale - plan.minor)
    before: dict[int, IntArray] = {}
    by_det: dict[int, list[int]] = {}
    for col, b in enumerate(blocks):
        by_det.setdefault(b.det, []).append(col)
    running: dict[int, IntArray] = {}
    for det in plan.dets:
        changed: dict[int, None] = {}
        for col in by_det.get(det.index, []):
            j = key_index[(blocks[col].period, blocks[col].trig, blocks[col].outc)]
            running[j] = running[j] + A[col] if j in running else A[col]
            changed[j] = None
        for j in changed:
            amt = _half_up_div(running[j], down)
            delta = amt - before[j] if j in before else amt
            before[j] = amt
            up_, down_ = np.maximum(delta, 0), np.minimum(delta, 0)
            t = keys[j][1]
            lines[:, det.index, t, payer] += up_
            lines_neg[:, det.index, t, payer] += down_
            pos[:, det.index, payer] += up_
            neg[:, det.index, payer] += down_
            if steps is not None:
                one = np.zeros((up_.shape[0], len(plan.payers)), dtype=np.int64)
                one[:, payer] = up_
                _record_step(plan, steps, det.index, keys[j], one)
    return PaymentResult(lines, lines_neg, pos, neg, steps)


def _split(amount: IntArray, shares: Sequence[Decimal]) -> IntArray:
    if len(shares) == 1:
        return amount[:, None].copy()
    return allocate_int(amount, shares)


Memo = dict[tuple[object, ...], int]
StatsFn = Callable[..., ScopeStats]
