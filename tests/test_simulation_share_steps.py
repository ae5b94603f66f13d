"""``share_steps`` of a ``share_of_savings`` trigger in the vectorised path: the same lines
rescaled on the same dates as the exact waterfall (``waterfall._Engine._share_step``), to
the cent, on random contracts and worlds.

The random contracts are variants of ``tests/data/simulation/rate_card_savings.yaml`` (a
rate card, a share of savings, a cohort trigger, recycling, a loan with a guarantee): the
savings trigger gets one to three steps (negative, zero and positive returns, a step to a
share of 0 among them), with one payer or two and a top-up fund, and a residual paid to the
provider, with or without a success bonus shared with the bank.  The agreement checks
are those of :func:`test_simulation_exact.check_agreement`.
"""

from __future__ import annotations

import copy
import random
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from sib_engine.contract import Contract
from sib_engine.loader import parse_contract
from sib_engine.simulation.exact import exact_world
from sib_engine.simulation.kernel import Runner
from sib_engine.simulation.plan import SimulationError, compile_plan, share_step_triggers
from sib_engine.simulation.world import draw
from test_simulation_exact import check_contract

BASE = Path(__file__).resolve().parent / "data" / "simulation" / "rate_card_savings.yaml"
_BASE_DOC: dict[str, Any] = yaml.safe_load(BASE.read_text())

RETURNS = [-0.9, -0.6, -0.3, 0, 0.02, 0.05]
SHARES = [0, 0.1, 0.2, 0.25, 0.5, 0.6]


def random_steps_contract(rng: random.Random, steps: bool = True) -> Contract:
    doc = copy.deepcopy(_BASE_DOC)
    doc["id"] = "random-share-steps"
    savings = next(t for t in doc["triggers"] if t["id"] == "savings")
    savings["share"] = rng.choice([0.35, 0.4, 0.75])
    savings.pop("cap", None)
    after = sorted(rng.sample(RETURNS, rng.choice([1, 2, 3])))
    savings["share_steps"] = [{"after_return": a, "share": rng.choice(SHARES)} for a in after]
    if rng.random() < 0.4:
        savings["share_steps"][-1]["share"] = 0  # the payer keeps every further saving
    if not steps:
        del savings["share_steps"]
    if rng.random() < 0.5:
        doc["parties"].insert(1, {"id": "region", "name": "Region", "role": "payer"})
        doc["parties"].insert(2, {"id": "fund", "name": "Fund", "role": "top_up_fund"})
        doc["payers"] = [{"party": "council", "share": 0.7}, {"party": "region", "share": 0.3}]
        if rng.random() < 0.5:
            doc["payers"].append({"party": "fund", "top_up": 0.15})
    if rng.random() < 0.5:  # a success bonus shared with the bank: its return keeps rising
        doc["capital"]["waterfall"].insert(-1, {"pay": "bonus", "amount": "3000.00",
                                                "split": {"charity": 0.6, "bank": 0.4}})
    # a smaller loan, repaid early: the bank's return crosses the steps during the deal
    loan = doc["capital"]["tranches"][0]
    loan["commitment"] = rng.choice(["12000.00", "20000.00", "30000.00", "120000.00"])
    if rng.random() < 0.6:
        del loan["drawdown_schedule"]  # all at the start
    doc["simulation"]["effects"][3]["measured_after_months"] = rng.choice([2, 12])
    doc["simulation"]["effects"][3]["effect"] = {"kind": "normal", "mean": -4, "sd": 1.5}
    return parse_contract(yaml.safe_dump(doc, sort_keys=False), "<random share steps>")


SEEDS = list(range(8))
WORLDS = 4


def check_steps(contract: Contract, seed: int, name: str) -> int:
    """:func:`check_contract` (payers, triggers, funders, guarantors), and what the provider
    gets from the deal account besides service funding, where a rescaled line shows most
    (the steps bind once the funders are repaid, and the residual is the provider's);
    returns how many lines the exact waterfall rescaled."""
    check_contract(contract, worlds=WORLDS, seed=seed, name=name)
    plan = compile_plan(contract)
    world = draw(plan, seed, 0, WORLDS)
    vec = Runner(plan).run(seed, 0, WORLDS, truth=False)
    provider = next(p.id for p in contract.parties if p.role == "provider")
    adjusted = 0
    for i in range(WORLDS):
        ex = exact_world(plan, world, i)
        adjusted += len(ex.waterfall.adjustments)
        got = sum((f.amount for f in ex.waterfall.flows
                   if f.source == "SPV" and f.target == provider and f.kind != "service_funding"), Decimal(0))
        assert Decimal(repr(float(vec.provider_received[i]))).quantize(Decimal("0.01")) == got, \
            f"{name} world {i}: provider"
    return adjusted


@pytest.mark.parametrize("gen_seed", SEEDS)
def test_both_paths_agree_on_share_steps(gen_seed: int) -> None:
    contract = random_steps_contract(random.Random(gen_seed))
    check_steps(contract, seed=300 + gen_seed, name=f"share_steps_{gen_seed}")


def test_the_random_contracts_rescale_lines() -> None:
    """The exact waterfall rescales lines in the worlds the agreement test checks (so that
    a vectorised path ignoring the steps fails it), to a lower and to a zero share."""
    adjusted = 0
    to_zero = 0
    for gen_seed in SEEDS:
        contract = random_steps_contract(random.Random(gen_seed))
        plan = compile_plan(contract)
        world = draw(plan, 300 + gen_seed, 0, WORLDS)
        for i in range(WORLDS):
            for a in exact_world(plan, world, i).waterfall.adjustments:
                adjusted += 1
                to_zero += a.amount == 0
    assert adjusted >= 10
    assert to_zero >= 1


def test_ignoring_the_steps_would_change_the_deal_accounts_cash() -> None:
    """The same contract without its steps: the payers' lines are the same, the cash through
    the deal account is not (in some of 40 worlds)."""
    with_steps = Runner(compile_plan(random_steps_contract(random.Random(4))))
    without = Runner(compile_plan(random_steps_contract(random.Random(4), steps=False)))
    a = with_steps.run(5, 0, 40, truth=False)
    b = without.run(5, 0, 40, truth=False)
    assert np.array_equal(a.paid_by_payer, b.paid_by_payer)  # the steps act in the waterfall
    assert (a.provider_received < b.provider_received).any()
    assert not (a.provider_received > b.provider_received).any()  # its steps only lower the share


def test_an_amended_share_steps_trigger_is_refused() -> None:
    doc = copy.deepcopy(_BASE_DOC)
    savings = next(t for t in doc["triggers"] if t["id"] == "savings")
    savings["share_steps"] = [{"after_return": 0, "share": 0.2}]
    doc["amendments"] = [{"id": "a1", "effective": "2024-06-30", "clause": "Amendment 1", "summary": "share",
                          "changes": [{"set": "triggers.savings.share", "to": 0.3}]}]
    with pytest.raises(SimulationError, match="share_steps with an amendment"):
        compile_plan(parse_contract(yaml.safe_dump(doc, sort_keys=False), "<amended>"))


def test_every_step_decided_in_decimal_agrees(monkeypatch: pytest.MonkeyPatch) -> None:
    """With the float tolerance wide open, every step is decided by the exact path's own
    ``achieved_return`` in ``Decimal``: the same answers."""
    from sib_engine.simulation import cashflows

    calls: list[bool] = []
    exact = cashflows._Engine._exact_reached

    def spy(self: Any, gi: int, w: int, rate: Any) -> bool:
        got = exact(self, gi, w, rate)
        calls.append(got)
        return got

    monkeypatch.setattr(cashflows, "STEP_TOL", 1e9)
    monkeypatch.setattr(cashflows._Engine, "_exact_reached", spy)
    for gen_seed in (0, 4):
        check_steps(random_steps_contract(random.Random(gen_seed)), seed=300 + gen_seed,
                    name=f"share_steps_decimal_{gen_seed}")
    assert True in calls and False in calls


def test_utrecht_simulates_with_its_scenario() -> None:
    """The Utrecht club deal (share steps at the funders' 0% and 10% returns) compiles with
    the assumptions of ``contracts/scenarios/utrecht_club_central.yaml``, and both paths agree
    on a few of its worlds."""
    from sib_engine.loader import load_contract, load_scenario

    root = Path(__file__).resolve().parent.parent
    c = load_contract(root / "contracts" / "utrecht_club_2015.yaml")
    sc = load_scenario(root / "contracts" / "scenarios" / "utrecht_club_central.yaml", contract=c)
    contract = c.model_copy(update={"simulation": getattr(sc, "simulation", sc)})
    assert share_step_triggers(compile_plan(contract)) == (0,)
    check_steps(contract, seed=7, name="utrecht")
