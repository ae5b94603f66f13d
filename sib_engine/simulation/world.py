"""Simulated worlds: random draws of the assumptions and of the measured outcomes (layer 2).

Paths are drawn in fixed blocks of :data:`BLOCK` paths.  Block ``b`` of a run with seed
``s`` draws from its own stream, ``SeedSequence(s, spawn_key=(b,))`` (the ``b``-th child
of ``SeedSequence(s)``), always for a whole block and in the same order of calls, and a
run of ``n`` paths keeps the first ``n``.  So path ``i`` of a run depends on the seed and
``i`` only: not on the chunk size, the number of workers or the number of paths.

Draw order within a block: the standard normals of the effects (correlated by the
Cholesky factor of ``correlation``: a Gaussian copula), uniforms for the enrolment of each
cohort, for attrition, for the start delay and for the drift, then the measured outcomes
metric by metric (in the plan's order: prerequisites first), then uniforms for the
payers' appropriation failures.  Each assumption is read off its distribution's quantile
function at its uniform (or normal), so an assumption can be pinned at a quantile or a
value for one-at-a-time sensitivity with the other draws unchanged.

The outcomes, per metric and cohort: for a rate (``binary``, ``event``), of the ``pool``
(the enrolled, or those with every prerequisite), ``drop ~ Binomial(pool, attrition)``
drop out; the others reach the outcome with probability ``p1 = base' + effect``, the
drop-outs with ``p0 = base'`` (``base'`` is the base plus the drift per year times the
years from the start of the term to the cohort's enrolment; both clipped to [0, 1];
without attrition, simply ``Binomial(pool, p1)``); a comparison group of ``comparison_ratio`` x the enrolled reaches it with ``p0``.  For a count
or duration, totals are Poisson with mean ``(pool - drop) x m1 + drop x m0`` (``m0 = base'``,
``m1 = m0 + effect``, at least 0).  For a continuous metric, every enrolled participant is
measured once: the sample mean is normal around ``((enrolled - drop) x m1 + drop x m0) /
enrolled`` (no clipping) with standard error ``sd / sqrt(n)``, the sample standard deviation
``sd`` times the root of a chi-square over its degrees of freedom (a standard normal and a
chi-square per cohort, treated then comparison), held as a total and a spread in hundredths
(:func:`continuous_values`); so is a ``count`` or ``duration`` metric whose assumption gives
``sd`` (in whole units, never below 0), so that a t-test sees the spread between
participants rather than the even spread of a Poisson total.  A difference-in-differences baseline's pre-enrolment
measure is drawn for both groups with ``p0`` or ``m0`` (no effect, no attrition).  Without
sampling noise every draw is replaced by its
mean, rounded to a whole number (half up).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Mapping

import numpy as np
import numpy.typing as npt
from scipy import special, stats as st

from sib_engine.contract import (
    BetaDistribution,
    Distribution,
    EmpiricalDistribution,
    FixedDistribution,
    LognormalDistribution,
    NormalDistribution,
    TriangularDistribution,
)
from sib_engine.simulation.plan import Plan

BLOCK = 4096
"""Paths per random-number block (fixed: results never depend on how paths are chunked)."""

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


# ------------------------------------------------------------------ distributions ---


def ppf(d: Distribution, u: FloatArray | None = None, z: FloatArray | None = None) -> FloatArray:
    """The distribution's quantiles at uniforms ``u`` (or at ``Phi(z)`` for normals ``z``)."""
    if z is not None and u is None:
        u = special.ndtr(z)
    assert u is not None
    if z is None:
        z = special.ndtri(np.clip(u, 1e-300, 1 - 1e-16))
    if isinstance(d, NormalDistribution):
        out = float(d.mean) + float(d.sd) * z
        if d.low is not None or d.high is not None:
            out = np.clip(out, None if d.low is None else float(d.low), None if d.high is None else float(d.high))
        return np.asarray(out, dtype=np.float64)
    if isinstance(d, BetaDistribution):
        lo, hi = float(d.low), float(d.high)
        return np.asarray(lo + (hi - lo) * special.betaincinv(float(d.a), float(d.b), u), dtype=np.float64)
    if isinstance(d, TriangularDistribution):
        lo, mode, hi = float(d.low), float(d.mode), float(d.high)
        c = (mode - lo) / (hi - lo)
        return np.asarray(st.triang.ppf(u, c, loc=lo, scale=hi - lo), dtype=np.float64)
    if isinstance(d, LognormalDistribution):
        mean, sd = float(d.mean), float(d.sd)
        s2 = math.log1p((sd / mean) ** 2)
        mu = math.log(mean) - s2 / 2
        return np.asarray(float(d.shift) + np.exp(mu + math.sqrt(s2) * z), dtype=np.float64)
    if isinstance(d, EmpiricalDistribution):
        values = np.array([float(v) for v in d.values])
        weights = np.array([float(w) for w in d.weights]) if d.weights else np.ones(len(values))
        order = np.argsort(values, kind="stable")
        values, weights = values[order], weights[order]
        cum = np.cumsum(weights) / weights.sum()
        idx = np.minimum(np.searchsorted(cum, u, side="right"), len(values) - 1)
        return np.asarray(values[idx], dtype=np.float64)
    assert isinstance(d, FixedDistribution)
    return np.full(np.shape(u), float(d.value))


def mean_of(d: Distribution) -> float:
    """The distribution's mean (as simulated: clipping and rounding aside)."""
    if isinstance(d, NormalDistribution):
        return float(d.mean)
    if isinstance(d, BetaDistribution):
        a, b = float(d.a), float(d.b)
        return float(d.low) + (float(d.high) - float(d.low)) * a / (a + b)
    if isinstance(d, TriangularDistribution):
        return (float(d.low) + float(d.mode) + float(d.high)) / 3
    if isinstance(d, LognormalDistribution):
        return float(d.mean) + float(d.shift)
    if isinstance(d, EmpiricalDistribution):
        w = [float(x) for x in d.weights] if d.weights else [1.0] * len(d.values)
        return sum(float(v) * x for v, x in zip(d.values, w)) / sum(w)
    assert isinstance(d, FixedDistribution)
    return float(d.value)


def fixed(value: float) -> FixedDistribution:
    return FixedDistribution(kind="fixed", value=Decimal(repr(float(value))))


# ------------------------------------------------------------------------ worlds ---


@dataclass(frozen=True)
class Pins:
    """Assumptions held fixed (one-at-a-time sensitivity, payment curves, scenarios).

    ``effects``: effect index -> the true effect; ``quantiles``: an assumption name
    (``effect:<i>``, ``enrolment``, ``attrition``, ``delay``, ``drift``) -> the quantile of
    its distribution it is held at; ``sampling_noise``: overrides the assumption;
    ``appropriation``: overrides the appropriation risk.
    """

    effects: Mapping[int, float] = field(default_factory=dict)
    quantiles: Mapping[str, float] = field(default_factory=dict)
    sampling_noise: bool | None = None
    appropriation: float | None = None

    def key(self) -> tuple[object, ...]:
        return (tuple(sorted(self.effects.items())), tuple(sorted(self.quantiles.items())),
                self.sampling_noise, self.appropriation)


NO_PINS = Pins()


@dataclass(frozen=True)
class World:
    """The draws of one block of paths (arrays with one row per path)."""

    effects: FloatArray
    """(n, effects) the true effect of each assumption."""
    delay: IntArray
    drift: FloatArray
    attrition: FloatArray
    n_t: IntArray
    """(n, cohorts) enrolled participants."""
    n_c: IntArray
    """(n, cohorts) comparison-group members."""
    x_t: IntArray
    """(n, metrics, cohorts) outcomes of the enrolled: participants with the outcome
    (rates) or the total of the values (counts)."""
    x_c: IntArray
    """(n, metrics, cohorts) outcomes of the comparison group."""
    fail: npt.NDArray[np.bool_]
    """(n, payers, determinations) the payer fails to budget that payment."""
    s_t: IntArray
    """(n, metrics, cohorts) for a continuous metric, the spread of the enrolled
    participants' values in hundredths (:func:`continuous_values`); 0 for other metrics."""
    s_c: IntArray
    """(n, metrics, cohorts) the same for the comparison group."""
    mu: IntArray
    """(n, metrics + 1, cohorts, municipalities) for payers by residence, the residents of
    each municipality (``Plan.munis``) among the first ``min(x_t, n_t)`` enrolled of the
    cohort (metric ``m``; binary and event metrics) and, at index ``metrics``, among all
    ``n_t`` enrolled: the counts of one random order of the cohort's participants, whose
    first ``x`` are those with the outcome (:func:`residence_draw`); shape
    ``(n, 0, cohorts, 0)`` without payers by residence."""

    @property
    def n(self) -> int:
        return int(self.delay.shape[0])

    def take(self, rows: npt.NDArray[np.intp] | slice) -> "World":
        return World(*(getattr(self, f)[rows] for f in _FIELDS))


_FIELDS = ("effects", "delay", "drift", "attrition", "n_t", "n_c", "x_t", "x_c", "fail", "s_t", "s_c", "mu")


def concat(worlds: list[World]) -> World:
    return World(*(np.concatenate([getattr(w, f) for w in worlds]) for f in _FIELDS))


def block_stream(seed: int, block: int, deal: int | None = None) -> np.random.Generator:
    key = (block,) if deal is None else (block, deal)
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed, spawn_key=key)))


def _round_half_up(x: FloatArray) -> IntArray:
    return np.floor(x + 0.5).astype(np.int64)


def draw_block(
    plan: Plan, seed: int, block: int, pins: Pins = NO_PINS, *,
    shock: FloatArray | None = None, loading: float = 0.0, deal: int | None = None,
) -> World:
    """The worlds of block ``block`` (:data:`BLOCK` paths).

    ``shock``/``loading``: a portfolio's shared economic shock (one standard normal per
    path): each effect's normal is ``sqrt(loading) x shock + sqrt(1 - loading) x own``.
    """
    sim = plan.sim
    rng = block_stream(seed, block, deal)
    B = BLOCK
    E = len(sim.effects)
    C = len(plan.cohorts)
    # 1. effects (Gaussian copula)
    z = rng.standard_normal((B, E))
    if sim.correlation:
        corr = np.array([[float(x) for x in row] for row in sim.correlation])
        w, v = np.linalg.eigh(corr)
        root = v * np.sqrt(np.clip(w, 0.0, None))
        z = z @ root.T
    if shock is not None and loading > 0:
        z = math.sqrt(loading) * shock[:, None] + math.sqrt(1.0 - loading) * z
    effects = np.empty((B, E))
    for i, a in enumerate(sim.effects):
        q = pins.quantiles.get(f"effect:{i}")
        if i in pins.effects:
            effects[:, i] = pins.effects[i]
        elif q is not None:
            effects[:, i] = ppf(a.effect, u=np.full(B, q))
        else:
            effects[:, i] = ppf(a.effect, z=z[:, i])
    # 2. enrolment, attrition, delay, drift
    u_enrol = rng.random((B, C))
    u_attr = rng.random(B)
    u_delay = rng.random(B)
    u_drift = rng.random(B)

    def pinned(name: str, u: FloatArray) -> FloatArray:
        q = pins.quantiles.get(name)
        return np.full(u.shape, q) if q is not None else u

    frac = ppf(sim.enrolment.fraction, u=pinned("enrolment", u_enrol))
    attrition = np.clip(ppf(sim.attrition, u=pinned("attrition", u_attr)), 0.0, 1.0) if sim.attrition else np.zeros(B)
    delay = (np.maximum(0, _round_half_up(ppf(sim.delay_months, u=pinned("delay", u_delay))))
             if sim.delay_months else np.zeros(B, dtype=np.int64))
    drift = ppf(sim.baseline_drift, u=pinned("drift", u_drift)) if sim.baseline_drift else np.zeros(B)
    sizes = np.array(plan.target_sizes, dtype=np.float64)
    n_t = np.maximum(0, _round_half_up(sizes[None, :] * np.maximum(frac, 0.0)))
    n_c = _round_half_up(n_t * float(sim.enrolment.comparison_ratio))
    # 3. outcomes
    noise = sim.sampling_noise if pins.sampling_noise is None else pins.sampling_noise
    M = len(plan.metrics)
    x_t = np.zeros((B, M, C), dtype=np.int64)
    x_c = np.zeros((B, M, C), dtype=np.int64)
    years = np.zeros((B, C))
    if sim.baseline_drift is not None:
        for d in np.unique(delay):
            rows = delay == d
            t = plan.timing(int(d))
            years[rows] = ((t.enrol_day - plan.term_start_day) / 365.0)[None, :]
    a_col = attrition[:, None]
    s_t = np.zeros((B, M, C), dtype=np.int64)
    s_c = np.zeros((B, M, C), dtype=np.int64)
    for mi, m in enumerate(plan.metrics):
        base0 = m.base + drift[:, None] * years
        eff = effects[:, m.effect][:, None]
        if m.pre:
            # measured before enrolment: no effect, no attrition, both groups
            if m.type in ("binary", "event"):
                p0 = np.clip(base0, 0.0, 1.0)
                if noise:
                    x_t[:, mi, :] = rng.binomial(n_t, np.broadcast_to(p0, n_t.shape))
                    x_c[:, mi, :] = rng.binomial(n_c, np.broadcast_to(p0, n_c.shape))
                else:
                    x_t[:, mi, :] = _round_half_up(n_t * p0)
                    x_c[:, mi, :] = _round_half_up(n_c * p0)
            else:
                m0 = np.asarray(np.maximum(base0, 0.0), dtype=np.float64)
                if noise:
                    x_t[:, mi, :] = rng.poisson(n_t * m0)
                    x_c[:, mi, :] = rng.poisson(n_c * m0)
                else:
                    x_t[:, mi, :] = _round_half_up(n_t * m0)
                    x_c[:, mi, :] = _round_half_up(n_c * m0)
            continue
        if m.spread:
            # every enrolled participant is measured once: the sample mean and spread
            if noise:
                drop = rng.binomial(n_t, np.broadcast_to(a_col, n_t.shape)) if sim.attrition is not None \
                    else np.zeros_like(n_t)
                mean = np.where(n_t > 0, ((n_t - drop) * (base0 + eff) + drop * base0) / np.maximum(n_t, 1), 0.0)
                x_t[:, mi, :], s_t[:, mi, :] = _continuous_draw(rng, n_t, mean, m.sd, m.type)
                if m.comparison:
                    x_c[:, mi, :], s_c[:, mi, :] = _continuous_draw(rng, n_c, np.broadcast_to(base0, n_c.shape), m.sd,
                                                                    m.type)
            else:
                drop_f = _round_half_up(n_t * a_col)
                mean = np.where(n_t > 0, ((n_t - drop_f) * (base0 + eff) + drop_f * base0) / np.maximum(n_t, 1), 0.0)
                x_t[:, mi, :], s_t[:, mi, :] = _continuous_draw(None, n_t, mean, m.sd, m.type)
                x_c[:, mi, :], s_c[:, mi, :] = _continuous_draw(None, n_c, np.broadcast_to(base0, n_c.shape), m.sd,
                                                                m.type)
            continue
        if m.requires:
            pool_t = np.min(np.stack([x_t[:, r, :] for r in m.requires]), axis=0)
            pool_c = np.min(np.stack([x_c[:, r, :] for r in m.requires]), axis=0)
        else:
            pool_t, pool_c = n_t, n_c
        if m.type in ("binary", "event"):
            p0 = np.clip(base0, 0.0, 1.0)
            p1 = np.clip(base0 + eff, 0.0, 1.0)
            if noise and sim.attrition is None:
                x_t[:, mi, :] = rng.binomial(pool_t, p1)
                if m.comparison:
                    x_c[:, mi, :] = rng.binomial(pool_c, np.broadcast_to(p0, pool_c.shape))
            elif noise:
                drop = rng.binomial(pool_t, np.broadcast_to(a_col, pool_t.shape))
                x_t[:, mi, :] = rng.binomial(pool_t - drop, p1) + rng.binomial(drop, p0)
                if m.comparison:
                    x_c[:, mi, :] = rng.binomial(pool_c, p0)
            else:
                drop = _round_half_up(pool_t * a_col)
                x_t[:, mi, :] = _round_half_up((pool_t - drop) * p1) + _round_half_up(drop * p0)
                x_c[:, mi, :] = _round_half_up(pool_c * p0)
        else:
            m0 = np.maximum(base0, 0.0)
            m1 = np.maximum(base0 + eff, 0.0)
            if noise and sim.attrition is None:
                x_t[:, mi, :] = rng.poisson(pool_t * m1)
                if m.comparison:
                    x_c[:, mi, :] = rng.poisson(pool_c * m0)
            elif noise:
                drop = rng.binomial(pool_t, np.broadcast_to(a_col, pool_t.shape))
                x_t[:, mi, :] = rng.poisson((pool_t - drop) * m1 + drop * m0)
                if m.comparison:
                    x_c[:, mi, :] = rng.poisson(pool_c * m0)
            else:
                drop = _round_half_up(pool_t * a_col)
                x_t[:, mi, :] = _round_half_up((pool_t - drop) * m1 + drop * m0)
                x_c[:, mi, :] = _round_half_up(pool_c * m0)
    if not any(m.comparison for m in plan.metrics):
        n_c = np.zeros_like(n_c)
    # 4. appropriation
    risk = float(sim.appropriation_risk) if pins.appropriation is None else pins.appropriation
    if risk > 0:
        fail = rng.random((B, len(plan.payers), len(plan.dets))) < risk
    else:  # the last draw of a block: leaving it out changes no other draw
        fail = np.zeros((B, len(plan.payers), len(plan.dets)), dtype=bool)
    # 5. residence (after every other draw: contracts without it draw exactly as before)
    mu = residence_draw(plan, rng, n_t, x_t) if plan.munis else np.zeros((B, 0, C, 0), dtype=np.int64)
    return World(effects, delay, drift, attrition, n_t, n_c, x_t, x_c, fail, s_t, s_c, mu)


def residence_draw(plan: Plan, rng: np.random.Generator, n_t: IntArray, x_t: IntArray) -> IntArray:
    """Each municipality's residents among the nested prefixes of each cohort (see
    ``World.mu``): the cohort split among ``plan.munis`` in equal shares (a multinomial),
    then a uniformly random order of its participants, represented by the counts in each
    prefix: taking the prefixes from the shortest, each stretch between two is a
    multivariate hypergeometric draw (one univariate draw per municipality) from the
    residents not yet placed."""
    B, C = n_t.shape
    nm, M = len(plan.metrics), len(plan.munis)
    mu = np.zeros((B, nm + 1, C, M), dtype=np.int64)
    probs = np.full(M, 1.0 / M)
    rows = np.arange(B)
    for c in range(C):
        total = rng.multinomial(n_t[:, c], probs)  # (B, M)
        mu[:, nm, c, :] = total
        lens = np.minimum(x_t[:, :, c], n_t[:, c][:, None])  # (B, nm)
        order = np.argsort(lens, axis=1, kind="stable")
        left = total.copy()
        placed = np.zeros((B, M), dtype=np.int64)
        prev = np.zeros(B, dtype=np.int64)
        for q in range(nm):
            mi = order[:, q]
            length = lens[rows, mi]
            want = length - prev
            for m in range(M):
                got = rng.hypergeometric(left[:, m], left[:, m + 1:].sum(axis=1), want)
                placed[:, m] += got
                left[:, m] -= got
                want = want - got
            mu[rows, mi, c, :] = placed
            prev = length
    return mu


def _continuous_draw(rng: np.random.Generator | None, n: IntArray, mean: FloatArray,
                     sd: float, mtype: str = "continuous") -> tuple[IntArray, IntArray]:
    """The total (in hundredths) and spread of ``n`` measurements of a continuous metric
    with true mean ``mean`` and standard deviation ``sd`` between participants: the sample
    mean is normal with standard error ``sd / sqrt(n)``, the sample variance ``sd**2`` times
    a chi-square with ``n - 1`` degrees of freedom over ``n - 1`` (independent, as for normal
    values); without ``rng`` (no sampling noise) both are their expected values.  The spread
    is what :func:`continuous_values` needs to give that sample standard deviation.  For a
    count or duration (``mtype``) in whole units rather than hundredths, never below 0: the
    total at least 0, the spread at most the whole part of the mean."""
    grid = 100.0 if mtype == "continuous" else 1.0
    nf = n.astype(np.float64)
    if rng is not None:
        z = rng.standard_normal(n.shape)
        chi = rng.chisquare(np.maximum(nf - 1, 1.0))
        m = mean + sd * z / np.sqrt(np.maximum(nf, 1.0))
        s_sample = sd * np.sqrt(chi / np.maximum(nf - 1, 1.0))
    else:
        m = np.asarray(mean, dtype=np.float64)
        s_sample = np.full(n.shape, sd)
    total = _round_half_up(m * nf * grid)
    h = n // 2
    spread = _round_half_up(s_sample * grid * np.sqrt(np.maximum(nf - 1, 0.0) / np.maximum(2 * h, 1)))
    spread = np.where(h > 0, spread, 0)
    if mtype != "continuous":
        total = np.maximum(total, 0)
        spread = np.minimum(spread, total // np.maximum(n, 1))
    return np.where(n > 0, total, 0), np.asarray(spread, dtype=np.int64)


def continuous_values(total: int, n: int, spread: int) -> list[int]:
    """The measured values (hundredths) of ``n`` participants with this total and spread:
    participant ``j`` has ``q + s`` for ``j < n // 2`` and ``q - s`` for the next ``n // 2``
    (``q`` for a last odd one), plus one for ``j`` below ``total - n q`` (``q = total // n``),
    so that they sum to ``total`` exactly.  The same rule spreads a count (``spread = 0``)."""
    if n <= 0:
        return []
    q, r = divmod(int(total), int(n))
    h = n // 2
    return [q + (1 if j < r else 0) + (spread if j < h else (-spread if j < 2 * h else 0)) for j in range(n)]


def draw(plan: Plan, seed: int, start: int, stop: int, pins: Pins = NO_PINS, *,
         shock_seed: int | None = None, loading: float = 0.0, deal: int | None = None) -> World:
    """The worlds of paths ``start`` to ``stop`` (``start`` a multiple of :data:`BLOCK`)."""
    if start % BLOCK:
        raise ValueError(f"a chunk starts at a multiple of {BLOCK} paths")
    worlds = []
    b0, b1 = start // BLOCK, -(-stop // BLOCK)
    for b in range(b0, b1):
        shock = block_stream(shock_seed, b, 0).standard_normal(BLOCK) if shock_seed is not None else None
        w = draw_block(plan, seed, b, pins, shock=shock, loading=loading, deal=deal)
        lo = b * BLOCK
        keep = min(stop, lo + BLOCK) - lo
        worlds.append(w.take(slice(0, keep)) if keep < BLOCK else w)
    return worlds[0] if len(worlds) == 1 else concat(worlds)
