"""Returns: IRR, XIRR, multiple, NPV, payback (layer 2: pure computation).

The solver works on many cash-flow vectors at once (numpy float64): Newton's method on
``x = ln(1 + r)`` for every vector together (on ``ln P(x) - ln N(x)``, the logarithms of
the present values of the money back and of the money out: the same roots as the NPV
``P - N``, and nearly linear in ``x``, so that Newton converges in a few steps even for
rates near -100%), then, for the vectors where Newton failed
(did not converge, left the search range or produced NaN), a bracketing fallback: a grid
search for a sign change of the NPV followed by vectorised bisection.  A vector whose NPV
never changes sign (all flows of one sign, or all zero) has no rate of return: it is
reported as NaN with the reason, never as a number.

The rate solves ``sum(a_j * (1 + r) ** -t_j) = 0`` with ``t_j`` in years (XIRR: days / 365
from the first date, as Excel and pyxirr do) or in periods (periodic IRR).

>>> from datetime import date
>>> r = xirr([date(2021, 1, 1), date(2022, 1, 1)], [-100, 110])
>>> round(r.rate, 10), r.ok
(0.1, True)
>>> xirr([date(2020, 1, 1), date(2021, 1, 1)], [-100, -10]).reason
'no sign change: every flow has the same sign (or is zero), so no rate sets the NPV to zero'

Funder returns combine a waterfall's flows with these metrics: :func:`funder_returns`.
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import TYPE_CHECKING, Callable, Iterable, Mapping, Sequence

import numpy as np
import numpy.typing as npt

from sib_engine.money import format_money, round_money
from sib_engine.waterfall import RETURN_KINDS, WaterfallResult

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

FloatArray = npt.NDArray[np.float64]

OK_NEWTON = 0
OK_BRACKET = 1
NO_SIGN_CHANGE = 2
NO_ROOT_IN_RANGE = 3
REASONS: dict[int, str] = {
    OK_NEWTON: "ok",
    OK_BRACKET: "ok (bracketing fallback)",
    NO_SIGN_CHANGE: "no sign change: every flow has the same sign (or is zero), so no rate sets the NPV to zero",
    NO_ROOT_IN_RANGE: "no rate r with -99.999999% < r < 5e21 a year sets the NPV to zero",
}
"""Status code -> reason, for :attr:`IRRSolution.status`."""

X_MIN = -20.0  # r = e^-20 - 1, about -99.999999%
X_MAX = 50.0  # r = e^50 - 1, about 5e21 (flows days apart annualise to huge rates)
DAYS_PER_YEAR = 365.0


@dataclass(frozen=True)
class IRRSolution:
    """Rates of return of many cash-flow vectors: ``rates[i]`` (NaN when there is none)
    and ``status[i]`` (a key of :data:`REASONS`)."""

    rates: FloatArray
    status: npt.NDArray[np.int8]
    iterations: int
    """Newton iterations run (for the slowest vector)."""

    def __post_init__(self) -> None:
        self.rates.setflags(write=False)
        self.status.setflags(write=False)

    def __len__(self) -> int:
        return int(self.rates.shape[0])

    def reason(self, i: int) -> str:
        return REASONS[int(self.status[i])]

    @property
    def ok(self) -> npt.NDArray[np.bool_]:
        return self.status <= OK_BRACKET

    @property
    def fallback_count(self) -> int:
        return int(np.count_nonzero(self.status == OK_BRACKET))

    @property
    def failed_count(self) -> int:
        return int(np.count_nonzero(self.status > OK_BRACKET))

    def __repr__(self) -> str:
        return (
            f"<IRRSolution {len(self)} vectors: {len(self) - self.failed_count} solved "
            f"({self.fallback_count} by bracketing), {self.failed_count} without a rate>"
        )


def _npv_and_slope(x: FloatArray, a: FloatArray, t: FloatArray) -> tuple[FloatArray, FloatArray]:
    """f(x) = sum a e^(-t x) and f'(x) = -sum t a e^(-t x), per row (summed flow by flow, in
    order, whatever the memory layout: a row's values never depend on the other rows)."""
    w = np.exp(np.multiply(-x[:, None], t))
    w *= a
    f = np.cumsum(w, axis=1)[:, -1]
    w *= t
    fp = -np.cumsum(w, axis=1)[:, -1]
    return f, fp


def _newton_step(p: FloatArray, n: FloatArray, tp: FloatArray, tn: FloatArray) -> FloatArray:
    """The Newton step of ``g(x) = ln P(x) - ln N(x)`` from the present values of the money
    back (``p``) and out (``n``) and ``tp = -P'``, ``tn = -N'``."""
    return np.asarray(np.log(p / n) / (tn / n - tp / p), dtype=np.float64)


class _SharedTimes:
    """The Newton step for rows sharing one time grid, by Horner's rule over the gaps
    between consecutive times: ``S_j = a_j + e^(-x g_j) S_(j+1)`` gives ``P = S_0`` over
    the money back, and the same recurrence gives the money out and both slopes (all four
    carried in one (4, n) array).  Only one exp per row per *distinct* gap is needed (a
    quarterly schedule has two or three), not one per flow."""

    def __init__(self, t: FloatArray, a: FloatArray):
        order = np.argsort(t, kind="stable")
        ts = t[order] - t[order][0]
        k, n = a.shape[1], a.shape[0]
        at = (a if np.array_equal(order, np.arange(k)) else a[:, order]).T
        self.c = np.empty((k, 4, n))
        np.maximum(at, 0.0, out=self.c[:, 0, :])
        np.subtract(self.c[:, 0, :], at, out=self.c[:, 1, :])
        np.multiply(self.c[:, 0:2, :], ts[:, None, None], out=self.c[:, 2:4, :])
        # gaps equal but for floating-point noise (days / 365 differenced) share one exp
        gaps = np.round(np.diff(ts), 12)
        self.gap_values, self.gap_index = np.unique(gaps, return_inverse=True)
        self.gaps = gaps

    def first_guess(self) -> FloatArray:
        """:func:`_first_guess`, from sums taken flow by flow in order: a row's guess never
        depends on the other rows (nor on how the batch is laid out in memory)."""
        c = self.c
        s = c[0].copy()
        for j in range(1, c.shape[0]):
            s += c[j]
        sp, sn, tp, tn = s
        with np.errstate(all="ignore"):
            x = np.log(sp / sn) / (tp / sp - tn / sn)
        x = np.where(np.isfinite(x), x, math.log1p(0.1))
        return np.asarray(np.clip(x, X_MIN, X_MAX), dtype=np.float64)

    def __call__(self, x: FloatArray, rows: npt.NDArray[np.intp] | None = None) -> FloatArray:
        c = self.c if rows is None else self.c[:, :, rows]
        e = np.exp(-np.multiply.outer(self.gap_values, x))  # (distinct gaps, n)
        su = c[-1].copy()
        for j in range(c.shape[0] - 2, -1, -1):
            if self.gaps[j] != 0.0:
                su *= e[self.gap_index[j]]
            su += c[j]
        return _newton_step(su[0], su[1], su[2], su[3])


def _rows(t: FloatArray, idx: npt.NDArray[np.intp]) -> FloatArray:
    return t if t.ndim == 1 else t[idx]


def solve_rates(
    times: npt.ArrayLike,
    amounts: npt.ArrayLike,
    *,
    guess: float | npt.ArrayLike | None = None,
    tol: float = 1e-6,
    max_iter: int = 50,
    chunk: int = 8192,
) -> IRRSolution:
    """Solve ``sum(a_ij * (1 + r_i) ** -t_ij) = 0`` for every row ``i``.

    ``amounts``: shape ``(n, k)``; ``times``: shape ``(k,)`` shared by every row, or
    ``(n, k)``, in years (or periods).  Newton stops once its step in ``ln(1 + r)`` is at
    most ``tol``: the error left after that step is of the order of ``tol ** 2`` (Newton
    converges quadratically), about 1e-12 by default.  Inputs are not modified.  Rows are processed in
    chunks of ``chunk`` (small enough to stay in the CPU cache).  ``guess``: the starting
    rate for every row, or one per row (shape ``(n,)``); by default each row starts from the
    rate that turns its money out into its money back between their money-weighted mean
    dates.  Every step works row by row (no matrix products, whose rounding can depend on a
    row's position in the batch): a row's rate, given its guess, does not depend on the
    other rows, and with ``times`` shared by every row neither does its default guess.
    """
    # read only: never written to, so no copy is needed
    a_all = np.asarray(amounts, dtype=np.float64)
    if a_all.ndim == 1:
        a_all = a_all[None, :]
    t_all = np.asarray(times, dtype=np.float64)
    n, k = a_all.shape
    if t_all.ndim == 1:
        if t_all.shape[0] != k:
            raise ValueError(f"times has {t_all.shape[0]} entries, amounts have {k} columns")
    elif t_all.shape != a_all.shape:
        raise ValueError(f"times has shape {t_all.shape}, amounts {a_all.shape}")
    x0: FloatArray | None = None
    if guess is not None:
        g = np.asarray(guess, dtype=np.float64)
        if g.ndim and g.shape != (n,):
            raise ValueError(f"guess has shape {g.shape}, expected one rate or {n}")
        if not np.all(g > -1.0):
            raise ValueError("a guessed rate must be above -100% (-1)")
        x0 = np.broadcast_to(np.log1p(g), (n,))
    rates = np.full(n, np.nan)
    status = np.full(n, NO_SIGN_CHANGE, dtype=np.int8)
    most = 0
    for lo in range(0, n, chunk):
        hi = min(n, lo + chunk)
        t = t_all if t_all.ndim == 1 else t_all[lo:hi]
        r, s, it = _solve_chunk(t, a_all[lo:hi], None if x0 is None else x0[lo:hi], tol, max_iter)
        rates[lo:hi] = r
        status[lo:hi] = s
        most = max(most, it)
    return IRRSolution(rates, status, most)


def _solve_chunk(
    t: FloatArray, a: FloatArray, x0: FloatArray | None, tol: float, max_iter: int
) -> tuple[FloatArray, npt.NDArray[np.int8], int]:
    n, k = a.shape
    # a rate exists only with money both out and back
    solvable: npt.NDArray[np.bool_] = np.asarray((a > 0).any(axis=1) & (a < 0).any(axis=1))
    # shift times so the earliest is 0 (same root; keeps exp() in range)
    t = t - (t.min() if t.ndim == 1 else t.min(axis=1, keepdims=True))
    newton: Callable[[FloatArray, npt.NDArray[np.intp] | None], FloatArray]
    if t.ndim == 1:
        newton = shared = _SharedTimes(t, a)
        x = shared.first_guess() if x0 is None else x0.copy()
    else:
        t2 = t
        a_pos = np.maximum(a, 0.0)
        a_neg = a_pos - a
        x = _first_guess(t, a_pos, a_neg, a_pos.sum(axis=1), a_neg.sum(axis=1)) if x0 is None else x0.copy()

        def newton(xv: FloatArray, rows: npt.NDArray[np.intp] | None) -> FloatArray:
            tr = t2 if rows is None else t2[rows]
            w = np.exp(np.multiply(-xv[:, None], tr))
            p = w * (a_pos if rows is None else a_pos[rows])
            m = w * (a_neg if rows is None else a_neg[rows])
            sums = [np.cumsum(v, axis=1)[:, -1] for v in (p, m, p * tr, m * tr)]
            return _newton_step(*sums)

    converged = np.zeros(n, dtype=bool)
    failed = ~solvable
    it = 0

    with np.errstate(all="ignore"):
        live = np.flatnonzero(~failed)
        while it < max_iter and live.size:
            it += 1
            # while most rows are live, work on whole arrays; then only on the live rows
            rows = None if live.size > n // 2 else live
            xs = x if rows is None else x[live]
            step = newton(xs, rows)
            if rows is None and live.size < n:
                step = step[live]
                xs = xs[live]
            np.clip(step, -1.0, 1.0, out=step)  # damped: at most a factor e per iteration
            xn = xs - step
            good = (xn >= X_MIN - 1.0) & (xn <= X_MAX + 1.0)  # False for NaN
            done = good & (np.abs(step) <= tol)
            if live.size == n:  # every row: masks, no index arrays
                np.copyto(x, xn, where=good)
                failed |= ~good
                converged |= done
                live = np.flatnonzero(good & ~done)
            else:
                x[live[good]] = xn[good]
                failed[live[~good]] = True
                converged[live[done]] = True
                live = live[good & ~done]
        failed |= ~converged  # not converged in max_iter
    # a converged Newton root must lie within the range
    ok = (x >= X_MIN) & (x <= X_MAX)
    failed |= ~ok
    status = np.where(solvable, OK_NEWTON, NO_SIGN_CHANGE).astype(np.int8)
    retry = np.flatnonzero(failed & solvable)
    if retry.size:
        xr, found = _bracket(a[retry], _rows(t, retry))
        x[retry] = xr
        status[retry] = np.where(found, OK_BRACKET, NO_ROOT_IN_RANGE)
    rates = np.where(status <= OK_BRACKET, np.expm1(x), np.nan)
    return rates, status, it


def _first_guess(t: FloatArray, pos: FloatArray, neg: FloatArray, sp: FloatArray, sn: FloatArray) -> FloatArray:
    """A starting x = ln(1 + r): the rate that turns the money out into the money back over
    the gap between their money-weighted mean dates (exact for one flow out, one back)."""
    with np.errstate(all="ignore"):
        gap = (pos * t).sum(axis=1) / sp - (neg * t).sum(axis=1) / sn
        x = np.log(sp / sn) / gap
    x = np.where(np.isfinite(x), x, math.log1p(0.1))
    return np.asarray(np.clip(x, X_MIN, X_MAX), dtype=np.float64)


def _bracket(a: FloatArray, t: FloatArray, grid: int = 1201, rounds: int = 80) -> tuple[FloatArray, npt.NDArray[np.bool_]]:
    """Grid search for the sign change of the NPV nearest x = ln(1.1), then bisection."""
    m = a.shape[0]
    xs = np.linspace(X_MIN, X_MAX, grid)
    # f on the grid: (m, grid)
    # summed flow by flow, in order (not a matrix product): each row's values must not
    # depend on the other rows
    fg = np.zeros((m, grid))
    for j in range(a.shape[1]):
        tj = t[j] if t.ndim == 1 else t[:, j, None]
        fg += a[:, j, None] * np.exp(-tj * xs)
    sign = np.sign(fg)
    change = (sign[:, :-1] * sign[:, 1:]) <= 0
    change &= ~((sign[:, :-1] == 0) & (sign[:, 1:] == 0))
    found: npt.NDArray[np.bool_] = np.asarray(change.any(axis=1), dtype=bool)
    # choose the change nearest the usual guess
    centre = math.log1p(0.1)
    mid = (xs[:-1] + xs[1:]) / 2
    dist = np.where(change, np.abs(mid - centre)[None, :], np.inf)
    j = dist.argmin(axis=1)
    lo = xs[j].copy()
    hi = xs[j + 1].copy()
    rows = np.arange(m)
    flo = fg[rows, j]
    for _ in range(rounds):
        midx = (lo + hi) / 2
        fm, _slope = _npv_and_slope(midx, a, t)
        left = np.sign(fm) == np.sign(flo)
        lo = np.where(left, midx, lo)
        flo = np.where(left, fm, flo)
        hi = np.where(left, hi, midx)
    mid_x: FloatArray = np.asarray((lo + hi) / 2, dtype=np.float64)
    return mid_x, found


# ----------------------------------------------------------------- single vector ---


@dataclass(frozen=True)
class Rate:
    """A rate of return, or the reason there is none (``rate`` is NaN then)."""

    rate: float
    reason: str
    method: str

    @property
    def ok(self) -> bool:
        return not math.isnan(self.rate)

    def __float__(self) -> float:
        return self.rate

    def __repr__(self) -> str:
        return f"<Rate {self.rate:.6%}>" if self.ok else f"<Rate none: {self.reason}>"


def _years(dates: Sequence[date]) -> FloatArray:
    d0 = min(dates)
    return np.array([(d - d0).days / DAYS_PER_YEAR for d in dates], dtype=np.float64)


def _one(times: FloatArray, amounts: Sequence[Decimal | float | int]) -> Rate:
    sol = solve_rates(times, np.array([float(a) for a in amounts], dtype=np.float64)[None, :])
    s = int(sol.status[0])
    method = {OK_NEWTON: "newton", OK_BRACKET: "bracketing"}.get(s, "none")
    return Rate(float(sol.rates[0]), REASONS[s], method)


def xirr(dates: Sequence[date], amounts: Sequence[Decimal | float | int]) -> Rate:
    """Annual rate of return of dated flows (days / 365), like Excel's XIRR."""
    if len(dates) != len(amounts):
        raise ValueError(f"{len(dates)} dates but {len(amounts)} amounts")
    if not dates:
        return Rate(math.nan, REASONS[NO_SIGN_CHANGE], "none")
    return _one(_years(dates), amounts)


def irr(amounts: Sequence[Decimal | float | int]) -> Rate:
    """Rate of return per period of flows one period apart (like numpy-financial's irr)."""
    if not amounts:
        return Rate(math.nan, REASONS[NO_SIGN_CHANGE], "none")
    return _one(np.arange(len(amounts), dtype=np.float64), amounts)


def xirr_many(dates: Sequence[date], amounts: npt.ArrayLike) -> IRRSolution:
    """XIRR of many vectors sharing the same dates: ``amounts`` has shape (n, len(dates))."""
    return solve_rates(_years(dates), amounts)


def irr_many(amounts: npt.ArrayLike) -> IRRSolution:
    """Periodic IRR of many vectors (rows of ``amounts``)."""
    arr = np.asarray(amounts, dtype=np.float64)
    return solve_rates(np.arange(arr.shape[-1], dtype=np.float64), arr)


def _xirr_each(vectors: Sequence[Sequence[tuple[date, Decimal]]]) -> list[Rate]:
    """XIRR of dated flow vectors of different lengths and dates, in one solver call
    (shorter vectors are padded with zero flows, which change nothing)."""
    if not vectors:
        return []
    k = max(1, max(len(v) for v in vectors))
    times = np.zeros((len(vectors), k))
    amounts = np.zeros((len(vectors), k))
    for i, v in enumerate(vectors):
        if not v:
            continue
        d0 = min(d for d, _ in v)
        for j, (d, a) in enumerate(v):
            times[i, j] = (d - d0).days / DAYS_PER_YEAR
            amounts[i, j] = float(a)
    sol = solve_rates(times, amounts)
    out = []
    for i in range(len(vectors)):
        s = int(sol.status[i])
        out.append(Rate(float(sol.rates[i]), REASONS[s], {OK_NEWTON: "newton", OK_BRACKET: "bracketing"}.get(s, "none")))
    return out


# ------------------------------------------------------------ other metrics ---


def npv(rate: Decimal, flows: Sequence[tuple[date, Decimal]], on: date, currency: str) -> Decimal:
    """Net present value on ``on`` of dated flows at an annual ``rate`` (act/365), exact
    Decimal, rounded to the minor unit."""
    total = Decimal(0)
    base = 1 + rate
    for d, a in flows:
        years = Decimal((d - on).days) / Decimal(365)
        total += a / (base ** years)
    return round_money(total, currency)


def multiple(flows: Sequence[tuple[date, Decimal]]) -> Decimal | None:
    """Multiple on invested capital: money received / money invested (None if nothing was
    invested)."""
    invested = -sum((a for _, a in flows if a < 0), Decimal(0))
    received = sum((a for _, a in flows if a > 0), Decimal(0))
    if invested == 0:
        return None
    return received / invested


def payback_date(flows: Sequence[tuple[date, Decimal]]) -> date | None:
    """The first date on which the cumulative cash position, having been negative, is back
    at zero or above (None if never)."""
    position = Decimal(0)
    was_negative = False
    for d, a in sorted(flows):
        position += a
        if position < 0:
            was_negative = True
        elif was_negative:
            return d
    return None


# --------------------------------------------------------------- funder returns ---


@dataclass(frozen=True)
class FunderReturn:
    """One funder's (or guarantor's) position and returns over the deal."""

    party: str
    name: str
    role: str
    """``funder``, ``provider`` (a deferred fee) or ``guarantor``."""
    tranches: tuple[str, ...]
    invested: Decimal
    received: Decimal
    """From the waterfall, not counting guarantee payments."""
    guarantee_received: Decimal
    guarantee_paid: Decimal
    """For a guarantor: what it paid under its guarantees (reimbursements are in
    ``received``)."""
    outstanding_at_close: Decimal
    """Principal and interest still owed to the funder at close (before the guarantee)."""
    irr: Rate
    moic: Decimal | None
    npv: tuple[tuple[Decimal, Decimal], ...]
    """(annual discount rate, NPV at the deal's start)."""
    payback: date | None
    flows: tuple[tuple[date, Decimal], ...]

    @property
    def net(self) -> Decimal:
        return self.received + self.guarantee_received - self.invested - self.guarantee_paid

    @property
    def loss_before_guarantee(self) -> Decimal:
        return max(Decimal(0), self.invested - self.received)

    @property
    def loss(self) -> Decimal:
        """Realised loss: invested less everything received, guarantee included."""
        return max(Decimal(0), self.invested - self.received - self.guarantee_received)


@dataclass(frozen=True)
class ReturnsResult:
    """Returns of every funder (and every guarantor's position) in one deal."""

    contract_id: str
    currency: str
    start: date
    funders: tuple[FunderReturn, ...]
    discount_rates: tuple[Decimal, ...]

    def funder(self, party: str) -> FunderReturn:
        for f in self.funders:
            if f.party == party:
                return f
        raise KeyError(f"no funder '{party}' (known: {', '.join(f.party for f in self.funders)})")

    def to_frame(self) -> "pd.DataFrame":
        import pandas as pd

        rows = []
        for f in self.funders:
            row: dict[str, object] = {
                "party": f.party,
                "name": f.name,
                "role": f.role,
                "tranches": ", ".join(f.tranches),
                "invested": f.invested,
                "received": f.received,
                "guarantee_received": f.guarantee_received,
                "guarantee_paid": f.guarantee_paid,
                "net": f.net,
                "irr": f.irr.rate,
                "irr_note": "" if f.irr.ok else f.irr.reason,
                "moic": None if f.moic is None else float(f.moic),
                "payback": f.payback,
                "loss_before_guarantee": f.loss_before_guarantee,
                "loss": f.loss,
                "outstanding_at_close": f.outstanding_at_close,
            }
            for rate, value in f.npv:
                row[f"npv_{rate}"] = value
            rows.append(row)
        return pd.DataFrame(rows)

    summary = to_frame

    def cash_flows_frame(self) -> "pd.DataFrame":
        """Dated cash flows per funder (rows: dates, columns: parties) and cumulative position."""
        import pandas as pd

        rows = [
            {"party": f.party, "date": d, "amount": a}
            for f in self.funders
            for d, a in f.flows
        ]
        frame = pd.DataFrame(rows, columns=["party", "date", "amount"])
        if len(frame):
            frame = frame.sort_values(["party", "date"], kind="stable").reset_index(drop=True)
            frame["cumulative"] = frame.groupby("party")["amount"].transform(
                lambda s: s.cumsum()
            )
        else:
            frame["cumulative"] = []
        return frame

    def as_json(self) -> dict[str, dict[str, object]]:
        """``id -> {invested, received, irr, moic, loss}`` (strings for money, float or None
        for rates), the shape of ``sib evaluate --json``'s ``funders``."""
        out: dict[str, dict[str, object]] = {}
        for f in self.funders:
            if f.role == "guarantor":
                continue
            out[f.party] = {
                "invested": str(f.invested),
                "received": str(f.received + f.guarantee_received),
                "irr": f.irr.rate if f.irr.ok else None,
                "moic": None if f.moic is None else float(f.moic),
                "loss": str(f.loss),
            }
        return out

    def explain(self) -> str:
        def m(a: Decimal) -> str:
            return format_money(a, self.currency)

        lines = [f"Returns of {self.contract_id}"]
        for f in self.funders:
            if f.role == "guarantor":
                lines.append(f"  {f.name} ({f.party}, guarantor): paid {m(f.guarantee_paid)} under its guarantees")
                continue
            irr_text = f"{f.irr.rate:.2%}" if f.irr.ok else f"none ({f.irr.reason})"
            lines.append(
                f"  {f.name} ({f.party}, {', '.join(f.tranches)}): invested {m(f.invested)}, received "
                f"{m(f.received)}"
                + (f" + guarantee {m(f.guarantee_received)}" if f.guarantee_received else "")
                + f"; IRR {irr_text}; multiple "
                + ("n/a" if f.moic is None else f"{f.moic:.2f}x")
                + f"; payback {f.payback or 'never'}; loss {m(f.loss)}"
            )
            for rate, value in f.npv:
                lines.append(f"      NPV at {rate:.1%}: {m(value)}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        parts = []
        for f in self.funders:
            if f.role != "guarantor":
                parts.append(f"{f.party} {f.irr.rate:.2%}" if f.irr.ok else f"{f.party} n/a")
        return f"<ReturnsResult {self.contract_id}: " + ", ".join(parts) + ">"

    def _repr_html_(self) -> str:
        table: str = self.to_frame().to_html(index=False)
        return f"<p><strong>{html.escape(repr(self))}</strong></p>" + table


def funder_returns(
    result: WaterfallResult,
    discount_rates: Iterable[Decimal] = (Decimal("0.035"),),
    *,
    roles: Mapping[str, str] | None = None,
) -> ReturnsResult:
    """Each funder's cash flows, XIRR, multiple, NPV at ``discount_rates`` (on the deal's
    start date), payback date, loss and guarantee received; and each guarantor's position.

    The XIRRs of all funders are solved together by the vectorised solver.
    """
    rates = tuple(discount_rates)
    cur = result.currency
    funders = result.funders
    roles = dict(roles or {})
    flows = {p: result.investment_flows(p) for p in funders}
    solved = _xirr_each([flows[p] for p in funders])
    out: list[FunderReturn] = []
    for p in funders:
        fl = flows[p]
        ts = [t for t in result.tranches if t.funder == p]
        invested = sum((f.amount for f in result.flows if f.kind == "drawdown" and f.source == p), Decimal(0))
        received = sum(
            (f.amount for f in result.flows if f.target == p and f.kind in RETURN_KINDS and f.kind not in ("drawdown", "guarantee")),
            Decimal(0),
        )
        guarantee = sum((f.amount for f in result.flows if f.target == p and f.kind == "guarantee"), Decimal(0))
        outstanding = sum((t.principal_outstanding + t.interest_due for t in ts), Decimal(0))
        role = roles.get(p) or ("provider" if all(t.kind == "deferred_fee" for t in ts) else "funder")
        out.append(
            FunderReturn(
                party=p, name=result.label(p), role=role, tranches=tuple(t.id for t in ts),
                invested=invested, received=received, guarantee_received=guarantee,
                guarantee_paid=Decimal(0), outstanding_at_close=round_money(outstanding, cur),
                irr=solved[funders.index(p)], moic=multiple(fl),
                npv=tuple((r, npv(r, fl, result.start, cur)) for r in rates),
                payback=payback_date(fl), flows=fl,
            )
        )
    for g in result.guarantors:
        paid = sum((f.amount for f in result.flows if f.source == g and f.kind == "guarantee"), Decimal(0))
        back = sum((f.amount for f in result.flows if f.target == g and f.kind == "guarantee_recovery"), Decimal(0))
        fl = result.cash_flows(g, kinds=("guarantee", "guarantee_recovery"))
        out.append(
            FunderReturn(
                party=g, name=result.label(g), role="guarantor",
                tranches=tuple(c.covers for c in result.guarantees if c.guarantor == g),
                invested=Decimal(0), received=back, guarantee_received=Decimal(0), guarantee_paid=paid,
                outstanding_at_close=Decimal(0), irr=Rate(math.nan, "a guarantor invests nothing", "none"),
                moic=None, npv=tuple((r, npv(r, fl, result.start, cur)) for r in rates),
                payback=None, flows=fl,
            )
        )
    return ReturnsResult(result.contract_id, cur, result.start, tuple(out), rates)
