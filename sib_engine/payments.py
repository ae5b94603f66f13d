"""Caps and payers: from what triggers are owed to what each payer pays (layer 2).

What the triggers are owed arrives as *rows*, in date order: one per payable rate-card
event (with its participant) and one per change of a schedule-based trigger's amount at a
determination (dated at the determination's data date, after the events of that day).
Money in the rows is held as integers in units of ``10**-scale`` of the currency (the
scale fits every price and cap exactly), so sums and caps are exact and vectorised.

**The order in which caps apply** (each on what the previous left; within each, rows are
taken first come, first served in date order, ties by trigger, outcome, participant):

1. claim limits and prerequisites decide which events are payable at all
   (:mod:`sib_engine.triggers`);
2. per outcome: ``cap_units`` (the first so many events over the contract are paid,
   later ones are not counted), then ``cap_amount``;
3. per trigger: ``cap_per_participant``, then ``cap_per_period``, then ``cap`` (the
   trigger over the whole contract);
4. for the contract (over all triggers): ``caps.per_participant``, then
   ``caps.per_period``;
5. rounding to the minor unit (:func:`sib_engine.money.round_money`), once per trigger,
   outcome and period;
6. the split among the primary payers (fixed shares, or the municipality of residence of
   each participant; a schedule-based amount is split by the residence of the participants
   it is for), by largest remainder (:func:`sib_engine.money.allocate`) so that the parts
   add up to the cent.  A schedule-based trigger's amount is split *cumulatively*: at each
   determination its cumulative amount is split by the weights of that determination
   (shares, or the participants in scope by municipality), and a payer's part of the
   change is its part of the cumulative amount less its part at the determination before
   (so a payer's parts always add up to its share of the latest cumulative amount);
7. each primary payer's ``cap`` over the contract (in order of period, trigger, outcome);
8. ``caps.total``: the contract's total cap, over what the primary payers pay after their
   own caps (in order of period, trigger, outcome, then payers in contract order);
9. top-ups: each top-up fund pays its fraction of what the primary payers pay (after
   their caps), rounded, then its own ``cap``.

**Every cap is a running cap** (:func:`running_cap`): taking the rows it covers in order,
the total paid after each row is the lesser of the total owed so far and the cap, and the
row pays the change of that total.  With rows that are all positive this is first come,
first served.  A negative row (a schedule-based amount lower than before) lowers the total
owed; it is clawed back only as far as the total owed falls below the cap (what the cap
held back goes first), and it frees room for later rows only then.  So a cap never makes
a payment negative by itself, and what a cap lets through depends only on the total owed.

**Monotone in outcomes.**  With running caps, what a cap lets through never falls as what
it covers grows.  The contract's total therefore never falls as outcomes improve when the
caps that bind are *nested* in the order they apply: each cap covers either all or none of
the rows of any cap applied before it.  Per-participant caps, then per-payer caps (by
residence, a participant belongs to one payer; with fixed shares each payer pays a share
of everything), then ``caps.total`` are nested; that is why payer caps come before
``caps.total`` (a total cap applied first would spend its room on amounts that a payer cap
then refuses, so that better outcomes for one payer's residents could lower the total).
Caps that cross (a trigger's ``cap`` and a payer's cap, or a trigger's ``cap`` and
``caps.per_period``) are not monotone in general, under any first-come-first-served
order: more outcomes early may fill the first cap with amounts the second then refuses (a
trigger's cap on one pooled amount split in fixed proportions among capped payers is
harmless: each payer's part still grows with the amount).  Caps per
period also cross the claim limits: an outcome achieved earlier moves a participant's
claim into an earlier period, whose cap may already be full.  A payer's own
amount is monotone in its residents' outcomes only while no cap shared with other payers
binds (a shared cap is room that one payer's outcomes take from another's), and, for a
split with remainders, up to the cent a largest-remainder split may move between payers.

Per-participant caps only bind amounts paid for a participant (rate-card events); a
schedule-based amount is for a cohort or all cohorts.  Caps are the terms in force at the
determination (:meth:`Contract.at` the end of its period); shares and top-ups are the terms
in force at the end of the period being paid.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from sib_engine.contract import Contract, RateCardTrigger
from sib_engine.metrics import EvaluationError, lexsort
from sib_engine.money import allocate, format_money, round_money
from sib_engine.trace import Trace, cite

STEPS: tuple[tuple[str, str], ...] = (
    ("outcome_units", "outcome cap_units"),
    ("outcome_amount", "outcome cap_amount"),
    ("trigger_participant", "trigger cap_per_participant"),
    ("trigger_period", "trigger cap_per_period"),
    ("trigger_total", "trigger cap"),
    ("contract_participant", "caps.per_participant"),
    ("contract_period", "caps.per_period"),
)
"""The caps on rows, in the order they apply (names and how the contract calls them);
``caps.total`` applies later, to what the payers pay after their own caps."""

CAP_ORDER: tuple[str, ...] = tuple(label for _, label in STEPS) + (
    "rounding",
    "payer split",
    "payer cap",
    "caps.total",
    "top-up",
    "top-up payer cap",
)
"""Every step from what triggers are owed to what payers pay, in order."""

NO_CAP = -1


@dataclass(frozen=True)
class CapLimits:
    """The caps in force at a determination, by trigger index and outcome index."""

    outcome_units: Mapping[tuple[int, int], int] = field(default_factory=dict)
    outcome_amount: Mapping[tuple[int, int], Decimal] = field(default_factory=dict)
    trigger_participant: Mapping[int, Decimal] = field(default_factory=dict)
    trigger_period: Mapping[int, Decimal] = field(default_factory=dict)
    trigger_total: Mapping[int, Decimal] = field(default_factory=dict)
    contract_participant: Decimal | None = None
    contract_period: Decimal | None = None
    contract_total: Decimal | None = None
    clauses: Mapping[tuple[str, object], str] = field(default_factory=dict)

    def signature(self) -> tuple[object, ...]:
        """What the caps on rows (:data:`STEPS`) depend on (``contract_total`` applies later)."""
        return (
            tuple(sorted(self.outcome_units.items())), tuple(sorted(self.outcome_amount.items())),
            tuple(sorted(self.trigger_participant.items())), tuple(sorted(self.trigger_period.items())),
            tuple(sorted(self.trigger_total.items())), self.contract_participant, self.contract_period,
        )

    def limit(self, step: str, key: object) -> object:
        tables: dict[str, Mapping[Any, object]] = {
            "outcome_units": self.outcome_units, "outcome_amount": self.outcome_amount,
            "trigger_participant": self.trigger_participant, "trigger_period": self.trigger_period,
            "trigger_total": self.trigger_total,
        }
        table = tables.get(step)
        if table is not None:
            return table.get(key)
        return {"contract_participant": self.contract_participant, "contract_period": self.contract_period,
                "contract_total": self.contract_total}[step]


def cap_limits(terms: Contract, trigger_ids: Sequence[str], outcomes: Mapping[int, tuple[str, ...]]) -> CapLimits:
    """The caps of ``terms`` indexed like the rows, each with its clause (and the amendment
    that changed it, if any: :func:`sib_engine.trace.cite`)."""
    ou: dict[tuple[int, int], int] = {}
    oa: dict[tuple[int, int], Decimal] = {}
    tp: dict[int, Decimal] = {}
    tper: dict[int, Decimal] = {}
    tt: dict[int, Decimal] = {}
    clauses: dict[tuple[str, object], str] = {}

    def put(step: str, key: object, clause: str | None, path: str) -> None:
        clauses[(step, key)] = cite(terms, clause, path) or path

    for ti, tid in enumerate(trigger_ids):
        t = next((x for x in terms.triggers if x.id == tid), None)
        if t is None:
            continue
        if t.cap is not None:
            tt[ti] = t.cap
            put("trigger_total", ti, t.clause, f"triggers.{tid}.cap")
        if isinstance(t, RateCardTrigger):
            if t.cap_per_participant is not None:
                tp[ti] = t.cap_per_participant
                put("trigger_participant", ti, t.clause, f"triggers.{tid}.cap_per_participant")
            if t.cap_per_period is not None:
                tper[ti] = t.cap_per_period
                put("trigger_period", ti, t.clause, f"triggers.{tid}.cap_per_period")
            for oi, metric in enumerate(outcomes.get(ti, ())):
                o = next((x for x in t.outcomes if x.metric == metric), None)
                if o is None:
                    continue
                if o.cap_units is not None:
                    ou[(ti, oi)] = o.cap_units
                    put("outcome_units", (ti, oi), o.clause or t.clause, f"triggers.{tid}.outcomes.{metric}.cap_units")
                if o.cap_amount is not None:
                    oa[(ti, oi)] = o.cap_amount
                    put("outcome_amount", (ti, oi), o.clause or t.clause,
                        f"triggers.{tid}.outcomes.{metric}.cap_amount")
    c = terms.caps
    cc = (c.clause or "caps") if c is not None else "caps"
    for step, name in (("contract_participant", "per_participant"), ("contract_period", "per_period"),
                       ("contract_total", "total")):
        put(step, None, cc, f"caps.{name}")
    return CapLimits(
        ou, oa, tp, tper, tt,
        c.per_participant if c else None, c.per_period if c else None, c.total if c else None, clauses,
    )


# ------------------------------------------------------------------------- rows ---

Rows = dict[str, np.ndarray]
"""A table as numpy columns (int64): what the caps work on."""

ROW_COLUMNS = ("day", "kind", "trig", "outc", "pcode", "period", "det", "seg", "muni", "units", "amount")
PIECE_COLUMNS = ("det", "trig", "outc", "period", "muni", "seg", "units", "gross_units", "gross", "amount") + tuple(
    f"red_{step}" for step, _ in STEPS)
"""Columns of :func:`aggregate`'s result, in order."""


def concat_rows(parts: Sequence[Rows]) -> Rows:
    return {c: np.concatenate([np.asarray(p[c], dtype=np.int64) for p in parts]) for c in ROW_COLUMNS}


def sort_rows(rows: Rows) -> Rows:
    """Rows in the order caps consume them: date, events before schedule changes,
    trigger, outcome, participant."""
    order = lexsort((rows["pcode"], rows["outc"], rows["trig"], rows["kind"], rows["day"]))
    return {c: v[order] for c, v in rows.items()}


def select_rows(rows: Rows, mask: np.ndarray) -> Rows:
    return {c: v[mask] for c, v in rows.items()}


def _capped(amount: np.ndarray, key: np.ndarray, cap: np.ndarray) -> np.ndarray:
    """Running cap per group: what each row is paid (see :func:`running_cap`).

    With ``S`` the running sum of a group, the running total paid is ``min(S, cap)``; the
    row pays the step of that total.  Rows are in the order they consume the caps; groups
    are given by ``key``.
    """
    if len(amount) == 0:
        return np.zeros(0, dtype=np.int64)
    order = lexsort((key,))
    k, a, c = key[order], amount[order], cap[order]
    start = np.r_[True, k[1:] != k[:-1]]
    gidx = np.cumsum(start) - 1
    cs = np.cumsum(a)
    s = cs - (cs - a)[start][gidx]
    paid_total = np.minimum(s, c)
    prev = np.r_[0, paid_total[:-1]]
    prev[start] = 0
    out = np.empty(len(a), dtype=np.int64)
    out[order] = paid_total - prev
    return out


def apply_caps(rows: Rows, limits: CapLimits, scale: int, n_outcomes: int, n_periods: int) -> Rows:
    """The rows after every cap of :data:`STEPS`, with ``gross`` (before caps), ``amount``
    (after) and ``red_<step>`` (what each step took) columns."""
    out = dict(rows)
    amount = np.asarray(rows["amount"], dtype=np.int64).copy()
    units = np.asarray(rows["units"], dtype=np.int64).copy()
    out["gross"] = amount.copy()
    out["gross_units"] = units.copy()
    trig = rows["trig"]
    outc = rows["outc"]
    pcode = rows["pcode"]
    period = rows["period"]
    is_claim = rows["kind"] == 0
    n_trig = int(trig.max()) + 1 if len(trig) else 1
    n_part = int(pcode.max()) + 2 if len(pcode) else 1

    def scaled_cap(d: Decimal) -> int:
        return int(d.scaleb(scale).to_integral_value())

    def per_trigger(table: Mapping[int, Decimal]) -> np.ndarray:
        arr = np.full(n_trig, NO_CAP, dtype=np.int64)
        for ti, v in table.items():
            if ti < n_trig:
                arr[ti] = scaled_cap(v)
        return arr

    key: np.ndarray
    for step, _ in STEPS:
        before = amount.copy()
        if step == "outcome_units" and limits.outcome_units:
            cap = np.full(n_trig * (n_outcomes + 1), NO_CAP, dtype=np.int64)
            for (ti, oi), v in limits.outcome_units.items():
                if ti < n_trig:
                    cap[ti * (n_outcomes + 1) + oi] = v
            key = trig * (n_outcomes + 1) + outc
            sub = is_claim & (cap[key] >= 0) & (units > 0)
            if sub.any():
                idx = np.flatnonzero(sub)
                k = key[idx]
                order = lexsort((k,))
                ks = k[order]
                start = np.r_[True, ks[1:] != ks[:-1]]
                pos = np.arange(len(ks)) - np.flatnonzero(start)[np.cumsum(start) - 1]
                rank = np.empty(len(idx), dtype=np.int64)
                rank[order] = pos + 1
                drop = idx[rank > cap[k]]
                amount[drop] = 0
                units[drop] = 0
        elif step == "outcome_amount" and limits.outcome_amount:
            cap = np.full(n_trig * (n_outcomes + 1), NO_CAP, dtype=np.int64)
            for (ti, oi), d in limits.outcome_amount.items():
                if ti < n_trig:
                    cap[ti * (n_outcomes + 1) + oi] = scaled_cap(d)
            key = trig * (n_outcomes + 1) + outc
            sub = is_claim & (cap[key] >= 0)
            if sub.any():
                amount[sub] = _capped(amount[sub], key[sub], cap[key[sub]])
        elif step in ("trigger_participant", "trigger_period", "trigger_total"):
            table = {"trigger_participant": limits.trigger_participant, "trigger_period": limits.trigger_period,
                     "trigger_total": limits.trigger_total}[step]
            if table:
                tcap = per_trigger(table)
                sub = tcap[trig] >= 0
                if step == "trigger_participant":
                    sub &= is_claim
                    key = trig * n_part + pcode
                elif step == "trigger_period":
                    key = trig * (n_periods + 1) + period
                else:
                    key = trig
                if sub.any():
                    amount[sub] = _capped(amount[sub], key[sub], tcap[trig[sub]])
        elif step in ("contract_participant", "contract_period"):
            lv = limits.limit(step, None)
            if lv is not None:
                assert isinstance(lv, Decimal)
                c = scaled_cap(lv)
                if step == "contract_participant":
                    sub = is_claim
                    key = pcode
                else:
                    sub = np.ones(len(amount), dtype=bool)
                    key = period
                if sub.any():
                    amount[sub] = _capped(amount[sub], key[sub], np.full(int(sub.sum()), c, dtype=np.int64))
        out[f"red_{step}"] = before - amount
    out["amount"] = amount
    out["units"] = units
    return out


def aggregate(capped: Rows) -> np.ndarray:
    """Sum the capped rows per determination, trigger, outcome, period, municipality and
    price segment (the pieces every determination's amounts are assembled from): an int64
    array with the columns :data:`PIECE_COLUMNS`."""
    keys = ("det", "trig", "outc", "period", "muni", "seg")
    values = PIECE_COLUMNS[len(keys):]
    n = len(capped["day"])
    if n == 0:
        return np.zeros((0, len(PIECE_COLUMNS)), dtype=np.int64)
    cols = [np.asarray(capped[k], dtype=np.int64) for k in keys]
    cols[4] = cols[4] + 1  # municipality -1 (none) -> 0
    combined = np.zeros(n, dtype=np.int64)
    radix = 1
    for c in cols:
        size = int(c.max()) + 1
        if radix * size >= 2**62:  # pragma: no cover - astronomically many groups
            order = lexsort(tuple(reversed(cols)))
            break
        combined = combined * size + c
        radix *= size
    else:
        order = np.argsort(combined, kind="stable")
    sk = np.stack([c[order] for c in cols], axis=1)
    start = np.flatnonzero(np.r_[True, np.any(sk[1:] != sk[:-1], axis=1)])
    out = np.empty((len(start), len(PIECE_COLUMNS)), dtype=np.int64)
    out[:, : len(keys)] = sk[start]
    out[:, 4] -= 1
    for j, v in enumerate(values):
        out[:, len(keys) + j] = np.add.reduceat(np.asarray(capped[v], dtype=np.int64)[order], start)
    return out


# ------------------------------------------------------------------------ payers ---


@dataclass(frozen=True)
class PayerPart:
    payer: str
    amount: Decimal
    trace: Trace
    top_up: bool = False
    fraction: Decimal = Decimal(1)
    """The payer's weight over all weights (its part before rounding is ``fraction x``
    the exact amount)."""


def split_among_payers(
    amount: Decimal,
    terms: Contract,
    *,
    by_municipality: Mapping[str, Decimal] | None = None,
    clause_hint: str = "",
) -> list[PayerPart]:
    """Split a rounded ``amount`` among the primary payers of ``terms`` (largest remainder).

    ``by_municipality`` weighs a split by residence: municipality code -> the exact amount
    (or number of participants) it stands for.  Fixed shares ignore it.
    """
    cur = terms.currency
    primary = [p for p in terms.payers if p.mode != "top_up"]
    if primary and primary[0].mode == "share":
        weights = [p.share or Decimal(0) for p in primary]
        parts = allocate(amount, weights, cur)
        wsum = sum(weights, Decimal(0))
        return [
            PayerPart(p.party, a, Trace("payer share", f"{p.party} pays {p.share} of {format_money(amount, cur)} = "
                                        f"{format_money(a, cur)} (largest remainder)",
                                        cite(terms, p.clause, f"payers.{p.party}.share")),
                      fraction=w / wsum)
            for p, a, w in zip(primary, parts, weights)
        ]
    owner = {code: p.party for p in primary for code in p.residence}
    per_payer: dict[str, Decimal] = {}
    unknown: list[str] = []
    for code, w in (by_municipality or {}).items():
        party = owner.get(code)
        if party is None:
            unknown.append(str(code))
            continue
        per_payer[party] = per_payer.get(party, Decimal(0)) + w
    if unknown:
        raise EvaluationError(
            f"municipality {', '.join(sorted(unknown))} is not paid for by any payer ({clause_hint}); "
            "add it to a payer's 'residence' list or correct the participants' municipality"
        )
    payers = [p for p in primary if per_payer.get(p.party, Decimal(0)) != 0]
    if not payers:
        if amount == 0:
            return [PayerPart(p.party, Decimal(0), Trace("payer share", "nothing to split"), False) for p in primary[:0]]
        raise EvaluationError(
            f"an amount of {format_money(amount, cur)} ({clause_hint}) has no participant whose municipality "
            "says who pays it; check the municipality column of the enrolment rows"
        )
    weights = [abs(per_payer[p.party]) for p in payers]
    parts = allocate(amount, weights, cur)
    total_w = sum(weights, Decimal(0))
    return [
        PayerPart(
            p.party, a,
            Trace("payer by residence", f"{p.party} pays for its residents: {_fmt(per_payer[p.party])} of "
                  f"{_fmt(total_w)} -> {format_money(a, cur)} (largest remainder)",
                  cite(terms, p.clause, f"payers.{p.party}.residence")),
            fraction=w / total_w,
        )
        for p, a, w in zip(payers, parts, weights)
    ]


def _fmt(d: Decimal) -> str:
    return f"{d:f}"


def top_up_amount(primary_paid: Decimal, fraction: Decimal, currency: str) -> tuple[Decimal, Decimal]:
    """A top-up fund's part: ``fraction x`` what the primary payers pay, rounded (and the
    unrounded figure)."""
    raw = primary_paid * fraction
    return round_money(raw, currency), raw


def running_cap(amounts: Sequence[Decimal], cap: Decimal) -> list[Decimal]:
    """What each of ``amounts`` (in order) is paid under a running ``cap``: after each
    amount, the total paid is the lesser of the total owed so far and the cap."""
    total = Decimal(0)
    paid_total = Decimal(0)
    out = []
    for a in amounts:
        total += a
        new_paid = total + min(Decimal(0), cap - total)  # min(total, cap), in the amounts' decimals
        out.append(new_paid - paid_total)
        paid_total = new_paid
    return out
