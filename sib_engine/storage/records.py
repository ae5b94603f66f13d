"""What the store hands out: frozen records, apart from the database rows."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sib_engine.money import format_money


@dataclass(frozen=True)
class ContractRecord:
    id: int
    content_hash: str
    deal_id: str
    version: int
    title: str
    currency: str
    source_name: str
    recorded_at: datetime


@dataclass(frozen=True)
class SubmissionRecord:
    id: int
    contract_id: int
    deal_id: str
    content_hash: str
    key_id: str
    source: str
    rows: int
    accepted: int
    quarantined: int
    flagged: int
    hold: bool
    hold_reasons: tuple[str, ...]
    reasons: dict[str, int]
    columns: tuple[str, ...]
    accepted_hash: str
    restates_id: int | None
    recorded_at: datetime
    validation_run_id: int | None = None


@dataclass(frozen=True)
class RunRecord:
    """A recorded determination run (a ledger entry)."""

    id: int
    uid: str
    seq: int
    entry_hash: str
    prev_hash: str
    deal_id: str
    kind: str
    contract_id: int
    submission_id: int
    previous_run_id: int | None
    as_of: date | None
    contract_hash: str
    data_hash: str
    accepted_hash: str
    engine_version: str
    currency: str
    n_determinations: int
    n_lines: int
    net: Decimal
    recorded_at: datetime

    def __repr__(self) -> str:
        return (f"<Run {self.uid[:12]} {self.deal_id} #{self.seq} {self.kind}: {self.n_lines} line(s), "
                f"net {format_money(self.net, self.currency)}>")


@dataclass(frozen=True, eq=False)
class Recorded:
    """The outcome of recording a determination: the run, and whether it is new.

    ``created`` is False when the latest run of the deal already had the same contract,
    data and as-of date (nothing was recorded again).  ``evaluation`` is the cumulative
    evaluation (every line recorded so far for the deal), ``lines`` the lines this run
    added (empty when nothing was recorded)."""

    run: RunRecord
    created: bool
    evaluation: Any
    lines: tuple[Any, ...]
    previous: RunRecord | None = None


@dataclass(frozen=True)
class SimulationRecord:
    id: int
    uid: str
    seq: int
    entry_hash: str
    deal_id: str
    seed: int
    worlds: int | None
    contract_hash: str
    engine_version: str
    assumptions: dict[str, Any]
    summary: dict[str, Any]
    recorded_at: datetime


@dataclass(frozen=True)
class LineSummary:
    payments: int = 0
    true_ups: int = 0
    clawbacks: int = 0
    paid: Decimal = Decimal(0)
    trued_up: Decimal = Decimal(0)
    clawed_back: Decimal = Decimal(0)

    @property
    def net(self) -> Decimal:
        return self.paid + self.trued_up + self.clawed_back


@dataclass(frozen=True)
class HistoryItem:
    """One entry of a deal's history: a determination run or a simulation."""

    seq: int
    kind: str
    """``determination``, ``restatement``, ``amendment`` or ``simulation``."""
    entry_hash: str
    recorded_at: datetime
    run: RunRecord | None = None
    submission: SubmissionRecord | None = None
    determinations: tuple[str, ...] = ()
    """Determinations first made by this run."""
    redetermined: tuple[str, ...] = ()
    """Determinations made before and made again (their changes are true-ups or clawbacks)."""
    lines: LineSummary = field(default_factory=LineSummary)
    simulation: SimulationRecord | None = None


@dataclass(frozen=True)
class History:
    deal_id: str
    items: tuple[HistoryItem, ...]
    head: tuple[int, str]
    """The ledger head (last sequence number and hash) when read."""

    def format(self) -> str:
        """The history for a person to read: one block per run or simulation, with hashes."""
        out = [f"history of {self.deal_id}: {len(self.items)} entr{'y' if len(self.items) == 1 else 'ies'} "
               f"(ledger head #{self.head[0]} {self.head[1]})"]
        for it in self.items:
            when = it.recorded_at.strftime("%Y-%m-%d %H:%M:%S UTC")
            if it.simulation is not None:
                sim = it.simulation
                out.append(f"#{it.seq} simulation {sim.uid}  {when}")
                worlds = f"{sim.worlds:,}" if sim.worlds is not None else "?"
                out.append(f"    seed {sim.seed}, {worlds} worlds, sib-engine {sim.engine_version}"
                           + _assumptions_text(sim.assumptions))
                out += ["    " + line for line in _simulation_figures(sim.summary)]
                out.append(f"    contract sha256 {sim.contract_hash}")
                out.append(f"    entry    sha256 {it.entry_hash}")
                continue
            run, sub = it.run, it.submission
            assert run is not None and sub is not None
            cur = run.currency
            as_of = f"as of {run.as_of}" if run.as_of else "all determinations"
            out.append(f"#{it.seq} {it.kind} {run.uid}  {when}  {as_of}, sib-engine {run.engine_version}")
            if it.determinations:
                out.append(f"    determinations made: {', '.join(it.determinations)}")
            if it.redetermined:
                out.append(f"    made again: {', '.join(it.redetermined)}")
            ls = it.lines
            out.append(f"    {ls.payments} payment(s) {format_money(ls.paid, cur)}, {ls.true_ups} true-up(s) "
                       f"{format_money(ls.trued_up, cur)}, {ls.clawbacks} clawback(s) "
                       f"{format_money(ls.clawed_back, cur)}; net {format_money(ls.net, cur)}")
            out.append(f"    data {sub.source}: {sub.rows:,} rows, {sub.accepted:,} accepted, "
                       f"{sub.quarantined:,} quarantined" + (" (restates an earlier submission)"
                                                            if sub.restates_id is not None else ""))
            out.append(f"    contract sha256 {run.contract_hash}")
            out.append(f"    data     sha256 {run.data_hash}")
            out.append(f"    rows     sha256 {run.accepted_hash}")
            out.append(f"    entry    sha256 {it.entry_hash}")
        return "\n".join(out)

    def __repr__(self) -> str:
        return f"<History {self.deal_id}: {len(self.items)} entries, ledger head #{self.head[0]}>"

    def _repr_html_(self) -> str:
        import html

        return f"<pre>{html.escape(self.format())}</pre>"

    def to_frame(self) -> Any:
        """One row per entry: seq, kind, when, as-of date, lines, net, hashes."""
        import pandas as pd

        rows = []
        for e in self.to_json()["entries"]:
            rows.append({k: e.get(k) for k in ("seq", "kind", "recorded_at", "run", "simulation", "as_of", "lines",
                                                "payments", "true_ups", "clawbacks", "net", "contract_hash",
                                                "data_hash", "entry_hash")})
        return pd.DataFrame(rows)

    def to_json(self) -> dict[str, Any]:
        items = []
        for it in self.items:
            d: dict[str, Any] = {"seq": it.seq, "kind": it.kind, "entry_hash": it.entry_hash,
                                 "recorded_at": it.recorded_at.isoformat()}
            if it.run is not None:
                r = it.run
                d.update({
                    "run": r.uid, "as_of": r.as_of.isoformat() if r.as_of else None,
                    "engine_version": r.engine_version, "contract_hash": r.contract_hash, "data_hash": r.data_hash,
                    "accepted_hash": r.accepted_hash, "prev_hash": r.prev_hash, "currency": r.currency,
                    "determinations_made": list(it.determinations), "made_again": list(it.redetermined),
                    "payments": str(it.lines.paid), "true_ups": str(it.lines.trued_up),
                    "clawbacks": str(it.lines.clawed_back), "net": str(it.lines.net), "lines": r.n_lines,
                })
            if it.submission is not None:
                s = it.submission
                d["data"] = {"source": s.source, "rows": s.rows, "accepted": s.accepted,
                             "quarantined": s.quarantined, "reasons": s.reasons,
                             "restates_submission": s.restates_id}
            if it.simulation is not None:
                m = it.simulation
                d.update({"simulation": m.uid, "seed": m.seed, "worlds": m.worlds, "contract_hash": m.contract_hash,
                          "engine_version": m.engine_version, "assumptions": m.assumptions, "summary": m.summary})
            items.append(d)
        return {"deal": self.deal_id, "ledger_head": {"seq": self.head[0], "hash": self.head[1]}, "entries": items}


def _assumptions_text(assumptions: dict[str, Any]) -> str:
    """Where a simulation's assumptions came from (as ``sib simulate`` records them)."""
    scenario = assumptions.get("scenario")
    if isinstance(scenario, dict):
        return f"; assumptions: scenario '{scenario.get('name')}' (sha256 {str(scenario.get('sha256'))[:16]}...)"
    if assumptions.get("source") == "contract":
        return "; assumptions: the contract's simulation section"
    return ""


def _figure(value: Any, kind: str, currency: str = "") -> str:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return "n/a" if value is None else str(value)
    if kind == "%":
        return f"{value:.1%}"
    if kind == "money":
        return f"{currency} {value:,.2f}".strip()
    if kind == "x":
        return f"{value:.2f}x"
    return f"{value:.4g}"


def _simulation_figures(summary: dict[str, Any]) -> list[str]:
    """The headline figures of a simulation's summary: those ``sib simulate`` records (the
    figures of ``--json``), else the first few of any other summary."""
    total = summary.get("total_payment")
    if not isinstance(total, dict):
        shown = ", ".join(f"{k} {v}" for k, v in list(summary.items())[:6])
        return [f"summary: {shown}"] if shown else []
    cur = str(summary.get("currency") or "")
    out = [f"payments mean {_figure(total.get('mean'), 'money', cur)} (5th percentile "
           f"{_figure(total.get('p5'), 'money')}, median {_figure(total.get('p50'), 'money')}, 95th "
           f"{_figure(total.get('p95'), 'money')}); risk transfer {_figure(summary.get('risk_transfer'), '%')}; "
           f"P(pay | no effect) {_figure(summary.get('p_pay_if_no_effect'), '%')}; P(no pay | target) "
           f"{_figure(summary.get('p_no_pay_at_target'), '%')}"]
    funders = summary.get("funders")
    for fid, f in (funders.items() if isinstance(funders, dict) else ()):
        if not isinstance(f, dict):
            continue
        irr: dict[str, Any] = f["irr"] if isinstance(f.get("irr"), dict) else {}
        out.append(f"{fid}: P(loss) {_figure(f.get('p_loss'), '%')}, VaR 5% {_figure(f.get('var_5'), 'money', cur)}, "
                   f"expected shortfall 5% {_figure(f.get('es_5'), 'money', cur)}, IRR median "
                   f"{_figure(irr.get('p50'), '%')}, multiple {_figure(f.get('multiple_mean'), 'x')}")
    guarantors = summary.get("guarantors")
    for gid, g in (guarantors.items() if isinstance(guarantors, dict) else ()):
        if isinstance(g, dict):
            out.append(f"{gid}: P(guarantee called) {_figure(g.get('p_called'), '%')}, expected cost "
                       f"{_figure(g.get('expected_cost'), 'money', cur)}")
    return out


@dataclass(frozen=True)
class VerifyReport:
    """What ``verify`` checked and every mismatch found (``ok`` when there is none)."""

    problems: tuple[str, ...]
    entries: int
    runs: int
    submissions: int
    contracts: int
    simulations: int
    head: tuple[int, str]

    @property
    def ok(self) -> bool:
        return not self.problems

    def __repr__(self) -> str:
        state = "ok" if self.ok else f"{len(self.problems)} problem(s)"
        return f"<VerifyReport {state}: {self.entries} entries, {self.runs} runs recomputed>"

    def format(self) -> str:
        lines = [
            f"checked {self.entries} ledger entr{'y' if self.entries == 1 else 'ies'} (head #{self.head[0]} "
            f"{self.head[1]}), {self.runs} determination run(s) recomputed, {self.submissions} submission(s), "
            f"{self.contracts} contract(s), {self.simulations} simulation(s)"
        ]
        if self.ok:
            lines.append("ok: every hash matches and every determination recomputes exactly")
        else:
            lines.append(f"MISMATCH: {len(self.problems)} problem(s)")
            lines += ["  " + p for p in self.problems]
        return "\n".join(lines)
