"""The contract language, as frozen pydantic models (layer 1: declaration).

A contract file is YAML (read only by :mod:`sib_engine.loader`); this module declares what
it may contain.  Every model is frozen and refuses unknown keys.  Money is ``Decimal``
parsed exactly from the file's text; rates and shares are ``Decimal`` too.

The structure checks live here; checks that compare one part of a contract with another
(a trigger names a metric that exists, shares add up, ...) live in
:mod:`sib_engine.consistency`.  Amendments are applied by :meth:`Contract.at`, which gives
the terms in force on a date.

Families (baselines, triggers, tranches) are tagged unions on ``kind``; each registers in
one place (``BASELINE_KINDS``, ``TRIGGER_KINDS``, ``TRANCHE_KINDS``) so that tests can run
one suite over every member.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Annotated, Any, Iterable, Literal, TypeVar, Union

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    StringConstraints,
)

from sib_engine.errors import AmendmentError
from sib_engine.money import is_currency
from sib_engine.periods import Period, regular_periods

FORMAT_VERSION = "sib-contract/1"
"""The header every contract file starts with: ``format: sib-contract/1``."""

SUPPORTED_FORMATS = (FORMAT_VERSION,)


class Model(BaseModel):
    """Base of every contract model: frozen, unknown keys refused."""

    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)


def _check_currency(code: str) -> str:
    if not is_currency(code):
        raise ValueError(
            f"'{code}' is not an ISO 4217 currency code; use a three-letter code such as EUR, GBP or USD"
        )
    return code


Identifier = Annotated[
    str, StringConstraints(pattern=r"^[a-z][a-z0-9_\-]{0,63}$")
]
"""Lower-case identifier: a letter, then letters, digits, ``_`` or ``-`` (at most 64)."""

Currency = Annotated[str, AfterValidator(_check_currency)]
MAX_MONEY = Decimal("1e15")
"""No amount in a contract exceeds a thousand trillion (a typo guard, and an overflow guard)."""
Amount = Annotated[Decimal, Field(ge=0, le=MAX_MONEY, allow_inf_nan=False)]
"""A sum of money (not negative) in the contract's currency."""
Price = Annotated[Decimal, Field(gt=0, le=MAX_MONEY, allow_inf_nan=False)]
"""A positive price."""
Fraction = Annotated[Decimal, Field(ge=0, le=1, allow_inf_nan=False)]
"""A share or rate between 0 and 1 (``0.2`` is 20%)."""
Rate = Annotated[Decimal, Field(ge=-1, le=10, allow_inf_nan=False)]
"""A rate per year, as a fraction (``0.05`` is 5%)."""
Real = Annotated[Decimal, Field(allow_inf_nan=False)]
Clause = Annotated[str, StringConstraints(min_length=1, max_length=200)]
"""A reference to the clause of the signed contract, e.g. ``Schedule 2, para 3.1``."""
PositiveInt = Annotated[int, Field(ge=1)]
NonNegativeInt = Annotated[int, Field(ge=0)]


# --------------------------------------------------------------------------- parties ---

PartyRole = Literal[
    "payer", "top_up_fund", "investor", "guarantor", "provider", "evaluator", "intermediary"
]


class Party(Model):
    """Someone who signs, pays, funds, delivers or evaluates."""

    id: Identifier
    name: str
    role: PartyRole
    municipality_code: str | None = None
    """Official code of a municipal payer (e.g. CBS ``GM0479`` for Zaanstad)."""
    note: str | None = None


class Term(Model):
    """The contract's term: outcomes outside it are not payable."""

    start: date
    end: date
    clause: Clause | None = None


class Eligibility(Model):
    """Who may be enrolled; the measured data are checked against it."""

    age_min: NonNegativeInt | None = None
    age_max: NonNegativeInt | None = None
    prior_months_min: NonNegativeInt | None = None
    """Minimum months on benefits (or out of work) before enrolment."""
    prior_months_max: NonNegativeInt | None = None
    description: str | None = None
    clause: Clause | None = None


# ------------------------------------------------------------------- payers and caps ---


class Payer(Model):
    """An outcome payer: pays a fixed share, for its own residents, or tops up the others.

    Exactly one of ``share``, ``residence`` or ``top_up`` is given.
    """

    party: Identifier
    share: Fraction | None = None
    """Fixed share of every payment (all fixed shares add up to 1)."""
    residence: tuple[str, ...] = ()
    """Municipality codes whose residents this payer pays for."""
    top_up: Fraction | None = None
    """Pays this fraction on top of every payment of the primary payers (e.g. 0.2)."""
    cap: Amount | None = None
    """The most this payer pays over the whole contract."""
    clause: Clause | None = None

    @property
    def mode(self) -> Literal["share", "residence", "top_up"]:
        if self.top_up is not None:
            return "top_up"
        if self.residence:
            return "residence"
        return "share"


class Caps(Model):
    """Caps on outcome payments over all triggers."""

    total: Amount | None = None
    """The most the contract pays in all."""
    per_period: Amount | None = None
    per_participant: Amount | None = None
    clause: Clause | None = None


# -------------------------------------------------------------------------- timeline ---


class RegularPeriods(Model):
    """Measurement periods of equal length: ids ``P1``, ``P2``, ..."""

    start: date
    months: Annotated[int, Field(ge=1, le=24)]
    count: Annotated[int, Field(ge=1, le=400)]


class Cohort(Model):
    id: Identifier
    name: str | None = None
    enrolment_start: date
    enrolment_end: date
    target_size: PositiveInt | None = None


@dataclass(frozen=True)
class ScheduledDetermination:
    """One determination of :meth:`Contract.determination_schedule`, its period resolved."""

    id: str
    kind: Literal["interim", "final"]
    period: Period
    data_cutoff: date | None
    payment_lag_days: int | None
    clause: str | None


class Determination(Model):
    """A point at which outcomes are determined and a payment is due."""

    id: Identifier
    kind: Literal["interim", "final"]
    period: str
    """The last measurement period this determination covers (e.g. ``P8``)."""
    data_cutoff: date | None = None
    """Data dated after this are not considered (defaults to the period's end)."""
    payment_lag_days: NonNegativeInt | None = None
    """Overrides the timeline's lag for this determination."""
    clause: Clause | None = None


class Timeline(Model):
    periods: RegularPeriods
    payment_lag_days: NonNegativeInt = 30
    """Days from the end of a period (or its determination) to the payment date."""
    cohorts: tuple[Cohort, ...] = Field(min_length=1)
    determinations: tuple[Determination, ...] = ()
    clause: Clause | None = None

    def period_list(self) -> tuple[Period, ...]:
        return regular_periods(self.periods.start, self.periods.months, self.periods.count)


# --------------------------------------------------------------------------- metrics ---

MetricType = Literal["event", "binary", "count", "duration", "continuous"]


class Metric(Model):
    """Something measured per participant.

    ``event``: an outcome that happens on a date (a diploma); ``binary``: yes/no per
    participant (worked 90 days in 12 months), aggregated as a rate; ``count``: a number of
    units per participant (bed days, reconvictions); ``duration``: days of a state
    (benefit days); ``continuous``: a measured value (BMI).
    """

    id: Identifier
    name: str
    type: MetricType
    unit: str = "participant"
    better: Literal["higher", "lower"] = "higher"
    """Which direction is an improvement (fewer bed days: ``lower``)."""
    window_months: PositiveInt | None = None
    """Only outcomes within this many months of enrolment count (attribution window)."""
    requires: tuple[Identifier, ...] = ()
    """Prerequisite events: this event counts only after each of these happened."""
    min_value: Real | None = None
    max_value: Real | None = None
    clause: Clause | None = None


# ------------------------------------------------------------------------- baselines ---


class _BaselineBase(Model):
    id: Identifier
    metric: Identifier
    source: str | None = None
    clause: Clause | None = None


class FixedBaseline(_BaselineBase):
    """A rate or value written in the contract (e.g. Newpin's 25% restoration rate)."""

    kind: Literal["fixed"]
    value: Real


class HistoricalBaseline(_BaselineBase):
    """A historical cohort's observed value, with its size (and spread) for the tests."""

    kind: Literal["historical"]
    value: Real
    n: PositiveInt
    sd: Annotated[Decimal, Field(ge=0)] | None = None
    period: str | None = None
    """When the historical cohort was observed, as text."""


class ExpectedDurationRow(Model):
    age_min: NonNegativeInt
    age_max: NonNegativeInt
    prior_months_min: NonNegativeInt
    prior_months_max: NonNegativeInt
    expected_days: Annotated[Decimal, Field(ge=0)]


class ExpectedDurationBaseline(_BaselineBase):
    """Benefit days a participant would have had, from a table by age and prior duration."""

    kind: Literal["expected_duration"]
    horizon_days: PositiveInt
    """The days over which actual and expected duration are compared."""
    table: tuple[ExpectedDurationRow, ...] = Field(min_length=1)


class ComparisonGroupBaseline(_BaselineBase):
    """A matched or randomised comparison group measured alongside the participants."""

    kind: Literal["comparison_group"]
    design: Literal["matched", "randomised"]
    estimator: Literal["difference", "difference_in_differences"] = "difference"
    group: str = "comparison"
    """Value of the ``group`` column that marks comparison records in the data."""
    pre_metric: Identifier | None = None
    """For difference-in-differences: the metric measured before enrolment."""


class BlendComponent(Model):
    baseline: Identifier
    weight: Fraction


class BlendedBaseline(_BaselineBase):
    """A weighted blend of other estimators (e.g. 80% randomised, 20% diff-in-diff)."""

    kind: Literal["blended"]
    components: tuple[BlendComponent, ...] = Field(min_length=2)


Baseline = Annotated[
    Union[
        FixedBaseline,
        HistoricalBaseline,
        ExpectedDurationBaseline,
        ComparisonGroupBaseline,
        BlendedBaseline,
    ],
    Field(discriminator="kind"),
]
BASELINE_KINDS: dict[str, type[Model]] = {
    "fixed": FixedBaseline,
    "historical": HistoricalBaseline,
    "expected_duration": ExpectedDurationBaseline,
    "comparison_group": ComparisonGroupBaseline,
    "blended": BlendedBaseline,
}


# ------------------------------------------------------------- effects and schedules ---

StatTest = Literal["two_proportion_z", "welch_t", "poisson_rate_ratio"]
STAT_TESTS: dict[str, frozenset[str]] = {
    "two_proportion_z": frozenset({"binary"}),
    "welch_t": frozenset({"count", "duration", "continuous"}),
    "poisson_rate_ratio": frozenset({"count", "event"}),
}
"""Each named test and the metric types it applies to."""


class Gate(Model):
    """Statistical gating: pay only if significant, or pay on the lower confidence bound."""

    test: StatTest
    level: Annotated[Decimal, Field(gt=0, lt=Decimal("0.5"))]
    """Significance level, e.g. ``0.05``."""
    sides: Literal["one", "two"] = "one"
    rule: Literal["significant", "lower_bound"] = "significant"
    clause: Clause | None = None


EffectMeasure = Literal[
    "level", "difference", "relative_difference", "reduction", "relative_reduction"
]


class Effect(Model):
    """How an effect is computed from a metric and its baseline.

    ``level``: the metric itself (no baseline); ``difference``: metric - baseline;
    ``relative_difference``: (metric - baseline) / baseline; ``reduction``: baseline -
    metric; ``relative_reduction``: (baseline - metric) / baseline.
    """

    metric: Identifier
    baseline: Identifier | None = None
    measure: EffectMeasure
    gate: Gate | None = None


class SchedulePoint(Model):
    effect: Real
    value: Annotated[Decimal, Field(ge=0, allow_inf_nan=False)]


class Schedule(Model):
    """Maps an effect to a value: tier floors (``step``) or ``linear`` interpolation.

    Below ``minimum_effect`` (by default the first point) the value is 0; above the last
    point it stays at the last value; ``maximum`` caps the value.
    """

    interpolation: Literal["step", "linear"]
    points: tuple[SchedulePoint, ...] = Field(min_length=1)
    minimum_effect: Real | None = None
    maximum: Annotated[Decimal, Field(ge=0)] | None = None


# -------------------------------------------------------------------------- triggers ---


class _TriggerBase(Model):
    id: Identifier
    name: str | None = None
    cap: Amount | None = None
    """The most this trigger pays over the contract."""
    clause: Clause


class RateCardOutcome(Model):
    """A price per verified outcome event, with its limits."""

    metric: Identifier
    price: Price
    max_claims: PositiveInt = 1
    """How many times one participant can be paid for this outcome."""
    requires: tuple[Identifier, ...] = ()
    """Outcomes that must have been paid for the participant first."""
    cap_units: PositiveInt | None = None
    """The most outcomes of this kind paid over the contract."""
    cap_amount: Amount | None = None
    clause: Clause | None = None


class RateCardTrigger(_TriggerBase):
    """Pays a price per outcome event (no counterfactual)."""

    kind: Literal["rate_card"]
    outcomes: tuple[RateCardOutcome, ...] = Field(min_length=1)
    cap_per_participant: Amount | None = None
    cap_per_period: Amount | None = None


PaysBasis = Literal["amount", "per_participant", "per_unit"]
"""What a schedule's value is: a sum of money, a price per participant of the cohort, or a
price per unit of effect (e.g. per bed day avoided)."""


class ThresholdTrigger(_TriggerBase):
    """Pays by a threshold, step or linear schedule of an effect."""

    kind: Literal["threshold"]
    effect: Effect
    schedule: Schedule
    pays: PaysBasis = "amount"
    scope: Literal["pooled", "per_cohort"] = "pooled"


class ScheduledPayment(Model):
    schedule: Schedule
    pays: PaysBasis = "amount"


class CohortTrigger(_TriggerBase):
    """Each cohort can trigger its own payment; failing that, a final pooled payment."""

    kind: Literal["cohort_with_pooled_fallback"]
    effect: Effect
    per_cohort: ScheduledPayment
    pooled_fallback: ScheduledPayment
    fallback_determination: Identifier | None = None
    """The determination at which the pooled fallback is decided (default: the final one)."""


class ShareStep(Model):
    after_return: Rate
    """Once funders have received this annual return (IRR) the share changes."""
    share: Fraction


class ShareOfSavingsTrigger(_TriggerBase):
    """Pays share x (units avoided x unit cost)."""

    kind: Literal["share_of_savings"]
    effect: Effect
    """Units avoided per participant, usually ``measure: reduction`` against a baseline."""
    unit_cost: Price
    """Public cost of one unit (one benefit day, one child-year of special education)."""
    share: Fraction
    share_steps: tuple[ShareStep, ...] = ()


class CapitalProtection(Model):
    redeemed_by: date
    fraction: Fraction
    """Fraction of capital returned if the investment is redeemed by this date."""


class MinimumCoupon(Model):
    rate: Rate
    until: date


class BandedReturnTrigger(_TriggerBase):
    """The investors' return rate is set by an outcome band."""

    kind: Literal["banded_return"]
    effect: Effect
    bands: Schedule
    """Effect -> annual return rate."""
    tranches: tuple[Identifier, ...] = Field(min_length=1)
    """Tranches whose coupon the bands set."""
    minimum_coupon: MinimumCoupon | None = None
    capital_at_risk_below: Real | None = None
    """Below this effect the investors' principal is at risk: only the fraction given by
    ``capital_protection`` (or nothing) is repaid. At or above it, principal is repaid and
    the bands set the return on top. ``None``: principal is always repaid."""
    capital_protection: tuple[CapitalProtection, ...] = ()


Trigger = Annotated[
    Union[
        RateCardTrigger,
        ThresholdTrigger,
        CohortTrigger,
        ShareOfSavingsTrigger,
        BandedReturnTrigger,
    ],
    Field(discriminator="kind"),
]
TRIGGER_KINDS: dict[str, type[Model]] = {
    "rate_card": RateCardTrigger,
    "threshold": ThresholdTrigger,
    "cohort_with_pooled_fallback": CohortTrigger,
    "share_of_savings": ShareOfSavingsTrigger,
    "banded_return": BandedReturnTrigger,
}


# ------------------------------------------------------------------ capital stack ---

Compounding = Literal["simple", "annual", "semiannual", "quarterly", "monthly"]
DayCount = Literal["act/365", "act/360", "30/360"]


class Coupon(Model):
    rate: Rate
    compounding: Compounding = "simple"
    day_count: DayCount = "act/365"


class Drawdown(Model):
    date: date
    amount: Price


class DrawdownSchedule(Model):
    """``parts`` equal drawdowns every ``every_months`` months from ``start``."""

    start: date
    parts: PositiveInt
    every_months: PositiveInt


TrancheKind = Literal[
    "senior_loan",
    "junior_loan",
    "quasi_equity",
    "recoverable_grant",
    "deferred_fee",
    "first_loss",
]
TRANCHE_KINDS: tuple[str, ...] = (
    "senior_loan",
    "junior_loan",
    "quasi_equity",
    "recoverable_grant",
    "deferred_fee",
    "first_loss",
)


class Tranche(Model):
    """One layer of the capital stack.

    Give either explicit ``drawdowns`` or a ``drawdown_schedule``; with neither, the whole
    commitment is drawn at the start of the term.
    """

    id: Identifier
    kind: TrancheKind
    funder: Identifier
    """The party providing it (the provider itself for a deferred fee)."""
    commitment: Price
    coupon: Coupon | None = None
    drawdowns: tuple[Drawdown, ...] = ()
    drawdown_schedule: DrawdownSchedule | None = None
    maturity: date | None = None
    max_return: Rate | None = None
    """Cap on the tranche's annual return (IRR)."""
    clause: Clause | None = None


class Guarantee(Model):
    """A guarantor covers a share and/or an amount of a tranche's loss."""

    id: Identifier
    guarantor: Identifier
    covers: Identifier
    """The tranche whose loss is covered."""
    share: Fraction | None = None
    amount: Amount | None = None
    basis: Literal["principal", "principal_and_interest"] = "principal"
    called_on: date | None = None
    """Date the guarantee is settled (default: end of term)."""
    clause: Clause | None = None


WaterfallPay = Literal["costs", "interest", "principal", "fee", "bonus", "residual"]


class WaterfallStep(Model):
    """One step of the order of payment: what is paid, to which tranche or parties."""

    pay: WaterfallPay
    tranche: Identifier | None = None
    amount: Amount | None = None
    """For ``bonus`` or ``costs``: a fixed amount."""
    split: dict[Identifier, Fraction] | None = None
    """For ``residual`` and ``bonus``: party -> share (shares add up to 1)."""
    clause: Clause | None = None


class Recycling(Model):
    """Early outcome payments recycled into service costs instead of repaying funders."""

    share: Fraction
    until: date | None = None


class Capital(Model):
    tranches: tuple[Tranche, ...] = Field(min_length=1)
    guarantees: tuple[Guarantee, ...] = ()
    waterfall: tuple[WaterfallStep, ...] = Field(min_length=1)
    service_budget: Amount | None = None
    """The provider's planned delivery cost, funded by the drawdowns."""
    recycling: Recycling | None = None
    clause: Clause | None = None


# ------------------------------------------------------------------ value for money ---


class SavingsPerOutcome(Model):
    metric: Identifier
    amount: Amount
    """Public saving per outcome (per unit of the metric)."""
    cashable: bool = True
    source: str | None = None


class ValueForMoney(Model):
    savings: tuple[SavingsPerOutcome, ...] = ()
    fee_for_service_cost: Amount | None = None
    """What paying the provider directly for the same service would cost."""
    discount_rate: Rate = Decimal("0.035")
    clause: Clause | None = None


# -------------------------------------------------------------------- data quality ---

CHECK_CODES: tuple[str, ...] = (
    "missing_column",
    "wrong_type",
    "unparseable_date",
    "missing_value",
    "wrong_contract",
    "unknown_cohort",
    "duplicate_participant",
    "event_before_enrolment",
    "event_outside_term",
    "unknown_metric",
    "prerequisite_out_of_order",
    "claim_limit_exceeded",
    "unknown_participant",
    "unknown_municipality",
    "negative_value",
    "value_out_of_range",
    "ineligible",
    "restated_row",
    # added with the measured-data validation (issue 3):
    "outside_window",
    "unknown_group",
    "empty_submission",
    "wrong_delimiter",
    "bad_encoding",
    "malformed_row",
)
"""Stable reason codes of the data checks; a contract may set the severity of each.

``outside_window``: a date outside a window the contract sets (a cohort's enrolment window,
a metric's attribution window); ``unknown_group``: a ``group`` that is neither treatment nor
a comparison group; the last four describe the submission's structure (no data rows, a
separator other than ``,``/``;``, a line that is not UTF-8, a line with the wrong number of
fields) and, like ``missing_column``, ``wrong_type``, ``unparseable_date`` and
``missing_value``, are always critical."""

Severity = Literal["critical", "warning"]


class DataQuality(Model):
    """How strictly the measured data are judged."""

    tolerance: Fraction = Decimal("0.05")
    """Share of rows quarantined above which the whole submission is put on payment hold."""
    severity: dict[str, Severity] = Field(default_factory=dict)
    """Check code -> ``critical`` (row rejected) or ``warning`` (row accepted, flagged)."""
    clause: Clause | None = None


# ---------------------------------------------------------------------- simulation ---
# What the risk simulation (sib_engine.simulation) assumes about the world: these are the
# analyst's assumptions, not terms of the signed contract.  A contract may carry them in a
# ``simulation`` section, or a separate scenario file may (``loader.load_scenario``).


class NormalDistribution(Model):
    """Normal with ``mean`` and ``sd``, optionally clipped to ``[low, high]``."""

    kind: Literal["normal"]
    mean: Real
    sd: Annotated[Decimal, Field(ge=0, allow_inf_nan=False)]
    low: Real | None = None
    high: Real | None = None


class BetaDistribution(Model):
    """Beta(``a``, ``b``) scaled to ``[low, high]`` (by default ``[0, 1]``)."""

    kind: Literal["beta"]
    a: Annotated[Decimal, Field(gt=0, allow_inf_nan=False)]
    b: Annotated[Decimal, Field(gt=0, allow_inf_nan=False)]
    low: Real = Decimal(0)
    high: Real = Decimal(1)


class TriangularDistribution(Model):
    """Triangular from ``low`` to ``high`` with its peak at ``mode``."""

    kind: Literal["triangular"]
    low: Real
    mode: Real
    high: Real


class LognormalDistribution(Model):
    """Lognormal with the given ``mean`` and ``sd`` (of the value itself, not of its log),
    plus ``shift``."""

    kind: Literal["lognormal"]
    mean: Annotated[Decimal, Field(gt=0, allow_inf_nan=False)]
    sd: Annotated[Decimal, Field(ge=0, allow_inf_nan=False)]
    shift: Real = Decimal(0)


class EmpiricalDistribution(Model):
    """One of ``values``, with probabilities proportional to ``weights`` (equal by default)."""

    kind: Literal["empirical"]
    values: tuple[Real, ...] = Field(min_length=1)
    weights: tuple[Annotated[Decimal, Field(ge=0, allow_inf_nan=False)], ...] = ()


class FixedDistribution(Model):
    """Always ``value`` (no uncertainty)."""

    kind: Literal["fixed"]
    value: Real


Distribution = Annotated[
    Union[
        NormalDistribution,
        BetaDistribution,
        TriangularDistribution,
        LognormalDistribution,
        EmpiricalDistribution,
        FixedDistribution,
    ],
    Field(discriminator="kind"),
]
DISTRIBUTION_KINDS: dict[str, type[Model]] = {
    "normal": NormalDistribution,
    "beta": BetaDistribution,
    "triangular": TriangularDistribution,
    "lognormal": LognormalDistribution,
    "empirical": EmpiricalDistribution,
    "fixed": FixedDistribution,
}


class EffectAssumption(Model):
    """The true effect of the programme on one metric, and the outcome without it.

    ``base``: the metric without the programme (a rate for ``binary`` and ``event``
    metrics, the mean per participant for ``count``, ``duration`` and ``continuous``
    ones); for an event with prerequisites, the rate among participants who achieved
    them.  ``effect``: the true change the programme causes (treated minus
    counterfactual) in the metric's own units, drawn once per simulated world; a
    programme that lowers a ``better: lower`` metric has a negative effect.
    """

    metric: Identifier
    base: Real
    effect: Distribution
    measured_after_months: Annotated[int, Field(ge=0, le=600)] | None = None
    """When the outcome is recorded, in months after enrolment (default: the metric's
    ``window_months``, else 12)."""
    target: Real | None = None
    """The effect the programme sets out to achieve (for the probability of not paying
    when it is met); default: the effect at which the contract first pays."""
    sd: Annotated[Decimal, Field(ge=0)] | None = None
    """For a ``continuous`` metric: the standard deviation of the measured value between
    participants (required to simulate one; the simulated values are whole hundredths)."""


class EnrolmentAssumption(Model):
    fraction: Distribution = FixedDistribution(kind="fixed", value=Decimal(1))
    """Share of each cohort's ``target_size`` that enrols, drawn per cohort and world."""
    default_size: PositiveInt = 100
    """Target size of a cohort that declares none."""
    comparison_ratio: Annotated[Decimal, Field(gt=0, le=100, allow_inf_nan=False)] = Decimal(1)
    """Comparison-group members per enrolled participant (comparison-group baselines)."""


class Simulation(Model):
    """Assumptions of the risk simulation: the true effects and what can go wrong.

    Every draw is per simulated world (path).  The evaluator's sampling noise is not an
    assumption of its own: the measured outcomes of each world are drawn from the cohort
    sizes (binomial for rates, Poisson for counts), and the contract's own named test and
    gate judge them, as the evaluator would.
    """

    paths: Annotated[int, Field(ge=1, le=100_000_000)] = 10_000
    """Default number of simulated worlds."""
    seed: Annotated[int, Field(ge=0, le=2**63 - 1)] = 0
    """Default seed; the same seed gives bit-identical results."""
    effects: tuple[EffectAssumption, ...] = Field(min_length=1)
    enrolment: EnrolmentAssumption = EnrolmentAssumption()
    attrition: Distribution | None = None
    """Share of the enrolled who drop out; they reach the outcome at the base rate only."""
    delay_months: Distribution | None = None
    """How many months late the programme starts (rounded to whole months, at least 0):
    every enrolment, and every outcome after it, moves that much later."""
    baseline_drift: Distribution | None = None
    """Change per year of the counterfactual (``base``) from the start of the term: a
    comparison group measures the drifted value, a baseline written in the contract does
    not."""
    correlation: tuple[tuple[Real, ...], ...] = ()
    """Correlation of the effects, in the order of ``effects`` (a Gaussian copula)."""
    appropriation_risk: Fraction = Decimal(0)
    """Probability, per payer and determination, that the payer fails to budget what it
    owes then: those payments are never made (clawbacks owed back to it still stand)."""
    sampling_noise: bool = True
    """False: the evaluator sees the expected outcomes (no sampling error)."""
    note: str | None = None


# ---------------------------------------------------------------------- amendments ---


class Change(Model):
    """One change made by an amendment: ``set`` a value at a path, or ``remove`` an item.

    Paths are dotted; list items are named by their ``id`` (or ``metric`` or ``party``):
    ``triggers.outcomes.outcomes.diploma_l2.price`` or ``timeline.cohorts.c4``.
    """

    set: str | None = None
    to: Any = None
    remove: str | None = None


class Amendment(Model):
    id: Identifier
    effective: date
    clause: Clause
    summary: str
    changes: tuple[Change, ...] = Field(min_length=1)


# ------------------------------------------------------------------------ contract ---


class Contract(Model):
    """A social deal: who pays whom, for what, how much at most, and when.

    Build one with :func:`sib_engine.load_contract` (a file) or
    :func:`sib_engine.parse_contract` (text); both run every check.  Read terms through
    :meth:`at`, which applies the amendments in force on a date.
    """

    format: str
    """Format version header; must be ``sib-contract/1``."""
    id: Identifier
    version: PositiveInt = 1
    title: str
    summary: str | None = None
    currency: Currency
    jurisdiction: str | None = None
    sources: tuple[str, ...] = ()
    """Where the figures come from (e.g. ``GO Lab INDIGO``); invented values are noted."""
    term: Term
    parties: tuple[Party, ...] = Field(min_length=1)
    eligibility: Eligibility | None = None
    payers: tuple[Payer, ...] = Field(min_length=1)
    metrics: tuple[Metric, ...] = Field(min_length=1)
    baselines: tuple[Baseline, ...] = ()
    triggers: tuple[Trigger, ...] = Field(min_length=1)
    caps: Caps | None = None
    timeline: Timeline
    capital: Capital | None = None
    value_for_money: ValueForMoney | None = None
    data_quality: DataQuality = DataQuality()
    amendments: tuple[Amendment, ...] = ()
    simulation: Simulation | None = None
    """Assumptions of the risk simulation (not terms of the deal; see :class:`Simulation`)."""

    _in_force_on: date | None = PrivateAttr(default=None)
    _signed: "Contract | None" = PrivateAttr(default=None)

    # -- lookups -------------------------------------------------------------------
    def party(self, party_id: str) -> Party:
        return _by_id(self.parties, party_id, "party")

    def metric(self, metric_id: str) -> Metric:
        return _by_id(self.metrics, metric_id, "metric")

    def baseline(self, baseline_id: str) -> Baseline:
        return _by_id(self.baselines, baseline_id, "baseline")

    def trigger(self, trigger_id: str) -> Trigger:
        return _by_id(self.triggers, trigger_id, "trigger")

    def periods(self) -> tuple[Period, ...]:
        return self.timeline.period_list()

    def determination_schedule(self) -> tuple[ScheduledDetermination, ...]:
        """The determinations the deal makes, amendments included, in order of period end.

        Without amendments: the declared determinations (or one per period, the last one
        final).  An amendment changes the schedule from its effective date: a determination
        whose period ended before the amendment took effect was made under the terms then
        in force and stays as it was; the others are those of the amended terms (moved,
        added or removed by the amendment).  So a determination brought forward past an
        amendment's date is made once, as amended, and one already made is never remade.
        """
        signed = self._signed or self
        dates = sorted({a.effective for a in signed.amendments})
        eras: list[tuple[date | None, Contract]] = [(None, signed)] + [(d, signed.at(d)) for d in dates]
        done: dict[str, ScheduledDetermination] = {}
        for i, (_, terms) in enumerate(eras):
            until = eras[i + 1][0] if i + 1 < len(eras) else None
            for item in terms._declared_schedule():
                if item.id in done:
                    continue
                if until is None or item.period.end < until:
                    done[item.id] = item
        return tuple(sorted(done.values(), key=lambda x: x.period.end))

    def _declared_schedule(self) -> tuple[ScheduledDetermination, ...]:
        periods = self.periods()
        if self.timeline.determinations:
            by_id = {p.id: p for p in periods}
            return tuple(ScheduledDetermination(d.id, d.kind, by_id[d.period], d.data_cutoff, d.payment_lag_days,
                                                d.clause) for d in self.timeline.determinations)
        return tuple(ScheduledDetermination(p.id, "final" if i == len(periods) - 1 else "interim", p, None, None, None)
                     for i, p in enumerate(periods))

    @property
    def in_force_on(self) -> date | None:
        """The date this view of the terms is for, or None for the contract as signed."""
        return self._in_force_on

    @property
    def applied_amendments(self) -> tuple[Amendment, ...]:
        if self._in_force_on is None:
            return ()
        return tuple(a for a in self.amendments if a.effective <= self._in_force_on)

    # -- amendments ----------------------------------------------------------------
    def at(self, on: date) -> "Contract":
        """The terms in force on ``on``: the contract as signed with every amendment
        effective on or before that date applied, in order of effective date.

        The result remembers the date (``in_force_on``) and the amendments applied; calling
        ``at`` on it starts again from the contract as signed.
        """
        signed = self._signed or self
        body = _as_lists(signed.model_dump(mode="python", round_trip=True))
        for amendment in sorted(signed.amendments, key=lambda a: a.effective):
            if amendment.effective > on:
                continue
            for i, change in enumerate(amendment.changes):
                try:
                    _apply_change(body, change)
                except AmendmentError as exc:
                    raise AmendmentError(
                        f"amendment '{amendment.id}' change {i + 1}: {exc}", amendment.id, i
                    ) from None
        view = type(self).model_validate(body)
        view._in_force_on = on
        view._signed = signed
        return view


_T = TypeVar("_T")


def _by_id(items: Iterable[_T], key: str, what: str) -> _T:
    items = tuple(items)
    for item in items:
        if getattr(item, "id", None) == key:
            return item
    known = ", ".join(str(getattr(i, "id", "?")) for i in items) or "none"
    raise KeyError(f"no {what} '{key}' (known: {known})")


_ITEM_KEYS = ("id", "metric", "party")


def _as_lists(value: Any) -> Any:
    """A dumped model with its tuples turned into lists, so amendments can edit it."""
    if isinstance(value, dict):
        return {k: _as_lists(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_as_lists(v) for v in value]
    return value


def _find_item(items: list[Any], name: str) -> int:
    for i, item in enumerate(items):
        if isinstance(item, dict) and any(item.get(k) == name for k in _ITEM_KEYS):
            return i
    raise AmendmentError(f"no item named '{name}'")


def _walk(body: dict[str, Any], path: str) -> tuple[Any, str | int]:
    """Return the container holding the last segment of ``path`` and that segment."""
    parts = path.split(".")
    node: Any = body
    for depth, part in enumerate(parts[:-1]):
        if isinstance(node, dict):
            if part not in node:
                raise AmendmentError(f"path '{path}': no key '{part}'")
            node = node[part]
        elif isinstance(node, list):
            node = node[_find_item(node, part)]
        else:
            raise AmendmentError(f"path '{path}': '{'.'.join(parts[:depth])}' has no parts")
    last = parts[-1]
    if isinstance(node, list):
        return node, _find_item(node, last)
    if isinstance(node, dict):
        return node, last
    raise AmendmentError(f"path '{path}' does not lead to a value")


def _apply_change(body: dict[str, Any], change: Change) -> None:
    if change.set is not None:
        container, key = _walk(body, change.set)
        if isinstance(container, dict) and key not in container:
            raise AmendmentError(f"path '{change.set}': no key '{key}'")
        container[key] = copy.deepcopy(change.to)
    elif change.remove is not None:
        container, key = _walk(body, change.remove)
        if isinstance(container, dict):
            if key not in container:
                raise AmendmentError(f"path '{change.remove}': no key '{key}'")
            container[key] = None
        else:
            del container[key]
    else:  # pragma: no cover - prevented by consistency checks
        raise AmendmentError("a change needs 'set' or 'remove'")
