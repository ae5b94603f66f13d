"""Risk measures over simulated worlds: small pure functions on arrays (layer 2).

Conventions: a *net result* is money received less money paid (positive is a gain); a
*loss* is its negative part.  Levels are tail probabilities: ``value_at_risk(net, 0.05)``
is the loss exceeded in 5% of the worlds, ``expected_shortfall(net, 0.05)`` the average
loss over those worst 5% of worlds (both reported as positive numbers; zero or negative
means the worst 5% still do not lose).

>>> import numpy as np
>>> net = np.array([-100.0, -50.0, 0.0, 10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0])
>>> value_at_risk(net, 0.1), expected_shortfall(net, 0.1)
(100.0, 100.0)
>>> float(probability(net < 0))
0.2
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
from scipy.stats import norm

FloatArray = npt.NDArray[np.float64]

CENT = 0.005
"""Half a minor unit: amounts below it are zero (for losses and payments)."""


def probability(mask: npt.NDArray[np.bool_]) -> float:
    """Share of the worlds where ``mask`` holds (NaN without worlds)."""
    return float(mask.mean()) if mask.size else math.nan


def standard_error(p: float, n: int) -> float:
    """Monte Carlo standard error of a probability estimated from ``n`` worlds."""
    return math.sqrt(max(p * (1 - p), 0.0) / n) if n else math.nan


def quantiles(x: FloatArray, qs: tuple[float, ...] = (0.05, 0.5, 0.95)) -> dict[str, float]:
    """``{"p5": ..., "p50": ..., "p95": ...}`` of the finite values (NaN when there are none)."""
    v = x[np.isfinite(x)]
    out: dict[str, float] = {}
    for q in qs:
        out[f"p{round(q * 100):d}"] = float(np.quantile(v, q)) if v.size else math.nan
    return out


def value_at_risk(net: FloatArray, level: float = 0.05) -> float:
    """The loss exceeded with probability ``level``: ``-quantile(net, level)``."""
    if not net.size:
        return math.nan
    return float(-np.quantile(net, level, method="inverted_cdf"))


def expected_shortfall(net: FloatArray, level: float = 0.05) -> float:
    """The average loss over the worst ``level`` of worlds (at least one world)."""
    if not net.size:
        return math.nan
    k = max(1, int(math.ceil(level * net.size)))
    worst = np.partition(net, k - 1)[:k]
    return float(-worst.mean())


def risk_transfer(investor_loss: FloatArray, guarantor_cost: FloatArray, government_loss: FloatArray) -> float:
    """The share of the downside borne by investors and guarantors rather than government.

    ``E[investor loss + guarantor cost] / E[investor loss + guarantor cost + government
    loss]``, where, per world, the investors' loss is the capital they did not get back
    (invested less received less guarantee payments, where positive, summed over funders),
    the guarantors' cost is what they paid under their guarantees and did not recover, and
    the government's loss is what it paid beyond what the contract would have paid had the
    evaluator measured the programme's true effect without sampling noise (a payment for
    an effect that is not there).  1 means investors and guarantors bear all of it; NaN
    when nobody loses in any world.
    """
    inv = float(np.mean(investor_loss)) + float(np.mean(guarantor_cost))
    gov = float(np.mean(government_loss))
    total = inv + gov
    return inv / total if total > 0 else math.nan


def crossing(x: FloatArray, y: FloatArray, level: float) -> float:
    """The first ``x`` at which ``y`` (sampled on increasing ``x``) reaches ``level``,
    interpolated linearly; NaN if it never does."""
    for i in range(len(x)):
        if y[i] >= level:
            if i == 0:
                return float(x[0])
            x0, x1, y0, y1 = x[i - 1], x[i], y[i - 1], y[i]
            return float(x0 + (x1 - x0) * (level - y0) / (y1 - y0)) if y1 != y0 else float(x1)
    return math.nan


def normal_capped_spread(k: float, a: float, cap: float, mu: float, sigma: float) -> float:
    """``E[min(max(k (X - a), 0), cap)]`` for ``X ~ Normal(mu, sigma)``, ``k > 0``: a call
    spread, the difference of two calls struck at ``a`` and ``a + cap / k``.

    ``E[max(k (X - s), 0)] = k (sigma phi(d) + (mu - s) Phi(d))`` with ``d = (mu - s) / sigma``.
    """
    def call(strike: float) -> float:
        if sigma == 0:
            return k * max(mu - strike, 0.0)
        d = (mu - strike) / sigma
        return float(k * (sigma * norm.pdf(d) + (mu - strike) * norm.cdf(d)))

    return call(a) - call(a + cap / k)
