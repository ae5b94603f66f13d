"""Known-answer tests of the statistical tests against published examples, and their
shared invariants."""

from __future__ import annotations

import math
from decimal import Decimal

import numpy as np
import pytest

from sib_engine.stats import (
    interval_confidence,
    one_proportion_z,
    one_sample_t,
    poisson_one_sample,
    poisson_rate_ratio,
    to_decimal,
    two_proportion_z,
    wald_z,
    welch_t,
    welch_t_from_samples,
)

# Student's sleep data (Cushny & Peebles 1905), the example of R's ?t.test:
#   t.test(extra ~ group, data = sleep)
#   Welch Two Sample t-test: t = -1.8608, df = 17.776, p-value = 0.07939
#   95 percent confidence interval: -3.3654832  0.2054832
#   mean in group 1 0.75, mean in group 2 2.33
SLEEP_1 = [0.7, -1.6, -0.2, -1.2, -0.1, 3.4, 3.7, 0.8, 0.0, 2.0]
SLEEP_2 = [1.9, 0.8, 1.1, 0.1, -0.1, 4.4, 5.5, 1.6, 4.6, 3.4]


def test_welch_t_known_answer_r_sleep() -> None:
    r = welch_t_from_samples(SLEEP_1, SLEEP_2)
    assert r.statistic == pytest.approx(-1.8608, abs=5e-5)
    assert r.df == pytest.approx(17.776, abs=5e-4)
    assert r.p_value == pytest.approx(0.07939, abs=5e-6)
    assert r.difference == pytest.approx(0.75 - 2.33)
    assert r.difference_ci[0] == pytest.approx(-3.3654832, abs=5e-8)
    assert r.difference_ci[1] == pytest.approx(0.2054832, abs=5e-8)


def test_welch_t_one_sided_halves_the_p_value() -> None:
    two = welch_t_from_samples(SLEEP_1, SLEEP_2)
    less = welch_t_from_samples(SLEEP_1, SLEEP_2, alternative="less")
    greater = welch_t_from_samples(SLEEP_1, SLEEP_2, alternative="greater")
    assert less.p_value == pytest.approx(two.p_value / 2)
    assert greater.p_value == pytest.approx(1 - two.p_value / 2)


def test_poisson_rate_ratio_known_answer_r_eba1977() -> None:
    # R's ?poisson.test example (eba1977 lung cancer data, ISwR package): Fredericia
    # against the other three cities, ages 55-59:
    #   poisson.test(c(11, 6+8+7), c(800, 1083+1050+878))
    #   count1 = 11, expected count1 = 6.7174, p-value = 0.07967
    #   95 percent confidence interval: 0.8584264 4.2772659; rate ratio 1.971488
    r = poisson_rate_ratio(11, 800, 6 + 8 + 7, 1083 + 1050 + 878)
    assert r.p_value == pytest.approx(0.07967, abs=5e-6)
    assert r.ratio == pytest.approx(1.971488, abs=5e-7)
    assert r.ratio_ci is not None
    assert r.ratio_ci[0] == pytest.approx(0.8584264, abs=5e-8)
    assert r.ratio_ci[1] == pytest.approx(4.2772659, abs=5e-8)


def test_poisson_one_sample_known_answer_r_welsh_nickel() -> None:
    # R's ?poisson.test example (Welsh nickel workers, ISwR package):
    #   poisson.test(137, 24.19893)
    #   95 percent confidence interval: 4.753125 6.692709; event rate 5.661407; p < 2.2e-16
    r = poisson_one_sample(137, 24.19893, 1.0)
    assert r.ratio == pytest.approx(5.661407, abs=5e-7)
    assert r.ratio_ci is not None
    assert r.ratio_ci[0] == pytest.approx(4.753125, abs=5e-7)
    assert r.ratio_ci[1] == pytest.approx(6.692709, abs=5e-7)
    assert r.p_value < 2.2e-16


def test_two_proportion_z_known_answer_statsmodels() -> None:
    # statsmodels documentation of proportions_ztest:
    #   count = np.array([5, 12]); nobs = np.array([83, 99])
    #   stat, pval = proportions_ztest(count, nobs); print('{0:0.3f}'.format(pval))  -> 0.159
    # The statistic squared is R's prop.test(c(5, 12), c(83, 99), correct = FALSE) X-squared.
    r = two_proportion_z(5, 83, 12, 99)
    assert f"{r.p_value:0.3f}" == "0.159"
    p = 17 / 182
    assert r.statistic == pytest.approx((5 / 83 - 12 / 99) / math.sqrt(p * (1 - p) * (1 / 83 + 1 / 99)))


def test_one_proportion_z_by_hand() -> None:
    # 10 of 20 against 0.2: z = 0.3 / sqrt(0.2 x 0.8 / 20) = 3.3541; p (greater) = 0.000398
    r = one_proportion_z(10, 20, 0.2, "greater")
    assert r.statistic == pytest.approx(3.354102, abs=1e-6)
    assert r.p_value == pytest.approx(0.000398, abs=1e-6)


def test_one_sample_t_matches_welch_limit() -> None:
    x = np.array(SLEEP_1)
    r = one_sample_t(float(x.mean()), float(x.std(ddof=1)), len(x), 0.0)
    # R: t.test(sleep$extra[1:10]) -> t = 1.3257, df = 9, p-value = 0.2176
    assert r.statistic == pytest.approx(1.3257, abs=5e-5)
    assert r.p_value == pytest.approx(0.2176, abs=5e-5)


@pytest.mark.parametrize(
    "run",
    [
        lambda alt, conf: two_proportion_z(30, 100, 20, 100, alt, conf),
        lambda alt, conf: one_proportion_z(30, 100, 0.2, alt, conf),
        lambda alt, conf: welch_t(5.0, 2.0, 30, 4.0, 2.5, 40, alt, conf),
        lambda alt, conf: one_sample_t(5.0, 2.0, 30, 4.0, alt, conf),
        lambda alt, conf: poisson_rate_ratio(40, 100, 25, 100, alt, conf),
        lambda alt, conf: poisson_one_sample(40, 100, 0.25, alt, conf),
        lambda alt, conf: wald_z(5.0, 0.3, 4.0, 0.4, alt, conf),
    ],
    ids=["two_proportion_z", "one_proportion_z", "welch_t", "one_sample_t", "poisson_rate_ratio",
         "poisson_one_sample", "wald_z"],
)
def test_every_test_shares_the_invariants(run: object) -> None:
    f = run  # type: ignore[assignment]
    wide, narrow = f("two-sided", 0.99), f("two-sided", 0.90)  # type: ignore[operator]
    # a wider confidence gives a wider interval, both around the estimate
    assert wide.difference_ci[0] <= narrow.difference_ci[0] <= narrow.difference_ci[1] <= wide.difference_ci[1]
    assert narrow.difference_ci[0] <= narrow.difference <= narrow.difference_ci[1]
    if narrow.ratio is not None and narrow.ratio_ci is not None:
        assert narrow.ratio_ci[0] <= narrow.ratio <= narrow.ratio_ci[1]
    # the treatment is better here, so "greater" is more significant than two-sided
    g, less = f("greater", 0.95), f("less", 0.95)  # type: ignore[operator]
    assert g.p_value <= wide.p_value <= 1
    assert less.p_value >= 0.5
    assert 0 <= g.p_value <= 1


def test_interval_confidence() -> None:
    assert interval_confidence(0.05, "one") == pytest.approx(0.90)
    assert interval_confidence(0.05, "two") == pytest.approx(0.95)


def test_to_decimal_absorbs_float_noise() -> None:
    assert to_decimal((0.5 - 0.3) / 0.5) == Decimal("0.4")
    assert to_decimal(0.1 + 0.2) == Decimal("0.3")
    assert to_decimal(float("nan")) is None
    assert to_decimal(None) is None
    assert to_decimal(3) == Decimal(3)


def test_inputs_are_not_mutated() -> None:
    a, b = list(SLEEP_1), np.array(SLEEP_2)
    welch_t_from_samples(a, b)
    assert a == SLEEP_1 and list(b) == SLEEP_2


def test_degenerate_samples_are_refused_or_flat() -> None:
    with pytest.raises(ValueError):
        welch_t(1.0, 1.0, 1, 1.0, 1.0, 5)
    r = poisson_rate_ratio(0, 10, 0, 10)
    assert r.p_value == 1.0 and r.ratio is None


def test_ratio_interval_of_a_baseline_a_hair_above_zero_is_unbounded_not_an_overflow() -> None:
    # a difference-in-differences baseline that nearly cancels: m0 is a float hair above
    # zero, so the log-scale standard error is astronomically large; exp() of it used to
    # raise OverflowError and crash the whole evaluation
    r = welch_t(0.5, 1.0, 30, 1e-300, 1.0, 30)
    assert r.ratio is not None and r.ratio > 1e299
    assert r.ratio_ci == (0.0, math.inf)
    assert r.p_value == pytest.approx(welch_t(0.5, 1.0, 30, 0.0, 1.0, 30).p_value)
