"""Export of a deal in the INDIGO impact-bond data standard (Oxford Government Outcomes Lab).

INDIGO (https://github.com/INDIGO-Initiative/indigo-data-standard) describes a project
(``schema/project.json``) and its organisations (``schema/organisation.json``); most values
are wrapped as ``{"value": ...}``, dates are ``YYYY-MM-DD``, amounts are numbers with a
``currency``.  :func:`indigo_project` fills the fields below from the recorded contract, the
deal's ledger (every payment line), its latest determination run, the accepted data of that
run and the waterfall recorded with it.

===================================================  ======================================================
INDIGO field (project)                               sib-engine source
===================================================  ======================================================
``id``                                               contract ``id`` (GO Lab assigns its own INDIGO ids)
``name.value``                                       contract ``title``
``status``                                           ``PUBLIC`` (small counts are suppressed)
``stage_development.value``                          ``Contracted`` (no determination yet),
                                                     ``Implementation``, ``Complete`` (final determination)
``dates.start_date_of_service_provision``            ``term.start``
``dates.anticipated_end_date_of_service_provision``  ``term.end``
``dates.anticipated_completion_date``                payment date of the last determination of the timeline
``dates.actual_completion_date``                     payment date of the recorded final determination
``jurisdiction.jurisdiction.value``                  ISO 3166 code read from ``jurisdiction`` (e.g. ``NL``)
``purpose_and_classifications.intervention``         contract ``summary``
``service_and_beneficiaries.target_population``      ``eligibility.description``
``...targeted_number_service_users_or_beneficiaries_total``  sum of the cohorts' ``target_size``
``...actual_number_service_users_or_beneficiaries_total``    treatment participants enrolled (suppressed < min)
``overall_project_finance.total_investment_commitment``      sum of tranche commitments (deferred fees excluded)
``overall_project_finance.maximum_potential_outcome_payment_v2``  ``caps.total``
``overall_project_finance.total_outcome_payments_made``      net of every recorded payment line
``investment_details.internal_rate_of_return.latest``        the funder's XIRR (one funder only), with its date
``outcome_payment_commitments[]``                    one per payer: ``party``, role category, ``cap``, term,
                                                     paid so far, ``result_type`` Interim/Overall
``investments[]``                                    one per tranche: ``id``, ``funder``, ``commitment``,
                                                     ``max_return``, ``investment_type`` (loans: Debt,
                                                     quasi-equity: Equity), ``investor_repayment`` when complete
``service_provisions[]``                             one per provider party, planned service = term
``outcome_metrics[]``                                one per metric: ``id``, ``name`` (definition), validation
                                                     method from its baseline (randomised comparison group: RCT;
                                                     matched or blended: quasi-experimental; fixed, historical,
                                                     expected duration: historical comparison; none: simple
                                                     ex-post verification)
``outcome_pricings[]``                               one per rate-card outcome: ``price`` per unit
``results[]``                                        one per metric: engaged and positive-outcome participants
                                                     (event and yes/no metrics), suppressed below the minimum
``outcome_payments[]``                               recorded lines summed per determination, outcome and payer;
                                                     ``Actual`` (``Planned`` if due after the run's as-of date)
``transactions[]``                                   waterfall flows: drawdowns (Debt/Equity/Grant), interest,
                                                     capital repayments, outcome payments, other
``sources[]``                                        contract ``sources``
===================================================  ======================================================

Organisations (``organisation.json``): one per party, ``id`` the party id, ``name.value``,
``type.value`` from the role.  Amounts are JSON numbers in the contract's currency.
"""

from __future__ import annotations

import re
from datetime import date
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from sib_engine import __version__
from sib_engine.disclosure import min_cell_size, suppress
from sib_engine.money import from_minor_units

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

    from sib_engine.contract import Contract
    from sib_engine.storage.records import ContractRecord, RunRecord

STANDARD = "INDIGO impact bond data standard (github.com/INDIGO-Initiative/indigo-data-standard: schema/project.json, schema/organisation.json)"

_ROLE_CATEGORY = {
    "payer": "Government/Public Sector/Public Bank",
    "top_up_fund": "Government/Public Sector/Public Bank",
    "investor": "Investment Fund",
    "guarantor": "Foundation/Philanthropist",
    "provider": "Nonprofit/NGO",
}
_ORG_TYPE = {
    "payer": "Government body",
    "top_up_fund": "Government body",
    "investor": "Registered company, partnership or commercial association",
    "guarantor": "Registered non-profit organisation, charity or foundation",
    "provider": "Registered non-profit organisation, charity or foundation",
    "evaluator": "Registered company, partnership or commercial association",
    "intermediary": "Registered company, partnership or commercial association",
}
_INVESTMENT_TYPE = {"senior_loan": "Debt", "junior_loan": "Debt", "quasi_equity": "Equity", "first_loss": "Equity"}
_VALIDATION = {
    "fixed": "Historical comparison",
    "historical": "Historical comparison",
    "expected_duration": "Historical comparison",
    "comparison_group": "Quasi-experimental study",
    "blended": "Quasi-experimental study",
}
_TRANSACTION = {
    "outcome_payment": "Outcome Payment",
    "interest": "Interest Payment",
    "principal": "Capital Repayment",
    "fee": "Capital Repayment",
}
_COUNTRIES = {
    "england": "GB", "scotland": "GB", "wales": "GB", "united kingdom": "GB", "northern ireland": "GB",
    "australia": "AU", "usa": "US", "united states": "US", "massachusetts": "US",
    "netherlands": "NL", "belgium": "BE", "france": "FR", "germany": "DE", "portugal": "PT",
}


def _v(value: Any) -> dict[str, Any]:
    return {"value": value}


def _num(amount: Decimal) -> float | int:
    return int(amount) if amount == amount.to_integral_value() else float(amount)


def _money(amount: Decimal, currency: str) -> dict[str, Any]:
    return {"currency": _v(currency), "amount": _v(_num(amount))}


def country_code(jurisdiction: str | None) -> str | None:
    """An ISO 3166 code read from a jurisdiction text (``"NL (Gemeente Rotterdam)"`` -> ``NL``)."""
    if not jurisdiction:
        return None
    m = re.match(r"^([A-Z]{2})\b", jurisdiction)
    if m:
        return m.group(1)
    low = jurisdiction.lower()
    for word, code in _COUNTRIES.items():
        if word in low:
            return code
    return None


def _results(contract: "Contract", frame: "pd.DataFrame | None", final: bool, start: date, end: date | None,
             min_cell: int) -> tuple[list[dict[str, Any]], int | None, bool]:
    """Results per metric, the engaged count (suppressed) and whether it was suppressed."""
    if frame is None or not len(frame):
        return [], None, False
    metric = frame["metric"].astype(object)
    group = frame["group"].astype(object).fillna("treatment") if "group" in frame.columns else None
    treated = (group == "treatment") if group is not None else metric.notna()
    enrolled = frame.loc[(metric == "enrolment") & treated, "participant_id"].nunique()
    engaged = suppress(int(enrolled), min_cell)
    out = []
    for m in contract.metrics:
        item: dict[str, Any] = {
            "outcome_metric_id": _v(m.id), "result_level": _v("Outcome level"),
            "result_type": _v("Final" if final else "Interim"),
            "period": {"start_date": _v(start.isoformat())},
        }
        if end is not None:
            item["period"]["end_date"] = _v(end.isoformat())
        notes = []
        if engaged is not None:
            item["number_engaged_in_impact_bond"] = _v(engaged)
        else:
            notes.append(f"number engaged suppressed (fewer than {min_cell} participants)")
        if m.type in ("event", "binary") and m.better == "higher":
            rows = frame.loc[(metric == m.id) & treated & (frame["value"] > 0), "participant_id"]
            positive = suppress(int(rows.nunique()), min_cell)
            if positive is not None:
                item["number_with_positive_social_outcomes"] = _v(positive)
            else:
                notes.append(f"number with positive outcomes suppressed (fewer than {min_cell} participants)")
            item["outcomes_achieved"] = _v(f"participants with '{m.name}' among the treatment group")
        else:
            item["outcomes_achieved"] = _v(f"'{m.name}' ({m.type}, {m.better} is better): see the determinations")
        if notes:
            item["notes"] = "; ".join(notes)
        out.append(item)
    return out, engaged, engaged is None


def indigo_project(
    contract: "Contract", record: "ContractRecord", run: "RunRecord | None", determinations: Sequence[Mapping[str, Any]],
    lines: Sequence[Mapping[str, Any]], frame: "pd.DataFrame | None", flows: Sequence[Mapping[str, Any]],
    positions: Sequence[Mapping[str, Any]], head: tuple[int, str], *, min_cell: int | None = None,
) -> dict[str, Any]:
    """The INDIGO project and organisations of a recorded deal (see the module's docstring)."""
    k = min_cell_size(min_cell)
    cur = contract.currency
    made = {d["determination"]: d for d in determinations}
    final = next((d for d in determinations if d["kind"] == "final"), None)
    stage = "Contracted" if run is None else ("Complete" if final is not None else "Implementation")
    plan_last = _planned_completion(contract)
    total_paid = sum((from_minor_units(int(ln["amount_minor"]), cur) for ln in lines), Decimal(0))
    project: dict[str, Any] = {
        "id": contract.id,
        "name": _v(contract.title),
        "status": "PUBLIC",
        "stage_development": _v(stage),
        "dates": {
            "start_date_of_service_provision": _v(contract.term.start.isoformat()),
            "anticipated_end_date_of_service_provision": _v(contract.term.end.isoformat()),
        },
        "notes": _v(
            f"Exported by sib-engine {__version__} from contract {record.content_hash} (version {contract.version})"
            + (f", ledger run {run.uid} (entry {run.entry_hash}) as of {run.as_of or 'all determinations'}"
               if run else ", no determination recorded")
            + f"; ledger head #{head[0]} {head[1]}. Counts below {k} participants are suppressed."
        ),
    }
    if plan_last is not None:
        project["dates"]["anticipated_completion_date"] = _v(plan_last.isoformat())
    if final is not None:
        project["dates"]["actual_completion_date"] = _v(final["payment_date"].isoformat())
    code = country_code(contract.jurisdiction)
    if code:
        project["jurisdiction"] = {"jurisdiction": _v(code), "notes": contract.jurisdiction or ""}
    if contract.summary:
        project["purpose_and_classifications"] = {"intervention": _v(contract.summary.strip())}

    cohorts = contract.timeline.cohorts
    sb: dict[str, Any] = {}
    if contract.eligibility is not None and contract.eligibility.description:
        sb["target_population"] = _v(contract.eligibility.description)
    if cohorts and all(c.target_size is not None for c in cohorts):
        sb["targeted_number_service_users_or_beneficiaries_total"] = _v(sum(c.target_size or 0 for c in cohorts))
        sb["unit_type_targeted_service_users_or_beneficiaries"] = _v("Individual")
    last_cutoff = max((d["data_cutoff"] for d in determinations), default=None)
    results, engaged, suppressed = _results(contract, frame, final is not None, contract.term.start, last_cutoff, k)
    if engaged is not None:
        sb["actual_number_service_users_or_beneficiaries_total"] = _v(engaged)
        sb["unit_type_actual_service_users_or_beneficiaries"] = _v("Individual")
    elif suppressed:
        sb["notes"] = f"actual number of service users suppressed (fewer than {k})"
    if sb:
        project["service_and_beneficiaries"] = sb

    tranches = contract.capital.tranches if contract.capital else ()
    finance: dict[str, Any] = {
        "total_outcome_payments_made": _money(total_paid, cur),
    }
    raised = sum((t.commitment for t in tranches if t.kind != "deferred_fee"), Decimal(0))
    if tranches:
        finance["total_investment_commitment"] = {"currency": _v(cur), "amount": {"exact": _v(_num(raised))}}
    if contract.caps is not None and contract.caps.total is not None:
        finance["maximum_potential_outcome_payment_v2"] = _money(contract.caps.total, cur)
    returns = [t.max_return for t in tranches if t.max_return is not None]
    if returns:
        finance["maximum_potential_return_type"] = _v("IRR")
        finance["maximum_potential_return"] = _v(f"{max(returns) * 100:.2f}%")
    project["overall_project_finance"] = finance
    funders = [p for p in positions if p["role"] == "funder"]
    if len(funders) == 1 and funders[0].get("irr") and run is not None:
        project["investment_details"] = {"internal_rate_of_return": {
            "latest": _v(f"{float(funders[0]['irr']) * 100:.2f}%"),
            "date": _v((run.as_of or run.recorded_at.date()).isoformat()),
        }}

    parties = {p.id: p for p in contract.parties}
    paid_by: dict[str, Decimal] = {}
    for ln in lines:
        paid_by[ln["payer"]] = paid_by.get(ln["payer"], Decimal(0)) + from_minor_units(int(ln["amount_minor"]), cur)
    commitments = []
    for payer in contract.payers:
        party = parties.get(payer.party)
        item: dict[str, Any] = {
            "organisation_id": _v(payer.party),
            "organisation_role_category": _v(_ROLE_CATEGORY.get(party.role if party else "payer",
                                                                "Government/Public Sector/Public Bank")),
            "result_type": _v("Overall" if final is not None else "Interim"),
            "period": {"start_date": _v(contract.term.start.isoformat()), "end_date": _v(contract.term.end.isoformat())},
            "total_outcome_payments": _money(paid_by.get(payer.party, Decimal(0)), cur),
        }
        if payer.cap is not None:
            item["maximum_potential_outcome_payment"] = _money(payer.cap, cur)
        if payer.top_up is not None:
            item["notes"] = f"tops up the other payers' payments by {payer.top_up * 100:.4g}%"
        commitments.append(item)
    project["outcome_payment_commitments"] = commitments

    by_party = {p["party"]: p for p in positions}
    investments = []
    for t in tranches:
        if t.kind == "deferred_fee":
            continue
        inv: dict[str, Any] = {
            "id": t.id,
            "organisation_id": _v(t.funder),
            "organisation_role_category": _v(_ROLE_CATEGORY["investor"]),
            "investment_commitment": {"currency": _v(cur), "amount": {"exact": _v(_num(t.commitment))}},
            "notes": f"{t.kind.replace('_', ' ')}" + (f", clause {t.clause}" if t.clause else ""),
        }
        if t.kind in _INVESTMENT_TYPE:
            inv["investment_type"] = _v(_INVESTMENT_TYPE[t.kind])
        if t.max_return is not None:
            inv["maximum_potential_return_type"] = _v("IRR")
            inv["maximum_potential_return"] = _v(_num(t.max_return * 100))
        pos = by_party.get(t.funder)
        if final is not None and pos is not None:
            inv["investor_repayment"] = _v(_repayment(pos))
        investments.append(inv)
    if investments:
        project["investments"] = investments

    project["service_provisions"] = [
        {"id": p.id, "organisation_id": _v(p.id), "organisation_role_category": _v("Nonprofit/NGO"),
         "planned_service": {"start_date": _v(contract.term.start.isoformat()),
                             "end_date": _v(contract.term.end.isoformat())}}
        for p in contract.parties if p.role == "provider"
    ]
    kinds: dict[str, str] = {}
    for b in contract.baselines:
        design = getattr(b, "design", None)
        kinds.setdefault(b.metric, "Randomised Control Trial" if design == "randomised" else _VALIDATION[b.kind])
    project["outcome_metrics"] = [
        {"id": m.id, "definition": _v(m.name + (f" [{m.clause}]" if m.clause else "")),
         "outcome_validation_method": _v(kinds.get(m.id, "Simple ex-post verification")),
         **({"target_population": _v(contract.eligibility.description)}
            if contract.eligibility is not None and contract.eligibility.description else {})}
        for m in contract.metrics
    ]
    pricings = []
    for trig in contract.triggers:
        for o in getattr(trig, "outcomes", ()):
            pricings.append({
                "outcome_metric_id": _v(o.metric), "currency": _v(cur),
                "price_per_unit": {"amount": _v(_num(o.price))},
                "price_description": _v(f"{trig.id}: up to {o.max_claims} claim(s) per participant"
                                        + (f" [{o.clause or trig.clause}]" if (o.clause or trig.clause) else "")),
            })
    changed = [f"{a.id} (effective {a.effective}, {a.clause}): {a.summary}" for a in contract.amendments]
    if pricings:
        if changed:
            for p in pricings:
                p["contracted_increases_to_outcome_pricing"] = _v("; ".join(changed))
        project["outcome_pricings"] = pricings
    if results:
        project["results"] = results

    metric_ids = {m.id for m in contract.metrics}
    sums: dict[tuple[str, str, str], Decimal] = {}
    order: list[tuple[str, str, str]] = []
    for ln in lines:
        key = (ln["determination"], ln["outcome"] if ln["outcome"] in metric_ids else ln["trigger"], ln["payer"])
        if key not in sums:
            order.append(key)
            sums[key] = Decimal(0)
        sums[key] += from_minor_units(int(ln["amount_minor"]), cur)
    due = {(ln["determination"], ln["payer"]): ln["payment_date"] for ln in lines}
    recipient = next((p.id for p in contract.parties if p.role == "provider"), "SPV")
    payments = []
    for key in order:
        det = made.get(key[0])
        when = due.get((key[0], key[2]))
        planned = run is not None and run.as_of is not None and when is not None and when > run.as_of
        item = {
            "outcome_metric_id": _v(key[1]), "payer_organisation_id": _v(key[2]),
            "recipient_organisation_id": _v("SPV" if contract.capital else recipient),
            "type": _v("Planned" if planned else "Actual"), "money": _money(sums[key], cur),
            "notes": f"determination {key[0]}" + (f", due {when}" if when else ""),
        }
        if det is not None:
            item["period"] = {"start_date": _v(det["period_start"].isoformat()),
                              "end_date": _v(det["period_end"].isoformat())}
        payments.append(item)
    if payments:
        project["outcome_payments"] = payments

    kind_of = {t.id: t.kind for t in tranches}
    transactions = []
    for f in flows:
        if f["kind"] == "drawdown":
            ttype = "Equity" if _INVESTMENT_TYPE.get(kind_of.get(f["tranche"] or "", "")) == "Equity" else (
                "Grant" if kind_of.get(f["tranche"] or "") == "recoverable_grant" else "Debt")
        else:
            ttype = _TRANSACTION.get(f["kind"], "Other")
        item = {
            "date": _v(f["date"].isoformat()), "sending_organisation_id": _v(f["source"]),
            "receiving_organisation_id": _v(f["target"]), "transaction_type": _v(ttype),
            "money": _money(from_minor_units(int(f["amount_minor"]), cur), cur),
            "notes": f"{f['kind']}: {f['why']}",
        }
        if f.get("tranche"):
            item["investment_id"] = _v(f["tranche"])
        transactions.append(item)
    if transactions:
        project["transactions"] = transactions
    if contract.sources:
        project["sources"] = [{"id": f"S{i + 1}", "name": _v(s)} for i, s in enumerate(contract.sources)]

    organisations = [
        {"id": p.id, "name": _v(p.name), "type": _v(_ORG_TYPE.get(p.role, "Unregistered organisation")),
         **({"org-ids": {"primary": _v(p.municipality_code)}} if p.municipality_code else {})}
        for p in contract.parties
    ]
    return {
        "standard": STANDARD,
        "project": project,
        "organisations": organisations,
        "provenance": {
            "engine_version": __version__, "contract_hash": record.content_hash,
            "run": run.uid if run else None, "run_entry_hash": run.entry_hash if run else None,
            "ledger_head": {"seq": head[0], "hash": head[1]}, "min_cell": k,
        },
    }


def _planned_completion(contract: "Contract") -> date | None:
    from datetime import timedelta

    periods = {p.id: p for p in contract.periods()}
    tl = contract.timeline
    if tl.determinations:
        last = tl.determinations[-1]
        lag = last.payment_lag_days if last.payment_lag_days is not None else tl.payment_lag_days
        p = periods.get(last.period)
        return None if p is None else p.end + timedelta(days=lag)
    if not periods:
        return None
    return list(periods.values())[-1].end + timedelta(days=tl.payment_lag_days)


def _repayment(position: Mapping[str, Any]) -> str:
    invested = int(position["invested_minor"])
    back = int(position["received_minor"]) + int(position["guarantee_received_minor"])
    if invested <= 0:
        return "Not publicly available"
    if back <= 0:
        return "No repayment (no principle or return)"
    if back < invested:
        return "Some repayment (but below value of principle)"
    if back == invested:
        return "Principal repaid (but no net return)"
    return "Principal + positive financial returns"
