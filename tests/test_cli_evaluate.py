"""``sib evaluate`` and ``sib report``: the real commands on the example deals."""

from __future__ import annotations

import json
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parent.parent


def test_evaluate_json_has_the_documented_shape_and_adds_up(sib: Callable[..., subprocess.CompletedProcess[str]]) -> None:
    r = sib("evaluate", "contracts/fair_chance_fund_2015.yaml", "outcomes/fair_chance_fund_2015.csv",
            "--demo-key", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["contract"] == "fair_chance_fund_2015" and out["currency"] == "GBP"
    total = Decimal(out["total"])
    # the public figure: the project was paid GBP 2,513,800 because the contract cap binds
    assert total == Decimal("2513800.00")
    assert sum(Decimal(v) for v in out["by_payer"].values()) == total
    assert sum(Decimal(ln["amount"]) for ln in out["lines"]) == total
    for ln in out["lines"]:
        assert {"period", "payer", "trigger", "units", "amount", "clause"} <= set(ln)
    funder = out["funders"]["project_investors"]
    assert {"invested", "received", "irr", "moic", "loss"} <= set(funder)
    assert Decimal(out["government"]["paid"]) == total


def test_evaluate_text_and_explain_name_the_clauses(sib: Callable[..., subprocess.CompletedProcess[str]]) -> None:
    r = sib("evaluate", "contracts/utrecht_training_kitchen_2015.yaml",
            "outcomes/utrecht_training_kitchen_2015.csv", "--demo-key", "--explain", "--as-of", "2017-06-30")
    assert r.returncode == 0, r.stderr
    assert "total: EUR" in r.stdout and "Annex 2" in r.stdout


def test_evaluate_refuses_data_on_payment_hold(sib: Callable[..., subprocess.CompletedProcess[str]]) -> None:
    r = sib("evaluate", "contracts/utrecht_training_kitchen_2015.yaml",
            "tests/data/invalid/claim_limit_exceeded.csv", "--demo-key")
    assert r.returncode == 4
    assert "payment hold" in r.stderr and "Traceback" not in r.stderr


def test_report_writes_self_contained_statements(sib: Callable[..., subprocess.CompletedProcess[str]], tmp_path: Path) -> None:
    r = sib("report", "contracts/massachusetts_juvenile_justice_2014.yaml",
            "outcomes/massachusetts_juvenile_justice_2014.csv", "--demo-key", "-o", str(tmp_path))
    assert r.returncode == 0, r.stderr
    pages = sorted(p.name for p in tmp_path.glob("*.html"))
    assert "investor.html" in pages and any(p.startswith("municipality_") for p in pages)
    html = (tmp_path / "investor.html").read_text(encoding="utf-8")
    assert "Investor statement" in html
    assert "http://" not in html.replace("http://www.w3.org", "") and "<script src" not in html
    assert (tmp_path / "investor.xlsx").stat().st_size > 0
