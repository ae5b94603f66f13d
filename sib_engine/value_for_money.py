"""Government value for money (layer 2: pure computation).

What the outcome payers paid, what the outcomes saved the public purse, and how the deal
compares with buying the service directly.

Definitions (every figure is for the whole deal, in the contract's currency):

- **total paid**: the sum of the outcome payment lines (clawbacks subtract), after any
  share-step adjustment the waterfall made;
- **outcome units**: per metric, the units achieved; given by the caller, or derived from
  the payment lines where a line's trigger pays a fixed price per unit of one metric
  (``share_of_savings``: amount / (share x unit cost); a ``rate_card`` with one outcome:
  amount / price);
- **savings**: units x the contract's ``savings`` per outcome, split into cashable and
  non-cashable; **net benefit** = cashable savings - total paid;
- **cost per outcome** (per metric): total paid / units of that metric;
- **fee-for-service cost**: the contract's ``fee_for_service_cost`` (what paying the
  provider directly would cost, whatever the results), or the capital's ``service_budget``
  if no such cost is declared; the **premium** is total paid - that cost;
- **outcome level** ``L``: a multiple of the outcomes as measured (``L = 1``) -- every
  metric's units scaled by ``L``.  Savings are ``L`` x the measured savings.  Payments at
  level ``L`` are, by default, every trigger's measured payments x ``L``, capped by the
  trigger's ``cap`` and then by the contract's total cap (exact for rate cards and shares
  of savings, an approximation for threshold schedules); a caller with an exact payment
  curve passes ``payments_at``;
- **break-even effect** (``break_even_level``): the lowest outcome level ``L > 0`` from
  which the government's net cost (payments - cashable savings) is zero or less at every
  higher level up to ``max_level``.  ``0`` means the deal never costs the government more
  than it saves (each unit saves more than it costs); ``None`` means it does not break even
  below ``max_level``.  ``fee_for_service_break_even_level`` is the same for buying the
  service directly: fee-for-service cost / measured cashable savings.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import TYPE_CHECKING, Callable, Iterable, Mapping, Sequence

from sib_engine.contract import Contract, RateCardTrigger, ShareOfSavingsTrigger, ThresholdTrigger
from sib_engine.money import format_money, round_money
from sib_engine.returns import npv
from sib_engine.waterfall import OutcomePayment, WaterfallResult

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

ZERO = Decimal(0)
UNITS_QUANTUM = Decimal("0.0001")
LEVEL_QUANTUM = Decimal("0.0001")


@dataclass(frozen=True)
class OutcomeValue:
    """One metric's outcomes and what they saved."""

    metric: str
    units: Decimal
    saving_per_unit: Decimal | None
    cashable: bool
    savings: Decimal
    cost_per_unit: Decimal | None
    """Total paid / units of this metric."""
    derived: bool
    """True if the units were derived from the payment lines (not given)."""
    source: str | None = None


@dataclass(frozen=True)
class ValueForMoneyResult:
    """Value for money of a deal for the government (see the module for definitions)."""

    contract_id: str
    currency: str
    total_paid: Decimal
    paid_by_payer: tuple[tuple[str, Decimal], ...]
    discount_rate: Decimal
    paid_present_value: Decimal
    """Payments discounted at ``discount_rate`` to the start of the term."""
    outcomes: tuple[OutcomeValue, ...]
    cashable_savings: Decimal
    non_cashable_savings: Decimal
    fee_for_service_cost: Decimal | None
    fee_for_service_source: str | None
    """``contract`` (fee_for_service_cost) or ``service_budget`` (the fallback)."""
    break_even_level: Decimal | None
    fee_for_service_break_even_level: Decimal | None
    max_level: Decimal
    payment_model: str
    notes: tuple[str, ...] = ()

    @property
    def net_benefit(self) -> Decimal:
        """Cashable savings less total paid."""
        return self.cashable_savings - self.total_paid

    @property
    def net_benefit_with_non_cashable(self) -> Decimal:
        return self.cashable_savings + self.non_cashable_savings - self.total_paid

    @property
    def premium_over_fee_for_service(self) -> Decimal | None:
        """What the deal cost above paying the provider directly (negative: it cost less)."""
        if self.fee_for_service_cost is None:
            return None
        return self.total_paid - self.fee_for_service_cost

    def break_even_units(self) -> tuple[tuple[str, Decimal], ...]:
        """Units per metric at the break-even level."""
        if self.break_even_level is None:
            return ()
        return tuple((o.metric, (o.units * self.break_even_level).quantize(UNITS_QUANTUM)) for o in self.outcomes)

    def as_json(self) -> dict[str, str]:
        """``{paid, savings, net_benefit}``: the shape of ``sib evaluate --json``'s ``government``."""
        return {
            "paid": str(self.total_paid),
            "savings": str(self.cashable_savings),
            "net_benefit": str(self.net_benefit),
        }

    def to_frame(self) -> "pd.DataFrame":
        """One row per figure: measure, value, unit/explanation."""
        import pandas as pd

        cur = self.currency
        rows: list[dict[str, object]] = [
            {"measure": "total paid", "value": self.total_paid, "unit": cur},
            {"measure": f"present value of payments at {self.discount_rate:.1%}", "value": self.paid_present_value,
             "unit": cur},
        ]
        for payer, amount in self.paid_by_payer:
            rows.append({"measure": f"paid by {payer}", "value": amount, "unit": cur})
        for o in self.outcomes:
            rows.append({"measure": f"{o.metric}: units", "value": o.units,
                         "unit": "derived from payments" if o.derived else "given"})
            label = "" if o.cashable else " (non-cashable)" if o.saving_per_unit is not None else " (none declared)"
            rows.append({"measure": f"{o.metric}: savings{label}", "value": o.savings, "unit": cur})
            if o.cost_per_unit is not None:
                rows.append({"measure": f"{o.metric}: cost per outcome", "value": o.cost_per_unit, "unit": cur})
        rows += [
            {"measure": "cashable savings", "value": self.cashable_savings, "unit": cur},
            {"measure": "non-cashable savings", "value": self.non_cashable_savings, "unit": cur},
            {"measure": "net benefit (cashable savings - paid)", "value": self.net_benefit, "unit": cur},
            {"measure": "fee-for-service cost", "value": self.fee_for_service_cost,
             "unit": f"{cur} ({self.fee_for_service_source})" if self.fee_for_service_source else cur},
            {"measure": "premium over fee-for-service", "value": self.premium_over_fee_for_service, "unit": cur},
            {"measure": "break-even outcome level", "value": self.break_even_level,
             "unit": "x measured outcomes"},
            {"measure": "fee-for-service break-even outcome level", "value": self.fee_for_service_break_even_level,
             "unit": "x measured outcomes"},
        ]
        return pd.DataFrame(rows, columns=["measure", "value", "unit"])

    summary = to_frame

    def explain(self) -> str:
        def m(a: Decimal | None) -> str:
            return "n/a" if a is None else format_money(a, self.currency)

        lines = [
            f"Value for money of {self.contract_id} for the government",
            f"  Paid {m(self.total_paid)} in outcome payments (present value at {self.discount_rate:.1%}: "
            f"{m(self.paid_present_value)}).",
        ]
        for o in self.outcomes:
            how = "derived from the payment lines" if o.derived else "as given"
            per = f", {m(o.saving_per_unit)} saved per unit" if o.saving_per_unit is not None else ", no saving declared"
            cost = f"; cost per outcome {m(o.cost_per_unit)}" if o.cost_per_unit is not None else ""
            lines.append(f"  {o.metric}: {o.units.normalize():f} units ({how}){per} -> {m(o.savings)}"
                         f"{'' if o.cashable else ' (non-cashable)'}{cost}")
        lines.append(f"  Cashable savings {m(self.cashable_savings)}; net benefit {m(self.net_benefit)}.")
        if self.fee_for_service_cost is not None:
            lines.append(
                f"  Paying the provider directly would have cost {m(self.fee_for_service_cost)} "
                f"({self.fee_for_service_source}); the deal cost {m(self.premium_over_fee_for_service)} more."
            )
        if self.break_even_level is None:
            lines.append(f"  Break-even: the deal does not pay for itself below {self.max_level}x the measured outcomes.")
        elif self.break_even_level == 0:
            lines.append("  Break-even: at every outcome level the savings cover the payments (level 0).")
        else:
            lines.append(
                f"  Break-even: the deal costs the government nothing net from {self.break_even_level}x the "
                "measured outcomes upwards."
            )
        if self.fee_for_service_break_even_level is not None:
            lines.append(
                f"  Bought directly, the service would pay for itself from {self.fee_for_service_break_even_level}x "
                "the measured outcomes."
            )
        lines.append(f"  Payments at other outcome levels: {self.payment_model}.")
        for n in self.notes:
            lines.append(f"  Note: {n}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return (
            f"<ValueForMoneyResult {self.contract_id}: paid {format_money(self.total_paid, self.currency)}, "
            f"cashable savings {format_money(self.cashable_savings, self.currency)}, net benefit "
            f"{format_money(self.net_benefit, self.currency)}>"
        )

    def _repr_html_(self) -> str:
        table: str = self.to_frame().to_html(index=False)
        return f"<p><strong>{html.escape(repr(self))}</strong></p>" + table


def outcome_units_from_payments(
    contract: Contract, payments: Iterable[OutcomePayment]
) -> tuple[dict[str, Decimal], tuple[str, ...]]:
    """Units per metric implied by the payment lines; returns (units, notes).

    Lines that carry ``units`` (from an evaluation) are read as the evaluation reports
    them: a rate card line's units are the outcome events it adds (metric: the line's
    ``outcome``); a share-of-savings (or per-unit threshold) line's units are the units of
    effect its determination rests on, cumulative, so the last determination's figure counts.
    Lines without units are converted from their amount where the trigger pays a fixed
    price per unit of one metric: share of savings (amount / (share x unit cost)) or a rate
    card with one outcome (amount / price).  The same units appear on every payer's line
    of a fixed-share split, so payers are combined by taking the largest figure (summed
    instead when payers pay for their own residents).
    """
    by_residence = any(p.mode == "residence" for p in contract.payers)
    per_event: dict[tuple[str, str], Decimal] = {}  # (metric, payer) -> units added
    cumulative: dict[tuple[str, str, str], tuple[date, Decimal]] = {}  # (metric, trigger, payer) -> last
    notes: list[str] = []
    skipped: set[str] = set()
    for p in payments:
        if p.trigger is None:
            skipped.add("(no trigger)")
            continue
        try:
            trig = contract.at(p.payment_date).trigger(p.trigger) if contract.amendments else contract.trigger(p.trigger)
        except KeyError:
            skipped.add(p.trigger)
            continue
        if isinstance(trig, RateCardTrigger):
            metrics = {o.metric: o for o in trig.outcomes}
            if p.units is not None and p.outcome in metrics:
                key = (str(p.outcome), p.payer)
                per_event[key] = per_event.get(key, ZERO) + p.units
            elif len(trig.outcomes) == 1:
                o = trig.outcomes[0]
                key = (o.metric, p.payer)
                per_event[key] = per_event.get(key, ZERO) + p.amount / o.price
            else:
                skipped.add(p.trigger)
        elif isinstance(trig, ShareOfSavingsTrigger) or (
            isinstance(trig, ThresholdTrigger) and trig.pays == "per_unit"
        ):
            metric = trig.effect.metric
            if p.units is not None:
                ckey = (metric, trig.id, p.payer)
                prev = cumulative.get(ckey)
                if prev is None or (p.payment_date, p.units) >= prev:
                    cumulative[ckey] = (p.payment_date, p.units)
            elif isinstance(trig, ShareOfSavingsTrigger) and trig.share > 0:
                key = (metric, p.payer)
                per_event[key] = per_event.get(key, ZERO) + p.amount / (trig.share * trig.unit_cost)
            else:
                skipped.add(p.trigger)
        else:
            skipped.add(p.trigger)
    by_metric_payer: dict[str, dict[str, Decimal]] = {}
    for (metric, payer), u in per_event.items():
        by_metric_payer.setdefault(metric, {})[payer] = by_metric_payer.get(metric, {}).get(payer, ZERO) + u
    for (metric, _trigger, payer), (_when, u) in cumulative.items():
        by_metric_payer.setdefault(metric, {})[payer] = by_metric_payer.get(metric, {}).get(payer, ZERO) + u
    units: dict[str, Decimal] = {}
    for metric, per_payer in by_metric_payer.items():
        values = list(per_payer.values())
        units[metric] = sum(values, ZERO) if by_residence else max(values)
    if skipped:
        notes.append(
            "outcome units could not be derived from the lines of "
            + ", ".join(sorted(skipped))
            + " (not a price per unit of one metric); pass outcomes= to count them"
        )
    return {k: v.quantize(UNITS_QUANTUM) for k, v in units.items()}, tuple(notes)


def _trigger_payments(
    contract: Contract, payments: Sequence[OutcomePayment]
) -> list[tuple[Decimal, Decimal | None]]:
    """(measured payments, cap) per trigger, for the default payment curve."""
    by: dict[str | None, Decimal] = {}
    for p in payments:
        by[p.trigger] = by.get(p.trigger, ZERO) + p.amount
    out = []
    for trig_id, amount in by.items():
        cap: Decimal | None = None
        if trig_id is not None:
            try:
                cap = contract.trigger(trig_id).cap
            except KeyError:
                cap = None
        out.append((amount, cap))
    return out


def value_for_money(
    contract: Contract,
    payments: Iterable[OutcomePayment] | WaterfallResult,
    outcomes: Mapping[str, Decimal] | None = None,
    *,
    payments_at: Callable[[Decimal], Decimal] | None = None,
    max_level: Decimal = Decimal(10),
    grid: int = 400,
) -> ValueForMoneyResult:
    """Value for money of the deal for the government (see the module for definitions).

    ``payments``: the payment lines, or a waterfall result (its lines, after share-step
    adjustments).  ``outcomes``: units per metric (default: derived from the payment lines).
    ``payments_at``: total payments at an outcome level (default: the measured payments per
    trigger scaled, with caps).
    """
    cur = contract.currency
    notes: list[str] = []
    if isinstance(payments, WaterfallResult):
        lines: Sequence[OutcomePayment] = payments.payments
        unit_lines: Sequence[OutcomePayment] = payments.received_payments()
    else:
        lines = tuple(payments)
        unit_lines = lines
    total = sum((p.amount for p in lines), ZERO)
    by_payer: dict[str, Decimal] = {}
    for p in lines:
        by_payer[p.payer] = by_payer.get(p.payer, ZERO) + p.amount
    vfm = contract.value_for_money
    rate = vfm.discount_rate if vfm is not None else Decimal("0.035")
    if vfm is None:
        notes.append("the contract declares no value_for_money section: no savings, discount rate 3.5%")
    pv = npv(rate, [(p.payment_date, p.amount) for p in lines], contract.term.start, cur)

    derived_units, unit_notes = outcome_units_from_payments(contract, unit_lines)
    given = dict(outcomes or {})
    if outcomes is None:
        notes += unit_notes
    units = dict(derived_units)
    units.update(given)
    savings_by_metric = {s.metric: s for s in (vfm.savings if vfm else ())}
    metrics = list(dict.fromkeys(list(savings_by_metric) + list(units)))
    values: list[OutcomeValue] = []
    cashable = ZERO
    non_cashable = ZERO
    for m in metrics:
        u = units.get(m, ZERO)
        s = savings_by_metric.get(m)
        saved = round_money(u * s.amount, cur) if s is not None else ZERO
        if s is not None and s.cashable:
            cashable += saved
        elif s is not None:
            non_cashable += saved
        if s is not None and m not in units:
            notes.append(f"no outcomes of '{m}' were counted: its savings are 0")
        values.append(
            OutcomeValue(
                metric=m, units=u, saving_per_unit=s.amount if s else None, cashable=bool(s and s.cashable),
                savings=saved, cost_per_unit=round_money(total / u, cur) if u > 0 else None,
                derived=m not in given, source=s.source if s else None,
            )
        )

    cashable = round_money(cashable, cur)
    non_cashable = round_money(non_cashable, cur)
    ffs: Decimal | None = None
    ffs_source: str | None = None
    if vfm is not None and vfm.fee_for_service_cost is not None:
        ffs, ffs_source = vfm.fee_for_service_cost, "contract"
    elif contract.capital is not None and contract.capital.service_budget is not None:
        ffs, ffs_source = contract.capital.service_budget, "service_budget"
        notes.append("no fee_for_service_cost declared: the service budget stands in for it")

    curve: Callable[[Decimal], Decimal]
    if payments_at is None:
        per_trigger = _trigger_payments(contract, lines)
        total_cap = contract.caps.total if contract.caps is not None else None

        def default_curve(level: Decimal) -> Decimal:
            paid = ZERO
            for amount, cap in per_trigger:
                x = amount * level
                paid += x if cap is None else min(x, cap)
            return paid if total_cap is None else min(paid, total_cap)

        curve = default_curve
        model = "measured payments per trigger x level, capped by trigger caps and the total cap"
    else:
        curve = payments_at
        model = "supplied by the caller"

    def net_cost(level: Decimal) -> Decimal:
        return curve(level) - cashable * level

    level = _break_even(net_cost, max_level, grid)
    if total == 0 and cashable == 0:
        level = None
        notes.append("nothing was paid and nothing saved: no break-even level")
    ffs_level = (ffs / cashable).quantize(LEVEL_QUANTUM) if ffs is not None and cashable > 0 else None
    return ValueForMoneyResult(
        contract_id=contract.id, currency=cur, total_paid=total, paid_by_payer=tuple(by_payer.items()),
        discount_rate=rate, paid_present_value=pv, outcomes=tuple(values), cashable_savings=cashable,
        non_cashable_savings=non_cashable, fee_for_service_cost=ffs, fee_for_service_source=ffs_source,
        break_even_level=level, fee_for_service_break_even_level=ffs_level, max_level=max_level,
        payment_model=model, notes=tuple(notes),
    )


def _break_even(net_cost: Callable[[Decimal], Decimal], max_level: Decimal, grid: int) -> Decimal | None:
    """Lowest level L > 0 from which net_cost <= 0 on the grid up to ``max_level`` (0 if
    everywhere), refined by bisection to LEVEL_QUANTUM; None if net_cost > 0 at max_level."""
    levels = [max_level * Decimal(i) / Decimal(grid) for i in range(1, grid + 1)]
    costs = [net_cost(lv) for lv in levels]
    if costs[-1] > 0:
        return None
    last_bad = max((i for i, c in enumerate(costs) if c > 0), default=None)
    if last_bad is None:
        return ZERO
    lo, hi = levels[last_bad], levels[last_bad + 1]
    while hi - lo > LEVEL_QUANTUM / 2:
        mid = (lo + hi) / 2
        if net_cost(mid) > 0:
            lo = mid
        else:
            hi = mid
    return hi.quantize(LEVEL_QUANTUM, rounding="ROUND_CEILING")


__all__ = [
    "OutcomeValue",
    "ValueForMoneyResult",
    "outcome_units_from_payments",
    "value_for_money",
]
