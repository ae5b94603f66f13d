"""Invariants of payment determination, as properties (hypothesis):

* payments never fall as outcomes improve (with nested caps), and a subset of the outcomes
  never pays more in total, nor to any payer by residence unless a cap shared by the payers
  binds;
* payments never exceed a cap;
* zero effect pays zero under threshold and share-of-savings rules;
* scaling every price (and every cap) by k scales every payment by k before rounding;
* payer splits add up to the cent.
"""

from __future__ import annotations

from collections import defaultdict
from decimal import Decimal
from typing import Any

from evalkit import contract, enrol, frame
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sib_engine.evaluation import Evaluation, evaluate
from sib_engine.money import round_money
from sib_engine.payments import split_among_payers

FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
TIMELINE = {
    "periods": {"start": "2024-01-01", "months": 6, "count": 4},
    "cohorts": [{"id": "c1", "enrolment_start": "2024-01-01", "enrolment_end": "2024-12-31"},
                {"id": "c2", "enrolment_start": "2024-01-01", "enrolment_end": "2024-12-31"}],
}
MUNIS = ["GM0001", "GM0002", "GM0003"]

event = st.tuples(st.integers(0, 5), st.sampled_from(["start", "job"]), st.integers(0, 700))
prices = st.decimals(min_value=Decimal("1"), max_value=Decimal("5000"), places=2)


def days(offset: int) -> str:
    from datetime import date, timedelta
    return (date(2024, 1, 15) + timedelta(days=offset)).isoformat()


def card_world(events: list[tuple[int, str, int]], munis: list[int] | None = None) -> Any:
    ids = [f"p{i}" for i in range(6)]
    rows = []
    for i, p in enumerate(ids):
        rows += enrol([p], "c1" if i % 2 else "c2", municipality=MUNIS[(munis or [0] * 6)[i]])
    rows += [(ids[i], m, days(o), 1) for i, m, o in events]
    return frame(rows)


def card_contract(p_start: Decimal, p_job: Decimal, max_claims: int, caps: dict[str, Any] | None = None,
                  payers: list[dict[str, Any]] | None = None, k: Decimal = Decimal(1)) -> Any:
    caps = caps or {}
    mul = lambda v: str(Decimal(str(v)) * k)  # noqa: E731
    trig: dict[str, Any] = {"id": "card", "kind": "rate_card", "clause": "S1", "outcomes": [
        {"metric": "start", "price": mul(p_start)},
        {"metric": "job", "price": mul(p_job), "requires": ["start"], "max_claims": max_claims},
    ]}
    for key in ("cap", "cap_per_participant", "cap_per_period"):
        if key in caps:
            trig[key] = mul(caps[key])
    body: dict[str, Any] = {"triggers": [trig], "timeline": TIMELINE}
    if "total" in caps or "per_period" in caps:
        body["caps"] = {k2: mul(caps[k2]) for k2 in ("total", "per_period") if k2 in caps}
    if payers is not None:
        body["payers"] = [dict(p, **({"cap": mul(p["cap"])} if "cap" in p else {})) for p in payers]
    return contract(**body)


@st.composite
def caps(draw: Any, floor: Decimal, periodic: bool = True) -> dict[str, Any]:
    out: dict[str, Any] = {}
    keys = ("cap", "cap_per_participant", "cap_per_period", "total", "per_period")
    for key in keys if periodic else ("cap", "cap_per_participant", "total"):
        if draw(st.booleans()):
            out[key] = draw(st.decimals(min_value=floor, max_value=floor * 20, places=2))
    if "total" in out:
        for key in ("cap", "per_period"):
            if key in out and out[key] > out["total"]:
                out[key] = out["total"]
    return out


def total(ev: Evaluation) -> Decimal:
    return ev.total


@FAST
@given(st.lists(event, max_size=14), event, prices, prices, st.integers(1, 3), st.data())
def test_payments_never_fall_as_outcomes_improve(events: list[Any], extra: Any, p1: Decimal, p2: Decimal,
                                                 mc: int, data: st.DataObject) -> None:
    """With nested caps (per participant within the trigger within the contract).  Caps per
    period are left out: they cross the claim limits, so an outcome achieved earlier may pay
    less by the contract's own terms (a participant's one claim moves into an earlier
    period whose cap is full), and they cross a trigger's total cap (see the module
    docstring of sib_engine.payments)."""
    c = card_contract(p1, p2, mc, data.draw(caps(max(p1, p2), periodic=False)))
    before = evaluate(c, card_world(events))
    after = evaluate(c, card_world(events + [extra]))
    assert after.total >= before.total
    for payer, amount in before.by_payer.items():
        assert after.by_payer.get(payer, Decimal(0)) >= amount


@FAST
@given(st.lists(event, max_size=16), prices, prices, st.integers(1, 3), st.data())
def test_payments_never_exceed_a_cap(events: list[Any], p1: Decimal, p2: Decimal, mc: int, data: st.DataObject) -> None:
    cp = data.draw(caps(max(p1, p2)))
    city_cap = data.draw(st.none() | st.decimals(min_value=Decimal(0), max_value=Decimal(20000), places=2))
    payers = [{"party": "city", "share": "1", **({"cap": str(city_cap)} if city_cap is not None else {})},
              {"party": "fund", "top_up": "0.25", "cap": "1000"}]
    ev = evaluate(card_contract(p1, p2, mc, cp, payers), card_world(events))
    primary = [ln for ln in ev.lines if ln.payer == "city"]
    paid = sum((ln.amount for ln in primary), Decimal(0))
    for key in ("cap", "total"):
        if key in cp:
            assert paid <= cp[key]
    per_period: dict[str, Decimal] = defaultdict(Decimal)
    for ln in primary:
        per_period[ln.period] += ln.amount
    for key in ("cap_per_period", "per_period"):
        if key in cp:
            assert all(v <= cp[key] for v in per_period.values())
    if city_cap is not None:
        assert paid <= city_cap
    assert ev.by_payer.get("fund", Decimal(0)) <= Decimal(1000)
    assert all(ln.amount >= 0 for ln in ev.lines)  # one evaluation of fixed data never claws back


THRESHOLD_EFFECT = {"metric": "employed", "baseline": "base", "measure": "difference"}


@FAST
@given(st.integers(2, 20), st.data(), st.sampled_from(["amount", "per_participant", "per_unit"]),
       st.decimals(min_value=Decimal("0.001"), max_value=Decimal("0.5"), places=3),
       st.sampled_from(["step", "linear"]), st.sampled_from(["pooled", "per_cohort"]))
def test_zero_effect_pays_zero_under_a_threshold(n: int, data: st.DataObject, pays: str, first: Decimal,
                                                 interp: str, scope: str) -> None:
    k = data.draw(st.integers(0, n))
    # per_unit pays value x units of effect, so even a tier at effect 0 pays nothing
    start = Decimal(0) if pays == "per_unit" else first
    c = contract(
        baselines=[{"id": "base", "kind": "fixed", "metric": "employed", "value": str(Decimal(k) / n)}],
        triggers=[{"id": "thr", "kind": "threshold", "clause": "S", "effect": THRESHOLD_EFFECT, "pays": pays,
                   "scope": "pooled", "schedule": {"interpolation": interp, "points": [
                       {"effect": str(start), "value": "1000"}, {"effect": "1", "value": "5000"}]}}],
        timeline=TIMELINE)
    ids = [f"p{i}" for i in range(n)]
    rows = enrol(ids) + [(p, "employed", "2024-06-01", 1) for p in ids[:k]]
    ev = evaluate(c, frame(rows))
    assert ev.total == 0


@FAST
@given(st.lists(st.integers(0, 400), min_size=1, max_size=12), st.decimals(min_value=Decimal("0.01"), max_value=Decimal(1), places=2),
       st.decimals(min_value=Decimal("0.5"), max_value=Decimal(500), places=2), st.booleans())
def test_zero_effect_pays_zero_under_share_of_savings(values: list[int], share: Decimal, cost: Decimal, did: bool) -> None:
    ids = [f"p{i}" for i in range(len(values))]
    mean = Decimal(sum(values)) / len(values)
    c = contract(
        metrics=[{"id": "benefit_days", "name": "Benefit days", "type": "duration", "better": "lower"}],
        baselines=[{"id": "base", "kind": "fixed", "metric": "benefit_days", "value": str(mean)}],
        triggers=[{"id": "sos", "kind": "share_of_savings", "clause": "S", "unit_cost": str(cost), "share": str(share),
                   "effect": {"metric": "benefit_days", "baseline": "base", "measure": "reduction"}}],
        timeline=TIMELINE)
    rows = enrol(ids) + [(p, "benefit_days", "2024-06-01", v) for p, v in zip(ids, values)]
    ev = evaluate(c, frame(rows))
    assert ev.total == 0


ks = st.sampled_from([Decimal("0.5"), Decimal(2), Decimal(3), Decimal("1.25"), Decimal("0.01"), Decimal(7),
                      Decimal("0.333")])


def _scaled_pairs(a: Evaluation, b: Evaluation, k: Decimal) -> None:
    """Exactly k times, up to the last of the 28 significant digits of decimal arithmetic
    (a linear interpolation divides)."""
    assert [ln.key for ln in a.lines] == [ln.key for ln in b.lines]
    for la, lb in zip(a.lines, b.lines):
        assert la.unrounded is not None and lb.unrounded is not None
        want = k * la.unrounded
        assert abs(lb.unrounded - want) <= Decimal("1e-24") * max(Decimal(1), abs(want)), (la.key, la.unrounded, lb.unrounded)
        # and rounding moves each line by less than a cent per payer split; a cap applied
        # after rounding (caps.total, a payer's cap) runs on the rounded amounts before the
        # line, the unrounded figure on the exact ones: they differ by that rounding too
        after = any(t.label.startswith(("cap: caps.total", "payer cap")) for t in lb.trace.walk())
        slack = Decimal("0.005") * len(b.lines) if after else Decimal(0)
        assert abs(lb.amount - lb.unrounded) <= Decimal("0.01") * 2 + slack


@FAST
@given(st.lists(event, max_size=14), prices, prices, st.integers(1, 3), ks, st.data())
def test_scaling_prices_scales_rate_card_payments(events: list[Any], p1: Decimal, p2: Decimal, mc: int,
                                                  k: Decimal, data: st.DataObject) -> None:
    cp = data.draw(caps(max(p1, p2)))
    world = card_world(events)
    a = evaluate(card_contract(p1, p2, mc, cp), world)
    b = evaluate(card_contract(p1, p2, mc, cp, k=k), world)
    _scaled_pairs(a, b, k)


@FAST
@given(st.lists(st.integers(0, 400), min_size=2, max_size=12), st.integers(0, 600), ks,
       st.decimals(min_value=Decimal("0.5"), max_value=Decimal(500), places=2))
def test_scaling_unit_cost_and_schedules_scales_payments(values: list[int], base: int, k: Decimal, cost: Decimal) -> None:
    ids = [f"p{i}" for i in range(len(values))]

    def make(kk: Decimal) -> Any:
        return contract(
            metrics=[{"id": "benefit_days", "name": "Benefit days", "type": "duration", "better": "lower"}],
            baselines=[{"id": "base", "kind": "fixed", "metric": "benefit_days", "value": str(base)}],
            triggers=[
                {"id": "sos", "kind": "share_of_savings", "clause": "S", "unit_cost": str(cost * kk), "share": "0.4",
                 "effect": {"metric": "benefit_days", "baseline": "base", "measure": "reduction"}},
                {"id": "thr", "kind": "threshold", "clause": "T", "pays": "per_unit",
                 "effect": {"metric": "benefit_days", "baseline": "base", "measure": "reduction"},
                 "schedule": {"interpolation": "linear", "points": [
                     {"effect": "0", "value": str(Decimal("3.10") * kk)}, {"effect": "300", "value": str(Decimal("9.95") * kk)}]}},
            ],
            timeline=TIMELINE)

    rows = enrol(ids) + [(p, "benefit_days", "2024-06-01", v) for p, v in zip(ids, values)]
    df = frame(rows)
    _scaled_pairs(evaluate(make(Decimal(1)), df), evaluate(make(k), df), k)


@FAST
@given(st.lists(event, max_size=16), prices, prices, st.integers(1, 3),
       st.lists(st.integers(0, 2), min_size=6, max_size=6), st.booleans(), st.data())
def test_payer_splits_add_up_to_the_cent(events: list[Any], p1: Decimal, p2: Decimal, mc: int, munis: list[int],
                                         by_residence: bool, data: st.DataObject) -> None:
    if by_residence:
        payers = [{"party": "city", "residence": [MUNIS[0]]}, {"party": "city2", "residence": MUNIS[1:]}]
    else:
        a = data.draw(st.integers(1, 99))
        payers = [{"party": "city", "share": str(Decimal(a) / 100)}, {"party": "city2", "share": str(Decimal(100 - a) / 100)}]
    ev = evaluate(card_contract(p1, p2, mc, payers=payers), card_world(events, munis))
    per_key: dict[tuple[str, str, str, str], Decimal] = defaultdict(Decimal)
    units: dict[tuple[str, str, str, str], set[Decimal | None]] = defaultdict(set)
    for ln in ev.lines:
        k = (ln.determination, ln.trigger, ln.outcome, ln.period)
        per_key[k] += ln.amount
        units[k].add(ln.units)
    for k, amount in per_key.items():
        # every payer's line of an amount states the same units, and the payers' parts add
        # up to exactly price x units (no caps here)
        (n,) = units[k]
        assert n is not None
        assert amount == (p1 if k[2] == "start" else p2) * n


@FAST
@given(st.decimals(min_value=Decimal("-100000"), max_value=Decimal("100000"), places=2),
       st.lists(st.integers(1, 1000), min_size=1, max_size=6))
def test_split_among_payers_sums_exactly(amount: Decimal, weights: list[int]) -> None:
    total_w = sum(weights)
    shares = [Decimal(w) / total_w for w in weights]
    # make the shares add up to exactly 1 as a contract requires
    shares = [round(s, 6) for s in shares[:-1]]
    shares.append(Decimal(1) - sum(shares, Decimal(0)))
    if any(s < 0 for s in shares):
        return
    parties = [{"id": f"pay{i}", "name": f"Payer {i}", "role": "payer"} for i in range(len(shares))]
    parties.append({"id": "ngo", "name": "Provider", "role": "provider"})
    c = contract(parties=parties, payers=[{"party": f"pay{i}", "share": str(s)} for i, s in enumerate(shares)],
                 triggers=[{"id": "card", "kind": "rate_card", "clause": "S", "outcomes": [{"metric": "job", "price": "1"}]}])
    parts = split_among_payers(amount, c)
    assert sum((p.amount for p in parts), Decimal(0)) == amount
    assert all(p.amount == round_money(p.amount, "EUR") for p in parts)
    munis = {f"GM{i}": Decimal(w) for i, w in enumerate(weights)}
    c2 = contract(parties=parties, payers=[{"party": f"pay{i}", "residence": [f"GM{i}"]} for i in range(len(weights))],
                  triggers=[{"id": "card", "kind": "rate_card", "clause": "S", "outcomes": [{"metric": "job", "price": "1"}]}])
    parts2 = split_among_payers(amount, c2, by_municipality=munis)
    assert sum((p.amount for p in parts2), Decimal(0)) == amount


# -- payers by residence with their own caps ------------------------------------------------

world_event = st.tuples(st.integers(0, 5), st.sampled_from(["start", "job", "employed"]), st.integers(0, 700))
money = st.decimals(min_value=Decimal("1"), max_value=Decimal("3000"), places=2)


@st.composite
def residence_deal(draw: Any) -> Any:
    """A rate card and a pooled threshold paying per participant, paid by two municipalities'
    payers by residence, each with or without a cap; optionally per-participant caps and
    the contract's total cap (a cap shared by the payers)."""
    p_start, p_job = draw(money), draw(money)
    v1 = draw(money)
    v2 = v1 + draw(st.decimals(min_value=Decimal(0), max_value=Decimal(2000), places=2))
    e1 = draw(st.decimals(min_value=Decimal(0), max_value=Decimal("0.6"), places=2))
    e2 = e1 + draw(st.decimals(min_value=Decimal("0.01"), max_value=Decimal("0.4"), places=2))
    card: dict[str, Any] = {"id": "card", "kind": "rate_card", "clause": "S1", "outcomes": [
        {"metric": "start", "price": str(p_start)},
        {"metric": "job", "price": str(p_job), "requires": ["start"], "max_claims": draw(st.integers(1, 3))}]}
    if draw(st.booleans()):  # at least the cheapest price (the contract checks refuse less)
        card["cap_per_participant"] = str(min(p_start, p_job) + draw(money))
    thr = {"id": "thr", "kind": "threshold", "clause": "S2", "pays": "per_participant",
           "scope": draw(st.sampled_from(["pooled", "per_cohort"])),
           "effect": {"metric": "employed", "measure": "level"},
           "schedule": {"interpolation": "step", "points": [{"effect": str(e1), "value": str(v1)},
                                                             {"effect": str(e2), "value": str(v2)}]}}
    payers: list[dict[str, Any]] = [{"party": "city", "residence": [MUNIS[0]]},
                                    {"party": "city2", "residence": MUNIS[1:]}]
    for p in payers:
        if draw(st.booleans()):
            p["cap"] = str(draw(st.decimals(min_value=Decimal(0), max_value=Decimal(10000), places=2)))
    body: dict[str, Any] = {"triggers": [card, thr], "timeline": TIMELINE, "payers": payers}
    caps: dict[str, Any] = {}
    if draw(st.booleans()):
        # at least any partial cap (the contract checks refuse a partial cap above the total)
        caps["total"] = str(draw(st.decimals(min_value=Decimal(6000), max_value=Decimal(20000), places=2)))
    if draw(st.booleans()):
        caps["per_participant"] = str(min(p_start, p_job) + draw(money))
    if caps:
        body["caps"] = caps
    return contract(**body), "total" in caps


def residence_world(events: list[tuple[int, str, int]], munis: list[int], enrolled: list[int]) -> Any:
    rows = []
    for i in range(6):
        rows += enrol([f"p{i}"], "c1" if i % 2 else "c2", on=days(enrolled[i] - 14), municipality=MUNIS[munis[i]])
    rows += [(f"p{i}", m, days(o), 1) for i, m, o in events]
    return frame(rows)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(residence_deal(), st.lists(world_event, min_size=4, max_size=24),
       st.lists(st.integers(0, 2), min_size=6, max_size=6),
       # enrolled at the start, or during the second half-year (the weights of a split by
       # residence change between determinations)
       st.lists(st.sampled_from([0, 0, 200, 300]), min_size=6, max_size=6), st.data())
def test_a_subset_of_outcomes_never_pays_more_with_payers_by_residence(
        deal: Any, events: list[Any], munis: list[int], enrolled: list[int], data: st.DataObject) -> None:
    """Dropping outcome rows never raises the total.  It never raises what any payer pays
    either, unless a cap shared by the payers binds (``caps.total``): a shared cap is room
    that one payer's residents' outcomes take from another's, so then only the total is
    monotone (see the module docstring of sib_engine.payments)."""
    c, shared_cap = deal
    keep = data.draw(st.lists(st.booleans(), min_size=len(events), max_size=len(events)))
    full = evaluate(c, residence_world(events, munis, enrolled))
    sub = evaluate(c, residence_world([e for e, k in zip(events, keep) if k], munis, enrolled))
    assert sub.total <= full.total, (sub.total, full.total)
    if not shared_cap:
        for payer, amount in sub.by_payer.items():
            assert amount <= full.by_payer.get(payer, Decimal(0)), (payer, amount, full.by_payer)
    for ev in (full, sub):
        for p in c.payers:
            if p.cap is not None:
                assert ev.by_payer.get(p.party, Decimal(0)) <= p.cap
        if c.caps is not None and c.caps.total is not None:
            assert ev.total <= c.caps.total
