"""The capital stack and the waterfall (layer 2: pure computation).

Input: a contract and a stream of dated outcome payments (:class:`OutcomePayment`, one per
payment line: who pays, how much, when, for which trigger).  Output: a frozen
:class:`WaterfallResult` holding every flow of money in the deal (from, to, date, amount,
why, clause, waterfall step), the position of every tranche, every guarantee call and, per
distribution date, what each step was due and what it got.

How the money moves (the semantics, in order of events on one date):

1. **Accrual.**  Every tranche with a coupon accrues interest on its outstanding balance
   from the previous event date, with the tranche's day count (``act/365``, ``act/360``,
   ``30/360``).  ``simple``: interest on the drawn, unrepaid principal only; unpaid interest
   stays due but bears no interest.  ``annual`` / ``semiannual`` / ``quarterly`` /
   ``monthly``: on each compounding date (every 12, 6, 3 or 1 months from the tranche's
   first drawdown) the interest accrued and unpaid is capitalised and bears interest from
   then on (it is still paid as *interest*).  Interest accrues until the tranche's
   ``maturity`` or the deal's close, whichever comes first.  The rate is read from the terms
   in force (``contract.at(date)``), so an amended coupon applies from its effective date.
2. **Drawdowns.**  Each tranche is drawn on its dated ``drawdowns``, or in ``parts`` equal
   parts (split to the cent by largest remainder) every ``every_months`` months from the
   schedule's start, or, with neither, all at the start of the term.  A drawdown is a flow
   funder -> deal account (``SPV``), passed on at once to the provider as service funding.
   A deferred provider fee is drawn the same way: the provider funds its own service
   (provider -> SPV -> provider), and the fee becomes a claim in the waterfall.
3. **Outcome payments.**  Each line is a flow payer -> SPV.  A negative line (a clawback or
   downward true-up) becomes a sum owed back to that payer, repaid first from the next cash
   the SPV holds.  Lines of a ``share_of_savings`` trigger with ``share_steps`` are rescaled
   to the share in force: the step applies once the funders' cash received before that
   payment date gives them at least the step's annual return (the crossing payment itself
   is at the old share); each change is recorded in ``adjustments``.
4. **Distribution**, on every date with outcome payments (and at guarantee settlement and
   at close if cash is left): clawbacks owed first, then **recycling** (``share`` of the
   outcome payments received on or before ``until`` goes to the provider as service costs;
   with a ``service_budget``, only up to the part of the budget the capital stack does not
   fund), then the **waterfall steps in the declared order**:

   - ``interest`` (tranche): the interest accrued and unpaid (capitalised interest first);
   - ``principal`` (tranche): the drawn principal not yet repaid;
   - ``fee`` with a tranche: that tranche's interest then principal (a deferred fee); with
     an ``amount``: a fixed fee of that total over the deal to ``split`` (default: the
     provider);
   - ``costs``: ``amount`` in total over the deal, or without an amount the part of the
     ``service_budget`` not funded by the capital stack or recycling, to ``split`` (default:
     the provider);
   - ``bonus``: ``amount`` in total over the deal to ``split`` (default: the provider);
     without an amount, everything left;
   - ``residual``: everything left, split by ``split`` (up to ``amount`` if one is given).

   A step that cannot be paid in full keeps its shortfall: unpaid interest stays due (and
   compounds if the coupon compounds), unpaid principal stays outstanding, a fixed amount
   stays owed; the next distribution starts again from the first step.  Cash no step can
   take stays in the SPV and is carried forward (``closing_balance`` at the end).
5. **max_return.**  A tranche's receipts are capped so that its annual return (XIRR on
   act/365) does not exceed ``max_return``: before each payment the headroom is the value,
   at ``max_return``, of what was drawn less what was received.  A residual or bonus share
   to a party whose tranches are all capped is capped by their headroom; the excess goes to
   the other parties of the split, or stays in the SPV.
6. **Guarantees** are settled once, after the distribution of their date: ``called_on``, or
   by default the deal's close (the later of the term's end and the last outcome payment).
   The loss is the covered tranche's unrepaid principal (``basis: principal``) or unrepaid
   principal plus interest due (``principal_and_interest``), less what earlier guarantees
   of the same tranche paid and were not reimbursed; the guarantor pays ``share`` x loss,
   at most ``amount`` (the lower of the two when both are given) directly to the funder.  If outcome payments still
   arrive after the settlement, the covered tranche's later receipts reimburse the
   guarantor first, up to what it paid.

**Conservation** is exact: every flow is a whole number of cents (amounts due are rounded
by :func:`sib_engine.money.round_money`, splits use :func:`sib_engine.money.allocate`), and
everything that enters the SPV leaves it or is its closing balance, to the cent
(:meth:`WaterfallResult.conservation`).
"""

from __future__ import annotations

import html
from collections import defaultdict
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Iterable, Literal, Mapping, Sequence

from sib_engine.contract import (
    Capital,
    Contract,
    Coupon,
    Guarantee,
    ShareOfSavingsTrigger,
    Tranche,
    WaterfallStep,
)
from sib_engine.money import allocate, format_money, round_money
from sib_engine.periods import add_months

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

SPV = "SPV"
"""The deal account through which outcome payments and drawdowns pass (never a party id:
party ids are lower case)."""
PROVIDER_PLACEHOLDER = "PROVIDER"
"""Recipient of service funding when the contract names no provider party."""

ZERO = Decimal(0)
ONE = Decimal(1)
DAYS_PER_YEAR = Decimal(365)

FlowKind = Literal[
    "outcome_payment",
    "drawdown",
    "service_funding",
    "clawback",
    "recycling",
    "costs",
    "interest",
    "principal",
    "fee",
    "bonus",
    "residual",
    "guarantee",
    "guarantee_recovery",
]
FLOW_KINDS: tuple[str, ...] = (
    "outcome_payment",
    "drawdown",
    "service_funding",
    "clawback",
    "recycling",
    "costs",
    "interest",
    "principal",
    "fee",
    "bonus",
    "residual",
    "guarantee",
    "guarantee_recovery",
)
RETURN_KINDS: frozenset[str] = frozenset(
    {"drawdown", "interest", "principal", "fee", "bonus", "residual", "guarantee"}
)
"""Flow kinds that make up a funder's investment cash flows (service funding, recycling and
costs pay for work done, not a return on capital)."""

_COMPOUNDING_MONTHS: dict[str, int] = {"annual": 12, "semiannual": 6, "quarterly": 3, "monthly": 1}


# ------------------------------------------------------------------------ inputs ---


@dataclass(frozen=True)
class OutcomePayment:
    """One dated outcome payment line: ``payer`` pays ``amount`` on ``payment_date``.

    ``amount`` is exact money (``Decimal``, whole minor units); a negative amount is a
    clawback owed back to the payer.  The optional fields carry the trace of the payment
    line (trigger, determination, period, clause) into the flows and statements.
    """

    payment_date: date
    amount: Decimal
    payer: str
    trigger: str | None = None
    determination: str | None = None
    period: str | None = None
    clause: str | None = None
    description: str | None = None
    outcome: str | None = None
    """What the line pays for: a metric (rate cards) or a scope (``pooled``, ...)."""
    units: Decimal | None = None
    """The units the line rests on, as the evaluation reports them."""
    kind: str | None = None
    """``payment``, ``true_up`` or ``clawback`` (from an evaluation)."""

    def __post_init__(self) -> None:
        if not isinstance(self.amount, Decimal):
            raise TypeError(
                f"OutcomePayment.amount must be a Decimal, got {type(self.amount).__name__} "
                f"({self.amount!r}); write Decimal('{self.amount}')"
            )
        if not self.amount.is_finite():
            raise ValueError(f"OutcomePayment.amount must be finite, got {self.amount}")
        if not isinstance(self.payment_date, date):
            raise TypeError(f"OutcomePayment.payment_date must be a date, got {self.payment_date!r}")


@dataclass(frozen=True)
class ScheduledDrawdown:
    """One drawdown of a tranche, as scheduled by the contract."""

    tranche: str
    funder: str
    date: date
    amount: Decimal
    clause: str | None = None


# ----------------------------------------------------------------------- results ---


@dataclass(frozen=True)
class Flow:
    """One movement of money: ``amount`` from ``source`` to ``target`` on ``date``."""

    date: date
    source: str
    target: str
    amount: Decimal
    kind: str
    why: str
    clause: str | None = None
    step: int | None = None
    """1-based index of the waterfall step that paid it (None outside the waterfall)."""
    tranche: str | None = None
    trigger: str | None = None
    determination: str | None = None


@dataclass(frozen=True)
class StepResult:
    """What one waterfall step was due and what it got on one distribution date."""

    date: date
    step: int
    pay: str
    tranche: str | None
    due: Decimal | None
    """None for a step that takes whatever is left (residual)."""
    paid: Decimal
    shortfall: Decimal
    clause: str | None = None
    note: str = ""


@dataclass(frozen=True)
class Distribution:
    """The distribution of the SPV's cash on one date."""

    date: date
    received: Decimal
    """Outcome payments received on this date (positive lines)."""
    carried_in: Decimal
    clawbacks: Decimal
    recycled: Decimal
    steps: tuple[StepResult, ...]
    carried_out: Decimal


@dataclass(frozen=True)
class ShareStepAdjustment:
    """A share-of-savings payment line rescaled because funders reached a stated return."""

    line: int
    """Index of the adjusted line in :attr:`WaterfallResult.payments`."""
    payment: OutcomePayment
    """The line as received (before the adjustment)."""
    original_amount: Decimal
    amount: Decimal
    from_share: Decimal
    to_share: Decimal
    after_return: Decimal
    clause: str | None = None


@dataclass(frozen=True)
class GuaranteeCall:
    """The settlement of one guarantee."""

    id: str
    guarantor: str
    covers: str
    funder: str
    date: date
    basis: str
    loss: Decimal
    """The covered loss at settlement (after earlier guarantees of the same tranche)."""
    share: Decimal | None
    cap: Decimal | None
    paid: Decimal
    reimbursed: Decimal
    """Recovered by the guarantor from the tranche's receipts after settlement."""
    clause: str | None = None

    @property
    def net_cost(self) -> Decimal:
        return self.paid - self.reimbursed


@dataclass(frozen=True)
class TranchePosition:
    """A tranche at the deal's close."""

    id: str
    kind: str
    funder: str
    commitment: Decimal
    drawn: Decimal
    interest_accrued: Decimal
    interest_paid: Decimal
    principal_repaid: Decimal
    other_received: Decimal
    """Residual or bonus shares attributed to this tranche (capped tranches only)."""
    principal_outstanding: Decimal
    interest_due: Decimal
    guarantee_received: Decimal
    recovered_by_guarantor: Decimal
    capped: bool
    """True if max_return limited a payment to this tranche."""
    max_return: Decimal | None
    clause: str | None = None

    @property
    def received(self) -> Decimal:
        """Cash the funder received from the waterfall for this tranche (net of what went
        to a guarantor), not counting the guarantee."""
        return (
            self.interest_paid + self.principal_repaid + self.other_received - self.recovered_by_guarantor
        )


@dataclass(frozen=True)
class Conservation:
    """Money into and out of the SPV, to the cent."""

    into_spv: Decimal
    out_of_spv: Decimal
    closing_balance: Decimal

    @property
    def exact(self) -> bool:
        return self.into_spv == self.out_of_spv + self.closing_balance and self.closing_balance >= 0


@dataclass(frozen=True)
class WaterfallResult:
    """Every flow of money in a deal, and where each tranche stands at the close.

    Frozen: nothing here changes once computed.  ``to_frame()`` (alias ``flows_frame()``)
    is the money-flow statement: one row per flow.
    """

    contract_id: str
    currency: str
    start: date
    close: date
    payments: tuple[OutcomePayment, ...]
    """The payment lines as distributed (after share-step adjustments)."""
    drawdowns: tuple[ScheduledDrawdown, ...]
    flows: tuple[Flow, ...]
    distributions: tuple[Distribution, ...]
    tranches: tuple[TranchePosition, ...]
    guarantees: tuple[GuaranteeCall, ...]
    adjustments: tuple[ShareStepAdjustment, ...]
    closing_balance: Decimal
    """Cash left in the SPV that no step could take."""
    clawback_outstanding: Decimal
    """Sums owed back to payers that the SPV never had the cash to repay."""
    parties: tuple[tuple[str, str], ...] = ()
    """(party id, name) of the contract's parties, for labels."""
    notes: tuple[str, ...] = ()

    # -- lookups ----------------------------------------------------------------
    def tranche(self, tranche_id: str) -> TranchePosition:
        for t in self.tranches:
            if t.id == tranche_id:
                return t
        raise KeyError(f"no tranche '{tranche_id}' (known: {', '.join(t.id for t in self.tranches)})")

    def label(self, party: str) -> str:
        if party == SPV:
            return "Deal account (SPV)"
        return dict(self.parties).get(party, party)

    @property
    def funders(self) -> tuple[str, ...]:
        """Parties that fund a tranche, in the order of the capital stack."""
        out: list[str] = []
        for t in self.tranches:
            if t.funder not in out:
                out.append(t.funder)
        return tuple(out)

    @property
    def guarantors(self) -> tuple[str, ...]:
        out: list[str] = []
        for g in self.guarantees:
            if g.guarantor not in out:
                out.append(g.guarantor)
        return tuple(out)

    def received_payments(self) -> tuple[OutcomePayment, ...]:
        """The payment lines as they came in, before share-step adjustments."""
        lines = list(self.payments)
        for a in self.adjustments:
            lines[a.line] = a.payment
        return tuple(lines)

    @property
    def total_paid_by_payers(self) -> Decimal:
        return sum((f.amount for f in self.flows if f.kind == "outcome_payment"), ZERO) - sum(
            (f.amount for f in self.flows if f.kind == "clawback"), ZERO
        )

    # -- checks -----------------------------------------------------------------
    def conservation(self) -> Conservation:
        into = sum((f.amount for f in self.flows if f.target == SPV), ZERO)
        out = sum((f.amount for f in self.flows if f.source == SPV), ZERO)
        return Conservation(into, out, self.closing_balance)

    # -- cash flows -------------------------------------------------------------
    def cash_flows(
        self, party: str, kinds: Iterable[str] | None = None
    ) -> tuple[tuple[date, Decimal], ...]:
        """The party's dated net cash flows (received positive, paid negative), one per date,
        counting only flows of ``kinds`` (default: every kind)."""
        wanted = frozenset(kinds) if kinds is not None else None
        by_date: dict[date, Decimal] = defaultdict(lambda: ZERO)
        for f in self.flows:
            if wanted is not None and f.kind not in wanted:
                continue
            if f.source == f.target:
                continue
            if f.target == party:
                by_date[f.date] += f.amount
            elif f.source == party:
                by_date[f.date] -= f.amount
        return tuple(sorted(by_date.items()))

    def investment_flows(self, party: str) -> tuple[tuple[date, Decimal], ...]:
        """A funder's investment cash flows: drawdowns out, repayments, returns and
        guarantee payments in (service funding and costs excluded)."""
        flows: dict[date, Decimal] = defaultdict(lambda: ZERO)
        for f in self.flows:
            if f.kind not in RETURN_KINDS:
                continue
            if f.kind == "drawdown" and f.source == party:
                flows[f.date] -= f.amount
            elif f.target == party and f.kind != "drawdown":
                flows[f.date] += f.amount
        return tuple(sorted(flows.items()))

    # -- frames -----------------------------------------------------------------
    def to_frame(self) -> "pd.DataFrame":
        """The money-flow statement: one row per flow (from, to, date, amount, why, ...)."""
        import pandas as pd

        rows = [
            {
                "date": f.date,
                "from": f.source,
                "from_name": self.label(f.source),
                "to": f.target,
                "to_name": self.label(f.target),
                "amount": f.amount,
                "kind": f.kind,
                "why": f.why,
                "clause": f.clause,
                "step": f.step,
                "tranche": f.tranche,
                "trigger": f.trigger,
                "determination": f.determination,
            }
            for f in self.flows
        ]
        columns = ["date", "from", "from_name", "to", "to_name", "amount", "kind", "why",
                   "clause", "step", "tranche", "trigger", "determination"]
        return pd.DataFrame(rows, columns=columns)

    flows_frame = to_frame

    def tranches_frame(self) -> "pd.DataFrame":
        import pandas as pd

        rows = []
        for t in self.tranches:
            rows.append(
                {
                    "tranche": t.id,
                    "kind": t.kind,
                    "funder": t.funder,
                    "commitment": t.commitment,
                    "drawn": t.drawn,
                    "interest_accrued": t.interest_accrued,
                    "interest_paid": t.interest_paid,
                    "principal_repaid": t.principal_repaid,
                    "other_received": t.other_received,
                    "principal_outstanding": t.principal_outstanding,
                    "interest_due": t.interest_due,
                    "guarantee_received": t.guarantee_received,
                    "recovered_by_guarantor": t.recovered_by_guarantor,
                    "max_return": t.max_return,
                    "capped": t.capped,
                }
            )
        return pd.DataFrame(rows).set_index("tranche") if rows else pd.DataFrame()

    summary = tranches_frame

    def guarantees_frame(self) -> "pd.DataFrame":
        import pandas as pd

        columns = ["guarantee", "guarantor", "covers", "funder", "date", "basis", "loss",
                   "share", "cap", "paid", "reimbursed", "net_cost", "clause"]
        rows = [
            {
                "guarantee": g.id, "guarantor": g.guarantor, "covers": g.covers, "funder": g.funder,
                "date": g.date, "basis": g.basis, "loss": g.loss, "share": g.share, "cap": g.cap,
                "paid": g.paid, "reimbursed": g.reimbursed, "net_cost": g.net_cost, "clause": g.clause,
            }
            for g in self.guarantees
        ]
        return pd.DataFrame(rows, columns=columns)

    def steps_frame(self) -> "pd.DataFrame":
        """Per distribution date and step: due, paid and shortfall."""
        import pandas as pd

        columns = ["date", "step", "pay", "tranche", "due", "paid", "shortfall", "clause", "note"]
        rows = [
            {"date": s.date, "step": s.step, "pay": s.pay, "tranche": s.tranche, "due": s.due,
             "paid": s.paid, "shortfall": s.shortfall, "clause": s.clause, "note": s.note}
            for d in self.distributions
            for s in d.steps
        ]
        return pd.DataFrame(rows, columns=columns)

    def parties_frame(self) -> "pd.DataFrame":
        """Per party: money paid out, money received and the net."""
        import pandas as pd

        paid: dict[str, Decimal] = defaultdict(lambda: ZERO)
        got: dict[str, Decimal] = defaultdict(lambda: ZERO)
        order: list[str] = []
        for f in self.flows:
            for p in (f.source, f.target):
                if p not in order:
                    order.append(p)
            paid[f.source] += f.amount
            got[f.target] += f.amount
        rows = [
            {"party": p, "name": self.label(p), "paid": paid[p], "received": got[p],
             "net": got[p] - paid[p]}
            for p in order
        ]
        return pd.DataFrame(rows, columns=["party", "name", "paid", "received", "net"])

    # -- text -------------------------------------------------------------------
    def explain(self) -> str:
        """How every euro moved: drawdowns, each distribution step by step, guarantees."""
        def m(amount: Decimal) -> str:
            return format_money(amount, self.currency)

        lines = [f"Waterfall of {self.contract_id} ({self.start} to {self.close})"]
        for d in self.drawdowns:
            lines.append(f"  {d.date}  {d.funder} draws {m(d.amount)} of tranche {d.tranche}")
        for a in self.adjustments:
            lines.append(
                f"  {a.payment.payment_date}  share step: {a.payment.trigger} line of {a.payment.payer} "
                f"{m(a.original_amount)} -> {m(a.amount)} (share {a.from_share} -> {a.to_share} once "
                f"funders reached {a.after_return:.2%})"
            )
        for dist in self.distributions:
            lines.append(
                f"  {dist.date}  received {m(dist.received)}"
                + (f", carried in {m(dist.carried_in)}" if dist.carried_in else "")
                + (f", clawbacks repaid {m(dist.clawbacks)}" if dist.clawbacks else "")
                + (f", recycled {m(dist.recycled)}" if dist.recycled else "")
            )
            for s in dist.steps:
                due = "all remaining" if s.due is None else m(s.due)
                short = f", short {m(s.shortfall)} (carried forward)" if s.shortfall > 0 else ""
                what = s.pay + (f" {s.tranche}" if s.tranche else "")
                clause = f" [{s.clause}]" if s.clause else ""
                note = f" ({s.note})" if s.note else ""
                lines.append(f"      step {s.step} {what}: due {due}, paid {m(s.paid)}{short}{clause}{note}")
            if dist.carried_out:
                lines.append(f"      left in the SPV: {m(dist.carried_out)}")
        for g in self.guarantees:
            lines.append(
                f"  {g.date}  guarantee {g.id}: {g.guarantor} covers {g.covers} ({g.basis}); loss "
                f"{m(g.loss)}, paid {m(g.paid)}"
                + (f", reimbursed {m(g.reimbursed)}" if g.reimbursed else "")
            )
        lines.append("  At close:")
        for t in self.tranches:
            lines.append(
                f"    {t.id} ({t.kind}, {t.funder}): drawn {m(t.drawn)}, interest paid {m(t.interest_paid)}, "
                f"principal repaid {m(t.principal_repaid)}, outstanding {m(t.principal_outstanding)}"
                + (f", interest due {m(t.interest_due)}" if t.interest_due else "")
                + (", capped by max_return" if t.capped else "")
            )
        c = self.conservation()
        lines.append(
            f"  Conservation: into the SPV {m(c.into_spv)} = out {m(c.out_of_spv)} + left "
            f"{m(c.closing_balance)}: {'exact' if c.exact else 'NOT EXACT'}"
        )
        if self.clawback_outstanding:
            lines.append(f"  Clawbacks still owed to payers: {m(self.clawback_outstanding)}")
        for n in self.notes:
            lines.append(f"  Note: {n}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        into = sum((f.amount for f in self.flows if f.kind == "outcome_payment"), ZERO)
        return (
            f"<WaterfallResult {self.contract_id}: {len(self.flows)} flows, outcome payments "
            f"{format_money(into, self.currency)}, {len(self.tranches)} tranches, "
            f"{len(self.guarantees)} guarantee calls>"
        )

    def _repr_html_(self) -> str:
        frame = self.tranches_frame()
        head = html.escape(repr(self))
        table: str = frame.to_html() if len(frame) else ""
        return f"<p><strong>{head}</strong></p>" + table


# ---------------------------------------------------------------------- schedule ---


def tranche_drawdowns(tranche: Tranche, term_start: date, currency: str) -> tuple[ScheduledDrawdown, ...]:
    """The dated drawdowns of one tranche (explicit, equal parts, or all at term start)."""
    if tranche.drawdowns:
        return tuple(
            ScheduledDrawdown(tranche.id, tranche.funder, d.date, round_money(d.amount, currency), tranche.clause)
            for d in sorted(tranche.drawdowns, key=lambda d: d.date)
        )
    commitment = round_money(tranche.commitment, currency)
    s = tranche.drawdown_schedule
    if s is not None:
        parts = allocate(commitment, [ONE] * s.parts, currency)
        return tuple(
            ScheduledDrawdown(tranche.id, tranche.funder, add_months(s.start, i * s.every_months), part, tranche.clause)
            for i, part in enumerate(parts)
        )
    return (ScheduledDrawdown(tranche.id, tranche.funder, term_start, commitment, tranche.clause),)


def drawdown_schedule(contract: Contract) -> tuple[ScheduledDrawdown, ...]:
    """Every drawdown of the capital stack, in date order (tranche order within a date)."""
    if contract.capital is None:
        return ()
    out: list[ScheduledDrawdown] = []
    for t in contract.capital.tranches:
        out.extend(tranche_drawdowns(t, contract.term.start, contract.currency))
    order = {t.id: i for i, t in enumerate(contract.capital.tranches)}
    return tuple(sorted(out, key=lambda d: (d.date, order[d.tranche])))


def year_fraction(start: date, end: date, day_count: str) -> Decimal:
    """The year fraction between two dates under a day count (exact Decimal).

    ``30/360`` is the ISDA bond basis: a 31st is read as the 30th (the end date only when
    the start date is the 30th or 31st).

    >>> year_fraction(date(2024, 1, 1), date(2024, 7, 1), "act/360")
    Decimal('0.5055555555555555555555555556')
    >>> year_fraction(date(2024, 1, 31), date(2024, 7, 31), "30/360")
    Decimal('0.5')
    """
    if day_count == "30/360":
        d1 = min(start.day, 30)
        d2 = end.day
        if d2 == 31 and d1 == 30:
            d2 = 30
        days = 360 * (end.year - start.year) + 30 * (end.month - start.month) + (d2 - d1)
        return Decimal(days) / Decimal(360)
    days = (end - start).days
    if day_count == "act/360":
        return Decimal(days) / Decimal(360)
    if day_count == "act/365":
        return Decimal(days) / DAYS_PER_YEAR
    raise ValueError(f"unknown day count '{day_count}' (known: act/365, act/360, 30/360)")


def _growth(rate: Decimal, start: date, end: date) -> Decimal:
    """(1 + rate) ** (days / 365): the value at ``end`` of one unit at ``start``."""
    base = ONE + rate
    if base <= 0:
        return ZERO
    days = (end - start).days
    if days == 0:
        return ONE
    return base ** (Decimal(days) / DAYS_PER_YEAR)


def achieved_return(
    draws: Sequence[tuple[date, Decimal]], receipts: Sequence[tuple[date, Decimal]], on: date, rate: Decimal
) -> Decimal:
    """Value at ``on``, at annual ``rate``, of receipts less draws: >= 0 means the flows have
    earned at least ``rate`` a year (act/365)."""
    value = sum((a * _growth(rate, d, on) for d, a in receipts), ZERO)
    return value - sum((a * _growth(rate, d, on) for d, a in draws), ZERO)


# ----------------------------------------------------------------------- engine ---


@dataclass
class _TrancheState:
    tranche: Tranche
    funder: str
    anchor: date | None = None
    drawn: Decimal = ZERO
    principal_repaid: Decimal = ZERO
    interest_capitalised: Decimal = ZERO
    interest_accruing: Decimal = ZERO
    interest_accrued_total: Decimal = ZERO
    interest_paid: Decimal = ZERO
    other_received: Decimal = ZERO
    guarantee_received: Decimal = ZERO
    recovered_by_guarantor: Decimal = ZERO
    draws: list[tuple[date, Decimal]] = field(default_factory=list)
    receipts: list[tuple[date, Decimal]] = field(default_factory=list)
    owed_to_guarantors: dict[str, Decimal] = field(default_factory=dict)
    capped: bool = False

    @property
    def principal_outstanding(self) -> Decimal:
        return self.drawn - self.principal_repaid

    def interest_due(self, currency: str) -> Decimal:
        return max(ZERO, round_money(self.interest_capitalised + self.interest_accruing, currency))

    def pay_interest(self, amount: Decimal) -> None:
        take = min(amount, max(self.interest_capitalised, ZERO))
        self.interest_capitalised -= take
        self.interest_accruing -= amount - take
        self.interest_paid += amount


class _Terms:
    """The contract's terms in force on a date (amendments applied), cached."""

    def __init__(self, contract: Contract):
        self.contract = contract
        self._effective = sorted({a.effective for a in contract.amendments})
        self._cache: dict[date | None, Contract] = {}

    def at(self, on: date) -> Contract:
        if not self._effective:
            return self.contract
        key: date | None = None
        for e in self._effective:
            if e <= on:
                key = e
        if key not in self._cache:
            self._cache[key] = self.contract.at(on)
        return self._cache[key]

    def tranche(self, on: date, tranche_id: str, fallback: Tranche) -> Tranche:
        cap = self.at(on).capital
        if cap is not None:
            for t in cap.tranches:
                if t.id == tranche_id:
                    return t
        return fallback


class _Engine:
    def __init__(
        self,
        contract: Contract,
        payments: Sequence[OutcomePayment],
        coupon_rates: Mapping[str, Decimal] | None,
        apply_share_steps: bool = True,
    ):
        self.contract = contract
        self.apply_share_steps = apply_share_steps
        self.currency = contract.currency
        self.terms = _Terms(contract)
        self.coupon_rates = dict(coupon_rates or {})
        self.notes: list[str] = []
        self.flows: list[Flow] = []
        self.distributions: list[Distribution] = []
        self.adjustments: list[ShareStepAdjustment] = []
        self.guarantee_calls: list[GuaranteeCall] = []
        self.provider = next((p.id for p in contract.parties if p.role == "provider"), PROVIDER_PLACEHOLDER)
        if self.provider == PROVIDER_PLACEHOLDER:
            self.notes.append("the contract names no provider; service funding goes to 'PROVIDER'")
        self.party_roles = {p.id: p.role for p in contract.parties}
        cap = contract.capital
        self.capital_tranches: tuple[Tranche, ...] = cap.tranches if cap else ()
        self.guarantees: tuple[Guarantee, ...] = cap.guarantees if cap else ()
        self.states = {t.id: _TrancheState(t, t.funder) for t in self.capital_tranches}
        self.draws = drawdown_schedule(contract)
        for d in self.draws:
            st = self.states[d.tranche]
            if st.anchor is None or d.date < st.anchor:
                st.anchor = d.date
        self.payments = sorted(payments, key=lambda p: p.payment_date)
        for p in self.payments:
            if round_money(p.amount, self.currency) != p.amount:
                raise ValueError(
                    f"payment of {p.amount} {self.currency} by '{p.payer}' on {p.payment_date} is not a "
                    f"whole number of minor units; round it with sib_engine.money.round_money first"
                )
        self.balance = ZERO
        self.clawback_due: dict[str, Decimal] = defaultdict(lambda: ZERO)
        self.step_paid: dict[int, Decimal] = defaultdict(lambda: ZERO)
        self.recycled_total = ZERO
        last_payment = self.payments[-1].payment_date if self.payments else contract.term.end
        self.close = max(
            [contract.term.end, last_payment]
            + [d.date for d in self.draws]
            + [g.called_on for g in self.guarantees if g.called_on is not None]
        )
        self.settlement = {g.id: (g.called_on or max(contract.term.end, last_payment)) for g in self.guarantees}
        self.last_accrual: date | None = None
        self.line = 0
        self._check_order()

    # -- helpers ----------------------------------------------------------------
    def _flow(self, d: date, source: str, target: str, amount: Decimal, kind: str, why: str, **kw: Any) -> None:
        if amount == 0:
            return
        if amount < 0:  # pragma: no cover - internal invariant
            raise AssertionError(f"negative flow {amount} {kind}")
        self.flows.append(Flow(d, source, target, amount, kind, why, **kw))

    def _m(self, amount: Decimal) -> str:
        return format_money(amount, self.currency)

    def _check_order(self) -> None:
        cap = self.contract.capital
        if cap is None:
            return
        principal_steps = [s.tranche for s in cap.waterfall if s.pay in ("principal", "fee") and s.tranche]
        kinds = {t.id: t.kind for t in cap.tranches}
        for i, tid in enumerate(principal_steps):
            if kinds.get(tid) == "first_loss" and any(kinds.get(o) != "first_loss" for o in principal_steps[i + 1:]):
                self.notes.append(
                    f"first-loss tranche '{tid}' is repaid before another tranche's principal; "
                    "a first-loss tranche is normally repaid last"
                )
        for t in cap.tranches:
            if t.coupon is None and any(s.pay == "interest" and s.tranche == t.id for s in cap.waterfall):
                self.notes.append(f"tranche '{t.id}' has an interest step but no coupon; it accrues nothing")

    def _coupon(self, on: date, st: _TrancheState) -> Coupon | None:
        t = self.terms.tranche(on, st.tranche.id, st.tranche)
        c = t.coupon
        if st.tranche.id in self.coupon_rates:
            rate = self.coupon_rates[st.tranche.id]
            return (c or Coupon(rate=rate)).model_copy(update={"rate": rate})
        return c

    def _max_return(self, on: date, st: _TrancheState) -> Decimal | None:
        return self.terms.tranche(on, st.tranche.id, st.tranche).max_return

    # -- accrual ----------------------------------------------------------------
    def _compounding_dates(self) -> set[date]:
        out: set[date] = set()
        for st in self.states.values():
            c = st.tranche.coupon
            if c is None and st.tranche.id not in self.coupon_rates:
                continue
            comp = c.compounding if c is not None else "simple"
            months = _COMPOUNDING_MONTHS.get(comp)
            if months is None or st.anchor is None:
                continue
            k = 1
            while True:
                d = add_months(st.anchor, k * months)
                if d > self.close:
                    break
                out.add(d)
                k += 1
        return out

    def _accrue_to(self, d: date) -> None:
        start = self.last_accrual
        self.last_accrual = d
        if start is None or d <= start:
            return
        for st in self.states.values():
            end = d
            maturity = st.tranche.maturity
            if maturity is not None:
                end = min(end, maturity)
            if end <= start:
                continue
            coupon = self._coupon(start, st)
            if coupon is None or coupon.rate == 0:
                continue
            base = st.principal_outstanding
            if coupon.compounding != "simple":
                base += st.interest_capitalised
            if base <= 0:
                continue
            accrued = base * coupon.rate * year_fraction(start, end, coupon.day_count)
            st.interest_accruing += accrued
            st.interest_accrued_total += accrued

    def _compound(self, d: date) -> None:
        for st in self.states.values():
            coupon = self._coupon(d, st)
            if coupon is None or coupon.compounding == "simple" or st.anchor is None:
                continue
            months = _COMPOUNDING_MONTHS[coupon.compounding]
            # a compounding date of this tranche: whole multiple of months from its anchor
            k = (d.year - st.anchor.year) * 12 + d.month - st.anchor.month
            if k > 0 and k % months == 0 and add_months(st.anchor, k) == d:
                st.interest_capitalised += st.interest_accruing
                st.interest_accruing = ZERO

    # -- max return -------------------------------------------------------------
    def _headroom(self, on: date, st: _TrancheState) -> Decimal | None:
        cap = self._max_return(on, st)
        if cap is None:
            return None
        # what was drawn, grown at max_return, less what was received, grown likewise
        h = -achieved_return(st.draws, st.receipts, on, cap)
        return max(ZERO, round_money(h, self.currency))

    def _party_capped_tranches(self, on: date, party: str) -> list[_TrancheState] | None:
        """The party's tranches if every one is capped by max_return; None if uncapped."""
        sts = [st for st in self.states.values() if st.funder == party]
        if not sts or any(self._max_return(on, st) is None for st in sts):
            return None
        return sts

    def _party_headroom(self, on: date, party: str) -> Decimal | None:
        sts = self._party_capped_tranches(on, party)
        if sts is None:
            return None
        return sum((self._headroom(on, st) or ZERO for st in sts), ZERO)

    # -- paying a tranche -------------------------------------------------------
    def _pay_tranche(
        self, d: date, st: _TrancheState, amount: Decimal, kind: str, step_no: int, step: WaterfallStep, why: str
    ) -> None:
        """Record ``amount`` paid on the tranche's claim: to guarantors first if they are
        owed a reimbursement, the rest to the funder."""
        left = amount
        recoverable_kinds = {"principal", "fee"}
        for g in self.guarantees:
            if g.covers != st.tranche.id:
                continue
            owed = st.owed_to_guarantors.get(g.id, ZERO)
            if owed <= 0:
                continue
            if kind == "interest" and g.basis != "principal_and_interest":
                continue
            if kind not in recoverable_kinds | {"interest"}:
                continue
            take = min(left, owed)
            st.owed_to_guarantors[g.id] = owed - take
            st.recovered_by_guarantor += take
            left -= take
            self._flow(
                d, SPV, g.guarantor, take, "guarantee_recovery",
                f"{kind} of {st.tranche.id} reimburses guarantee {g.id} ({why})",
                clause=step.clause or g.clause, step=step_no, tranche=st.tranche.id,
            )
        if left > 0:
            st.receipts.append((d, left))
            self._flow(d, SPV, st.funder, left, kind, why, clause=step.clause or st.tranche.clause,
                       step=step_no, tranche=st.tranche.id)

    # -- splits -----------------------------------------------------------------
    def _split(
        self, d: date, total: Decimal, split: Mapping[str, Decimal]
    ) -> tuple[dict[str, Decimal], bool]:
        """Split ``total`` by the shares, capping parties whose tranches are all capped by
        max_return and passing their excess to the others; returns (parts, capped)."""
        result: dict[str, Decimal] = {p: ZERO for p in split}
        limits = {p: self._party_headroom(d, p) for p in split}
        active = [p for p in split if split[p] > 0 and (limits[p] is None or (limits[p] or ZERO) > 0)]
        remaining = total
        capped = any(lim is not None and lim <= 0 and split[p] > 0 for p, lim in limits.items())
        while remaining > 0 and active:
            parts = allocate(remaining, [split[p] for p in active], self.currency)
            excess = ZERO
            still: list[str] = []
            for p, part in zip(active, parts):
                lim = limits[p]
                room = None if lim is None else lim - result[p]
                take = part if room is None else min(part, room)
                result[p] += take
                excess += part - take
                if room is None or take < room:
                    still.append(p)
                else:
                    capped = capped or part > take
            if excess == remaining:
                break
            remaining = excess
            active = still
        return result, capped

    def _pay_party(self, d: date, party: str, amount: Decimal, kind: str, step_no: int, step: WaterfallStep,
                   why: str) -> None:
        """Pay a residual/bonus/fee share to a party, attributing it to capped tranches."""
        sts = self._party_capped_tranches(d, party)
        if sts is None:
            only = [st for st in self.states.values() if st.funder == party]
            tranche = only[0].tranche.id if len(only) == 1 else None
            if len(only) == 1:
                only[0].other_received += amount
                only[0].receipts.append((d, amount))
            self._flow(d, SPV, party, amount, kind, why, clause=step.clause, step=step_no, tranche=tranche)
            return
        left = amount
        for i, st in enumerate(sts):
            room = self._headroom(d, st) or ZERO
            take = left if i == len(sts) - 1 else min(left, room)
            if take <= 0:
                continue
            st.other_received += take
            st.receipts.append((d, take))
            left -= take
            self._flow(d, SPV, party, take, kind, why, clause=step.clause, step=step_no, tranche=st.tranche.id)

    # -- one distribution -------------------------------------------------------
    def _distribute(self, d: date, received: Decimal, recyclable: Decimal) -> None:
        carried_in = self.balance - received
        avail = self.balance
        clawbacks = ZERO
        for payer in list(self.clawback_due):
            owed = self.clawback_due[payer]
            take = min(owed, avail)
            if take > 0:
                self.clawback_due[payer] = owed - take
                avail -= take
                clawbacks += take
                self._flow(d, SPV, payer, take, "clawback",
                           f"repays {self._m(take)} of outcome payments clawed back from {payer}")
        terms = self.terms.at(d)
        cap = terms.capital
        recycled = ZERO
        if cap is not None and cap.recycling is not None and recyclable > 0 and avail > 0:
            r = cap.recycling
            if r.until is None or d <= r.until:
                want = round_money(recyclable * r.share, self.currency)
                if cap.service_budget is not None:
                    room = cap.service_budget - sum((t.commitment for t in cap.tranches), ZERO) - self.recycled_total
                    want = min(want, max(ZERO, round_money(room, self.currency)))
                recycled = min(want, avail)
                if recycled > 0:
                    avail -= recycled
                    self.recycled_total += recycled
                    self._flow(d, SPV, self.provider, recycled, "recycling",
                               f"{r.share:.0%} of early outcome payments recycled into service costs",
                               clause=cap.clause)
        steps: tuple[WaterfallStep, ...]
        if cap is None:
            steps = (WaterfallStep(pay="residual", split={self.provider: ONE}),)
        else:
            steps = cap.waterfall
        results: list[StepResult] = []
        for i, step in enumerate(steps, start=1):
            paid, due, note = self._step(d, i, step, avail, cap)
            avail -= paid
            short = ZERO if due is None else max(ZERO, due - paid)
            results.append(StepResult(d, i, step.pay, step.tranche, due, paid, short, step.clause, note))
        self.balance = avail
        self.distributions.append(
            Distribution(d, received, carried_in, clawbacks, recycled, tuple(results), avail)
        )

    def _recipients(self, step: WaterfallStep) -> dict[str, Decimal]:
        return dict(step.split) if step.split else {self.provider: ONE}

    def _step(self, d: date, i: int, step: WaterfallStep, avail: Decimal,
              cap: Capital | None) -> tuple[Decimal, Decimal | None, str]:
        pay = step.pay
        if pay in ("interest", "principal") or (pay == "fee" and step.tranche):
            st = self.states.get(step.tranche or "")
            if st is None:
                return ZERO, ZERO, f"no tranche '{step.tranche}'"
            if pay == "interest":
                parts = [("interest", st.interest_due(self.currency))]
            elif pay == "principal":
                parts = [("principal", st.principal_outstanding)]
            else:
                parts = [("interest", st.interest_due(self.currency)), ("principal", st.principal_outstanding)]
            due = sum((p[1] for p in parts), ZERO)
            room = self._headroom(d, st)
            note = ""
            limit = avail if room is None else min(avail, room)
            if room is not None and room < min(avail, due):
                st.capped = True
                note = f"capped by max_return {self._max_return(d, st):.2%}"
            paid_total = ZERO
            for what, amount in parts:
                take = min(amount, limit - paid_total)
                if take <= 0:
                    continue
                if what == "interest":
                    st.pay_interest(take)
                else:
                    st.principal_repaid += take
                paid_total += take
                label = {"interest": "Interest", "principal": "Principal"}[what]
                if pay == "fee":
                    label = "Deferred fee " + what
                why = f"{label} of {st.tranche.id}: due {self._m(amount)}, paid {self._m(take)}"
                if take < amount:
                    why += f", {self._m(amount - take)} carried forward"
                self._pay_tranche(d, st, take, pay if pay == "fee" else what, i, step, why)
            return paid_total, due, note
        # amount-based or everything-left steps, to parties
        recipients = self._recipients(step)
        if pay == "costs" and step.amount is None:
            budget = cap.service_budget if cap is not None else None
            if cap is None or budget is None:
                return ZERO, ZERO, "no amount and no service budget: nothing due"
            funded = sum((t.commitment for t in cap.tranches), ZERO) + self.recycled_total
            total_due: Decimal | None = max(ZERO, round_money(budget - funded, self.currency))
        elif pay == "residual" or (pay == "bonus" and step.amount is None):
            total_due = step.amount  # None: everything left
        else:
            total_due = step.amount if step.amount is not None else ZERO
        owed: Decimal | None
        if total_due is None:
            owed = None
            want = avail
        else:
            owed = max(ZERO, round_money(total_due, self.currency) - self.step_paid[i])
            want = min(avail, owed)
        if want <= 0:
            return ZERO, owed, ""
        parts_by_party, capped = self._split(d, want, recipients)
        paid = ZERO
        for party, part in parts_by_party.items():
            if part <= 0:
                continue
            paid += part
            share = recipients[party]
            why = {
                "residual": f"{share:.0%} of the residual",
                "bonus": f"{share:.0%} of the success bonus",
                "costs": f"{share:.0%} of service costs",
                "fee": f"{share:.0%} of the fee",
            }.get(pay, pay)
            if owed is not None:
                why += f" (due {self._m(owed)})"
            self._pay_party(d, party, part, pay, i, step, why)
        self.step_paid[i] += paid
        note = "a share was capped by max_return" if capped else ""
        return paid, owed, note

    # -- share steps ------------------------------------------------------------
    def _share_step(self, p: OutcomePayment) -> OutcomePayment:
        if not self.apply_share_steps or p.trigger is None or p.amount <= 0:
            return p
        try:
            trig = self.terms.at(p.payment_date).trigger(p.trigger)
        except KeyError:
            return p
        if not isinstance(trig, ShareOfSavingsTrigger) or not trig.share_steps or trig.share == 0:
            return p
        funders = {st.funder for st in self.states.values() if st.tranche.kind != "deferred_fee"}
        draws: list[tuple[date, Decimal]] = []
        receipts: list[tuple[date, Decimal]] = []
        for f in self.flows:
            if f.date >= p.payment_date or f.kind not in RETURN_KINDS or f.kind == "guarantee":
                continue
            if f.kind == "drawdown" and f.source in funders:
                draws.append((f.date, f.amount))
            elif f.kind != "drawdown" and f.target in funders:
                receipts.append((f.date, f.amount))
        if not draws:
            return p
        chosen = None
        for s in sorted(trig.share_steps, key=lambda s: s.after_return):
            if achieved_return(draws, receipts, p.payment_date, s.after_return) >= 0:
                chosen = s
        if chosen is None or chosen.share == trig.share:
            return p
        new_amount = round_money(p.amount * chosen.share / trig.share, self.currency)
        adjusted = replace(
            p, amount=new_amount,
            description=(p.description or f"outcome payment for {p.trigger}") + f" (share {trig.share} -> {chosen.share})",
        )
        self.adjustments.append(
            ShareStepAdjustment(self.line, p, p.amount, new_amount, trig.share, chosen.share, chosen.after_return,
                                trig.clause)
        )
        return adjusted

    # -- guarantees -------------------------------------------------------------
    def _settle(self, d: date) -> None:
        for g in self.guarantees:
            if self.settlement[g.id] != d:
                continue
            st = self.states.get(g.covers)
            if st is None:
                continue
            loss = st.principal_outstanding
            if g.basis == "principal_and_interest":
                loss += st.interest_due(self.currency)
            # what earlier guarantees of this tranche paid and were not reimbursed is covered
            loss = max(ZERO, loss - sum(st.owed_to_guarantors.values(), ZERO))
            payout = loss
            if g.share is not None:
                payout = round_money(loss * g.share, self.currency)
            if g.amount is not None:
                payout = min(payout, round_money(g.amount, self.currency))
            st.guarantee_received += payout
            st.owed_to_guarantors[g.id] = payout
            self._flow(
                d, g.guarantor, st.funder, payout, "guarantee",
                f"guarantee {g.id} pays "
                + (f"{g.share:.0%} of " if g.share is not None else "")
                + f"the {g.basis.replace('_', ' ')} loss {self._m(loss)} on {g.covers}"
                + (f" (at most {self._m(g.amount)})" if g.amount is not None else ""),
                clause=g.clause, tranche=g.covers,
            )
            self.guarantee_calls.append(
                GuaranteeCall(g.id, g.guarantor, g.covers, st.funder, d, g.basis, loss, g.share, g.amount,
                              payout, ZERO, g.clause)
            )

    def _interest_due_at_close(self, st: _TrancheState) -> Decimal:
        """Interest still due at close; for a capped tranche, only what the cap allows."""
        due = st.interest_due(self.currency)
        room = self._headroom(self.close, st)
        if room is not None:
            due = min(due, max(ZERO, room - st.principal_outstanding))
        return due

    # -- run --------------------------------------------------------------------
    def run(self) -> WaterfallResult:
        by_date_draws: dict[date, list[ScheduledDrawdown]] = defaultdict(list)
        for dd in self.draws:
            by_date_draws[dd.date].append(dd)
        by_date_pay: dict[date, list[OutcomePayment]] = defaultdict(list)
        for p in self.payments:
            by_date_pay[p.payment_date].append(p)
        settle_dates = set(self.settlement.values())
        dates = sorted(
            set(by_date_draws) | set(by_date_pay) | settle_dates | self._compounding_dates()
            | {self.close} | {a.effective for a in self.contract.amendments}
            | {t.maturity for t in self.capital_tranches if t.maturity is not None}
        )
        if dates:
            self.last_accrual = dates[0]
        distributed: list[OutcomePayment] = []
        for d in dates:
            self._accrue_to(d)
            self._compound(d)
            for dd in by_date_draws.get(d, []):
                st = self.states[dd.tranche]
                st.drawn += dd.amount
                st.draws.append((d, dd.amount))
                kind_label = "deferred fee" if st.tranche.kind == "deferred_fee" else st.tranche.kind.replace("_", " ")
                self._flow(d, dd.funder, SPV, dd.amount, "drawdown",
                           f"drawdown of {st.tranche.id} ({kind_label})", clause=dd.clause, tranche=dd.tranche)
                self._flow(d, SPV, self.provider, dd.amount, "service_funding",
                           f"service funding from {st.tranche.id}"
                           + (" (fee deferred by the provider)" if st.tranche.kind == "deferred_fee" else ""),
                           clause=dd.clause, tranche=dd.tranche)
            received = ZERO
            recyclable = ZERO
            lines = by_date_pay.get(d, [])
            for p in lines:
                self.line = len(distributed)
                p = self._share_step(p)
                distributed.append(p)
                if p.amount >= 0:
                    received += p.amount
                    recyclable += p.amount
                    self.balance += p.amount
                    what = p.description or (f"outcome payment for {p.trigger}" if p.trigger else "outcome payment")
                    if p.determination:
                        what += f" ({p.determination})"
                    self._flow(d, p.payer, SPV, p.amount, "outcome_payment", what, clause=p.clause,
                               trigger=p.trigger, determination=p.determination)
                else:
                    self.clawback_due[p.payer] += -p.amount
            if lines or (d in settle_dates or d == self.close) and self.balance > 0:
                self._distribute(d, received, recyclable)
            self._settle(d)
        # reimbursements recorded in flows -> fill GuaranteeCall.reimbursed
        reimbursed: dict[tuple[str, str], Decimal] = defaultdict(lambda: ZERO)
        for f in self.flows:
            if f.kind == "guarantee_recovery" and f.tranche is not None:
                reimbursed[(f.target, f.tranche)] += f.amount
        calls = []
        for call in self.guarantee_calls:
            key = (call.guarantor, call.covers)
            r = min(reimbursed[key], call.paid)
            reimbursed[key] -= r
            calls.append(GuaranteeCall(call.id, call.guarantor, call.covers, call.funder, call.date, call.basis,
                                       call.loss, call.share, call.cap, call.paid, r, call.clause))

        def c(amount: Decimal) -> Decimal:
            return round_money(amount, self.currency)  # whole cents already; one exponent

        positions = tuple(
            TranchePosition(
                id=st.tranche.id, kind=st.tranche.kind, funder=st.funder, commitment=c(st.tranche.commitment),
                drawn=c(st.drawn), interest_accrued=c(st.interest_accrued_total),
                interest_paid=c(st.interest_paid), principal_repaid=c(st.principal_repaid),
                other_received=c(st.other_received), principal_outstanding=c(st.principal_outstanding),
                interest_due=c(self._interest_due_at_close(st)), guarantee_received=c(st.guarantee_received),
                recovered_by_guarantor=c(st.recovered_by_guarantor), capped=st.capped,
                max_return=st.tranche.max_return, clause=st.tranche.clause,
            )
            for st in self.states.values()
        )
        if self.balance > 0:
            self.notes.append(
                f"{self._m(self.balance)} is left in the SPV: no waterfall step could take it "
                "(add a residual step to say where it goes)"
            )
        clawback = sum(self.clawback_due.values(), ZERO)
        return WaterfallResult(
            contract_id=self.contract.id, currency=self.currency, start=self.contract.term.start,
            close=self.close, payments=tuple(distributed), drawdowns=self.draws, flows=tuple(self.flows),
            distributions=tuple(self.distributions), tranches=positions, guarantees=tuple(calls),
            adjustments=tuple(self.adjustments), closing_balance=c(self.balance), clawback_outstanding=c(clawback),
            parties=tuple((p.id, p.name) for p in self.contract.parties), notes=tuple(self.notes),
        )


def run_waterfall(
    contract: Contract,
    payments: Iterable[OutcomePayment],
    *,
    coupon_rates: Mapping[str, Decimal] | None = None,
    apply_share_steps: bool = True,
) -> WaterfallResult:
    """Run the deal's capital stack and waterfall over a stream of outcome payments.

    ``coupon_rates`` overrides tranche coupon rates (tranche id -> annual rate), e.g. the
    rate a ``banded_return`` trigger set (see :func:`coupon_rates_from_evaluation`).
    ``apply_share_steps``: rescale share-of-savings lines to the share in force given the
    funders' returns (turn off when the lines were already determined with a funders'
    return, as ``evaluate(..., funders_return=...)`` does).  Neither the contract nor the
    payments are changed.

    >>> from sib_engine.loader import parse_contract, EXAMPLE
    >>> r = run_waterfall(parse_contract(EXAMPLE), [OutcomePayment(date(2024, 6, 30), Decimal("2750.00"), "city")])
    >>> [(f.source, f.target, f.amount) for f in r.flows]
    [('city', 'SPV', Decimal('2750.00')), ('SPV', 'club', Decimal('2750.00'))]
    >>> r.conservation().exact
    True
    """
    return _Engine(contract, tuple(payments), coupon_rates, apply_share_steps).run()


# ---------------------------------------------------------------------- adapters ---


def payments_from_frame(frame: "pd.DataFrame") -> tuple[OutcomePayment, ...]:
    """Payment lines from a table with columns ``payment_date``, ``amount`` (Decimal) and
    ``payer``, and optionally ``trigger``, ``determination``, ``period``, ``clause``,
    ``outcome``, ``units``, ``kind`` and ``note``: the shape of ``Evaluation.to_frame()``.
    Rows whose ``kind`` is ``total`` or ``subtotal`` are skipped, and zero amounts dropped."""
    missing = {"payment_date", "amount", "payer"} - set(frame.columns)
    if missing:
        raise ValueError(f"payment table lacks column(s) {', '.join(sorted(missing))}")
    out: list[OutcomePayment] = []

    def opt(row: Mapping[str, Any], key: str) -> str | None:
        v = row.get(key)
        if v is None or (isinstance(v, float) and v != v) or v == "":
            return None
        return str(v)

    for row in frame.to_dict("records"):
        kind = opt(row, "kind")
        if kind in ("total", "subtotal"):
            continue
        amount = row["amount"]
        if not isinstance(amount, Decimal):
            amount = Decimal(str(amount))
        if amount == 0:
            continue
        when = row["payment_date"]
        if isinstance(when, datetime):  # also a pandas Timestamp
            when = when.date()
        units = row.get("units")
        if units is not None and not isinstance(units, Decimal):
            units = None if (isinstance(units, float) and units != units) else Decimal(str(units))
        out.append(
            OutcomePayment(
                when, amount, str(row["payer"]), trigger=opt(row, "trigger"), determination=opt(row, "determination"),
                period=opt(row, "period"), clause=opt(row, "clause"), description=opt(row, "note"),
                outcome=opt(row, "outcome"), units=units, kind=kind,
            )
        )
    return tuple(out)


def payments_from_evaluation(evaluation: Any) -> tuple[OutcomePayment, ...]:
    """The payment stream of an :class:`~sib_engine.evaluation.Evaluation`: its
    ``to_frame()`` payment lines (payments, true-ups, and clawbacks as negative lines)."""
    return payments_from_frame(evaluation.to_frame())


def coupon_rates_from_evaluation(evaluation: Any) -> dict[str, Decimal]:
    """Tranche id -> the annual return rate the evaluation's outcome bands set (the latest
    determination wins): pass it to :func:`run_waterfall` as ``coupon_rates``."""
    rates: dict[str, Decimal] = {}
    for r in getattr(evaluation, "rates", ()):
        for tranche in r.tranches:
            rates[tranche] = Decimal(r.rate)
    return rates
