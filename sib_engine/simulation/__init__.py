"""The vectorised evaluator: a contract's semantics over many simulated worlds at once
(layer 2: pure computation with numpy and scipy).

One contract, two evaluators, one truth (DESIGN.md section 4).  The exact path
(:func:`sib_engine.evaluate`, :func:`sib_engine.waterfall.run_waterfall`) determines one
world in ``Decimal`` with a trace for every amount; this package determines many worlds at
once in numpy, and for every world it gives the same payments per payer and trigger and
the same cash flows per funder, to the cent.  A world is the data an evaluator would
receive (:func:`~sib_engine.simulation.exact.world_data` writes it out in the
measured-data format, so that the exact path can be run on it and compared).

What a simulated world is (:mod:`~sib_engine.simulation.world`): the true effect of the
programme on each metric (the contract's ``simulation`` assumptions, a Gaussian copula for
their correlation), the cohorts' enrolment (a share of each cohort's target size), attrition,
a programme-wide start delay in whole months, a drift of the counterfactual, the payers'
appropriation failures, and the outcomes the evaluator measures, drawn from the cohort
sizes (binomial for rates, Poisson for counts, for a continuous value the sample mean and
standard deviation of normal measurements): that draw is the evaluator's sampling
noise, and the contract's own named test judges it.  Every participant of a cohort enrols
on the cohort's ``enrolment_start`` (plus the delay); each outcome of a metric is recorded
``measured_after_months`` after enrolment (and after its prerequisites); each participant
reaches each outcome at most once, and a participant with an outcome has all its
prerequisites (the participants with an outcome are nested within those with its
prerequisites).

**What the vectorised path supports** (:func:`~sib_engine.simulation.plan.compile_plan`
raises :class:`SimulationError` naming every other mechanism of a contract, never a silently
wrong answer):

- metrics of type ``binary``, ``event``, ``count``, ``duration`` and ``continuous`` (every
  enrolled participant measured once, in whole hundredths; the simulation's assumption
  gives the standard deviation between participants as ``sd``; not with prerequisites, as
  one, or under a pooled fallback);
- baselines ``fixed``, ``historical``, ``comparison_group`` (estimators ``difference`` and
  ``difference_in_differences``: the ``pre_metric`` is drawn for both groups a month
  before enrolment, without the effect; the Welch test runs on per-participant gains, the
  others on the normal approximation, as the exact path does), ``expected_duration`` (every
  simulated participant has the eligibility's lowest age and prior months, so one table
  row, prorated to each cutoff; actual days counted over the horizon; the paired t-test,
  the exact Poisson test or the normal approximation, as the exact path runs them) and
  ``blended`` (of fixed, historical and comparison-group baselines);
- effect measures ``level``, ``difference``, ``relative_difference``, ``reduction``,
  ``relative_reduction``; gates with either rule (``significant``: pays the estimate if
  the test rejects; ``lower_bound``: pays on the conservative end of the confidence
  interval, at the 12 significant digits the exact path keeps), one- or two-sided, with
  each named test the exact path runs: the two-proportion z-test, the Welch t-test (two
  samples, or one against a fixed value; on the per-participant values a world spreads as
  :func:`~sib_engine.simulation.exact.world_data` writes them out) and the Poisson rate
  ratio test (one-sided p-values in float64; two-sided p-values and ``lower_bound``
  bounds, which scipy finds by search, are computed exactly for every world, memoised by
  the scope's counts, which is slower); a gate on a ``level`` measure (the exact path's
  normal approximation of the level against zero);
- triggers ``rate_card`` (prices, prerequisites, ``cap_units``, ``cap_amount``,
  ``cap_per_participant``, the trigger's ``cap_per_period`` and ``cap``; a binding
  per-participant cap reads each participant's outcomes, which the counts determine:
  see :func:`~sib_engine.simulation.payments.participant_caps`), ``threshold`` (step and
  linear schedules, minimum effect, maximum; ``pays`` amount, per participant or per
  unit; pooled or per cohort), ``cohort_with_pooled_fallback`` and ``share_of_savings``
  with ``share_steps`` as the exact waterfall applies them (each of the trigger's positive
  lines rescaled on its payment date to the share of the last step whose ``after_return``
  the funders' drawdowns and receipts before that date reach: ``round_money(line x step
  share / share)``; see :func:`~sib_engine.simulation.cashflows.run`);
- contract caps ``total``, ``per_period`` and ``per_participant`` (where it can bind, only
  without a rate card's ``cap_per_period`` or ``cap``, which apply before it and cut a
  participant's claims where the counts do not say);
- payers with fixed shares, top-up funds, and payer caps;
- payers by residence (each municipality pays for its own residents): the world draws each
  cohort's participants' municipalities after every other draw (a multinomial in equal
  shares among the residence payers' codes, then a random order of the participants kept as
  the residents among those reaching each outcome, by sequential hypergeometric draws over
  the nested prefixes), which :func:`~sib_engine.simulation.exact.world_data` writes out in
  the ``municipality`` column; a rate card's amount is split by what it pays for each
  municipality's residents, a schedule-based amount by the scope's members (a pooled
  fallback's: of the cohorts without their own payment), cumulatively, by largest
  remainder (ties as ``money.allocate`` breaks them in ``Decimal``); with payer caps,
  top-ups and ``caps.total``, not with caps that cut a rate card's claims
  (``cap_units``, ``cap_amount``, a binding ``cap_per_participant``, ``cap_per_period``, a
  card's ``cap``, a binding ``caps.per_participant``, ``caps.per_period``), amendments, or
  payers by fixed share besides;
- determinations (interim and final, data cutoffs, payment lags); cumulative
  re-determination with true-ups and clawbacks;
- amendments, read as the exact path reads them (:func:`~sib_engine.simulation.plan.amendment_problems`):
  a rate card's outcome ``price`` in force on the event's date; caps (``caps.total``,
  ``per_period``, ``per_participant``, a trigger's ``cap``, a rate card's ``cap_per_period``
  and ``cap_per_participant``, an outcome's ``cap_units`` and ``cap_amount``) in force at the
  end of each determination's period, applied to every row up to it; a schedule-based trigger's
  ``schedule`` and ``pays`` (threshold), ``per_cohort`` and ``pooled_fallback`` (cohort
  trigger), ``share`` and ``unit_cost`` (share of savings) in force at the end of each
  determination's period; a cohort removed (a rate card pays none of its events from the
  amendment's date; a determination whose period ends after it leaves it out of every
  scope, keeping what was determined for it before); a cohort's ``target_size`` (the world
  enrols from the size in force when the cohort opens: none for a cohort removed before);
  ``term.start``/``term.end`` (a rate card's events outside the term in force on their
  date); ``timeline.payment_lag_days`` (in force at the end of the period); changes to
  ``timeline.periods``, ``timeline.determinations`` and a cohort's ``enrolment_end``, which the
  exact path reads as signed (so does the vectorised path); wording (clauses, names);
- the capital stack: any tranche kind with explicit or scheduled drawdowns, coupons with
  simple or compounding interest and any day count, maturity; waterfall steps
  ``interest``, ``principal``, ``fee``, ``costs``, ``bonus`` and ``residual`` with splits;
  recycling; guarantees (share and/or amount, principal or principal and interest, the
  settlement date, reimbursement from later receipts); clawbacks owed to payers.

Not supported: amendments of anything else (payers and their caps, metrics and their
prerequisites, baselines, a trigger's effect or gate, ``max_claims``, a ``fallback_determination``,
triggers or outcomes added or removed, the capital stack: the plan fixes them once per
contract), and any amendment while a tranche accrues 30/360 interest across
a date it could split unevenly (the exact waterfall accrues in two pieces across an
amendment's date; 30/360 does not add up across a 30th or 31st); payers by residence with caps that cut a rate
card's claims (the split would depend on the municipalities of the participants at the cut
point), with amendments or with payers by fixed share, ``banded_return`` triggers,
``share_steps`` of a trigger an amendment changes, ``max_return`` of -100% or less, blends of ``expected_duration``
baselines, an expected-duration table without a row for the simulated participants,
difference in differences on a continuous metric or whose ``pre_metric``
is also paid on, a continuous metric with prerequisites (or as one) or under a pooled
fallback, an ``sd`` for a count with prerequisites (or as one, or as a ``pre_metric``), a
Welch test against a historical baseline without ``sd`` (the exact path cannot run it
either), a binding ``caps.per_participant`` behind a rate card's ``cap_per_period`` or
``cap``.

Counts and durations without an ``sd`` in their assumption are spread as evenly as whole
numbers allow, so that a t-test on them (a Welch gate, the standard error of a level or of
a blend) sees almost no spread between participants and rejects far more often than on
real data: give the assumption an ``sd`` where a contract tests a count.

**How it stays exact.**  Money is held in integers (units of ``10**-scale`` of the
currency) wherever the exact path is exact: prices, caps, splits by largest remainder,
top-ups, guarantees.  Two computations are floating point in the exact path's own terms
as well (28-digit ``Decimal``): the payment a schedule reads off a measured effect, and
interest accrued.  The vectorised path computes them in float64 and flags every world
where a float result lies within a small multiple of its rounding error of a decision (a
schedule point, a significance level, a tie in the twelfth significant digit of a
confidence bound, half a cent, a funders' return within ``1e-9`` of a share step: decided
again with the exact waterfall's ``achieved_return``): those few worlds are recomputed with the exact path's own
tests (:class:`sib_engine.baselines.Comparison` on the world's per-participant values) and
``Decimal`` arithmetic (the schedule amounts, memoised by their inputs) or its own waterfall (:func:`sib_engine.waterfall.run_waterfall`).  The test
``tests/test_simulation_exact.py`` checks both paths on random worlds, to the cent.
"""

from __future__ import annotations

from sib_engine.simulation.plan import Plan, SimulationError, compile_plan

__all__ = ["Plan", "SimulationError", "compile_plan"]
