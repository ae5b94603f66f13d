"""One simulated world, written out as measured data and run through the exact path
(layer 2).

:func:`world_data` turns world ``i`` of a :class:`~sib_engine.simulation.world.World` into
a submission in the measured-data format (``docs/measured-data.md``): an enrolment row per
participant, an outcome row per outcome.  Participants of cohort ``k`` are
``c<k>-t<j>`` (treated) and ``c<k>-k<j>`` (comparison), so that they sort by cohort.
Participant ``j`` has an outcome of a rate metric when ``j`` is below the world's count, so
those with an outcome are nested within those with its prerequisites; a count metric's
total is spread as evenly as whole numbers allow (or with the world's spread, where the
assumption gives an ``sd``); every participant has one measurement of
a continuous metric, in hundredths, as :func:`~sib_engine.simulation.world.continuous_values`
spreads the world's total.

:func:`exact_world` evaluates that data with :func:`sib_engine.evaluate`, drops the
payments the world's payers failed to budget (their positive lines of that determination;
clawbacks owed to them stand), runs :func:`sib_engine.waterfall.run_waterfall`
and :func:`sib_engine.returns.funder_returns`: the exact path's figures of the world, for
tests and for anyone who wants to see one world in full (with every trace).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

import numpy as np
import pandas as pd

from sib_engine.contract import ComparisonGroupBaseline
from sib_engine.evaluation import Evaluation, evaluate
from sib_engine.metrics import date_of, day_of
from sib_engine.returns import ReturnsResult, funder_returns
from sib_engine.simulation.plan import Plan, world_person
from sib_engine.simulation.world import World, continuous_values
from sib_engine.waterfall import OutcomePayment, WaterfallResult, payments_from_evaluation, run_waterfall


def comparison_group_name(plan: Plan) -> str:
    for b in plan.contract.baselines:
        if isinstance(b, ComparisonGroupBaseline):
            return b.group
    return "comparison"


def world_data(plan: Plan, world: World, i: int) -> pd.DataFrame:
    """World ``i`` as measured data (typed columns, one row per enrolment and outcome)."""
    c = plan.contract
    t = plan.timing(int(world.delay[i]))
    age, prior = world_person(c)
    group_c = comparison_group_name(plan)
    rows: list[tuple[Any, ...]] = []
    for ci, cohort in enumerate(plan.cohorts):
        enrol = date_of(int(t.enrol_day[ci]))
        groups = [("t", "treatment", int(world.n_t[i, ci]), world.x_t[i, :, ci], world.s_t[i, :, ci])]
        if int(world.n_c[i, ci]):
            groups.append(("k", group_c, int(world.n_c[i, ci]), world.x_c[i, :, ci], world.s_c[i, :, ci]))
        munis = residents(plan, world, i, ci)
        for letter, group, n, x, spread in groups:
            ids = [f"c{ci:03d}-{letter}{j:06d}" for j in range(n)]
            for j, pid in enumerate(ids):
                mun = (munis[j] if letter == "t" else plan.munis[0]) if plan.munis else None
                rows.append((pid, "enrolment", enrol, None, cohort, group, age, prior, mun))
            for mi, m in enumerate(plan.metrics):
                if group != "treatment" and not m.comparison:
                    continue
                on = date_of(int(t.measure_day[mi, ci]))
                total = int(x[mi])
                if m.type == "continuous":
                    for j, v in enumerate(continuous_values(total, n, int(spread[mi]))):
                        rows.append((ids[j], m.id, on, Decimal(v).scaleb(-2), None, None, None, None, None))
                elif m.type in ("binary", "event"):
                    for j in range(min(total, n)):
                        rows.append((ids[j], m.id, on, Decimal(1), None, None, None, None, None))
                elif n:
                    for j, v in enumerate(continuous_values(total, n, int(spread[mi]))):
                        if v:
                            rows.append((ids[j], m.id, on, Decimal(v), None, None, None, None, None))
    cols = ["participant_id", "metric", "date", "value", "cohort", "group", "age", "prior_months", "municipality"]
    df = pd.DataFrame(rows, columns=cols)
    if not plan.munis:
        df = df.drop(columns="municipality")
    df.insert(0, "contract_version", c.version)
    df.insert(0, "contract_id", c.id)
    df["date"] = pd.to_datetime(df["date"])
    return df


def residents(plan: Plan, world: World, i: int, ci: int) -> list[str]:
    """The municipality of each enrolled participant of cohort ``ci`` in world ``i``, in
    participant order, as ``World.mu`` counts them: the prefixes of those with each outcome
    (shortest first) hold the world's count of each municipality's residents (the
    comparison group is written with the first municipality; no split reads it).  Empty
    without payers by residence."""
    if not plan.munis:
        return []
    n = int(world.n_t[i, ci])
    nm = len(plan.metrics)
    mu = world.mu[i, :, ci, :]
    lens = [min(int(world.x_t[i, mi, ci]), n) for mi in range(nm)] + [n]
    out: list[str] = []
    placed = np.zeros(len(plan.munis), dtype=np.int64)
    for q in sorted(range(nm + 1), key=lambda k: lens[k]):
        if lens[q] == len(out):
            continue
        for m, k in enumerate(mu[q] - placed):
            out += [plan.munis[m]] * int(k)
        placed = mu[q].copy()
    assert len(out) == n
    return out


@dataclass(frozen=True)
class ExactWorld:
    """The exact path's figures of one world."""

    evaluation: Evaluation
    payments: tuple[OutcomePayment, ...]
    """The payment lines that were paid (appropriation failures removed)."""
    waterfall: WaterfallResult
    returns: ReturnsResult

    def by_payer(self) -> dict[str, Decimal]:
        out: dict[str, Decimal] = {}
        for p in self.payments:
            out[p.payer] = out.get(p.payer, Decimal(0)) + p.amount
        return out

    def by_trigger(self) -> dict[str, Decimal]:
        out: dict[str, Decimal] = {}
        for p in self.payments:
            key = p.trigger or ""
            out[key] = out.get(key, Decimal(0)) + p.amount
        return out


def exact_world(plan: Plan, world: World, i: int) -> ExactWorld:
    """Evaluate world ``i`` with the exact path, end to end."""
    c = plan.contract
    ev = evaluate(c, world_data(plan, world, i))
    failed = {(plan.payers[p].party, plan.dets[k].id)
              for p in range(len(plan.payers)) for k in range(len(plan.dets)) if world.fail[i, p, k]}
    lines = tuple(p for p in payments_from_evaluation(ev)
                  if p.amount < 0 or (p.payer, p.determination) not in failed)
    wf = run_waterfall(c, lines)
    roles = {p.id: p.role for p in c.parties}
    return ExactWorld(ev, lines, wf, funder_returns(wf, roles=roles))


def flows_on(days: np.ndarray, flows: tuple[tuple[date, Decimal], ...], minor: int) -> np.ndarray:
    """Dated flows on a grid of day numbers (minor units)."""
    index = {int(d): j for j, d in enumerate(days)}
    out = np.zeros(len(days))
    for d, a in flows:
        out[index[day_of(d)]] += float(a.scaleb(minor))
    return out
