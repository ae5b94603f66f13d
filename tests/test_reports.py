"""Statements and reports: files written, self-contained HTML, Excel sheets, the
Evaluation adapter, and the page rendered in headless Chromium."""

from __future__ import annotations

import re
import shutil
import subprocess
from datetime import date
from decimal import Decimal
from pathlib import Path

import pandas as pd
import pytest

from sib_engine.loader import load_contract, parse_contract
from sib_engine.reports import (
    build_report,
    flow_diagram,
    municipality_statements,
    render_investor,
    render_municipality,
    write_report,
)
from sib_engine.waterfall import OutcomePayment, coupon_rates_from_evaluation, payments_from_evaluation, run_waterfall

from funding_helpers import quarterly_payments, reference_contract

D = Decimal
ROOT = Path(__file__).resolve().parent.parent


def rotterdam_lines() -> list[OutcomePayment]:
    return [
        OutcomePayment(date(2016, 1, 29), D("310000.00"), "rotterdam", "benefit_savings", "interim_2015", "P8",
                       "Art. 6.1"),
        OutcomePayment(date(2017, 2, 28), D("520000.00"), "rotterdam", "benefit_savings", "final_2016", "P12",
                       "Art. 6.1"),
    ]


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    out = tmp_path_factory.mktemp("report")
    return write_report(reference_contract(), quarterly_payments(D("2800000.00")), out)


def assert_self_contained(text: str) -> None:
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//)""", text, re.I)
    assert "<script" not in text.lower() and "<link" not in text.lower() and "@import" not in text
    assert "url(" not in text
    for src in re.findall(r"""src\s*=\s*["']([^"']+)""", text):
        assert src.startswith("data:image/png;base64,")


def test_write_report_files(written) -> None:  # type: ignore[no-untyped-def]
    paths = written
    assert [p.name for p in paths.municipality_html] == ["municipality_city.html"]
    for p in paths.all():
        assert p.exists() and p.stat().st_size > 1000
    muni = paths.municipality_html[0].read_text(encoding="utf-8")
    inv = paths.investor_html.read_text(encoding="utf-8")
    for text in (muni, inv):
        assert_self_contained(text)
        assert text.startswith("<!DOCTYPE html>")
    assert "What we owe this period" in muni and "Why: the payment lines" in muni
    assert "EUR 175,000.00" in muni  # 2,800,000 in 16 equal payments: this period's one
    assert "Investor statement" in inv and "Guarantee position" in inv and "conserved to the cent" in inv
    assert inv.count("data:image/png;base64,") == 2
    assert paths.flow_diagram.read_text(encoding="utf-8").lstrip().startswith("<?xml")


def test_excel_one_sheet_per_table(written) -> None:  # type: ignore[no-untyped-def]
    from openpyxl import load_workbook

    inv = load_workbook(written.investor_xlsx, read_only=True)
    assert inv.sheetnames == ["funders", "cash_flows", "tranches", "guarantees", "money_flows",
                              "waterfall_steps", "parties", "value_for_money"]
    muni = load_workbook(written.municipality_xlsx[0], read_only=True)
    assert muni.sheetnames == ["this_period", "payment_lines", "value_for_money"]
    flows = pd.read_excel(written.investor_xlsx, sheet_name="money_flows")
    assert {"date", "from", "to", "amount", "why", "clause"} <= set(flows.columns)
    into = flows.loc[flows["to"] == "SPV", "amount"].sum()
    out = flows.loc[flows["from"] == "SPV", "amount"].sum()
    assert into == pytest.approx(out, abs=0.005)


def test_municipality_statement_of_the_current_determination() -> None:
    c = load_contract(ROOT / "contracts" / "rotterdam_youth_2013.yaml")
    wf = run_waterfall(c, rotterdam_lines())
    (st,) = municipality_statements(c, wf)
    assert st.current == "final_2016" and st.due_date == date(2017, 2, 28)
    assert st.total_this_period == D("520000.00") and st.total_to_date == D("830000.00")
    (early,) = municipality_statements(c, wf, as_of=date(2016, 12, 31))
    assert early.current == "interim_2015" and early.total_this_period == D("310000.00")
    assert "owes EUR 520,000.00 for final_2016" in st.explain()
    assert repr(st).startswith("<MunicipalityStatement") and len(st.summary()) == 1
    page = render_municipality(st, figures=False)
    assert "Art. 6.1" in page and "final_2016" in page


def test_investor_page_and_flow_diagram() -> None:
    report = build_report(reference_contract(), quarterly_payments(D("2800000.00")))
    page = render_investor(report.investor, figures=False)
    assert "Junior Fund" in page and "Guarantee Foundation" in page
    fig = flow_diagram(report.waterfall)
    labels = [t.get_text() for t in fig.axes[0].texts]
    assert any(label.startswith("City of Example") for label in labels)
    assert any(label.startswith("Deal account (SPV)") for label in labels)
    fragment = report.investor._repr_html_()
    assert "<table" in fragment and "<style" not in fragment and "<html" not in fragment
    assert "<table" in report.municipality[0]._repr_html_()


# -------------------------------------------------------- the Evaluation adapter ---

EVAL_CONTRACT = """\
format: sib-contract/1
id: kitchen-mini
title: Mini training kitchen
currency: EUR
term: {start: 2024-01-01, end: 2025-12-31}
parties:
  - {id: city, name: City, role: payer}
  - {id: fund, name: Social Fund, role: investor}
  - {id: kitchen, name: Training Kitchen, role: provider}
payers:
  - {party: city, share: 1}
metrics:
  - {id: diploma, name: Vocational diploma, type: event}
  - {id: job, name: Job held six months, type: event}
triggers:
  - id: card
    kind: rate_card
    clause: Schedule 1
    outcomes:
      - {metric: diploma, price: "4730.00", clause: Schedule 1.1}
      - {metric: job, price: "2750.00", clause: Schedule 1.2}
timeline:
  periods: {start: 2024-01-01, months: 6, count: 4}
  payment_lag_days: 30
  cohorts:
    - {id: c1, enrolment_start: 2024-01-01, enrolment_end: 2024-06-30}
capital:
  tranches:
    - {id: loan, kind: senior_loan, funder: fund, commitment: "10000.00", coupon: {rate: 0.05, compounding: annual}}
  waterfall:
    - {pay: interest, tranche: loan}
    - {pay: principal, tranche: loan}
    - {pay: residual, split: {kitchen: 1}}
value_for_money:
  savings:
    - {metric: job, amount: "9000.00"}
  fee_for_service_cost: "12000.00"
"""


def measured() -> pd.DataFrame:
    rows = [
        ("a", "enrolment", "2024-01-10", None, "c1"),
        ("b", "enrolment", "2024-01-11", None, "c1"),
        ("c", "enrolment", "2024-02-01", None, "c1"),
        ("a", "diploma", "2024-03-01", "1", None),
        ("b", "diploma", "2024-05-01", "1", None),
        ("a", "job", "2024-09-01", "1", None),
        ("c", "job", "2025-02-01", "1", None),
    ]
    df = pd.DataFrame(rows, columns=["participant_id", "metric", "date", "value", "cohort"])
    df.insert(0, "contract_version", 1)
    df.insert(0, "contract_id", "kitchen-mini")
    df["date"] = pd.to_datetime(df["date"])
    df["value"] = [None if v is None else Decimal(v) for v in df["value"]]
    return df


def test_evaluation_adapter_feeds_the_waterfall(tmp_path: Path) -> None:
    evaluation = pytest.importorskip("sib_engine.evaluation")
    c = parse_contract(EVAL_CONTRACT)
    ev = evaluation.evaluate(c, measured())
    lines = payments_from_evaluation(ev)
    assert sum((p.amount for p in lines), D(0)) == ev.total
    assert ev.total == D("4730.00") * 2 + D("2750.00") * 2
    assert {p.outcome for p in lines} == {"diploma", "job"}
    assert coupon_rates_from_evaluation(ev) == {}
    wf = run_waterfall(c, lines)
    assert wf.conservation().exact
    assert wf.tranche("loan").principal_outstanding == 0
    report = build_report(c, ev)
    # the rate card's units come from the evaluation's lines: 2 jobs saving 9,000 each
    job = {o.metric: o for o in report.value_for_money.outcomes}["job"]
    assert job.units == D(2) and report.value_for_money.cashable_savings == D("18000.00")
    (st,) = report.municipality
    assert st.explanation == ev.explain()
    paths = write_report(c, ev, tmp_path)
    page = paths.municipality_html[0].read_text(encoding="utf-8")
    assert "How the payments were determined" in page


# ------------------------------------------------------------ headless Chromium ---

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--hide-scrollbars"]


def chromium(args: list[str], profile: Path) -> subprocess.CompletedProcess[str]:
    assert CHROMIUM is not None
    return subprocess.run(
        [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0", *args],
        capture_output=True, text=True, timeout=120,
    )


def console_errors(stderr: str) -> list[str]:
    """Console messages (the pages have no scripts, so any is unexpected), uncaught errors
    and failed loads, from Chromium's log (``[...:INFO:CONSOLE:1] "message", source: ...``)."""
    return [line for line in stderr.splitlines()
            if ":CONSOLE" in line or "Uncaught" in line or "Failed to load resource" in line
            or "net::ERR" in line]


def test_console_errors_are_recognised() -> None:
    log = ('[1:1:1122/051305.813294:INFO:CONSOLE:1] "boom", source: file:///x.html (1)\n'
           '[1:1:1122/051305.813337:INFO:CONSOLE:1] "Uncaught Error: bad", source: file:///x.html (1)\n'
           '[1:1:1122/051305.245423:ERROR:dbus/bus.cc:405] Failed to connect to the bus\n')
    assert len(console_errors(log)) == 2


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (make test installs it)")
@pytest.mark.parametrize("page", ["investor", "municipality"])
def test_page_loads_in_headless_chromium(written, tmp_path: Path, page: str) -> None:  # type: ignore[no-untyped-def]
    path = written.investor_html if page == "investor" else written.municipality_html[0]
    url = path.resolve().as_uri()
    dom = chromium(["--dump-dom", url], tmp_path / "profile-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert not console_errors(dom.stderr), console_errors(dom.stderr)
    headings = re.findall(r"<h2[^>]*>(.*?)</h2>", dom.stdout)
    if page == "investor":
        assert re.search(r"<h1[^>]*>Investor statement</h1>", dom.stdout)
        assert headings == ["Returns", "Cumulative cash position", "Guarantee position", "Capital stack at close",
                            "Money flows"]
    else:
        assert re.search(r"<h1[^>]*>Municipality statement</h1>", dom.stdout)
        assert headings[:3] == ["What we owe this period", "Why: the payment lines", "Payments to date"]
    shot = tmp_path / f"{page}.png"
    run = chromium([f"--screenshot={shot}", "--window-size=1200,2000", url], tmp_path / "profile-shot")
    assert run.returncode == 0, run.stderr[-2000:]
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000
    assert not console_errors(run.stderr), console_errors(run.stderr)
