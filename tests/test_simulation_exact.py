"""One contract, two evaluators, one truth: the vectorised path agrees with the exact path
to the cent on random worlds.

Each world the vectorised evaluator simulates is written out as measured data
(:func:`sib_engine.simulation.exact.world_data`) and evaluated by
:func:`sib_engine.evaluate`; its payment lines (less the payments the world's payers failed
to budget) go through :func:`sib_engine.waterfall.run_waterfall` and
:func:`sib_engine.returns.funder_returns`.  Per world the two paths must give the same
payments per payer and per trigger (to the cent), the same cash flows per funder on every
date (to the cent), the same guarantee payments, and the same IRR (to 1e-9).

The contracts cover: rate cards with prerequisites and caps (units, amount, per period,
trigger), threshold step and linear schedules with comparison groups (a binary metric, the
two-proportion z-test as a gate, one- and two-sided), a fixed and a historical baseline,
per-cohort scopes, a cohort trigger with a pooled fallback, share of savings, payer shares
with payer caps, a top-up fund with its cap, the contract's total and per-period caps,
determinations with cutoffs before and after the period's end, the capital stack (senior
and junior loans, simple and compounding interest under three day counts, quasi-equity
capped by max_return, explicit and scheduled drawdowns, maturity), costs, bonus and
residual steps with splits, recycling, guarantees of principal and of principal and
interest (with a share, an amount, a date or at the close), appropriation failures, start
delays, attrition, enrolment shortfalls, drift and correlated effects.

Random contracts add: gates with either rule (``significant``, ``lower_bound``), one- or
two-sided, with each named test (two-proportion z, Welch t, Poisson rate ratio) against a
fixed, historical or comparison-group baseline, and gates on level measures, on binary,
event and count metrics, paying amounts, per participant or per unit, pooled, per cohort or
with a pooled fallback (:func:`random_gated_contract`), and with it continuous metrics,
counts spread by an ``sd``, difference-in-differences and blended baselines; rate cards with
nested outcomes whose ``cap_per_participant`` and ``caps.per_participant`` bind, after
``cap_units`` and ``cap_amount`` (:func:`random_card_contract`).  On many more worlds, the
float64 amounts are checked against recomputing every world exactly
(:func:`test_vectorised_gates_equal_their_exact_recompute`).
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import numpy as np
import pytest

from sib_engine.loader import load_contract
from sib_engine.metrics import day_of
from sib_engine.simulation.exact import exact_world, world_data
from sib_engine.simulation.kernel import Runner
from sib_engine.simulation.plan import SimulationError, compile_plan
from sib_engine.simulation.world import draw

ROOT = Path(__file__).resolve().parent.parent
CONTRACTS = {
    "reference": ROOT / "benchmarks" / "reference_deal.yaml",
    "gated_shares": ROOT / "tests" / "data" / "simulation" / "gated_shares.yaml",
    "rate_card_savings": ROOT / "tests" / "data" / "simulation" / "rate_card_savings.yaml",
    "brussels": ROOT / "contracts" / "brussels_mentoring_2014.yaml",
    "life_chances": ROOT / "contracts" / "life_chances_topup_2019.yaml",
    "fair_chance": ROOT / "contracts" / "fair_chance_fund_2015.yaml",
    "peterborough": ROOT / "contracts" / "peterborough_reoffending_2010.yaml",
}

CENT = Decimal("0.01")


def _money(x: float) -> Decimal:
    return Decimal(repr(float(x))).quantize(CENT)


def check_agreement(name: str, worlds: int, seed: int) -> int:
    """Compare both paths on ``worlds`` worlds; return how many were repaired (recomputed
    exactly by the vectorised path itself)."""
    contract = CONTRACTS_OBJ[name] if name in CONTRACTS_OBJ else load_contract(CONTRACTS[name])
    plan = compile_plan(contract)
    runner = Runner(plan)
    world = draw(plan, seed, 0, worlds)
    vec = runner.run(seed, 0, worlds, truth=False)
    lay = runner.layout
    cols = {int(lay.days[c]): j for j, c in enumerate(lay.flow_cols)}
    q = 10**plan.minor
    for i in range(worlds):
        ex = exact_world(plan, world, i)
        where = f"{name} world {i} (seed {seed})"
        by_payer = ex.by_payer()
        for j, payer in enumerate(plan.payers):
            assert _money(vec.paid_by_payer[i, j]) == by_payer.get(payer.party, Decimal(0)), f"{where}: {payer.party}"
        by_trigger = ex.by_trigger()
        for j, tid in enumerate(plan.trigger_ids):
            assert _money(vec.paid_by_trigger[i, j]) == by_trigger.get(tid, Decimal(0)), f"{where}: {tid}"
        returns = {f.party: f for f in ex.returns.funders}
        flows = runner.chunk_flows  # the last chunk's per-world cash flows (minor units)
        for f, pi in enumerate(lay.funders):
            party = lay.parties[pi]
            r = returns[party]
            assert _money(vec.invested[i, f]) == r.invested, f"{where}: {party} invested"
            assert _money(vec.received[i, f]) == r.received, f"{where}: {party} received"
            assert _money(vec.guarantee_received[i, f]) == r.guarantee_received, f"{where}: {party} guarantee"
            want = np.zeros(len(lay.flow_cols))
            for d, a in r.flows:
                want[cols[day_of(d)]] += float(a) * q
            assert np.array_equal(np.round(flows[i, f]), np.round(want)), f"{where}: {party} cash flows"
            if r.irr.ok:
                assert abs(vec.irr[i, f] - r.irr.rate) < 1e-9, f"{where}: {party} IRR"
            else:
                assert np.isnan(vec.irr[i, f]), f"{where}: {party} has no IRR"
        for g, pi in enumerate(lay.guarantors):
            party = lay.parties[pi]
            r = returns[party]
            assert _money(vec.guarantor_paid[i, g]) == r.guarantee_paid, f"{where}: {party} paid"
            assert _money(vec.guarantor_recovered[i, g]) == r.received, f"{where}: {party} recovered"
        assert ex.waterfall.conservation().exact
    return int(vec.repaired.sum())


@pytest.mark.parametrize("name", sorted(CONTRACTS))
def test_both_paths_agree_to_the_cent(name: str) -> None:
    check_agreement(name, worlds=10, seed=101)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["gated_shares", "rate_card_savings", "brussels"])
def test_both_paths_agree_on_more_worlds(name: str) -> None:
    check_agreement(name, worlds=40, seed=202)


def test_world_data_is_measured_data() -> None:
    """A world written out is a submission the exact path reads: every participant enrolled
    once, outcomes only for enrolled participants, counts as the world says."""
    contract = load_contract(CONTRACTS["reference"])
    plan = compile_plan(contract)
    world = draw(plan, 5, 0, 3)
    frame = world_data(plan, world, 1)
    enrol = frame[frame["metric"] == "enrolment"]
    assert enrol["participant_id"].is_unique
    assert len(enrol) == int(world.n_t[1].sum() + world.n_c[1].sum())
    outcomes = frame[frame["metric"] == "employed"]
    treated = outcomes[outcomes["participant_id"].str.contains("-t")]
    assert len(treated) == int(world.x_t[1].sum())
    assert set(outcomes["participant_id"]) <= set(enrol["participant_id"])


def test_worlds_near_a_rounding_tie_are_recomputed_exactly() -> None:
    """A world flagged by the vectorised waterfall is recomputed by the exact waterfall, and
    the figures it reports then are the exact path's."""
    contract = load_contract(CONTRACTS["reference"])
    plan = compile_plan(contract)
    runner = Runner(plan)
    res = runner.run(3, 0, 6, truth=False)
    # force a repair of every world: the repaired figures must equal the unrepaired ones
    import sib_engine.simulation.cashflows as cf

    old = cf.HALF_TOL
    cf.HALF_TOL = 1.0  # every rounding "too close to call"
    try:
        forced = runner.run(3, 0, 6, truth=False)
    finally:
        cf.HALF_TOL = old
    assert forced.repaired.all()
    for field in ("invested", "received", "guarantee_received", "guarantor_paid", "guarantor_recovered"):
        assert np.allclose(getattr(forced, field), getattr(res, field), atol=1e-9), field
    assert np.allclose(forced.irr, res.irr, atol=1e-9, equal_nan=True)


# ------------------------------------------------------- random gated contracts ---

import random  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402

import yaml  # noqa: E402

from sib_engine.contract import Amendment, Contract  # noqa: E402
from sib_engine.loader import parse_contract  # noqa: E402

GATE_TESTS = {"hb": ["two_proportion_z"], "ev": ["poisson_rate_ratio"], "cnt": ["welch_t", "poisson_rate_ratio"],
              "bmi": ["welch_t"], "dur": ["welch_t"]}
"""Metric -> the named tests that apply to it (``contract.STAT_TESTS``)."""
METRIC_TYPES = {"hb": "binary", "ev": "event", "cnt": "count", "bmi": "continuous"}
MEASURES = {"hb": ["difference", "relative_difference", "level"], "ev": ["difference", "relative_difference", "level"],
            "cnt": ["reduction", "relative_reduction", "level"],
            "bmi": ["reduction", "relative_reduction", "level", "difference"],
            "dur": ["reduction", "relative_reduction", "level"]}
POINTS = {
    ("hb", "difference"): [0.02, 0.08, 0.15], ("ev", "difference"): [0.02, 0.08, 0.15],
    ("hb", "relative_difference"): [0.05, 0.25, 0.5], ("ev", "relative_difference"): [0.05, 0.25, 0.5],
    ("hb", "level"): [0.25, 0.35, 0.45], ("ev", "level"): [0.25, 0.35, 0.45],
    ("cnt", "reduction"): [0.1, 0.3, 0.6], ("cnt", "relative_reduction"): [0.05, 0.15, 0.3],
    ("cnt", "level"): [1.2, 1.6, 2.0],
    ("bmi", "reduction"): [0.2, 0.6, 1.2], ("bmi", "relative_reduction"): [0.005, 0.02, 0.05],
    ("bmi", "level"): [26.0, 27.0, 28.0], ("bmi", "difference"): [-1.5, -0.8, 0.0],
    ("dur", "reduction"): [5.0, 20.0, 45.0], ("dur", "relative_reduction"): [0.03, 0.1, 0.2],
    ("dur", "level"): [100.0, 150.0, 200.0],
}
BASELINES = {
    "fixed": {"hb": {"value": 0.3}, "ev": {"value": 0.3}, "cnt": {"value": 2.0}, "bmi": {"value": 27.5}},
    "historical": {"hb": {"value": 0.3, "n": 150}, "ev": {"value": 0.31, "n": 140},
                   "cnt": {"value": 2.05, "n": 160, "sd": 1.45}, "bmi": {"value": 27.4, "n": 120, "sd": 4.1}},
}


@dataclass
class GatedSpec:
    """What a random gated contract is made of (for coverage checks)."""

    triggers: list[dict[str, object]] = field(default_factory=list)

    def has(self, **kw: object) -> bool:
        return any(all(t.get(k) == v for k, v in kw.items()) for t in self.triggers)


def random_gated_contract(rng: random.Random, pool: tuple[str, ...] = ("hb", "ev", "cnt"),
                          ungated: float = 0.0, did: bool = False,
                          blended: bool = False, count_sd: bool = False,
                          expected: bool = False, amend: bool = False) -> tuple[Contract, GatedSpec]:
    """A contract of two or three gated schedule triggers drawn at random: each on a binary,
    event or count metric, with a test that applies to it (or a gate on a level measure),
    either rule, one or two sides, a fixed, historical or comparison-group baseline, every
    way of paying, pooled or per cohort (or per cohort with a pooled fallback).  ``pool``:
    the metrics to draw from (``bmi`` is continuous); ``ungated``: the chance of no gate;
    ``did``: difference-in-differences baselines only (on a pre-enrolment measure);
    ``blended``: blends of two of fixed, historical, comparison-group and
    difference-in-differences baselines only; ``count_sd``: the count metric's values spread
    by an ``sd`` between participants; ``expected``: expected-duration baselines only (a table
    by age and prior months, over a horizon)."""
    spec = GatedSpec()
    baselines: dict[str, dict[str, object]] = {}
    triggers = []
    for k in range(rng.choice([2, 3])):
        mid = rng.choice(list(pool))
        measure = rng.choice(MEASURES[mid])
        test = rng.choice(GATE_TESTS[mid])
        if did and mid == "cnt" and rng.random() < 0.6:
            test = "welch_t"  # the gains test: the one a difference in differences has its own design for
        kind = "none" if measure == "level" else (
            "did" if did else "blended" if blended else "expected" if expected
            else rng.choice(["fixed", "historical", "comparison"]))
        rule = rng.choice(["significant", "lower_bound"])
        sides = rng.choice(["one", "two"])
        level = rng.choice([0.05, 0.1, 0.2])
        effect: dict[str, object] = {"metric": mid, "measure": measure,
                                     "gate": {"test": test, "level": level, "sides": sides, "rule": rule}}
        if ungated and rng.random() < ungated:
            effect.pop("gate")
            test = rule = "none"
        if kind != "none":
            bid = f"{kind}_{mid}"
            if kind == "comparison":
                baselines[bid] = {"id": bid, "kind": "comparison_group", "metric": mid, "design": "matched",
                                  "group": "matched"}
            elif kind == "did":
                baselines[bid] = {"id": bid, "kind": "comparison_group", "metric": mid, "design": "matched",
                                  "group": "matched", "estimator": "difference_in_differences",
                                  "pre_metric": f"{mid}_pre"}
            elif kind == "expected":
                baselines[bid] = {"id": bid, "kind": "expected_duration", "metric": mid,
                                  "horizon_days": rng.choice([300, 365, 500]), "table": [
                                      {"age_min": 18, "age_max": 29, "prior_months_min": 0, "prior_months_max": 60,
                                       "expected_days": 200 if mid == "dur" else 3},
                                      {"age_min": 30, "age_max": 65, "prior_months_min": 0, "prior_months_max": 11,
                                       "expected_days": 150 if mid == "dur" else 2},
                                      {"age_min": 30, "age_max": 65, "prior_months_min": 12, "prior_months_max": 60,
                                       "expected_days": 240 if mid == "dur" else 2.2}]}
            elif kind == "blended":
                kinds = rng.sample(["fixed", "historical", "comparison", "did"], 2)
                w = rng.choice([0.2, 0.5, 0.8])
                comps = []
                for ck in kinds:
                    cid = f"{ck}_{mid}"
                    comps.append({"baseline": cid, "weight": w if not comps else round(1 - w, 1)})
                    if ck == "comparison":
                        baselines[cid] = {"id": cid, "kind": "comparison_group", "metric": mid, "design": "matched",
                                          "group": "matched"}
                    elif ck == "did":
                        baselines[cid] = {"id": cid, "kind": "comparison_group", "metric": mid, "design": "matched",
                                          "group": "matched", "estimator": "difference_in_differences",
                                          "pre_metric": f"{mid}_pre"}
                    else:
                        baselines[cid] = {"id": cid, "kind": ck, "metric": mid, **BASELINES[ck][mid]}
                baselines[bid] = {"id": bid, "kind": "blended", "metric": mid, "components": comps}
                kind = "blended:" + "+".join(kinds)
            else:
                baselines[bid] = {"id": bid, "kind": kind, "metric": mid, **BASELINES[kind][mid]}
            effect["baseline"] = bid
        pays = rng.choice(["amount", "per_participant", "per_unit"])
        scale = {"amount": 40000, "per_participant": 300, "per_unit": 1500}[pays]
        values = sorted(round(scale * rng.uniform(0.5, 1.5), 2) for _ in range(3))
        pts = [{"effect": e, "value": f"{v:.2f}"} for e, v in zip(POINTS[(mid, measure)], values)]
        schedule = {"interpolation": rng.choice(["step", "linear"]), "points": pts}
        tid = f"t{k}"
        if mid != "bmi" and rng.random() < 0.25:
            fb_pays = rng.choice(["amount", "per_participant", "per_unit"])
            fb_scale = {"amount": 40000, "per_participant": 300, "per_unit": 1500}[fb_pays]
            fb_pts = [{"effect": p["effect"], "value": f"{fb_scale * (1 + i) / 2:.2f}"} for i, p in enumerate(pts)]
            triggers.append({"id": tid, "kind": "cohort_with_pooled_fallback", "clause": f"Art. {k}", "effect": effect,
                             "per_cohort": {"pays": pays, "schedule": schedule},
                             "pooled_fallback": {"pays": fb_pays, "schedule": {"interpolation": "linear",
                                                                               "points": fb_pts}}})
            scope = "fallback"
        else:
            scope = rng.choice(["pooled", "per_cohort"])
            triggers.append({"id": tid, "kind": "threshold", "clause": f"Art. {k}", "effect": effect, "pays": pays,
                             "scope": scope, "schedule": schedule})
        spec.triggers.append({"metric": mid, "measure": measure, "test": test, "baseline": kind, "rule": rule,
                              "sides": sides, "pays": pays, "scope": scope})
    doc = {
        "format": "sib-contract/1", "id": "random-gates", "title": "Random gates (simulation test)",
        "currency": "EUR", "term": {"start": "2024-01-01", "end": "2027-12-31"},
        "parties": [{"id": "city", "name": "City", "role": "payer"},
                    {"id": "inv", "name": "Investor", "role": "investor"},
                    {"id": "ngo", "name": "Provider", "role": "provider"}],
        "payers": [{"party": "city", "share": 1}],
        "metrics": [{"id": "hb", "name": "Housed", "type": "binary", "window_months": 12},
                    {"id": "ev", "name": "Diploma", "type": "event"},
                    {"id": "cnt", "name": "Nights", "type": "count", "better": "lower", "unit": "night"},
                    {"id": "bmi", "name": "Body mass index", "type": "continuous", "better": "lower",
                     "unit": "kg/m2", "window_months": 15},
                    {"id": "dur", "name": "Benefit days", "type": "duration", "better": "lower", "unit": "day"},
                    {"id": "hb_pre", "name": "Housed before", "type": "binary"},
                    {"id": "ev_pre", "name": "Diploma before", "type": "event"},
                    {"id": "cnt_pre", "name": "Nights before", "type": "count", "unit": "night"}],
        "baselines": list(baselines.values()),
        "triggers": triggers,
        "timeline": {"periods": {"start": "2024-01-01", "months": 6, "count": 8}, "payment_lag_days": 30,
                     "cohorts": [{"id": "a", "enrolment_start": "2024-02-01", "enrolment_end": "2024-07-31",
                                  "target_size": rng.choice([25, 40, 60])},
                                 {"id": "b", "enrolment_start": "2024-09-01", "enrolment_end": "2025-02-28",
                                  "target_size": rng.choice([20, 35, 50])}]},
        "capital": {"service_budget": "150000.00",
                    "tranches": [{"id": "loan", "kind": "senior_loan", "funder": "inv", "commitment": "120000.00",
                                  "coupon": {"rate": 0.05, "compounding": "simple", "day_count": "act/365"}}],
                    "waterfall": [{"pay": "interest", "tranche": "loan"}, {"pay": "principal", "tranche": "loan"},
                                  {"pay": "residual", "split": {"ngo": 1}}]},
        "simulation": {
            "paths": 100, "seed": 1,
            "effects": [
                {"metric": "hb", "base": 0.3, "effect": {"kind": "normal", "mean": 0.08, "sd": 0.08},
                 "measured_after_months": 6},
                {"metric": "ev", "base": 0.3, "effect": {"kind": "normal", "mean": 0.06, "sd": 0.08},
                 "measured_after_months": 9},
                {"metric": "cnt", "base": 2.0, "effect": {"kind": "normal", "mean": -0.4, "sd": 0.4},
                 "measured_after_months": 12, **({"sd": 1.8} if count_sd else {})},
                {"metric": "bmi", "base": 27.5, "sd": 4.0, "effect": {"kind": "normal", "mean": -0.9, "sd": 0.6},
                 "measured_after_months": rng.choice([6, 12])},
            ] + ([
                {"metric": "dur", "base": 230, "sd": 110, "effect": {"kind": "normal", "mean": -25, "sd": 20},
                 "measured_after_months": rng.choice([6, 9, 11, 14])},
            ] if expected else []) + ([
                {"metric": "hb_pre", "base": 0.25, "effect": {"kind": "fixed", "value": 0}},
                {"metric": "ev_pre", "base": 0.2, "effect": {"kind": "fixed", "value": 0}},
                {"metric": "cnt_pre", "base": 2.2, "effect": {"kind": "fixed", "value": 0}},
            ] if did or blended else []),
            "enrolment": {"fraction": {"kind": "triangular", "low": 0.7, "mode": 1, "high": 1.1},
                          "comparison_ratio": rng.choice([0.8, 1.0, 1.5])},
            "attrition": {"kind": "beta", "a": 2, "b": 10},
            "delay_months": {"kind": "empirical", "values": [0, 2]},
        },
    }
    if amend:
        doc["amendments"] = _gated_amendments(rng, triggers)
    return parse_contract(yaml.safe_dump(doc, sort_keys=False), "<random gates>"), spec


def _scaled_schedule(rng: random.Random, schedule: object) -> dict[str, object]:
    """``schedule`` with its values scaled by a random factor (a renegotiated schedule)."""
    assert isinstance(schedule, dict)
    k = rng.choice([0.5, 0.8, 1.25, 1.6])
    pts = [{"effect": p["effect"], "value": f"{float(p['value']) * k:.2f}"} for p in schedule["points"]]
    return {**schedule, "points": pts}


def _gated_amendments(rng: random.Random, triggers: list[dict[str, object]]) -> list[dict[str, object]]:
    """One to three amendments of the random gated contract: schedules renegotiated (at the
    end of a determination's period), a trigger's ``pays`` changed, the second cohort
    removed (after or before it enrols), its target size changed before it opens, the
    payment lag changed."""
    out: list[dict[str, object]] = []
    dates = rng.sample(["2024-08-15", "2025-03-01", "2025-10-01", "2026-07-01"], rng.choice([1, 2, 3]))
    for n, when in enumerate(sorted(dates)):
        changes: list[dict[str, object]] = []
        for t in triggers:
            if rng.random() < 0.6:
                if t["kind"] == "threshold":
                    changes.append({"set": f"triggers.{t['id']}.schedule", "to": _scaled_schedule(rng, t["schedule"])})
                    if rng.random() < 0.3:
                        changes.append({"set": f"triggers.{t['id']}.pays",
                                        "to": rng.choice(["amount", "per_participant", "per_unit"])})
                else:
                    part = rng.choice(["per_cohort", "pooled_fallback"])
                    sp = t[part]
                    assert isinstance(sp, dict)
                    changes.append({"set": f"triggers.{t['id']}.{part}.schedule",
                                    "to": _scaled_schedule(rng, sp["schedule"])})
        if rng.random() < 0.25:
            changes.append({"set": "timeline.payment_lag_days", "to": rng.choice([15, 60])})
        if rng.random() < 0.3:
            t = rng.choice(triggers)
            changes.append({"set": f"triggers.{t['id']}.cap", "to": f"{rng.uniform(5000, 40000):.2f}"})
        if when == "2024-08-15" and rng.random() < 0.5:
            changes.append({"set": "timeline.cohorts.b.target_size", "to": rng.choice([10, 70])})
        if n == len(dates) - 1 and rng.random() < 0.4:
            changes.append({"remove": "timeline.cohorts.b"})
        if not changes:
            changes.append({"set": f"triggers.{triggers[0]['id']}.clause", "to": "Art. 0 (amended)"})
        out.append({"id": f"a{n}", "effective": when, "clause": f"Amendment {n}", "summary": "random",
                    "changes": changes})
    return out


def check_contract(contract: Contract, worlds: int, seed: int, name: str) -> int:
    """:func:`check_agreement` on a contract object."""
    CONTRACTS_OBJ[name] = contract
    try:
        return check_agreement(name, worlds, seed)
    finally:
        del CONTRACTS_OBJ[name]


CONTRACTS_OBJ: dict[str, Contract] = {}

RANDOM_GATE_SEEDS = list(range(12))


def test_random_gated_contracts_cover_every_gate() -> None:
    specs = [random_gated_contract(random.Random(s))[1] for s in RANDOM_GATE_SEEDS]
    for test in ("two_proportion_z", "welch_t", "poisson_rate_ratio"):
        for rule in ("significant", "lower_bound"):
            assert any(s.has(test=test, rule=rule) for s in specs), (test, rule)
    for kind in ("fixed", "historical", "comparison", "none"):
        assert any(s.has(baseline=kind) for s in specs), kind
    assert any(s.has(baseline="none", rule="lower_bound") for s in specs)
    assert any(s.has(scope="fallback") for s in specs)


@pytest.mark.parametrize("gen_seed", RANDOM_GATE_SEEDS)
def test_both_paths_agree_on_random_gates(gen_seed: int) -> None:
    contract, _ = random_gated_contract(random.Random(gen_seed))
    check_contract(contract, worlds=6, seed=300 + gen_seed, name=f"random gates {gen_seed}")


FORCED = [(s, {}) for s in RANDOM_GATE_SEEDS[:8]] + [
    (s, {"pool": ("bmi", "cnt"), "ungated": 0.3}) for s in range(3)] + [
    (s, {"did": True, "ungated": 0.25}) for s in range(4)] + [
    (s, {"blended": True, "ungated": 0.25}) for s in range(4)] + [
    (s, {"pool": ("cnt",), "count_sd": True, "did": s % 2 == 1}) for s in range(3)] + [
    (s, {"pool": ("dur", "cnt"), "expected": True, "ungated": 0.25}) for s in range(4)]


@pytest.mark.parametrize(("gen_seed", "kw"), FORCED)
def test_vectorised_gates_equal_their_exact_recompute(gen_seed: int, kw: dict[str, object]) -> None:
    """On many worlds, the float64 gates (p-values, confidence bounds at 12 digits) and
    baselines give the amounts that recomputing every world with the exact path's own tests
    gives: the worlds left to float64 are decided correctly, not just the ones flagged near
    a decision (random gated contracts; continuous metrics; difference in differences;
    blends; counts with a spread)."""
    import sib_engine.simulation.payments as sp

    contract, _ = random_gated_contract(random.Random(gen_seed), **kw)  # type: ignore[arg-type]
    plan = compile_plan(contract)
    world = draw(plan, 900 + gen_seed, 0, 150)
    fast = sp.payments(plan, world, {})
    old = sp.CENT_TOL
    sp.CENT_TOL = 1.0  # every amount "too close to call": every world recomputed exactly
    try:
        slow = sp.payments(plan, world, {})
    finally:
        sp.CENT_TOL = old
    assert np.array_equal(fast.lines, slow.lines)
    assert np.array_equal(fast.lines_neg, slow.lines_neg)


def _gated(text_changes: dict[str, object]) -> Contract:
    """The gated-shares test contract with its first trigger's gate replaced."""
    data = yaml.safe_load(CONTRACTS["gated_shares"].read_text())
    gate = text_changes.get("gate")
    if gate is None:
        data["triggers"][0]["effect"].pop("gate")
    else:
        data["triggers"][0]["effect"]["gate"] = gate
    return parse_contract(yaml.safe_dump(data, sort_keys=False), "<gated>")


def test_a_lower_bound_gate_pays_on_the_bound() -> None:
    """Under ``lower_bound`` the first trigger pays less than on its estimate in worlds where
    it pays at all (a path ignoring the rule would pay the same), and both paths agree."""
    from sib_engine.simulation.kernel import Runner as R

    bound = _gated({"gate": {"test": "two_proportion_z", "level": 0.05, "sides": "one", "rule": "lower_bound"}})
    plain = _gated({"gate": None})
    n = 300
    pb = R(compile_plan(bound)).run(5, 0, n, truth=False).paid_by_trigger[:, 0]
    pp = R(compile_plan(plain)).run(5, 0, n, truth=False).paid_by_trigger[:, 0]
    assert (pb <= pp + 1e-9).all()
    assert (pb < pp - 1).sum() > n // 10
    check_contract(bound, worlds=8, seed=5, name="lower bound")


def test_a_gate_on_a_level_measure() -> None:
    """A gate on a level measure (the exact path's normal approximation against zero),
    paying on the lower bound: less than the ungated trigger wherever that pays."""
    from sib_engine.simulation.kernel import Runner as R

    data = yaml.safe_load(CONTRACTS["gated_shares"].read_text())
    eff = data["triggers"][1]["effect"]
    eff.pop("baseline")
    eff["measure"] = "level"
    eff["gate"] = {"test": "two_proportion_z", "level": 0.05, "sides": "two", "rule": "lower_bound"}
    data["triggers"][1]["schedule"]["points"] = [{"effect": 0.2, "value": "100.00"}, {"effect": 0.4, "value": "300.00"}]
    gated = parse_contract(yaml.safe_dump(data, sort_keys=False), "<level gate>")
    eff.pop("gate")
    plain = parse_contract(yaml.safe_dump(data, sort_keys=False), "<level>")
    n = 300
    pg = R(compile_plan(gated)).run(6, 0, n, truth=False).paid_by_trigger[:, 1]
    pp = R(compile_plan(plain)).run(6, 0, n, truth=False).paid_by_trigger[:, 1]
    assert (pg <= pp + 1e-9).all() and (pg < pp - 1).sum() > n // 10
    check_contract(gated, worlds=8, seed=6, name="level gate")


# ------------------------------------------------- random per-participant caps ---


def random_card_contract(rng: random.Random, amend: bool = False) -> tuple[Contract, dict[str, bool]]:
    """One or two rate cards on nested outcomes (a start, a qualification that requires it,
    a job that requires the start on the second card), with random prices, ``cap_units``,
    ``cap_amount``, a card's ``cap_per_participant`` and the contract's
    ``caps.per_participant`` set where they bind, and sometimes a card's period or total
    cap (only without a binding ``caps.per_participant``, which the plan refuses then)."""
    def price(lo: float, hi: float) -> float:
        return round(rng.uniform(lo, hi), 2)

    cards = []
    used: dict[str, bool] = {"card_pp": False, "contract_pp": False, "cap_units": False, "cap_amount": False}
    contract_pp = rng.random() < 0.6
    prices_all: list[float] = []
    for k in range(rng.choice([1, 2])):
        outs: list[dict[str, object]] = []
        metrics = ["start", "qual"] if k == 0 else rng.choice([["job"], ["start", "job"]])
        for mid in metrics:
            o: dict[str, object] = {"metric": mid, "price": f"{price(200, 2500):.2f}"}
            if mid == "job" and "start" in metrics:
                o["requires"] = ["start"]
            if rng.random() < 0.3:
                o["cap_units"] = rng.choice([15, 30, 60])
                used["cap_units"] = True
            if rng.random() < 0.3:
                o["cap_amount"] = f"{price(10000, 60000):.2f}"
                used["cap_amount"] = True
            outs.append(o)
        prices = [float(str(o["price"])) for o in outs]
        prices_all += prices
        card: dict[str, object] = {"id": f"card{k}", "kind": "rate_card", "clause": f"Sch {k}", "outcomes": outs}
        if rng.random() < 0.7:
            card["cap_per_participant"] = f"{rng.uniform(min(prices), max(min(prices), sum(prices) * 0.95)):.2f}"
            used["card_pp"] = True
        if not contract_pp and rng.random() < 0.5:
            card["cap_per_period"] = f"{price(20000, 80000):.2f}"
        if not contract_pp and rng.random() < 0.5:
            card["cap"] = f"{price(80000, 200000):.2f}"
        cards.append(card)
    caps: dict[str, object] = {}
    if contract_pp:
        caps["per_participant"] = f"{rng.uniform(min(prices_all), sum(prices_all) * 0.9):.2f}"
        used["contract_pp"] = True
    if rng.random() < 0.4:
        caps["per_period"] = f"{price(40000, 120000):.2f}"
    doc = {
        "format": "sib-contract/1", "id": "random-cards", "title": "Random cards (simulation test)",
        "currency": "GBP", "term": {"start": "2023-01-01", "end": "2026-06-30"},
        "parties": [{"id": "council", "name": "Council", "role": "payer"},
                    {"id": "bank", "name": "Bank", "role": "investor"},
                    {"id": "charity", "name": "Charity", "role": "provider"}],
        "payers": [{"party": "council", "share": 1}],
        "metrics": [{"id": "start", "name": "Starts", "type": "event"},
                    {"id": "qual", "name": "Qualification", "type": "event", "requires": ["start"]},
                    {"id": "job", "name": "Job", "type": "binary", "window_months": 18}],
        "triggers": cards,
        "timeline": {"periods": {"start": "2023-01-01", "months": 3, "count": 14}, "payment_lag_days": 30,
                     "cohorts": [{"id": "a", "enrolment_start": "2023-01-01", "enrolment_end": "2023-06-30",
                                  "target_size": rng.choice([30, 60, 90])},
                                 {"id": "b", "enrolment_start": "2023-07-01", "enrolment_end": "2023-12-31",
                                  "target_size": rng.choice([20, 45])}]},
        "capital": {"service_budget": "150000.00",
                    "tranches": [{"id": "loan", "kind": "senior_loan", "funder": "bank", "commitment": "120000.00",
                                  "coupon": {"rate": 0.05, "compounding": "simple", "day_count": "30/360"}}],
                    "waterfall": [{"pay": "interest", "tranche": "loan"}, {"pay": "principal", "tranche": "loan"},
                                  {"pay": "residual", "split": {"charity": 1}}]},
        "simulation": {
            "paths": 100, "seed": 1,
            "effects": [
                {"metric": "start", "base": 0.5, "effect": {"kind": "normal", "mean": 0.3, "sd": 0.1},
                 "measured_after_months": 2},
                {"metric": "qual", "base": 0.3, "effect": {"kind": "normal", "mean": 0.2, "sd": 0.1},
                 "measured_after_months": rng.choice([2, 7])},
                {"metric": "job", "base": 0.2, "effect": {"kind": "normal", "mean": 0.2, "sd": 0.1},
                 "measured_after_months": rng.choice([2, 12])},
            ],
            "enrolment": {"fraction": {"kind": "triangular", "low": 0.7, "mode": 1, "high": 1.2}},
            "delay_months": {"kind": "empirical", "values": [0, 3]},
        },
    }
    if amend and caps and rng.random() < 0.6:
        caps["total"] = f"{price(125000, 250000):.2f}"
    if caps:
        doc["caps"] = caps
    if amend:
        doc["amendments"] = _card_amendments(rng, cards, caps)
    return parse_contract(yaml.safe_dump(doc, sort_keys=False), "<random cards>"), used


def _card_amendments(rng: random.Random, cards: list[dict[str, object]],
                     caps: dict[str, object]) -> list[dict[str, object]]:
    """One or two amendments of the random rate cards: prices renegotiated (for events from
    the amendment's date), caps changed (from the next determination), the second cohort
    removed, the term shortened or lengthened."""
    out: list[dict[str, object]] = []
    dates = rng.sample(["2023-05-15", "2023-09-01", "2024-02-01", "2024-08-01"], rng.choice([1, 2]))
    for n, when in enumerate(sorted(dates)):
        changes: list[dict[str, object]] = []
        for card in cards:
            outs = card["outcomes"]
            assert isinstance(outs, list)
            ceiling = min([float(str(x)) for x in (card.get("cap_per_participant"), caps.get("per_participant"))
                           if x is not None] + [1e9])
            for o in outs:
                if rng.random() < 0.6:  # (a per-participant cap stays at least the cheapest price)
                    new = min(float(o["price"]) * rng.choice([0.5, 0.75, 1.3]), ceiling)
                    changes.append({"set": f"triggers.{card['id']}.outcomes.{o['metric']}.price",
                                    "to": f"{new:.2f}"})
                if rng.random() < 0.25:
                    changes.append({"set": f"triggers.{card['id']}.outcomes.{o['metric']}.cap_units",
                                    "to": rng.choice([8, 20, 200])})
            if "per_participant" not in caps and rng.random() < 0.35:
                changes.append({"set": f"triggers.{card['id']}.cap", "to": f"{rng.uniform(15000, 90000):.2f}"})
        if "per_period" in caps and rng.random() < 0.8:
            changes.append({"set": "caps.per_period", "to": f"{rng.uniform(10000, 60000):.2f}"})
        if "total" in caps and rng.random() < 0.7:
            changes.append({"set": "caps.total", "to": f"{rng.uniform(121000, 200000):.2f}"})
        if "per_participant" in caps and rng.random() < 0.5:
            prices = [float(str(o["price"])) for card in cards for o in card["outcomes"]]  # type: ignore[attr-defined]
            changes.append({"set": "caps.per_participant",
                            "to": f"{rng.uniform(1.31 * min(prices), 1.31 * sum(prices)):.2f}"})
        removed = any(ch.get("remove") for a in out for ch in a["changes"])  # type: ignore[attr-defined]
        if not removed and rng.random() < 0.35:
            changes.append({"remove": "timeline.cohorts.b"})
        if n == len(dates) - 1 and rng.random() < 0.3:
            end = rng.choice(["2024-06-30", "2026-12-31"] if when < "2024-06-30" else ["2026-12-31"])
            changes.append({"set": "term.end", "to": end})
            if end == "2024-06-30":  # the periods as amended end with the term (the exact path keeps the signed ones)
                changes.append({"set": "timeline.periods.count", "to": 6})
        if not changes:
            changes.append({"set": f"triggers.{cards[0]['id']}.outcomes.start.price", "to": "123.45"})
        out.append({"id": f"a{n}", "effective": when, "clause": f"Amendment {n}", "summary": "random",
                    "changes": changes})
    return out


RANDOM_CARD_SEEDS = list(range(10))


def test_random_cards_cover_every_participant_cap() -> None:
    used = [random_card_contract(random.Random(s))[1] for s in RANDOM_CARD_SEEDS]
    for key in ("card_pp", "contract_pp", "cap_units", "cap_amount"):
        assert any(u[key] for u in used), key
    assert any(u["card_pp"] and u["contract_pp"] for u in used)


@pytest.mark.parametrize("gen_seed", RANDOM_CARD_SEEDS)
def test_both_paths_agree_on_participant_caps(gen_seed: int) -> None:
    contract, _ = random_card_contract(random.Random(gen_seed))
    check_contract(contract, worlds=5, seed=500 + gen_seed, name=f"random cards {gen_seed}")


def test_participant_caps_bind_in_the_random_cards() -> None:
    """The per-participant caps of the random contracts change what is paid (so the
    agreement above would fail if the vectorised path ignored them)."""
    import dataclasses

    import sib_engine.simulation.payments as sp

    changed = {"card": 0, "contract": 0}
    for s in RANDOM_CARD_SEEDS:
        contract, used = random_card_contract(random.Random(s))
        plan = compile_plan(contract)
        world = draw(plan, 500 + s, 0, 50)
        paid = sp.payments(plan, world, {}).lines.sum()
        if plan.cap_participant is not None:
            loose = dataclasses.replace(plan, cap_participant=None)
            changed["contract"] += int(sp.payments(loose, world, {}).lines.sum() > paid)
        if any(c.cap_participant is not None for c in plan.cards):
            loose = dataclasses.replace(plan, cards=tuple(dataclasses.replace(c, cap_participant=None)
                                                           for c in plan.cards))
            changed["card"] += int(sp.payments(loose, world, {}).lines.sum() > paid)
    assert changed["card"] >= 2 and changed["contract"] >= 2, changed


RANDOM_CONTINUOUS_SEEDS = list(range(8))


def test_random_continuous_contracts_cover_the_welch_gate() -> None:
    specs = [random_gated_contract(random.Random(s), ("bmi",), ungated=0.3)[1] for s in RANDOM_CONTINUOUS_SEEDS]
    for rule in ("significant", "lower_bound", "none"):
        assert any(s.has(metric="bmi", rule=rule) for s in specs), rule
    for kind in ("fixed", "historical", "comparison", "none"):
        assert any(s.has(metric="bmi", baseline=kind) for s in specs), kind


@pytest.mark.parametrize("gen_seed", RANDOM_CONTINUOUS_SEEDS)
def test_both_paths_agree_on_continuous_metrics(gen_seed: int) -> None:
    """A continuous metric (every participant measured once, in hundredths) with or without
    a Welch gate, mixed with rates and counts."""
    pool = ("bmi",) if gen_seed % 2 else ("bmi", "hb", "cnt")
    contract, _ = random_gated_contract(random.Random(gen_seed), pool, ungated=0.3)
    check_contract(contract, worlds=6, seed=600 + gen_seed, name=f"random continuous {gen_seed}")


RANDOM_DID_SEEDS = list(range(10))


def test_random_did_contracts_cover_every_test() -> None:
    specs = [random_gated_contract(random.Random(s), did=True, ungated=0.25)[1] for s in RANDOM_DID_SEEDS]
    for test in ("two_proportion_z", "welch_t", "poisson_rate_ratio", "none"):
        assert any(s.has(baseline="did", test=test) for s in specs), test
    assert any(s.has(baseline="did", rule="lower_bound") for s in specs)


@pytest.mark.parametrize("gen_seed", RANDOM_DID_SEEDS)
def test_both_paths_agree_on_difference_in_differences(gen_seed: int) -> None:
    """Difference-in-differences baselines on binary, event and count metrics (a
    pre-enrolment measure of both groups), with every test the exact path runs on them (a
    Welch test on per-participant gains, the normal approximation otherwise)."""
    contract, _ = random_gated_contract(random.Random(gen_seed), did=True, ungated=0.25)
    check_contract(contract, worlds=6, seed=700 + gen_seed, name=f"random did {gen_seed}")


RANDOM_BLEND_SEEDS = list(range(10))


def test_random_blends_cover_every_component() -> None:
    specs = [random_gated_contract(random.Random(s), blended=True, ungated=0.25)[1] for s in RANDOM_BLEND_SEEDS]
    kinds = " ".join(str(t["baseline"]) for sp in specs for t in sp.triggers)
    for part in ("fixed", "historical", "comparison", "did"):
        assert part in kinds, part
    assert any(sp.has(rule="lower_bound") and "blended" in str(sp.triggers) for sp in specs)


@pytest.mark.parametrize("gen_seed", RANDOM_BLEND_SEEDS)
def test_both_paths_agree_on_blended_baselines(gen_seed: int) -> None:
    """Blended baselines (two components, weights adding up to 1) with the normal
    approximation the exact path tests them with, under either gate rule."""
    contract, _ = random_gated_contract(random.Random(gen_seed), blended=True, ungated=0.25)
    check_contract(contract, worlds=6, seed=800 + gen_seed, name=f"random blend {gen_seed}")


@pytest.mark.parametrize("gen_seed", list(range(6)))
def test_both_paths_agree_on_counts_with_a_spread(gen_seed: int) -> None:
    """A count metric whose assumption gives an ``sd``: each group's values spread about
    their mean (whole units, never below 0), with every test the exact path runs on it."""
    contract, _ = random_gated_contract(random.Random(gen_seed), ("cnt", "hb"), ungated=0.2, count_sd=True)
    check_contract(contract, worlds=6, seed=1000 + gen_seed, name=f"random count sd {gen_seed}")


def test_a_count_spread_reaches_the_welch_test() -> None:
    """With an ``sd`` the count's per-participant values spread as assumed (so a Welch gate
    sees realistic noise); without it the total is spread evenly (a spread below 1)."""
    from sib_engine.simulation.exact import world_data as wd

    for count_sd, lo, hi in ((True, 1.2, 2.4), (False, 0.0, 1.0)):
        contract, _ = random_gated_contract(random.Random(3), ("cnt",), count_sd=count_sd)
        plan = compile_plan(contract)
        world = draw(plan, 4, 0, 4)
        frame = wd(plan, world, 0)
        treated = frame[(frame["metric"] == "enrolment") & frame["participant_id"].str.contains("-t")]
        vals = frame[frame["metric"] == "cnt"].set_index("participant_id")["value"].astype(float)
        values = vals.reindex(treated["participant_id"]).fillna(0.0)
        assert lo < float(values.std()) < hi, (count_sd, float(values.std()))


@pytest.mark.parametrize("gen_seed", list(range(4)))
def test_both_paths_agree_on_difference_in_differences_of_spread_counts(gen_seed: int) -> None:
    contract, _ = random_gated_contract(random.Random(gen_seed), ("cnt",), did=True, count_sd=True)
    check_contract(contract, worlds=6, seed=1100 + gen_seed, name=f"random did sd {gen_seed}")


RANDOM_EXPECTED_SEEDS = list(range(10))


def test_random_expected_duration_contracts_cover_every_test() -> None:
    specs = [random_gated_contract(random.Random(s), ("dur", "cnt"), ungated=0.25, expected=True)[1]
             for s in RANDOM_EXPECTED_SEEDS]
    for test in ("welch_t", "poisson_rate_ratio", "none"):
        assert any(s.has(baseline="expected", test=test) for s in specs), test
    assert any(s.has(baseline="expected", rule="lower_bound") for s in specs)


@pytest.mark.parametrize("gen_seed", RANDOM_EXPECTED_SEEDS)
def test_both_paths_agree_on_expected_duration(gen_seed: int) -> None:
    """Expected-duration baselines (the table row of the simulated participants, prorated to
    each cutoff; the actual days counted over the horizon) on a duration spread by an
    ``sd`` and on a count, with the paired t-test, the exact Poisson test and no gate."""
    contract, _ = random_gated_contract(random.Random(gen_seed), ("dur", "cnt"), ungated=0.25, expected=True)
    check_contract(contract, worlds=6, seed=1200 + gen_seed, name=f"random expected {gen_seed}")


# --------------------------------------------------------------------- amendments ---

RANDOM_AMENDED_SEEDS = list(range(12))


@pytest.mark.parametrize("gen_seed", RANDOM_AMENDED_SEEDS)
def test_both_paths_agree_on_amended_schedules(gen_seed: int) -> None:
    contract, _ = random_gated_contract(random.Random(900 + gen_seed), ungated=0.4, amend=True)
    check_contract(contract, worlds=3, seed=900 + gen_seed, name=f"amended gates {gen_seed}")


@pytest.mark.parametrize("gen_seed", RANDOM_AMENDED_SEEDS)
def test_both_paths_agree_on_amended_rate_cards(gen_seed: int) -> None:
    contract, _ = random_card_contract(random.Random(950 + gen_seed), amend=True)
    check_contract(contract, worlds=3, seed=950 + gen_seed, name=f"amended cards {gen_seed}")


def test_random_amendments_cover_every_kind() -> None:
    kinds: set[str] = set()
    for s in RANDOM_AMENDED_SEEDS:
        for c in (random_gated_contract(random.Random(900 + s), ungated=0.4, amend=True)[0],
                  random_card_contract(random.Random(950 + s), amend=True)[0]):
            for a in c.amendments:
                for ch in a.changes:
                    path = ch.set or ch.remove or ""
                    kinds.add(("remove " if ch.remove else "") + ".".join(
                        p for p in path.split(".") if p in ("schedule", "pays", "price", "target_size", "term",
                                                            "payment_lag_days", "cohorts", "end", "cap",
                                                            "cap_units", "caps", "per_period",
                                                            "per_participant", "total")))
    for k in ("schedule", "pays", "price", "cohorts.target_size", "payment_lag_days", "term.end",
              "remove cohorts", "cap", "cap_units", "caps.per_period", "caps.per_participant", "caps.total"):
        assert k in kinds, (k, kinds)


def test_amendments_change_what_the_random_contracts_pay() -> None:
    """The amended terms change the payments (so the agreement above would fail if the
    vectorised path, or the exact path, ignored the amendments)."""
    changed = 0
    for s in RANDOM_AMENDED_SEEDS:
        for c in (random_gated_contract(random.Random(900 + s), ungated=0.4, amend=True)[0],
                  random_card_contract(random.Random(950 + s), amend=True)[0]):
            signed = c.model_copy(update={"amendments": ()})
            a = Runner(compile_plan(c)).run(7, 0, 40, truth=False).paid_by_trigger
            b = Runner(compile_plan(signed)).run(7, 0, 40, truth=False).paid_by_trigger
            changed += int(not np.array_equal(a, b))
    assert changed >= 1.5 * len(RANDOM_AMENDED_SEEDS), changed


def test_amendments_the_vectorised_path_does_not_follow_are_refused() -> None:
    contract, _ = random_card_contract(random.Random(3))
    doc_changes = [{"set": "triggers.card0.outcomes.start.max_claims", "to": 2},
                   {"set": "payers.council.share", "to": 1}]
    amended = contract.model_copy(update={"amendments": tuple(
        Amendment.model_validate({"id": f"x{i}", "effective": "2024-01-01", "clause": "X", "summary": "x",
                                  "changes": [ch]}) for i, ch in enumerate(doc_changes))})
    with pytest.raises(SimulationError) as info:
        compile_plan(amended)
    msg = str(info.value)
    assert "amendment 'x0': 'set triggers.card0.outcomes.start.max_claims'" in msg
    assert "amendment 'x1': 'set payers.council.share'" in msg
    # a 30/360 coupon accrued across an amendment's date at the month's end
    month_end = contract.model_copy(update={"amendments": (Amendment.model_validate(
        {"id": "late", "effective": "2024-01-31", "clause": "X", "summary": "x",
         "changes": [{"set": "triggers.card0.outcomes.start.price", "to": "100.00"}]}),)})
    with pytest.raises(SimulationError,
                       match="amendment 'late' takes effect while tranche\\(s\\) 'loan' accrue 30/360"):
        compile_plan(month_end)
