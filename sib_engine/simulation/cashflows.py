"""The capital stack and waterfall over many worlds at once (layer 2).

The semantics are those of :mod:`sib_engine.waterfall` (its module docstring is the
reference), replayed on arrays with one row per world: accrual on each world's own event
dates (drawdowns, its payment dates, compounding dates, guarantee settlements, maturities,
its close), compounding, drawdowns, the payment lines, the distribution (clawbacks owed,
recycling, the steps in order, shortfalls carried forward) and guarantee settlements.

Money is float64 in minor units.  Everything the exact path holds in whole minor units
(drawdowns, payments, principal, what each step pays, splits by largest remainder,
guarantee payouts) is a whole number here too, and float64 holds such numbers exactly.
Interest accrued is the one quantity the exact path holds unrounded (28-digit ``Decimal``);
here it is a float within about ``1e-9`` of a cent of it, and it only matters where it is
rounded to a whole minor unit (interest due).  A world where that rounding lies within
``1e-6`` of half a minor unit is *flagged*: :mod:`sib_engine.simulation.kernel` recomputes
flagged worlds with :func:`sib_engine.waterfall.run_waterfall` itself.  Clawbacks owed to
several payers are repaid in the order the exact path first meets them in its payment
lines: primary payers, then top-up funds, each in the contract's order.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

import numpy as np
import numpy.typing as npt

from sib_engine.metrics import date_of, day_of
from sib_engine.money import allocate
from sib_engine.periods import add_months
from sib_engine.contract import ShareOfSavingsTrigger
from sib_engine.simulation.plan import Plan, share_step_triggers
from sib_engine.waterfall import (
    PROVIDER_PLACEHOLDER,
    _COMPOUNDING_MONTHS,
    achieved_return,
    drawdown_schedule,
    year_fraction,
)

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

HALF_TOL = 1e-6
HEADROOM_TOL = 1e-5
STEP_TOL = 1e-9
"""A share step's float value of the funders' flows within this fraction of their grown
magnitude of zero is decided again in ``Decimal``."""

RETURN_STEP_KINDS = frozenset({"interest", "principal", "fee", "bonus", "residual"})


@dataclass(frozen=True)
class _Tranche:
    id: str
    kind: str
    funder: int
    """Index into ``Layout.parties``."""
    rate: float
    compounding: bool
    maturity_day: int | None
    yf: FloatArray
    """(grid, grid) year fraction from grid date i to grid date j (j capped at maturity)."""
    compound_at: BoolArray
    """(grid,) the grid date is a compounding date of the tranche."""
    draws: FloatArray
    """(grid,) drawn on each grid date, minor units."""
    max_return: float | None = None
    growth: FloatArray | None = None
    """(grid,) ``(1 + max_return) ** (days from the first grid date / 365)``."""


@dataclass(frozen=True)
class _Guarantee:
    id: str
    guarantor: int
    covers: int
    share: tuple[int, int] | None
    amount: float | None
    interest: bool
    called_on: int | None
    """Grid index of the settlement date, or None for the default (per world)."""


@dataclass(frozen=True)
class _ShareSteps:
    """A ``share_of_savings`` trigger's ``share_steps`` (sorted by ``after_return``, as the
    exact waterfall tries them)."""

    share: tuple[int, int]
    """The trigger's share as (numerator, 10**k)."""
    after: tuple[Decimal, ...]
    log_growth: tuple[float, ...]
    """``log1p(after_return) / 365`` per step."""
    shares: tuple[int, ...]
    """Each step's share, numerator over the same ``10**k``."""


@dataclass(frozen=True)
class _Step:
    pay: str
    tranche: int | None
    amount: float | None
    """``None``: everything left (residual, bonus without amount)."""
    split: tuple[tuple[int, Decimal], ...]
    costs_from_budget: bool = False


@dataclass(frozen=True)
class Layout:
    """The deal's capital stack on a fixed grid of dates (computed once per plan)."""

    days: npt.NDArray[np.int64]
    """Every date any world may need, sorted."""
    parties: tuple[str, ...]
    """Funders (in capital-stack order), then guarantors, then the provider, then every
    other party a step pays."""
    funders: tuple[int, ...]
    guarantors: tuple[int, ...]
    tranches: tuple[_Tranche, ...]
    guarantees: tuple[_Guarantee, ...]
    steps: tuple[_Step, ...]
    pay_index: npt.NDArray[np.int64]
    """(determinations,) grid index of each determination's payment date."""
    term_end: int
    fixed_events: BoolArray
    """(grid,) dates every world processes (drawdowns, compounding, settlements, maturity)."""
    compounding_dates: BoolArray
    settle_fixed: BoolArray
    recycling_share: tuple[int, int] | None
    recycling_until: int | None
    recycling_room: float | None
    """Service budget less commitments (None without a budget)."""
    costs_due: float
    """Costs step without amount: budget less commitments (before recycling)."""
    provider: int
    last_draw: int
    called_on_max: int
    default_settlement: bool
    payer_order: tuple[int, ...]
    flow_cols: npt.NDArray[np.int64]
    """Grid indices on which a funder's cash can move (drawdowns, payments, settlements, the
    end of the term): the columns of ``Flows.flows``."""
    """Some guarantee is settled at the close (no ``called_on``)."""
    share_steps: tuple[_ShareSteps, ...] = ()
    """Per :func:`~sib_engine.simulation.plan.share_step_triggers` entry."""
    step_funders: tuple[int, ...] = ()
    """Funders (indices of ``funders``) of the tranches other than deferred fees: whose
    cash flows the share steps read."""


def layout(plan: Plan) -> Layout:
    c = plan.contract
    cap = c.capital
    cur = plan.currency
    q = 10**plan.minor
    provider = next((p.id for p in c.parties if p.role == "provider"), PROVIDER_PLACEHOLDER)
    draws = drawdown_schedule(c)
    pay_days = sorted({d.payment_day for d in plan.dets})
    tranches_c = cap.tranches if cap else ()
    guarantees_c = cap.guarantees if cap else ()
    term_end = day_of(c.term.end)
    fixed_days: set[int] = {day_of(d.date) for d in draws}
    fixed_days |= {day_of(g.called_on) for g in guarantees_c if g.called_on is not None}
    fixed_days |= {day_of(t.maturity) for t in tranches_c if t.maturity is not None}
    max_close = max([term_end] + pay_days + [day_of(d.date) for d in draws]
                    + [day_of(g.called_on) for g in guarantees_c if g.called_on is not None])
    anchors: dict[str, date] = {}
    for d in draws:
        if d.tranche not in anchors or d.date < anchors[d.tranche]:
            anchors[d.tranche] = d.date
    comp_days: dict[str, set[int]] = {}
    for t in tranches_c:
        cpn = t.coupon
        months = _COMPOUNDING_MONTHS.get(cpn.compounding) if cpn is not None else None
        got: set[int] = set()
        if months is not None and t.id in anchors:
            k = 1
            while True:
                when = add_months(anchors[t.id], k * months)
                if day_of(when) > max_close:
                    break
                got.add(day_of(when))
                k += 1
        comp_days[t.id] = got
    all_comp = set().union(*comp_days.values()) if comp_days else set()
    days = np.array(sorted(fixed_days | {term_end} | set(pay_days) | all_comp), dtype=np.int64)
    gi = {int(d): i for i, d in enumerate(days)}
    # parties
    parties: list[str] = []
    for t in tranches_c:
        if t.funder not in parties:
            parties.append(t.funder)
    funders = tuple(range(len(parties)))
    for g in guarantees_c:
        if g.guarantor not in parties:
            parties.append(g.guarantor)
    guarantors = tuple(parties.index(g.guarantor) for g in guarantees_c)
    guarantors = tuple(dict.fromkeys(guarantors))
    if provider not in parties:
        parties.append(provider)
    for s in (cap.waterfall if cap else ()):
        for p in (s.split or {}):
            if p not in parties:
                parties.append(p)
    tranche_index = {t.id: i for i, t in enumerate(tranches_c)}
    n = len(days)
    tr: list[_Tranche] = []
    for t in tranches_c:
        cpn = t.coupon
        mat = day_of(t.maturity) if t.maturity is not None else None
        yf = np.zeros((n, n))
        if cpn is not None and cpn.rate != 0:
            for i in range(n):
                for j in range(i + 1, n):
                    end = int(days[j]) if mat is None else min(int(days[j]), mat)
                    if end > days[i]:
                        yf[i, j] = float(year_fraction(date_of(int(days[i])), date_of(end), cpn.day_count))
        dr = np.zeros(n)
        for d in draws:
            if d.tranche == t.id:
                dr[gi[day_of(d.date)]] += float(d.amount.scaleb(plan.minor))
        comp = np.zeros(n, dtype=bool)
        for dd in comp_days[t.id]:
            comp[gi[dd]] = True
        growth = None
        if t.max_return is not None:
            growth = np.exp(math.log1p(float(t.max_return)) * (days - days[0]).astype(np.float64) / 365.0)
        tr.append(_Tranche(t.id, t.kind, parties.index(t.funder), float(cpn.rate) if cpn else 0.0,
                           cpn is not None and cpn.compounding != "simple", mat, yf, comp, dr,
                           float(t.max_return) if t.max_return is not None else None, growth))
    gs = []
    for g in guarantees_c:
        share = None
        if g.share is not None:
            k = max(0, -int(g.share.as_tuple().exponent))
            share = (int(g.share.scaleb(k)), 10**k)
        amount = float((g.amount.quantize(Decimal(1).scaleb(-plan.minor), rounding="ROUND_HALF_UP")).scaleb(plan.minor)) \
            if g.amount is not None else None
        gs.append(_Guarantee(g.id, parties.index(g.guarantor), tranche_index[g.covers], share, amount,
                             g.basis == "principal_and_interest",
                             gi[day_of(g.called_on)] if g.called_on is not None else None))
    steps: list[_Step] = []
    commitments = sum((t.commitment for t in tranches_c), Decimal(0))
    for s in (cap.waterfall if cap else ()):
        split = tuple((parties.index(p), w) for p, w in (s.split or {provider: Decimal(1)}).items())
        tidx = tranche_index.get(s.tranche) if s.tranche else None
        if s.pay in ("interest", "principal") or (s.pay == "fee" and s.tranche):
            steps.append(_Step(s.pay, tidx, None, split))
        elif s.pay == "costs" and s.amount is None:
            steps.append(_Step("costs", None, None, split, costs_from_budget=True))
        elif s.pay == "residual" or (s.pay == "bonus" and s.amount is None):
            amt = None if s.amount is None else float(s.amount.quantize(Decimal(1).scaleb(-plan.minor),
                                                                        rounding="ROUND_HALF_UP").scaleb(plan.minor))
            steps.append(_Step(s.pay, None, amt, split))
        else:
            amt = float((s.amount or Decimal(0)).quantize(Decimal(1).scaleb(-plan.minor),
                                                         rounding="ROUND_HALF_UP").scaleb(plan.minor))
            steps.append(_Step(s.pay, None, amt, split))
    rec = cap.recycling if cap else None
    rec_share = None
    if rec is not None:
        k = max(0, -int(rec.share.as_tuple().exponent))
        rec_share = (int(rec.share.scaleb(k)), 10**k)
    budget = cap.service_budget if cap else None
    fixed_ev = np.zeros(n, dtype=bool)
    for fd in fixed_days:
        fixed_ev[gi[fd]] = True
    settle_fixed = np.zeros(n, dtype=bool)
    for gg in gs:
        if gg.called_on is not None:
            settle_fixed[gg.called_on] = True
    comp_any = np.zeros(n, dtype=bool)
    for t2 in tr:
        comp_any |= t2.compound_at
    room = None
    if budget is not None:
        room = float((budget - commitments).quantize(Decimal(1).scaleb(-plan.minor),
                                                      rounding="ROUND_HALF_UP").scaleb(plan.minor))
    ssteps: list[_ShareSteps] = []
    for ti_ in share_step_triggers(plan):
        trig = c.triggers[ti_]
        assert isinstance(trig, ShareOfSavingsTrigger)
        ordered = sorted(trig.share_steps, key=lambda x: x.after_return)
        k = max(max(0, -int(x.as_tuple().exponent)) for x in [trig.share] + [x.share for x in ordered])
        ssteps.append(_ShareSteps(
            (int(trig.share.scaleb(k)), 10**k), tuple(x.after_return for x in ordered),
            tuple(math.log1p(float(x.after_return)) / 365.0 for x in ordered),
            tuple(int(x.share.scaleb(k)) for x in ordered)))
    return Layout(
        share_steps=tuple(ssteps),
        step_funders=tuple(sorted({parties.index(t.funder) for t in tranches_c if t.kind != "deferred_fee"})),
        days=days, parties=tuple(parties), funders=funders, guarantors=guarantors, tranches=tuple(tr),
        guarantees=tuple(gs), steps=tuple(steps),
        pay_index=np.array([gi[d.payment_day] for d in plan.dets], dtype=np.int64), term_end=gi[term_end],
        fixed_events=fixed_ev, compounding_dates=comp_any, settle_fixed=settle_fixed,
        recycling_share=rec_share, recycling_until=day_of(rec.until) if rec is not None and rec.until else None,
        recycling_room=room, costs_due=room if room is not None else 0.0, provider=parties.index(provider),
        default_settlement=any(g.called_on is None for g in gs),
        flow_cols=np.array(sorted({gi[day_of(d.date)] for d in draws} | {gi[d] for d in pay_days} | {gi[term_end]}
                                  | {g.called_on for g in gs if g.called_on is not None}), dtype=np.int64),
        payer_order=tuple([i for i, p in enumerate(plan.payers) if p.mode == "share"]
                          + [i for i, p in enumerate(plan.payers) if p.mode == "top_up"]),
        last_draw=max((gi[day_of(d.date)] for d in draws), default=0),
        called_on_max=max((g.called_on for g in gs if g.called_on is not None), default=0),
    )


@dataclass
class Flows:
    """The waterfall of a set of worlds."""

    flows: FloatArray
    """(funders, flow columns, n) each funder's investment cash flows (minor units), one row
    per flow date (the layout the IRR solver works on, row by row): drawdowns
    negative; interest, principal, fees, bonus and residual shares and guarantee payments
    positive."""
    invested: FloatArray
    """(n, funders)."""
    received: FloatArray
    """(n, funders) from the waterfall, guarantee payments not included."""
    guarantee_received: FloatArray
    """(n, funders)."""
    guarantor_paid: FloatArray
    """(n, guarantors)."""
    guarantor_recovered: FloatArray
    provider_received: FloatArray
    """(n,) everything the provider got from the deal account besides service funding:
    recycling, costs, fees (a deferred fee repaid too), bonus and residual shares."""
    closing_balance: FloatArray
    clawback_outstanding: FloatArray
    flagged: BoolArray
    """(n,) worlds to recompute exactly."""


def _round_half_up(x: FloatArray) -> tuple[FloatArray, BoolArray]:
    """Round to whole minor units, half away from zero; and the values too close to a half
    to trust."""
    a = np.abs(x)
    f = a - np.floor(a)
    near = np.abs(f - 0.5) <= HALF_TOL
    return np.sign(x) * np.floor(a + 0.5), near


def _interest_due(x: FloatArray) -> tuple[FloatArray, BoolArray]:
    """``max(0, round_money(x))`` for unrounded interest ``x`` (never below half a minor
    unit under zero, so ``floor(x + 0.5)`` rounds it as ``round_money`` does); and the
    values too close to a half to trust."""
    r = x + 0.5
    due = np.floor(r)
    r -= due  # the fraction, exactly: in [0, 1)
    near = r <= HALF_TOL
    np.subtract(1.0, r, out=r)  # exact where it matters (fraction >= 0.5)
    near |= r <= HALF_TOL
    np.maximum(due, 0.0, out=due)
    return due, near


def _alloc(total: FloatArray, weights: list[Decimal]) -> list[FloatArray]:
    """``money.allocate`` of whole minor units by Decimal weights, exactly (integers).

    Worked weight by weight on whole columns (one array per weight): numpy is slow on
    arrays whose last axis is as short as a list of weights."""
    if len(weights) == 1:
        return [total.copy()]
    k = max(max(0, -int(w.as_tuple().exponent)) for w in weights)
    p = [int(w.scaleb(k)) for w in weights]
    wsum = sum(p)
    t = np.rint(np.abs(total)).astype(np.int64)
    floors: list[npt.NDArray[np.int64]] = []
    rems: list[npt.NDArray[np.int64]] = []
    left = t.copy()
    for pi in p:
        prod = t * pi
        fl = prod // wsum
        floors.append(fl)
        rems.append(prod - fl * wsum)  # prod % wsum (floor division: the same integers)
        left -= fl
    sign = np.sign(total)
    out = []
    for i in range(len(p)):
        rank = np.zeros(t.shape[0], dtype=np.int64)
        for j in range(len(p)):
            if j != i:
                # j ranks before i: larger remainder, or equal and earlier in the list
                rank += (rems[j] >= rems[i]) if j < i else (rems[j] > rems[i])
        part = floors[i] + (rank < left)
        out.append(sign * part.astype(np.float64))
    return out


def run(plan: Plan, lay: Layout, pos: FloatArray, neg: FloatArray,
        steps: npt.NDArray[np.int64] | None = None) -> Flows:
    """The waterfall of every world, from its payment lines: ``pos`` and ``neg`` (n,
    determinations, payers) the positive and negative lines per determination and payer
    (appropriation failures already removed), in minor units.

    ``steps`` (n, determinations, share-step triggers, periods, payers): the positive lines
    of the ``share_of_savings`` triggers with ``share_steps``, included in ``pos``
    (:attr:`~sib_engine.simulation.payments.PaymentResult.steps`, failures removed).  Each
    is rescaled on its payment date to the share in force, as the exact waterfall does
    (``_Engine._share_step``): the last step (by ``after_return``) at which the value, at
    that return, of the funders' drawdowns and receipts before that date (guarantee
    payments not counted) is at least 0, if any drawdown precedes it; the line becomes
    ``round_money(line x step share / share)``.  ``pos`` is updated in place to the amounts
    distributed, so that a world recomputed with the exact waterfall gets those.

    Every step works on whole arrays: a world that has nothing to do on a date takes part
    with zero amounts (nothing available, no year fraction), which changes nothing."""
    return _Engine(plan, lay, pos, neg, steps).run()


class _Engine:
    def __init__(self, plan: Plan, lay: Layout, pos: FloatArray, neg: FloatArray,
                 steps: npt.NDArray[np.int64] | None = None):
        self.plan, self.lay = plan, lay
        self.steps = steps if lay.share_steps else None
        n = pos.shape[0]
        self.n = n
        self.pos, self.neg = pos, neg
        K = pos.shape[1]
        G = len(lay.days)
        self.dets_at: dict[int, list[int]] = {}
        for k, gi in enumerate(lay.pay_index):
            self.dets_at.setdefault(int(gi), []).append(k)
        self.has_det = (pos != 0).any(axis=2) | (neg != 0).any(axis=2)  # (n, K)
        last_pay = np.full(n, -1, dtype=np.int64)
        for gi in sorted(self.dets_at):
            any_here = np.zeros(n, dtype=bool)
            for k in self.dets_at[gi]:
                any_here |= self.has_det[:, k]
            last_pay = np.where(any_here, gi, last_pay)
        self.settle_default = np.maximum(last_pay, lay.term_end)
        self.close = np.maximum(np.maximum(self.settle_default, lay.last_draw), lay.called_on_max)
        NT = len(lay.tranches)
        z = np.zeros
        self.drawn = [z(n) for _ in range(NT)]
        self.repaid = [z(n) for _ in range(NT)]
        self.capi = [z(n) for _ in range(NT)]
        self.accr = [z(n) for _ in range(NT)]
        self.guar_recv = [z(n) for _ in range(NT)]
        self.owed_g = [z(n) for _ in lay.guarantees]
        self.balance = z(n)
        self.claw = [z(n) for _ in range(pos.shape[2])]
        self.step_paid = [z(n) for _ in lay.steps]
        self.recycled = z(n)
        self.last = np.zeros(n, dtype=np.int64)
        self.uniform: int | None = 0
        self.started = False
        self.flagged = np.zeros(n, dtype=bool)
        self.cols = [int(c) for c in lay.flow_cols]
        self.col_of = {c: j for j, c in enumerate(self.cols)}
        self.flows = np.zeros((len(lay.funders), len(self.cols), n))  # a column per flow date: written whole
        # share steps: the step funders' drawdowns (negative) and receipts, guarantees not counted
        self.ret = np.zeros((len(self.cols), n)) if self.steps is not None else None
        self.received = [z(n) for _ in lay.funders]
        self.g_paid = {g: z(n) for g in lay.guarantors}
        self.g_back = {g: z(n) for g in lay.guarantors}
        self.provider = z(n)
        self.G = G
        self.K = K
        # max_return: value at the first grid date of what was drawn and received
        self.dv = [z(n) if t.growth is not None else None for t in lay.tranches]
        self.rv = [z(n) if t.growth is not None else None for t in lay.tranches]
        self.party_tranches: dict[int, list[int]] = {}
        for ti, t in enumerate(lay.tranches):
            self.party_tranches.setdefault(t.funder, []).append(ti)

    def run(self) -> Flows:
        lay = self.lay
        n = self.n
        # before every world's close (and default settlement) date, tests against those
        # dates are all false: skipped (the same masks, fewer passes over the worlds)
        close_min = int(self.close.min()) if n else 0
        settle_min = int(self.settle_default.min()) if n and lay.default_settlement else self.G
        everyone = np.ones(n, dtype=bool)
        for gi in range(self.G):
            dets = self.dets_at.get(gi, [])
            lines_here = np.zeros(n, dtype=bool)
            for k in dets:
                lines_here |= self.has_det[:, k]
            fixed = bool(lay.fixed_events[gi] or lay.compounding_dates[gi])
            if fixed:
                active = everyone if gi <= close_min else gi <= self.close
            elif gi < close_min and gi < settle_min:
                active = lines_here
            else:
                within = gi <= self.close
                active = lines_here | (self.close == gi)
                if lay.default_settlement:
                    active |= self.settle_default == gi
                active &= within
            all_active = active is everyone or bool(active.all())
            if not all_active and not active.any():
                continue
            self._accrue(gi, active, all_active)
            self._compound(gi, active, all_active)
            self._draw(gi)
            if self.steps is not None and dets:
                self._share_steps(gi, dets)
            received = np.zeros(n)
            for k in dets:
                for p in range(self.pos.shape[2]):
                    received += self.pos[:, k, p]
                    self.claw[p] -= self.neg[:, k, p]
            if dets:
                self.balance += received
            if gi < close_min and gi < settle_min and not lay.settle_fixed[gi]:
                dist = lines_here & active  # no settlement nor close here
            else:
                settle_here = np.zeros(n, dtype=bool) if not lay.default_settlement else (self.settle_default == gi)
                settle_here |= bool(lay.settle_fixed[gi])
                dist = lines_here | ((settle_here | (self.close == gi)) & (self.balance > 0))
                dist &= active
            if dist.any():
                self._distribute(gi, dist, received)
            self._settle(gi, active)
        return self._result()

    # -- accrual ---------------------------------------------------------------------
    def _accrue(self, gi: int, active: BoolArray, all_active: bool) -> None:
        # the base is never negative (principal outstanding plus capitalised interest), and
        # a zero base accrues zero: no test needed
        lay = self.lay
        if self.uniform is not None and not all_active:
            # every world last accrued on grid date ``uniform`` (``last`` is not kept up to
            # date while that holds): spell it out before the worlds part ways
            self.last = np.full(self.n, self.uniform, dtype=np.int64)
        if self.started:
            for ti, t in enumerate(lay.tranches):
                if t.rate == 0:
                    continue
                if all_active and self.uniform is not None:
                    yf: FloatArray | float = float(t.yf[self.uniform, gi])
                else:
                    yf = t.yf[self.last, gi] * active
                base = self.drawn[ti] - self.repaid[ti]
                if t.compounding:
                    base += self.capi[ti]
                base *= t.rate
                base *= yf
                self.accr[ti] += base
        if all_active:
            self.uniform = gi
        else:
            self.last = np.where(active, gi, self.last)
            self.uniform = None
        self.started = True

    def _compound(self, gi: int, active: BoolArray, all_active: bool) -> None:
        for ti, t in enumerate(self.lay.tranches):
            if t.compounding and t.compound_at[gi]:
                if all_active:
                    self.capi[ti] += self.accr[ti]
                    self.accr[ti][:] = 0.0
                else:
                    moved = np.where(active, self.accr[ti], 0.0)
                    self.capi[ti] += moved
                    self.accr[ti] -= moved

    def _draw(self, gi: int) -> None:
        for ti, t in enumerate(self.lay.tranches):
            a = t.draws[gi]
            if a:
                self.drawn[ti] += a
                self.flows[t.funder, self.col_of[gi]] -= a
                if self.ret is not None and t.funder in self.lay.step_funders:
                    self.ret[self.col_of[gi]] -= a
                dv = self.dv[ti]
                if dv is not None and t.growth is not None:
                    dv += a / t.growth[gi]

    # -- share steps ---------------------------------------------------------------------
    def _share_steps(self, gi: int, dets: list[int]) -> None:
        """Rescale the share-of-savings lines paid on grid date ``gi`` (see :func:`run`)."""
        assert self.steps is not None and self.ret is not None
        lay = self.lay
        j = self.col_of[gi]
        if not any(t.draws[:gi].any() for t in lay.tranches if t.funder in lay.step_funders):
            return  # no drawdown before this date: the exact path leaves the lines alone
        day = int(lay.days[gi])
        before = self.ret[:j]  # (columns before, n)
        ages = (day - lay.days[np.asarray(self.cols[:j], dtype=np.int64)]).astype(np.float64)
        for si, ss in enumerate(lay.share_steps):
            lines = self.steps[:, dets, si]  # (n, dets here, periods, payers)
            has = (lines > 0).any(axis=(1, 2, 3))
            if not has.any():
                continue
            chosen = np.full(self.n, -1, dtype=np.int64)
            for step, lg in enumerate(ss.log_growth):
                g = np.exp(lg * ages)[:, None]
                grown = before * g
                value = grown.sum(axis=0)
                scale = np.abs(grown).sum(axis=0)
                ok = value >= 0
                near = has & (np.abs(value) <= STEP_TOL * scale)
                for w in np.flatnonzero(near):
                    ok[w] = self._exact_reached(gi, int(w), ss.after[step])
                chosen = np.where(ok, step, chosen)
            num_old, _ = ss.share
            new = np.array([num_old] + list(ss.shares), dtype=np.int64)[chosen + 1]
            change = has & (new != num_old)
            if not change.any():
                continue
            rows = np.flatnonzero(change)
            sub = lines[rows]
            nn = new[rows][:, None, None, None]
            # round_money(line x new / old): half away from zero, exactly (lines are > 0)
            adj = np.where(sub > 0, (2 * sub * nn + num_old) // (2 * num_old), 0)
            diff = (adj - sub).sum(axis=2)  # (rows, dets here, payers)
            for di, k in enumerate(dets):
                self.pos[rows, k, :] += diff[:, di, :]

    def _exact_reached(self, gi: int, w: int, rate: Decimal) -> bool:
        """``achieved_return(...) >= 0`` in ``Decimal`` for world ``w`` before grid date ``gi``."""
        assert self.ret is not None
        lay = self.lay
        minor = self.plan.minor
        draws: list[tuple[date, Decimal]] = []
        receipts: list[tuple[date, Decimal]] = []
        for j, c in enumerate(self.cols):
            if c >= gi:
                break
            d = date_of(int(lay.days[c]))
            drawn = sum(float(t.draws[c]) for t in lay.tranches if t.funder in lay.step_funders)
            got = float(self.ret[j, w]) + drawn
            if drawn:
                draws.append((d, Decimal(int(drawn)).scaleb(-minor)))
            if got:
                receipts.append((d, Decimal(int(got)).scaleb(-minor)))
        return achieved_return(draws, receipts, date_of(int(lay.days[gi])), rate) >= 0

    # -- max_return ----------------------------------------------------------------------
    def _headroom(self, ti: int, gi: int, relevant: BoolArray) -> FloatArray:
        """What the tranche can still receive at its max_return (whole minor units, never
        below 0); flags the worlds where its rounding is too close to call."""
        t = self.lay.tranches[ti]
        dv, rv = self.dv[ti], self.rv[ti]
        assert t.growth is not None and dv is not None and rv is not None
        h = (dv - rv) * t.growth[gi]
        a = np.abs(h)
        f = a - np.floor(a)
        self.flagged |= relevant & (np.abs(f - 0.5) <= HEADROOM_TOL)
        return np.asarray(np.maximum(np.sign(h) * np.floor(a + 0.5), 0.0), dtype=np.float64)

    def _receipt(self, ti: int, gi: int, amount: FloatArray) -> None:
        rv = self.rv[ti]
        g = self.lay.tranches[ti].growth
        if rv is not None and g is not None:
            rv += amount / g[gi]

    def _capped_party(self, party: int) -> list[int] | None:
        """The party's tranches if every one is capped by max_return, else None."""
        ts = self.party_tranches.get(party, [])
        if not ts or any(self.lay.tranches[ti].growth is None for ti in ts):
            return None
        return ts

    # -- distribution ------------------------------------------------------------------
    def _pay(self, gi: int, party: int, amount: FloatArray) -> None:
        """Record a return-kind receipt of a funder (other parties are not tracked here)."""
        if party < len(self.lay.funders):
            self.flows[party, self.col_of[gi]] += amount
            self.received[party] += amount
            if self.ret is not None and party in self.lay.step_funders:
                self.ret[self.col_of[gi]] += amount

    def _distribute(self, gi: int, dist: BoolArray, received: FloatArray) -> None:
        lay = self.lay
        avail = np.where(dist, self.balance, 0.0)
        for p in lay.payer_order:
            if not self.claw[p].any():
                continue  # nothing owed back: takes nothing
            take = np.maximum(np.minimum(self.claw[p], avail), 0.0)
            self.claw[p] -= take
            avail -= take
        if lay.recycling_share is not None and (lay.recycling_until is None or int(lay.days[gi]) <= lay.recycling_until):
            num, den = lay.recycling_share
            r = np.rint(received).astype(np.int64)
            want = ((2 * r * num + den) // (2 * den)).astype(np.float64)
            if lay.recycling_room is not None:
                want = np.minimum(want, np.maximum(0.0, lay.recycling_room - self.recycled))
            rec = np.where((received > 0) & (avail > 0), np.minimum(want, avail), 0.0)
            avail -= rec
            self.recycled += rec
            self.provider += rec
        for si, s in enumerate(lay.steps):
            if s.tranche is not None:
                ti = s.tranche
                t = lay.tranches[ti]
                due, near = _interest_due(self.capi[ti] + self.accr[ti])
                near &= avail > 0
                self.flagged |= near
                if s.pay == "interest":
                    parts = [("interest", due)]
                elif s.pay == "principal":
                    parts = [("principal", self.drawn[ti] - self.repaid[ti])]
                else:
                    parts = [("interest", due), ("principal", self.drawn[ti] - self.repaid[ti])]
                # max_return: the step's parts together take at most the headroom
                room = self._headroom(ti, gi, avail > 0) if t.growth is not None else None
                for what, amount in parts:
                    limit = avail if room is None else np.minimum(avail, room)
                    take = np.maximum(np.minimum(amount, limit), 0.0)
                    if room is not None:
                        room = room - take
                    if what == "interest":
                        c_take = np.minimum(take, np.maximum(self.capi[ti], 0.0))
                        self.capi[ti] -= c_take
                        self.accr[ti] -= take - c_take
                    else:
                        self.repaid[ti] += take
                    avail -= take
                    self._pay_tranche(gi, ti, take, s.pay if s.pay == "fee" else what)
                continue
            if s.costs_from_budget:
                owed = np.maximum(0.0, np.maximum(0.0, lay.costs_due - self.recycled) - self.step_paid[si])
                want = np.minimum(avail, owed)
            elif s.amount is None:
                want = avail.copy()
            else:
                want = np.minimum(avail, np.maximum(0.0, s.amount - self.step_paid[si]))
            want = np.maximum(want, 0.0)
            if not want.any():
                continue
            paid = np.zeros(self.n)
            for p, part in self._split(gi, want, s.split):
                paid += part
                self._pay_party(gi, p, part, s.pay in RETURN_STEP_KINDS)
                if p == lay.provider:
                    self.provider += part
            self.step_paid[si] += paid
            avail -= paid
        self.balance = np.where(dist, avail, self.balance)

    def _split(self, gi: int, want: FloatArray, split: tuple[tuple[int, Decimal], ...]
               ) -> list[tuple[int, FloatArray]]:
        """``want`` split by the shares, a party whose tranches are all capped by max_return
        at most its headroom, its excess passed on to the others (as ``_Engine._split``)."""
        weights = {p: w for p, w in split}
        limits: dict[int, FloatArray | None] = {}
        for p, _ in split:
            ts = self._capped_party(p)
            limits[p] = None if ts is None else sum(
                (self._headroom(ti, gi, want > 0) for ti in ts), np.zeros(self.n))
        if all(v is None for v in limits.values()):
            active_w = [(p, w) for p, w in split if w > 0]
            return list(zip([p for p, _ in active_w], _alloc(want, [w for _, w in active_w])))
        parties = [p for p, _ in split]
        result = {p: np.zeros(self.n) for p in parties}
        active: dict[int, BoolArray] = {}
        for p in parties:
            lim0 = limits[p]
            ok = np.ones(self.n, dtype=bool) if lim0 is None else lim0 > 0
            active[p] = ok & bool(weights[p] > 0)
        remaining = want.copy()
        for _ in range(len(parties) + 1):
            act = np.zeros(self.n, dtype=np.int64)
            for j, p in enumerate(parties):
                act |= active[p].astype(np.int64) << j
            go = (remaining > 0) & (act > 0)
            if not go.any():
                break
            parts = {p: np.zeros(self.n) for p in parties}
            for code in np.unique(act[go]):
                rows = go & (act == code)
                ps = [p for j, p in enumerate(parties) if (int(code) >> j) & 1]
                for p, part in zip(ps, _alloc(remaining[rows], [weights[p] for p in ps])):
                    parts[p][rows] = part
            excess = np.zeros(self.n)
            for p in parties:
                lim = limits[p]
                part = np.where(go & active[p], parts[p], 0.0)
                if lim is None:
                    take = part
                    active[p] = active[p] & go
                else:
                    room = lim - result[p]
                    take = np.minimum(part, room)
                    active[p] = active[p] & go & (take < room)
                result[p] += take
                excess += part - take
            remaining = np.where(go & (excess != remaining), excess, 0.0)
        return [(p, result[p]) for p in parties]

    def _pay_party(self, gi: int, party: int, amount: FloatArray, returns: bool) -> None:
        """A residual, bonus, fee or costs share to a party: attributed to its tranches when
        all are capped by max_return (in the order of the stack), else to its one tranche."""
        if returns:
            self._pay(gi, party, amount)
        ts = self._capped_party(party)
        if ts is None:
            return
        left = amount
        for i, ti in enumerate(ts):
            room = self._headroom(ti, gi, left > 0)
            take = left if i == len(ts) - 1 else np.minimum(left, room)
            take = np.maximum(take, 0.0)
            self._receipt(ti, gi, take)
            left = left - take

    def _pay_tranche(self, gi: int, ti: int, amount: FloatArray, kind: str) -> None:
        lay = self.lay
        left = amount
        for g_i, g in enumerate(lay.guarantees):
            if g.covers != ti or (kind == "interest" and not g.interest):
                continue
            take = np.maximum(np.minimum(left, self.owed_g[g_i]), 0.0)
            self.owed_g[g_i] -= take
            left = left - take
            self.g_back[g.guarantor] += take
        t = lay.tranches[ti]
        self._pay(gi, t.funder, left)
        self._receipt(ti, gi, left)
        if t.funder == lay.provider:
            self.provider += left

    # -- guarantees --------------------------------------------------------------------
    def _settle(self, gi: int, active: BoolArray) -> None:
        lay = self.lay
        for g_i, g in enumerate(lay.guarantees):
            if g.called_on is not None:
                if g.called_on != gi:
                    continue
                mask = active
            else:
                mask = active & (self.settle_default == gi)
                if not mask.any():
                    continue
            ti = g.covers
            loss = self.drawn[ti] - self.repaid[ti]
            if g.interest:
                due, near = _interest_due(self.capi[ti] + self.accr[ti])
                self.flagged |= near & mask
                loss = loss + due
            for j, h in enumerate(lay.guarantees):
                if h.covers == ti:
                    loss = loss - self.owed_g[j]
            loss = np.maximum(0.0, loss)
            payout = loss
            if g.share is not None:
                num, den = g.share
                li = np.rint(loss).astype(np.int64)
                payout = ((2 * li * num + den) // (2 * den)).astype(np.float64)
            if g.amount is not None:
                payout = np.minimum(payout, g.amount)
            payout = np.where(mask, payout, 0.0)
            self.guar_recv[ti] += payout
            self.owed_g[g_i] = np.where(mask, payout, self.owed_g[g_i])
            t = lay.tranches[ti]
            if t.funder < len(lay.funders):
                self.flows[t.funder, self.col_of[gi]] += payout
            self.g_paid[g.guarantor] += payout

    def _result(self) -> Flows:
        lay = self.lay
        n = self.n
        NF = len(lay.funders)
        invested = np.zeros((n, NF))
        guar = np.zeros((n, NF))
        for ti, t in enumerate(lay.tranches):
            invested[:, t.funder] += t.draws.sum()
            guar[:, t.funder] += self.guar_recv[ti]
        return Flows(
            flows=self.flows, invested=invested,
            received=np.stack(self.received, axis=1) if NF else np.zeros((n, 0)), guarantee_received=guar,
            guarantor_paid=np.stack([self.g_paid[g] for g in lay.guarantors], axis=1) if lay.guarantors
            else np.zeros((n, 0)),
            guarantor_recovered=np.stack([self.g_back[g] for g in lay.guarantors], axis=1) if lay.guarantors
            else np.zeros((n, 0)),
            provider_received=self.provider, closing_balance=self.balance,
            clawback_outstanding=np.sum(self.claw, axis=0) if self.claw else np.zeros(n), flagged=self.flagged,
        )
