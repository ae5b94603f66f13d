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

START = 0.1
"""Where Newton's method starts for a world whose flows suggest no rate (see
:meth:`Runner._solve`)."""


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


def concat(parts: list[ChunkResult]) -> ChunkResult:
    return ChunkResult(**{f.name: np.concatenate([getattr(p, f.name) for p in parts]) for f in fields(ChunkResult)})


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
        units, for inspection (a run keeps only per-world figures)."""

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
            truth_paid = (p2.lines + p2.lines_neg).sum(axis=(1, 2, 3)) / 10.0**plan.minor
        return self.finish(world, pay, truth_paid)

    def finish(self, world: World, pay: PaymentResult, truth_paid: FloatArray) -> ChunkResult:
        plan, lay = self.plan, self.layout
        q = 10.0**plan.minor
        # a payer that fails to budget a payment does not make its payment lines of that
        # determination; what it is owed back (clawbacks) still stands
        keep = ~np.transpose(world.fail, (0, 2, 1))  # (n, K, P)
        pos = np.where(keep, pay.pos, 0).astype(np.float64)
        neg = pay.neg.astype(np.float64)
        kept_lines = pay.lines * keep[:, :, None, :] + pay.lines_neg
        owed_units = (pay.lines + pay.lines_neg).sum(axis=(1, 2, 3))
        paid_units = kept_lines.sum(axis=(1, 2, 3))
        owed = owed_units / q
        paid = paid_units / q
        paid_by_payer = kept_lines.sum(axis=(1, 2)) / q
        paid_by_trigger = kept_lines.sum(axis=(1, 3)) / q
        fl = cashflows.run(plan, lay, pos, neg)
        flows = fl.flows
        invested, received, guar = fl.invested, fl.received, fl.guarantee_received
        g_paid, g_back, prov = fl.guarantor_paid, fl.guarantor_recovered, fl.provider_received
        for i in np.flatnonzero(fl.flagged):
            self._repair(int(i), pos[i], neg[i], flows, invested, received, guar, g_paid, g_back, prov)
        self.chunk_flows = flows
        nf = len(lay.funders)
        irr = np.full((world.n, nf), np.nan)
        for f in range(nf):
            irr[:, f] = self.rates(flows[:, f, :] / q)
        has = (pay.pos * keep).sum(axis=2) > 0  # (n, K)
        pay_days = np.array([d.payment_day for d in plan.dets], dtype=np.float64)
        first = np.where(has.any(axis=1), np.where(has, pay_days[None, :], np.inf).min(axis=1), np.nan)
        return ChunkResult(
            effects=world.effects, delay=world.delay, enrolled=world.n_t.sum(axis=1), owed=owed, paid=paid,
            paid_by_payer=paid_by_payer, paid_by_trigger=paid_by_trigger, unbudgeted=(owed_units - paid_units) / q, truth=truth_paid,
            invested=invested / q, received=received / q, guarantee_received=guar / q, irr=irr,
            guarantor_paid=g_paid / q, guarantor_recovered=g_back / q, provider_received=prov / q,
            first_payment_day=first, repaired=fl.flagged.copy(),
        )

    def rates(self, a: FloatArray) -> FloatArray:
        """XIRR of every row of ``a`` (on the flow columns' dates), each distinct row solved
        once: many worlds give a funder the same cash flows (a senior lender repaid on the
        same dates), and a row's rate depends on nothing but the row."""
        n = a.shape[0]
        if n == 0:
            return np.zeros(0)
        weights = 1.0 / (np.arange(a.shape[1], dtype=np.float64) + np.sqrt(2.0))
        h = a @ weights
        _, first, inv = np.unique(h, return_index=True, return_inverse=True)
        inv = inv.reshape(-1)
        reps = a[first]
        out = self._solve(reps)[inv]
        clash = np.flatnonzero(np.any(a != reps[inv], axis=1))  # rows that only share a hash
        if clash.size:
            out[clash] = self._solve(a[clash])
        return np.asarray(out, dtype=np.float64)

    def _solve(self, a: FloatArray) -> FloatArray:
        """:func:`~sib_engine.returns.solve_rates`, started near each row's rate and never
        depending on the other rows.

        The solver's own first guess comes from matrix products whose rounding depends on a
        row's position in the batch; a world's figures must not depend on which worlds
        share its chunk.  So each row's guess (the rate that turns its money out into its
        money back between their money-weighted mean dates) is computed here row by row,
        rounded to a whole number of ``ln(1 + r)``, and rows are solved in groups
        sharing a starting rate."""
        t = self.times
        pos = np.maximum(a, 0.0)
        neg = pos - a
        sp, sn = pos.sum(axis=1), neg.sum(axis=1)
        with np.errstate(all="ignore"):
            gap = (pos * t).sum(axis=1) / sp - (neg * t).sum(axis=1) / sn
            x = np.log(sp / sn) / gap
        x = np.clip(np.where(np.isfinite(x), x, math.log1p(START)), -19.0, 49.0)
        bucket = np.round(x)
        out = np.empty(a.shape[0])
        for b in np.unique(bucket):
            rows = np.flatnonzero(bucket == b)
            out[rows] = solve_rates(t, a[rows], guess=math.expm1(float(b))).rates
        return out

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
        flows[i] = 0.0
        received[i] = 0.0
        guar[i] = 0.0
        invested[i] = 0.0
        for f, party_i in enumerate(lay.funders):
            party = lay.parties[party_i]
            for d, a in res.investment_flows(party):
                flows[i, f, index[day_of(d)]] += float(a.scaleb(q))
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
