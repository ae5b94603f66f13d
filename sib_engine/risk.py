"""Risk simulation: what each party really carries (the API over the vectorised evaluator).

:func:`simulate` runs a contract's deal over many simulated worlds
(:mod:`sib_engine.simulation`) and returns a frozen :class:`SimulationResult`: the
distribution of payments (in all, per payer, per trigger), each funder's IRR, multiple,
probability of loss, 5% value at risk and expected shortfall, the government's expected
cost against fee-for-service, the risk transfer, the probability of paying when the true
effect is zero and of not paying when it meets the target, the payment curve and the
break-even effect, and one-at-a-time sensitivity (:meth:`SimulationResult.tornado`).
:func:`compare_scenarios` runs several sets of assumptions side by side and
:func:`simulate_portfolio` runs many deals with a shared economic shock.

**Reproducibility.**  Paths are drawn in fixed blocks
(:data:`~sib_engine.simulation.world.BLOCK`), each from its own stream spawned from the
seed, so the same seed gives bit-identical results whatever the chunk size, the number of
threads or Dask workers.  Every result records the seed, the assumptions and the engine
version.

**Scale-out.**  ``workers=N`` starts a Dask ``LocalCluster`` of ``N`` processes (one
thread each, no dashboard) for the run; ``scheduler="tcp://host:8786"`` uses an existing
cluster (whose workers have sib-engine installed).  Chunks are tasks; results are gathered
in chunk order.

Definitions (also in :meth:`SimulationResult.summary`):

- *payments*: what the outcome payers pay, net of clawbacks, after appropriation failures;
- a funder's *net* is what it received (guarantee payments included) less what it invested;
  its *loss* is the negative part of the net; ``p_loss`` the probability of a loss of at
  least half a minor unit;
- *VaR 5%* / *expected shortfall 5%*: :func:`~sib_engine.simulation.measures.value_at_risk`
  and :func:`~sib_engine.simulation.measures.expected_shortfall` of the net;
- *risk transfer*: :func:`~sib_engine.simulation.measures.risk_transfer`;
- *P(pay | no effect)*: the probability that the contract pays anything when every true
  effect is zero (so the evaluator's sampling noise, or a rate card's deadweight, is all
  that is paid for); *P(no pay | target)*: the probability that it pays nothing when every
  true effect is at its target;
- *payment curve*: P(payment) and expected payment (and each funder's mean IRR and
  P(loss)) at fixed true effects of one metric, the other assumptions drawn as usual;
- *break-even effect*: on the payment curve, the true effect from which the funders
  together expect to get back what they invested (expected net of all funders >= 0).
"""

from __future__ import annotations

import html
import math
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from sib_engine.contract import Contract, Simulation
from sib_engine.scenario import Scenario
from sib_engine.money import format_money
from sib_engine.simulation import measures
from sib_engine.simulation.cashflows import layout
from sib_engine.simulation.kernel import ChunkResult, Runner, allocate, concat, place
from sib_engine.simulation.plan import SchedPlan, SimulationError, compile_plan
from sib_engine.simulation.world import BLOCK, NO_PINS, Pins, mean_of, ppf

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

ProgressFn = Callable[[int, int], None]
"""Called as ``progress(paths_done, paths_in_all)`` after each chunk."""

DEFAULT_CHUNK = 8 * BLOCK
ANALYSIS_PATHS = 4000
"""Worlds per point of the payment curve, per tornado bar and per pinned probability."""

__all__ = [
    "ProgressFn", "SimulationError", "SimulationResult", "simulate", "simulation_json",
    "compare_scenarios", "simulate_portfolio", "PortfolioResult",
]


def _engine_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("sib-engine")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "unknown"


# ------------------------------------------------------------------ running chunks ---


def _chunks(paths: int, chunk_size: int) -> list[tuple[int, int]]:
    size = max(BLOCK, -(-chunk_size // BLOCK) * BLOCK)
    return [(lo, min(paths, lo + size)) for lo in range(0, paths, size)]


_RUNNERS: dict[tuple[str, str], Runner] = {}


def _runner(contract: Contract, sim: Simulation) -> Runner:
    key = (contract.model_dump_json(), sim.model_dump_json())
    got = _RUNNERS.get(key)
    if got is None:
        if len(_RUNNERS) > 16:
            _RUNNERS.clear()
        got = Runner(compile_plan(contract, sim))
        _RUNNERS[key] = got
    return got


def _chunk_task(contract: Contract, sim: Simulation, seed: int, start: int, stop: int, pins: Pins,
                truth: bool) -> ChunkResult:
    """One chunk on a worker (module level, so that Dask can pickle it)."""
    return _runner(contract, sim).run(seed, start, stop, pins, truth=truth)


def _execute(
    contract: Contract, sim: Simulation, paths: int, seed: int, *, pins: Pins = NO_PINS, truth: bool = True,
    chunk_size: int = DEFAULT_CHUNK, workers: int | None = None, scheduler: str | None = None,
    progress: ProgressFn | None = None, threads: int | None = None,
) -> ChunkResult:
    chunks = _chunks(paths, chunk_size)
    if workers is not None or scheduler is not None:
        return _execute_dask(contract, sim, seed, chunks, pins, truth, workers, scheduler, progress, paths)
    runner = _runner(contract, sim)
    n_threads = max(1, min(threads if threads is not None else 1, len(chunks)))
    if len(chunks) == 1:
        lo, hi = chunks[0]
        only = runner.run(seed, lo, hi, pins, truth=truth)
        if progress is not None:
            progress(hi - lo, paths)
        return only
    # every chunk is copied into the run's arrays as soon as it is done (by the thread that
    # ran it): no list of chunk results to concatenate at the end, half the peak memory
    out: list[ChunkResult] = []
    lock = threading.Lock()

    def task(lo: int, hi: int) -> None:
        part = runner.run(seed, lo, hi, pins, truth=truth)
        with lock:
            if not out:
                out.append(allocate(part, paths))
        place(out[0], lo, part)

    done = 0
    if n_threads == 1:
        for lo, hi in chunks:
            task(lo, hi)
            done += hi - lo
            if progress is not None:
                progress(done, paths)
    else:
        pool = ThreadPoolExecutor(max_workers=n_threads)
        try:
            futures = [pool.submit(task, lo, hi) for lo, hi in chunks]
            for (lo, hi), fut in zip(chunks, futures):
                fut.result()
                done += hi - lo
                if progress is not None:
                    progress(done, paths)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)  # after an error: start no more chunks
    return out[0]


def local_cluster(workers: int) -> Any:
    """A Dask ``LocalCluster`` of ``workers`` processes, one thread each, no dashboard, fit
    for the simulation.

    Dask starts its worker processes with ``MALLOC_TRIM_THRESHOLD_=65536`` (to hand freed
    memory back to the system at once).  numpy's temporary arrays are larger than that, so
    every one of them is then mapped and faulted in afresh: the simulation runs several
    times slower.  The workers started here keep the C library's adaptive default.  (Workers
    of an existing cluster, ``scheduler=``, run as their operator started them.)
    """
    import dask
    import distributed

    dist: Any = distributed  # untyped library
    saved = os.environ.pop("MALLOC_TRIM_THRESHOLD_", None)
    try:
        with dask.config.set({"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}):
            return dist.LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                     dashboard_address=None)
    finally:
        if saved is not None:
            os.environ["MALLOC_TRIM_THRESHOLD_"] = saved


def _execute_dask(
    contract: Contract, sim: Simulation, seed: int, chunks: list[tuple[int, int]], pins: Pins, truth: bool,
    workers: int | None, scheduler: str | None, progress: ProgressFn | None, paths: int,
) -> ChunkResult:
    import distributed

    dist: Any = distributed  # untyped library
    compile_plan(contract, sim)  # refuse unsupported contracts before starting a cluster
    cluster = None
    if scheduler is not None:
        client = dist.Client(scheduler)
    else:
        cluster = local_cluster(workers or 1)
        client = dist.Client(cluster)
    try:
        futures = [client.submit(_chunk_task, contract, sim, seed, lo, hi, pins, truth, pure=False)
                   for lo, hi in chunks]
        sizes = {f.key: hi - lo for f, (lo, hi) in zip(futures, chunks)}
        done = 0
        for fut in dist.as_completed(futures):
            done += sizes[fut.key]
            if progress is not None:
                progress(done, paths)
        results: list[ChunkResult] = client.gather(futures)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
    return results[0] if len(results) == 1 else concat(results)


# --------------------------------------------------------------------------- result ---


@dataclass(frozen=True)
class Party:
    id: str
    name: str
    role: str


@dataclass(frozen=True, eq=False)
class SimulationResult:
    """The distribution of a deal's outcomes over simulated worlds; frozen.

    ``data`` holds one row per world (see :meth:`to_frame`); the other fields record how
    the run was made (seed, assumptions, engine version) and the figures that need runs of
    their own (the probabilities at pinned effects, the payment curve).
    """

    contract_id: str
    title: str
    currency: str
    paths: int
    seed: int
    engine_version: str
    assumptions: dict[str, Any]
    """The simulation assumptions, as plain data (``Simulation.model_dump(mode="json")``)."""
    payers: tuple[str, ...]
    triggers: tuple[str, ...]
    funders: tuple[Party, ...]
    guarantors: tuple[Party, ...]
    effects: tuple[str, ...]
    """The metric of each effect assumption, in order."""
    data: ChunkResult
    fee_for_service: float | None
    p_pay_if_no_effect: float | None = None
    p_no_pay_at_target: float | None = None
    targets: tuple[float, ...] = ()
    curve: pd.DataFrame | None = None
    elapsed: float = 0.0
    workers: str = "local"
    _contract: Contract | None = field(default=None, repr=False)
    _simulation: Simulation | None = field(default=None, repr=False)
    _cache: dict[str, Any] = field(default_factory=dict, repr=False)

    # -- per-world figures --------------------------------------------------------------
    def funder_net(self, i: int) -> np.ndarray:
        d = self.data
        return np.asarray(d.received[:, i] + d.guarantee_received[:, i] - d.invested[:, i])

    def funder_multiple(self, i: int) -> np.ndarray:
        d = self.data
        with np.errstate(all="ignore"):
            return np.asarray((d.received[:, i] + d.guarantee_received[:, i]) / d.invested[:, i])

    def investor_loss(self) -> np.ndarray:
        """Per world, the capital the funders did not get back (summed over funders)."""
        out = np.zeros(self.paths)
        for i in range(len(self.funders)):
            out += np.maximum(-self.funder_net(i), 0.0)
        return out

    def guarantor_cost(self) -> np.ndarray:
        d = self.data
        if not self.guarantors:
            return np.zeros(self.paths)
        return np.asarray(np.maximum(d.guarantor_paid - d.guarantor_recovered, 0.0).sum(axis=1))

    def government_loss(self) -> np.ndarray:
        """Per world, what the payers paid beyond the noise-free payment (see
        :func:`~sib_engine.simulation.measures.risk_transfer`)."""
        d = self.data
        truth = np.where(np.isnan(d.truth), d.paid, d.truth)
        return np.asarray(np.maximum(d.paid - truth, 0.0))

    @property
    def risk_transfer(self) -> float:
        return measures.risk_transfer(self.investor_loss(), self.guarantor_cost(), self.government_loss())

    @property
    def break_even_effect(self) -> float | None:
        if self.curve is None or not len(self.curve) or not self.funders:
            return None
        v = measures.crossing(self.curve["effect"].to_numpy(), self.curve["funders_net"].to_numpy(), 0.0)
        return None if math.isnan(v) else v

    # -- tables ----------------------------------------------------------------------------
    def funders_frame(self) -> pd.DataFrame:
        """One row per funder: IRR percentiles, mean multiple, P(loss), expected loss, VaR and
        expected shortfall at 5%; and per guarantor what it pays."""
        d = self.data
        rows = []
        for i, f in enumerate(self.funders):
            net = self.funder_net(i)
            irr = measures.quantiles(d.irr[:, i])
            rows.append({
                "party": f.id, "name": f.name, "role": f.role, "invested": float(d.invested[:, i].mean()),
                "irr_p5": irr["p5"], "irr_p50": irr["p50"], "irr_p95": irr["p95"],
                "irr_mean": float(np.nanmean(d.irr[:, i])) if np.isfinite(d.irr[:, i]).any() else math.nan,
                "irr_missing": measures.probability(~np.isfinite(d.irr[:, i])),
                "multiple_mean": float(np.nanmean(self.funder_multiple(i))),
                "p_loss": measures.probability(net < -measures.CENT),
                "expected_loss": float(np.maximum(-net, 0.0).mean()),
                "var_5": measures.value_at_risk(net), "es_5": measures.expected_shortfall(net),
            })
        for j, g in enumerate(self.guarantors):
            cost = d.guarantor_paid[:, j] - d.guarantor_recovered[:, j]
            rows.append({
                "party": g.id, "name": g.name, "role": "guarantor", "invested": 0.0,
                "p_loss": measures.probability(cost > measures.CENT), "expected_loss": float(cost.mean()),
                "var_5": measures.value_at_risk(-cost), "es_5": measures.expected_shortfall(-cost),
            })
        return pd.DataFrame(rows)

    def summary(self) -> pd.DataFrame:
        """The headline figures: measure, value, unit."""
        d = self.data
        cur = self.currency
        rows: list[tuple[str, float | None, str]] = []
        tp = measures.quantiles(d.paid)
        rows += [("payments: mean", float(d.paid.mean()), cur), ("payments: 5th percentile", tp["p5"], cur),
                 ("payments: median", tp["p50"], cur), ("payments: 95th percentile", tp["p95"], cur),
                 ("P(any payment)", measures.probability(d.paid > measures.CENT), "probability")]
        for j, p in enumerate(self.payers):
            rows.append((f"paid by {p}: mean", float(d.paid_by_payer[:, j].mean()), cur))
        for j, t in enumerate(self.triggers):
            rows.append((f"trigger {t}: mean", float(d.paid_by_trigger[:, j].mean()), cur))
        if float(d.unbudgeted.mean()) > 0:
            rows.append(("owed but not budgeted (appropriation): mean", float(d.unbudgeted.mean()), cur))
        ff = self.funders_frame()
        for rec in ff.to_dict("records"):
            who = rec["party"]
            if rec["role"] == "guarantor":
                rows += [(f"{who}: P(guarantee called)", rec["p_loss"], "probability"),
                         (f"{who}: expected net cost", rec["expected_loss"], cur)]
                continue
            rows += [(f"{who}: IRR median", rec["irr_p50"], "per year"),
                     (f"{who}: IRR 5th percentile", rec["irr_p5"], "per year"),
                     (f"{who}: IRR 95th percentile", rec["irr_p95"], "per year"),
                     # the percentiles are over the worlds with a rate: a total loss has none
                     (f"{who}: no IRR (e.g. nothing back)", rec["irr_missing"], "probability"),
                     (f"{who}: multiple mean", rec["multiple_mean"], "x"),
                     (f"{who}: P(loss)", rec["p_loss"], "probability"),
                     (f"{who}: expected loss", rec["expected_loss"], cur),
                     (f"{who}: VaR 5%", rec["var_5"], cur),
                     (f"{who}: expected shortfall 5%", rec["es_5"], cur)]
        rows.append(("government: expected cost", float(d.paid.mean()), cur))
        if self.fee_for_service is not None:
            rows += [("government: fee-for-service cost", self.fee_for_service, cur),
                     ("government: expected cost less fee-for-service", float(d.paid.mean()) - self.fee_for_service, cur),
                     ("government: P(cost above fee-for-service)",
                      measures.probability(d.paid > self.fee_for_service + measures.CENT), "probability")]
        rows.append(("risk transfer", self.risk_transfer, "share of the downside"))
        if self.p_pay_if_no_effect is not None:
            rows.append(("P(pay | true effect zero)", self.p_pay_if_no_effect, "probability"))
        if self.p_no_pay_at_target is not None:
            rows.append(("P(no payment | effect at target)", self.p_no_pay_at_target, "probability"))
        be = self.break_even_effect
        rows.append((f"break-even effect ({self.effects[0]})" if self.effects else "break-even effect", be,
                     "true effect at which funders expect their money back"))
        if self.data.repaired.any():
            rows.append(("worlds recomputed by the exact waterfall", float(self.data.repaired.sum()), "worlds"))
        return pd.DataFrame(rows, columns=["measure", "value", "unit"])

    def to_frame(self) -> pd.DataFrame:
        """One row per simulated world: true effects, delay, enrolment, payments (owed, paid,
        per payer, per trigger, noise-free), each funder's IRR, multiple and net, each
        guarantor's net cost."""
        d = self.data
        cols: dict[str, Any] = {}
        for i, m in enumerate(self.effects):
            cols[f"effect_{m}"] = d.effects[:, i]
        cols["delay_months"] = d.delay
        cols["enrolled"] = d.enrolled
        cols["owed"] = d.owed
        cols["paid"] = d.paid
        cols["paid_noise_free"] = d.truth
        for j, p in enumerate(self.payers):
            cols[f"paid_{p}"] = d.paid_by_payer[:, j]
        for j, t in enumerate(self.triggers):
            cols[f"trigger_{t}"] = d.paid_by_trigger[:, j]
        for i, f in enumerate(self.funders):
            cols[f"irr_{f.id}"] = d.irr[:, i]
            cols[f"multiple_{f.id}"] = self.funder_multiple(i)
            cols[f"net_{f.id}"] = self.funder_net(i)
        for j, g in enumerate(self.guarantors):
            cols[f"cost_{g.id}"] = d.guarantor_paid[:, j] - d.guarantor_recovered[:, j]
        frame = pd.DataFrame(cols)
        frame.index.name = "path"
        return frame

    # -- further runs: payment curve, tornado ---------------------------------------------
    def _need(self) -> tuple[Contract, Simulation]:
        if self._contract is None or self._simulation is None:
            raise SimulationError("this result was not made by simulate(); it cannot run more worlds")
        return self._contract, self._simulation

    def payment_curve(self, metric: str | None = None, points: int = 13, paths: int = ANALYSIS_PATHS) -> pd.DataFrame:
        """P(payment), expected payment and each funder's mean IRR and P(loss) at fixed
        true effects of ``metric`` (default: the first assumed), over ``paths`` worlds each
        (the same seed: common random numbers)."""
        key = f"curve:{metric}:{points}:{paths}"
        got = self._cache.get(key)
        if got is None:
            contract, sim = self._need()
            got = payment_curve(contract, sim, self.seed, metric=metric, points=points, paths=paths)
            self._cache[key] = got
        return got

    def tornado(self, output: str = "paid", paths: int = ANALYSIS_PATHS) -> pd.DataFrame:
        """One-at-a-time sensitivity: each uncertain assumption held at its 10th and 90th
        percentile (appropriation risk at 0 and twice its value), the others drawn as
        usual, over ``paths`` worlds each.  ``output``: ``paid`` (expected payments),
        ``irr:<funder>`` (median IRR), ``p_loss:<funder>`` or ``net:<funder>`` (expected
        net).  Rows sorted by swing, largest first."""
        key = f"tornado:{output}:{paths}"
        got = self._cache.get(key)
        if got is None:
            contract, sim = self._need()
            got = tornado(contract, sim, self.seed, output=output, paths=paths)
            self._cache[key] = got
        return got

    # -- plots -----------------------------------------------------------------------------
    def plot_returns(self) -> "Figure":
        """Histogram of each funder's IRR."""
        from matplotlib.figure import Figure

        fig = Figure(figsize=(7, 3.2), layout="constrained")
        ax = fig.add_subplot()
        for i, f in enumerate(self.funders):
            v = self.data.irr[:, i]
            v = v[np.isfinite(v)]
            if v.size:
                lo, hi = np.quantile(v, [0.005, 0.995])
                ax.hist(np.clip(v, lo, hi) * 100, bins=60, alpha=0.55, label=f.name)
        ax.set_xlabel("IRR, % a year")
        ax.set_ylabel("worlds")
        ax.set_title("Distribution of returns", loc="left", fontsize=11)
        if self.funders:
            ax.legend(frameon=False, fontsize=9)
        return fig

    def plot_payment_curve(self, metric: str | None = None) -> "Figure":
        """P(payment) and expected payment against the true effect."""
        from matplotlib.figure import Figure

        c = self.curve if metric is None and self.curve is not None else self.payment_curve(metric)
        fig = Figure(figsize=(7, 3.2), layout="constrained")
        ax = fig.add_subplot()
        ax.plot(c["effect"], c["expected_payment"], color="#0072B2", marker="o", ms=3)
        ax.set_xlabel(f"true effect on {c.attrs.get('metric', '')}")
        ax.set_ylabel(f"expected payment ({self.currency})", color="#0072B2")
        ax2 = ax.twinx()
        ax2.plot(c["effect"], c["p_payment"], color="#D55E00", marker="s", ms=3)
        ax2.set_ylabel("P(payment)", color="#D55E00")
        ax2.set_ylim(-0.02, 1.02)
        ax.set_title("Payment curve", loc="left", fontsize=11)
        return fig

    def plot_tornado(self, output: str = "paid") -> "Figure":
        """Bars of the one-at-a-time sensitivity."""
        from matplotlib.figure import Figure

        t = self.tornado(output)
        fig = Figure(figsize=(7, 0.5 + 0.45 * max(1, len(t))), layout="constrained")
        ax = fig.add_subplot()
        base = float(t["base"].iloc[0]) if len(t) else 0.0
        for k, rec in enumerate(t.iloc[::-1].to_dict("records")):
            lo, hi = rec["output_low"], rec["output_high"]
            ax.barh(k, lo - base, left=base, color="#56B4E9")
            ax.barh(k, hi - base, left=base, color="#E69F00")
        ax.set_yticks(range(len(t)), list(t["parameter"].iloc[::-1]))
        ax.axvline(base, color="#333333", linewidth=0.8)
        ax.set_xlabel(f"expected payments ({self.currency})" if output == "paid" else output)
        ax.set_title("One-at-a-time sensitivity (low: blue, high: orange)", loc="left", fontsize=11)
        return fig

    # -- text --------------------------------------------------------------------------------
    def __repr__(self) -> str:
        d = self.data
        parts = [f"{self.paths:,} paths, seed {self.seed}",
                 f"payments mean {format_money(Decimal(repr(float(d.paid.mean()))), self.currency)}"]
        for i, f in enumerate(self.funders[:2]):
            parts.append(f"{f.id} P(loss) {measures.probability(self.funder_net(i) < -measures.CENT):.1%}")
        rt = self.risk_transfer
        if not math.isnan(rt):
            parts.append(f"risk transfer {rt:.0%}")
        return f"<SimulationResult {self.contract_id}: " + ", ".join(parts) + ">"

    def _repr_html_(self) -> str:
        e = html.escape
        head = (f"<p><b>{e(self.title)}</b> ({e(self.contract_id)}): {self.paths:,} simulated worlds, seed "
                f"{self.seed}, sib-engine {e(self.engine_version)}</p>")
        summ = self.summary()
        rows = "".join(
            f"<tr><td>{e(str(r['measure']))}</td><td style='text-align:right'>{e(_fmt(r['value'], str(r['unit'])))}</td>"
            f"<td>{e(str(r['unit']))}</td></tr>" for r in summ.to_dict("records"))
        return head + f"<table><tr><th>measure</th><th>value</th><th>unit</th></tr>{rows}</table>"

    def to_json(self) -> dict[str, Any]:
        return simulation_json(self)


def _fmt(v: Any, unit: str) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    if unit in ("probability", "per year", "share of the downside"):
        return f"{v:.2%}"
    if unit == "x":
        return f"{v:.2f}"
    if unit == "worlds":
        return f"{v:,.0f}"
    if isinstance(v, float) and abs(v) >= 100:
        return f"{v:,.2f}"
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def _num(x: float | None) -> float | None:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return None
    return float(x)


def simulation_json(result: SimulationResult) -> dict[str, Any]:
    """Plain data for ``sib simulate --json``: ``paths``, ``seed``, ``total_payment``
    (mean, p5, p50, p95), ``funders`` (id -> ``irr`` percentiles, ``p_loss``, ...),
    ``p_pay_if_no_effect``, ``risk_transfer`` and more; floats, ``null`` for undefined."""
    d = result.data
    tp = measures.quantiles(d.paid)
    ff = result.funders_frame()
    funders: dict[str, Any] = {}
    guarantors: dict[str, Any] = {}
    for rec in ff.to_dict("records"):
        if rec["role"] == "guarantor":
            guarantors[rec["party"]] = {"p_called": _num(rec["p_loss"]), "expected_cost": _num(rec["expected_loss"]),
                                        "var_5": _num(rec["var_5"]), "es_5": _num(rec["es_5"])}
            continue
        funders[rec["party"]] = {
            "irr": {"p5": _num(rec["irr_p5"]), "p50": _num(rec["irr_p50"]), "p95": _num(rec["irr_p95"]),
                    "mean": _num(rec["irr_mean"]), "missing": _num(rec["irr_missing"])},
            "multiple_mean": _num(rec["multiple_mean"]), "p_loss": _num(rec["p_loss"]),
            "expected_loss": _num(rec["expected_loss"]), "var_5": _num(rec["var_5"]), "es_5": _num(rec["es_5"]),
        }
    mean_paid = float(d.paid.mean())
    return {
        "contract": result.contract_id,
        "engine_version": result.engine_version,
        "currency": result.currency,
        "paths": result.paths,
        "seed": result.seed,
        "assumptions": result.assumptions,
        "total_payment": {"mean": mean_paid, **{k: _num(v) for k, v in tp.items()}},
        "payers": {p: {"mean": float(d.paid_by_payer[:, j].mean()),
                       **{k: _num(v) for k, v in measures.quantiles(d.paid_by_payer[:, j]).items()}}
                   for j, p in enumerate(result.payers)},
        "triggers": {t: {"mean": float(d.paid_by_trigger[:, j].mean())} for j, t in enumerate(result.triggers)},
        "funders": funders,
        "guarantors": guarantors,
        "government": {
            "expected_cost": mean_paid,
            "fee_for_service": result.fee_for_service,
            "expected_cost_less_fee_for_service": None if result.fee_for_service is None
            else mean_paid - result.fee_for_service,
        },
        "p_pay_if_no_effect": _num(result.p_pay_if_no_effect),
        "p_no_pay_at_target": _num(result.p_no_pay_at_target),
        "risk_transfer": _num(result.risk_transfer),
        "break_even_effect": _num(result.break_even_effect),
        "repaired_worlds": int(d.repaired.sum()),
    }


# ------------------------------------------------------------------------- analyses ---


def default_targets(contract: Contract, sim: Simulation) -> tuple[float, ...]:
    """Per effect assumption: its ``target``, else the effect at which the first
    schedule-based trigger on its metric starts paying (in the assumption's units), else
    the mean of its distribution."""
    plan = compile_plan(contract, sim)
    out = []
    for i, a in enumerate(sim.effects):
        if a.target is not None:
            out.append(float(a.target))
            continue
        got = None
        for sp in plan.scheds:
            if plan.metrics[sp.effect.metric].id != a.metric:
                continue
            got = _first_paying(sp, float(a.base))
            if got is not None:
                break
        out.append(got if got is not None else mean_of(a.effect))
    return tuple(out)


def _first_paying(sp: SchedPlan, base: float) -> float | None:
    sched = sp.schedule
    if sp.kind == "share_of_savings" or sched is None:
        return None
    pts = [float(p.effect) for p in sched.points if p.value > 0]
    if not pts:
        return None
    e = pts[0]
    if sched.minimum_effect is not None:
        e = max(e, float(sched.minimum_effect))
    m = sp.effect.measure
    if m == "difference":
        return e
    if m == "relative_difference":
        return e * base
    if m == "reduction":
        return -e
    if m == "relative_reduction":
        return -e * base
    return e - base


def _pinned(contract: Contract, sim: Simulation, seed: int, paths: int, pins: Pins, truth: bool = False) -> ChunkResult:
    return _execute(contract, sim, paths, seed, pins=pins, truth=truth, threads=1)


def payment_curve(contract: Contract, sim: Simulation, seed: int, *, metric: str | None = None, points: int = 13,
                  paths: int = ANALYSIS_PATHS) -> pd.DataFrame:
    """See :meth:`SimulationResult.payment_curve`."""
    metrics = [a.metric for a in sim.effects]
    m = metric or metrics[0]
    if m not in metrics:
        raise SimulationError(f"no effect is assumed for metric '{m}' (assumed: {', '.join(metrics)})")
    i = metrics.index(m)
    a = sim.effects[i]
    lo, hi = (float(x) for x in ppf(a.effect, u=np.array([0.01, 0.99])))
    target = default_targets(contract, sim)[i]
    lo, hi = min(lo, 0.0, target), max(hi, 0.0, target)
    if hi == lo:
        hi = lo + 1.0
    grid = sorted(set(np.round(np.linspace(lo, hi, points), 12).tolist()) | {0.0, round(target, 12)})
    rows = []
    for v in grid:
        r = _pinned(contract, sim, seed, paths, Pins(effects={i: v}))
        row: dict[str, float] = {"effect": v, "p_payment": measures.probability(r.owed > measures.CENT),
                                 "expected_payment": float(r.owed.mean()), "expected_paid": float(r.paid.mean())}
        net_all = np.zeros(r.n)
        for f in range(r.invested.shape[1]):
            net = r.received[:, f] + r.guarantee_received[:, f] - r.invested[:, f]
            net_all += net
            row[f"irr_mean_{f}"] = float(np.nanmean(r.irr[:, f])) if np.isfinite(r.irr[:, f]).any() else math.nan
            row[f"p_loss_{f}"] = measures.probability(net < -measures.CENT)
        row["funders_net"] = float(net_all.mean())
        rows.append(row)
    frame = pd.DataFrame(rows)
    lay = layout(compile_plan(contract, sim))
    names = {f"irr_mean_{f}": f"irr_mean_{lay.parties[p]}" for f, p in enumerate(lay.funders)}
    names.update({f"p_loss_{f}": f"p_loss_{lay.parties[p]}" for f, p in enumerate(lay.funders)})
    frame = frame.rename(columns=names)
    frame.attrs["metric"] = m
    return frame


def _uncertain(sim: Simulation) -> list[tuple[str, str]]:
    """(pin name, label) of every assumption with uncertainty, for the tornado."""
    out: list[tuple[str, str]] = []
    for i, a in enumerate(sim.effects):
        if a.effect.kind != "fixed":
            out.append((f"effect:{i}", f"effect on {a.metric}"))
    if sim.enrolment.fraction.kind != "fixed":
        out.append(("enrolment", "enrolment"))
    for key, label in (("attrition", "attrition"), ("delay_months", "delay"), ("baseline_drift", "drift")):
        d = getattr(sim, key)
        if d is not None and d.kind != "fixed":
            out.append(({"delay_months": "delay", "baseline_drift": "drift"}.get(key, key), label))
    return out


def _output(r: ChunkResult, output: str, funder_ids: Sequence[str]) -> float:
    if output == "paid":
        return float(r.paid.mean())
    what, _, who = output.partition(":")
    if who not in funder_ids:
        raise SimulationError(f"unknown output '{output}': use paid, irr:<funder>, p_loss:<funder> or net:<funder> "
                              f"(funders: {', '.join(funder_ids)})")
    f = list(funder_ids).index(who)
    net = r.received[:, f] + r.guarantee_received[:, f] - r.invested[:, f]
    if what == "irr":
        return float(np.nanmedian(r.irr[:, f]))
    if what == "p_loss":
        return measures.probability(net < -measures.CENT)
    if what == "net":
        return float(net.mean())
    raise SimulationError(f"unknown output '{output}': use paid, irr:<funder>, p_loss:<funder> or net:<funder>")


def tornado(contract: Contract, sim: Simulation, seed: int, *, output: str = "paid",
            paths: int = ANALYSIS_PATHS) -> pd.DataFrame:
    """See :meth:`SimulationResult.tornado`."""
    plan = compile_plan(contract, sim)
    lay = layout(plan)
    funder_ids = [lay.parties[p] for p in lay.funders]
    base = _output(_pinned(contract, sim, seed, paths, NO_PINS), output, funder_ids)
    rows = []
    for name, label in _uncertain(sim):
        lo = _output(_pinned(contract, sim, seed, paths, Pins(quantiles={name: 0.1})), output, funder_ids)
        hi = _output(_pinned(contract, sim, seed, paths, Pins(quantiles={name: 0.9})), output, funder_ids)
        rows.append({"parameter": label, "low": "10th percentile", "high": "90th percentile",
                     "output_low": lo, "output_high": hi, "base": base, "swing": abs(hi - lo)})
    risk = float(sim.appropriation_risk)
    if risk > 0:
        lo = _output(_pinned(contract, sim, seed, paths, Pins(appropriation=0.0)), output, funder_ids)
        hi = _output(_pinned(contract, sim, seed, paths, Pins(appropriation=min(1.0, 2 * risk))), output, funder_ids)
        rows.append({"parameter": "appropriation risk", "low": "0", "high": f"{min(1.0, 2 * risk):g}",
                     "output_low": lo, "output_high": hi, "base": base, "swing": abs(hi - lo)})
    frame = pd.DataFrame(rows, columns=["parameter", "low", "high", "output_low", "output_high", "base", "swing"])
    frame = frame.sort_values("swing", ascending=False, kind="stable").reset_index(drop=True)
    frame.attrs["output"] = output
    return frame


# ------------------------------------------------------------------------------ API ---


def _assumptions(contract: Contract, simulation: Simulation | Scenario | None) -> Simulation:
    if isinstance(simulation, Scenario):
        if simulation.contract is not None and simulation.contract != contract.id:
            raise SimulationError(f"scenario '{simulation.name}' is for contract '{simulation.contract}', not "
                                  f"'{contract.id}'")
        return simulation.simulation
    if simulation is not None:
        return simulation
    if contract.simulation is None:
        raise SimulationError(
            f"contract '{contract.id}' has no simulation section; add one or pass simulation= (e.g. a scenario "
            "file read by sib_engine.loader.load_scenario)"
        )
    return contract.simulation


def simulate(
    contract: Contract,
    paths: int | None = None,
    seed: int | None = None,
    *,
    simulation: Simulation | Scenario | None = None,
    chunk_size: int = DEFAULT_CHUNK,
    workers: int | None = None,
    scheduler: str | None = None,
    progress: ProgressFn | None = None,
    threads: int | None = None,
    analysis: bool = True,
) -> SimulationResult:
    """Simulate ``paths`` worlds of ``contract`` with ``seed`` (defaults: the simulation
    section's ``paths`` and ``seed``).

    ``simulation``: assumptions to use instead of the contract's own section (a
    :class:`~sib_engine.contract.Simulation` or a scenario file's
    :class:`~sib_engine.contract.Scenario`).  ``chunk_size``: worlds per chunk (rounded up
    to a whole number of blocks of 4,096); it bounds memory and never changes results.
    ``workers``: run on a Dask LocalCluster of that many processes; ``scheduler``: the
    address of an existing Dask cluster; otherwise locally on ``threads`` threads (default
    1; numpy releases the GIL in its array operations, and the evaluator's hot path makes
    no large BLAS calls, whose own thread pool would serialise concurrent callers, so
    ``threads=os.cpu_count()`` uses every core: the benchmark measures it).  ``progress(done, total)`` is called after
    each chunk.  ``analysis``: also
    compute the noise-free payments (risk transfer), the probabilities at pinned effects
    and the payment curve (a few thousand more worlds each).

    >>> from sib_engine.loader import load_contract
    >>> r = simulate(load_contract("benchmarks/reference_deal.yaml"), 4096, 1, analysis=False)
    >>> r.paths, r.seed, r.funders[0].id
    (4096, 1, 'senior_bank')
    """
    sim = _assumptions(contract, simulation)
    n = int(paths if paths is not None else sim.paths)
    s = int(seed if seed is not None else sim.seed)
    if n < 1:
        raise SimulationError("simulate at least one path")
    if workers is not None and workers < 1:
        raise SimulationError("workers must be at least 1")
    plan = compile_plan(contract, sim)
    started = time.perf_counter()
    data = _execute(contract, sim, n, s, truth=analysis, chunk_size=chunk_size, workers=workers,
                    scheduler=scheduler, progress=progress, threads=threads)
    p0 = p_target = None
    targets: tuple[float, ...] = ()
    curve = None
    if analysis:
        k = min(n, ANALYSIS_PATHS)
        zero = _pinned(contract, sim, s, k, Pins(effects={i: 0.0 for i in range(len(sim.effects))}))
        p0 = measures.probability(zero.owed > measures.CENT)
        targets = default_targets(contract, sim)
        at = _pinned(contract, sim, s, k, Pins(effects=dict(enumerate(targets))))
        p_target = measures.probability(at.owed <= measures.CENT)
        curve = payment_curve(contract, sim, s, paths=min(n, ANALYSIS_PATHS // 2), points=11)
    elapsed = time.perf_counter() - started
    lay = layout(plan)
    roles = {p.id: p for p in contract.parties}

    def party(pid: str, role: str | None = None) -> Party:
        p = roles.get(pid)
        return Party(pid, p.name if p else pid, role or (p.role if p else "funder"))

    vfm = contract.value_for_money
    ffs = None
    if vfm is not None and vfm.fee_for_service_cost is not None:
        ffs = float(vfm.fee_for_service_cost)
    elif contract.capital is not None and contract.capital.service_budget is not None:
        ffs = float(contract.capital.service_budget)
    return SimulationResult(
        contract_id=contract.id, title=contract.title, currency=contract.currency, paths=n, seed=s,
        engine_version=_engine_version(), assumptions=sim.model_dump(mode="json"),
        payers=plan.payer_ids, triggers=plan.trigger_ids,
        funders=tuple(party(lay.parties[p]) for p in lay.funders),
        guarantors=tuple(party(lay.parties[p], "guarantor") for p in lay.guarantors),
        effects=tuple(a.metric for a in sim.effects), data=data, fee_for_service=ffs,
        p_pay_if_no_effect=p0, p_no_pay_at_target=p_target, targets=targets, curve=curve, elapsed=elapsed,
        workers=("scheduler " + scheduler) if scheduler else (f"{workers} Dask workers" if workers else "local"),
        _contract=contract, _simulation=sim,
    )


def compare_scenarios(
    contract: Contract, scenarios: Mapping[str, Simulation | Scenario], paths: int = 10_000, seed: int = 0,
    **options: Any,
) -> pd.DataFrame:
    """The summary of each scenario side by side (rows: measures; columns: scenarios),
    all with the same seed (common random numbers)."""
    frames = {}
    for name, sc in scenarios.items():
        r = simulate(contract, paths, seed, simulation=sc, **options)
        frames[name] = r.summary().set_index("measure")["value"]
    return pd.DataFrame(frames)


# ------------------------------------------------------------------------ portfolio ---


@dataclass(frozen=True, eq=False)
class PortfolioResult:
    """Many deals simulated together: each deal's worlds share an economic shock.

    ``deals`` are the per-deal results (same paths and seed); ``shock`` the loading of
    each deal's effects on the shared shock (0: independent deals, 1: one common fate).
    """

    deals: tuple[SimulationResult, ...]
    paths: int
    seed: int
    shock: float
    engine_version: str

    def payments_by_payer(self) -> pd.DataFrame:
        """Per world, each payer's payments over all deals (payers are matched by party id)."""
        cols: dict[str, np.ndarray] = {}
        for r in self.deals:
            for j, p in enumerate(r.payers):
                cols[p] = cols.get(p, np.zeros(self.paths)) + r.data.paid_by_payer[:, j]
        return pd.DataFrame(cols)

    def concentration(self) -> pd.DataFrame:
        """Per payer: expected payments, share of the portfolio's expected payments, its 95th
        percentile, and the Herfindahl-Hirschman index of the shares (attrs ``hhi``)."""
        by = self.payments_by_payer()
        total = float(by.to_numpy().sum(axis=1).mean()) if len(by.columns) else 0.0
        rows = []
        for p in by.columns:
            mean = float(by[p].mean())
            rows.append({"payer": p, "expected": mean, "share": mean / total if total else math.nan,
                         "p95": float(np.quantile(by[p], 0.95)),
                         "deals": sum(1 for r in self.deals if p in r.payers)})
        frame = pd.DataFrame(rows).sort_values("expected", ascending=False).reset_index(drop=True)
        frame.attrs["hhi"] = float((frame["share"] ** 2).sum()) if len(frame) else math.nan
        return frame

    def investor_losses(self) -> np.ndarray:
        """Per world, the capital all funders of all deals did not get back."""
        out = np.zeros(self.paths)
        for r in self.deals:
            out += r.investor_loss()
        return out

    def summary(self) -> pd.DataFrame:
        total = sum((r.data.paid for r in self.deals), np.zeros(self.paths))
        loss = self.investor_losses()
        failing = np.stack([r.investor_loss() > measures.CENT for r in self.deals], axis=1)
        pays = np.stack([r.data.paid for r in self.deals], axis=1)
        corr = np.atleast_2d(np.asarray(np.corrcoef(pays, rowvar=False))) if len(self.deals) > 1 else np.ones((1, 1))
        off = corr[~np.eye(len(self.deals), dtype=bool)] if len(self.deals) > 1 else np.array([math.nan])
        q = measures.quantiles(total)
        rows = [
            ("deals", float(len(self.deals))), ("shared shock loading", self.shock),
            ("payments: mean", float(total.mean())), ("payments: 5th percentile", q["p5"]),
            ("payments: 95th percentile", q["p95"]),
            ("investor loss: mean", float(loss.mean())), ("investor loss: VaR 5%", measures.value_at_risk(-loss)),
            ("investor loss: expected shortfall 5%", measures.expected_shortfall(-loss)),
            ("P(some deal loses investors money)", measures.probability(np.asarray(failing.any(axis=1)))),
            ("P(every deal loses investors money)", measures.probability(np.asarray(failing.all(axis=1)))),
            ("mean correlation of deal payments", float(np.nanmean(off))),
            ("payer concentration (HHI)", float(self.concentration().attrs["hhi"])),
        ]
        return pd.DataFrame(rows, columns=["measure", "value"])

    def __repr__(self) -> str:
        return (f"<PortfolioResult {len(self.deals)} deals, {self.paths:,} paths, seed {self.seed}, "
                f"shock loading {self.shock}>")

    def _repr_html_(self) -> str:
        return (f"<p><b>{html.escape(repr(self))}</b></p>" + str(self.summary().to_html(index=False))
                + str(self.concentration().to_html(index=False)))


def simulate_portfolio(
    contracts: Sequence[Contract], paths: int = 10_000, seed: int = 0, *, shock: float = 0.3,
    simulations: Sequence[Simulation | None] | None = None, chunk_size: int = DEFAULT_CHUNK,
) -> PortfolioResult:
    """Simulate many deals in the same worlds: each deal's effects load ``shock`` on one
    shared standard-normal economic shock per world (their Gaussian copula's normals are
    ``sqrt(shock) x shared + sqrt(1 - shock) x own``), so that deals succeed and fail
    together; payers are matched across deals by party id (payer concentration)."""
    if not 0.0 <= shock <= 1.0:
        raise SimulationError(f"shock loading {shock} is not between 0 and 1")
    sims = list(simulations) if simulations is not None else [None] * len(contracts)
    results = []
    for d, (c, sc) in enumerate(zip(contracts, sims)):
        sim = _assumptions(c, sc)
        plan = compile_plan(c, sim)
        runner = Runner(plan)
        parts = []
        for lo, hi in _chunks(paths, chunk_size):
            parts.append(runner.run(seed, lo, hi, shock_seed=seed, loading=shock, deal=d + 1))
        data = parts[0] if len(parts) == 1 else concat(parts)
        lay = layout(plan)
        roles = {p.id: p for p in c.parties}
        results.append(SimulationResult(
            contract_id=c.id, title=c.title, currency=c.currency, paths=paths, seed=seed,
            engine_version=_engine_version(), assumptions=sim.model_dump(mode="json"), payers=plan.payer_ids,
            triggers=plan.trigger_ids,
            funders=tuple(Party(lay.parties[p], roles[lay.parties[p]].name if lay.parties[p] in roles else lay.parties[p],
                                "funder") for p in lay.funders),
            guarantors=tuple(Party(lay.parties[p], lay.parties[p], "guarantor") for p in lay.guarantors),
            effects=tuple(a.metric for a in sim.effects), data=data, fee_for_service=None,
            _contract=c, _simulation=sim,
        ))
    return PortfolioResult(tuple(results), paths, seed, shock, _engine_version())
