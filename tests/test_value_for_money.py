"""Government value for money: known answers and the break-even definition."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from sib_engine.loader import load_contract
from sib_engine.value_for_money import outcome_units_from_payments, value_for_money
from sib_engine.waterfall import OutcomePayment, run_waterfall

from funding_helpers import deal

D = Decimal
ROOT = __import__("pathlib").Path(__file__).resolve().parent.parent


def rotterdam_lines() -> list[OutcomePayment]:
    return [
        OutcomePayment(date(2016, 1, 29), D("310000.00"), "rotterdam", "benefit_savings", "interim_2015", "P8"),
        OutcomePayment(date(2017, 2, 28), D("520000.00"), "rotterdam", "benefit_savings", "final_2016", "P12"),
    ]


def test_share_of_savings_known_answer() -> None:
    c = load_contract(ROOT / "contracts" / "rotterdam_youth_2013.yaml")
    v = value_for_money(c, rotterdam_lines())
    # 830,000 paid at 85% of EUR 40 a benefit day: 830,000 / 34 = 24,411.7647 days saved,
    # each saving EUR 40 of benefits: 976,470.59 cashable; net benefit 146,470.59.
    (days,) = v.outcomes
    assert days.metric == "benefit_days" and days.units == D("24411.7647") and days.derived
    assert v.total_paid == D("830000.00")
    assert v.cashable_savings == D("976470.59")
    assert v.net_benefit == D("146470.59")
    assert days.cost_per_unit == D("34.00")
    # fee-for-service 650,000 (declared): the deal cost 180,000 more
    assert v.fee_for_service_cost == D("650000.00") and v.fee_for_service_source == "contract"
    assert v.premium_over_fee_for_service == D("180000.00")
    # each day saved costs 34 and saves 40: the deal never costs more than it saves
    assert v.break_even_level == 0
    # bought directly, 650,000 is saved back at 650,000 / 976,470.59 = 0.6657 of the outcomes
    assert v.fee_for_service_break_even_level == D("0.6657")
    assert v.as_json() == {"paid": "830000.00", "savings": "976470.59", "net_benefit": "146470.59"}


def test_given_outcomes_override_derived_ones() -> None:
    c = load_contract(ROOT / "contracts" / "rotterdam_youth_2013.yaml")
    v = value_for_money(c, rotterdam_lines(), {"benefit_days": D("30000")})
    assert v.cashable_savings == D("1200000.00") and not v.outcomes[0].derived


PRICEY = """\
capital:
  tranches:
    - {id: loan, kind: senior_loan, funder: bank, commitment: "10000.00", coupon: {rate: 0.05}}
  waterfall:
    - {pay: interest, tranche: loan}
    - {pay: principal, tranche: loan}
    - {pay: residual, split: {club: 1}}
caps: {total: "55000.00"}
value_for_money:
  savings:
    - {metric: job, amount: "2000.00"}
"""


def test_break_even_where_the_total_cap_binds() -> None:
    # price 2,750 per job, saving 2,000: the deal costs more than it saves until payments
    # reach the total cap of 55,000; measured: 10 jobs (27,500 paid, 20,000 saved).
    # Net cost at level L: min(27,500 L, 55,000) - 20,000 L, zero at L = 55,000 / 20,000 = 2.75.
    c = deal(PRICEY)
    lines = [OutcomePayment(date(2024, 6, 30), D("27500.00"), "city", "card")]
    v = value_for_money(c, lines)
    assert v.outcomes[0].units == D("10.0000")
    assert v.cashable_savings == D("20000.00") and v.net_benefit == D("-7500.00")
    assert v.break_even_level == D("2.7500")
    assert dict(v.break_even_units()) == {"job": D("27.5000")}
    # no fee-for-service cost and no service budget declared
    assert v.fee_for_service_cost is None and v.fee_for_service_break_even_level is None
    assert "break-even" in v.explain().lower() and "2.75" in v.explain()


def test_no_break_even_without_a_cap() -> None:
    c = deal(PRICEY.replace('caps: {total: "55000.00"}\n', ""))
    lines = [OutcomePayment(date(2024, 6, 30), D("27500.00"), "city", "card")]
    v = value_for_money(c, lines, {"job": D(10)})
    assert v.break_even_level is None
    assert "does not pay for itself" in v.explain()


def test_supplied_payment_curve() -> None:
    c = load_contract(ROOT / "contracts" / "rotterdam_youth_2013.yaml")

    def threshold(level: Decimal) -> Decimal:  # pays 800,000 once the effect reaches half the measured
        return D("800000") if level >= D("0.5") else D(0)

    v = value_for_money(c, rotterdam_lines(), payments_at=threshold)
    # savings at level L: 976,470.59 L; they cover 800,000 from L = 0.8193
    assert v.break_even_level == D("0.8193")
    assert v.payment_model == "supplied by the caller"


def test_waterfall_result_as_input_uses_adjusted_lines() -> None:
    c = load_contract(ROOT / "contracts" / "rotterdam_youth_2013.yaml")
    wf = run_waterfall(c, rotterdam_lines())
    v = value_for_money(c, wf)
    assert v.total_paid == D("830000.00")
    assert v.paid_present_value < v.total_paid


def test_units_from_evaluation_style_lines() -> None:
    c = load_contract(ROOT / "contracts" / "rotterdam_youth_2013.yaml")
    # an evaluation reports the cumulative units of effect behind each determination;
    # the last one counts (here the cap bound: 900,000 paid for 77,640 days saved)
    lines = [
        OutcomePayment(date(2016, 1, 29), D("900000.00"), "rotterdam", "benefit_savings", units=D("58237.19")),
        OutcomePayment(date(2017, 2, 28), D("0.01"), "rotterdam", "benefit_savings", units=D("77640")),
    ]
    units, notes = outcome_units_from_payments(c, lines)
    assert units == {"benefit_days": D("77640.0000")} and not notes


def test_frames_and_repr() -> None:
    c = load_contract(ROOT / "contracts" / "rotterdam_youth_2013.yaml")
    v = value_for_money(c, rotterdam_lines())
    frame = v.to_frame()
    assert list(frame.columns) == ["measure", "value", "unit"]
    assert "net benefit (cashable savings - paid)" in set(frame["measure"])
    assert repr(v).startswith("<ValueForMoneyResult rotterdam-youth-2013:")
    assert "<table" in v._repr_html_()


def test_default_curve_matches_a_linear_supplied_curve() -> None:
    c = deal(PRICEY.replace('caps: {total: "55000.00"}\n', ""))
    lines = [OutcomePayment(date(2024, 6, 30), D("27500.00"), "city", "card")]
    seen: list[Decimal] = []

    def linear(level: Decimal) -> Decimal:
        seen.append(level)
        return D("27500.00") * level

    a = value_for_money(c, lines, payments_at=linear)
    b = value_for_money(c, lines)
    assert a.break_even_level is None and b.break_even_level is None
    assert seen and max(seen) == D(10)  # the levels tried go up to max_level
