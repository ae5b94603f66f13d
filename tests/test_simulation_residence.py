"""Payers by residence in the vectorised path: each municipality pays for its own residents.

A world draws each enrolled participant's municipality after every other draw
(:func:`sib_engine.simulation.world.residence_draw`): the cohort split among the
municipalities, then a random order of its participants kept as the residents of each
municipality among those reaching each outcome (a prefix of the cohort).
:func:`sib_engine.simulation.exact.world_data` writes the same residents out in the
``municipality`` column, and the exact path must agree to the cent.

The random contracts are those of ``tests/test_simulation_exact.py`` (rate cards with
nested outcomes; gated schedule triggers, pooled, per cohort and with a pooled fallback),
rewritten with four payers by residence (one of them for two municipalities), random payer
caps, a top-up fund with a cap and a total cap; rate-card caps are taken out (the
vectorised path refuses them with payers by residence).
"""

from __future__ import annotations

import random
from decimal import Decimal
from pathlib import Path

import numpy as np
import pytest
import yaml

from sib_engine.contract import Contract
from sib_engine.loader import load_contract, load_scenario, parse_contract
from sib_engine.money import allocate
from sib_engine.simulation.exact import exact_world, world_data
from sib_engine.simulation.kernel import Runner
from sib_engine.simulation.plan import SimulationError, compile_plan
from sib_engine.simulation.world import draw
from test_simulation_exact import check_contract, random_card_contract, random_gated_contract

ROOT = Path(__file__).resolve().parent.parent
CODES = ("GM0001", "GM0002", "GM0003", "GM0004", "GM0005")


def residential(c: Contract, rng: random.Random, *, caps: bool = True) -> Contract:
    """``c`` with four payers by residence (``m0`` pays for two municipalities), some with a
    cap, a top-up fund and a total cap (``caps``), and without rate-card caps."""
    d = c.model_dump(mode="json", exclude_none=True, exclude_defaults=True)
    d["parties"] = [p for p in d["parties"] if p["role"] != "payer"] + [
        {"id": f"m{k}", "name": f"Municipality {k}", "role": "payer"} for k in range(4)]
    payers: list[dict[str, object]] = [{"party": "m0", "residence": list(CODES[:2])}]
    payers += [{"party": f"m{k}", "residence": [CODES[k + 1]]} for k in range(1, 4)]
    for t in d["triggers"]:
        if t["kind"] == "rate_card":
            for k in ("cap_per_period", "cap", "cap_per_participant"):
                t.pop(k, None)
            for o in t["outcomes"]:
                o.pop("cap_units", None)
                o.pop("cap_amount", None)
    d.pop("caps", None)
    if caps:
        for p in payers:
            if rng.random() < 0.4:
                p["cap"] = f"{rng.uniform(5000, 60000):.2f}"
        d["parties"].append({"id": "fund", "name": "Fund", "role": "payer"})
        payers.append({"party": "fund", "top_up": 0.25, "cap": "20000.00"})
        d["caps"] = {"total": f"{rng.uniform(80000, 300000):.2f}"}
    d["payers"] = payers
    return parse_contract(yaml.safe_dump(d, sort_keys=False), "<residence>")


@pytest.mark.parametrize("gen_seed", list(range(8)))
def test_both_paths_agree_on_rate_cards_by_residence(gen_seed: int) -> None:
    rng = random.Random(gen_seed)
    contract, _ = random_card_contract(rng)
    check_contract(residential(contract, rng), 3, gen_seed, f"residence cards {gen_seed}")


@pytest.mark.parametrize("gen_seed", list(range(8)))
def test_both_paths_agree_on_schedules_by_residence(gen_seed: int) -> None:
    rng = random.Random(100 + gen_seed)
    contract, _ = random_gated_contract(rng)
    check_contract(residential(contract, rng), 3, gen_seed, f"residence gates {gen_seed}")


def test_the_random_schedules_cover_every_scope() -> None:
    scopes = set()
    for gen_seed in range(8):
        _, spec = random_gated_contract(random.Random(100 + gen_seed))
        scopes |= {str(t["scope"]) for t in spec.triggers}
    assert scopes == {"pooled", "per_cohort", "fallback"}


def test_world_data_writes_each_participants_municipality() -> None:
    rng = random.Random(3)
    contract, _ = random_card_contract(rng)
    plan = compile_plan(residential(contract, rng))
    w = draw(plan, 5, 0, 4)
    nm = len(plan.metrics)
    for i in range(4):
        df = world_data(plan, w, i)
        enrol = df[(df["metric"] == "enrolment") & (df["group"] == "treatment")]
        for ci, cohort in enumerate(plan.cohorts):
            got = enrol[enrol["cohort"] == cohort]["municipality"].value_counts()
            assert [int(got.get(code, 0)) for code in plan.munis] == list(w.mu[i, nm, ci])
            for mi, m in enumerate(plan.metrics):  # the residents among those with the outcome
                who = set(df[df["metric"] == m.id]["participant_id"])
                sub = enrol[(enrol["cohort"] == cohort) & enrol["participant_id"].isin(who)]
                counts = sub["municipality"].value_counts()
                assert [int(counts.get(code, 0)) for code in plan.munis] == list(w.mu[i, mi, ci])


def test_residence_is_not_a_fixed_share_split() -> None:
    """Each municipality pays for its own residents: its part of what the municipalities
    pay varies from world to world with where the participants live, and differs from a
    split by any fixed shares (here, the municipalities' expected shares of participants)."""
    rng = random.Random(1)
    contract, _ = random_card_contract(rng)
    plan = compile_plan(residential(contract, rng, caps=False))
    n = 200
    vec = Runner(plan).run(7, 0, n, truth=False)
    paid = vec.paid_by_payer[:, :4]
    total = paid.sum(axis=1)
    frac = paid[:, 0] / total
    assert frac.max() - frac.min() > 0.05
    expected = [Decimal("0.4"), Decimal("0.2"), Decimal("0.2"), Decimal("0.2")]
    differ = 0
    for i in range(n):
        fixed = allocate(Decimal(repr(float(total[i]))).quantize(Decimal("0.01")), expected, "GBP")
        if [Decimal(repr(float(x))).quantize(Decimal("0.01")) for x in paid[i]] != fixed:
            differ += 1
    assert differ > n * 0.9
    # and the exact path, given the same residents, pays the same per municipality
    w = draw(plan, 7, 0, 3)
    for i in range(3):
        by_payer = exact_world(plan, w, i).by_payer()
        for j in range(4):
            want = by_payer.get(f"m{j}", Decimal(0))
            assert Decimal(repr(float(vec.paid_by_payer[i, j]))).quantize(Decimal("0.01")) == want


def test_residence_draws_come_after_every_other_draw() -> None:
    """The same seed draws the same worlds with or without payers by residence (the
    municipalities are drawn last)."""
    rng = random.Random(2)
    contract, _ = random_gated_contract(rng)
    shares = compile_plan(contract)
    by_residence = compile_plan(residential(contract, rng, caps=False))
    a, b = draw(shares, 11, 0, 300), draw(by_residence, 11, 0, 300)
    for f in ("effects", "delay", "drift", "attrition", "n_t", "n_c", "x_t", "x_c", "s_t", "s_c"):
        assert np.array_equal(getattr(a, f), getattr(b, f)), f
    assert a.mu.size == 0 and b.mu.shape[1:] == (len(by_residence.metrics) + 1, len(by_residence.cohorts), 5)


def test_residence_with_binding_rate_card_caps_is_refused() -> None:
    contract = load_contract(ROOT / "contracts" / "zaanstad_placement_2015.yaml")
    scenario = load_scenario(ROOT / "contracts" / "scenarios" / "zaanstad_placement_central.yaml", contract=contract)
    with pytest.raises(SimulationError) as err:
        compile_plan(contract, scenario.simulation)
    msg = str(err.value)
    assert "payers by residence with caps on the rate card 'placement_fee' (outcome 'placed' cap_units, " \
           "cap_per_period, cap)" in msg
    assert "caps.per_participant" not in msg  # 5250 is above the card's 750: it cannot bind on it alone


def test_both_paths_agree_on_zaanstad_without_its_rate_card_caps() -> None:
    """The 25 municipalities of Zaanstad (each with its own cap, a total cap, a
    non-binding per-participant cap, ``max_claims``), with the placement fee's
    ``cap_units``, ``cap_per_period`` and ``cap`` taken out (the vectorised path refuses them
    with payers by residence), on the central scenario."""
    path = ROOT / "contracts" / "zaanstad_placement_2015.yaml"
    drop = ("cap_units: 550", 'cap_per_period: "90000.00"', '    cap: "450000.00"')
    text = "\n".join(line for line in path.read_text().splitlines() if not line.lstrip().startswith(drop)
                     and not line.startswith(drop))
    contract = parse_contract(text, "<zaanstad without card caps>")
    assert not any(getattr(t, "cap", None) for t in contract.triggers if t.kind == "rate_card")
    scenario = load_scenario(ROOT / "contracts" / "scenarios" / "zaanstad_placement_central.yaml", contract=contract)
    contract = contract.model_copy(update={"simulation": scenario.simulation})
    check_contract(contract, 4, 3, "zaanstad without card caps")
