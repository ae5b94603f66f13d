"""A contract in plain language, for a council meeting (layer 3: edges).

:func:`describe_contract` renders a :class:`~sib_engine.contract.Contract` as Markdown-ish
plain text that a councillor, an investor's credit committee or a journalist can read: who
the parties are, who pays whom, for what, how much at most, when, how the investors are
repaid, and what has been amended.  Every amount goes through
:func:`~sib_engine.money.format_money`; every term names the clause it comes from.

Nothing here computes a payment: the text restates the terms, and the only arithmetic is
what a reader would otherwise do in the margin (a payment date is a period's end plus the
lag; the most a contract can pay is its total cap or the sum of its triggers' limits).

>>> from sib_engine.loader import EXAMPLE, parse_contract
>>> text = describe_contract(parse_contract(EXAMPLE))
>>> print(text.splitlines()[0])
# Demo rate card
>>> "EUR 2,750.00" in text
True
"""

from __future__ import annotations

import json
from datetime import date, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any, Callable, Iterable, Sequence

from sib_engine.contract import (
    Amendment,
    BandedReturnTrigger,
    Baseline,
    BlendedBaseline,
    Capital,
    Change,
    BetaDistribution,
    CohortTrigger,
    ComparisonGroupBaseline,
    Contract,
    Distribution,
    Effect,
    EmpiricalDistribution,
    ExpectedDurationBaseline,
    FixedBaseline,
    Gate,
    Guarantee,
    HistoricalBaseline,
    LognormalDistribution,
    Metric,
    NormalDistribution,
    Party,
    Payer,
    RateCardOutcome,
    RateCardTrigger,
    Schedule,
    ShareOfSavingsTrigger,
    Simulation,
    ThresholdTrigger,
    Tranche,
    TriangularDistribution,
    Trigger,
    WaterfallStep,
)
from sib_engine.money import allocate, format_money, round_money
from sib_engine.periods import add_months

__all__ = ["describe_contract"]

DASH = " — "

ROLE_WORDS: dict[str, str] = {
    "payer": "outcome payer (commissioner)",
    "top_up_fund": "top-up fund",
    "investor": "investor (funder)",
    "guarantor": "guarantor",
    "provider": "service provider",
    "evaluator": "evaluator / validator",
    "intermediary": "intermediary",
}

TRIGGER_WORDS: dict[str, str] = {
    "rate_card": "rate card",
    "threshold": "threshold schedule",
    "cohort_with_pooled_fallback": "per cohort, with a pooled fallback",
    "share_of_savings": "share of savings",
    "banded_return": "banded return",
}

TRANCHE_WORDS: dict[str, str] = {
    "senior_loan": "Senior loan",
    "junior_loan": "Junior loan",
    "quasi_equity": "Quasi-equity",
    "recoverable_grant": "Recoverable grant",
    "deferred_fee": "Deferred provider fee",
    "first_loss": "First-loss capital",
}

TEST_WORDS: dict[str, str] = {
    "two_proportion_z": "two-proportion z-test",
    "welch_t": "Welch t-test",
    "poisson_rate_ratio": "Poisson rate-ratio test",
}

METRIC_TYPE_WORDS: dict[str, str] = {
    "event": "an event that happens to a participant on a date",
    "binary": "yes or no per participant, reported as a rate",
    "count": "a count per participant",
    "duration": "days in a state per participant",
    "continuous": "a measured value per participant",
}

_MONEY_KEYS = frozenset(
    {
        "price",
        "cap",
        "cap_amount",
        "cap_per_participant",
        "cap_per_period",
        "amount",
        "total",
        "per_period",
        "per_participant",
        "commitment",
        "unit_cost",
        "service_budget",
        "fee_for_service_cost",
        "maximum",
    }
)


def describe_contract(contract: Contract, on: date | None = None) -> str:
    """The contract in plain language, as Markdown-ish text ending in a newline.

    With ``on``, the terms are those in force on that date (``contract.at(on)``: the
    contract as signed with every amendment effective by then applied); without it, the
    terms of ``contract`` as given (as signed, unless it is already a dated view).
    Raises :class:`~sib_engine.errors.AmendmentError` when an amendment cannot be applied.
    """
    terms = contract.at(on) if on is not None else contract
    return _Renderer(terms).render()


# ---------------------------------------------------------------------- formatting ---


def _num(value: Decimal | int) -> str:
    """A number as written, without exponent or trailing zeros: ``1,250.5``."""
    d = Decimal(value)
    if d == d.to_integral_value():
        d = d.quantize(Decimal(1))
    return f"{d.normalize():,f}"


def _pct(value: Decimal) -> str:
    """A fraction as a percentage: ``0.075`` -> ``7.5%``."""
    return _num(value * 100) + "%"


def _times(n: int) -> str:
    return {1: "once", 2: "twice"}.get(n, f"{n} times")


def _plural(n: int, word: str, plural: str | None = None) -> str:
    return f"{n} {word if n == 1 else (plural or word + 's')}"


def _clause(clause: str | None) -> str:
    return f"{DASH}{clause}" if clause else ""


def _and(items: Sequence[str]) -> str:
    if not items:
        return ""
    if len(items) == 1:
        return items[0]
    return ", ".join(items[:-1]) + " and " + items[-1]


def _table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(row) + " |" for row in rows]
    return out


# ------------------------------------------------------------------------ renderer ---


class _Renderer:
    def __init__(self, c: Contract) -> None:
        self.c = c
        self.lines: list[str] = []

    # -- small helpers ---------------------------------------------------------------
    def money(self, amount: Decimal) -> str:
        return format_money(amount, self.c.currency)

    def out(self, *lines: str) -> None:
        self.lines.extend(lines)

    def section(self, title: str) -> None:
        if self.lines and self.lines[-1] != "":
            self.lines.append("")
        self.lines += [f"## {title}", ""]

    def subsection(self, title: str) -> None:
        if self.lines and self.lines[-1] != "":
            self.lines.append("")
        self.lines += [f"### {title}", ""]

    def gap(self) -> None:
        if self.lines and self.lines[-1] != "":
            self.lines.append("")

    def party_name(self, party_id: str) -> str:
        try:
            return f"**{self.c.party(party_id).name}**"
        except KeyError:
            return f"`{party_id}`"

    def metric_name(self, metric_id: str) -> str:
        try:
            return f"*{self.c.metric(metric_id).name}*"
        except KeyError:
            return f"`{metric_id}`"

    def metric_or_none(self, metric_id: str) -> Metric | None:
        try:
            return self.c.metric(metric_id)
        except KeyError:
            return None

    def tranche_words(self, tranche_id: str) -> str:
        cap = self.c.capital
        t = next((t for t in cap.tranches if t.id == tranche_id), None) if cap else None
        if t is None:
            return f"`{tranche_id}`"
        return f"`{t.id}` ({TRANCHE_WORDS[t.kind].lower()} from {self.party_name(t.funder)})"

    # -- the document ----------------------------------------------------------------
    def render(self) -> str:
        self.header()
        self.parties()
        self.eligibility()
        self.payers()
        self.metrics()
        self.baselines()
        self.triggers()
        self.caps()
        self.timeline()
        self.capital()
        self.guarantees()
        self.value_for_money()
        self.data_quality()
        self.amendments()
        self.simulation()
        while self.lines and self.lines[-1] == "":
            self.lines.pop()
        return "\n".join(self.lines) + "\n"

    def header(self) -> None:
        c = self.c
        self.out(f"# {c.title}", "")
        facts = [f"Contract `{c.id}`, version {c.version} ({c.format})", f"amounts in {c.currency}"]
        if c.jurisdiction:
            facts.append(f"jurisdiction: {c.jurisdiction}")
        self.out("; ".join(facts) + ".")
        if c.summary:
            self.out("", c.summary.strip())
        if c.sources:
            self.out("", "Sources of the figures: " + "; ".join(c.sources) + ".")
        on = c.in_force_on
        self.gap()
        if on is None:
            if c.amendments:
                self.out(
                    f"These are the terms as signed. {_plural(len(c.amendments), 'amendment')} "
                    f"{'changes' if len(c.amendments) == 1 else 'change'} them from later dates "
                    "(see *Amendments*); give a date to read the terms in force on that day."
                )
            else:
                self.out("These are the terms as signed; there are no amendments.")
            return
        applied = c.applied_amendments
        where = ""
        if not c.term.start <= on <= c.term.end:
            where = f" (outside the term, {c.term.start} to {c.term.end})"
        if applied:
            names = [f"`{a.id}` of {a.effective}" for a in applied]
            self.out(
                f"**Terms in force on {on}**{where}: the contract as signed, "
                f"with amendment{'s' if len(applied) > 1 else ''} {_and(names)} applied."
            )
        else:
            self.out(
                f"**Terms in force on {on}**{where}: the contract as signed; "
                "no amendment had taken effect by then."
            )

    # -- parties ---------------------------------------------------------------------
    def parties(self) -> None:
        self.section("Parties")
        order = list(ROLE_WORDS)
        for p in sorted(self.c.parties, key=lambda p: order.index(p.role)):
            self.out(self.party_line(p))

    def party_line(self, p: Party) -> str:
        text = f"- **{p.name}** (`{p.id}`){DASH}{ROLE_WORDS[p.role]}"
        if p.municipality_code:
            text += f"; municipality code {p.municipality_code}"
        if p.note:
            text += f". {p.note}"
        return text

    def eligibility(self) -> None:
        e = self.c.eligibility
        if e is None:
            return
        self.section("Who can take part")
        parts = []
        if e.age_min is not None or e.age_max is not None:
            parts.append("aged " + _range(e.age_min, e.age_max, "years"))
        if e.prior_months_min is not None or e.prior_months_max is not None:
            parts.append(
                _range(e.prior_months_min, e.prior_months_max, "months")
                + " on benefits (or out of work) before enrolment"
            )
        text = "Participants " + "; ".join(parts) + "." if parts else "Participants as described."
        if e.description:
            text += " " + e.description.strip()
        self.out(text + _clause(e.clause))

    # -- who pays whom ---------------------------------------------------------------
    def payers(self) -> None:
        c = self.c
        self.section("Who pays whom")
        self.out("Outcome payments are made by:", "")
        for payer in c.payers:
            self.out(self.payer_line(payer))
        providers = [self.party_name(p.id) for p in c.parties if p.role == "provider"]
        self.gap()
        text = "They pay for outcomes of the service"
        if providers:
            text += f" delivered by {_and(providers)}"
        if c.capital is not None:
            text += "; the waterfall (see *Capital stack and waterfall*) passes them on to the funders"
        self.out(text + ".")

    def payer_line(self, payer: Payer) -> str:
        who = self.party_name(payer.party)
        mode = payer.mode
        if mode == "top_up":
            assert payer.top_up is not None
            text = f"- {who} adds {_pct(payer.top_up)} on top of every payment of the primary payers"
        elif mode == "residence":
            codes = ", ".join(payer.residence)
            text = f"- {who} pays for participants resident in {codes}"
        else:
            share = payer.share if payer.share is not None else Decimal(0)
            text = f"- {who} pays {_pct(share)} of every outcome payment"
        if payer.cap is not None:
            text += f", at most {self.money(payer.cap)} over the contract"
        return text + _clause(payer.clause)

    # -- metrics and baselines -------------------------------------------------------
    def metrics(self) -> None:
        self.section("What is measured")
        for m in self.c.metrics:
            text = f"- **{m.name}** (`{m.id}`): {METRIC_TYPE_WORDS[m.type]}"
            if m.type != "event" and m.unit != "participant":
                text += f" (unit: {m.unit})"
            text += f"; {m.better} is better"
            if m.window_months is not None:
                text += f"; counted only within {_plural(m.window_months, 'month')} of enrolment"
            if m.requires:
                text += "; counts only after " + _and([self.metric_name(r) for r in m.requires])
            if m.min_value is not None or m.max_value is not None:
                text += "; possible values " + _range(m.min_value, m.max_value, "")
            self.out(text + _clause(m.clause))

    def baselines(self) -> None:
        if not self.c.baselines:
            return
        self.section("Baselines: what would have happened anyway")
        for b in self.c.baselines:
            self.baseline(b)

    def baseline(self, b: Baseline) -> None:
        metric = self.metric_or_none(b.metric)
        value: Callable[[Decimal], str] = _pct if metric is not None and metric.type == "binary" else _num
        head = f"- **`{b.id}`** for {self.metric_name(b.metric)}: "
        tail = (f" (source: {b.source})" if b.source else "") + _clause(b.clause)
        if isinstance(b, FixedBaseline):
            self.out(head + f"a fixed value of {value(b.value)}, written in the contract" + tail)
        elif isinstance(b, HistoricalBaseline):
            text = f"the value {value(b.value)} observed in a historical cohort of {_plural(b.n, 'participant')}"
            extra = []
            if b.sd is not None:
                extra.append(f"standard deviation {_num(b.sd)}")
            if b.period:
                extra.append(f"observed {b.period}")
            if extra:
                text += " (" + "; ".join(extra) + ")"
            self.out(head + text + tail)
        elif isinstance(b, ExpectedDurationBaseline):
            self.out(
                head
                + f"the days each participant would have spent in this state over {b.horizon_days} days "
                "without the programme, from a table by age and prior duration" + tail,
                "",
            )
            self.out(
                *(
                    "  " + line
                    for line in _table(
                        ["age", "prior months", "expected days"],
                        (
                            [
                                f"{r.age_min} to {r.age_max}",
                                f"{r.prior_months_min} to {r.prior_months_max}",
                                _num(r.expected_days),
                            ]
                            for r in b.table
                        ),
                    )
                )
            )
            self.out("")
        elif isinstance(b, ComparisonGroupBaseline):
            text = f"a {b.design} comparison group (records marked group = '{b.group}')"
            if b.estimator == "difference_in_differences":
                pre = self.metric_name(b.pre_metric) if b.pre_metric else "a pre-enrolment measure"
                text += f", estimated by difference in differences against {pre} before enrolment"
            else:
                text += ", estimated by the difference between participants and the group"
            self.out(head + text + tail)
        elif isinstance(b, BlendedBaseline):
            parts = [f"{_pct(comp.weight)} `{comp.baseline}`" for comp in b.components]
            self.out(head + "a blend of " + _and(parts) + tail)
        else:  # pragma: no cover - every kind is handled above
            raise TypeError(f"cannot describe baseline kind {b.kind!r}")

    # -- effects, gates, schedules -----------------------------------------------------
    def effect_words(self, e: Effect) -> str:
        name = self.metric_name(e.metric)
        base = f"baseline `{e.baseline}`"
        return {
            "level": f"the measured {name}",
            "difference": f"{name} minus {base}",
            "relative_difference": f"the relative change of {name} over {base}, (measured - baseline) / baseline",
            "reduction": f"the reduction of {name} below {base}, baseline - measured",
            "relative_reduction": f"the relative reduction of {name} against {base}, (baseline - measured) / baseline",
        }[e.measure]

    def effect_format(self, e: Effect) -> Callable[[Decimal], str]:
        metric = self.metric_or_none(e.metric)
        binary = metric is not None and metric.type == "binary"
        if e.measure.startswith("relative") or (binary and e.measure == "level"):
            return _pct
        if binary:
            return lambda v: f"{_num(v * 100)} percentage points"
        unit = metric.unit if metric is not None and metric.unit != "participant" else ""
        return lambda v: f"{_num(v)} {unit}".rstrip()

    def gate_words(self, g: Gate | None) -> str:
        if g is None:
            return ""
        test = f"{g.sides}-sided {TEST_WORDS[g.test]}"
        if g.rule == "significant":
            text = f"Paid only if the effect is statistically significant at the {_pct(g.level)} level ({test})."
        else:
            text = (
                f"Paid on the lower bound of the {_pct(1 - g.level)} confidence interval of the effect "
                f"({test}), not on the point estimate."
            )
        return text + _clause(g.clause)

    def schedule(
        self,
        s: Schedule,
        e: Effect,
        value: Callable[[Decimal], str],
        what: str,
        below: str = "Nothing is paid below an effect of {}.",
    ) -> None:
        fmt = self.effect_format(e)
        step = s.interpolation == "step"
        rows = [[(f"{fmt(p.effect)} or more" if step else f"at {fmt(p.effect)}"), value(p.value)] for p in s.points]
        self.out(*_table(["effect", what], rows), "")
        notes = []
        if step:
            notes.append("Each tier applies from its effect up to the next tier.")
        else:
            notes.append("Between two points the value is interpolated linearly.")
        notes.append("Above the last point it stays at the last value.")
        lowest = s.minimum_effect if s.minimum_effect is not None else s.points[0].effect
        notes.append(below.format(fmt(lowest)))
        if s.maximum is not None:
            notes.append(f"The value is at most {value(s.maximum)}.")
        self.out(" ".join(notes))

    def pays_value(self, pays: str, e: Effect) -> tuple[Callable[[Decimal], str], str]:
        if pays == "per_participant":
            return (lambda v: self.money(v) + " per participant"), "payment per participant of the cohort"
        if pays == "per_unit":
            metric = self.metric_or_none(e.metric)
            unit = metric.unit if metric is not None else "unit"
            return (lambda v: self.money(v) + f" per {unit}"), "payment per unit of effect"
        return self.money, "payment"

    # -- triggers --------------------------------------------------------------------
    def triggers(self) -> None:
        self.section("What is paid for")
        for t in self.c.triggers:
            label = f"{t.name} (`{t.id}`, " if t.name else f"`{t.id}` ("
            self.subsection(f"{label}{TRIGGER_WORDS[t.kind]}){DASH}{t.clause}")
            if isinstance(t, RateCardTrigger):
                self.rate_card(t)
            elif isinstance(t, ThresholdTrigger):
                self.threshold(t)
            elif isinstance(t, CohortTrigger):
                self.cohort_trigger(t)
            elif isinstance(t, ShareOfSavingsTrigger):
                self.share_of_savings(t)
            elif isinstance(t, BandedReturnTrigger):
                self.banded_return(t)
            else:  # pragma: no cover - every kind is handled above
                raise TypeError(f"cannot describe trigger kind {t.kind!r}")
            if t.cap is not None:
                self.gap()
                self.out(f"This trigger pays at most {self.money(t.cap)} over the contract.")

    def rate_card(self, t: RateCardTrigger) -> None:
        for o in t.outcomes:
            self.out(self.outcome_line(o))
        limits = []
        if t.cap_per_participant is not None:
            limits.append(f"{self.money(t.cap_per_participant)} per participant")
        if t.cap_per_period is not None:
            limits.append(f"{self.money(t.cap_per_period)} per period")
        if limits:
            self.gap()
            self.out("In all, this rate card pays at most " + _and(limits) + ".")

    def outcome_line(self, o: RateCardOutcome) -> str:
        metric = self.metric_or_none(o.metric)
        name = self.metric_name(o.metric)
        who = "For each participant with" if metric is not None and metric.type == "binary" else "For each participant achieving"
        limits = [f"at most {_times(o.max_claims)} per participant"]
        if o.requires:
            limits.append("only after " + _and([self.metric_name(r) for r in o.requires]) + " has been paid")
        if o.cap_units is not None and o.cap_amount is not None:
            limits.append(f"at most {_plural(o.cap_units, 'outcome')} / {self.money(o.cap_amount)}")
        elif o.cap_units is not None:
            limits.append(f"at most {_plural(o.cap_units, 'outcome')} ({self.money(o.cap_units * o.price)})")
        elif o.cap_amount is not None:
            limits.append(f"at most {self.money(o.cap_amount)}")
        return f"- {who} {name}: {self.money(o.price)} ({'; '.join(limits)})" + _clause(o.clause)

    def threshold(self, t: ThresholdTrigger) -> None:
        scope = "for each cohort separately" if t.scope == "per_cohort" else "on all cohorts pooled"
        self.out(f"Pays by the effect, {self.effect_words(t.effect)}, decided {scope}.")
        gate = self.gate_words(t.effect.gate)
        if gate:
            self.out(gate)
        self.out("")
        value, what = self.pays_value(t.pays, t.effect)
        self.schedule(t.schedule, t.effect, value, what)

    def cohort_trigger(self, t: CohortTrigger) -> None:
        when = f"determination `{t.fallback_determination}`" if t.fallback_determination else "the final determination"
        self.out(
            f"Each cohort is judged on its own effect, {self.effect_words(t.effect)}: a cohort that "
            "reaches the per-cohort schedule triggers its own payment. If it does not, a final "
            f"payment is decided at {when} on all cohorts pooled, at the lower thresholds of the "
            "pooled fallback."
        )
        gate = self.gate_words(t.effect.gate)
        if gate:
            self.out(gate)
        self.out("", "Per cohort:", "")
        value, what = self.pays_value(t.per_cohort.pays, t.effect)
        self.schedule(t.per_cohort.schedule, t.effect, value, what)
        self.out("", "Pooled fallback:", "")
        value, what = self.pays_value(t.pooled_fallback.pays, t.effect)
        self.schedule(t.pooled_fallback.schedule, t.effect, value, what)

    def share_of_savings(self, t: ShareOfSavingsTrigger) -> None:
        metric = self.metric_or_none(t.effect.metric)
        unit = metric.unit if metric is not None else "unit"
        self.out(
            f"Pays {_pct(t.share)} of the public savings: units avoided per participant "
            f"({self.effect_words(t.effect)}) × {self.money(t.unit_cost)} per {unit}."
        )
        gate = self.gate_words(t.effect.gate)
        if gate:
            self.out(gate)
        for step in t.share_steps:
            self.out(
                f"- Once the funders have received an annual return (IRR) of {_pct(step.after_return)}, "
                f"the share becomes {_pct(step.share)}."
            )

    def banded_return(self, t: BandedReturnTrigger) -> None:
        tranches = _and([self.tranche_words(x) for x in t.tranches])
        self.out(
            f"Sets the investors' annual return on {tranches} by the band that the effect, "
            f"{self.effect_words(t.effect)}, falls in."
        )
        gate = self.gate_words(t.effect.gate)
        if gate:
            self.out(gate)
        self.out("")
        self.schedule(
            t.bands,
            t.effect,
            lambda v: _pct(v) + " a year",
            "annual return",
            below="Below an effect of {} the bands give no return.",
        )
        if t.minimum_coupon is not None:
            mc = t.minimum_coupon
            self.out(f"Whatever the outcomes, the return is at least {_pct(mc.rate)} a year until {mc.until}.")
        fmt = self.effect_format(t.effect)
        if t.capital_at_risk_below is not None:
            self.out(
                f"Below an effect of {fmt(t.capital_at_risk_below)} the investors' capital is at risk: "
                + ("only the protected fraction below is repaid." if t.capital_protection else "it is not repaid.")
                + " At or above it, the capital is repaid and the bands set the return on top."
            )
        else:
            self.out("The capital is repaid whatever the effect; the bands set the return on top.")
        for cp in t.capital_protection:
            self.out(f"If the investment is redeemed by {cp.redeemed_by}, {_pct(cp.fraction)} of the capital is returned.")

    # -- caps and exposure -------------------------------------------------------------
    def caps(self) -> None:
        c = self.c
        self.section("How much at most")
        caps = c.caps
        if caps is not None and (caps.total, caps.per_period, caps.per_participant) != (None, None, None):
            parts = []
            if caps.total is not None:
                parts.append(f"{self.money(caps.total)} in all")
            if caps.per_period is not None:
                parts.append(f"{self.money(caps.per_period)} per period")
            if caps.per_participant is not None:
                parts.append(f"{self.money(caps.per_participant)} per participant")
            self.out(f"- The contract pays at most {_and(parts)}" + _clause(caps.clause))
        for t in c.triggers:
            for line in self.trigger_cap_lines(t):
                self.out(f"- `{t.id}`: {line}")
        for p in c.payers:
            if p.cap is not None:
                self.out(f"- {self.party_name(p.party)} pays at most {self.money(p.cap)}" + _clause(p.clause))
        if self.lines[-1] == "":
            self.out("No caps are set.")
        self.gap()
        self.exposure()

    def trigger_cap_lines(self, t: Trigger) -> list[str]:
        out = []
        if t.cap is not None:
            out.append(f"at most {self.money(t.cap)} (trigger cap)")
        if isinstance(t, RateCardTrigger):
            for o in t.outcomes:
                if o.cap_units is not None:
                    out.append(f"{self.metric_name(o.metric)} at most {_plural(o.cap_units, 'outcome')}")
                if o.cap_amount is not None:
                    out.append(f"{self.metric_name(o.metric)} at most {self.money(o.cap_amount)}")
            if t.cap_per_participant is not None:
                out.append(f"at most {self.money(t.cap_per_participant)} per participant")
            if t.cap_per_period is not None:
                out.append(f"at most {self.money(t.cap_per_period)} per period")
        for label, s in _schedules(t):
            if s.maximum is not None and not isinstance(t, BandedReturnTrigger):
                out.append(f"{label}schedule value at most {self.money(s.maximum)}")
        return out

    def trigger_bound(self, t: Trigger) -> Decimal | None:
        """The most a trigger can pay, where the terms alone fix it (else None)."""
        bounds: list[Decimal] = []
        if t.cap is not None:
            bounds.append(t.cap)
        n_cohorts = len(self.c.timeline.cohorts)
        if isinstance(t, RateCardTrigger):
            per_outcome = [_outcome_bound(o) for o in t.outcomes]
            if all(b is not None for b in per_outcome):
                bounds.append(sum((b for b in per_outcome if b is not None), Decimal(0)))
            if t.cap_per_period is not None:
                bounds.append(t.cap_per_period * self.c.timeline.periods.count)
        elif isinstance(t, ThresholdTrigger) and t.pays == "amount":
            bounds.append(_schedule_max(t.schedule) * (n_cohorts if t.scope == "per_cohort" else 1))
        elif isinstance(t, CohortTrigger) and t.per_cohort.pays == "amount" and t.pooled_fallback.pays == "amount":
            bounds.append(
                _schedule_max(t.per_cohort.schedule) * n_cohorts + _schedule_max(t.pooled_fallback.schedule)
            )
        return min(bounds) if bounds else None

    def exposure(self) -> Decimal | None:
        c = self.c
        bounds = {t.id: self.trigger_bound(t) for t in c.triggers}
        unbounded = [t for t in c.triggers if bounds[t.id] is None]
        # Each candidate is an upper bound on what the primary payers pay; the least wins.
        candidates: list[tuple[Decimal, str]] = []
        if not unbounded:
            parts = [f"`{k}` {self.money(v)}" for k, v in bounds.items() if v is not None]
            summed = sum((b for b in bounds.values() if b is not None), Decimal(0))
            candidates.append((summed, "the sum of the triggers' limits (" + ", ".join(parts) + ")"))
        if c.caps is not None and c.caps.total is not None:
            candidates.append((c.caps.total, "the contract's total cap"))
        primary = [p for p in c.payers if p.mode != "top_up"]
        if all(p.cap is not None for p in primary):
            candidates.append(
                (sum((p.cap for p in primary if p.cap is not None), Decimal(0)), "the sum of the payers' caps")
            )
        exposure, how = min(candidates, key=lambda x: x[0]) if candidates else (None, "")
        if exposure is None:
            names = _and([f"`{t.id}` ({TRIGGER_WORDS[t.kind]})" for t in unbounded])
            self.out(
                f"**Maximum exposure:** cannot be computed from the terms: {names} "
                f"{'has' if len(unbounded) == 1 else 'have'} no cap. A total cap (caps.total), a "
                "cap on each trigger or a cap on each payer would bound it."
            )
            return None
        self.out(f"**Maximum exposure:** {self.money(exposure)}, {how}.")
        shares: list[str] = []
        top_ups: list[str] = []
        for p in c.payers:
            rate = p.top_up if p.mode == "top_up" else p.share
            if rate is None:
                continue  # by residence: the split depends on where participants live
            due = round_money(exposure * rate, c.currency)
            if p.cap is not None and p.cap < due:
                due = p.cap
            (top_ups if p.mode == "top_up" else shares).append(f"{self.party_name(p.party)} {self.money(due)}")
        if shares:
            self.out("Of which at most: " + ", ".join(shares) + ".")
        if top_ups:
            self.out("On top of this, the top-up adds at most: " + ", ".join(top_ups) + ".")
        return exposure

    # -- timeline --------------------------------------------------------------------
    def timeline(self) -> None:
        c, tl = self.c, self.c.timeline
        self.section("When")
        self.out(f"- **Term:** {c.term.start} to {c.term.end}; outcomes outside the term are not paid" + _clause(c.term.clause))
        periods = c.periods()
        rp = tl.periods
        self.out(
            f"- **Measurement periods:** {_plural(rp.count, 'period')} of {_plural(rp.months, 'month')} "
            f"from {rp.start}: {periods[0].id} ({periods[0].start} to {periods[0].end})"
            + (f" to {periods[-1].id} ({periods[-1].start} to {periods[-1].end})" if len(periods) > 1 else "")
            + _clause(tl.clause)
        )
        self.out(f"- **Payment:** due {_plural(tl.payment_lag_days, 'day')} after the end of the period determined")
        self.gap()
        by_id = {p.id: p for p in periods}
        if tl.determinations:
            self.out("Determinations (payment date = end of the period covered + the payment lag):", "")
            rows = []
            for d in tl.determinations:
                p = by_id.get(d.period)
                lag = d.payment_lag_days if d.payment_lag_days is not None else tl.payment_lag_days
                end = str(p.end) if p else "?"
                cutoff = str(d.data_cutoff) if d.data_cutoff is not None else f"{end} (period end)"
                pay = str(p.end + timedelta(days=lag)) if p else "?"
                rows.append([f"`{d.id}`", d.kind, f"{d.period} (ends {end})", cutoff, f"{pay} ({lag} days)", d.clause or ""])
            self.out(*_table(["determination", "kind", "covers up to", "data cut-off", "payment date", "clause"], rows))
        else:
            self.out(
                "No interim or final determinations are listed; each period's payment is due "
                f"{_plural(tl.payment_lag_days, 'day')} after the period ends."
            )
        self.gap()
        self.out("Cohorts:", "")
        rows = [
            [f"`{co.id}`", co.name or "", f"{co.enrolment_start} to {co.enrolment_end}", str(co.target_size) if co.target_size else ""]
            for co in tl.cohorts
        ]
        self.out(*_table(["cohort", "name", "enrolment", "target size"], rows))

    # -- capital ---------------------------------------------------------------------
    def capital(self) -> None:
        cap = self.c.capital
        if cap is None:
            return
        self.section("Capital stack and waterfall")
        self.out("The service is pre-financed by:", "")
        for t in cap.tranches:
            self.out(self.tranche_line(t))
        total = sum((t.commitment for t in cap.tranches), Decimal(0))
        self.gap()
        self.out(f"Committed in all: {self.money(total)}." + _clause(cap.clause))
        if cap.service_budget is not None:
            self.out(f"The provider's planned delivery cost is {self.money(cap.service_budget)}.")
        if cap.recycling is not None:
            until = f" until {cap.recycling.until}" if cap.recycling.until else ""
            self.out(
                f"{_pct(cap.recycling.share)} of outcome payments{until} are recycled into service costs "
                "instead of repaying the funders."
            )
        self.gap()
        self.out("Outcome payments are paid out in this order (the waterfall):", "")
        for i, step in enumerate(cap.waterfall, 1):
            self.out(f"{i}. {self.waterfall_words(step)}" + _clause(step.clause))

    def tranche_line(self, t: Tranche) -> str:
        c = self.c
        text = f"- **{TRANCHE_WORDS[t.kind]}** `{t.id}` from {self.party_name(t.funder)}: {self.money(t.commitment)}"
        if t.coupon is not None:
            text += f"; coupon {_pct(t.coupon.rate)} a year ({t.coupon.compounding}, {t.coupon.day_count})"
        if t.drawdowns:
            text += "; drawn " + _and([f"on {d.date} ({self.money(d.amount)})" for d in t.drawdowns])
        elif t.drawdown_schedule is not None:
            ds = t.drawdown_schedule
            parts = allocate(round_money(t.commitment, c.currency), [Decimal(1)] * ds.parts, c.currency)
            amounts = (
                f"{self.money(parts[0])} each" if len(set(parts)) == 1 else ", ".join(self.money(p) for p in parts)
            )
            last = add_months(ds.start, ds.every_months * (ds.parts - 1))
            text += (
                f"; drawn in {_plural(ds.parts, 'part')} every {_plural(ds.every_months, 'month')} "
                f"from {ds.start} to {last} ({amounts})"
            )
        else:
            text += f"; drawn in full at the start of the term ({c.term.start})"
        if t.maturity is not None:
            text += f"; matures on {t.maturity}"
        if t.max_return is not None:
            text += f"; return capped at {_pct(t.max_return)} a year (IRR)"
        return text + _clause(t.clause)

    def waterfall_words(self, s: WaterfallStep) -> str:
        tranche = self.tranche_words(s.tranche) if s.tranche else ""
        amount = self.money(s.amount) if s.amount is not None else ""
        split = ", ".join(f"{self.party_name(k)} {_pct(v)}" for k, v in s.split.items()) if s.split else ""
        if s.pay == "costs":
            text = "Costs" + (f" of {amount}" if amount else "")
        elif s.pay == "interest":
            text = f"Interest due on {tranche}"
        elif s.pay == "principal":
            text = f"Principal of {tranche}"
        elif s.pay == "fee":
            text = "Deferred fee" + (f" of {tranche}" if tranche else "") + (f", {amount}" if amount else "")
        elif s.pay == "bonus":
            text = "Success bonus" + (f" of {amount}" if amount else "")
        else:
            text = "Whatever remains"
        if s.pay in ("costs", "bonus", "residual") and tranche:
            text += f" ({tranche})"
        if s.pay in ("interest", "principal") and amount:
            text += f", up to {amount}"
        if split:
            text += f", shared: {split}"
        return text

    def guarantees(self) -> None:
        cap = self.c.capital
        if cap is None or not cap.guarantees:
            return
        self.section("Guarantees")
        for g in cap.guarantees:
            self.out(self.guarantee_line(g, cap))

    def guarantee_line(self, g: Guarantee, cap: Capital) -> str:
        cover = []
        if g.share is not None:
            cover.append(f"{_pct(g.share)} of the loss")
        if g.amount is not None:
            cover.append(f"up to {self.money(g.amount)}")
        what = " and ".join(cover) + (" (whichever is lower)" if len(cover) == 2 else "")
        if g.share is None:
            what = "the loss " + what
        basis = "principal only" if g.basis == "principal" else "principal and interest"
        when = f"settled on {g.called_on}" if g.called_on else f"settled at the end of the term ({self.c.term.end})"
        return (
            f"- {self.party_name(g.guarantor)} covers {what} on {self.tranche_words(g.covers)} "
            f"(`{g.id}`; {basis}; {when})" + _clause(g.clause)
        )

    # -- value for money, data quality, amendments -----------------------------------
    def value_for_money(self) -> None:
        v = self.c.value_for_money
        if v is None:
            return
        self.section("Value for money")
        for s in v.savings:
            metric = self.metric_or_none(s.metric)
            name = self.metric_name(s.metric)
            if metric is None or metric.type in ("event", "binary"):
                text = f"- Each {name} saves {self.money(s.amount)} of public money"
            else:
                text = f"- Each {metric.unit} of {name} avoided saves {self.money(s.amount)} of public money"
            text += " (cashable" if s.cashable else " (not cashable"
            text += f"; source: {s.source})" if s.source else ")"
            self.out(text)
        if v.fee_for_service_cost is not None:
            self.out(f"- Paying the provider directly for the same service would cost {self.money(v.fee_for_service_cost)}")
        self.out(f"- Future amounts are discounted at {_pct(v.discount_rate)} a year" + _clause(v.clause))

    def data_quality(self) -> None:
        dq = self.c.data_quality
        self.section("Data quality")
        self.out(
            f"A data submission with more than {_pct(dq.tolerance)} of its rows quarantined is put on "
            "payment hold." + _clause(dq.clause)
        )
        for level, words in (("critical", "reject the row"), ("warning", "accept the row but flag it")):
            codes = sorted(k for k, sev in dq.severity.items() if sev == level)
            if codes:
                self.out(f"These checks {words}: " + ", ".join(codes) + ".")

    def amendments(self) -> None:
        c = self.c
        if not c.amendments:
            return
        self.section("Amendments")
        applied = {a.id for a in c.applied_amendments}
        for a in c.amendments:
            self.amendment(a, applied)

    def amendment(self, a: Amendment, applied: set[str]) -> None:
        on = self.c.in_force_on
        status = ""
        if on is not None:
            status = f" *(in force on {on})*" if a.id in applied else f" *(not yet in force on {on})*"
        self.out(f"- **{a.effective}**, amendment `{a.id}`{DASH}{a.clause}: {a.summary.strip()}{status}")
        for ch in a.changes:
            self.out(f"  - {self.change_words(ch)}")

    def change_words(self, ch: Change) -> str:
        if ch.remove is not None:
            return f"`{ch.remove}` is removed"
        path = ch.set or ""
        return f"`{path}` becomes {self.change_value(path, ch.to)}"

    def change_value(self, path: str, value: Any) -> str:
        key = path.rsplit(".", 1)[-1]
        if key in _MONEY_KEYS and not isinstance(value, bool):
            try:
                return self.money(Decimal(str(value)))
            except (InvalidOperation, ValueError):
                pass
        if isinstance(value, (dict, list, tuple)):
            return "`" + json.dumps(value, default=str, ensure_ascii=False) + "`"
        if isinstance(value, Decimal):
            return _num(value)
        return str(value)


    def simulation(self) -> None:
        sim = self.c.simulation
        if sim is None:
            return
        self.section("Risk simulation assumptions")
        self.out("Not terms of the deal: what the risk simulation (`sib simulate`) assumes about the world, "
                 f"by default over {sim.paths:,} simulated worlds with seed {sim.seed}.", "")
        for a in sim.effects:
            m = self.metric_or_none(a.metric)
            rate = m is not None and m.type in ("binary", "event")
            base = _pct(a.base) if rate else _num(a.base)
            words = [f"without the programme {base}", f"true effect {_distribution(a.effect, rate)}"]
            if a.measured_after_months is not None:
                words.append(f"recorded {a.measured_after_months} months after enrolment")
            if a.target is not None:
                words.append(f"target {_pct(a.target) if rate else _num(a.target)}")
            self.out(f"- {self.metric_name(a.metric)}: " + "; ".join(words))
        self.gap()
        facts = [f"Enrolment: {_distribution(sim.enrolment.fraction, True)} of each cohort's target size "
                 f"(cohorts without one: {sim.enrolment.default_size})"]
        if sim.enrolment.comparison_ratio != 1:
            facts.append(f"comparison groups of {_num(sim.enrolment.comparison_ratio)} per participant")
        if sim.attrition is not None:
            facts.append(f"attrition {_distribution(sim.attrition, True)}")
        if sim.delay_months is not None:
            facts.append(f"start delay {_distribution(sim.delay_months, False)} months")
        if sim.baseline_drift is not None:
            facts.append(f"drift of the counterfactual {_distribution(sim.baseline_drift, False)} a year")
        if sim.appropriation_risk:
            facts.append(f"a payer fails to budget a payment with probability {_pct(sim.appropriation_risk)}")
        if not sim.sampling_noise:
            facts.append("no sampling noise (the evaluator sees the expected outcomes)")
        self.out("; ".join(facts) + ".")
        if sim.correlation:
            self.gap()
            self.out("Correlation of the effects (Gaussian copula):", "")
            names = [a.metric for a in sim.effects]
            self.out(*_table([""] + names, [[n] + [_num(x) for x in row] for n, row in zip(names, sim.correlation)]))
        if sim.note:
            self.gap()
            self.out(sim.note.strip())


# ---------------------------------------------------------------------------- pure ---


def _distribution(d: Distribution, pct: bool) -> str:
    """A distribution in words; values as percentages when ``pct``."""
    def v(x: Decimal) -> str:
        return _pct(x) if pct else _num(x)

    if isinstance(d, NormalDistribution):
        out = f"normal with mean {v(d.mean)} and sd {v(d.sd)}"
        if d.low is not None or d.high is not None:
            out += f", kept within {v(d.low) if d.low is not None else '-inf'} to {v(d.high) if d.high is not None else 'inf'}"
        return out
    if isinstance(d, BetaDistribution):
        return f"beta({_num(d.a)}, {_num(d.b)}) on {v(d.low)} to {v(d.high)}"
    if isinstance(d, TriangularDistribution):
        return f"triangular from {v(d.low)} to {v(d.high)}, most likely {v(d.mode)}"
    if isinstance(d, LognormalDistribution):
        shift = f", shifted by {v(d.shift)}" if d.shift else ""
        return f"lognormal with mean {v(d.mean)} and sd {v(d.sd)}{shift}"
    if isinstance(d, EmpiricalDistribution):
        if d.weights:
            total = sum(d.weights, Decimal(0))
            return "one of " + ", ".join(f"{v(x)} ({_pct(w / total)})" for x, w in zip(d.values, d.weights))
        return "one of " + ", ".join(v(x) for x in d.values) + " (equally likely)"
    return f"fixed at {v(d.value)}"


def _range(lo: Decimal | int | None, hi: Decimal | int | None, unit: str) -> str:
    u = f" {unit}" if unit else ""
    if lo is not None and hi is not None:
        return f"{_num(lo)} to {_num(hi)}{u}"
    if lo is not None:
        return f"at least {_num(lo)}{u}"
    assert hi is not None
    return f"at most {_num(hi)}{u}"


def _schedules(t: Trigger) -> list[tuple[str, Schedule]]:
    if isinstance(t, ThresholdTrigger):
        return [("", t.schedule)]
    if isinstance(t, CohortTrigger):
        return [("per-cohort ", t.per_cohort.schedule), ("pooled fallback ", t.pooled_fallback.schedule)]
    if isinstance(t, BandedReturnTrigger):
        return [("band ", t.bands)]
    return []


def _schedule_max(s: Schedule) -> Decimal:
    top = max(p.value for p in s.points)
    return min(top, s.maximum) if s.maximum is not None else top


def _outcome_bound(o: RateCardOutcome) -> Decimal | None:
    bounds = []
    if o.cap_units is not None:
        bounds.append(o.price * o.cap_units)
    if o.cap_amount is not None:
        bounds.append(o.cap_amount)
    return min(bounds) if bounds else None
