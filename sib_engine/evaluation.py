"""Outcome determination: what each payer owes, when, to the cent, and why (layer 2).

:func:`evaluate` composes the pure pieces: metrics from the validated data
(:mod:`~sib_engine.metrics`), effects against baselines (:mod:`~sib_engine.baselines`,
:mod:`~sib_engine.stats`), what each trigger is owed (:mod:`~sib_engine.triggers`), caps
and payers (:mod:`~sib_engine.payments`, whose docstring states the order caps apply in).

**Timeline.**  Determinations are the contract's ``timeline.determinations`` or, when it
declares none, one per measurement period (ids ``P1``, ``P2``, ...; the last is final).
A determination covers every period up to its own; it reads the records dated on or
before its data cutoff (``data_cutoff``, by default the end of its period) and is made
once ``as_of`` has reached that cutoff (``as_of=None``: every determination, the data
being taken as complete).  Its payment date is the end of its period plus the payment lag.
Terms are read through :meth:`Contract.at`: the price, claim limit and prerequisites of an
event are those in force on the event's date; schedules, effects and caps those in force
at the end of the determination's period; shares and top-ups those in force at the end of
the period being paid.

**Cumulative re-determination.**  Each determination re-determines, from all data up to
its cutoff, what is owed for every (trigger, outcome or scope, period, payer).  Against
what earlier determinations recorded, a new item is a ``payment``; a change to a recorded
item is a ``true_up`` (more) or ``clawback`` (less) line.  A schedule-based trigger (a
threshold, a share of savings) is owed its cumulative amount less what was determined for
it before; the difference is attributed to the determination's period.  With
``previous=`` an earlier :class:`Evaluation` (of earlier or since-restated data), its lines
are kept as recorded and every difference with what the same determinations give now is
stated as explicit ``true_up``/``clawback`` lines; nothing recorded changes silently.
A correction line's ``units`` are, for a rate card, the outcome events it adds or takes
back (now less before, like its amount: ``-1`` for a withdrawn event); for a
schedule-based trigger, the units its amount now rests on.

**Payers and caps** (the order and the rules are in :mod:`sib_engine.payments`): a
schedule-based trigger's amount is split among the payers cumulatively (each payer's
parts add up to its share of the latest cumulative amount, by the latest weights); each
payer's cap, then the contract's ``caps.total``, apply to what the payers pay; every cap
is a running cap on the total owed (``min(owed so far, cap)``).  ``unrounded`` follows
the same steps in exact arithmetic: the payer's fraction of the exact amount, then the
payer and total caps applied to those exact figures.

**Citations.**  A figure whose term an amendment changed cites the term's clause ``as
amended by`` the amendment's clause and its effective date (:func:`sib_engine.trace.cite`):
a line's clause (the rate card's outcome in force at the end of the period paid, or the
trigger in force at the determination), the price of each stretch of dates, caps,
schedules, shares and baselines; :meth:`Evaluation.explain` cites the amendments in force
at each determination.

**Rows not counted.**  Outcome rows that no figure counts (after the last data cutoff,
before enrolment, after the attribution window or an expected-duration horizon, outside
the term for rate cards, of a cohort an amendment removed) are counted by reason and
metric in :attr:`Evaluation.excluded` and stated in ``notes`` (and so in
:meth:`Evaluation.explain`): no amount is silently lower.

>>> from sib_engine.loader import EXAMPLE, parse_contract
>>> import pandas as pd
>>> data = pd.DataFrame({
...     "participant_id": ["a", "a", "b", "b"],
...     "metric": ["enrolment", "job", "enrolment", "job"],
...     "date": pd.to_datetime(["2024-01-10", "2024-02-01", "2024-01-20", "2024-05-02"]),
...     "value": [None, 1, None, 1],
...     "cohort": ["c1", None, "c1", None],
... })
>>> ev = evaluate(parse_contract(EXAMPLE), data, as_of=date(2024, 6, 30))
>>> ev
<Evaluation demo: 2 determination(s) as of 2024-06-30, 2 line(s), total EUR 5,500.00>
>>> ev.to_json()["by_payer"]
{'city': '5500.00'}
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field, replace
from functools import cached_property
from datetime import date, timedelta
from decimal import Decimal
from typing import Any, Literal, Mapping, Sequence

import numpy as np
import pandas as pd

from sib_engine.baselines import EffectResult
from sib_engine.contract import (
    BlendedBaseline,
    ComparisonGroupBaseline,
    Contract,
    ExpectedDurationBaseline,
    RateCardTrigger,
)
from sib_engine.metrics import (
    TREATMENT,
    EvaluationError,
    lexsort,
    MeasuredData,
    day_of,
    date_of,
    metric_table,
    prepare,
)
from sib_engine.money import exponent, format_money, round_money
from sib_engine.payments import (
    PIECE_COLUMNS,
    ROW_COLUMNS,
    STEPS,
    CapLimits,
    PayerPart,
    aggregate,
    apply_caps,
    cap_limits,
    concat_rows,
    running_cap,
    select_rows,
    sort_rows,
    split_among_payers,
    top_up_amount,
)
from sib_engine.periods import Period
from sib_engine.returns import ReturnsResult, funder_returns
from sib_engine.trace import Trace, amended_by, cite, cite_if_amended
from sib_engine.value_for_money import ValueForMoneyResult, value_for_money
from sib_engine.waterfall import WaterfallResult, coupon_rates_from_evaluation, payments_from_evaluation, run_waterfall
from sib_engine.triggers import (
    EXCLUSION_REASONS,
    PER_EVENT_KINDS,
    Context,
    RateDetermination,
    ScopeAmount,
    Segment,
    determine,
    rate_card_claims,
)

__all__ = ["evaluate", "Evaluation", "PaymentLine", "DeterminationInfo", "EffectRecord", "ExcludedRows",
           "EvaluationError"]

ZERO = Decimal(0)
LineKind = Literal["payment", "true_up", "clawback"]


# ------------------------------------------------------------------ result types ---


@dataclass(frozen=True)
class DeterminationInfo:
    id: str
    kind: Literal["interim", "final"]
    period: str
    period_start: date
    period_end: date
    data_cutoff: date
    payment_date: date
    terms_date: date
    amendments: tuple[str, ...] = ()
    clause: str | None = None


@dataclass(frozen=True)
class PaymentLine:
    """One line of a payment statement."""

    determination: str
    kind: LineKind
    period: str
    payment_date: date
    payer: str
    trigger: str
    outcome: str
    """The metric paid for (rate cards) or the scope of a schedule (``pooled``,
    ``cohort c1``, ``pooled fallback``)."""
    units: Decimal | None
    """Rate cards: outcome events added by this line; schedules: the units (participants,
    units of effect) the determination's amount rests on."""
    amount: Decimal
    clause: str
    trace: Trace
    note: str = ""
    unrounded: Decimal | None = None
    """The line's amount before rounding: the payer's fraction of the exact amount (or what
    a cap left), less the same figure recorded before."""

    @property
    def key(self) -> tuple[str, str, str, str]:
        return (self.trigger, self.outcome, self.period, self.payer)


@dataclass(frozen=True)
class ExcludedRows:
    """Outcome rows of a metric that no figure of the evaluation counts, and why."""

    reason: Literal["after_cutoff", "before_enrolment", "outside_window", "after_horizon", "outside_term",
                    "dropped_cohort"]
    metric: str
    rows: int
    detail: str = ""


EXCLUSION_TEXT: dict[str, str] = {
    "after_cutoff": "dated after the data cutoff of the last determination made ({detail})",
    "before_enrolment": "dated before their participant's enrolment",
    "outside_window": "dated after their metric's attribution window",
    "after_horizon": "dated after the horizon of an expected-duration baseline ({detail})",
    "outside_term": "dated outside the contract's term ({detail}), which rate cards do not pay",
    "dropped_cohort": "of participants whose cohort was no longer in force on their date ({detail})",
}
"""What each reason an outcome row is not counted means (see :func:`_excluded_rows`)."""


@dataclass(frozen=True, eq=False)
class EffectRecord:
    determination: str
    trigger: str
    scope: str
    effect: EffectResult
    amount: Decimal | None


@dataclass(frozen=True, eq=False)
class Evaluation:
    """A determination of what is owed under a contract, as of a date; frozen.

    ``lines`` are the payment lines (see :meth:`to_frame`); ``rates`` the return rates set
    by outcome bands; ``effects`` every effect computed, with its interval and test.
    """

    contract_id: str
    contract_version: int
    title: str
    currency: str
    as_of: date | None
    determinations: tuple[DeterminationInfo, ...]
    lines: tuple[PaymentLine, ...]
    effects: tuple[EffectRecord, ...] = ()
    rates: tuple[RateDetermination, ...] = ()
    notes: tuple[str, ...] = ()
    funders_return: Decimal | None = None
    excluded: tuple[ExcludedRows, ...] = ()
    """Outcome rows no figure counts, by reason and metric (also stated in ``notes``)."""
    _contract: Contract | None = field(default=None, repr=False)
    _data: MeasuredData | None = field(default=None, repr=False)

    # -- totals ----------------------------------------------------------------------
    @property
    def total(self) -> Decimal:
        return sum((ln.amount for ln in self.lines), ZERO)

    @property
    def by_payer(self) -> dict[str, Decimal]:
        out: dict[str, Decimal] = {}
        for ln in self.lines:
            out[ln.payer] = out.get(ln.payer, ZERO) + ln.amount
        return dict(sorted(out.items()))

    def lines_of(self, determination: str) -> tuple[PaymentLine, ...]:
        return tuple(ln for ln in self.lines if ln.determination == determination)

    # -- frames ----------------------------------------------------------------------
    def to_frame(self) -> pd.DataFrame:
        """One row per payment line (amounts are ``Decimal``)."""
        cols = ["determination", "period", "payment_date", "payer", "trigger", "outcome", "units",
                "amount", "clause", "kind", "note"]
        return pd.DataFrame(
            [[getattr(ln, c) for c in cols] for ln in self.lines], columns=cols
        ).astype({"amount": object, "units": object})

    def summary(self) -> pd.DataFrame:
        """One row per determination: dates, payments, true-ups, clawbacks, net, and the net
        of each payer."""
        payers = sorted({ln.payer for ln in self.lines})
        rows = []
        for d in self.determinations:
            ls = self.lines_of(d.id)
            row: dict[str, Any] = {
                "determination": d.id, "kind": d.kind, "period": d.period, "data_cutoff": d.data_cutoff,
                "payment_date": d.payment_date,
                "payments": sum((x.amount for x in ls if x.kind == "payment"), ZERO),
                "true_ups": sum((x.amount for x in ls if x.kind == "true_up"), ZERO),
                "clawbacks": sum((x.amount for x in ls if x.kind == "clawback"), ZERO),
                "net": sum((x.amount for x in ls), ZERO),
            }
            for p in payers:
                row[p] = sum((x.amount for x in ls if x.payer == p), ZERO)
            rows.append(row)
        return pd.DataFrame(rows)

    def metrics(self) -> pd.DataFrame:
        """Counts, sums, rates, means and participant-periods per metric, cohort, group and
        period, from the data this evaluation read."""
        if self._contract is None or self._data is None:
            return pd.DataFrame()
        cutoff = day_of(self.as_of) if self.as_of else day_of(self._contract.timeline.period_list()[-1].end)
        return metric_table(self._data, self._contract, self._contract.periods(), cutoff)

    def effects_frame(self) -> pd.DataFrame:
        rows = []
        for e in self.effects:
            r = e.effect
            rows.append({
                "determination": e.determination, "trigger": e.trigger, "scope": e.scope, "metric": r.metric,
                "measure": r.measure, "n": r.n, "metric_value": r.treatment.value,
                "baseline": r.baseline.value if r.baseline else None, "effect": r.estimate,
                "ci_low": r.ci[0], "ci_high": r.ci[1], "confidence": r.confidence,
                "test": r.test.test if r.test else None, "p_value": r.test.p_value if r.test else None,
                "paid_effect": r.paid_effect, "amount": e.amount,
            })
        return pd.DataFrame(rows)

    # -- text ------------------------------------------------------------------------
    def __repr__(self) -> str:
        when = f" as of {self.as_of}" if self.as_of else ""
        return (
            f"<Evaluation {self.contract_id}: {len(self.determinations)} determination(s){when}, "
            f"{len(self.lines)} line(s), total {format_money(self.total, self.currency)}>"
        )

    def explain(self) -> str:
        """Every amount with its trace, by determination, for a person to read."""
        cur = self.currency
        out = [f"{self.title} ({self.contract_id} v{self.contract_version}), amounts in {cur}"]
        out.append(f"as of {self.as_of}" if self.as_of else "as of: all determinations (data taken as complete)")
        for n in self.notes:
            out.append(f"note: {n}")
        for d in self.determinations:
            out.append("")
            amend = f"; amendments in force: {', '.join(self._amendment(a) for a in d.amendments)}" \
                if d.amendments else ""
            out.append(
                f"== {d.id} ({d.kind}) covering up to {d.period} ({d.period_start} to {d.period_end}), "
                f"data to {d.data_cutoff}, payable {d.payment_date}{amend}"
                + (f"  [{d.clause}]" if d.clause else "")
            )
            for ln in self.lines_of(d.id):
                out.append(
                    f"- {ln.kind} {format_money(ln.amount, cur)} to {ln.payer}: {ln.trigger} / {ln.outcome} / "
                    f"{ln.period}" + (f" ({ln.note})" if ln.note else "")
                )
                out.append(ln.trace.render(2))
            for r in self.rates:
                if r.determination == d.id:
                    out.append(f"- return rate {r.rate} for {', '.join(r.tranches)} ({r.trigger})")
                    out.append(r.trace.render(2))
        out.append("")
        out.append(f"total {format_money(self.total, cur)}")
        for p, a in self.by_payer.items():
            out.append(f"  {p}: {format_money(a, cur)}")
        return "\n".join(out)

    def _amendment(self, amendment_id: str) -> str:
        """An amendment cited: ``a1 (Amendment 1, clause 4.2, from 2017-01-01)``."""
        a = next((x for x in self._contract.amendments if x.id == amendment_id), None) if self._contract else None
        return amendment_id if a is None else f"{a.id} ({a.clause}, from {a.effective.isoformat()})"

    def _repr_html_(self) -> str:
        cur = self.currency
        e = html.escape
        head = (
            f"<p><b>{e(self.title)}</b> ({e(self.contract_id)} v{self.contract_version}) "
            f"&mdash; {'as of ' + str(self.as_of) if self.as_of else 'all determinations'}; "
            f"total <b>{e(format_money(self.total, cur))}</b></p>"
        )
        payers = "".join(f"<tr><td>{e(p)}</td><td style='text-align:right'>{e(format_money(a, cur))}</td></tr>"
                         for p, a in self.by_payer.items())
        rows = "".join(
            "<tr>" + "".join(f"<td>{e(str(v))}</td>" for v in (
                ln.determination, ln.kind, ln.period, ln.payment_date, ln.payer, ln.trigger, ln.outcome,
                "" if ln.units is None else ln.units)) +
            f"<td style='text-align:right'>{e(format_money(ln.amount, cur))}</td><td>{e(ln.clause)}</td></tr>"
            for ln in self.lines[:500]
        )
        more = f"<p>... and {len(self.lines) - 500} more lines</p>" if len(self.lines) > 500 else ""
        cols = "".join(f"<th>{c}</th>" for c in ("determination", "kind", "period", "payment date", "payer",
                                                   "trigger", "outcome", "units", "amount", "clause"))
        return (
            head + f"<table><tr><th>payer</th><th>total</th></tr>{payers}</table>"
            + f"<table><tr>{cols}</tr>{rows}</table>{more}"
        )

    # -- funders, returns and value for money -------------------------------------------
    # payments, waterfall and returns do not know each other: the evaluation composes them.
    @cached_property
    def funding(self) -> "Funding":
        """Where the money goes: the waterfall from payers to funders and provider, each
        funder's returns, and the government's value for money (computed on first use)."""
        if self._contract is None:
            raise EvaluationError("this evaluation was not made from a contract; use sib_engine.evaluate()")
        return fund(self._contract, self)

    def funders_frame(self) -> pd.DataFrame:
        """One row per funder (and guarantor): invested, received, IRR, multiple, NPV, loss."""
        return self.funding.returns.to_frame()

    def flows_frame(self) -> pd.DataFrame:
        """Every flow of money in the deal: from, to, date, amount, why (the money-flow statement)."""
        return self.funding.waterfall.to_frame()

    def value_for_money_frame(self) -> pd.DataFrame:
        """The government's value for money: paid, savings, net benefit, fee-for-service, break-even."""
        return self.funding.value_for_money.to_frame()

    def to_json(self, *, funding: bool = True) -> dict[str, Any]:
        """Plain data for ``sib evaluate --json``: decimal strings for money.

        With ``funding`` (the default, when the evaluation has its contract) it includes
        ``funders`` (id -> invested, received, irr, moic, loss) and ``government`` (paid,
        savings, net_benefit)."""
        extra: dict[str, Any] = {}
        if funding and self._contract is not None:
            extra = {
                "funders": self.funding.returns.as_json(),
                "government": self.funding.value_for_money.as_json(),
            }
        return {
            "contract": self.contract_id,
            "version": self.contract_version,
            "currency": self.currency,
            "as_of": self.as_of.isoformat() if self.as_of else None,
            "total": str(self.total),
            "by_payer": {p: str(a) for p, a in self.by_payer.items()},
            "determinations": [
                {"id": d.id, "kind": d.kind, "period": d.period, "data_cutoff": d.data_cutoff.isoformat(),
                 "payment_date": d.payment_date.isoformat(), "amendments": list(d.amendments)}
                for d in self.determinations
            ],
            "lines": [
                {"determination": ln.determination, "kind": ln.kind, "period": ln.period,
                 "payment_date": ln.payment_date.isoformat(), "payer": ln.payer, "trigger": ln.trigger,
                 "outcome": ln.outcome, "units": None if ln.units is None else str(ln.units),
                 "amount": str(ln.amount), "clause": ln.clause, **({"note": ln.note} if ln.note else {})}
                for ln in self.lines
            ],
            "rates": [
                {"determination": r.determination, "trigger": r.trigger, "tranches": list(r.tranches),
                 "rate": str(r.rate), "clause": r.clause}
                for r in self.rates
            ],
            "notes": list(self.notes),
        } | extra


@dataclass(frozen=True, eq=False)
class Funding:
    """The money flows of a determination beyond the payers: see :meth:`Evaluation.funding`."""

    waterfall: WaterfallResult
    returns: ReturnsResult
    value_for_money: ValueForMoneyResult


def fund(contract: Contract, evaluation: Evaluation) -> Funding:
    """Run the capital stack and waterfall over an evaluation's payments, then each
    funder's returns and the government's value for money."""
    flows = run_waterfall(
        contract,
        payments_from_evaluation(evaluation),
        coupon_rates=coupon_rates_from_evaluation(evaluation),
        apply_share_steps=evaluation.funders_return is None,
    )
    rates = (contract.value_for_money.discount_rate,) if contract.value_for_money else (Decimal("0.035"),)
    roles = {p.id: p.role for p in contract.parties}
    return Funding(
        waterfall=flows,
        returns=funder_returns(flows, rates, roles=roles),
        value_for_money=value_for_money(contract, flows),
    )


# --------------------------------------------------------------------- the plan ---


@dataclass(frozen=True, eq=False)
class _Plan:
    info: DeterminationInfo
    index: int
    period: Period
    terms: Contract
    cutoff_day: int
    data_day: int


class _Terms:
    """``contract.at`` memoised by the set of amendments in force."""

    def __init__(self, contract: Contract) -> None:
        self.contract = contract
        self.dates = sorted({a.effective for a in contract.amendments})
        self._cache: dict[int, Contract] = {}

    def at(self, d: date) -> Contract:
        k = sum(1 for x in self.dates if x <= d)
        got = self._cache.get(k)
        if got is None:
            got = self.contract.at(d)
            self._cache[k] = got
        return got

    def segments(self) -> list[Segment]:
        """Stretches of days with the same terms; the first reaches back indefinitely."""
        segs: list[Segment] = []
        if not self.dates or self.dates[0] > self.contract.term.start:
            segs.append(Segment(_FOREVER, self.at(self.contract.term.start)))
        segs += [Segment(day_of(d), self.at(d)) for d in self.dates]
        segs[0] = Segment(_FOREVER, segs[0].terms)
        return segs


_FOREVER = -(10**9)

_DET, _TRIG, _OUTC, _PERIOD, _MUNI, _SEG, _UNITS, _GROSS_UNITS, _GROSS, _AMOUNT, _RED0 = range(11)
assert PIECE_COLUMNS[_RED0] == f"red_{STEPS[0][0]}"


def _records(arr: np.ndarray) -> dict[tuple[int, int, int], np.ndarray]:
    """The pieces as integer arrays per (trigger, outcome, period)."""
    if len(arr) == 0:
        return {}
    keys = arr[:, [_TRIG, _OUTC, _PERIOD]]
    order = np.lexsort((keys[:, 2], keys[:, 1], keys[:, 0]))
    arr, keys = arr[order], keys[order]
    change = np.r_[True, np.any(keys[1:] != keys[:-1], axis=1)]
    starts = np.flatnonzero(change)
    ends = np.r_[starts[1:], len(arr)]
    return {(int(keys[s, 0]), int(keys[s, 1]), int(keys[s, 2])): arr[s:e] for s, e in zip(starts, ends)}


def _plan(contract: Contract, terms: _Terms, as_of: date | None) -> list[_Plan]:
    out = []
    for i, sd in enumerate(contract.determination_schedule()):
        did, kind, period, cutoff, lag, clause = (sd.id, sd.kind, sd.period, sd.data_cutoff, sd.payment_lag_days,
                                                  sd.clause)
        t = terms.at(period.end)
        cut = cutoff or period.end
        if as_of is not None and cut > as_of:
            break
        pay = period.end + timedelta(days=lag if lag is not None else t.timeline.payment_lag_days)
        info = DeterminationInfo(
            id=did, kind=kind, period=period.id, period_start=period.start, period_end=period.end,
            data_cutoff=cut, payment_date=pay, terms_date=period.end,
            amendments=tuple(a.id for a in t.applied_amendments), clause=clause or t.timeline.clause,
        )
        out.append(_Plan(info, i, period, t, day_of(cut), day_of(min(cut, period.end))))
    return out


# ---------------------------------------------------------------------- the run ---


@dataclass
class _Ent:
    """What is owed for one (trigger, outcome, period, payer) at a determination."""

    amount: Decimal
    units: Decimal | None
    clause: str
    unrounded: Decimal
    label: str
    children: tuple[Trace, ...]
    currency: str

    @property
    def trace(self) -> Trace:
        return Trace(self.label, format_money(self.amount, self.currency), None, self.children)


@dataclass(frozen=True)
class _Key:
    """One (trigger, outcome, period) before the split among payers, at a determination."""

    tid: str
    outcome: str
    period: str
    units: Decimal | None
    clause: str
    terms: Contract
    amount: Decimal
    unrounded: Decimal
    base: Trace
    by_muni: Mapping[str, Decimal]
    """Municipality -> the weight of its participants (a split by residence)."""
    parts: tuple[PayerPart, ...] = ()
    """The split among payers (rate cards; schedule-based amounts are split cumulatively
    by :meth:`_Run._splits`)."""
    raw_parts: tuple[Decimal, ...] = ()


@dataclass(frozen=True)
class _Part:
    """One primary payer's part of one (trigger, outcome, period), before payer caps."""

    key: tuple[int, int, int]
    payer: str
    amount: Decimal
    unrounded: Decimal
    trace: Trace


@dataclass
class _Run:
    contract: Contract
    md: MeasuredData
    plans: list[_Plan]
    terms: _Terms
    funders_return: Decimal | None
    lines: list[PaymentLine] = field(default_factory=list)
    effects: list[EffectRecord] = field(default_factory=list)
    rates: list[RateDetermination] = field(default_factory=list)
    entitlements: dict[str, dict[tuple[str, str, str, str], _Ent]] = field(default_factory=dict)
    _stated: set[tuple[str, str, str]] = field(default_factory=set)
    _key_cache: dict[tuple[int, tuple[int, int, int], int, tuple[int, int]], _Key] = field(default_factory=dict)

    def execute(self) -> None:
        if not self.plans:
            return
        c = self.contract
        cur = c.currency
        periods = c.periods()
        segments = self.terms.segments()
        self.period_starts = np.array([day_of(p.start) for p in periods], dtype=np.int64)
        self.periods = periods
        # every trigger id, in order of first appearance
        ids: list[str] = []
        for t in [x for s in segments for x in s.terms.triggers] + [x for p in self.plans for x in p.terms.triggers]:
            if t.id not in ids:
                ids.append(t.id)
        self.trigger_ids = ids
        self.kind_of: dict[str, str] = {}
        for t in [x for s in segments for x in s.terms.triggers] + [x for p in self.plans for x in p.terms.triggers]:
            self.kind_of.setdefault(t.id, t.kind)
        # exact integer scale for every price and cap
        decimals: list[Decimal] = []
        for s in segments:
            for t in s.terms.triggers:
                if isinstance(t, RateCardTrigger):
                    decimals += [o.price for o in t.outcomes]
        for p in self.plans:
            caps = p.terms.caps
            if caps is not None:
                decimals += [x for x in (caps.total, caps.per_period, caps.per_participant) if x is not None]
            for t in p.terms.triggers:
                decimals += [t.cap] if t.cap is not None else []
                if isinstance(t, RateCardTrigger):
                    decimals += [x for x in (t.cap_per_participant, t.cap_per_period) if x is not None]
                    decimals += [o.cap_amount for o in t.outcomes if o.cap_amount is not None]
        scale = max([exponent(cur)] + [max(0, -int(d.as_tuple().exponent)) for d in decimals if d.is_finite()])
        # 1. schedule-based triggers at each determination (cumulative, before caps)
        sched_rows: list[dict[str, Any]] = []
        self.scope_amounts: dict[tuple[int, int, int], ScopeAmount] = {}
        self.scopes: dict[int, list[str]] = {}
        cum: dict[tuple[str, str], Decimal] = {}
        cum_raw: dict[tuple[str, str], Decimal] = {}
        self.sched_unrounded: dict[tuple[int, int, int], Decimal] = {}
        for plan in self.plans:
            ctx = Context(self.md, plan.terms, plan.info.id, plan.period.end, plan.cutoff_day,
                          plan.info.kind == "final", self.funders_return)
            for t in plan.terms.triggers:
                if t.kind in PER_EVENT_KINDS:
                    continue
                res = determine(t, ctx)
                self.rates.extend(res.rates)
                for r in res.rates:
                    self.effects.append(EffectRecord(plan.info.id, t.id, r.effect.scope, r.effect, None))
                ti = ids.index(t.id)
                for a in res.amounts:
                    if a.effect is not None:
                        self.effects.append(EffectRecord(plan.info.id, t.id, a.scope, a.effect, a.amount))
                    labels = self.scopes.setdefault(ti, [])
                    if a.scope not in labels:
                        labels.append(a.scope)
                    oi = labels.index(a.scope)
                    before = cum.get((t.id, a.scope), ZERO)
                    before_raw = cum_raw.get((t.id, a.scope), ZERO)
                    cum[(t.id, a.scope)] = a.amount
                    cum_raw[(t.id, a.scope)] = a.unrounded
                    self.scope_amounts[(plan.index, ti, oi)] = replace(a)
                    self.sched_unrounded[(plan.index, ti, oi)] = a.unrounded - before_raw
                    sched_rows.append({
                        "day": plan.data_day, "kind": 1, "trig": ti, "outc": oi, "pcode": -1,
                        "period": plan.period.index, "det": plan.index, "seg": 0, "muni": -1, "units": 0,
                        "amount_dec": a.amount - before, "before": before,
                        "unrounded": a.unrounded - before_raw,
                    })
        # 2. rate-card events, priced
        last_day = max(p.data_day for p in self.plans)
        claims = rate_card_claims(self.md, segments, ids, int(self.period_starts[0]), last_day, scale)
        self.claims = claims
        self.segments = segments
        # caps in force at each determination
        limits = [cap_limits(p.terms, ids, claims.outcomes) for p in self.plans]
        self.scale = scale
        data_days = np.array([p.data_day for p in self.plans], dtype=np.int64)
        muni_codes, muni_names = pd.factorize(self.md.participants["municipality"].astype(object), use_na_sentinel=True)
        self.muni_names = [str(x) for x in muni_names]
        self.muni_of = np.asarray(muni_codes, dtype=np.int64)
        rows: dict[str, np.ndarray] = {
            "day": claims.day,
            "kind": np.zeros(len(claims.day), np.int64),
            "trig": claims.trig,
            "outc": claims.outc,
            "pcode": claims.pcode,
            "period": np.searchsorted(self.period_starts, claims.day, side="right") - 1,
            "det": np.searchsorted(data_days, claims.day, side="left"),
            "seg": claims.seg,
            "muni": self.muni_of[claims.pcode] if len(claims.pcode) else np.zeros(0, np.int64),
            "units": np.ones(len(claims.day), np.int64),
            "amount": np.asarray(claims.price, dtype=np.int64),
        }
        if sched_rows:
            srows = {c: np.array([r[c] for r in sched_rows], dtype=np.int64) for c in ROW_COLUMNS if c != "amount"}
            srows["amount"] = np.array([int(r["amount_dec"].scaleb(scale)) for r in sched_rows], dtype=np.int64)
            rows = concat_rows([rows, srows])
        rows = sort_rows(rows)
        self.excluded: dict[tuple[int, int, int], np.ndarray] = {}
        if claims.excluded and len(claims.excluded[0]):
            ex_day, ex_trig, ex_outc, ex_reason = claims.excluded
            ex_period = np.searchsorted(self.period_starts, ex_day, side="right") - 1
            ex_det = np.searchsorted(data_days, ex_day, side="left")
            arr = np.stack([ex_trig, ex_outc, ex_period, ex_det, ex_reason], axis=1).astype(np.int64)
            arr = arr[lexsort((arr[:, 2], arr[:, 1], arr[:, 0]))]
            cut = np.flatnonzero(np.r_[True, np.any(arr[1:, :3] != arr[:-1, :3], axis=1)])
            for lo, hi in zip(cut, np.r_[cut[1:], len(arr)]):
                self.excluded[(int(arr[lo, 0]), int(arr[lo, 1]), int(arr[lo, 2]))] = arr[lo:hi, 3:5]
        n_outcomes = max([len(v) for v in claims.outcomes.values()] + [len(v) for v in self.scopes.values()] + [1])
        # 3. caps, once per set of caps in force
        self.limits = limits
        records_by_sig: dict[tuple[object, ...], dict[tuple[int, int, int], np.ndarray]] = {}
        self.records: list[dict[tuple[int, int, int], np.ndarray]] = []
        for k, lim in enumerate(limits):
            sig = lim.signature()
            got = records_by_sig.get(sig)
            if got is None:
                last = max(j for j, other in enumerate(limits) if other.signature() == sig)
                sub = select_rows(rows, rows["det"] <= last)
                got = _records(aggregate(apply_caps(sub, lim, scale, n_outcomes, len(periods))))
                records_by_sig[sig] = got
            self.records.append(got)
        # 4. each determination: amounts, payers, lines
        ledger: dict[tuple[str, str, str, str], tuple[Decimal, Decimal | None, Decimal]] = {}
        for plan in self.plans:
            ents = self._entitlements(plan)
            self.entitlements[plan.info.id] = ents
            self._lines(plan, ents, ledger)

    # -- one determination -----------------------------------------------------------
    def _entitlements(self, plan: _Plan) -> dict[tuple[str, str, str, str], _Ent]:
        cur = self.contract.currency
        recs = self.records[plan.index]
        lim = self.limits[plan.index]
        keyed: dict[tuple[int, int, int], np.ndarray] = {}
        for key, arr in recs.items():
            sel = arr[arr[:, _DET] <= plan.index]
            if len(sel):
                keyed[key] = sel
        # keys in order of period, trigger, outcome
        order = sorted(keyed, key=lambda k: (k[2], k[0], k[1]))
        infos: dict[tuple[int, int, int], _Key] = {}
        for key in order:
            g = keyed[key]
            ex = self.excluded.get(key)
            skipped = (0, 0)
            if ex is not None:
                upto = ex[ex[:, 0] <= plan.index]
                skipped = (int((upto[:, 1] == 0).sum()), int((upto[:, 1] == 1).sum()))
            ck = (id(recs), key, len(g), skipped)
            k = self._key_cache.get(ck)
            if k is None:
                k = self._key(key, g, lim, skipped)
                self._key_cache[ck] = k
            infos[key] = k
        parts = self._splits(order, infos)
        # payer caps (primary payers), then the contract's total cap, each a running cap in
        # key order; ``raw`` follows the same steps on the exact (unrounded) parts
        paid = [p.amount for p in parts]
        raw = [p.unrounded for p in parts]
        notes: dict[int, list[Trace]] = {}

        def cap_all(idx: list[int], cap: Decimal, label: str, clause: str | None) -> None:
            allowed = running_cap([paid[i] for i in idx], cap)
            allowed_raw = running_cap([raw[i] for i in idx], cap)
            for i, a, ar in zip(idx, allowed, allowed_raw):
                if a != paid[i]:
                    notes.setdefault(i, []).append(Trace(label, f"-{format_money(paid[i] - a, cur)}", clause))
                paid[i] = a
                raw[i] = ar

        for p in plan.terms.payers:
            if p.mode == "top_up" or p.cap is None:
                continue
            idx = [i for i, x in enumerate(parts) if x.payer == p.party]
            if idx:
                cap_all(idx, p.cap, f"payer cap: {p.party} pays at most {format_money(p.cap, cur)} in all",
                        self._cite(plan.terms, p.clause, f"payers.{p.party}.cap"))
        if lim.contract_total is not None and parts:
            cap_all(list(range(len(parts))), lim.contract_total, f"cap: caps.total {lim.contract_total}",
                    lim.clauses.get(("contract_total", None)))
        ents: dict[tuple[str, str, str, str], _Ent] = {}
        primary_by_key: dict[tuple[int, int, int], Decimal] = {}
        for i, part in enumerate(parts):
            k = infos[part.key]
            kids = (k.base, part.trace) + tuple(notes.get(i, ()))
            ents[(k.tid, k.outcome, k.period, part.payer)] = _Ent(paid[i], k.units, k.clause, raw[i],
                                                                 f"{part.payer} pays", kids, cur)
            primary_by_key[part.key] = primary_by_key.get(part.key, ZERO) + paid[i]
        # top-ups on what the primary payers pay, then the top-up payers' caps
        tops: list[tuple[tuple[int, int, int], str, Decimal, Trace]] = []
        top_raw: list[Decimal] = []
        for key in order:
            k = infos[key]
            for p in k.terms.payers:
                if p.mode != "top_up" or p.top_up is None:
                    continue
                base_amt = primary_by_key.get(key, ZERO)
                amt, tr_raw = top_up_amount(base_amt, p.top_up, cur)
                kids2 = [Trace(f"top-up: {p.top_up} x {format_money(base_amt, cur)} paid by the primary payers",
                               f"{tr_raw}", self._cite(k.terms, p.clause, f"payers.{p.party}.top_up"))]
                if amt != tr_raw:
                    kids2.append(Trace("rounding", f"{tr_raw} -> {amt}"))
                tops.append((key, p.party, amt, Trace(f"{k.tid} / {k.outcome} / {k.period}", None, k.clause,
                                                      tuple(kids2))))
                top_raw.append(tr_raw)
        top_paid = [a for _, _, a, _ in tops]
        top_notes: dict[int, Trace] = {}
        for p in plan.terms.payers:
            if p.mode != "top_up" or p.cap is None:
                continue
            idx = [i for i, t in enumerate(tops) if t[1] == p.party]
            allowed = running_cap([top_paid[i] for i in idx], p.cap)
            allowed_raw = running_cap([top_raw[i] for i in idx], p.cap)
            for i, a, ar in zip(idx, allowed, allowed_raw):
                if a != top_paid[i]:
                    top_notes[i] = Trace(f"payer cap: {p.party} pays at most {format_money(p.cap, cur)} in all",
                                         f"-{format_money(top_paid[i] - a, cur)}",
                                         self._cite(plan.terms, p.clause, f"payers.{p.party}.cap"))
                top_paid[i] = a
                top_raw[i] = ar
        for i, (key, party, _, tr) in enumerate(tops):
            k = infos[key]
            kids3 = tr.children + ((top_notes[i],) if i in top_notes else ())
            ents[(k.tid, k.outcome, k.period, party)] = _Ent(
                top_paid[i], k.units, k.clause, top_raw[i], f"{party} pays (top-up)", (replace(tr, children=kids3),),
                cur)
        return ents

    def _splits(self, order: Sequence[tuple[int, int, int]], infos: Mapping[tuple[int, int, int], _Key]) -> list[_Part]:
        """Every primary payer's part of every key, in key order (payers in contract order).

        A rate card's amount is split as it stands.  A schedule-based trigger's amount is
        split cumulatively: its keys (one per determination, in period order) add up to
        the trigger's cumulative amount for the scope; at each key that cumulative amount
        is split by the key's weights, and the key's part for a payer is the payer's part
        of it less the payer's part of the cumulative amount at the key before.
        """
        cur = self.contract.currency
        out: dict[tuple[int, int, int], list[_Part]] = {}
        groups: dict[tuple[int, int], list[tuple[int, int, int]]] = {}
        for key in order:
            k = infos[key]
            if self.kind_of[k.tid] in PER_EVENT_KINDS:
                out[key] = [_Part(key, part.payer, part.amount, raw, part.trace)
                            for part, raw in zip(k.parts, k.raw_parts)]
            else:
                groups.setdefault((key[0], key[1]), []).append(key)
        for keys in groups.values():
            cum, cum_raw = ZERO, ZERO
            before: dict[str, tuple[Decimal, Decimal]] = {}
            weights: Mapping[str, Decimal] = {}
            for key in sorted(keys, key=lambda x: x[2]):
                k = infos[key]
                cum += k.amount
                cum_raw += k.unrounded
                weights = k.by_muni or weights  # a scope left without participants keeps its split
                split = split_among_payers(cum, k.terms, by_municipality=weights or None,
                                           clause_hint=f"{k.tid} / {k.outcome} / {k.period}")
                now = {p.payer: (p.amount, cum_raw * p.fraction, p.trace) for p in split}
                names = [p.party for p in self.contract.payers if p.party in now or p.party in before]
                names += [n for n in list(now) + list(before) if n not in names]
                parts: list[_Part] = []
                for name in names:
                    amt, r, tr = now.get(name, (ZERO, ZERO, Trace("payer share", f"{name} has no part now")))
                    b_amt, b_raw = before.get(name, (ZERO, ZERO))
                    if before:
                        tr = Trace(
                            "payer's part of the cumulative amount",
                            f"{format_money(amt, cur)} of the cumulative {format_money(cum, cur)}, less "
                            f"{format_money(b_amt, cur)} of it before = {format_money(amt - b_amt, cur)}",
                            None, (tr,))
                    parts.append(_Part(key, name, amt - b_amt, r - b_raw, tr))
                out[key] = parts
                before = {n: (a, r) for n, (a, r, _) in now.items()}
        return [p for key in order for p in out.get(key, [])]

    def _key(self, key: tuple[int, int, int], g: np.ndarray, lim: CapLimits,
             skipped: tuple[int, int] = (0, 0)) -> _Key:
        """Amount, units and trace of one (trigger, outcome, period); a rate card's split."""
        cur = self.contract.currency
        scale = self.scale
        ti, oi, pi = key
        sums = g.sum(axis=0)
        tid = self.trigger_ids[ti]
        period = self.periods[pi]
        pterms = self.terms.at(period.end)
        capped = int(sums[_AMOUNT])
        exact = Decimal(capped).scaleb(-scale)
        amount = round_money(exact, cur)
        kids: list[Trace] = []
        by_muni: dict[str, Decimal] = {}
        if self.kind_of[tid] in PER_EVENT_KINDS:
            metric = self.claims.outcomes[ti][oi]
            outcome = metric
            units: Decimal | None = Decimal(int(sums[_UNITS]))
            clause = self._outcome_clause(tid, metric, period.end) or self._trigger_clause(tid, pterms)
            for seg in sorted({int(x) for x in g[:, _SEG]}):
                n = int(g[g[:, _SEG] == seg, _GROSS_UNITS].sum())
                price = self.claims.prices.get((ti, oi, seg))
                if n and price is not None:
                    since = "" if seg == 0 else f" from {date_of(self.segments[seg].start_day)}"
                    kids.append(Trace(
                        f"{n} outcome(s) '{metric}' in {period.id} x price {format_money(price, cur)}{since}",
                        format_money(price * n, cur),
                        self._outcome_clause(tid, metric, self.segments[seg].terms, "price", only_amended=seg == 0),
                    ))
            # each municipality weighs what is paid for its residents (after caps); when
            # caps leave nothing, the split of nothing is by what was owed
            col = _AMOUNT if capped else _GROSS
            for mu in sorted({int(x) for x in g[:, _MUNI]}):
                gm = g[g[:, _MUNI] == mu]
                name = self.muni_names[mu] if mu >= 0 else "(none)"
                w = int(gm[:, col].sum())
                if w:
                    by_muni[name] = by_muni.get(name, ZERO) + Decimal(w).scaleb(-scale)
        else:
            outcome = self.scopes[ti][oi]
            det_of_row = int(g[0, _DET])
            clause = self._trigger_clause(tid, self.plans[det_of_row].terms)
            sa = self.scope_amounts[(det_of_row, ti, oi)]
            units = sa.units
            row_gross = Decimal(int(sums[_GROSS])).scaleb(-scale)
            kids.append(sa.trace)
            prior = sa.amount - row_gross
            if prior != 0:
                kids.append(Trace("less determined for it before", format_money(prior, cur)))
                kids.append(Trace("change at this determination", format_money(row_gross, cur)))
            mcounts = np.bincount(self.muni_of[sa.members][self.muni_of[sa.members] >= 0],
                                  minlength=len(self.muni_names)) if len(sa.members) else np.zeros(0, int)
            for mi, cnt in enumerate(mcounts):
                if cnt:
                    by_muni[self.muni_names[mi]] = Decimal(int(cnt))
        gross = Decimal(int(sums[_GROSS])).scaleb(-scale)
        reds = {step: int(sums[_RED0 + i]) for i, (step, _) in enumerate(STEPS)}
        if self.kind_of[tid] in PER_EVENT_KINDS or any(reds.values()):
            unrounded = exact
        else:
            unrounded = self.sched_unrounded[(int(g[0, _DET]), ti, oi)]
        if units is not None and self.kind_of[tid] in PER_EVENT_KINDS:
            for reason, count in zip(EXCLUSION_REASONS, skipped):
                if count:
                    kids.append(Trace(f"not payable: {count} more event(s) '{outcome}' in {period.id}", reason))
            kids.append(Trace("gross", format_money(gross, cur)))
        for step, label in STEPS:
            red = reds[step]
            if red:
                ck: object = None
                if step.startswith("outcome"):
                    ck = (ti, oi)
                elif step.startswith("trigger"):
                    ck = ti
                limit = lim.limit(step, ck)
                kids.append(Trace(f"cap: {label} {limit}", f"-{format_money(Decimal(red).scaleb(-scale), cur)}",
                                  lim.clauses.get((step, ck))))
        if amount != exact:
            kids.append(Trace("rounding", f"{exact:f} -> {amount:f} (half away from zero, to the minor unit)"))
        elif self.kind_of[tid] in PER_EVENT_KINDS:
            kids.append(Trace("rounding", f"none needed ({amount:f})"))
        base = Trace(f"{tid} / {outcome} / {period.id}", format_money(amount, cur), clause, tuple(kids))
        if self.kind_of[tid] not in PER_EVENT_KINDS:
            return _Key(tid, outcome, period.id, units, clause, pterms, amount, unrounded, base, by_muni)
        parts = split_among_payers(amount, pterms, by_municipality=by_muni or None,
                                   clause_hint=f"{tid} / {outcome} / {period.id}")
        return _Key(tid, outcome, period.id, units, clause, pterms, amount, unrounded, base, by_muni, tuple(parts),
                    tuple(unrounded * part.fraction for part in parts))

    def _lines(self, plan: _Plan, ents: Mapping[tuple[str, str, str, str], _Ent],
               ledger: dict[tuple[str, str, str, str], tuple[Decimal, Decimal | None, Decimal]]) -> None:
        cur = self.contract.currency
        pay = plan.info.payment_date
        keys = list(ents) + [k for k in ledger if k not in ents]
        for key in keys:
            e = ents.get(key)
            before = ledger.get(key)
            now_amt = e.amount if e else ZERO
            now_units = e.units if e else None
            now_raw = e.unrounded if e else ZERO
            if before is None:
                if e is None:
                    continue
                family = (key[0], key[1], key[3])
                if now_amt == 0 and self.kind_of.get(key[0]) not in PER_EVENT_KINDS and family in self._stated:
                    ledger[key] = (now_amt, now_units, now_raw)
                    continue  # a schedule that still pays nothing new: said before
                self._stated.add(family)
                kind: LineKind = "payment" if now_amt >= 0 else "clawback"
                delta = now_amt
                raw = now_raw
                units = now_units
                trace = e.trace
            else:
                delta = now_amt - before[0]
                raw = now_raw - before[2]
                if delta == 0:
                    ledger[key] = (now_amt, now_units, now_raw)
                    continue
                kind = "true_up" if delta > 0 else "clawback"
                units = _units_change(self.kind_of.get(key[0]) in PER_EVENT_KINDS, now_units, before[1])
                now_trace = e.trace if e else Trace("nothing is owed for it now", format_money(ZERO, cur))
                trace = Trace(
                    f"{kind.replace('_', '-')}", format_money(delta, cur), None,
                    (now_trace, Trace("less determined before", format_money(before[0], cur))),
                )
            clause = e.clause if e else self._trigger_clause(key[0], plan.terms)
            self.lines.append(PaymentLine(
                determination=plan.info.id, kind=kind, period=key[2], payment_date=pay, payer=key[3],
                trigger=key[0], outcome=key[1], units=units, amount=delta, clause=clause, trace=trace,
                unrounded=raw,
            ))
            ledger[key] = (now_amt, now_units, now_raw)

    # -- clauses -----------------------------------------------------------------------
    def _cite(self, terms: Contract, clause: str | None, *paths: str) -> str | None:
        return cite(terms, clause, *paths)

    def _trigger_clause(self, tid: str, terms: Contract | None = None) -> str:
        """The trigger's clause in ``terms`` (as amended there), else in the first terms that
        have the trigger."""
        for t_terms in ([terms] if terms is not None else []) + [p.terms for p in self.plans]:
            t = next((x for x in t_terms.triggers if x.id == tid), None)
            if t is not None:
                return cite(t_terms, t.clause, f"triggers.{tid}") or t.clause
        return next((t.clause for t in self.contract.triggers if t.id == tid), tid)

    def _outcome_clause(self, tid: str, metric: str, on: date | Contract, part: str = "",
                        only_amended: bool = False) -> str | None:
        """The clause of a rate card's outcome in the terms in force ``on`` a date (or in the
        terms given), as amended there; ``part`` narrows the citation to one of its values."""
        terms = on if isinstance(on, Contract) else self.terms.at(on)
        t = next((x for x in terms.triggers if x.id == tid), None)
        if isinstance(t, RateCardTrigger):
            o = next((x for x in t.outcomes if x.metric == metric), None)
            if o is not None:
                path = f"triggers.{tid}.outcomes.{metric}" + (f".{part}" if part else "")
                if only_amended:
                    return cite_if_amended(terms, o.clause or t.clause, path)
                return cite(terms, o.clause or t.clause, path)
        return None


# ------------------------------------------------------------------ restatements ---


def _units_change(per_event: bool, now: Decimal | None, before: Decimal | None) -> Decimal | None:
    """The units a true-up or clawback line states: for a rate card, the outcome events it
    adds or takes back (now less before, as its amount is); for a schedule-based trigger,
    the units its amount now rests on (participants or units of effect are not added up
    across determinations)."""
    if not per_event:
        return now
    if now is None and before is None:
        return None
    return (now or ZERO) - (before or ZERO)


def _restate(previous: Evaluation, run: _Run, plans: Sequence[_Plan], as_of: date | None,
             contract: Contract) -> list[PaymentLine]:
    prev_ids = [d.id for d in previous.determinations]
    now_ids = [p.info.id for p in plans]
    if prev_ids != now_ids[: len(prev_ids)]:
        missing = [d for d in prev_ids if d not in now_ids]
        raise EvaluationError(
            f"the earlier evaluation made determination(s) {', '.join(missing) or prev_ids} that this one "
            "does not (an earlier as-of date?); evaluate as of a date on or after the earlier one"
        )
    if not prev_ids:
        return list(run.lines)
    cur = contract.currency
    prev_set = set(prev_ids)
    last = prev_ids[-1]
    fresh: dict[tuple[str, str, str, str], Decimal] = {}
    fresh_raw: dict[tuple[str, str, str, str], Decimal] = {}
    for ln in run.lines:
        if ln.determination in prev_set:
            fresh[ln.key] = fresh.get(ln.key, ZERO) + ln.amount
            fresh_raw[ln.key] = fresh_raw.get(ln.key, ZERO) + (ln.unrounded or ZERO)
    recorded: dict[tuple[str, str, str, str], Decimal] = {}
    recorded_raw: dict[tuple[str, str, str, str], Decimal] = {}
    for ln in previous.lines:
        recorded[ln.key] = recorded.get(ln.key, ZERO) + ln.amount
        recorded_raw[ln.key] = recorded_raw.get(ln.key, ZERO) + (ln.unrounded or ZERO)
    new_plans = [p for p in plans if p.info.id not in prev_set]
    last_info = next(p.info for p in plans if p.info.id == last)
    if new_plans:
        # the first new determination states the restatement and settles it
        made_at, pay = new_plans[0].info.id, new_plans[0].info.payment_date
    elif as_of is not None:
        made_at = last
        pay = max(last_info.payment_date, as_of + timedelta(days=contract.timeline.payment_lag_days))
    else:
        made_at, pay = last, last_info.payment_date
    ents = run.entitlements.get(last, {})
    recorded_units: dict[tuple[str, str, str, str], Decimal] = {}
    for ln in previous.lines:
        if ln.units is not None:
            recorded_units[ln.key] = recorded_units.get(ln.key, ZERO) + ln.units
    restated: list[PaymentLine] = []
    for key in list(fresh) + [k for k in recorded if k not in fresh]:
        delta = fresh.get(key, ZERO) - recorded.get(key, ZERO)
        if delta == 0:
            continue
        e = ents.get(key)
        now = e.trace if e else Trace("nothing is owed for it now", format_money(ZERO, cur))
        kind: LineKind = "true_up" if delta > 0 else "clawback"
        trace = Trace(
            f"{kind.replace('_', '-')} on restated data", format_money(delta, cur), None,
            (now, Trace(f"recorded by the earlier determination(s) up to {last}", format_money(recorded.get(key, ZERO), cur))),
        )
        clause = e.clause if e else next((ln.clause for ln in previous.lines if ln.key == key), key[0])
        restated.append(PaymentLine(
            determination=made_at, kind=kind, period=key[2], payment_date=pay, payer=key[3], trigger=key[0],
            outcome=key[1], amount=delta, clause=clause, trace=trace,
            units=_units_change(run.kind_of.get(key[0]) in PER_EVENT_KINDS, e.units if e else None,
                                recorded_units.get(key)),
            note="restated data", unrounded=fresh_raw.get(key, ZERO) - recorded_raw.get(key, ZERO),
        ))
    later = [ln for ln in run.lines if ln.determination not in prev_set]
    return list(previous.lines) + restated + later


# ------------------------------------------------------------ rows not counted ---


def _metric_uses(terms: _Terms, plans: Sequence[_Plan]) -> tuple[set[str], dict[str, set[int | None]], set[str]]:
    """What the triggers read: the metrics of rate cards (outcomes and prerequisites); per
    metric read by a schedule-based trigger's effect, the horizons it is read over (None:
    its whole window); and the baselines' pre-enrolment metrics."""
    rate: set[str] = set()
    sched: dict[str, set[int | None]] = {}
    pre: set[str] = set()
    for v in [s.terms for s in terms.segments()] + [p.terms for p in plans]:
        requires = {m.id: set(m.requires) for m in v.metrics}
        baselines = {b.id: b for b in v.baselines}
        for t in v.triggers:
            if isinstance(t, RateCardTrigger):
                for o in t.outcomes:
                    rate |= {o.metric, *o.requires, *requires.get(o.metric, ())}
                continue
            eff = getattr(t, "effect", None)
            if eff is None:  # pragma: no cover - every schedule-based trigger has an effect
                continue
            b = baselines.get(eff.baseline) if eff.baseline else None
            sched.setdefault(eff.metric, set()).add(b.horizon_days if isinstance(b, ExpectedDurationBaseline) else None)
            inner = [baselines.get(c.baseline) for c in b.components] if isinstance(b, BlendedBaseline) else [b]
            for x in inner:
                if isinstance(x, ComparisonGroupBaseline) and x.pre_metric:
                    pre.add(x.pre_metric)
                    sched.setdefault(x.pre_metric, set()).add(None)
    return rate, sched, pre


def _excluded_rows(md: MeasuredData, terms: _Terms, plans: Sequence[_Plan]) -> list[ExcludedRows]:
    """Outcome rows that no figure counts, each by the first of these reasons that applies:

    ``after_cutoff``
        dated after the data cutoff of the last determination made (``as_of``);
    ``before_enrolment``
        dated before the participant's enrolment (a baseline's ``pre_metric`` is exempt);
    ``outside_window``
        after the metric's attribution window (``window_months``, inclusive);
    ``after_horizon``
        after the horizon (``horizon_days`` after enrolment, inclusive) of the
        expected-duration baselines that are the only readers of the metric;
    ``outside_term``
        outside the term, for a metric only rate cards read (they pay events in the term);
    ``dropped_cohort``
        of a participant whose cohort is not in force on the row's date (an amendment
        removed it): rate cards do not pay it and the determinations after that date leave
        the cohort out.

    Rows of participants without an enrolment row, or outside the eligibility, are
    reported by :func:`sib_engine.metrics.prepare`, and a comparison participant's rows
    of a metric only rate cards read are not "left out" (comparison participants are never
    paid); rows that count but are not paid (a prerequisite not met, a claim limit, a cap)
    are stated in the traces.  Windows, the term and cohorts are those in force on the
    row's date.  Only metrics that some trigger reads are considered.
    """
    if not plans or md.size == 0:
        return []
    rate, sched, pre = _metric_uses(terms, plans)
    last_cutoff = max(p.cutoff_day for p in plans)
    segs = terms.segments()
    starts = np.array([sg.start_day for sg in segs], dtype=np.int64)
    enrol = md.enrol_day
    cohort = md.column("cohort")
    eligible = md.column("eligible").astype(bool)
    treated = md.column("group") == TREATMENT
    out: list[ExcludedRows] = []
    for metric in sorted(rate | set(sched)):
        rows = md.rows(metric)
        if not len(rows):
            continue
        rate_only = metric not in sched
        ok = eligible[rows.pcode] & (treated[rows.pcode] if rate_only else True)
        pc, day = rows.pcode[ok], rows.day[ok]
        seg = np.clip(np.searchsorted(starts, day, side="right") - 1, 0, len(segs) - 1)
        left = np.ones(len(day), dtype=bool)
        counts: dict[str, int] = {}
        details: dict[str, str] = {}

        def take(reason: str, mask: np.ndarray, detail: str = "") -> None:
            hit = left & mask
            n = int(hit.sum())
            if n:
                counts[reason] = counts.get(reason, 0) + n
                if detail:
                    details[reason] = "; ".join(dict.fromkeys(filter(None, [details.get(reason), detail])))
            left[hit] = False

        take("after_cutoff", day > last_cutoff, date_of(last_cutoff).isoformat() + (
            ", the final one" if plans[-1].info.kind == "final" else "; later determinations will read them"))
        if metric not in pre:
            take("before_enrolment", day < enrol[pc])
            for si, sg in enumerate(segs):
                m = next((x for x in sg.terms.metrics if x.id == metric), None)
                if m is not None and m.window_months is not None:
                    take("outside_window", (seg == si) & (day > md.window_last(months=m.window_months)[pc]))
        horizons = sched.get(metric, set())
        if metric not in rate and horizons and None not in horizons:
            h = max(x for x in horizons if x is not None)
            take("after_horizon", day > md.window_last(days=h)[pc], f"{h} days after enrolment, inclusive")
        for si, sg in enumerate(segs):
            here = seg == si
            if rate_only:
                lo, hi = day_of(sg.terms.term.start), day_of(sg.terms.term.end)
                take("outside_term", here & ((day < lo) | (day > hi)), f"{sg.terms.term.start} to {sg.terms.term.end}")
            dropped = here & ~np.isin(cohort[pc], [c.id for c in sg.terms.timeline.cohorts])
            for g in sorted(str(x) for x in pd.unique(cohort[pc][dropped & left])):
                by = amended_by(sg.terms, f"timeline.cohorts.{g}")
                take("dropped_cohort", dropped & (cohort[pc] == g),
                     f"cohort {g} removed {by}" if by else f"cohort {g} not in force")
        for reason, n in counts.items():
            out.append(ExcludedRows(reason, metric, n, details.get(reason, "")))  # type: ignore[arg-type]
    order = list(EXCLUSION_TEXT)
    return sorted(out, key=lambda e: (order.index(e.reason), e.metric))


def _exclusion_notes(excluded: Sequence[ExcludedRows]) -> list[str]:
    """One note per reason: how many outcome rows, of which metrics, and why."""
    notes = []
    for reason in EXCLUSION_TEXT:
        rows = [e for e in excluded if e.reason == reason]
        if not rows:
            continue
        n = sum(e.rows for e in rows)
        detail = "; ".join(dict.fromkeys(e.detail for e in rows if e.detail))
        per = ", ".join(f"{e.metric} {e.rows}" for e in rows)
        notes.append(f"{n} outcome row(s) not counted: {EXCLUSION_TEXT[reason].format(detail=detail)} ({per})")
    return notes


# --------------------------------------------------------------------------- API ---


def evaluate(
    contract: Contract,
    data: Any,
    as_of: date | None = None,
    *,
    previous: Evaluation | None = None,
    funders_return: Decimal | None = None,
) -> Evaluation:
    """Determine what is owed under ``contract`` for the validated ``data``.

    ``data``: a DataFrame in the measured-data format, or a validation result whose
    ``.accepted`` is one.  ``as_of``: make the determinations whose data cutoff has been
    reached by this date, from the records dated up to it (``None``: all of them).
    ``previous``: an earlier evaluation whose lines stand; differences become explicit
    true-up and clawback lines.  ``funders_return``: the annual return the funders have
    achieved so far, for shares of savings that change after a stated return.
    """
    if isinstance(as_of, pd.Timestamp):
        as_of = as_of.date()
    if previous is not None and previous.contract_id != contract.id:
        raise EvaluationError(
            f"the earlier evaluation is of contract '{previous.contract_id}', not '{contract.id}'"
        )
    md = prepare(data, contract)
    terms = _Terms(contract)
    plans = _plan(contract, terms, as_of)
    run = _Run(contract, md, plans, terms, funders_return)
    run.execute()
    lines = _restate(previous, run, plans, as_of, contract) if previous is not None else list(run.lines)
    notes = list(md.notes)
    if as_of is not None and not plans:
        notes.append(f"no determination is due by {as_of}")
    excluded = _excluded_rows(md, terms, plans)
    notes += _exclusion_notes(excluded)
    return Evaluation(
        contract_id=contract.id,
        contract_version=contract.version,
        title=contract.title,
        currency=contract.currency,
        as_of=as_of,
        determinations=tuple(p.info for p in plans),
        lines=tuple(lines),
        effects=tuple(run.effects),
        rates=tuple(run.rates),
        notes=tuple(notes),
        funders_return=funders_return,
        excluded=tuple(excluded),
        _contract=contract,
        _data=md,
    )
