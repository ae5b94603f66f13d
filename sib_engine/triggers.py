"""Payment triggers: what each kind of trigger is owed, before caps (layer 2).

Each trigger kind of the contract language (``contract.TRIGGER_KINDS``) has one rule,
registered in :data:`RULES`:

``rate_card``
    a price per verified outcome event (:func:`rate_card_claims`, vectorised over the
    records): an event counts on or after enrolment, within the metric's attribution
    window, within the term and the measurement periods, for an eligible treatment
    participant of a cohort in force on the event's date, once its prerequisites (the
    rate card's ``requires`` and the metric's own ``requires``) were achieved on or before
    its date, and while the participant has claims left (``max_claims``, in date order).
    Price, claim limit, prerequisites and cohorts are the terms in force on the event's
    date, so an amended price applies to events from the amendment's date.
``threshold``
    the effect maps through the schedule to a value; ``pays``: ``amount`` (the value
    itself), ``per_participant`` (value x participants in scope) or ``per_unit`` (value x
    units of effect, i.e. the effect per participant in the metric's units x
    participants); ``scope``: ``pooled`` or ``per_cohort``.
``cohort_with_pooled_fallback``
    each cohort's effect maps through the per-cohort schedule; at the fallback
    determination (the final one unless named) the pooled effect of all cohorts maps
    through the fallback schedule, paid for the cohorts that did not trigger their own
    payment (``per_participant``/``per_unit`` over their participants; ``amount`` pro rata
    to their share of the participants).
``share_of_savings``
    share x units avoided x unit cost, units avoided = the effect per participant x
    participants (never below 0); the share is the last ``share_steps`` entry whose
    ``after_return`` the funders' achieved return has reached (an input of the
    evaluation), else ``share``.
``banded_return``
    the effect maps through the bands to the investors' annual return rate for the named
    tranches; the minimum coupon applies until its date.  No money flows here: the rate is
    recorded as a determination with its trace (the waterfall pays it).

Schedules (:func:`schedule_value`): below ``minimum_effect`` and below the first point the
value is 0; ``step`` takes the value of the last point at or below the effect;
``linear`` interpolates between the surrounding points; above the last point the value
stays at the last one; ``maximum`` caps it.  Every amount is rounded once, by
:func:`sib_engine.money.round_money`, and the trace records the unrounded figure.

Each determination re-determines the cumulative amount of every schedule-based trigger
from all data up to its cutoff; what was determined before is deducted where the
payments are assembled (:mod:`sib_engine.evaluation`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from sib_engine.baselines import EffectResult, Scope, compute_effect, show
from sib_engine.contract import (
    BandedReturnTrigger,
    CohortTrigger,
    Contract,
    PaysBasis,
    RateCardTrigger,
    Schedule,
    ShareOfSavingsTrigger,
    ThresholdTrigger,
    Trigger,
)
from sib_engine.metrics import TREATMENT, MeasuredData, day_of
from sib_engine.money import format_money, round_money
from sib_engine.trace import Trace, cite, cite_if_amended

ZERO = Decimal(0)
NEVER = np.iinfo(np.int64).max


# ---------------------------------------------------------------------- schedules ---


def schedule_value(s: Schedule, effect: Decimal | None, unit: str = "") -> tuple[Decimal, Trace]:
    """The schedule's value at ``effect``, with how it was read."""
    pts = s.points
    if effect is None:
        return ZERO, Trace("schedule", "no effect to read: 0")
    if s.minimum_effect is not None and effect < s.minimum_effect:
        return ZERO, Trace("schedule", f"effect {_e(effect)} is below the minimum effect {s.minimum_effect}: 0")
    if effect < pts[0].effect:
        return ZERO, Trace("schedule", f"effect {_e(effect)} is below the first tier ({pts[0].effect}): 0")
    if s.interpolation == "linear" and effect >= pts[-1].effect:
        value = pts[-1].value
        how = f"linear: effect {_e(effect)} is at or above the last point ({pts[-1].effect}): {value}{unit}"
    elif s.interpolation == "step":
        i = max(j for j, p in enumerate(pts) if p.effect <= effect)
        value = pts[i].value
        how = f"step: effect {_e(effect)} reaches the tier from {pts[i].effect}: {value}{unit}"
    else:
        i = max(j for j, p in enumerate(pts) if p.effect <= effect)
        a, b = pts[i], pts[i + 1]
        value = a.value + (b.value - a.value) * (effect - a.effect) / (b.effect - a.effect)
        how = (
            f"linear between ({a.effect}, {a.value}) and ({b.effect}, {b.value}) at effect {_e(effect)}: "
            f"{a.value} + ({b.value} - {a.value}) x ({_e(effect)} - {a.effect}) / ({b.effect} - {a.effect}) = {_e(value)}{unit}"
        )
    if value == 0:
        value = ZERO
    kids: tuple[Trace, ...] = ()
    if s.maximum is not None and value > s.maximum:
        kids = (Trace("maximum", f"{_e(value)} capped at {s.maximum}"),)
        value = s.maximum
    return value, Trace("schedule", how, None, kids)


def _e(x: Decimal) -> str:
    return show(x)


# ---------------------------------------------------------------- determinations ---


@dataclass(frozen=True, eq=False)
class Context:
    """One determination, as the trigger rules see it."""

    md: MeasuredData
    terms: Contract
    """The terms in force at the end of the determination's period."""
    determination: str
    period_end: date
    cutoff_day: int
    is_final: bool
    funders_return: Decimal | None = None

    @property
    def currency(self) -> str:
        return self.terms.currency

    @property
    def cohorts(self) -> tuple[str, ...]:
        return tuple(c.id for c in self.terms.timeline.cohorts)

    def scope(self, cohorts: Sequence[str], label: str) -> Scope:
        return Scope(self.md, self.terms, self.cutoff_day, frozenset(cohorts), label)


@dataclass(frozen=True, eq=False)
class ScopeAmount:
    """What a schedule-based trigger is owed, cumulatively, for one scope, before caps."""

    trigger: str
    scope: str
    amount: Decimal
    """Rounded to the currency's minor unit."""
    unrounded: Decimal
    units: Decimal | None
    members: np.ndarray
    """Participant numbers the amount is for (weights a split by residence)."""
    trace: Trace
    clause: str
    effect: EffectResult | None = None


@dataclass(frozen=True, eq=False)
class RateDetermination:
    """A return rate set by an outcome band (the money flows in the waterfall)."""

    determination: str
    trigger: str
    tranches: tuple[str, ...]
    rate: Decimal
    effect: EffectResult
    trace: Trace
    clause: str


@dataclass(frozen=True, eq=False)
class RuleResult:
    amounts: tuple[ScopeAmount, ...] = ()
    rates: tuple[RateDetermination, ...] = ()


def _members(scope: Scope) -> np.ndarray:
    return np.flatnonzero(scope.members(TREATMENT))


def _pays(
    basis: PaysBasis, value: Decimal, eff: EffectResult, n: int, units: Decimal | None, currency: str
) -> tuple[Decimal, Decimal | None, Trace]:
    if basis == "amount":
        return value, None, Trace("pays", f"the amount {format_money(value, currency)}")
    if basis == "per_participant":
        raw = value * n
        return raw, Decimal(n), Trace("pays", f"{value} per participant x {n} participant(s) = {_e(raw)}")
    u = units if units is not None else eff.units
    raw = value * u
    return raw, u, Trace(
        "pays", f"{value} per unit x {_e(u)} unit(s) ({show(eff.absolute)} per participant x {eff.n}) = {_e(raw)}"
    )


def _rounded(raw: Decimal, currency: str) -> tuple[Decimal, Trace]:
    r = round_money(raw, currency)
    if r == raw:
        return r, Trace("rounding", f"none needed ({raw:f})")
    return r, Trace("rounding", f"{raw:f} -> {r:f} (half away from zero, to the minor unit)")


def _amended(tr: Trace, t: Trigger, ctx: Context, *parts: str) -> Trace:
    """``tr`` citing the amendment that changed the trigger's ``parts``, if one did."""
    by = cite_if_amended(ctx.terms, t.clause, *(f"triggers.{t.id}.{p}" for p in parts))
    return tr if by is None else Trace(tr.label, tr.value, by, tr.children)


def _amount(
    t: Trigger, scope: str, raw: Decimal, units: Decimal | None, members: np.ndarray,
    parts: list[Trace], ctx: Context, eff: EffectResult | None,
) -> ScopeAmount:
    amt, rtrace = _rounded(raw, ctx.currency)
    clause = cite(ctx.terms, t.clause, f"triggers.{t.id}") or t.clause
    if eff is not None and parts and parts[0].label.startswith("effect:"):
        parts = [_amended(parts[0], t, ctx, "effect")] + parts[1:]
    tr = Trace(f"{t.id} ({scope}) at {ctx.determination}", format_money(amt, ctx.currency), clause,
               tuple(parts) + (rtrace,))
    return ScopeAmount(t.id, scope, amt, raw, units, members, tr, clause, eff)


def _threshold(t: Trigger, ctx: Context) -> RuleResult:
    assert isinstance(t, ThresholdTrigger)
    scopes = [(f"cohort {c}", [c]) for c in ctx.cohorts] if t.scope == "per_cohort" else [("pooled", list(ctx.cohorts))]
    out = []
    for label, cohorts in scopes:
        sc = ctx.scope(cohorts, label)
        eff = compute_effect(t.effect, ctx.terms, sc)
        value, st = schedule_value(t.schedule, eff.paid_effect)
        raw, units, pt = _pays(t.pays, value, eff, eff.n, None, ctx.currency)
        parts = [eff.trace(), _amended(st, t, ctx, "schedule"), _amended(pt, t, ctx, "pays")]
        out.append(_amount(t, label, raw, units, _members(sc), parts, ctx, eff))
    return RuleResult(tuple(out))


def _cohort(t: Trigger, ctx: Context) -> RuleResult:
    assert isinstance(t, CohortTrigger)
    out = []
    untriggered: list[str] = []
    for c in ctx.cohorts:
        label = f"cohort {c}"
        sc = ctx.scope([c], label)
        eff = compute_effect(t.effect, ctx.terms, sc)
        value, st = schedule_value(t.per_cohort.schedule, eff.paid_effect)
        raw, units, pt = _pays(t.per_cohort.pays, value, eff, eff.n, None, ctx.currency)
        parts = [eff.trace(), _amended(st, t, ctx, "per_cohort"), pt]
        a = _amount(t, label, raw, units, _members(sc), parts, ctx, eff)
        out.append(a)
        if a.amount <= 0:
            untriggered.append(c)
    named = t.fallback_determination
    if (named is None and ctx.is_final) or named == ctx.determination:
        label = "pooled fallback"
        sc = ctx.scope(list(ctx.cohorts), label)
        eff = compute_effect(t.effect, ctx.terms, sc)
        value, st = schedule_value(t.pooled_fallback.schedule, eff.paid_effect)
        rest = ctx.scope(untriggered, "cohorts without their own payment")
        members = _members(rest)
        n_rest = len(members)
        parts = [eff.trace(), _amended(st, t, ctx, "pooled_fallback")]
        if not untriggered:
            raw, units = ZERO, None
            parts.append(Trace("pays", "every cohort triggered its own payment: the fallback pays nothing"))
        else:
            parts.append(Trace("cohorts without their own payment", ", ".join(untriggered) + f" ({n_rest} participant(s))"))
            basis = t.pooled_fallback.pays
            if basis == "amount":
                raw = value * n_rest / eff.n if eff.n else ZERO
                units = None
                parts.append(Trace("pays", f"the amount {value} x {n_rest} / {eff.n} participant(s) (pro rata) = {_e(raw)}"))
            else:
                u = (eff.absolute * n_rest) if (eff.absolute is not None and eff.absolute.is_finite() and eff.absolute > 0) else ZERO
                raw, units, pt = _pays(basis, value, eff, n_rest, u, ctx.currency)
                parts.append(pt)
        out.append(_amount(t, label, raw, units, members, parts, ctx, eff))
    return RuleResult(tuple(out))


def current_share(t: ShareOfSavingsTrigger, funders_return: Decimal | None) -> tuple[Decimal, str]:
    """The share in force given the funders' achieved return."""
    share, why = t.share, f"share {t.share}"
    if funders_return is not None:
        for step in t.share_steps:
            if funders_return >= step.after_return:
                share = step.share
                why = f"share {step.share}: funders' return {funders_return} has reached {step.after_return}"
    if t.share_steps and funders_return is None:
        why += " (funders' return not given, so no share step applies)"
    elif t.share_steps and share == t.share:
        why += f" (funders' return {funders_return} below the first step)"
    return share, why


def _share_of_savings(t: Trigger, ctx: Context) -> RuleResult:
    assert isinstance(t, ShareOfSavingsTrigger)
    sc = ctx.scope(list(ctx.cohorts), "pooled")
    eff = compute_effect(t.effect, ctx.terms, sc)
    units = eff.units
    share, why = current_share(t, ctx.funders_return)
    raw = share * units * t.unit_cost
    parts = [
        eff.trace(),
        Trace("units avoided", f"{_e(units)} ({show(eff.absolute)} per participant x {eff.n}, never below 0)"),
        _amended(Trace("share", why), t, ctx, "share", "share_steps"),
        _amended(Trace("pays", f"{share} x {_e(units)} unit(s) x {t.unit_cost} unit cost = {_e(raw)}"),
                 t, ctx, "unit_cost"),
    ]
    return RuleResult((_amount(t, "pooled", raw, units, _members(sc), parts, ctx, eff),))


def _banded(t: Trigger, ctx: Context) -> RuleResult:
    assert isinstance(t, BandedReturnTrigger)
    sc = ctx.scope(list(ctx.cohorts), "pooled")
    eff = compute_effect(t.effect, ctx.terms, sc)
    rate, st = schedule_value(t.bands, eff.paid_effect)
    parts = [_amended(eff.trace(), t, ctx, "effect"), _amended(st, t, ctx, "bands")]
    mc = t.minimum_coupon
    if mc is not None and ctx.period_end <= mc.until and rate < mc.rate:
        parts.append(Trace("minimum coupon", f"{rate} raised to {mc.rate} (until {mc.until})"))
        rate = mc.rate
    for cp in t.capital_protection:
        parts.append(Trace("capital protection", f"{cp.fraction} of capital returned if redeemed by {cp.redeemed_by}"))
    clause = cite(ctx.terms, t.clause, f"triggers.{t.id}") or t.clause
    tr = Trace(f"{t.id}: return rate for {', '.join(t.tranches)} at {ctx.determination}", f"{rate}", clause,
               tuple(parts))
    return RuleResult(rates=(RateDetermination(ctx.determination, t.id, t.tranches, rate, eff, tr, clause),))


def _rate_card(t: Trigger, ctx: Context) -> RuleResult:
    # Rate cards are paid per event, vectorised over the records by rate_card_claims.
    return RuleResult()


Rule = Callable[[Trigger, Context], RuleResult]

RULES: Mapping[str, Rule] = {
    "rate_card": _rate_card,
    "threshold": _threshold,
    "cohort_with_pooled_fallback": _cohort,
    "share_of_savings": _share_of_savings,
    "banded_return": _banded,
}
"""Trigger kind -> rule; one entry per member of ``contract.TRIGGER_KINDS``."""

PER_EVENT_KINDS = frozenset({"rate_card"})


def determine(t: Trigger, ctx: Context) -> RuleResult:
    return RULES[t.kind](t, ctx)


# -------------------------------------------------------------------- rate cards ---


@dataclass(frozen=True)
class Segment:
    """A stretch of days with the same terms (between amendment dates)."""

    start_day: int
    terms: Contract


@dataclass(frozen=True, eq=False)
class Claims:
    """Payable rate-card outcome events, one per row, before caps."""

    day: np.ndarray
    trig: np.ndarray
    """Index of the trigger in the evaluation's trigger list."""
    outc: np.ndarray
    """Index of the outcome in :attr:`outcomes` of that trigger."""
    pcode: np.ndarray
    seg: np.ndarray
    price: np.ndarray
    """The price in force on the event's date, in units of ``10**-scale``."""
    outcomes: Mapping[int, tuple[str, ...]]
    """Trigger index -> the metric ids of its outcomes (in order of first appearance)."""
    prices: Mapping[tuple[int, int, int], Decimal]
    """(trigger, outcome, segment) -> price."""
    excluded: tuple[np.ndarray, ...] = ()
    """Events that would be paid but for a rule: (day, trigger, outcome, reason) with reason
    0 = a prerequisite not met by then, 1 = the participant's claim limit reached."""

EXCLUSION_REASONS = ("prerequisite not yet achieved", "claim limit already reached")


def scaled(d: Decimal, scale: int) -> int:
    v = d.scaleb(scale)
    if v != v.to_integral_value():  # pragma: no cover - the scale is chosen to fit
        raise ValueError(f"{d} does not fit a scale of {scale} decimals")
    return int(v)


def _rank_within(groups: np.ndarray) -> np.ndarray:
    """Position of each element among the earlier elements of its group (0-based)."""
    if len(groups) == 0:
        return np.zeros(0, np.int64)
    order = np.argsort(groups, kind="stable")
    g = groups[order]
    start = np.r_[0, np.flatnonzero(g[1:] != g[:-1]) + 1]
    run = np.repeat(start, np.diff(np.r_[start, len(g)]))
    rank = np.empty(len(g), np.int64)
    rank[order] = np.arange(len(g)) - run
    return rank


def rate_card_claims(
    md: MeasuredData,
    segments: Sequence[Segment],
    trigger_ids: Sequence[str],
    first_day: int,
    last_day: int,
    scale: int,
) -> Claims:
    """Every payable rate-card event dated in ``[first_day, last_day]``, priced."""
    starts = np.array([s.start_day for s in segments], dtype=np.int64)
    eligible = md.participants["eligible"].to_numpy()
    treated = md.participants["group"].to_numpy() == TREATMENT
    enrol = md.enrol_day
    ccode, cnames = pd.factorize(md.participants["cohort"].astype(object), use_na_sentinel=True)
    ccode = np.asarray(ccode, dtype=np.int64)
    parts: list[tuple[np.ndarray, ...]] = []
    excluded: list[tuple[np.ndarray, ...]] = []
    outcomes: dict[int, tuple[str, ...]] = {}
    prices: dict[tuple[int, int, int], Decimal] = {}
    for ti, tid in enumerate(trigger_ids):
        cards: list[RateCardTrigger | None] = []
        for s in segments:
            t = next((x for x in s.terms.triggers if x.id == tid), None)
            cards.append(t if isinstance(t, RateCardTrigger) else None)
        if not any(cards):
            continue
        names: list[str] = []
        for card in cards:
            for o in card.outcomes if card else ():
                if o.metric not in names:
                    names.append(o.metric)
        outcomes[ti] = tuple(names)
        achieved: dict[str, np.ndarray] = {}

        def reqs(metric: str, si: int) -> set[str]:
            terms = segments[si].terms
            out = {r for m in terms.metrics if m.id == metric for r in m.requires}
            card = cards[si]
            if card is not None:
                out |= {r for o in card.outcomes if o.metric == metric for r in o.requires}
            return out

        def valid(
            metric: str, depth: int = 0
        ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
            """Rows of ``metric`` that count (before prices and claim limits), and the rows
            that would count but for a prerequisite."""
            rows = md.rows(metric)
            lo = int(np.searchsorted(rows.day, first_day, side="left"))
            hi = int(np.searchsorted(rows.day, last_day, side="right"))
            pc, day, val = rows.pcode[lo:hi], rows.day[lo:hi], rows.value[lo:hi]
            seg = np.searchsorted(starts, day, side="right") - 1
            ok = (val > 0) & eligible[pc] & treated[pc] & (day >= enrol[pc]) & (seg >= 0)
            unmet = np.zeros(len(ok), dtype=bool)
            for si, s in enumerate(segments):
                in_seg = seg == si
                if not in_seg.any():
                    continue
                terms = s.terms
                m = next((x for x in terms.metrics if x.id == metric), None)
                in_force = np.r_[np.isin(np.asarray(cnames, dtype=object), [c.id for c in terms.timeline.cohorts]), False]
                bad = ~in_force[ccode[pc]]
                bad |= (day < day_of(terms.term.start)) | (day > day_of(terms.term.end))
                if m is None:
                    bad |= True
                elif m.window_months is not None:
                    bad |= day > md.window_last(months=m.window_months)[pc]
                missing = np.zeros(len(ok), dtype=bool)
                for r in reqs(metric, si):
                    if depth > 32:  # pragma: no cover - cycles are refused by the checks
                        raise ValueError("prerequisite cycle")
                    missing |= first_achieved(r, depth + 1)[pc] > day
                unmet |= ok & in_seg & ~bad & missing
                ok &= ~(in_seg & (bad | missing))
            return pc, day, seg, ok, unmet

        def first_achieved(metric: str, depth: int = 0) -> np.ndarray:
            got = achieved.get(metric)
            if got is None:
                pc, day, _, ok, _ = valid(metric, depth)
                got = np.full(md.size, NEVER, dtype=np.int64)
                pc, day = pc[ok], day[ok]
                if len(pc):
                    uniq, first = np.unique(pc, return_index=True)
                    got[uniq] = day[first]
                achieved[metric] = got
            return got

        for oi, metric in enumerate(names):
            pc, day, seg, ok, unmet = valid(metric)
            price_of = np.zeros(len(segments), dtype=object)
            limit_of = np.zeros(len(segments), dtype=np.int64)
            for si, card in enumerate(cards):
                oc = next((x for x in card.outcomes if x.metric == metric), None) if card else None
                if oc is not None:
                    prices[(ti, oi, si)] = oc.price
                    price_of[si] = scaled(oc.price, scale)
                    limit_of[si] = oc.max_claims
            priced = limit_of[np.clip(seg, 0, None)] > 0
            ok &= priced
            excluded.append((day[unmet & priced], np.full(int((unmet & priced).sum()), ti),
                             np.full(int((unmet & priced).sum()), oi), np.zeros(int((unmet & priced).sum()), np.int64)))
            pc, day, seg = pc[ok], day[ok], seg[ok]
            rank = _rank_within(pc)
            keep = rank < limit_of[seg]
            excluded.append((day[~keep], np.full(int((~keep).sum()), ti), np.full(int((~keep).sum()), oi),
                             np.ones(int((~keep).sum()), np.int64)))
            pc, day, seg = pc[keep], day[keep], seg[keep]
            price = np.array([price_of[s] for s in range(len(segments))], dtype=object)[seg]
            if all(isinstance(p, int) and abs(p) < 2**62 for p in price_of):
                price = price.astype(np.int64)
            parts.append((day, np.full(len(day), ti), np.full(len(day), oi), pc, seg, price))
    z = np.zeros(0, np.int64)
    ex = tuple(np.concatenate([e[i] for e in excluded]).astype(np.int64) for i in range(4)) if excluded else (z, z, z, z)
    if not parts:
        return Claims(z, z, z, z, z, z, outcomes, prices, ex)
    cols = [np.concatenate([p[i] for p in parts]) for i in range(6)]
    return Claims(
        cols[0].astype(np.int64), cols[1].astype(np.int64), cols[2].astype(np.int64),
        cols[3].astype(np.int64), cols[4].astype(np.int64), cols[5], outcomes, prices, ex,
    )
