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
sizes (binomial for rates, Poisson for counts): that draw is the evaluator's sampling
noise, and the contract's own named test judges it.  Every participant of a cohort enrols
on the cohort's ``enrolment_start`` (plus the delay); each outcome of a metric is recorded
``measured_after_months`` after enrolment (and after its prerequisites); each participant
reaches each outcome at most once, and a participant with an outcome has all its
prerequisites (the participants with an outcome are nested within those with its
prerequisites).

**What the vectorised path supports** (:func:`~sib_engine.simulation.plan.compile_plan`
raises :class:`SimulationError` naming every other mechanism of a contract, never a silently
wrong answer):

- metrics of type ``binary``, ``event``, ``count`` and ``duration``;
- baselines ``fixed``, ``historical`` and ``comparison_group`` (estimator ``difference``);
- effect measures ``level``, ``difference``, ``relative_difference``, ``reduction``,
  ``relative_reduction``; gates with ``rule: significant`` and the two-proportion z-test
  (one- or two-sided) on binary metrics;
- triggers ``rate_card`` (prices, prerequisites, ``cap_units``, ``cap_amount``, the
  trigger's ``cap_per_period`` and ``cap``; ``cap_per_participant`` only where it can never
  bind, as one participant reaches each outcome at most once), ``threshold`` (step and
  linear schedules, minimum effect, maximum; ``pays`` amount, per participant or per
  unit; pooled or per cohort), ``cohort_with_pooled_fallback`` and ``share_of_savings``
  without ``share_steps``;
- contract caps ``total`` and ``per_period`` (``per_participant`` where it cannot bind);
- payers with fixed shares, top-up funds, and payer caps;
- determinations (interim and final, data cutoffs, payment lags); cumulative
  re-determination with true-ups and clawbacks;
- the capital stack: any tranche kind with explicit or scheduled drawdowns, coupons with
  simple or compounding interest and any day count, maturity; waterfall steps
  ``interest``, ``principal``, ``fee``, ``costs``, ``bonus`` and ``residual`` with splits;
  recycling; guarantees (share and/or amount, principal or principal and interest, the
  settlement date, reimbursement from later receipts); clawbacks owed to payers.

Not supported: amendments, residence-based payer splits, ``banded_return`` triggers,
``share_steps``, ``max_return``, ``expected_duration`` and ``blended`` baselines,
difference-in-differences, ``continuous`` metrics, the ``lower_bound`` gate rule, the
Welch and Poisson tests as gates, a gate on a ``level`` measure.

**How it stays exact.**  Money is held in integers (units of ``10**-scale`` of the
currency) wherever the exact path is exact: prices, caps, splits by largest remainder,
top-ups, guarantees.  Two computations are floating point in the exact path's own terms
as well (28-digit ``Decimal``): the payment a schedule reads off a measured effect, and
interest accrued.  The vectorised path computes them in float64 and flags every world
where a float result lies within a small multiple of its rounding error of a decision (a
schedule point, a significance level, half a cent): those few worlds are recomputed with
the exact path's own ``Decimal`` arithmetic (the schedule amounts, memoised by their
inputs) or its own waterfall (:func:`sib_engine.waterfall.run_waterfall`).  The test
``tests/test_simulation_exact.py`` checks both paths on random worlds, to the cent.
"""

from __future__ import annotations

from sib_engine.simulation.plan import Plan, SimulationError, compile_plan

__all__ = ["Plan", "SimulationError", "compile_plan"]
