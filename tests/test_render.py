"""describe_contract: every kind of every family is rendered, with its key facts."""

from __future__ import annotations

import copy
import re
import typing
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any, Callable

import pytest
from pydantic import BaseModel

from sib_engine import consistency, contract as contract_module
from sib_engine.contract import (
    BASELINE_KINDS,
    TRANCHE_KINDS,
    TRIGGER_KINDS,
    Contract,
    EffectMeasure,
    Gate,
    MetricType,
    PartyRole,
    PaysBasis,
    Payer,
    Schedule,
    StatTest,
    WaterfallPay,
)
from sib_engine.loader import EXAMPLE, load_contract, parse_contract, read_contract_data
from sib_engine.render import describe_contract

HERE = Path(__file__).parent
EVERY_KIND = HERE / "data" / "every_kind.yaml"
EXAMPLES = sorted((HERE.parent / "contracts").glob("*.yaml"))

Mutation = Callable[[dict[str, Any]], None] | None


def _data() -> dict[str, Any]:
    data = read_contract_data(EVERY_KIND.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def _build(mutate: Mutation) -> Contract:
    if mutate is None:
        return load_contract(EVERY_KIND)
    data = copy.deepcopy(_data())
    mutate(data)
    c = Contract.model_validate(data)
    problems = consistency.check(c)
    assert not problems, [p.format() for p in problems]
    return c


def _trigger(data: dict[str, Any], trigger_id: str) -> dict[str, Any]:
    found: dict[str, Any] = next(t for t in data["triggers"] if t["id"] == trigger_id)
    return found


_RENDERED: dict[int, str] = {}


def _render(mutate: Mutation) -> str:
    key = id(mutate)
    if key not in _RENDERED:
        _RENDERED[key] = describe_contract(_build(mutate))
    return _RENDERED[key]


# ---------------------------------------------------------------------- variants ---


def _residence(d: dict[str, Any]) -> None:
    d["payers"] = [
        {"party": "utrecht", "residence": ["GM0344", "GM0345"], "clause": "Art. 5.1"},
        {"party": "amersfoort", "residence": ["GM0307"], "cap": "900000.00"},
        {"party": "topfund", "top_up": Decimal("0.25")},
    ]


def _per_participant(d: dict[str, Any]) -> None:
    _trigger(d, "jobs_rate")["pays"] = "per_participant"


def _relative_difference(d: dict[str, Any]) -> None:
    _trigger(d, "jobs_rate")["effect"]["measure"] = "relative_difference"


# family -> kind -> (variant of the every-kind contract or None, facts that must appear)
CASES: dict[str, dict[str, tuple[Mutation, list[str]]]] = {
    "trigger": {
        "rate_card": (None, [
            "### Rate card (`outcomes`, rate card) — Schedule 2",
            "For each participant achieving *Level-2 diploma*: EUR 4,730.00 (at most once per participant; "
            "only after *Begins training* has been paid; at most 200 outcomes / EUR 946,000.00) — Schedule 2, 1.1",
            "*Begins training*: EUR 220.00 (at most once per participant; at most 500 outcomes (EUR 110,000.00)) — Schedule 2, 1.0",
            "For each participant with *Job of 24 h/week held six months*: EUR 2,750.00 (at most twice per "
            "participant; at most EUR 500,000.00) — Schedule 2, 1.2",
            "this rate card pays at most EUR 9,000.00 per participant and EUR 300,000.00 per period",
            "This trigger pays at most EUR 1,500,000.00 over the contract.",
        ]),
        "threshold": (None, [
            "### Employment rate (`jobs_rate`, threshold schedule) — Schedule 4",
            "*Job of 24 h/week held six months* minus baseline `job_rate`, decided on all cohorts pooled",
            "| 5 percentage points or more | EUR 100,000.00 |",
            "| 10 percentage points or more | EUR 250,000.00 |",
            "Each tier applies from its effect up to the next tier.",
            "Nothing is paid below an effect of 5 percentage points.",
            "The value is at most EUR 250,000.00.",
            "### Fewer reconvictions (`reoffending`, threshold schedule) — Schedule 6",
            "decided for each cohort separately",
            "| at 0.2 reconviction | EUR 500.00 per reconviction |",
            "| at 0.6 reconviction | EUR 800.00 per reconviction |",
            "Between two points the value is interpolated linearly.",
        ]),
        "cohort_with_pooled_fallback": (None, [
            "### Nights in custody (`custody`, per cohort, with a pooled fallback) — Schedule 7",
            "the relative reduction of *Nights in custody* against baseline `custody_blend`",
            "a final payment is decided at determination `final` on all cohorts pooled",
            "Per cohort:\n\n| effect | payment |\n|---|---|\n| 10% or more | EUR 120,000.00 |",
            "Pooled fallback:\n\n| effect | payment |\n|---|---|\n| 7.5% or more | EUR 200,000.00 |",
        ]),
        "share_of_savings": (None, [
            "### Benefit savings (`savings`, share of savings) — Schedule 8",
            "Pays 40% of the public savings",
            "the reduction of *Benefit days* below baseline `benefit_expected`",
            "× EUR 45.50 per day",
            "annual return (IRR) of 8%, the share becomes 30%",
            "This trigger pays at most EUR 800,000.00 over the contract.",
        ]),
        "banded_return": (None, [
            "### Investor return band (`returns`, banded return) — Schedule 9",
            "annual return on `senior` (senior loan from **Social Bank**) and `junior` (junior loan from **Impact Fund**)",
            "| at 60% | 5% a year |",
            "| at 65% | 7.5% a year |",
            "Below an effect of 60% the bands give no return.",
            "the return is at least 3% a year until 2026-12-31",
            "Below an effect of 55% the investors' capital is at risk: only the protected fraction below is repaid.",
            "If the investment is redeemed by 2025-06-30, 75% of the capital is returned.",
            "This trigger pays at most EUR 400,000.00 over the contract.",
        ]),
    },
    "baseline": {
        "fixed": (None, ["**`job_rate`** for *Job of 24 h/week held six months*: a fixed value of 25%, written in the "
                         "contract (source: regional statistics) — Schedule 3, 1"]),
        "historical": (None, ["the value 1.8 observed in a historical cohort of 420 participants "
                              "(standard deviation 0.9; observed 2019-2021) — Schedule 3, 2"]),
        "expected_duration": (None, [
            "over 730 days without the programme, from a table by age and prior duration — Schedule 3, 3",
            "| 17 to 26 | 0 to 11 | 310 |",
            "| 17 to 26 | 12 to 600 | 480 |",
            "| 27 to 35 | 0 to 600 | 520 |",
        ]),
        "comparison_group": (None, [
            "**`custody_rct`** for *Nights in custody*: a randomised comparison group (records marked group = "
            "'comparison'), estimated by the difference between participants and the group — Schedule 3, 4",
            "**`custody_did`** for *Nights in custody*: a matched comparison group (records marked group = 'control'), "
            "estimated by difference in differences against *Nights in custody before enrolment*",
        ]),
        "blended": (None, ["**`custody_blend`** for *Nights in custody*: a blend of 80% `custody_rct` and 20% "
                           "`custody_did` — Schedule 3, 5"]),
    },
    "tranche": {
        "senior_loan": (None, [
            "**Senior loan** `senior` from **Social Bank**: EUR 1,000,000.00; coupon 5% a year (quarterly, act/360); "
            "drawn in 3 parts every 6 months from 2024-01-01 to 2025-01-01 (EUR 333,333.34, EUR 333,333.33, "
            "EUR 333,333.33); matures on 2028-06-30 — Art. 9.1",
        ]),
        "junior_loan": (None, [
            "**Junior loan** `junior` from **Impact Fund**: EUR 500,000.00; coupon 8% a year (simple, act/365); "
            "drawn on 2024-01-01 (EUR 300,000.00) and on 2025-01-01 (EUR 200,000.00)",
        ]),
        "quasi_equity": (None, [
            "**Quasi-equity** `equity` from **Impact Fund**: EUR 300,000.00; drawn in full at the start of the term "
            "(2024-01-01); return capped at 15% a year (IRR)",
        ]),
        "recoverable_grant": (None, ["**Recoverable grant** `grant` from **Kitchen Foundation**: EUR 200,000.00"]),
        "deferred_fee": (None, ["**Deferred provider fee** `fee` from **Kitchen Works BV**: EUR 100,000.00"]),
        "first_loss": (None, ["**First-loss capital** `firstloss` from **Deal Intermediary**: EUR 50,000.00"]),
    },
    "payer": {
        "share": (None, [
            "- **Gemeente Utrecht** pays 60% of every outcome payment — Art. 5.1",
            "- **Gemeente Amersfoort** pays 40% of every outcome payment, at most EUR 900,000.00 over the contract — Art. 5.2",
        ]),
        "residence": (_residence, [
            "- **Gemeente Utrecht** pays for participants resident in GM0344, GM0345 — Art. 5.1",
            "- **Gemeente Amersfoort** pays for participants resident in GM0307, at most EUR 900,000.00 over the contract",
            "- **National Top-up Fund** adds 25% on top of every payment of the primary payers",
        ]),
        "top_up": (None, [
            "- **National Top-up Fund** adds 20% on top of every payment of the primary payers, at most "
            "EUR 400,000.00 over the contract — Art. 5.3",
        ]),
    },
    "waterfall": {
        "costs": (None, ["1. Costs of EUR 20,000.00 — Art. 11.1"]),
        "interest": (None, ["2. Interest due on `senior` (senior loan from **Social Bank**)",
                            "4. Interest due on `junior`"]),
        "principal": (None, ["3. Principal of `senior`", "5. Principal of `junior`"]),
        "fee": (None, ["6. Deferred fee of `fee` (deferred provider fee from **Kitchen Works BV**)"]),
        "bonus": (None, ["7. Success bonus of EUR 50,000.00, shared: **Kitchen Works BV** 100%"]),
        "residual": (None, ["8. Whatever remains, shared: **Impact Fund** 70%, **Kitchen Works BV** 30% — Art. 11.8"]),
    },
    "measure": {
        "level": (None, ["the effect, the measured *Job of 24 h/week held six months*, falls in"]),
        "difference": (None, ["*Job of 24 h/week held six months* minus baseline `job_rate`"]),
        "relative_difference": (_relative_difference, [
            "the relative change of *Job of 24 h/week held six months* over baseline `job_rate`",
            "| 5% or more | EUR 100,000.00 |",
        ]),
        "reduction": (None, ["the reduction of *Reconvictions* below baseline `reconv_hist`"]),
        "relative_reduction": (None, ["the relative reduction of *Nights in custody* against baseline `custody_blend`"]),
    },
    "pays": {
        "amount": (None, ["| 10% or more | EUR 120,000.00 |"]),
        "per_participant": (_per_participant, [
            "| 5 percentage points or more | EUR 100,000.00 per participant |",
            "| effect | payment per participant of the cohort |",
        ]),
        "per_unit": (None, ["| effect | payment per unit of effect |", "EUR 500.00 per reconviction"]),
    },
    "gate_rule": {
        "significant": (None, ["Paid only if the effect is statistically significant at the 5% level "
                               "(one-sided two-proportion z-test). — Schedule 5, 1"]),
        "lower_bound": (None, ["Paid on the lower bound of the 95% confidence interval of the effect "
                               "(one-sided Welch t-test), not on the point estimate. — Schedule 7, 3"]),
    },
    "test": {
        "two_proportion_z": (None, ["two-proportion z-test"]),
        "welch_t": (None, ["Welch t-test"]),
        "poisson_rate_ratio": (None, ["significant at the 10% level (two-sided Poisson rate-ratio test)"]),
    },
    "metric_type": {
        "event": (None, ["**Begins training** (`starts`): an event that happens to a participant on a date; higher is better"]),
        "binary": (None, ["(`job`): yes or no per participant, reported as a rate"]),
        "count": (None, ["**Nights in custody** (`custody`): a count per participant (unit: night); lower is better"]),
        "duration": (None, ["**Benefit days** (`benefit_days`): days in a state per participant (unit: day)"]),
        "continuous": (None, ["**Body mass index** (`bmi`): a measured value per participant (unit: kg/m2); "
                              "lower is better; possible values 10 to 80"]),
    },
    "role": {
        "payer": (None, ["- **Gemeente Utrecht** (`utrecht`) — outcome payer (commissioner); municipality code GM0344"]),
        "top_up_fund": (None, ["- **National Top-up Fund** (`topfund`) — top-up fund"]),
        "investor": (None, ["- **Impact Fund** (`impact`) — investor (funder). Also holds the quasi-equity."]),
        "guarantor": (None, ["- **Kitchen Foundation** (`foundation`) — guarantor"]),
        "provider": (None, ["- **Kitchen Works BV** (`kitchen`) — service provider"]),
        "evaluator": (None, ["- **University Evaluation Unit** (`uni`) — evaluator / validator"]),
        "intermediary": (None, ["- **Deal Intermediary** (`spv`) — intermediary"]),
    },
    "interpolation": {
        "step": (None, ["| 10 percentage points or more | EUR 250,000.00 |"]),
        "linear": (None, ["| at 65% | 7.5% a year |", "Between two points the value is interpolated linearly."]),
    },
}


def _literal(tp: Any) -> set[str]:
    return set(typing.get_args(tp))


REGISTRIES: dict[str, set[str]] = {
    "trigger": set(TRIGGER_KINDS),
    "baseline": set(BASELINE_KINDS),
    "tranche": set(TRANCHE_KINDS),
    "payer": _literal(typing.get_type_hints(Payer.mode.fget)["return"]),
    "waterfall": _literal(WaterfallPay),
    "measure": _literal(EffectMeasure),
    "pays": _literal(PaysBasis),
    "gate_rule": _literal(Gate.model_fields["rule"].annotation),
    "test": _literal(StatTest),
    "metric_type": _literal(MetricType),
    "role": _literal(PartyRole),
    "interpolation": _literal(Schedule.model_fields["interpolation"].annotation),
}


@pytest.mark.parametrize("family", sorted(REGISTRIES))
def test_every_registered_kind_has_a_render_case(family: str) -> None:
    """A new kind (trigger, baseline, tranche, ...) fails here until it is rendered and tested."""
    assert REGISTRIES[family], family
    assert set(CASES[family]) == REGISTRIES[family]


PARAMS = [
    pytest.param(mutate, facts, id=f"{family}-{kind}")
    for family, kinds in sorted(CASES.items())
    for kind, (mutate, facts) in sorted(kinds.items())
]


@pytest.mark.parametrize(("mutate", "facts"), PARAMS)
def test_each_kind_renders_its_key_facts(mutate: Mutation, facts: list[str]) -> None:
    text = _render(mutate)
    missing = [f for f in facts if f not in text]
    assert not missing, "missing from the description:\n" + "\n".join(missing) + "\n\n" + text


def _model_classes(obj: Any, seen: set[type]) -> None:
    if isinstance(obj, BaseModel):
        seen.add(type(obj))
        for name in type(obj).model_fields:
            _model_classes(getattr(obj, name), seen)
    elif isinstance(obj, (tuple, list)):
        for item in obj:
            _model_classes(item, seen)
    elif isinstance(obj, dict):
        for item in obj.values():
            _model_classes(item, seen)


def test_every_kind_contract_uses_every_model_of_the_language() -> None:
    declared = {
        cls
        for cls in vars(contract_module).values()
        if isinstance(cls, type)
        and issubclass(cls, contract_module.Model)
        and cls.__module__ == contract_module.__name__
        and not cls.__name__.startswith("_")
        and cls is not contract_module.Model
    }
    used: set[type] = set()
    _model_classes(load_contract(EVERY_KIND), used)
    assert declared - used == set(), "add these to tests/data/every_kind.yaml (and a render case)"


# ------------------------------------------------------------- sections and facts ---


@pytest.fixture(scope="module")
def every_kind() -> Contract:
    return load_contract(EVERY_KIND)


@pytest.fixture(scope="module")
def text(every_kind: Contract) -> str:
    return describe_contract(every_kind)


def test_sections_in_reading_order(text: str) -> None:
    headings = [line for line in text.splitlines() if line.startswith("## ")]
    assert headings == [
        "## Parties",
        "## Who can take part",
        "## Who pays whom",
        "## What is measured",
        "## Baselines: what would have happened anyway",
        "## What is paid for",
        "## How much at most",
        "## When",
        "## Capital stack and waterfall",
        "## Guarantees",
        "## Value for money",
        "## Data quality",
        "## Amendments",
        "## Risk simulation assumptions",
    ]
    assert text.startswith("# Kitchen Works outcomes contract\n")
    assert text.endswith("\n") and not text.endswith("\n\n")


def test_every_amount_is_formatted_money(text: str) -> None:
    amounts = re.findall(r"EUR \S+", text)
    assert len(amounts) > 50
    for a in amounts:
        assert re.fullmatch(r"EUR \d{1,3}(,\d{3})*\.\d\d[),;.|]*", a), a
    assert "Decimal(" not in text and "None" not in text


def test_other_currencies_use_their_own_decimals() -> None:
    c = parse_contract(EXAMPLE.replace("currency: EUR", "currency: JPY").replace('"2750.00"', "275000"))
    assert "JPY 275,000 (at most once per participant)" in describe_contract(c)


def test_header_facts(text: str) -> None:
    assert "Contract `every-kind`, version 2 (sib-contract/1); amounts in EUR; jurisdiction: NL." in text
    assert "Sources of the figures: invented for the tests." in text
    assert "These are the terms as signed. 2 amendments" in text


def test_eligibility(text: str) -> None:
    assert ("Participants aged 17 to 35 years; at least 6 months on benefits (or out of work) before "
            "enrolment. Unemployed and registered with the municipality. — Art. 3") in text


def test_caps_and_maximum_exposure(text: str) -> None:
    assert "The contract pays at most EUR 4,000,000.00 in all, EUR 700,000.00 per period and EUR 20,000.00 per participant — Art. 6" in text
    assert "- `outcomes`: *Level-2 diploma* at most 200 outcomes" in text
    assert "- `jobs_rate`: schedule value at most EUR 250,000.00" in text
    assert "- **Gemeente Amersfoort** pays at most EUR 900,000.00 — Art. 5.2" in text
    # 1,500,000 + 250,000 + 300,000 + (3 cohorts x 120,000 + 200,000) + 800,000 + 400,000
    assert ("**Maximum exposure:** EUR 3,810,000.00, the sum of the triggers' limits (`outcomes` EUR 1,500,000.00, "
            "`jobs_rate` EUR 250,000.00, `reoffending` EUR 300,000.00, `custody` EUR 560,000.00, "
            "`savings` EUR 800,000.00, `returns` EUR 400,000.00).") in text
    assert "Of which at most: **Gemeente Utrecht** EUR 2,286,000.00, **Gemeente Amersfoort** EUR 900,000.00." in text
    assert "On top of this, the top-up adds at most: **National Top-up Fund** EUR 400,000.00." in text


def test_exposure_falls_back_to_the_total_cap() -> None:
    def uncap(d: dict[str, Any]) -> None:
        del _trigger(d, "savings")["cap"]

    text = describe_contract(_build(uncap))
    assert "**Maximum exposure:** EUR 4,000,000.00, the contract's total cap." in text


def test_exposure_that_cannot_be_computed_says_why() -> None:
    text = describe_contract(parse_contract(EXAMPLE))
    assert "No caps are set." in text
    assert "**Maximum exposure:** cannot be computed from the terms: `card` (rate card) has no cap." in text


def test_exposure_from_rate_card_unit_caps() -> None:
    c = parse_contract(EXAMPLE.replace('price: "2750.00"}', 'price: "2750.00", cap_units: 100}'))
    assert "**Maximum exposure:** EUR 275,000.00, the sum of the triggers' limits (`card` EUR 275,000.00)." in describe_contract(c)


def test_exposure_bounded_by_the_payers_caps() -> None:
    def capped(d: dict[str, Any]) -> None:
        _residence(d)
        d["payers"][0]["cap"] = "600000.00"
        del _trigger(d, "savings")["cap"]

    text = describe_contract(_build(capped))
    assert "**Maximum exposure:** EUR 1,500,000.00, the sum of the payers' caps." in text
    assert "On top of this, the top-up adds at most: **National Top-up Fund** EUR 375,000.00." in text


def test_timeline(text: str) -> None:
    assert "- **Term:** 2024-01-01 to 2028-06-30; outcomes outside the term are not paid — Art. 2" in text
    assert ("- **Measurement periods:** 8 periods of 6 months from 2024-01-01: P1 (2024-01-01 to 2024-06-30) "
            "to P8 (2027-07-01 to 2027-12-31) — Art. 7") in text
    assert "- **Payment:** due 45 days after the end of the period determined" in text
    # payment date = period end + lag (the determination's own lag where it has one)
    assert "| `first` | interim | P2 (ends 2024-12-31) | 2024-12-31 (period end) | 2025-02-14 (45 days) | Art. 7.1 |" in text
    assert "| `second` | interim | P4 (ends 2025-12-31) | 2026-02-28 | 2026-03-01 (60 days) |  |" in text
    assert "| `final` | final | P8 (ends 2027-12-31) | 2027-12-31 (period end) | 2028-02-14 (45 days) | Art. 7.3 |" in text
    assert "| `c1` | Spring 2024 | 2024-01-01 to 2024-06-30 | 60 |" in text
    assert "| `c3` |  | 2026-01-01 to 2026-06-30 |  |" in text


def test_capital_and_guarantees(text: str) -> None:
    assert "Committed in all: EUR 2,150,000.00. — Art. 9" in text
    assert "The provider's planned delivery cost is EUR 1,900,000.00." in text
    assert "25% of outcome payments until 2025-12-31 are recycled into service costs" in text
    assert ("- **Kitchen Foundation** covers 50% of the loss and up to EUR 200,000.00 (whichever is lower) on "
            "`junior` (junior loan from **Impact Fund**) (`g_junior`; principal only; settled at the end of "
            "the term (2028-06-30)) — Art. 10") in text
    assert ("covers the loss up to EUR 250,000.00 on `senior` (senior loan from **Social Bank**) "
            "(`g_senior`; principal and interest; settled on 2028-03-31)") in text


def test_value_for_money_and_data_quality(text: str) -> None:
    assert "- Each *Job of 24 h/week held six months* saves EUR 12,000.00 of public money (cashable; source: CPB estimate)" in text
    assert "- Each day of *Benefit days* avoided saves EUR 45.50 of public money (cashable)" in text
    assert "- Each night of *Nights in custody* avoided saves EUR 310.00 of public money (not cashable)" in text
    assert "- Paying the provider directly for the same service would cost EUR 1,800,000.00" in text
    assert "- Future amounts are discounted at 3.5% a year — Annex VfM" in text
    assert "more than 10% of its rows quarantined is put on payment hold. — Annex Data" in text
    assert "These checks reject the row: ineligible." in text
    assert "These checks accept the row but flag it: restated_row." in text


# -------------------------------------------------------------------- amendments ---


def test_amendments_as_signed(text: str) -> None:
    assert ("- **2025-07-01**, amendment `price-up` — Deed of variation 1, cl. 2: The level-2 diploma price is raised."
            in text)
    assert "  - `triggers.outcomes.outcomes.diploma_l2.price` becomes EUR 5,000.00" in text
    assert "- **2026-01-01**, amendment `drop-c3` — Deed of variation 2, cl. 1: The third cohort is dropped." in text
    assert "  - `timeline.cohorts.c3` is removed" in text
    assert "EUR 4,730.00" in text and "Terms in force on" not in text and "*(in force" not in text


def test_terms_in_force_on_a_date(every_kind: Contract) -> None:
    before = describe_contract(every_kind, date(2025, 6, 30))
    assert "**Terms in force on 2025-06-30**: the contract as signed; no amendment had taken effect by then." in before
    assert "*Level-2 diploma*: EUR 4,730.00" in before
    assert "*(not yet in force on 2025-06-30)*" in before

    middle = describe_contract(every_kind, date(2025, 7, 1))
    assert "with amendment `price-up` of 2025-07-01 applied." in middle
    assert "*Level-2 diploma*: EUR 5,000.00" in middle and "EUR 4,730.00" not in middle
    assert "`price-up` — Deed of variation 1, cl. 2: The level-2 diploma price is raised. *(in force on 2025-07-01)*" in middle
    assert "| `c3` |" in middle

    after = describe_contract(every_kind, date(2026, 3, 1))
    assert "with amendments `price-up` of 2025-07-01 and `drop-c3` of 2026-01-01 applied." in after
    assert "| `c3` |" not in after
    assert "`custody` EUR 440,000.00" in after  # two cohorts left: 2 x 120,000 + 200,000


def test_a_date_outside_the_term_is_flagged(every_kind: Contract) -> None:
    assert "(outside the term, 2024-01-01 to 2028-06-30)" in describe_contract(every_kind, date(2030, 1, 1))


def test_rendering_does_not_change_the_contract(every_kind: Contract) -> None:
    before = every_kind.model_dump()
    describe_contract(every_kind, date(2026, 3, 1))
    assert every_kind.model_dump() == before
    assert every_kind.in_force_on is None


def test_minimal_example_renders() -> None:
    text = describe_contract(parse_contract(EXAMPLE))
    assert text.startswith("# Demo rate card\n")
    assert "### `card` (rate card) — Schedule 1" in text
    assert "For each participant achieving *Job held six months*: EUR 2,750.00 (at most once per participant)" in text
    assert "No interim or final determinations are listed; each period's payment is due 30 days after the period ends." in text
    assert "## Capital stack" not in text and "## Amendments" not in text


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_files_render(path: Path) -> None:
    c = load_contract(path)
    text = describe_contract(c)
    assert text.startswith(f"# {c.title}\n")
    for t in c.triggers:
        assert f"`{t.id}`" in text and t.clause in text



def test_simulation_assumptions(text: str) -> None:
    part = text.split("## Risk simulation assumptions")[1]
    assert "by default over 5,000 simulated worlds with seed 7" in part
    assert ("- *Job of 24 h/week held six months*: without the programme 25%; true effect normal with mean 8% "
            "and sd 4%, kept within -10% to 30%; target 5%") in part
    assert "true effect beta(8, 4) on 0% to 50%; recorded 1 months after enrolment" in part
    assert "true effect triangular from 5% to 30%, most likely 15%" in part
    assert "without the programme 1.8; true effect lognormal with mean 0.4 and sd 0.2, shifted by -0.6" in part
    assert "true effect one of -5 (25%), -2 (50%), 0 (25%)" in part
    assert "true effect fixed at -20" in part
    assert ("Enrolment: triangular from 80% to 110%, most likely 100% of each cohort's target size (cohorts "
            "without one: 120); comparison groups of 1.5 per participant; attrition beta(2, 20) on 0% to 100%; "
            "start delay one of 0, 3 (equally likely) months; drift of the counterfactual normal with mean 0.01 "
            "and sd 0.01 a year; a payer fails to budget a payment with probability 2%.") in part
    assert "| starts | 1 | 0.5 | 0.3 | 0 | 0 | 0 |" in part
    assert part.rstrip().endswith("Invented for the tests.")
