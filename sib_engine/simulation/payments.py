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
formulas; a world whose effect lies within ``1e-9`` of a schedule point or the minimum
effect, whose p-value lies within ``1e-10`` (relative) of the gate's level, or whose amount
lies within ``1e-6`` cent (plus float error) of half a cent, is recomputed in ``Decimal``
by :func:`exact_scope_amount`, which follows ``baselines.compute_effect``,
``triggers.schedule_value`` and ``money.round_money`` step by step (memoised by its inputs:
the counts of the scope).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Decimal
from typing import Callable, Sequence

import numpy as np
import numpy.typing as npt
from scipy import special

from sib_engine.baselines import effect_measure, exact_mean
from sib_engine.contract import Schedule
from sib_engine.money import round_money
from sib_engine.simulation.plan import DetPlan, EffectPlan, Plan, SchedPlan
from sib_engine.simulation.world import World
from sib_engine.stats import one_proportion_z, to_decimal, two_proportion_z
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


def exact_effect(ep: EffectPlan, mtype: str, x1: int, n1: int, x0: int, n0: int) -> ExactEffect:
    """``baselines.compute_effect`` for a scope whose treated participants have ``x1`` in
    all (``n1`` of them) and whose comparison group ``x0`` (``n0``)."""
    total = float(x1)
    m = total / n1 if n1 else math.nan
    me = exact_mean(total, n1)
    if ep.baseline == "none":
        b, be = 0.0, Decimal(0)
    elif ep.baseline in ("fixed", "historical"):
        b, be = float(ep.value), ep.value
    else:
        b = float(x0) / n0 if n0 else math.nan
        be = exact_mean(float(x0), n0)  # type: ignore[assignment]
    if n1 == 0 or math.isnan(m) or math.isnan(b):
        return ExactEffect(None, Decimal(0), None, n1)
    point = effect_measure(ep.measure, m, b)
    gate_open = True
    if ep.gate_level is not None:
        p = _p_value(ep, mtype, total, n1, b, float(x0), n0)
        gate_open = p is not None and p < ep.gate_level
    if point is None:
        est = None
    elif me is not None and be is not None:
        est = effect_measure(ep.measure, me, be)
    else:  # pragma: no cover - both exact here
        est = to_decimal(point)
    paid = est if gate_open else None
    units: Decimal | None = None
    absolute: Decimal | None = None
    tot = to_decimal(total)
    if paid is not None and paid.is_finite() and tot is not None and be is not None:
        if ep.measure == "level":
            units = tot
        elif ep.measure in ("difference", "relative_difference"):
            units = tot - be * n1
        else:
            units = be * n1 - tot
        absolute = units / n1 if n1 else None
    u = units if units is not None and units.is_finite() and units > 0 else Decimal(0)
    return ExactEffect(paid, u, absolute, n1)


def _p_value(ep: EffectPlan, mtype: str, x1: float, n1: int, b: float, x0: float, n0: int) -> float | None:
    alt = ep.alternative
    try:
        if ep.baseline == "fixed":
            r = one_proportion_z(x1, n1, b, alt, ep.confidence)  # type: ignore[arg-type]
        elif ep.baseline == "historical":
            r = two_proportion_z(x1, n1, b * ep.hist_n, ep.hist_n, alt, ep.confidence)  # type: ignore[arg-type]
        else:
            r = two_proportion_z(x1, n1, x0, n0, alt, ep.confidence)  # type: ignore[arg-type]
    except (ValueError, ZeroDivisionError):
        return None
    return r.p_value


def _pays(basis: str, value: Decimal, eff: ExactEffect, n: int, units: Decimal | None) -> Decimal:
    if basis == "amount":
        return value
    if basis == "per_participant":
        return value * n
    u = units if units is not None else eff.units
    return value * u


def exact_scope_amount(
    plan: Plan, sp: SchedPlan, label: str, x1: int, n1: int, x0: int, n0: int, n_rest: int = 0,
) -> Decimal:
    """The rounded amount a schedule-based trigger is owed for one scope, exactly as
    :mod:`sib_engine.triggers` computes it (``n_rest``: for a pooled fallback, the
    participants of the cohorts without their own payment)."""
    mtype = plan.metrics[sp.effect.metric].type
    eff = exact_effect(sp.effect, mtype, x1, n1, x0, n0)
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


def _p_values(ep: EffectPlan, x1: FloatArray, n1: FloatArray, b: FloatArray, x0: FloatArray,
              n0: FloatArray) -> FloatArray:
    """p-values of the gate's test, with the exact path's float operations in its order."""
    with np.errstate(all="ignore"):
        p1 = x1 / n1
        if ep.baseline == "fixed":
            p0 = b
            se0 = np.sqrt(p0 * (1 - p0) / n1)
            z = np.where(se0 > 0, (p1 - p0) / se0, np.where(p1 == p0, 0.0, np.copysign(np.inf, p1 - p0)))
        else:
            if ep.baseline == "historical":
                x0 = b * ep.hist_n
                n0 = np.full_like(n1, float(ep.hist_n))
            p0 = x0 / n0
            pooled = (x1 + x0) / (n1 + n0)
            se = np.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n0))
            z = np.where(se > 0, (p1 - p0) / se, np.where(p1 == p0, 0.0, np.copysign(np.inf, p1 - p0)))
        if ep.alternative == "greater":
            p = special.ndtr(-z)
        elif ep.alternative == "less":
            p = special.ndtr(z)
        else:
            p = 2 * special.ndtr(-np.abs(z))
        return np.asarray(np.where(np.isnan(z), 1.0, p), dtype=np.float64)


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


def scope_amounts(
    plan: Plan, sp: SchedPlan, label: str, st: ScopeStats, memo: dict[tuple[object, ...], int],
    n_rest: IntArray | None = None,
) -> IntArray:
    """The rounded amount (minor units) of one scope of a schedule-based trigger in every
    world: float64, with :func:`exact_scope_amount` for the worlds near a decision."""
    ep = sp.effect
    n = st.x1.shape[0]
    cols = [st.x1, st.n1, st.x0, st.n0] + ([n_rest] if n_rest is not None else [])
    if n and all(int(c.min()) == int(c.max()) for c in cols):
        # the same counts in every world (e.g. nothing measured yet): one exact amount
        row = [int(c[0]) for c in cols] + ([0] if n_rest is None else [])
        key = (sp.index, label == "pooled fallback", *row)
        got = memo.get(key)
        if got is None:
            got = int(exact_scope_amount(plan, sp, label, *row).scaleb(plan.minor))
            memo[key] = got
        return np.full(n, got, dtype=np.int64)
    x1, n1 = st.x1.astype(np.float64), st.n1.astype(np.float64)
    x0, n0 = st.x0.astype(np.float64), st.n0.astype(np.float64)
    with np.errstate(all="ignore"):
        m = x1 / n1
        if ep.baseline == "none":
            b = np.zeros(n)
        elif ep.baseline in ("fixed", "historical"):
            b = np.full(n, float(ep.value))
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
        if ep.gate_level is not None:
            p = _p_values(ep, x1, n1, b, x0, n0)
            valid &= p < ep.gate_level
            near |= np.abs(p - ep.gate_level) <= P_TOL * ep.gate_level
        e = np.where(valid, e, np.nan)
        # units of effect over all participants (never below 0), where the payment uses them
        need_units = sp.kind == "share_of_savings" or sp.pays == "per_unit" or (
            label == "pooled fallback" and sp.fallback_pays == "per_unit")
        units = np.zeros(n)
        if need_units:
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
                absolute = units / n1  # units > 0 exactly when the absolute effect is
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
        cols = [st.x1[idx], st.n1[idx], st.x0[idx], st.n0[idx], rest[idx]]
        packed, radix = _pack(cols)
        if packed is not None and (packed == packed[0]).all():
            inv = np.zeros(len(idx), dtype=np.intp)
            rows = [[int(c[0]) for c in cols]]
        elif packed is not None:
            uniq, first, inv = np.unique(packed, return_index=True, return_inverse=True)
            rows = [[int(c[j]) for c in cols] for j in first]
        else:  # pragma: no cover - counts beyond 2**12 per column in five columns
            u2, inv = np.unique(np.stack(cols, axis=1), axis=0, return_inverse=True)
            rows = u2.tolist()
        vals = np.empty(len(rows), dtype=np.int64)
        for j, row in enumerate(rows):
            key = (sp.index, label == "pooled fallback", *row)
            got = memo.get(key)
            if got is None:
                amt = exact_scope_amount(plan, sp, label, row[0], row[1], row[2], row[3], row[4])
                got = int(amt.scaleb(plan.minor))
                memo[key] = got
            vals[j] = got
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
            ok = first_day <= day <= last_day and plan.term_start_day <= day <= plan.term_end_day \
                and bool(t.window_ok[mi, c]) and day >= int(t.enrol_day[c])
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
                out.append(_Block(day, 0, card.index, oi, c, det, period, o.metric, o.price_units))
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
    for d in np.unique(world.delay):
        rows = np.flatnonzero(world.delay == d)
        sub = world.take(rows) if len(rows) < n else world
        r = _group(plan, sub, int(d), memo)
        lines[rows], lines_neg[rows], pos[rows], neg[rows] = r.lines, r.lines_neg, r.pos, r.neg
    return PaymentResult(lines, lines_neg, pos, neg)


def _group(plan: Plan, w: World, delay: int, memo: dict[tuple[object, ...], int]) -> PaymentResult:
    n = w.n
    t = plan.timing(delay)
    K, T, P = len(plan.dets), len(plan.trigger_ids), len(plan.payers)
    nc = len(plan.cohorts)
    up = 10 ** (plan.scale - plan.minor)
    blocks: list[_Block] = _card_blocks(plan, delay)
    amounts: list[IntArray] = []
    units: list[IntArray] = []
    for b in blocks:
        u = w.x_t[:, b.metric, b.cohort]
        units.append(u)
        amounts.append(u * b.price)
    # schedule-based triggers: amounts at each determination, cumulative, then the changes
    for sp in plan.scheds:
        labels = _scope_labels(plan, sp)
        before: dict[str, IntArray] = {}
        prev_stats: dict[str, tuple[IntArray, ...]] = {}
        for det in plan.dets:
            scopes = sp.scopes(nc, det, K)
            per_cohort: dict[int, IntArray] = {}
            for label, cohorts in scopes:
                st = _stats(plan, w, t, sp, det, cohorts)
                n_rest = None
                if label == "pooled fallback":
                    members = [_members(w, t, det, (c,)) for c in range(nc)]
                    n_rest = np.zeros(n, dtype=np.int64)
                    for c in range(nc):
                        n_rest += np.where(per_cohort[c] <= 0, members[c], 0)
                key_stats = (st.x1, st.n1, st.x0, st.n0) + ((n_rest,) if n_rest is not None else ())
                prev = prev_stats.get(label)
                if prev is not None and len(prev) == len(key_stats) and all(
                        np.array_equal(a, b) for a, b in zip(prev, key_stats)):
                    amt = before[label]  # nothing new to read: the same amount
                else:
                    amt = scope_amounts(plan, sp, label, st, memo, n_rest)
                prev_stats[label] = key_stats
                if label.startswith("c") and label[1:].isdigit():
                    per_cohort[int(label[1:])] = amt
                change = amt - before.get(label, np.zeros(n, dtype=np.int64))
                before[label] = amt
                blocks.append(_Block(det.data_day, 1, sp.index, labels.index(label), -1, det.index, det.period))
                amounts.append(change * up)
                units.append(np.zeros(n, dtype=np.int64))
    order = sorted(range(len(blocks)), key=lambda i: (blocks[i].day, blocks[i].kind, blocks[i].trig,
                                                      blocks[i].outc, blocks[i].cohort))
    blocks = [blocks[i] for i in order]
    # blocks x worlds: a block's amounts are contiguous
    A = np.stack([amounts[i] for i in order]) if blocks else np.zeros((0, n), dtype=np.int64)
    U = np.stack([units[i] for i in order]) if blocks else np.zeros((0, n), dtype=np.int64)
    A = _apply_caps(plan, blocks, A, U)
    return _determinations(plan, blocks, A, w.n)


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
    for c in cohorts:
        if enrol[c] > det.cutoff_day:
            continue
        n1 += w.n_t[:, c]
        n0 += w.n_c[:, c]
        if meas[mi, c] <= det.cutoff_day and wok[mi, c]:
            x1 += w.x_t[:, mi, c]
            x0 += w.x_c[:, mi, c]
    return ScopeStats(x1, n1, x0, n0)


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


def _determinations(plan: Plan, blocks: list[_Block], A: IntArray, n: int) -> PaymentResult:
    """Per determination, what each payer owes per key and the lines that changes make
    (``A``: capped amounts, blocks x worlds).  Arrays are kept with the worlds last, so that
    each key's amounts are contiguous."""
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
               or plan.cap_total is not None)
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
    if not coupled:
        return _single_payer(plan, blocks, A, keys, key_index, primary[0], lines, lines_neg, pos, neg)
    sums = np.zeros((nk, n), dtype=np.int64)
    ledger = np.zeros((nk, P, n), dtype=np.int64)
    by_det: dict[int, list[int]] = {}
    for col, b in enumerate(blocks):
        by_det.setdefault(b.det, []).append(col)
    for det in plan.dets:
        k = det.index
        cols = by_det.get(k, [])
        changed: list[int] = []
        for col in cols:
            j = key_index[(blocks[col].period, blocks[col].trig, blocks[col].outc)]
            sums[j] += A[col]
            if j not in changed:
                changed.append(j)
        amount = _half_up_div(sums, down)
        # the split among the primary payers (as evaluation._Run._splits)
        parts = np.zeros((nk, len(primary), n), dtype=np.int64)
        for j in range(nk):
            if j not in grouped:
                parts[j] = _split(amount[j], shares).T
        for js in groups.values():
            cum = np.zeros(n, dtype=np.int64)
            prev = np.zeros((len(primary), n), dtype=np.int64)
            for j in js:
                cum = cum + amount[j]
                now = _split(cum, shares).T
                parts[j] = now - prev
                prev = now
        # payer caps, then the contract's total cap over every part (key, then payer order)
        for pi, i in enumerate(primary):
            cap = plan.payers[i].cap
            if cap is not None:
                parts[:, pi, :] = running_cap(parts[:, pi, :], cap, axis=0)
        if plan.cap_total is not None:
            flat = parts.reshape(nk * len(primary), n)
            parts = running_cap(flat, plan.cap_total, axis=0).reshape(nk, len(primary), n)
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
    return PaymentResult(lines, lines_neg, pos, neg)


def _single_payer(plan: Plan, blocks: list[_Block], A: IntArray, keys: list[tuple[int, int, int]],
                  key_index: dict[tuple[int, int, int], int], payer: int, lines: IntArray, lines_neg: IntArray,
                  pos: IntArray, neg: IntArray) -> PaymentResult:
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
    return PaymentResult(lines, lines_neg, pos, neg)


def _split(amount: IntArray, shares: Sequence[Decimal]) -> IntArray:
    if len(shares) == 1:
        return amount[:, None].copy()
    return allocate_int(amount, shares)


Memo = dict[tuple[object, ...], int]
StatsFn = Callable[..., ScopeStats]
