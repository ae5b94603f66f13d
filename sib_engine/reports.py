"""Statements and reports (layer 3: edges -- writes files, draws figures).

Two statements, each one self-contained HTML page (CSS inline, figures embedded as base64
PNG, no scripts, fonts or anything fetched from a network) and one Excel workbook (one
sheet per table):

- the **municipality statement** of each payer: what it owes this period and why (the
  payment lines, with trigger, determination and clause, and the evaluation's own
  explanation when one is given), what it paid to date, payments over time, and the
  government's value for money;
- the **investor statement**: each funder's dated cash flows, IRR, multiple, NPV, payback,
  loss and guarantee position, the cumulative cash position per funder, and the money-flow
  statement of the whole deal with its flow diagram (Sankey-style, drawn here with
  matplotlib).

:func:`write_report` computes everything from a contract and a payment stream and writes
the files; :func:`build_report` computes without writing.
"""

from __future__ import annotations

import base64
import html
import io
import re
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence

from sib_engine.contract import Contract
from sib_engine.money import format_money
from sib_engine.risk import SimulationResult, simulation_json
from sib_engine.returns import ReturnsResult, funder_returns
from sib_engine.value_for_money import ValueForMoneyResult, value_for_money
from sib_engine.waterfall import (
    SPV,
    OutcomePayment,
    WaterfallResult,
    coupon_rates_from_evaluation,
    payments_from_evaluation,
    payments_from_frame,
    run_waterfall,
)

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd
    from matplotlib.figure import Figure

ZERO = Decimal(0)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("sib-engine")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "unknown"

# Colours of the flow kinds in the figures (colour-blind safe, Okabe-Ito).
KIND_GROUPS: dict[str, tuple[str, str]] = {
    "outcome_payment": ("outcome payments", "#0072B2"),
    "drawdown": ("capital drawn", "#E69F00"),
    "service_funding": ("service funding", "#009E73"),
    "recycling": ("service funding", "#009E73"),
    "costs": ("service funding", "#009E73"),
    "interest": ("returns to funders", "#CC79A7"),
    "principal": ("capital repaid", "#D55E00"),
    "fee": ("capital repaid", "#D55E00"),
    "bonus": ("bonus and residual", "#56B4E9"),
    "residual": ("bonus and residual", "#56B4E9"),
    "guarantee": ("guarantee", "#999999"),
    "guarantee_recovery": ("guarantee", "#999999"),
    "clawback": ("clawbacks", "#000000"),
}


# ------------------------------------------------------------------ statements ---


@dataclass(frozen=True)
class MunicipalityStatement:
    """What one payer owes this period, and why."""

    contract_id: str
    title: str
    currency: str
    payer: str
    payer_name: str
    current: str
    """The determination (or payment date) this statement is for."""
    due_date: date | None
    lines: tuple[OutcomePayment, ...]
    """This period's payment lines of the payer."""
    history: tuple[OutcomePayment, ...]
    """Every payment line of the payer up to and including this period."""
    explanation: str | None
    value_for_money: ValueForMoneyResult | None
    adjustments: tuple[str, ...] = ()

    @property
    def total_this_period(self) -> Decimal:
        return sum((p.amount for p in self.lines), ZERO)

    @property
    def total_to_date(self) -> Decimal:
        return sum((p.amount for p in self.history), ZERO)

    def lines_frame(self, lines: Iterable[OutcomePayment] | None = None) -> "pd.DataFrame":
        import pandas as pd

        rows = [
            {"payment_date": p.payment_date, "determination": p.determination, "period": p.period,
             "payer": p.payer, "trigger": p.trigger, "clause": p.clause, "description": p.description,
             "amount": p.amount}
            for p in (self.lines if lines is None else lines)
        ]
        return pd.DataFrame(rows, columns=["payment_date", "determination", "period", "payer", "trigger",
                                           "clause", "description", "amount"])

    to_frame = lines_frame

    def summary(self) -> "pd.DataFrame":
        import pandas as pd

        return pd.DataFrame(
            [{"payer": self.payer, "current": self.current, "due_date": self.due_date,
              "this_period": self.total_this_period, "to_date": self.total_to_date}]
        )

    def explain(self) -> str:
        m = self._m
        out = [f"{self.payer_name} owes {m(self.total_this_period)} for {self.current}"
               + (f", due {self.due_date}" if self.due_date else "") + ":"]
        for p in self.lines:
            out.append(f"  {p.trigger or 'payment'}: {m(p.amount)}" + (f" [{p.clause}]" if p.clause else ""))
        out.append(f"Paid to date (including this period): {m(self.total_to_date)}")
        out += [f"Note: {a}" for a in self.adjustments]
        return "\n".join(out)

    def _m(self, amount: Decimal) -> str:
        return format_money(amount, self.currency)

    def __repr__(self) -> str:
        return (f"<MunicipalityStatement {self.contract_id} {self.payer} {self.current}: "
                f"{self._m(self.total_this_period)}>")

    def _repr_html_(self) -> str:
        # a fragment for notebooks (the full page's CSS would restyle the notebook)
        head = html.escape(self.explain().splitlines()[0])
        table: str = self.lines_frame().to_html(index=False)
        return f"<p><strong>{head}</strong></p>{table}"


@dataclass(frozen=True)
class InvestorStatement:
    """Every funder's cash flows, returns and guarantee position, and the deal's money flows."""

    contract_id: str
    title: str
    currency: str
    waterfall: WaterfallResult
    returns: ReturnsResult

    def summary(self) -> "pd.DataFrame":
        return self.returns.to_frame()

    def to_frame(self) -> "pd.DataFrame":
        return self.waterfall.to_frame()

    def explain(self) -> str:
        return self.returns.explain() + "\n" + self.waterfall.explain()

    def __repr__(self) -> str:
        return f"<InvestorStatement {self.contract_id}: {len(self.returns.funders)} parties, {len(self.waterfall.flows)} flows>"

    def _repr_html_(self) -> str:
        # a fragment for notebooks (the full page's CSS would restyle the notebook)
        return self.returns._repr_html_() + self.waterfall._repr_html_()


@dataclass(frozen=True)
class Report:
    """Everything a report shows, computed (nothing written yet)."""

    contract: Contract
    waterfall: WaterfallResult
    returns: ReturnsResult
    value_for_money: ValueForMoneyResult
    municipality: tuple[MunicipalityStatement, ...]
    investor: InvestorStatement


@dataclass(frozen=True)
class ReportPaths:
    """Where :func:`write_report` put each file."""

    directory: Path
    municipality_html: tuple[Path, ...]
    municipality_xlsx: tuple[Path, ...]
    investor_html: Path
    investor_xlsx: Path
    flow_diagram: Path

    def all(self) -> tuple[Path, ...]:
        return (*self.municipality_html, *self.municipality_xlsx, self.investor_html, self.investor_xlsx,
                self.flow_diagram)


def municipality_statements(
    contract: Contract,
    waterfall: WaterfallResult,
    *,
    as_of: date | None = None,
    explanation: str | None = None,
    vfm: ValueForMoneyResult | None = None,
) -> tuple[MunicipalityStatement, ...]:
    """One statement per payer: its lines of the latest determination (or payment date)
    on or before ``as_of`` (default: the last), and its history up to then."""
    lines = [p for p in waterfall.payments if as_of is None or p.payment_date <= as_of]
    payers = [p.party for p in contract.payers]
    for p in lines:
        if p.payer not in payers:
            payers.append(p.payer)
    latest = max(lines, key=lambda p: p.payment_date) if lines else None
    if latest is None:
        current, due = "no payments yet", None
        in_current = []
    elif latest.determination:
        current, due = latest.determination, latest.payment_date
        in_current = [p for p in lines if p.determination == latest.determination]
    else:
        current, due = f"payments of {latest.payment_date}", latest.payment_date
        in_current = [p for p in lines if p.payment_date == latest.payment_date and not p.determination]
    names = {p.id: p.name for p in contract.parties}
    adjustments = tuple(
        f"{a.payment.trigger} line of {a.payment.payment_date}: {format_money(a.original_amount, contract.currency)}"
        f" becomes {format_money(a.amount, contract.currency)} (share {a.from_share} -> {a.to_share} once the "
        f"funders received {a.after_return:.1%} a year)"
        for a in waterfall.adjustments
    )
    out = []
    for payer in payers:
        mine = tuple(p for p in in_current if p.payer == payer)
        history = tuple(p for p in lines if p.payer == payer)
        if not history and latest is not None:
            continue
        out.append(
            MunicipalityStatement(
                contract_id=contract.id, title=contract.title, currency=contract.currency, payer=payer,
                payer_name=names.get(payer, payer), current=current, due_date=due, lines=mine, history=history,
                explanation=explanation, value_for_money=vfm,
                adjustments=tuple(a for a, adj in zip(adjustments, waterfall.adjustments) if adj.payment.payer == payer),
            )
        )
    return tuple(out)


def build_report(
    contract: Contract,
    payments: Iterable[OutcomePayment] | Any,
    *,
    evaluation: Any = None,
    outcomes: Mapping[str, Decimal] | None = None,
    as_of: date | None = None,
    discount_rates: Sequence[Decimal] | None = None,
    coupon_rates: Mapping[str, Decimal] | None = None,
) -> Report:
    """Compute every statement of a report.  ``payments`` is a payment stream, a table of
    payment lines (``Evaluation.to_frame()``'s shape), or an ``Evaluation`` itself: then
    its ``explain()`` text goes into the municipality statement, the return rates its
    outcome bands set become coupon rates, and its share-of-savings lines are taken as
    determined (no share step is applied again if it was given a funders' return)."""
    if hasattr(payments, "columns"):  # a table of payment lines
        stream: tuple[OutcomePayment, ...] = payments_from_frame(payments)
    elif hasattr(payments, "to_frame") and not isinstance(payments, (list, tuple)):
        evaluation = evaluation if evaluation is not None else payments
        stream = payments_from_evaluation(payments)
    else:
        stream = tuple(payments)
    explanation = None
    explain = getattr(evaluation, "explain", None)
    if callable(explain):
        explanation = str(explain())
    share_steps = True
    if evaluation is not None:
        if coupon_rates is None:
            coupon_rates = coupon_rates_from_evaluation(evaluation) or None
        # lines determined with a funders' return already carry the share in force
        share_steps = getattr(evaluation, "funders_return", None) is None
    wf = run_waterfall(contract, stream, coupon_rates=coupon_rates, apply_share_steps=share_steps)
    if discount_rates is None:
        rate = contract.value_for_money.discount_rate if contract.value_for_money else Decimal("0.035")
        discount_rates = (Decimal(0), rate)
    rets = funder_returns(wf, discount_rates)
    vfm = value_for_money(contract, wf, outcomes)
    muni = municipality_statements(contract, wf, as_of=as_of, explanation=explanation, vfm=vfm)
    inv = InvestorStatement(contract.id, contract.title, contract.currency, wf, rets)
    return Report(contract, wf, rets, vfm, muni, inv)


# ---------------------------------------------------------------------- figures ---


def _figure(width: float, height: float) -> "Figure":
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    return fig


def _png(fig: "Figure") -> str:
    """The figure as a ``data:image/png;base64,...`` URI."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _money_axis(ax: Any, currency: str) -> None:
    from matplotlib.ticker import FuncFormatter

    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:,.0f}"))
    ax.set_ylabel(currency)
    ax.grid(axis="y", color="#dddddd", linewidth=0.6)
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)


def payments_figure(lines: Sequence[OutcomePayment], currency: str, labels: Mapping[str, str]) -> "Figure":
    """Outcome payments by payment date, stacked by payer."""
    fig = _figure(8, 3.4)
    ax = fig.add_subplot()
    dates = sorted({p.payment_date for p in lines})
    payers = list(dict.fromkeys(p.payer for p in lines))
    palette = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00"]
    xs = list(range(len(dates)))
    bottom = [0.0] * len(dates)
    for i, payer in enumerate(payers):
        heights = [float(sum((p.amount for p in lines if p.payer == payer and p.payment_date == d), ZERO))
                   for d in dates]
        ax.bar(xs, heights, bottom=bottom, color=palette[i % len(palette)], label=labels.get(payer, payer), width=0.6)
        bottom = [b + h for b, h in zip(bottom, heights)]
    ax.set_xticks(xs, [d.isoformat() for d in dates], rotation=30, ha="right", fontsize=8)
    _money_axis(ax, currency)
    ax.set_title("Outcome payments by payment date", fontsize=11, loc="left")
    if payers:
        ax.legend(frameon=False, fontsize=8)
    return fig


def positions_figure(returns: ReturnsResult) -> "Figure":
    """Cumulative cash position of each funder over time (negative: money still out)."""
    import numpy as np

    fig = _figure(8, 3.6)
    ax = fig.add_subplot()
    palette = ["#E69F00", "#0072B2", "#009E73", "#CC79A7", "#D55E00", "#56B4E9", "#999999"]
    i = 0
    for f in returns.funders:
        if not f.flows:
            continue
        days: list[date] = []
        ys: list[float] = []
        total = ZERO
        for d, a in f.flows:
            total += a
            days.append(d)
            ys.append(float(total))
        xs = np.array(days, dtype="datetime64[D]")
        ax.step(xs, ys, where="post", color=palette[i % len(palette)], label=f"{f.name}", linewidth=1.8)
        ax.plot(xs, ys, "o", color=palette[i % len(palette)], markersize=3)
        i += 1
    ax.axhline(0, color="#333333", linewidth=0.8)
    _money_axis(ax, returns.currency)
    ax.set_title("Cumulative cash position per funder (received - invested)", fontsize=11, loc="left")
    ax.legend(frameon=False, fontsize=8)
    fig.autofmt_xdate()
    return fig


def flow_diagram(result: WaterfallResult) -> "Figure":
    """A Sankey-style diagram of every flow of the deal: sources on the left, the deal
    account (SPV) in the middle, recipients on the right; band widths are proportional to
    the amounts, colours show the kind of flow."""
    from matplotlib.patches import PathPatch, Rectangle
    from matplotlib.path import Path as MPath

    # aggregate: (source, target, group) -> amount
    into: dict[tuple[str, str], Decimal] = {}
    out: dict[tuple[str, str], Decimal] = {}
    direct: dict[tuple[str, str, str], Decimal] = {}
    for f in result.flows:
        group = KIND_GROUPS.get(f.kind, (f.kind, "#777777"))[0]
        if f.target == SPV:
            into[(f.source, group)] = into.get((f.source, group), ZERO) + f.amount
        elif f.source == SPV:
            out[(f.target, group)] = out.get((f.target, group), ZERO) + f.amount
        else:
            key = (f.source, f.target, group)
            direct[key] = direct.get(key, ZERO) + f.amount
    colours = {g: c for g, c in KIND_GROUPS.values()}
    left_nodes: list[str] = []
    right_nodes: list[str] = []
    for s, _g in into:
        if s not in left_nodes:
            left_nodes.append(s)
    for s, _t, _g in direct:
        if s not in left_nodes:
            left_nodes.append(s)
    for t, _g in out:
        if t not in right_nodes:
            right_nodes.append(t)
    for _s, t, _g in direct:
        if t not in right_nodes:
            right_nodes.append(t)
    left_total = {n: sum((a for (s, _g), a in into.items() if s == n), ZERO)
                  + sum((a for (s, _t, _g), a in direct.items() if s == n), ZERO) for n in left_nodes}
    right_total = {n: sum((a for (t, _g), a in out.items() if t == n), ZERO)
                   + sum((a for (_s, t, _g), a in direct.items() if t == n), ZERO) for n in right_nodes}
    spv_in = sum(into.values(), ZERO)
    spv_out = sum(out.values(), ZERO)
    grand = max(sum(left_total.values(), ZERO), sum(right_total.values(), ZERO), Decimal(1))
    fig = _figure(10, 6)
    ax = fig.add_subplot()
    ax.set_xlim(-0.02, 1.02)
    ax.set_ylim(0.0, 1.04)
    ax.axis("off")
    gap = 0.03
    usable = 0.9
    unit = usable / float(grand)

    def stack(nodes: list[str], totals: Mapping[str, Decimal]) -> dict[str, tuple[float, float]]:
        pos: dict[str, tuple[float, float]] = {}
        n = len(nodes)
        height = sum(float(totals[x]) * unit for x in nodes) + gap * max(0, n - 1)
        y = 0.5 + height / 2
        for node in nodes:
            h = float(totals[node]) * unit
            pos[node] = (y - h, y)
            y -= h + gap
        return pos

    xl, xm, xr, w = 0.16, 0.5, 0.84, 0.03
    lpos = stack(left_nodes, left_total)
    rpos = stack(right_nodes, right_total)
    spv_h = float(max(spv_in, spv_out)) * unit
    spv_pos = (0.5 - spv_h / 2, 0.5 + spv_h / 2)

    def band(x0: float, y0: tuple[float, float], x1: float, y1: tuple[float, float], colour: str) -> None:
        mid = (x0 + x1) / 2
        verts = [
            (x0, y0[1]), (mid, y0[1]), (mid, y1[1]), (x1, y1[1]),
            (x1, y1[0]), (mid, y1[0]), (mid, y0[0]), (x0, y0[0]), (x0, y0[1]),
        ]
        codes = [MPath.MOVETO, MPath.CURVE4, MPath.CURVE4, MPath.CURVE4,
                 MPath.LINETO, MPath.CURVE4, MPath.CURVE4, MPath.CURVE4, MPath.CLOSEPOLY]
        ax.add_patch(PathPatch(MPath(verts, codes), facecolor=colour, alpha=0.55, edgecolor="none"))

    # cursors: how much of each node's height is used, from the top
    lcur = {n: lpos[n][1] for n in left_nodes}
    rcur = {n: rpos[n][1] for n in right_nodes}
    spv_in_cur = spv_pos[1]
    spv_out_cur = spv_pos[1]
    into = dict(sorted(into.items(), key=lambda kv: left_nodes.index(kv[0][0])))
    out = dict(sorted(out.items(), key=lambda kv: right_nodes.index(kv[0][0])))
    for (s, g), a in into.items():
        h = float(a) * unit
        band(xl + w, (lcur[s] - h, lcur[s]), xm - w / 2, (spv_in_cur - h, spv_in_cur), colours.get(g, "#777777"))
        lcur[s] -= h
        spv_in_cur -= h
    for (t, g), a in out.items():
        h = float(a) * unit
        band(xm + w / 2, (spv_out_cur - h, spv_out_cur), xr, (rcur[t] - h, rcur[t]), colours.get(g, "#777777"))
        rcur[t] -= h
        spv_out_cur -= h
    for (s, t, g), a in direct.items():
        h = float(a) * unit
        band(xl + w, (lcur[s] - h, lcur[s]), xr, (rcur[t] - h, rcur[t]), colours.get(g, "#777777"))
        lcur[s] -= h
        rcur[t] -= h
    cur = result.currency
    for n in left_nodes:
        lo, hi = lpos[n]
        ax.add_patch(Rectangle((xl, lo), w, max(hi - lo, 0.002), color="#333333"))
        ax.text(xl - 0.01, (lo + hi) / 2, f"{result.label(n)}\n{format_money(left_total[n], cur)}",
                ha="right", va="center", fontsize=8)
    for n in right_nodes:
        lo, hi = rpos[n]
        ax.add_patch(Rectangle((xr, lo), w, max(hi - lo, 0.002), color="#333333"))
        ax.text(xr + w + 0.01, (lo + hi) / 2, f"{result.label(n)}\n{format_money(right_total[n], cur)}",
                ha="left", va="center", fontsize=8)
    if spv_in or spv_out:
        ax.add_patch(Rectangle((xm - w / 2, spv_pos[0]), w, spv_h, color="#333333"))
        ax.text(xm, spv_pos[1] + 0.015, f"Deal account (SPV)\nin {format_money(spv_in, cur)}",
                ha="center", va="bottom", fontsize=8)
    # legend of the groups present
    from matplotlib.patches import Patch

    present = list(dict.fromkeys([g for _s, g in into] + [g for _t, g in out] + [g for _s, _t, g in direct]))
    ax.legend(handles=[Patch(color=colours.get(g, "#777777"), alpha=0.55, label=g) for g in present],
              loc="upper center", ncol=min(4, max(1, len(present))), frameon=False, fontsize=8,
              bbox_to_anchor=(0.5, 0.0))
    ax.set_title("Money flows of the whole deal", fontsize=11, loc="left")
    return fig


# ---------------------------------------------------------------------- render ---


def _environment() -> Any:
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("sib_engine", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["pct"] = lambda v: "n/a" if v is None or v != v else f"{v:.2%}"
    return env


def _table(frame: "pd.DataFrame", currency: str, money: Iterable[str] = ()) -> dict[str, Any]:
    """A frame as a table for the templates: header and rows of strings; money columns
    formatted with thousands separators and right-aligned."""
    money_cols = set(money)
    rows: list[list[dict[str, Any]]] = []
    for rec in frame.to_dict("records"):
        row = []
        for col in frame.columns:
            v = rec[col]
            if v is None or (isinstance(v, float) and v != v):
                text, num = "", False
            elif col in money_cols and isinstance(v, Decimal):
                text, num = _number(v, currency), True
            elif isinstance(v, Decimal):
                text, num = f"{v:f}" if v == v.to_integral_value() or abs(v) >= 1 else f"{v}", True
            elif isinstance(v, float):
                text, num = f"{v:.4f}", True
            else:
                text, num = str(v), isinstance(v, int)
            row.append({"text": text, "num": num})
        rows.append(row)
    numeric = [bool(rows) and all(r[i]["num"] or not r[i]["text"] for r in rows) for i in range(len(frame.columns))]
    header = [{"text": str(c).replace("_", " "), "num": numeric[i]} for i, c in enumerate(frame.columns)]
    return {"header": header, "rows": rows}


def _vfm_table(vfm: ValueForMoneyResult) -> dict[str, Any]:
    """The value-for-money figures: money as money, units and levels as plain numbers."""
    frame = vfm.to_frame()
    rows = []
    for rec in frame.to_dict("records"):
        v = rec["value"]
        unit = str(rec["unit"])
        if v is None:
            text = "n/a"
        elif unit.startswith(vfm.currency):
            text = _number(v, vfm.currency)
        else:
            text = f"{v:,f}" if isinstance(v, Decimal) else str(v)
        rows.append([{"text": str(rec["measure"]), "num": False}, {"text": text, "num": True},
                     {"text": unit, "num": False}])
    header = [{"text": "measure", "num": False}, {"text": "value", "num": True}, {"text": "unit", "num": False}]
    return {"header": header, "rows": rows}


def _number(amount: Decimal, currency: str) -> str:
    """Money without the currency code: ``1,234.50``."""
    return format_money(amount, currency).split(" ", 1)[1]


def render_municipality(statement: MunicipalityStatement, *, figures: bool = True) -> str:
    """The municipality statement as one self-contained HTML page."""
    m = statement._m
    cur = statement.currency
    payments_png = None
    if figures and statement.history:
        payments_png = _png(payments_figure(statement.history, cur, {statement.payer: statement.payer_name}))
    vfm = statement.value_for_money
    by_trigger: dict[str, Decimal] = {}
    for p in statement.history:
        key = p.trigger or "(no trigger)"
        by_trigger[key] = by_trigger.get(key, ZERO) + p.amount
    html_text: str = _environment().get_template("municipality.html.j2").render(
        s=statement,
        m=m,
        version=_version(),
        generated=date.today().isoformat(),
        lines=_table(statement.lines_frame().drop(columns=["payer"]), cur, ["amount"]),
        history=_table(statement.lines_frame(statement.history).drop(columns=["payer"]), cur, ["amount"]),
        by_trigger=[(k, m(v)) for k, v in by_trigger.items()],
        payments_png=payments_png,
        vfm=vfm,
        vfm_table=_vfm_table(vfm) if vfm is not None else None,
    )
    return html_text


def render_investor(statement: InvestorStatement, *, figures: bool = True) -> str:
    """The investor statement as one self-contained HTML page."""
    wf = statement.waterfall
    rets = statement.returns
    cur = statement.currency
    def m(amount: Decimal) -> str:
        return format_money(amount, cur)

    def n(amount: Decimal) -> str:
        return _number(amount, cur)

    positions_png = _png(positions_figure(rets)) if figures else None
    flows_png = _png(flow_diagram(wf)) if figures else None
    funders = [f for f in rets.funders if f.role != "guarantor"]
    guarantors = [f for f in rets.funders if f.role == "guarantor"]
    flows = wf.to_frame().drop(columns=["from", "to", "determination"])
    html_text: str = _environment().get_template("investor.html.j2").render(
        s=statement,
        wf=wf,
        m=m,
        n=n,
        cur=cur,
        version=_version(),
        generated=date.today().isoformat(),
        funders=funders,
        guarantors=guarantors,
        cash_flows=_table(rets.cash_flows_frame(), cur, ["amount", "cumulative"]),
        tranches=_table(wf.tranches_frame().reset_index(), cur,
                        ["commitment", "drawn", "interest_accrued", "interest_paid", "principal_repaid",
                         "other_received", "principal_outstanding", "interest_due", "guarantee_received",
                         "recovered_by_guarantor"]),
        guarantees=_table(wf.guarantees_frame(), cur, ["loss", "cap", "paid", "reimbursed", "net_cost"]),
        flows=_table(flows, cur, ["amount"]),
        conservation=wf.conservation(),
        positions_png=positions_png,
        flows_png=flows_png,
    )
    return html_text


# ---------------------------------------------------------------------- write ---


def _excel(path: Path, sheets: Mapping[str, "pd.DataFrame"]) -> None:
    """One sheet per table; Decimal money is written as numbers."""
    import pandas as pd

    with pd.ExcelWriter(path, engine="openpyxl") as writer:
        for name, frame in sheets.items():
            f = frame.copy()
            for col in f.columns:
                if f[col].map(lambda v: isinstance(v, Decimal)).any():
                    f[col] = f[col].map(lambda v: float(v) if isinstance(v, Decimal) else v)
            f.to_excel(writer, sheet_name=name[:31], index=False)


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9_-]+", "-", text.lower()).strip("-") or "payer"


def write_report(
    contract: Contract,
    payments: Iterable[OutcomePayment] | Any,
    out_dir: str | Path,
    *,
    evaluation: Any = None,
    outcomes: Mapping[str, Decimal] | None = None,
    as_of: date | None = None,
    discount_rates: Sequence[Decimal] | None = None,
    coupon_rates: Mapping[str, Decimal] | None = None,
) -> ReportPaths:
    """Compute the statements and write them to ``out_dir``: one HTML page and one Excel
    workbook per payer (``municipality_<payer>``), the investor statement
    (``investor.html``, ``investor.xlsx``) and the flow diagram (``money_flows.svg``)."""
    report = build_report(contract, payments, evaluation=evaluation, outcomes=outcomes, as_of=as_of,
                          discount_rates=discount_rates, coupon_rates=coupon_rates)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    muni_html: list[Path] = []
    muni_xlsx: list[Path] = []
    for st in report.municipality:
        base = out / f"municipality_{_slug(st.payer)}"
        html_path = base.with_suffix(".html")
        html_path.write_text(render_municipality(st), encoding="utf-8")
        muni_html.append(html_path)
        sheets: dict[str, pd.DataFrame] = {
            "this_period": st.lines_frame(),
            "payment_lines": st.lines_frame(st.history),
        }
        if st.value_for_money is not None:
            sheets["value_for_money"] = st.value_for_money.to_frame()
        xlsx = base.with_suffix(".xlsx")
        _excel(xlsx, sheets)
        muni_xlsx.append(xlsx)
    inv_html = out / "investor.html"
    inv_html.write_text(render_investor(report.investor), encoding="utf-8")
    inv_xlsx = out / "investor.xlsx"
    wf = report.waterfall
    _excel(
        inv_xlsx,
        {
            "funders": report.returns.to_frame(),
            "cash_flows": report.returns.cash_flows_frame(),
            "tranches": wf.tranches_frame().reset_index(),
            "guarantees": wf.guarantees_frame(),
            "money_flows": wf.to_frame(),
            "waterfall_steps": wf.steps_frame(),
            "parties": wf.parties_frame(),
            "value_for_money": report.value_for_money.to_frame(),
        },
    )
    diagram = out / "money_flows.svg"
    flow_diagram(wf).savefig(diagram, format="svg")
    return ReportPaths(out, tuple(muni_html), tuple(muni_xlsx), inv_html, inv_xlsx, diagram)


# --------------------------------------------------------------------- risk page ---


@dataclass(frozen=True)
class RiskReportPaths:
    """Where :func:`write_risk_report` put each file."""

    directory: Path
    html: Path
    json: Path


def _float_table(frame: "pd.DataFrame", fmt: Mapping[str, str]) -> dict[str, Any]:
    """A frame of floats as a template table: each column formatted by ``fmt`` (``money``,
    ``pct``, ``x`` or ``num``), missing values blank."""
    rows = []
    for rec in frame.to_dict("records"):
        row = []
        for col in frame.columns:
            v = rec[col]
            kind = fmt.get(str(col), "text")
            if v is None or (isinstance(v, float) and v != v):
                row.append({"text": "", "num": kind != "text"})
            elif kind == "money":
                row.append({"text": f"{v:,.0f}", "num": True})
            elif kind == "pct":
                row.append({"text": f"{v:.1%}", "num": True})
            elif kind == "x":
                row.append({"text": f"{v:.2f}", "num": True})
            elif kind == "num":
                row.append({"text": f"{v:.4g}", "num": True})
            else:
                row.append({"text": str(v), "num": False})
        rows.append(row)
    header = [{"text": str(c).replace("_", " "), "num": fmt.get(str(c), "text") != "text"} for c in frame.columns]
    return {"header": header, "rows": rows}


def render_risk(result: SimulationResult, *, figures: bool = True) -> str:
    """The risk page of a simulation as one self-contained HTML page: the return
    distribution, the payment curve, the tornado, every figure and the assumptions."""
    import json

    import numpy as np
    import pandas as pd

    cur = result.currency
    d = result.data
    ff = result.funders_frame()
    funders = ff.drop(columns=["name"])
    curve = result.curve if result.curve is not None else result.payment_curve()
    tornado = result.tornado()
    summ = result.summary()
    summ_rows = []
    for rec in summ.to_dict("records"):
        v, unit = rec["value"], str(rec["unit"])
        if v is None or (isinstance(v, float) and v != v):
            text = "n/a"
        elif unit in ("probability", "per year", "share of the downside"):
            text = f"{v:.2%}"
        elif unit == "x":
            text = f"{v:.2f}"
        elif unit == cur:
            text = f"{v:,.0f}"
        else:
            text = f"{v:.4g}"
        summ_rows.append({"measure": rec["measure"], "value": text, "unit": unit})

    def money(v: float) -> str:
        return f"{cur} {v:,.0f}"

    html_text: str = _environment().get_template("risk.html.j2").render(
        r=result, version=_version(), generated=date.today().isoformat(), money=money,
        mean_paid=float(d.paid.mean()), p5=float(np.quantile(d.paid, 0.05)), p95=float(np.quantile(d.paid, 0.95)),
        risk_transfer=result.risk_transfer, p_zero=result.p_pay_if_no_effect, p_target=result.p_no_pay_at_target,
        break_even=result.break_even_effect, metric=curve.attrs.get("metric", result.effects[0] if result.effects else ""),
        funders=_float_table(funders, {"invested": "money", "irr_p5": "pct", "irr_p50": "pct", "irr_p95": "pct",
                                       "irr_mean": "pct", "irr_missing": "pct", "multiple_mean": "x", "p_loss": "pct",
                                       "expected_loss": "money", "var_5": "money", "es_5": "money"}),
        curve=_float_table(curve, {c: ("pct" if c.startswith(("p_", "irr_")) else "money" if c != "effect" else "num")
                                   for c in curve.columns}),
        tornado=_float_table(tornado, dict.fromkeys(("output_low", "output_high", "base", "swing"),
                                                    "money" if tornado.attrs.get("output") == "paid" else "num")),
        summary=_table(pd.DataFrame(summ_rows), cur),
        assumptions=json.dumps(result.assumptions, indent=2),
        returns_png=_png(result.plot_returns()) if figures else None,
        curve_png=_png(result.plot_payment_curve()) if figures else None,
        tornado_png=_png(result.plot_tornado()) if figures else None,
    )
    return html_text


def write_risk_report(result: SimulationResult, out_dir: str | Path, *, figures: bool = True) -> RiskReportPaths:
    """Write the risk page of a simulation (``risk.html``) and its figures as JSON
    (``risk.json``, the shape of ``sib simulate --json``) to ``out_dir``."""
    import json

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    page = out / "risk.html"
    page.write_text(render_risk(result, figures=figures), encoding="utf-8")
    data = out / "risk.json"
    data.write_text(json.dumps(simulation_json(result), indent=2, allow_nan=False), encoding="utf-8")
    return RiskReportPaths(out, page, data)
