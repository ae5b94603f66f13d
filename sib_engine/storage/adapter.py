"""The one place the store meets the engine's results (validation, evaluation, waterfall).

Everything the store needs from :mod:`sib_engine.validation` (a ``ValidationResult``),
:mod:`sib_engine.evaluation` (``evaluate``, ``Evaluation``, ``PaymentLine``,
``DeterminationInfo``) and :mod:`sib_engine.waterfall` / :mod:`sib_engine.returns` (funder
allocations) goes through the functions here, as plain dictionaries of column values, so a
change to those APIs is adjusted here only.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import pandas as pd

from sib_engine.money import from_minor_units, to_minor_units

if TYPE_CHECKING:  # pragma: no cover
    from sib_engine.contract import Contract
    from sib_engine.evaluation import Evaluation


# ------------------------------------------------------------------- validation ---


@dataclass(frozen=True)
class ValidationFacts:
    """What the store records of a validation result."""

    rows: int
    accepted: pd.DataFrame
    quarantined: pd.DataFrame
    flagged: int
    hold: bool
    hold_reasons: tuple[str, ...]
    reasons: dict[str, int]
    checks: list[dict[str, Any]]
    failures: int
    tolerance: str
    key_id: str
    sources: tuple[str, ...]
    timings: dict[str, float]


def _jsonable(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return list(json.loads(json.dumps(records, default=str)))


def validation_facts(result: Any) -> ValidationFacts:
    """The facts of a :class:`sib_engine.validation.ValidationResult` (duck-typed)."""
    checks = result.checks.to_dict("records") if hasattr(result, "checks") else []
    return ValidationFacts(
        rows=int(result.rows),
        accepted=result.accepted,
        quarantined=result.quarantined,
        flagged=int(getattr(result, "n_flagged", 0)),
        hold=bool(result.hold),
        hold_reasons=tuple(str(r) for r in result.hold_reasons),
        reasons={str(k): int(v) for k, v in dict(result.reasons).items()},
        checks=_jsonable(checks),
        failures=int(len(result.failures)) if hasattr(result, "failures") else 0,
        tolerance=str(getattr(result, "tolerance", "")),
        key_id=str(result.key_id),
        sources=tuple(str(s) for s in getattr(result, "sources", ())),
        timings={str(k): float(v) for k, v in dict(getattr(result, "timings", {})).items()},
    )


# ------------------------------------------------------------------- evaluation ---


def evaluate(contract: "Contract", data: pd.DataFrame, as_of: date | None,
             previous: "Evaluation | None") -> "Evaluation":
    from sib_engine.evaluation import evaluate as _evaluate

    return _evaluate(contract, data, as_of, previous=previous)


def new_lines(evaluation: "Evaluation", previous: "Evaluation | None") -> tuple[Any, ...]:
    """The lines ``evaluation`` adds to what ``previous`` recorded (its lines come first)."""
    lines = tuple(evaluation.lines)
    if previous is None:
        return lines
    n = len(previous.lines)
    return lines[n:]


def determination_values(evaluation: "Evaluation", previous: "Evaluation | None") -> list[dict[str, Any]]:
    """Column values of the ``determinations`` made by ``evaluation``."""
    made_before = {d.id for d in previous.determinations} if previous is not None else set()
    return [
        {
            "position": i, "determination": d.id, "kind": d.kind, "period": d.period,
            "period_start": d.period_start, "period_end": d.period_end, "data_cutoff": d.data_cutoff,
            "payment_date": d.payment_date, "terms_date": d.terms_date, "amendments": list(d.amendments),
            "clause": d.clause, "first_made": d.id not in made_before,
        }
        for i, d in enumerate(evaluation.determinations)
    ]


def line_values(lines: Sequence[Any], currency: str) -> list[dict[str, Any]]:
    """Column values of ``payment_lines`` for evaluation lines (money in minor units)."""
    out = []
    for i, ln in enumerate(lines):
        out.append({
            "line_no": i, "determination": ln.determination, "kind": ln.kind, "period": ln.period,
            "payment_date": ln.payment_date, "payer": ln.payer, "trigger": ln.trigger, "outcome": ln.outcome,
            "units": None if ln.units is None else str(ln.units),
            "amount_minor": to_minor_units(ln.amount, currency), "currency": currency, "clause": ln.clause,
            "note": ln.note or "", "unrounded": None if ln.unrounded is None else str(ln.unrounded),
            "trace": ln.trace.render() if ln.trace is not None else "",
        })
    return out


LINE_KEY = ("determination", "kind", "period", "payment_date", "payer", "trigger", "outcome", "units",
            "amount_minor", "currency", "clause", "note")
"""The fields of a payment line ``sib verify`` compares with a recomputation."""

DETERMINATION_KEY = ("position", "determination", "kind", "period", "period_start", "period_end", "data_cutoff",
                     "payment_date", "terms_date", "amendments", "clause", "first_made")


def rates_values(evaluation: "Evaluation") -> list[dict[str, Any]]:
    return [
        {"determination": r.determination, "trigger": r.trigger, "tranches": list(r.tranches),
         "rate": str(r.rate), "clause": r.clause}
        for r in getattr(evaluation, "rates", ())
    ]


def notes_values(evaluation: "Evaluation") -> list[str]:
    return [str(n) for n in getattr(evaluation, "notes", ())]


def rebuild_evaluation(
    *, contract_id: str, version: int, title: str, currency: str, as_of: date | None,
    determinations: Sequence[Mapping[str, Any]], lines: Sequence[Mapping[str, Any]],
) -> "Evaluation":
    """An :class:`~sib_engine.evaluation.Evaluation` holding the recorded determinations and
    lines (traces shortened to the recorded text): the ``previous=`` of the next run."""
    from sib_engine.evaluation import DeterminationInfo, Evaluation, PaymentLine
    from sib_engine.trace import Trace

    infos = tuple(
        DeterminationInfo(
            id=d["determination"], kind=d["kind"], period=d["period"], period_start=d["period_start"],
            period_end=d["period_end"], data_cutoff=d["data_cutoff"], payment_date=d["payment_date"],
            terms_date=d["terms_date"], amendments=tuple(d["amendments"]), clause=d["clause"],
        )
        for d in determinations
    )
    pls = tuple(
        PaymentLine(
            determination=ln["determination"], kind=ln["kind"], period=ln["period"],
            payment_date=ln["payment_date"], payer=ln["payer"], trigger=ln["trigger"], outcome=ln["outcome"],
            units=None if ln["units"] is None else Decimal(ln["units"]),
            amount=from_minor_units(int(ln["amount_minor"]), ln["currency"]), clause=ln["clause"],
            trace=Trace("as recorded", from_minor_units(int(ln["amount_minor"]), ln["currency"]), ln["clause"],
                        (Trace(ln["trace"]),) if ln.get("trace") else ()),
            note=ln["note"], unrounded=None if ln["unrounded"] is None else Decimal(ln["unrounded"]),
        )
        for ln in lines
    )
    return Evaluation(contract_id=contract_id, contract_version=version, title=title, currency=currency,
                      as_of=as_of, determinations=infos, lines=pls)


# -------------------------------------------------------------------- allocation ---


@dataclass(frozen=True)
class Allocation:
    flows: list[dict[str, Any]]
    positions: list[dict[str, Any]]


def allocate(contract: "Contract", evaluation: "Evaluation") -> Allocation | None:
    """The waterfall over every line recorded so far (``evaluation`` is cumulative): each
    flow of money, and each funder's position.  ``None`` if the waterfall module is absent."""
    try:
        from sib_engine.returns import funder_returns
        from sib_engine.waterfall import coupon_rates_from_evaluation, payments_from_evaluation, run_waterfall
    except ImportError:  # pragma: no cover - the capital-stack modules are optional
        return None
    cur = contract.currency
    payments = payments_from_evaluation(evaluation)
    rates = coupon_rates_from_evaluation(evaluation) or None
    wf = run_waterfall(contract, payments, coupon_rates=rates,
                       apply_share_steps=getattr(evaluation, "funders_return", None) is None)
    flows = [
        {"position": i, "date": f.date, "source": f.source, "target": f.target, "kind": f.kind,
         "amount_minor": to_minor_units(f.amount, cur), "currency": cur, "tranche": f.tranche, "step": f.step,
         "trigger": f.trigger, "determination": f.determination, "clause": f.clause, "why": f.why}
        for i, f in enumerate(wf.flows)
    ]
    rets = funder_returns(wf)
    positions = []
    for f in rets.funders:
        irr = f.irr
        positions.append({
            "party": f.party, "role": f.role, "tranches": list(f.tranches),
            "invested_minor": to_minor_units(f.invested, cur), "received_minor": to_minor_units(f.received, cur),
            "guarantee_received_minor": to_minor_units(f.guarantee_received, cur),
            "guarantee_paid_minor": to_minor_units(f.guarantee_paid, cur),
            "outstanding_minor": to_minor_units(f.outstanding_at_close, cur), "currency": cur,
            "irr": f"{float(irr):.10f}" if getattr(irr, "ok", False) else None,
            "multiple": None if f.moic is None else str(f.moic),
        })
    return Allocation(flows, positions)


FLOW_KEY = ("position", "date", "source", "target", "kind", "amount_minor", "currency", "tranche", "step",
            "trigger", "determination", "clause")
POSITION_KEY = ("party", "role", "tranches", "invested_minor", "received_minor", "guarantee_received_minor",
                "guarantee_paid_minor", "outstanding_minor", "currency", "irr", "multiple")
