"""The risk simulation: reproducibility, the result API, the analyses, the cross-check
against a closed form, portfolios and the errors it raises."""

from __future__ import annotations

import json
import math
from dataclasses import fields
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sib_engine.contract import Simulation
from sib_engine.errors import ContractError
from sib_engine.loader import load_contract, load_scenario, parse_contract
from sib_engine.risk import (
    SimulationResult,
    compare_scenarios,
    simulate,
    simulate_portfolio,
    simulation_json,
)
from sib_engine.simulation import SimulationError, compile_plan, measures
from sib_engine.simulation.kernel import ChunkResult

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = ROOT / "benchmarks" / "reference_deal.yaml"
GATED = ROOT / "tests" / "data" / "simulation" / "gated_shares.yaml"
RATE_CARD = ROOT / "tests" / "data" / "simulation" / "rate_card_savings.yaml"


def same(a: ChunkResult, b: ChunkResult) -> bool:
    """Bit-identical, field by field (NaN equal to NaN)."""
    for f in fields(ChunkResult):
        x, y = getattr(a, f.name), getattr(b, f.name)
        if x.shape != y.shape or x.tobytes() != y.tobytes():
            return False
    return True


@pytest.fixture(scope="module")
def reference() -> SimulationResult:
    return simulate(load_contract(REFERENCE), 6000, 17)


# ------------------------------------------------------------- reproducibility ---


@pytest.mark.parametrize("path", [REFERENCE, GATED, RATE_CARD])
def test_same_seed_same_results_whatever_the_chunking(path: Path) -> None:
    c = load_contract(path)
    base = simulate(c, 9000, 3, chunk_size=4096, threads=1, analysis=False).data
    assert same(base, simulate(c, 9000, 3, chunk_size=9000, threads=1, analysis=False).data)
    assert same(base, simulate(c, 9000, 3, chunk_size=4096, threads=2, analysis=False).data)
    other = simulate(c, 9000, 4, chunk_size=4096, threads=1, analysis=False).data
    assert not np.array_equal(base.paid, other.paid)


def test_a_path_does_not_depend_on_how_many_paths_are_run() -> None:
    c = load_contract(GATED)
    small = simulate(c, 1000, 8, analysis=False).data
    large = simulate(c, 5000, 8, analysis=False).data
    for f in fields(ChunkResult):
        assert getattr(small, f.name).tobytes() == getattr(large, f.name)[:1000].tobytes(), f.name


def test_a_run_records_seed_assumptions_and_version(reference: SimulationResult) -> None:
    c = load_contract(REFERENCE)
    assert reference.seed == 17 and reference.paths == 6000
    assert reference.engine_version
    assert c.simulation is not None
    assert Simulation.model_validate(reference.assumptions) == c.simulation
    j = simulation_json(reference)
    assert j["seed"] == 17 and j["paths"] == 6000 and j["assumptions"] == reference.assumptions
    assert j["engine_version"] == reference.engine_version


def test_progress_is_reported_per_chunk() -> None:
    seen: list[tuple[int, int]] = []
    simulate(load_contract(REFERENCE), 10000, 1, chunk_size=4096, analysis=False, threads=1,
             progress=lambda done, total: seen.append((done, total)))
    assert seen == [(4096, 10000), (8192, 10000), (10000, 10000)]


# ------------------------------------------------------------------- the result ---


def test_result_api(reference: SimulationResult) -> None:
    r = reference
    summary = r.summary()
    measures_ = set(summary["measure"])
    for m in ("payments: mean", "junior_fund: P(loss)", "junior_fund: VaR 5%", "junior_fund: expected shortfall 5%",
              "government: expected cost", "government: fee-for-service cost", "risk transfer",
              "P(pay | true effect zero)", "P(no payment | effect at target)", "foundation: P(guarantee called)"):
        assert m in measures_, m
    frame = r.to_frame()
    assert len(frame) == r.paths
    assert {"effect_employed", "paid", "irr_senior_bank", "multiple_junior_fund", "net_junior_fund",
            "cost_foundation", "paid_noise_free"} <= set(frame.columns)
    text = repr(r)
    assert "\n" not in text and text.startswith("<SimulationResult reference-deal: 6,000 paths")
    assert "<table>" in r._repr_html_()
    ff = r.funders_frame()
    assert list(ff["party"]) == ["senior_bank", "junior_fund", "foundation"]


def test_json_has_what_the_cli_needs(reference: SimulationResult) -> None:
    j = simulation_json(reference)
    json.dumps(j, allow_nan=False)
    assert set(j["total_payment"]) == {"mean", "p5", "p50", "p95"}
    assert j["total_payment"]["p5"] <= j["total_payment"]["p50"] <= j["total_payment"]["p95"]
    for fid in ("senior_bank", "junior_fund"):
        f = j["funders"][fid]
        assert set(f["irr"]) == {"p5", "p50", "p95", "mean", "missing"}
        assert 0.0 <= f["p_loss"] <= 1.0
        i = [x.id for x in reference.funders].index(fid)
        # the share of worlds without a rate is reported next to percentiles taken without them
        assert f["irr"]["missing"] == pytest.approx(float(np.mean(~np.isfinite(reference.data.irr[:, i]))))
    assert 0.0 <= j["p_pay_if_no_effect"] <= 1.0
    assert 0.0 <= j["risk_transfer"] <= 1.0
    assert j == reference.to_json()


def test_figures_are_consistent(reference: SimulationResult) -> None:
    d = reference.data
    assert np.all(d.paid <= d.owed + 1e-9)
    # per payer and per trigger add up to the total
    assert np.allclose(d.paid_by_payer.sum(axis=1), d.paid)
    assert np.allclose(d.paid_by_trigger.sum(axis=1), d.paid)
    # the reference deal pays each cohort 40,000 per participant of rate difference, or its cap
    # of 1,500,000: always a multiple of 20,000, at most 6,000,000
    assert np.all(d.paid % 20000 == 0) and d.paid.max() <= 6_000_000
    # a guarantee of half the junior's unrepaid principal never pays more than 500,000
    assert d.guarantor_paid.max() <= 500_000
    # senior is repaid before junior: when senior loses, junior gets nothing from the waterfall
    senior_loses = reference.funder_net(0) < -0.005
    assert np.all(d.received[senior_loses, 1] == 0)


def test_plots_are_figures(reference: SimulationResult) -> None:
    from matplotlib.figure import Figure

    for fig in (reference.plot_returns(), reference.plot_payment_curve(), reference.plot_tornado()):
        assert isinstance(fig, Figure)


def test_payment_curve_and_break_even(reference: SimulationResult) -> None:
    c = reference.curve
    assert c is not None
    assert list(c["effect"]) == sorted(c["effect"])
    low, high = c.iloc[0], c.iloc[-1]
    assert high["expected_payment"] > low["expected_payment"]
    assert high["p_payment"] >= low["p_payment"]
    # zero effect: the payment curve agrees with the pinned probability (same worlds)
    assert 0.0 in set(c["effect"])
    be = reference.break_even_effect
    assert be is not None and c["effect"].min() < be < c["effect"].max()
    # funders' expected net is negative below the break-even effect and positive above it
    assert (c.loc[c["effect"] < be - 0.02, "funders_net"] < 0).all()
    assert (c.loc[c["effect"] > be + 0.02, "funders_net"] > 0).all()


def test_probabilities_at_pinned_effects(reference: SimulationResult) -> None:
    # the reference deal pays each cohort max(0, measured difference): with no true effect,
    # sampling noise alone makes some cohort pay in most worlds
    assert reference.p_pay_if_no_effect is not None and reference.p_pay_if_no_effect > 0.8
    assert reference.p_no_pay_at_target is not None and reference.p_no_pay_at_target < 0.01


def test_tornado_is_sorted_and_moves_the_output() -> None:
    r = simulate(load_contract(GATED), 2000, 5, analysis=False)
    t = r.tornado("paid", paths=1500)
    assert list(t["swing"]) == sorted(t["swing"], reverse=True)
    assert "effect on worked" in set(t["parameter"])
    row = t.set_index("parameter").loc["effect on worked"]
    assert row["output_high"] > row["output_low"]
    t2 = r.tornado("p_loss:inv_a", paths=1000)
    assert ((t2["output_low"] >= 0) & (t2["output_high"] <= 1)).all()
    with pytest.raises(SimulationError, match="unknown output"):
        r.tornado("irr:nobody", paths=100)


def test_appropriation_failures_are_not_paid() -> None:
    r = simulate(load_contract(GATED), 4000, 2, analysis=False)
    d = r.data
    assert d.unbudgeted.max() > 0
    assert np.all(d.unbudgeted >= -1e-9)
    assert np.allclose(d.owed - d.unbudgeted, d.paid)


def test_compare_scenarios() -> None:
    c = load_contract(REFERENCE)
    assert c.simulation is not None
    body = c.simulation.model_dump()
    body["effects"][0]["effect"] = {"kind": "fixed", "value": 0}
    worse = Simulation.model_validate(body)
    table = compare_scenarios(c, {"as assumed": c.simulation, "no effect": worse}, paths=3000, seed=1,
                              analysis=False)
    assert list(table.columns) == ["as assumed", "no effect"]
    assert table.loc["payments: mean", "no effect"] < table.loc["payments: mean", "as assumed"]
    assert table.loc["junior_fund: P(loss)", "no effect"] > table.loc["junior_fund: P(loss)", "as assumed"]


# ------------------------------------------------------------------- cross-check ---

CALL_SPREAD = """\
format: sib-contract/1
id: call-spread
title: A capped linear payment on a normally distributed effect
currency: EUR
term: {start: 2024-01-01, end: 2026-12-31}
parties:
  - {id: city, name: City, role: payer}
  - {id: ngo, name: Provider, role: provider}
payers: [{party: city, share: 1}]
metrics:
  - {id: visits, name: Visits per participant, type: count}
baselines:
  - {id: usual, kind: fixed, metric: visits, value: 10}
triggers:
  - id: pay
    kind: threshold
    clause: S1
    effect: {metric: visits, baseline: usual, measure: difference}
    pays: amount
    schedule:
      interpolation: linear
      points: [{effect: 0.2, value: "0"}, {effect: 0.6, value: "400000"}]
timeline:
  periods: {start: 2024-01-01, months: 12, count: 3}
  cohorts: [{id: c1, enrolment_start: 2024-01-01, enrolment_end: 2024-12-31, target_size: 1000000}]
simulation:
  sampling_noise: false
  effects:
    - {metric: visits, base: 10, effect: {kind: normal, mean: 0.35, sd: 0.3}, measured_after_months: 12}
"""


def test_simulation_converges_to_the_closed_form_of_a_call_spread() -> None:
    """Pay ``min(max(k (X - a), 0), cap)`` with ``k = 1e6``, ``a = 0.2``, ``cap = 400,000`` on a
    measured effect ``X``; the true effect is Normal(0.35, 0.3) and without sampling noise
    the evaluator measures it up to the rounding of a count over 1,000,000 participants
    (at most 0.5e-6, worth at most ``k x 0.5e-6`` = 0.5 EUR).  The expected payment is a call
    spread; the simulated mean must lie within four Monte Carlo standard errors (plus that
    rounding bound) of it, and the error must shrink as paths grow."""
    c = parse_contract(CALL_SPREAD)
    k, a, cap, mu, sigma = 1e6, 0.2, 400_000.0, 0.35, 0.3
    exact = measures.normal_capped_spread(k, a, cap, mu, sigma)
    bound = k * 0.5e-6
    errors = []
    for n in (2000, 32000):
        paid = simulate(c, n, 99, analysis=False).data.paid
        se = paid.std(ddof=1) / math.sqrt(n)
        err = abs(paid.mean() - exact)
        assert err <= 4 * se + bound, (n, paid.mean(), exact, se)
        errors.append((err, se))
    assert errors[1][1] < errors[0][1] / 3  # the standard error shrinks as 1/sqrt(n)


def test_closed_form_itself() -> None:
    # with no uncertainty the spread is the payment at the mean; far out of the money, zero
    assert measures.normal_capped_spread(2.0, 1.0, 10.0, 3.0, 0.0) == pytest.approx(4.0)
    assert measures.normal_capped_spread(2.0, 1.0, 10.0, 100.0, 1.0) == pytest.approx(10.0)
    assert measures.normal_capped_spread(2.0, 1.0, 10.0, -100.0, 1.0) == pytest.approx(0.0)


# --------------------------------------------------------------------- measures ---


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(-1e6, 1e6), min_size=1, max_size=200), st.floats(-1e5, 1e5))
def test_risk_measures(values: list[float], shift: float) -> None:
    net = np.array(values)
    before = net.copy()
    var, es = measures.value_at_risk(net), measures.expected_shortfall(net)
    assert es >= var - 1e-6 * max(1.0, abs(var))  # the tail's mean is at least its edge
    assert np.array_equal(net, before)  # inputs are not changed
    # gaining a sure amount lowers both by that amount
    assert measures.value_at_risk(net + shift) == pytest.approx(var - shift, abs=1e-6 * (1 + abs(var) + abs(shift)))
    assert measures.expected_shortfall(net + shift) == pytest.approx(es - shift, rel=1e-9,
                                                                     abs=1e-6 * (1 + abs(es) + abs(shift)))


def test_risk_transfer_definition() -> None:
    z = np.zeros(4)
    assert measures.risk_transfer(np.array([1.0, 0, 0, 0]), z, z) == 1.0
    assert measures.risk_transfer(z, z, np.array([2.0, 0, 0, 0])) == 0.0
    assert measures.risk_transfer(np.full(4, 1.0), np.full(4, 1.0), np.full(4, 2.0)) == 0.5
    assert math.isnan(measures.risk_transfer(z, z, z))


# -------------------------------------------------------------------- portfolio ---


def test_portfolio_shares_a_shock_and_measures_payer_concentration() -> None:
    deals = [load_contract(REFERENCE), load_contract(GATED), load_contract(RATE_CARD)]
    calm = simulate_portfolio(deals, 3000, 5, shock=0.0)
    tied = simulate_portfolio(deals, 3000, 5, shock=0.9)
    def corr(p: object) -> float:
        s = p.summary().set_index("measure")["value"]  # type: ignore[attr-defined]
        return float(s["mean correlation of deal payments"])
    assert corr(tied) > corr(calm) + 0.2
    conc = tied.concentration()
    assert conc["share"].sum() == pytest.approx(1.0)
    assert set(conc["payer"]) == {"city", "region", "fund", "council"}
    assert conc.set_index("payer").loc["city", "deals"] == 2  # 'city' pays in two deals
    assert 0 < conc.attrs["hhi"] <= 1
    assert "PortfolioResult 3 deals" in repr(tied)
    with pytest.raises(SimulationError):
        simulate_portfolio(deals, 10, 1, shock=1.5)


# ----------------------------------------------------------------------- errors ---


def test_unsupported_mechanisms_are_refused_clearly() -> None:
    c = load_contract(ROOT / "contracts" / "zaanstad_placement_2015.yaml")
    sim = load_contract(REFERENCE).simulation
    assert sim is not None
    with pytest.raises(SimulationError) as info:
        compile_plan(c, sim)
    assert "payers by residence" in str(info.value)
    newpin = load_contract(ROOT / "contracts" / "newpin_nsw_2013.yaml")
    with pytest.raises(SimulationError, match="amendment 'control_group_from_year4': 'set triggers."
                       "restoration_payments.effect.baseline'.*banded_return"):
        compile_plan(newpin, sim)


def test_a_contract_without_assumptions_says_how_to_add_them() -> None:
    c = load_contract(ROOT / "contracts" / "rotterdam_youth_2013.yaml")
    with pytest.raises(SimulationError, match="no simulation section"):
        simulate(c, 10, 1)


SCENARIO = """\
format: sib-scenario/1
name: pessimistic
contract: reference-deal
simulation:
  effects:
    - metric: employed
      base: 0.30
      effect: {kind: normal, mean: 0.04, sd: 0.05}
      measured_after_months: 24
"""


def test_a_scenario_file_replaces_the_contracts_assumptions(tmp_path: Path) -> None:
    c = load_contract(REFERENCE)
    path = tmp_path / "pessimistic.yaml"
    path.write_text(SCENARIO)
    scenario = load_scenario(path, contract=c)
    assert scenario.name == "pessimistic"
    r = simulate(c, 3000, 1, simulation=scenario, analysis=False)
    base = simulate(c, 3000, 1, analysis=False)
    assert r.data.paid.mean() < base.data.paid.mean()
    assert r.assumptions["effects"][0]["effect"]["mean"] == "0.04"


def test_a_scenario_for_another_contract_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.yaml"
    path.write_text(SCENARIO.replace("contract: reference-deal", "contract: someone-else"))
    with pytest.raises(ContractError) as info:
        load_scenario(path, contract=load_contract(REFERENCE))
    p = info.value.problems[0]
    assert p.code == "wrong_contract" and p.line == 3 and "not 'reference-deal'" in p.format() and p.hint


def test_a_broken_scenario_is_located(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text(SCENARIO.replace("sd: 0.05", "sdev: 0.05").replace("metric: employed", "metric: jobs"))
    with pytest.raises(ContractError) as info:
        load_scenario(path)
    assert info.value.codes == ("unknown_key", "missing_key") or "unknown_key" in info.value.codes
    with pytest.raises(ContractError) as info2:
        load_scenario(tmp_path / "broken.yaml".replace("broken", "missing"))
    assert info2.value.codes == ("file_not_found",)
    path.write_text(SCENARIO.replace("metric: employed", "metric: jobs"))
    with pytest.raises(ContractError) as info3:
        load_scenario(path, contract=load_contract(REFERENCE))
    assert "unknown_metric" in info3.value.codes and "missing_assumption" in info3.value.codes


# ------------------------------------------------------------------- risk page ---


def test_risk_report_page(reference: SimulationResult, tmp_path: Path) -> None:
    from sib_engine.reports import write_risk_report

    paths = write_risk_report(reference, tmp_path / "risk")
    page = paths.html.read_text()
    for section in ('id="returns"', 'id="payment-curve"', 'id="tornado"', 'id="assumptions"'):
        assert section in page
    assert page.count("data:image/png;base64,") == 3
    assert "http://" not in page and "https://" not in page.replace("https://json-schema", "")
    assert "seed 17" in page
    assert json.loads(paths.json.read_text()) == simulation_json(reference)


# ------------------------------------------------- newly simulable examples ---


@pytest.mark.parametrize("stem", ["massachusetts_juvenile_justice_2014", "essex_edge_of_care_2012"])
def test_examples_with_blends_and_gates_simulate(stem: str) -> None:
    """Massachusetts (a blend of a randomised and a difference-in-differences estimate under
    a Welch lower-bound gate, a rate card, a Welch significance gate) and Essex (a historical
    baseline) simulate from their own sections, reproducibly."""
    c = load_contract(ROOT / "contracts" / f"{stem}.yaml")
    assert c.simulation is not None
    a = simulate(c, 500, 3, analysis=False).data
    b = simulate(c, 500, 3, analysis=False, chunk_size=4096, threads=2).data
    assert np.array_equal(a.paid, b.paid)
    assert (a.paid >= 0).all() and a.paid.mean() > 0


def test_still_unsupported_examples_say_why() -> None:
    """The examples the vectorised path still refuses name what it cannot do."""
    sim = load_contract(REFERENCE).simulation
    assert sim is not None
    for stem, what in (("newpin_nsw_2013", "amendment 'control_group_from_year4'"),
                       ("brussels_reemployment_2018", "banded_return"),
                       ("benevolent_society_nsw_2013", "banded_return")):
        with pytest.raises(SimulationError, match=what):
            compile_plan(load_contract(ROOT / "contracts" / f"{stem}.yaml"), sim)


def test_an_expected_duration_example_simulates_with_given_assumptions() -> None:
    """Rotterdam (a share of savings against an expected-duration table) has no simulation
    section of its own; with assumptions given it simulates, and pays more as the
    programme cuts more benefit days."""
    c = load_contract(ROOT / "contracts" / "rotterdam_youth_2013.yaml")

    def sim(cut: float) -> Simulation:
        return Simulation.model_validate({
            "effects": [{"metric": "benefit_days", "base": 250, "sd": 150,
                         "effect": {"kind": "fixed", "value": -cut}, "measured_after_months": 24}],
        })

    small = simulate(c, 400, 2, simulation=sim(10), analysis=False).data.paid.mean()
    large = simulate(c, 400, 2, simulation=sim(60), analysis=False).data.paid.mean()
    assert 0 < small < large


# ------------------------------------------------------------------ amendments ---

PETERBOROUGH_SCENARIO = """\
format: sib-scenario/1
name: no-effect
contract: peterborough_reoffending_2010
simulation:
  effects:
    - metric: reconvictions
      base: 1.4
      effect: {kind: fixed, value: 0}
      measured_after_months: 12
  enrolment:
    comparison_ratio: 10
"""


def test_an_amended_example_simulates_the_terms_in_force(tmp_path: Path) -> None:
    """Peterborough (an amendment cancels cohort 3 before it opens) simulates from its own
    section and from a scenario: cohort 3 enrols nobody and no determination reads it."""
    c = load_contract(ROOT / "contracts" / "peterborough_reoffending_2010.yaml")
    plan = compile_plan(c)
    assert plan.target_sizes == (1000, 1000, 0)
    assert all(d.cohorts == (0, 1) for d in plan.dets)
    good = simulate(c, 300, 4, analysis=False).data.paid
    path = tmp_path / "no_effect.yaml"
    path.write_text(PETERBOROUGH_SCENARIO.replace("contract: peterborough_reoffending_2010", f"contract: {c.id}"))
    none = simulate(c, 300, 4, simulation=load_scenario(path, contract=c), analysis=False).data.paid
    assert good.mean() > 10 * max(none.mean(), 1.0)
