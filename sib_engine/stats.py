"""Statistical tests for effects, with standard errors and confidence intervals (layer 2).

Small pure functions over numbers and arrays, computed with scipy.  Each returns a frozen
:class:`TestResult` comparing a treatment figure ``m`` with a baseline figure ``b``:
the difference ``m - b`` and, where it is defined, the ratio ``m / b``, each with a
confidence interval; the test statistic and its p-value for the stated alternative.

The tests a contract can name (``Gate.test``):

``two_proportion_z``
    :func:`two_proportion_z` (two samples: pooled standard error for the test, unpooled
    for the interval of the difference, Katz log interval for the risk ratio) and
    :func:`one_proportion_z` (against a fixed rate).
``welch_t``
    :func:`welch_t` (two samples, unequal variances, Welch-Satterthwaite degrees of
    freedom) and :func:`one_sample_t` (against a fixed value).
``poisson_rate_ratio``
    :func:`poisson_rate_ratio` (two samples: the exact conditional binomial test and its
    Clopper-Pearson interval for the rate ratio, as R's ``poisson.test``) and
    :func:`poisson_one_sample` (exact test against a fixed rate, Garwood interval).

:func:`wald_z` is the normal approximation used where no exact design applies (blended
estimators, difference-in-differences of rates or proportions).

Alternatives are ``"greater"`` (``m > b``), ``"less"`` (``m < b``) or ``"two-sided"``.
Intervals are always two-sided at ``confidence``; a one-sided test at level ``a`` uses
``confidence = 1 - 2a`` so that the bound on the side that matters is the one-sided
``1 - a`` bound (see :func:`interval_confidence`).

Statistics are floats; :func:`to_decimal` is the one place they become ``Decimal`` (12
significant digits, which absorbs binary floating-point noise such as
``0.19999999999999996`` for ``0.2``) before any money is computed from them.

>>> r = welch_t_from_samples([0.7, -1.6, -0.2, -1.2, -0.1, 3.4, 3.7, 0.8, 0.0, 2.0],
...                          [1.9, 0.8, 1.1, 0.1, -0.1, 4.4, 5.5, 1.6, 4.6, 3.4])
>>> round(r.statistic, 4), round(r.p_value, 5)
(-1.8608, 0.07939)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Decimal
from typing import Literal, Sequence

import numpy as np
from scipy import stats as _st

Alternative = Literal["greater", "less", "two-sided"]

SIGNIFICANT_DIGITS = 12


def to_decimal(x: float | int | Decimal | None) -> Decimal | None:
    """A statistic as ``Decimal`` with 12 significant digits (None and NaN stay None)."""
    if x is None:
        return None
    if isinstance(x, Decimal):
        return x
    if isinstance(x, (int, np.integer)):
        return Decimal(int(x))
    f = float(x)
    if math.isnan(f):
        return None
    if math.isinf(f):
        return Decimal("Infinity") if f > 0 else Decimal("-Infinity")
    d = Decimal(format(f, f".{SIGNIFICANT_DIGITS}g"))
    return Decimal(int(d)) if d == d.to_integral_value() else d


def interval_confidence(level: float, sides: Literal["one", "two"]) -> float:
    """The two-sided confidence of the interval reported for a test at ``level``."""
    return 1.0 - (2.0 * level if sides == "one" else level)


@dataclass(frozen=True)
class TestResult:
    """One test of ``m`` against ``b``."""

    test: str
    """The test's name (``two_proportion_z``, ``welch_t``, ``poisson_rate_ratio``, ``wald_z``,
    or a one-sample variant)."""
    alternative: Alternative
    confidence: float
    statistic: float
    p_value: float
    difference: float
    difference_se: float
    difference_ci: tuple[float, float]
    ratio: float | None
    ratio_ci: tuple[float, float] | None
    df: float | None = None
    note: str = ""

    def describe(self) -> str:
        df = f", df {self.df:.3f}" if self.df is not None else ""
        return (
            f"{self.test} ({self.alternative}): statistic {self.statistic:.4f}{df}, "
            f"p = {self.p_value:.4g}"
        )


def _p_from_z(z: float, alternative: Alternative) -> float:
    if math.isnan(z):
        return 1.0
    if alternative == "greater":
        return float(_st.norm.sf(z))
    if alternative == "less":
        return float(_st.norm.cdf(z))
    return float(2 * _st.norm.sf(abs(z)))


def _p_from_t(t: float, df: float, alternative: Alternative) -> float:
    if math.isnan(t) or math.isnan(df):
        return 1.0
    if alternative == "greater":
        return float(_st.t.sf(t, df))
    if alternative == "less":
        return float(_st.t.cdf(t, df))
    return float(2 * _st.t.sf(abs(t), df))


def _z_crit(confidence: float) -> float:
    return float(_st.norm.ppf(0.5 + confidence / 2))


def _t_crit(confidence: float, df: float) -> float:
    return float(_st.t.ppf(0.5 + confidence / 2, df))


def _div(a: float, b: float) -> float:
    return a / b if b != 0 else math.nan


_MAX_EXP = 700.0
"""Beyond ``exp(700)`` a float overflows (``exp(709.8)`` is the largest)."""


def _log_ratio_ci(
    m: float, b: float, se_m: float, se_b: float, confidence: float
) -> tuple[float | None, tuple[float, float] | None]:
    """Ratio ``m / b`` with a delta-method interval on the log scale."""
    if m <= 0 or b <= 0:
        r = _div(m, b)
        return (None, None) if math.isnan(r) else (r, None)
    r = m / b
    se_log = math.hypot(se_m / m, se_b / b)  # not sqrt(x**2 + y**2): ** overflows
    z = _z_crit(confidence)
    w = z * se_log
    if w > _MAX_EXP:  # a baseline a hair above zero: the interval is (0, infinity), not an overflow
        return r, (0.0, math.inf)
    return r, (r * math.exp(-w), r * math.exp(w))


# ------------------------------------------------------------------- proportions ---


def two_proportion_z(
    x1: float, n1: int, x0: float, n0: int, alternative: Alternative = "two-sided",
    confidence: float = 0.95,
) -> TestResult:
    """Two-sample z-test of proportions ``x1/n1`` against ``x0/n0``.

    The statistic uses the pooled proportion; the interval of the difference uses the
    unpooled standard error (Wald); the risk ratio's interval is Katz's log interval.
    """
    if n1 <= 0 or n0 <= 0:
        raise ValueError("both samples need at least one participant")
    p1, p0 = x1 / n1, x0 / n0
    pooled = (x1 + x0) / (n1 + n0)
    se_test = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n0))
    z = _div(p1 - p0, se_test) if se_test > 0 else (0.0 if p1 == p0 else math.copysign(math.inf, p1 - p0))
    se = math.sqrt(p1 * (1 - p1) / n1 + p0 * (1 - p0) / n0)
    zc = _z_crit(confidence)
    diff = p1 - p0
    ratio: float | None = _div(p1, p0)
    ratio_ci: tuple[float, float] | None = None
    if x1 > 0 and x0 > 0 and ratio is not None and not math.isnan(ratio):
        se_log = math.sqrt((1 - p1) / x1 + (1 - p0) / x0)
        ratio_ci = (ratio * math.exp(-zc * se_log), ratio * math.exp(zc * se_log))
    elif ratio is not None and math.isnan(ratio):
        ratio = None
    return TestResult(
        test="two_proportion_z", alternative=alternative, confidence=confidence,
        statistic=z, p_value=_p_from_z(z, alternative), difference=diff, difference_se=se,
        difference_ci=(diff - zc * se, diff + zc * se), ratio=ratio, ratio_ci=ratio_ci,
    )


def one_proportion_z(
    x1: float, n1: int, p0: float, alternative: Alternative = "two-sided",
    confidence: float = 0.95,
) -> TestResult:
    """One-sample z-test of ``x1/n1`` against a fixed rate ``p0`` (the standard error under
    the null for the statistic, the observed one for the interval)."""
    if n1 <= 0:
        raise ValueError("the sample needs at least one participant")
    p1 = x1 / n1
    se0 = math.sqrt(p0 * (1 - p0) / n1)
    z = _div(p1 - p0, se0) if se0 > 0 else (0.0 if p1 == p0 else math.copysign(math.inf, p1 - p0))
    se = math.sqrt(p1 * (1 - p1) / n1)
    zc = _z_crit(confidence)
    diff = p1 - p0
    lo, hi = diff - zc * se, diff + zc * se
    ratio = _div(p1, p0)
    return TestResult(
        test="one_proportion_z", alternative=alternative, confidence=confidence,
        statistic=z, p_value=_p_from_z(z, alternative), difference=diff, difference_se=se,
        difference_ci=(lo, hi),
        ratio=None if math.isnan(ratio) else ratio,
        ratio_ci=None if p0 == 0 else ((p0 + lo) / p0, (p0 + hi) / p0),
    )


# --------------------------------------------------------------------- t-tests ---


def welch_t(
    m1: float, sd1: float, n1: int, m0: float, sd0: float, n0: int,
    alternative: Alternative = "two-sided", confidence: float = 0.95,
) -> TestResult:
    """Welch's unequal-variances t-test from summary statistics (means, standard
    deviations with ``n - 1`` in the denominator, sizes)."""
    if n1 < 2 or n0 < 2:
        raise ValueError("Welch's t-test needs at least two participants in each sample")
    v1, v0 = sd1**2 / n1, sd0**2 / n0
    se = math.sqrt(v1 + v0)
    diff = m1 - m0
    if se == 0:
        df = float(n1 + n0 - 2)
        t = 0.0 if diff == 0 else math.copysign(math.inf, diff)
    else:
        df = (v1 + v0) ** 2 / (v1**2 / (n1 - 1) + v0**2 / (n0 - 1))
        t = diff / se
    tc = _t_crit(confidence, df)
    ratio, ratio_ci = _log_ratio_ci(m1, m0, math.sqrt(v1), math.sqrt(v0), confidence)
    return TestResult(
        test="welch_t", alternative=alternative, confidence=confidence, statistic=t,
        p_value=_p_from_t(t, df, alternative), difference=diff, difference_se=se,
        difference_ci=(diff - tc * se, diff + tc * se), ratio=ratio, ratio_ci=ratio_ci, df=df,
    )


def welch_t_from_samples(
    a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray,
    alternative: Alternative = "two-sided", confidence: float = 0.95,
) -> TestResult:
    """Welch's t-test of sample ``a`` (treatment) against sample ``b`` (comparison)."""
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return welch_t(
        float(x.mean()), float(x.std(ddof=1)), len(x), float(y.mean()), float(y.std(ddof=1)),
        len(y), alternative, confidence,
    )


def one_sample_t(
    m1: float, sd1: float, n1: int, mu0: float, alternative: Alternative = "two-sided",
    confidence: float = 0.95,
) -> TestResult:
    """Student's one-sample t-test of a mean against a fixed value ``mu0``."""
    if n1 < 2:
        raise ValueError("a t-test needs at least two participants")
    se = sd1 / math.sqrt(n1)
    df = float(n1 - 1)
    diff = m1 - mu0
    t = diff / se if se > 0 else (0.0 if diff == 0 else math.copysign(math.inf, diff))
    tc = _t_crit(confidence, df)
    lo, hi = diff - tc * se, diff + tc * se
    ratio = _div(m1, mu0)
    return TestResult(
        test="one_sample_t", alternative=alternative, confidence=confidence, statistic=t,
        p_value=_p_from_t(t, df, alternative), difference=diff, difference_se=se,
        difference_ci=(lo, hi), ratio=None if math.isnan(ratio) else ratio,
        ratio_ci=None if mu0 == 0 else ((mu0 + lo) / mu0, (mu0 + hi) / mu0), df=df,
    )


# --------------------------------------------------------------------- Poisson ---


def poisson_rate_ratio(
    x1: int, t1: float, x0: int, t0: float, alternative: Alternative = "two-sided",
    confidence: float = 0.95,
) -> TestResult:
    """Comparison of two Poisson rates ``x1/t1`` and ``x0/t0`` (R's ``poisson.test`` with
    two samples): conditional on the total count, ``x1`` is binomial with
    ``p = t1 / (t1 + t0)`` under the null; the rate ratio's interval is the Clopper-Pearson
    interval of that binomial, turned into a ratio.  The rate difference has a Wald
    interval."""
    if t1 <= 0 or t0 <= 0:
        raise ValueError("exposures must be positive")
    x1, x0 = int(x1), int(x0)
    r1, r0 = x1 / t1, x0 / t0
    diff = r1 - r0
    se = math.sqrt(x1 / t1**2 + x0 / t0**2)
    zc = _z_crit(confidence)
    n = x1 + x0
    if n == 0:
        return TestResult(
            test="poisson_rate_ratio", alternative=alternative, confidence=confidence,
            statistic=0.0, p_value=1.0, difference=0.0, difference_se=0.0,
            difference_ci=(0.0, 0.0), ratio=None, ratio_ci=None, note="no events in either sample",
        )
    p_null = t1 / (t1 + t0)
    res = _st.binomtest(x1, n, p_null, alternative=alternative)
    ci = _st.binomtest(x1, n, p_null).proportion_ci(confidence, method="exact")
    k = t0 / t1

    def odds(p: float) -> float:
        return math.inf if p >= 1 else p / (1 - p) * k

    ratio = r1 / r0 if x0 > 0 else None
    return TestResult(
        test="poisson_rate_ratio", alternative=alternative, confidence=confidence,
        statistic=float(x1), p_value=float(res.pvalue), difference=diff, difference_se=se,
        difference_ci=(diff - zc * se, diff + zc * se), ratio=ratio,
        ratio_ci=(odds(float(ci.low)), odds(float(ci.high))),
    )


def poisson_one_sample(
    x1: int, t1: float, rate0: float, alternative: Alternative = "two-sided",
    confidence: float = 0.95,
) -> TestResult:
    """Exact test of a Poisson count ``x1`` over exposure ``t1`` against a fixed rate
    ``rate0`` (R's ``poisson.test`` with one sample); Garwood interval for the rate."""
    if t1 <= 0:
        raise ValueError("the exposure must be positive")
    x1 = int(x1)
    mu = rate0 * t1
    if alternative == "greater":
        p = float(_st.poisson.sf(x1 - 1, mu))
    elif alternative == "less":
        p = float(_st.poisson.cdf(x1, mu))
    elif mu == 0:
        p = 1.0 if x1 == 0 else 0.0
    else:
        # as R: sum the probabilities of every count no more likely than the observed one
        d = float(_st.poisson.pmf(x1, mu)) * (1 + 1e-7)
        mode = math.floor(mu)
        hi_k = max(x1, mode) + int(20 * math.sqrt(mu + 1)) + 50
        ks = np.arange(0, hi_k + 1)
        pm = _st.poisson.pmf(ks, mu)
        p = float(min(1.0, pm[pm <= d].sum() + _st.poisson.sf(hi_k, mu)))
    a = 1 - confidence
    lo = 0.0 if x1 == 0 else float(_st.chi2.ppf(a / 2, 2 * x1)) / 2 / t1
    hi = float(_st.chi2.ppf(1 - a / 2, 2 * x1 + 2)) / 2 / t1
    r1 = x1 / t1
    return TestResult(
        test="poisson_one_sample", alternative=alternative, confidence=confidence,
        statistic=float(x1), p_value=p, difference=r1 - rate0,
        difference_se=math.sqrt(x1) / t1, difference_ci=(lo - rate0, hi - rate0),
        ratio=None if rate0 == 0 else r1 / rate0,
        ratio_ci=None if rate0 == 0 else (lo / rate0, hi / rate0),
    )


# ----------------------------------------------------------------------- Wald ---


def wald_z(
    m: float, se_m: float, b: float, se_b: float, alternative: Alternative = "two-sided",
    confidence: float = 0.95, note: str = "",
) -> TestResult:
    """Normal approximation for ``m - b`` with independent standard errors; the ratio's
    interval by the delta method on the log scale."""
    diff = m - b
    se = math.sqrt(se_m**2 + se_b**2)
    z = diff / se if se > 0 else (0.0 if diff == 0 else math.copysign(math.inf, diff))
    zc = _z_crit(confidence)
    ratio, ratio_ci = _log_ratio_ci(m, b, se_m, se_b, confidence)
    return TestResult(
        test="wald_z", alternative=alternative, confidence=confidence, statistic=z,
        p_value=_p_from_z(z, alternative), difference=diff, difference_se=se,
        difference_ci=(diff - zc * se, diff + zc * se), ratio=ratio, ratio_ci=ratio_ci,
        note=note,
    )
