"""A contract compiled for the vectorised evaluator: what it pays on, when, in what order
(layer 2).

:func:`compile_plan` checks that every mechanism of the contract is one the vectorised
path supports (the list is in :mod:`sib_engine.simulation`) and raises one
:class:`SimulationError` naming all that are not.  It then fixes, once per contract, what
the exact path fixes once per evaluation: the determinations with their cutoffs and
payment dates, the order of the triggers and their scopes, the integer scale of money,
the capital stack's dates.  What depends on a simulated world's timing (its start delay)
is computed per delay by :meth:`Plan.timing`.

Amendments (:func:`amendment_problems` lists what is followed) are compiled as the exact
path reads them: the terms in force on an event's date for a rate card's price, cohorts
and term (:attr:`Plan.segments`); the terms in force at the end of a determination's
period for its scopes' cohorts, payment lag, schedules (:meth:`Plan.sched_at`) and caps
(:meth:`Plan.caps_at`).  The determinations are the contract's
:meth:`~sib_engine.contract.Contract.determination_schedule`, as in the exact path.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import date, timedelta
from decimal import Decimal
from typing import Callable, Literal

import numpy as np

from sib_engine.baselines import DEFAULT_TEST
from sib_engine.contract import (
    BlendedBaseline,
    CohortTrigger,
    ComparisonGroupBaseline,
    Contract,
    Effect,
    ExpectedDurationBaseline,
    FixedBaseline,
    HistoricalBaseline,
    RateCardTrigger,
    Schedule,
    ShareOfSavingsTrigger,
    Simulation,
    ThresholdTrigger,
)
from sib_engine.errors import SibError
from sib_engine.metrics import date_of, day_of
from sib_engine.money import exponent
from sib_engine.periods import add_months
from sib_engine.stats import interval_confidence

NEVER = np.iinfo(np.int64).max // 4
PRE_DAYS = 30
"""A pre-enrolment measure is dated this many days before enrolment."""


class SimulationError(SibError):
    """The simulation cannot run as asked: a mechanism the vectorised path does not
    support, or missing assumptions.  The message names each problem and what to do."""


# ------------------------------------------------------------------------ parts ---


@dataclass(frozen=True)
class MetricPlan:
    id: str
    type: str
    effect: int
    """Index of the metric's assumption in ``simulation.effects``."""
    base: float
    after_months: int
    window_months: int | None
    requires: tuple[int, ...]
    """Prerequisite metrics (indices into ``Plan.metrics``): the metric's own and every
    rate card's; a participant with this outcome has all of them, dated no later."""
    comparison: bool
    """True if a comparison group is measured on it."""
    sd: float = 0.0
    """For a continuous metric (or a count or duration given one): the standard deviation of
    the value between participants (the simulation assumption's ``sd``)."""
    pre: bool = False
    """A difference-in-differences baseline's ``pre_metric``: measured once before
    enrolment (a month before), on the participants and the comparison group, without
    the programme's effect."""

    @property
    def spread(self) -> bool:
        """Whether the world draws each group's spread of values (a continuous metric, or a
        count or duration with an ``sd``) rather than spreading a total evenly."""
        return self.type == "continuous" or (self.type in ("count", "duration") and self.sd > 0 and not self.pre)

    @property
    def unit(self) -> float:
        """What one unit of the world's totals is worth (a hundredth for a continuous metric)."""
        return 0.01 if self.type == "continuous" else 1.0


@dataclass(frozen=True)
class DetPlan:
    id: str
    index: int
    kind: Literal["interim", "final"]
    period: int
    cutoff_day: int
    data_day: int
    payment_day: int
    cohorts: tuple[int, ...] | None = None
    """The cohorts in force in the terms of the determination (at the end of its period):
    an amendment may have removed some (indices into ``Plan.cohorts``; None: all)."""


@dataclass(frozen=True)
class BlendPart:
    """One component of a blended baseline."""

    weight: Decimal
    kind: Literal["fixed", "historical", "comparison", "did"]
    value: Decimal = Decimal(0)
    hist_n: int = 0
    hist_sd: float | None = None


@dataclass(frozen=True)
class EffectPlan:
    """How one trigger's effect is measured (the parts of ``compute_effect`` it uses)."""

    metric: int
    measure: str
    baseline: Literal["none", "fixed", "historical", "comparison", "did", "blended", "expected"]
    value: Decimal
    """The baseline's value (fixed, historical)."""
    hist_n: int
    gate_level: float | None
    alternative: str
    confidence: float
    test: str = "two_proportion_z"
    """The gate's test (``two_proportion_z``, ``welch_t``, ``poisson_rate_ratio``); a gate on
    a level measure (no baseline) runs the exact path's normal approximation whatever it names."""
    rule: str = "significant"
    """The gate's rule: ``significant`` (pays the estimate if the test rejects) or
    ``lower_bound`` (pays on the conservative end of the confidence interval)."""
    hist_sd: float | None = None
    """The historical baseline's ``sd`` (for a Welch test against it)."""
    pre: int = -1
    """For a difference-in-differences baseline (``did``, or one in a blend): the
    pre-enrolment metric (index into ``Plan.metrics``)."""
    components: tuple[BlendPart, ...] = ()
    """For a blended baseline: its components, in order."""
    horizon: int = 0
    """For an expected-duration baseline (``expected``): ``horizon_days``; ``value`` is the
    expected days of the table row every simulated participant falls in."""


@dataclass(frozen=True)
class SchedPlan:
    """One schedule-based trigger (threshold, cohort with pooled fallback, share of savings)."""

    index: int
    """Index among all triggers (the exact path's trigger order)."""
    id: str
    kind: str
    effect: EffectPlan
    schedule: Schedule | None
    pays: str
    per_cohort: bool
    fallback_schedule: Schedule | None = None
    fallback_pays: str = "amount"
    fallback_det: int | None = None
    share: Decimal = Decimal(0)
    unit_cost: Decimal = Decimal(0)
    clause: str = ""
    version: int = 0
    """Which terms of the trigger this is: 0 as signed, ``k`` the ``k``-th distinct terms an
    amendment gave it (see :meth:`Plan.sched_at`)."""

    def scopes(self, n_cohorts: int, det: DetPlan, n_dets: int) -> list[tuple[str, tuple[int, ...]]]:
        """(label, cohort indices) of the scopes determined at ``det``, in the exact
        path's order (of the cohorts in force at ``det``)."""
        in_force = det.cohorts if det.cohorts is not None else tuple(range(n_cohorts))
        if self.kind == "share_of_savings" or (self.kind == "threshold" and not self.per_cohort):
            return [("pooled", in_force)]
        out: list[tuple[str, tuple[int, ...]]] = [(f"c{i}", (i,)) for i in in_force]
        if self.kind == "cohort_with_pooled_fallback" and self.is_fallback(det, n_dets):
            out.append(("pooled fallback", in_force))
        return out

    def is_fallback(self, det: DetPlan, n_dets: int) -> bool:
        if self.fallback_det is None:
            return det.kind == "final"
        return det.index == self.fallback_det


@dataclass(frozen=True)
class OutcomePlan:
    metric: int
    price: Decimal
    price_units: int
    """The price in units of ``10**-scale``."""
    requires: tuple[int, ...]
    cap_units: int | None
    cap_amount: int | None
    seg_price_units: tuple[int, ...] = ()
    """The price in force in each of ``Plan.segments`` (units of ``10**-scale``); empty
    without amendments (``price_units`` throughout)."""

    def price_on(self, seg: int) -> int:
        return self.seg_price_units[seg] if self.seg_price_units else self.price_units


@dataclass(frozen=True)
class SegPlan:
    """A stretch of days with the same terms (from one amendment's effective date to the
    next; the first reaches back indefinitely), as the exact path reads a rate-card event
    in the terms in force on its date."""

    start_day: int
    cohorts: tuple[bool, ...]
    """Whether each cohort (of ``Plan.cohorts``) is in force."""
    term_start_day: int
    term_end_day: int


@dataclass(frozen=True)
class CardPlan:
    index: int
    id: str
    outcomes: tuple[OutcomePlan, ...]
    cap_period: int | None
    cap_total: int | None
    cap_participant: int | None = None
    """``cap_per_participant`` in units of ``10**-scale`` (None: none, or it cannot bind)."""


@dataclass(frozen=True)
class PayerPlan:
    party: str
    mode: Literal["share", "top_up"]
    share: Decimal
    cap: int | None
    """In minor units (cents)."""
    residence: tuple[str, ...] = ()
    """A payer by residence: the municipality codes whose residents it pays for (its
    ``mode`` is then ``share``, with a share of 0: a primary payer)."""


@dataclass(frozen=True)
class Timing:
    """What depends on a world's start delay: every date of the data."""

    delay: int
    enrol_day: np.ndarray
    """(cohorts,) the day every participant of the cohort enrols."""
    measure_day: np.ndarray
    """(metrics, cohorts) the day an outcome of the metric is recorded."""
    window_ok: np.ndarray
    """(metrics, cohorts) the record falls within the metric's attribution window."""


@dataclass(frozen=True)
class Plan:
    contract: Contract
    sim: Simulation
    currency: str
    minor: int
    """Decimals of the currency's minor unit."""
    scale: int
    """Money in the payment rows is in units of ``10**-scale`` (fits every price and cap)."""
    metrics: tuple[MetricPlan, ...]
    cohorts: tuple[str, ...]
    target_sizes: tuple[int, ...]
    period_starts: np.ndarray
    period_ends: np.ndarray
    dets: tuple[DetPlan, ...]
    trigger_ids: tuple[str, ...]
    scheds: tuple[SchedPlan, ...]
    cards: tuple[CardPlan, ...]
    payers: tuple[PayerPlan, ...]
    cap_total: int | None
    """``caps.total`` in minor units (it applies to what the payers pay)."""
    cap_period: int | None
    term_start_day: int
    term_end_day: int
    comparison_metrics: tuple[int, ...]
    _timings: dict[int, Timing] = field(default_factory=dict, repr=False, compare=False)
    cap_participant: int | None = None
    """``caps.per_participant`` in units of ``10**-scale`` (None: none, or it cannot bind)."""
    segments: tuple[SegPlan, ...] = ()
    """The stretches of days with the same terms (one, reaching back indefinitely, without
    amendments)."""
    amended_scheds: dict[tuple[int, int], SchedPlan] = field(default_factory=dict, repr=False, compare=False)
    """(trigger index, determination index) -> the trigger's terms in force at that
    determination, where an amendment changed them (else the plan's ``scheds``)."""

    cap_views: tuple["Plan", ...] = field(default=(), repr=False, compare=False)
    """Where an amendment changed a cap: the plan with each distinct set of caps in force at a
    determination (its ``cards``' caps, ``cap_total``, ``cap_period``, ``cap_participant`` and,
    through ``contract``, the amended terms, the triggers' ``cap``); empty: the plan's own
    caps throughout.  A view is read for its caps only (its ``contract`` is the amended
    terms, not the contract whose cohorts the world enrols)."""
    det_cap_view: tuple[int, ...] = ()
    """Determination index -> index into ``cap_views``."""
    munis: tuple[str, ...] = ()
    """Payers by residence: the municipality codes they pay for (sorted; empty: fixed shares)."""

    def caps_at(self, det: int) -> "Plan":
        """The plan with the caps in force at determination ``det``."""
        return self.cap_views[self.det_cap_view[det]] if self.cap_views else self

    def sched_at(self, sp: SchedPlan, det: DetPlan) -> SchedPlan:
        """``sp`` with the terms in force at ``det`` (at the end of its period)."""
        return self.amended_scheds.get((sp.index, det.index), sp)

    def segment_of(self, day: int) -> int:
        """The index of the segment of ``self.segments`` that ``day`` falls in."""
        k = 0
        for i, sg in enumerate(self.segments):
            if sg.start_day <= day:
                k = i
        return k

    @property
    def primary(self) -> tuple[PayerPlan, ...]:
        return tuple(p for p in self.payers if p.mode == "share")

    @property
    def payer_ids(self) -> tuple[str, ...]:
        return tuple(p.party for p in self.payers)

    def metric_index(self, metric_id: str) -> int:
        for i, m in enumerate(self.metrics):
            if m.id == metric_id:
                return i
        raise KeyError(metric_id)

    def timing(self, delay: int) -> Timing:
        """Enrolment and measurement days for a world whose programme starts ``delay``
        months late (cached)."""
        got = self._timings.get(delay)
        if got is not None:
            return got
        c = self.contract
        enrol_dates = [add_months(co.enrolment_start, delay) for co in c.timeline.cohorts]
        enrol = np.array([day_of(d) for d in enrol_dates], dtype=np.int64)
        nm, nc = len(self.metrics), len(enrol_dates)
        meas = np.zeros((nm, nc), dtype=np.int64)
        ok = np.ones((nm, nc), dtype=bool)
        done: dict[int, np.ndarray] = {}

        def day_of_metric(mi: int) -> np.ndarray:
            got_m = done.get(mi)
            if got_m is None and self.metrics[mi].pre:
                got_m = done[mi] = enrol - PRE_DAYS
            if got_m is None:
                m = self.metrics[mi]
                own = np.array([day_of(add_months(d, m.after_months)) for d in enrol_dates], dtype=np.int64)
                for r in m.requires:
                    own = np.maximum(own, day_of_metric(r))
                done[mi] = own
                got_m = own
            return got_m

        for mi, m in enumerate(self.metrics):
            meas[mi] = day_of_metric(mi)
            if m.window_months is not None and not m.pre:
                last = np.array([day_of(add_months(d, m.window_months)) for d in enrol_dates], dtype=np.int64)
                ok[mi] = meas[mi] <= last
        t = Timing(delay, enrol, meas, ok)
        self._timings[delay] = t
        return t


# ------------------------------------------------------------------- compiling ---


def _scaled(d: Decimal, scale: int) -> int:
    v = d.scaleb(scale)
    if v != v.to_integral_value():  # pragma: no cover - the scale is chosen to fit
        raise SimulationError(f"{d} does not fit a scale of {scale} decimals")
    return int(v)


def _decimals(d: Decimal) -> int:
    return max(0, -int(d.as_tuple().exponent)) if d.is_finite() else 0


def compile_plan(contract: Contract, simulation: Simulation | None = None) -> Plan:
    """Compile ``contract`` with its ``simulation`` assumptions (or ``simulation``, e.g.
    from a scenario file) for the vectorised evaluator.

    Raises :class:`SimulationError` listing every mechanism the vectorised path does not
    support, and when no assumptions are given.
    """
    return _compile(contract, simulation if simulation is not None else contract.simulation)


def _compile(contract: Contract, sim: Simulation | None) -> Plan:
    if sim is None:
        raise SimulationError(
            f"contract '{contract.id}' has no simulation section; add one (see docs) or pass the "
            "assumptions of a scenario file (sib_engine.loader.load_scenario)"
        )
    return _build(contract, sim)


def unsupported(contract: Contract, sim: Simulation, *, amendments: bool = True) -> list[str]:
    """Every mechanism of ``contract`` (with ``sim``) the vectorised path does not support
    (``amendments=False``: leave its amendments out, for terms already amended)."""
    c = contract
    out: list[str] = []
    if amendments:
        out += amendment_problems(c)
    if any(p.mode == "residence" for p in c.payers):
        out += _residence_problems(c)
    metrics = {m.id: m for m in c.metrics}
    for m in c.metrics:
        a_sd = next((e.sd for e in sim.effects if e.metric == m.id), None)
        if m.type in ("count", "duration") and a_sd is not None and a_sd > 0:
            required_by = [x.id for x in c.metrics if m.id in x.requires]
            dids = [b.id for b in c.baselines if isinstance(b, ComparisonGroupBaseline)
                    and b.estimator != "difference" and m.id == b.pre_metric]
            if m.requires or required_by or dids:
                out.append(f"metric '{m.id}': an 'sd' for a {m.type} metric with prerequisites, as one, or as a "
                           "pre_metric (leave 'sd' out: the total is then spread evenly)")
        if m.type != "continuous":
            continue
        required_by = [x.id for x in c.metrics if m.id in x.requires] + [
            t.id for t in c.triggers if isinstance(t, RateCardTrigger) for o in t.outcomes if m.id in o.requires]
        if m.requires or required_by:
            out.append(f"metric '{m.id}': a continuous metric with prerequisites or as one")
        a = next((e for e in sim.effects if e.metric == m.id), None)
        if a is not None and a.sd is None and m.type == "continuous":
            out.append(f"metric '{m.id}': the simulation's assumption for this continuous metric needs 'sd' "
                       "(the standard deviation of the measured value between participants)")
    rate_card_prices: list[Decimal] = []
    for t in c.triggers:
        if isinstance(t, RateCardTrigger):
            rate_card_prices += [o.price for o in t.outcomes]
            for o in t.outcomes:
                if metrics.get(o.metric) is not None and metrics[o.metric].type not in ("event", "binary"):
                    out.append(f"trigger '{t.id}': a rate card on the {metrics[o.metric].type} metric '{o.metric}'")
            continue
        if t.kind == "banded_return":
            out.append(f"trigger '{t.id}': banded_return triggers")
            continue
        if isinstance(t, ShareOfSavingsTrigger) and t.share_steps and amendments and any(
                _trigger_or_none(contract.at(a.effective), t.id) != t for a in contract.amendments):
            # the waterfall reads the steps in force on each payment date
            out.append(f"trigger '{t.id}': share_steps with an amendment of the trigger")
        eff: Effect = t.effect
        metric = metrics.get(eff.metric)
        if metric is not None and metric.type == "continuous" and isinstance(t, CohortTrigger):
            out.append(f"trigger '{t.id}': a pooled fallback on the continuous metric '{metric.id}'")
        if eff.baseline is not None and eff.measure != "level":
            b = next((x for x in c.baselines if x.id == eff.baseline), None)
            if isinstance(b, BlendedBaseline):
                inner = [next((x for x in c.baselines if x.id == comp.baseline), None) for comp in b.components]
                pres = set()
                for x in inner:
                    if x is None or isinstance(x, (BlendedBaseline, ExpectedDurationBaseline)):
                        out.append(f"trigger '{t.id}': the {x.kind if x else '?'} baseline in the blend "
                                   f"'{b.id}'")
                    elif isinstance(x, ComparisonGroupBaseline) and x.estimator != "difference":
                        out += _did_problems(c, t.id, x)
                        pres.add(x.pre_metric)
                if len(pres) > 1:
                    out.append(f"trigger '{t.id}': difference-in-differences components of '{b.id}' on "
                               "different pre_metrics")
            elif isinstance(b, ExpectedDurationBaseline):
                age, prior = world_person(c)
                if expected_row(b, age, prior) is None:
                    out.append(f"trigger '{t.id}': the expected-duration table of '{b.id}' has no row for the "
                               f"simulated participants (age {age:g}, prior months {prior:g}, from the eligibility)")
            elif b is None:
                out.append(f"trigger '{t.id}': the unknown baseline '{eff.baseline}'")
            elif isinstance(b, ComparisonGroupBaseline) and b.estimator != "difference":
                out += _did_problems(c, t.id, b)
            elif isinstance(b, HistoricalBaseline) and metric is not None and b.sd is None and (
                    eff.gate.test if eff.gate is not None else DEFAULT_TEST[metric.type]) == "welch_t":
                out.append(f"trigger '{t.id}': a Welch test against the historical baseline '{b.id}' of a "
                           f"{metric.type} metric without 'sd' (the exact path cannot test it either)")
    if c.caps is not None and c.caps.per_participant is not None and rate_card_prices \
            and c.caps.per_participant < sum(rate_card_prices, Decimal(0)):
        crossing = [t.id for t in c.triggers if isinstance(t, RateCardTrigger)
                    and (t.cap_per_period is not None or t.cap is not None)]
        if crossing:
            out.append("caps.per_participant where it can bind, with a rate card's cap_per_period or cap ("
                       + ", ".join(f"'{x}'" for x in crossing) + ") applied before it (they cut a "
                       "participant's claims in ways the simulated counts do not determine)")
    groups = {b.group for b in c.baselines if isinstance(b, ComparisonGroupBaseline)}
    if len(groups) > 1:
        out.append("comparison groups with different names (" + ", ".join(sorted(groups)) + ")")
    cap = c.capital
    if cap is not None:
        for tr in cap.tranches:
            if tr.max_return is not None and tr.max_return <= -1:
                out.append(f"tranche '{tr.id}': a max_return of -100% or less")
    return out


def _residence_problems(c: Contract) -> list[str]:
    """What of a contract with payers by residence the vectorised path does not support.

    Rate cards are split by the residents among those reaching each outcome; a cap that
    cuts a rate card's claims would make the split depend on the municipalities of the
    participants at the cap's cut point, which the world's counts do not keep."""
    out: list[str] = []
    cards = [t for t in c.triggers if isinstance(t, RateCardTrigger)]
    for t in cards:
        what = [f"outcome '{o.metric}' {name}" for o in t.outcomes
                for name, v in (("cap_units", o.cap_units), ("cap_amount", o.cap_amount)) if v is not None]
        price = sum((o.price for o in t.outcomes), Decimal(0))
        if t.cap_per_participant is not None and t.cap_per_participant < price:
            what.append("cap_per_participant (below the sum of its prices, where it can bind)")
        what += [name for name, v in (("cap_per_period", t.cap_per_period), ("cap", t.cap)) if v is not None]
        if what:
            out.append(f"payers by residence with caps on the rate card '{t.id}' ({', '.join(what)}): a cap that "
                       "cuts claims splits by the municipalities of the participants at its cut point, which the "
                       "simulated counts do not keep")
    if cards and c.caps is not None:
        price = sum((o.price for t in cards for o in t.outcomes), Decimal(0))
        if c.caps.per_participant is not None and c.caps.per_participant < price:
            out.append("payers by residence with caps.per_participant where it can bind on rate cards")
        if c.caps.per_period is not None:
            out.append("payers by residence with caps.per_period and a rate card (it cuts the rate card's claims)")
    if c.amendments:
        out.append("payers by residence with amendments")
    if any(p.mode == "share" for p in c.payers):
        out.append("payers by residence mixed with payers by fixed share")
    return out


_SCHED_PARTS = {
    "threshold": ("schedule", "pays"),
    "cohort_with_pooled_fallback": ("per_cohort", "pooled_fallback"),
    "share_of_savings": ("share", "unit_cost"),
}
"""What of a schedule-based trigger an amendment may change (read at each determination)."""

_WORDING = ("clause", "summary", "name", "title", "note", "description")
"""Parts that change no amount (an amendment may reword them)."""


def _trigger_or_none(c: Contract, tid: str) -> object:
    try:
        return c.trigger(tid)
    except KeyError:
        return None


def share_step_triggers(plan: "Plan") -> tuple[int, ...]:
    """Indices (into ``plan.trigger_ids``) of the ``share_of_savings`` triggers whose lines the
    waterfall rescales: with ``share_steps`` and a share other than 0 (as
    ``waterfall._Engine._share_step``)."""
    return tuple(i for i, t in enumerate(plan.contract.triggers)
                 if isinstance(t, ShareOfSavingsTrigger) and t.share_steps and t.share != 0)


def amendment_problems(c: Contract) -> list[str]:
    """The changes of ``c``'s amendments the vectorised path does not follow.

    It follows, as the exact path reads them: a rate card's outcome ``price`` (in force on
    the event's date); caps (the contract's, a trigger's, a rate card's and its outcomes'),
    in force at the end of each determination's period; a schedule-based trigger's
    schedule and ``pays`` (a threshold), its
    ``per_cohort`` and ``pooled_fallback`` (a cohort trigger), its ``share`` and
    ``unit_cost`` (a share of savings), in force at the end of each determination's period;
    a cohort removed (from the amendment's date, a rate card pays no more of its events; a
    determination whose period ends after it leaves it out of every scope); a cohort's
    ``target_size`` (the simulation enrols from the size in force when the cohort opens);
    ``term.start`` and ``term.end`` (a rate card's events outside the term in force on their
    date are not paid); ``timeline.payment_lag_days`` (in force at the end of the period);
    changes to ``timeline.determinations`` (the schedule of
    :meth:`~sib_engine.contract.Contract.determination_schedule`, on periods as signed) and
    ``timeline.periods`` (the periods stay as signed; a determination on a period an
    amendment adds is refused when the plan is compiled); a cohort's ``enrolment_end``,
    which the exact path reads from the terms as signed; and wording.
    Anything else (payers, metrics, baselines, effects, claim limits, the capital stack,
    triggers or outcomes added or removed, ...) is named here and refused.
    """
    out: list[str] = []
    kinds = {t.id: t.kind for t in c.triggers}
    cohort_ids = {co.id for co in c.timeline.cohorts}
    for a in c.amendments:
        for ch in a.changes:
            path = ch.set if ch.set is not None else (ch.remove or "")
            parts = path.split(".")
            ok = False
            if parts[-1] in _WORDING and len(parts) > 1:
                ok = True
            elif ch.remove is not None:
                ok = len(parts) == 3 and parts[:2] == ["timeline", "cohorts"] and parts[2] in cohort_ids
            elif parts[:2] == ["timeline", "cohorts"]:
                ok = len(parts) == 4 and parts[2] in cohort_ids and parts[3] in ("target_size", "enrolment_end")
            elif parts[:2] in (["timeline", "periods"], ["timeline", "determinations"]):
                ok = True
            elif parts in (["timeline", "payment_lag_days"], ["term", "start"], ["term", "end"]):
                ok = True
            elif parts[0] == "caps":
                ok = len(parts) == 2 and parts[1] in ("total", "per_period", "per_participant")
            elif parts[0] == "triggers" and len(parts) >= 3 and parts[1] in kinds:
                kind = kinds[parts[1]]
                if kind == "rate_card":
                    ok = (len(parts) == 5 and parts[2] == "outcomes"
                          and parts[4] in ("price", "cap_units", "cap_amount")) \
                        or (len(parts) == 3 and parts[2] in ("cap", "cap_per_period", "cap_per_participant"))
                else:
                    ok = parts[2] in _SCHED_PARTS.get(kind, ()) or parts[2:] == ["cap"]
            if not ok:
                verb = f"set {path}" if ch.set is not None else f"remove {path}"
                out.append(f"amendment '{a.id}': '{verb}' (the vectorised path follows amended prices, caps, "
                           "schedules, pays, shares, removed cohorts, target sizes, the term and the payment "
                           "lag; simulate other amended terms by writing them out in a copy of the contract)")
    return out


def world_person(c: Contract) -> tuple[float, float]:
    """The age and prior months every simulated participant is written out with (the
    eligibility's lower bounds, else its upper bounds, else 30 and 12)."""
    e = c.eligibility
    age = float(e.age_min if e and e.age_min is not None else (e.age_max if e and e.age_max is not None else 30))
    prior = float(e.prior_months_min if e and e.prior_months_min is not None
                  else (e.prior_months_max if e and e.prior_months_max is not None else 12))
    return age, prior


def expected_row(b: ExpectedDurationBaseline, age: float, prior: float) -> Decimal | None:
    """The expected days of the first row of ``b``'s table that ``age`` and ``prior`` fall
    in (as ``baselines.expected_days`` reads it), or None."""
    for row in b.table:
        if row.age_min <= age <= row.age_max and row.prior_months_min <= prior <= row.prior_months_max:
            return row.expected_days
    return None


def pre_metric_ids(c: Contract) -> set[str]:
    """The ``pre_metric`` of every difference-in-differences baseline a trigger reads."""
    out: set[str] = set()
    for t in c.triggers:
        eff = getattr(t, "effect", None)
        if isinstance(t, RateCardTrigger) or eff is None or eff.baseline is None or eff.measure == "level":
            continue
        b = next((x for x in c.baselines if x.id == eff.baseline), None)
        inner = [next((x for x in c.baselines if x.id == comp.baseline), None)
                 for comp in b.components] if isinstance(b, BlendedBaseline) else [b]
        for x in inner:
            if isinstance(x, ComparisonGroupBaseline) and x.estimator != "difference" and x.pre_metric:
                out.add(x.pre_metric)
    return out


def _did_problems(c: Contract, tid: str, b: ComparisonGroupBaseline) -> list[str]:
    """What the vectorised path cannot do with a difference-in-differences baseline."""
    out: list[str] = []
    metric = c.metric(b.metric)
    pre = c.metric(b.pre_metric) if b.pre_metric else None
    if pre is None:  # pragma: no cover - the contract checks require it
        return [f"trigger '{tid}': the difference-in-differences baseline '{b.id}' without a pre_metric"]
    if "continuous" in (metric.type, pre.type):
        out.append(f"trigger '{tid}': the difference-in-differences baseline '{b.id}' on a continuous metric")
    read = {getattr(t, "effect").metric for t in c.triggers if not isinstance(t, RateCardTrigger)}
    read |= {o.metric for t in c.triggers if isinstance(t, RateCardTrigger) for o in t.outcomes}
    read |= {r for m in c.metrics for r in m.requires}
    read |= {r for t in c.triggers if isinstance(t, RateCardTrigger) for o in t.outcomes for r in o.requires}
    if pre.id in read or pre.requires:
        out.append(f"trigger '{tid}': the pre_metric '{pre.id}' of '{b.id}' is also paid on or a prerequisite "
                   "(the vectorised path draws it once, before enrolment)")
    return out


def _build(contract: Contract, sim: Simulation) -> Plan:
    c = contract
    problems = unsupported(c, sim)
    if problems:
        raise SimulationError(
            f"the vectorised path cannot simulate contract '{c.id}' as written: "
            + "; ".join(problems)
            + ". Evaluate single worlds with the exact path (sib_engine.evaluate), or simplify "
            "these terms in a copy of the contract for the simulation."
        )
    cur = c.currency
    minor = exponent(cur)
    # metrics with assumptions: every metric paid on (and their prerequisites)
    by_metric = {e.metric: i for i, e in enumerate(sim.effects)}
    cmetrics = {m.id: m for m in c.metrics}
    needed: list[str] = []

    def need(mid: str) -> None:
        if mid in needed:
            return
        m = cmetrics[mid]
        reqs = list(m.requires)
        for t in c.triggers:
            if isinstance(t, RateCardTrigger):
                for o in t.outcomes:
                    if o.metric == mid:
                        reqs += list(o.requires)
        for r in reqs:
            need(r)
        needed.append(mid)

    for t in c.triggers:
        if isinstance(t, RateCardTrigger):
            for o in t.outcomes:
                need(o.metric)
        else:
            need(t.effect.metric)
    pre_ids = pre_metric_ids(c)
    for mid in sorted(pre_ids):
        need(mid)
    missing = [m for m in needed if m not in by_metric]
    if missing:
        raise SimulationError(
            "the simulation assumes no true effect for metric(s) " + ", ".join(f"'{m}'" for m in missing)
            + " (paid on, or prerequisites of what is paid on); add them to the simulation's effects"
        )
    comparison_metrics: set[str] = set()
    for t in c.triggers:
        if isinstance(t, RateCardTrigger) or t.kind == "banded_return":
            continue
        eff = t.effect
        if eff.baseline is not None and eff.measure != "level":
            b = next(x for x in c.baselines if x.id == eff.baseline)
            inner = [next(x for x in c.baselines if x.id == comp.baseline)
                     for comp in b.components] if isinstance(b, BlendedBaseline) else [b]
            if any(isinstance(x, ComparisonGroupBaseline) for x in inner):
                comparison_metrics.add(eff.metric)
    # a comparison group measured on a metric is measured on its prerequisites too
    stack = list(comparison_metrics)
    while stack:
        mid = stack.pop()
        reqs_of = list(cmetrics[mid].requires)
        for t in c.triggers:
            if isinstance(t, RateCardTrigger):
                reqs_of += [r for o in t.outcomes if o.metric == mid for r in o.requires]
        for r in reqs_of:
            if r not in comparison_metrics:
                comparison_metrics.add(r)
                stack.append(r)
    index = {mid: i for i, mid in enumerate(needed)}
    mplans: list[MetricPlan] = []
    for mid in needed:
        m = cmetrics[mid]
        a = sim.effects[by_metric[mid]]
        reqs: list[str] = list(m.requires)
        for t in c.triggers:
            if isinstance(t, RateCardTrigger):
                for o in t.outcomes:
                    if o.metric == mid:
                        reqs += [r for r in o.requires if r not in reqs]
        after = a.measured_after_months if a.measured_after_months is not None else (m.window_months or 12)
        mplans.append(MetricPlan(
            id=mid, type=m.type, effect=by_metric[mid], base=float(a.base), after_months=after,
            window_months=m.window_months, requires=tuple(index[r] for r in dict.fromkeys(reqs)),
            comparison=mid in comparison_metrics or mid in pre_ids, sd=float(a.sd) if a.sd is not None else 0.0,
            pre=mid in pre_ids,
        ))
    # the terms in force (amendments), as evaluation._Terms reads them
    terms_at = _terms_reader(c)
    eff_dates = sorted({a.effective for a in c.amendments})
    seg_terms: list[tuple[int, Contract]] = []
    if not eff_dates or eff_dates[0] > c.term.start:
        seg_terms.append((-(10**9), terms_at(c.term.start)))
    seg_terms += [(day_of(d), terms_at(d)) for d in eff_dates]
    seg_terms[0] = (-(10**9), seg_terms[0][1])
    # what the plan refuses in the terms as signed, it refuses in the terms as amended
    seen: list[Contract] = []
    for _, st in seg_terms:
        if st is not c and not any(st is x for x in seen):
            seen.append(st)
            more = unsupported(st, sim, amendments=False)
            if more:
                raise SimulationError(f"the vectorised path cannot simulate contract '{c.id}' as amended: "
                                      + "; ".join(more))
    cohort_ids = [co.id for co in c.timeline.cohorts]
    segments = tuple(SegPlan(
        start, tuple(cid in {co.id for co in st.timeline.cohorts} for cid in cohort_ids),
        day_of(st.term.start), day_of(st.term.end)) for start, st in seg_terms)
    # money scale: every price and cap exactly (in every terms in force)
    decimals = [minor]
    periods_all = c.periods()
    for st in {id(x): x for x in [terms_at(p.end) for p in periods_all]}.values():
        if st is c:
            continue
        for t in st.triggers:
            if t.cap is not None:
                decimals.append(_decimals(t.cap))
            if isinstance(t, RateCardTrigger):
                decimals += [_decimals(o.cap_amount) for o in t.outcomes if o.cap_amount is not None]
                decimals += [_decimals(x) for x in (t.cap_per_period, t.cap_per_participant) if x is not None]
        if st.caps is not None:
            decimals += [_decimals(x) for x in (st.caps.total, st.caps.per_period, st.caps.per_participant)
                         if x is not None]
    for _, st in seg_terms:
        for t in st.triggers:
            if isinstance(t, RateCardTrigger):
                decimals += [_decimals(o.price) for o in t.outcomes]
    for t in c.triggers:
        if t.cap is not None:
            decimals.append(_decimals(t.cap))
        if isinstance(t, RateCardTrigger):
            decimals += [_decimals(o.price) for o in t.outcomes]
            decimals += [_decimals(o.cap_amount) for o in t.outcomes if o.cap_amount is not None]
            decimals += [_decimals(x) for x in (t.cap_per_period, t.cap_per_participant) if x is not None]
    if c.caps is not None:
        decimals += [_decimals(x) for x in (c.caps.total, c.caps.per_period, c.caps.per_participant) if x is not None]
    scale = max(decimals)
    if scale > 6:
        raise SimulationError(f"prices or caps with {scale} decimals: the vectorised path holds money in "
                              "at most 6 decimals")
    # periods and determinations (as evaluation._plan)
    periods = c.periods()
    by_id = {p.id: p for p in periods}
    dets = []
    for k, sd in enumerate(c.determination_schedule()):
        did, kind, cutoff, lag = sd.id, sd.kind, sd.data_cutoff, sd.payment_lag_days
        p = by_id.get(sd.period.id)
        if p is None or p != sd.period:
            raise SimulationError(f"the vectorised path cannot simulate contract '{c.id}' as written: "
                                  f"determination '{did}' is on period {sd.period.id}, which an amendment "
                                  "adds or moves (the vectorised path keeps the periods as signed)")
        pi = p.index
        pt = terms_at(p.end)
        cut = cutoff or p.end
        pay = p.end + timedelta(days=lag if lag is not None else pt.timeline.payment_lag_days)
        in_force = {co.id for co in pt.timeline.cohorts}
        dets.append(DetPlan(did, k, kind, pi, day_of(cut), day_of(min(cut, p.end)), day_of(pay),
                            tuple(i for i, cid in enumerate(cohort_ids) if cid in in_force)))
    det_ids = [d.id for d in dets]
    split = _split_accrual_problems(c, [d.payment_day for d in dets])
    if split:
        raise SimulationError(f"the vectorised path cannot simulate contract '{c.id}' as written: {split}")
    scheds: list[SchedPlan] = []
    amended: dict[tuple[int, int], SchedPlan] = {}
    cards: list[CardPlan] = []
    for ti, t in enumerate(c.triggers):
        if isinstance(t, RateCardTrigger):
            outs = []
            for o in t.outcomes:
                seg_prices: tuple[int, ...] = ()
                if c.amendments:
                    seg_prices = tuple(
                        _scaled(next(x for x in st.trigger(t.id).outcomes  # type: ignore[union-attr]
                                     if x.metric == o.metric).price, scale) for _, st in seg_terms)
                outs.append(OutcomePlan(
                    metric=index[o.metric], price=o.price, price_units=_scaled(o.price, scale),
                    requires=tuple(index[r] for r in o.requires), cap_units=o.cap_units,
                    cap_amount=_scaled(o.cap_amount, scale) if o.cap_amount is not None else None,
                    seg_price_units=seg_prices,
                ))
            cards.append(_card_caps(CardPlan(ti, t.id, tuple(outs), None, None), t, seg_terms, scale))
            continue
        eplan = _effect_plan(c, t.effect, index)
        signed_sp = _sched_plan(ti, t, eplan, det_ids)
        if signed_sp is not None:
            scheds.append(signed_sp)
            if c.amendments:  # the schedule in force at each determination
                versions: list[SchedPlan] = [signed_sp]
                for det in dets:
                    at = _sched_plan(ti, terms_at(periods[det.period].end).trigger(t.id), eplan, det_ids)
                    assert at is not None
                    same = next((v for v in versions if _same_terms(v, at)), None)
                    if same is None:
                        same = SchedPlan(**{**at.__dict__, "version": len(versions)})
                        versions.append(same)
                    if same is not signed_sp:
                        amended[(ti, det.index)] = same
    if caps_total_decimals(c) > minor:
        raise SimulationError(f"caps.total {c.caps.total if c.caps else ''} is not a whole number of minor units")
    for payer in c.payers:
        if payer.cap is not None and _decimals(payer.cap) > minor:
            raise SimulationError(f"payer '{payer.party}': a cap of {payer.cap} is not a whole number of minor units")
    payers = tuple(
        PayerPlan(p.party, "top_up" if p.mode == "top_up" else "share",
                  (p.top_up if p.mode == "top_up" else p.share) or Decimal(0),
                  _scaled(p.cap, minor) if p.cap is not None else None, tuple(p.residence))
        for p in c.payers
    )
    caps = c.caps
    plan = Plan(
        contract=c, sim=sim, currency=cur, minor=minor, scale=scale, metrics=tuple(mplans),
        cohorts=tuple(co.id for co in c.timeline.cohorts),
        target_sizes=tuple(_target_size(terms_at(co.enrolment_start), co.id, sim) for co in c.timeline.cohorts),
        period_starts=np.array([day_of(p.start) for p in periods], dtype=np.int64),
        period_ends=np.array([day_of(p.end) for p in periods], dtype=np.int64),
        dets=tuple(dets), trigger_ids=tuple(t.id for t in c.triggers), scheds=tuple(scheds), cards=tuple(cards),
        payers=payers,
        cap_total=_scaled(caps.total, minor) if caps is not None and caps.total is not None else None,
        cap_period=_scaled(caps.per_period, scale) if caps is not None and caps.per_period is not None else None,
        term_start_day=day_of(c.term.start), term_end_day=day_of(c.term.end),
        comparison_metrics=tuple(index[m] for m in needed if m in comparison_metrics),
        cap_participant=_scaled(caps.per_participant, scale)
        if caps is not None and caps.per_participant is not None and caps.per_participant < sum(
            (_max_price(seg_terms, t.id, o.metric) for t in c.triggers if isinstance(t, RateCardTrigger)
             for o in t.outcomes), Decimal(0))
        else None,
        segments=segments, amended_scheds=amended,
        munis=tuple(sorted({code for p in c.payers for code in p.residence})),
    )
    if not c.amendments:
        return plan
    # the caps in force at each determination (evaluation: cap_limits of the terms at the end
    # of the determination's period), one view of the plan per distinct set
    views: list[Plan] = [plan]
    keys: list[object] = [_caps_key(c)]
    det_view: list[int] = []
    for det in dets:
        pt = terms_at(periods[det.period].end)
        key = _caps_key(pt)
        if key not in keys:
            if caps_total_decimals(pt) > minor:
                raise SimulationError(f"caps.total {pt.caps.total if pt.caps else ''} (as amended) is not a whole "
                                      "number of minor units")
            pc = pt.caps
            views.append(replace(
                plan, contract=pt,
                cards=tuple(_card_caps(cd, pt.trigger(cd.id), seg_terms, scale) for cd in cards),
                cap_total=_scaled(pc.total, minor) if pc is not None and pc.total is not None else None,
                cap_period=_scaled(pc.per_period, scale) if pc is not None and pc.per_period is not None else None,
                cap_participant=_scaled(pc.per_participant, scale)
                if pc is not None and pc.per_participant is not None and pc.per_participant < sum(
                    (_max_price(seg_terms, t.id, o.metric) for t in c.triggers if isinstance(t, RateCardTrigger)
                     for o in t.outcomes), Decimal(0)) else None,
                amended_scheds={}, _timings={}))
            keys.append(key)
        det_view.append(keys.index(key))
    if len(views) == 1:
        return plan
    return replace(plan, cap_views=tuple(views), det_cap_view=tuple(det_view))


def _caps_key(t: Contract) -> object:
    """What of ``t``'s terms the caps are (equal keys: the same caps)."""
    return (t.caps.model_dump() if t.caps is not None else None,
            [(x.id, x.cap, getattr(x, "cap_per_period", None), getattr(x, "cap_per_participant", None),
              [(o.metric, o.cap_units, o.cap_amount) for o in getattr(x, "outcomes", ())]) for x in t.triggers])


def _card_caps(card: CardPlan, t: object, seg_terms: list[tuple[int, Contract]], scale: int) -> CardPlan:
    """``card`` with the caps of the rate card ``t`` (a per-participant cap only where it can
    bind: below the sum of the outcomes' highest prices)."""
    assert isinstance(t, RateCardTrigger)
    outs = tuple(replace(op, cap_units=o.cap_units,
                         cap_amount=_scaled(o.cap_amount, scale) if o.cap_amount is not None else None)
                 for op, o in zip(card.outcomes, t.outcomes))
    total_price = sum((_max_price(seg_terms, t.id, o.metric) for o in t.outcomes), Decimal(0))
    binds = t.cap_per_participant is not None and t.cap_per_participant < total_price
    return replace(card, outcomes=outs,
                   cap_period=_scaled(t.cap_per_period, scale) if t.cap_per_period is not None else None,
                   cap_total=_scaled(t.cap, scale) if t.cap is not None else None,
                   cap_participant=_scaled(t.cap_per_participant, scale)
                   if binds and t.cap_per_participant is not None else None)


def _max_price(seg_terms: list[tuple[int, Contract]], tid: str, metric: str) -> Decimal:
    """The highest price of a rate card's outcome in any terms in force (where a
    per-participant cap can bind)."""
    out = Decimal(0)
    for _, st in seg_terms:
        t = st.trigger(tid)
        if isinstance(t, RateCardTrigger):
            out = max([out] + [o.price for o in t.outcomes if o.metric == metric])
    return out


def _split_accrual_problems(c: Contract, pay_days: list[int]) -> str:
    """Why the capital stack's interest cannot be simulated with these amendments ('' if it
    can).  The exact waterfall accrues interest in two pieces across an amendment's date;
    act/365 and act/360 add up, 30/360 does not when a piece ends on a 31st or starts on a
    30th or 31st, which the vectorised waterfall (accruing across the date) would miss."""
    cap = c.capital
    if not c.amendments or cap is None:
        return ""
    bad = [t.id for t in cap.tranches if t.coupon is not None and t.coupon.rate != 0
           and t.coupon.day_count == "30/360"]
    if not bad:
        return ""
    ends = set(pay_days) | {day_of(c.term.start), day_of(c.term.end)}
    ends |= {day_of(g.called_on) for g in cap.guarantees if g.called_on is not None}
    ends |= {day_of(t.maturity) for t in cap.tranches if t.maturity is not None}
    for t in cap.tranches:
        for dd in t.drawdowns:
            ends.add(day_of(dd.date))
        if t.drawdown_schedule is not None or t.coupon is not None and t.coupon.compounding != "simple":
            ends.add(-1)  # scheduled drawdowns or compounding dates: a 31st cannot be ruled out cheaply
    for a in c.amendments:
        b = day_of(a.effective)
        if a.effective.day >= 30 or any(e == -1 or (e > b and date_of(e).day == 31) for e in ends):
            return (f"amendment '{a.id}' takes effect while tranche(s) {', '.join(repr(x) for x in bad)} accrue "
                    "30/360 interest that the exact waterfall splits at its date (and 30/360 does not add up "
                    "across a 30th or 31st); give the tranche an act/365 or act/360 day count in a copy of the "
                    "contract, or move the amendment off the month's end")
    return ""


def _terms_reader(c: Contract) -> "Callable[[date], Contract]":
    """``c.at`` memoised by the set of amendments in force (``c`` itself without any)."""
    dates = sorted({a.effective for a in c.amendments})
    cache: dict[int, Contract] = {}

    def at(d: date) -> Contract:
        if not dates:
            return c
        k = sum(1 for x in dates if x <= d)
        got = cache.get(k)
        if got is None:
            got = cache[k] = c.at(d)
        return got

    return at


def _target_size(terms: Contract, cohort: str, sim: Simulation) -> int:
    """The cohort's target size in force when it opens (0 if an amendment removed it before)."""
    co = next((x for x in terms.timeline.cohorts if x.id == cohort), None)
    if co is None:
        return 0
    return co.target_size or sim.enrolment.default_size


def _sched_plan(ti: int, t: object, eplan: EffectPlan, det_ids: list[str]) -> SchedPlan | None:
    """The plan of a schedule-based trigger (None for other kinds)."""
    if isinstance(t, ThresholdTrigger):
        return SchedPlan(ti, t.id, "threshold", eplan, t.schedule, t.pays, t.scope == "per_cohort", clause=t.clause)
    if isinstance(t, CohortTrigger):
        fd = det_ids.index(t.fallback_determination) if t.fallback_determination in det_ids else None
        return SchedPlan(ti, t.id, "cohort_with_pooled_fallback", eplan, t.per_cohort.schedule,
                         t.per_cohort.pays, True, t.pooled_fallback.schedule, t.pooled_fallback.pays,
                         fd, clause=t.clause)
    if isinstance(t, ShareOfSavingsTrigger):
        return SchedPlan(ti, t.id, "share_of_savings", eplan, None, "amount", False,
                         share=t.share, unit_cost=t.unit_cost, clause=t.clause)
    return None


def _same_terms(a: SchedPlan, b: SchedPlan) -> bool:
    """Whether two plans of a trigger pay the same (the amendable parts are equal)."""
    return (a.schedule, a.pays, a.fallback_schedule, a.fallback_pays, a.share, a.unit_cost) == (
        b.schedule, b.pays, b.fallback_schedule, b.fallback_pays, b.share, b.unit_cost)


def caps_total_decimals(c: Contract) -> int:
    return _decimals(c.caps.total) if c.caps is not None and c.caps.total is not None else 0


def _effect_plan(c: Contract, e: Effect, index: dict[str, int]) -> EffectPlan:
    increasing = e.measure in ("level", "difference", "relative_difference")
    g = e.gate
    alternative = "two-sided" if g and g.sides == "two" else ("greater" if increasing else "less")
    confidence = interval_confidence(float(g.level), g.sides) if g else 0.95
    kind: Literal["none", "fixed", "historical", "comparison", "did", "blended", "expected"] = "none"
    horizon = 0
    parts: list[BlendPart] = []
    pre_id: str | None = None
    value = Decimal(0)
    hist_n = 0
    if e.measure != "level" and e.baseline is not None:
        b = next(x for x in c.baselines if x.id == e.baseline)
        if isinstance(b, FixedBaseline):
            kind, value = "fixed", b.value
        elif isinstance(b, HistoricalBaseline):
            kind, value, hist_n = "historical", b.value, b.n
        elif isinstance(b, ComparisonGroupBaseline) and b.estimator != "difference":
            kind = "did"
            pre_id = b.pre_metric
        elif isinstance(b, ExpectedDurationBaseline):
            kind = "expected"
            found = expected_row(b, *world_person(c))
            assert found is not None  # unsupported() refuses a table without the row
            value, horizon = found, b.horizon_days
        elif isinstance(b, BlendedBaseline):
            kind = "blended"
            for comp in b.components:
                x = next(y for y in c.baselines if y.id == comp.baseline)
                if isinstance(x, FixedBaseline):
                    parts.append(BlendPart(comp.weight, "fixed", x.value))
                elif isinstance(x, HistoricalBaseline):
                    parts.append(BlendPart(comp.weight, "historical", x.value, x.n,
                                           float(x.sd) if x.sd is not None else None))
                elif isinstance(x, ComparisonGroupBaseline) and x.estimator != "difference":
                    parts.append(BlendPart(comp.weight, "did"))
                    pre_id = x.pre_metric
                else:
                    parts.append(BlendPart(comp.weight, "comparison"))
        else:
            kind = "comparison"
    hist_sd: float | None = None
    if kind == "historical":
        hb = next(x for x in c.baselines if x.id == e.baseline)
        assert isinstance(hb, HistoricalBaseline)
        hist_sd = float(hb.sd) if hb.sd is not None else None
    return EffectPlan(index[e.metric], e.measure, kind, value, hist_n,
                      float(g.level) if g else None, alternative, confidence,
                      test=g.test if g else "two_proportion_z", rule=g.rule if g else "significant",
                      hist_sd=hist_sd, pre=index[pre_id] if pre_id else -1, components=tuple(parts),
                      horizon=horizon)
