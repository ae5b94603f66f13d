"""One chunk of a simulation: worlds -> payments -> waterfall -> returns (layer 2).

:func:`run_chunk` is what a worker runs.  It returns only per-world figures
(:class:`ChunkResult`), never the worlds' full cash flows, so that a million worlds fit in
memory.  Chunks start at a multiple of :data:`~sib_engine.simulation.world.BLOCK` paths and
their results depend on nothing but the plan, the seed and the paths they cover, so that
concatenating chunks in order gives the same arrays however the work was split.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from decimal import Decimal

import numpy as np
import numpy.typing as npt

from sib_engine.metrics import date_of, day_of
from sib_engine.returns import solve_rates
from sib_engine.simulation import cashflows
from sib_engine.simulation.payments import PaymentResult, payments
from sib_engine.simulation.plan import Plan
from sib_engine.simulation.world import NO_PINS, Pins, World, draw
from sib_engine.waterfall import OutcomePayment, RETURN_KINDS, run_waterfall

FloatArray = npt.NDArray[np.float64]

_HASH_BITS = 17
_HASH_MULT = np.uint64(0x9E3779B97F4A7C15)  # Fibonacci hashing of a float's bits
_HASH_SHIFT = np.uint64(64 - _HASH_BITS)


@dataclass
class ChunkResult:
    """Per-world figures of a run (money in the contract's currency, as float64)."""

    effects: FloatArray
    """(n, effects) the true effect of each assumption."""
    delay: npt.NDArray[np.int64]
    enrolled: npt.NDArray[np.int64]
    """(n,) participants enrolled over all cohorts."""
    owed: FloatArray
    """(n,) what the determinations found owed (before appropriation failures)."""
    paid: FloatArray
    """(n,) outcome payments made (net of clawbacks), all payers."""
    paid_by_payer: FloatArray
    """(n, payers)."""
    paid_by_trigger: FloatArray
    """(n, triggers)."""
    unbudgeted: FloatArray
    """(n,) payments owed but not made (appropriation failures)."""
    truth: FloatArray
    """(n,) what the contract pays in the same world measured without sampling noise (NaN
    when not computed)."""
    invested: FloatArray
    """(n, funders)."""
    received: FloatArray
    """(n, funders) from the waterfall, guarantee apart."""
    guarantee_received: FloatArray
    irr: FloatArray
    """(n, funders) annual IRR (XIRR, act/365); NaN when there is none."""
    guarantor_paid: FloatArray
    guarantor_recovered: FloatArray
    provider_received: FloatArray
    first_payment_day: FloatArray
    """(n,) day number of the first outcome payment (NaN if none)."""
    repaired: npt.NDArray[np.bool_]
    """(n,) worlds whose waterfall was recomputed by the exact path (near a rounding tie)."""

    @property
    def n(self) -> int:
        return int(self.paid.shape[0])


FIELDS = tuple(f.name for f in fields(ChunkResult))


def allocate(like: ChunkResult, n: int) -> ChunkResult:
    """Uninitialised arrays for ``n`` worlds, shaped (but for their length) as ``like``'s:
    the result of a run, which :func:`place` fills chunk by chunk."""
    return ChunkResult(**{name: np.empty((n,) + getattr(like, name).shape[1:], getattr(like, name).dtype)
                          for name in FIELDS})


def place(out: ChunkResult, at: int, part: ChunkResult) -> None:
    """Copy the worlds of ``part`` into ``out`` from world ``at`` on (chunks may be placed
    from several threads at once: they write disjoint rows)."""
    stop = at + part.n
    for name in FIELDS:
        getattr(out, name)[at:stop] = getattr(part, name)


def concat(parts: list[ChunkResult]) -> ChunkResult:
    out = allocate(parts[0], sum(p.n for p in parts))
    at = 0
    for p in parts:
        place(out, at, p)
        at += p.n
    return out


def _add(x: npt.NDArray[np.int64], axis: int) -> npt.NDArray[np.int64]:
    """The sum of an integer array over one axis, slice by slice (exact; numpy's reductions
    are slow over axes as short as a deal's determinations or payers)."""
    parts = np.moveaxis(x, axis, 0)
    if parts.shape[0] == 0:
        return np.zeros(parts.shape[1:], dtype=x.dtype)
    out: npt.NDArray[np.int64] = parts[0].copy()
    for part in parts[1:]:
        out += part
    return out


class Runner:
    """A plan with what is computed once per plan (the capital stack's layout, the memo of
    exact schedule amounts)."""

    def __init__(self, plan: Plan):
        self.plan = plan
        self.layout = cashflows.layout(plan)
        self.memo: dict[tuple[object, ...], int] = {}
        days = self.layout.days[self.layout.flow_cols]
        self.times = (days - days[0]).astype(np.float64) / 365.0
        self.chunk_flows: FloatArray = np.zeros((0, 0, 0))
        """The last chunk's funder cash flows (worlds, funders, ``layout.flow_cols``) in minor
        units, for inspection (a run keeps only per-world figures; on several threads, the
        chunk finished last).  A view of the waterfall's (funders, flow columns, worlds)
        array."""

    def run(self, seed: int, start: int, stop: int, pins: Pins = NO_PINS, *, truth: bool = True,
            shock_seed: int | None = None, loading: float = 0.0, deal: int | None = None) -> ChunkResult:
        plan = self.plan
        world = draw(plan, seed, start, stop, pins, shock_seed=shock_seed, loading=loading, deal=deal)
        pay = payments(plan, world, self.memo)
        truth_paid = np.full(world.n, np.nan)
        if truth:
            nf = Pins(pins.effects, pins.quantiles, False, pins.appropriation)
            w2 = draw(plan, seed, start, stop, nf, shock_seed=shock_seed, loading=loading, deal=deal)
            p2 = payments(plan, w2, self.memo)
            truth_paid = _add(_add(_add(p2.lines + p2.lines_neg, 1), 1), 1) / 10.0**plan.minor
        return self.finish(world, pay, truth_paid)

    def finish(self, world: World, pay: PaymentResult, truth_paid: FloatArray) -> ChunkResult:
        plan, lay = self.plan, self.layout
        q = 10.0**plan.minor
        # a payer that fails to budget a payment does not make its payment lines of that
        # determination; what it is owed back (clawbacks) still stands
        keep = ~np.transpose(world.fail, (0, 2, 1))  # (n, K, P)
        pos = np.where(keep, pay.pos, 0).astype(np.float64)
        neg = pay.neg.astype(np.float64)
        kept_lines = pay.lines * keep[:, :, None, :] + pay.lines_neg  # (n, K, triggers, P)
        owed_units = _add(_add(_add(pay.lines + pay.lines_neg, 1), 1), 1)
        kept_tp = _add(kept_lines, 1)  # (n, triggers, P)
        payer_units = _add(kept_tp, 1)
        paid_units = _add(payer_units, 1)
        owed = owed_units / q
        paid = paid_units / q
        paid_by_payer = payer_units / q
        paid_by_trigger = _add(kept_tp, 2) / q
        steps = None if pay.steps is None else pay.steps * keep[:, :, None, None, :]
        fl = cashflows.run(plan, lay, pos, neg, steps)  # rescales share-step lines in ``pos``
        flows = fl.flows
        invested, received, guar = fl.invested, fl.received, fl.guarantee_received
        g_paid, g_back, prov = fl.guarantor_paid, fl.guarantor_recovered, fl.provider_received
        for i in np.flatnonzero(fl.flagged):
            self._repair(int(i), pos[i], neg[i], flows, invested, received, guar, g_paid, g_back, prov)
        self.chunk_flows = np.transpose(flows, (2, 0, 1))
        nf = len(lay.funders)
        irr = np.full((world.n, nf), np.nan)
        for f in range(nf):
            irr[:, f] = self.rates(flows[f] / q)
        has = _add(pay.pos * keep, 2) > 0  # (n, K)
        first = np.full(world.n, np.inf)
        for k, det in enumerate(plan.dets):
            np.minimum(first, np.where(has[:, k], float(det.payment_day), np.inf), out=first)
        first[np.isinf(first)] = np.nan
        return ChunkResult(
            effects=world.effects, delay=world.delay, enrolled=_add(world.n_t, 1), owed=owed, paid=paid,
            paid_by_payer=paid_by_payer, paid_by_trigger=paid_by_trigger, unbudgeted=(owed_units - paid_units) / q, truth=truth_paid,
            invested=invested / q, received=received / q, guarantee_received=guar / q, irr=irr,
            guarantor_paid=g_paid / q, guarantor_recovered=g_back / q, provider_received=prov / q,
            first_payment_day=first, repaired=fl.flagged.copy(),
        )

    def rates(self, cols: FloatArray) -> FloatArray:
        """XIRR of every world from its cash flows ``cols`` (flow columns, worlds): one row
        per flow date (``layout.flow_cols``), one column per world.

        Many worlds give a funder the same cash flows (a senior lender repaid on the same
        dates), and a world's rate depends on nothing but its flows: a world whose flows
        equal those of the world kept in its slot of a hash table (checked amount by
        amount) takes that world's rate; only the others are solved.  (A table, not a
        sort: some duplicates sharing a slot with other flows are solved again, which
        costs a little time and changes no figure.)"""
        k, n = cols.shape
        if n == 0:
            return np.zeros(0)
        # flow dates on which every world has the same amount (drawdowns, often) tell no
        # world apart: only the others are hashed and compared
        varying = [j for j in range(k) if not (cols[j] == cols[j, 0]).all()]
        if not varying:
            return np.full(n, self._solve(cols[:, :1])[0])
        h = cols[varying[0]].copy()
        for i, j in enumerate(varying[1:]):
            h += cols[j] * (1.0 / (i + 1 + math.sqrt(2.0)))
        slot = (h.view(np.uint64) * _HASH_MULT) >> _HASH_SHIFT
        table = np.empty(1 << _HASH_BITS, dtype=np.intp)
        every = np.arange(n)
        table[slot] = every
        rep = table[slot]
        copy = rep != every
        for j in varying:
            copy &= cols[j].take(rep) == cols[j]
        solve = np.flatnonzero(~copy)
        out = np.empty(n)
        out[solve] = self._solve(cols.take(solve, axis=1))
        dup = np.flatnonzero(copy)
        out[dup] = out[rep[dup]]
        return out

    def _solve(self, cols: FloatArray) -> FloatArray:
        """:func:`~sib_engine.returns.solve_rates` of worlds given as columns; each world
        starts from its own first guess (sums over its flows in date order) and is solved
        on its own, so its rate never depends on the other worlds in the batch."""
        return solve_rates(self.times, cols.T).rates

    # -- the exact waterfall for worlds near a rounding tie ---------------------------
    def payment_lines(self, pos: FloatArray, neg: FloatArray) -> list[OutcomePayment]:
        """One world's payment lines as the exact waterfall receives them."""
        plan, lay = self.plan, self.layout
        out: list[OutcomePayment] = []
        for k, det in enumerate(plan.dets):
            when = date_of(det.payment_day)
            for p in lay.payer_order:
                for amount in (pos[k, p], neg[k, p]):
                    if amount != 0:
                        out.append(OutcomePayment(when, Decimal(int(amount)).scaleb(-plan.minor),
                                                  plan.payers[p].party, determination=det.id))
        return out

    def _repair(self, i: int, pos: FloatArray, neg: FloatArray, flows: FloatArray, invested: FloatArray,
                received: FloatArray, guar: FloatArray, g_paid: FloatArray, g_back: FloatArray,
                prov: FloatArray) -> None:
        plan, lay = self.plan, self.layout
        res = run_waterfall(plan.contract, self.payment_lines(pos, neg))
        q = plan.minor
        index = {int(lay.days[c]): j for j, c in enumerate(lay.flow_cols)}
        flows[:, :, i] = 0.0
        received[i] = 0.0
        guar[i] = 0.0
        invested[i] = 0.0
        for f, party_i in enumerate(lay.funders):
            party = lay.parties[party_i]
            for d, a in res.investment_flows(party):
                flows[f, index[day_of(d)], i] += float(a.scaleb(q))
            for fl in res.flows:
                if fl.kind == "drawdown" and fl.source == party:
                    invested[i, f] += float(fl.amount.scaleb(q))
                elif fl.target == party and fl.kind == "guarantee":
                    guar[i, f] += float(fl.amount.scaleb(q))
                elif fl.target == party and fl.kind in RETURN_KINDS and fl.kind != "drawdown":
                    received[i, f] += float(fl.amount.scaleb(q))
        for gj, party_i in enumerate(lay.guarantors):
            party = lay.parties[party_i]
            g_paid[i, gj] = sum(float(fl.amount.scaleb(q)) for fl in res.flows
                                if fl.source == party and fl.kind == "guarantee")
            g_back[i, gj] = sum(float(fl.amount.scaleb(q)) for fl in res.flows
                                if fl.target == party and fl.kind == "guarantee_recovery")
        provider = lay.parties[lay.provider]
        prov[i] = sum(float(fl.amount.scaleb(q)) for fl in res.flows
                      if fl.source == "SPV" and fl.target == provider and fl.kind != "service_funding")
