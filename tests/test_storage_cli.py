"""``sib run``, ``sib history``, ``sib verify`` and ``sib export``, run for real."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest
from storagekit import DEMO_TEXT, PG_ENV, demo_frame, postgres_database, write_csv

ENV = {**os.environ, "PYTHONIOENCODING": "utf-8", "COLUMNS": "120", "NO_COLOR": "1"}
ENV.pop("SIB_DATABASE_URL", None)


def sib(*args: str | Path, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([sys.executable, "-m", "sib_engine", *map(str, args)], capture_output=True, text=True,
                            encoding="utf-8", env=env or ENV, cwd=cwd, timeout=300)
    assert "Traceback" not in result.stderr + result.stdout, result.stderr
    return result


@pytest.fixture(scope="module")
def deal(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A working folder with the demo contract, two data files (the second restates the
    first) and a database in which ``sib run`` recorded the first."""
    d = tmp_path_factory.mktemp("deal")
    (d / "demo.yaml").write_text(DEMO_TEXT, encoding="utf-8")
    write_csv(demo_frame(40, seed=2), d / "q1.csv")
    write_csv(demo_frame(40, seed=2, drop_jobs=3, late_jobs=1), d / "q1_restated.csv")
    yield d


def test_run_records_and_reports(deal: Path) -> None:
    r = sib("run", "demo.yaml", "q1.csv", "--demo-key", "--as-of", "2025-06-30", "--report", "out", cwd=deal)
    assert r.returncode == 0, r.stderr
    assert "new submission" in r.stdout and "run       determination" in r.stdout
    assert "entry sha256" in r.stdout and "database  sqlite:///sib.db" in r.stdout
    assert (deal / "sib.db").is_file()
    assert (deal / "out" / "investor.html").is_file()

    again = sib("run", "demo.yaml", "q1.csv", "--demo-key", "--as-of", "2025-06-30", cwd=deal)
    assert again.returncode == 0
    assert "recorded before" in again.stdout and "nothing new" in again.stdout

    restated = sib("run", "demo.yaml", "q1_restated.csv", "--demo-key", "--as-of", "2025-06-30", cwd=deal)
    assert restated.returncode == 0, restated.stderr
    assert "run       restatement" in restated.stdout and "clawbacks EUR -" in restated.stdout


def test_history_lists_runs_with_hashes(deal: Path) -> None:
    r = sib("history", "demo.yaml", cwd=deal)
    assert r.returncode == 0, r.stderr
    assert " determination " in r.stdout and " restatement " in r.stdout
    assert r.stdout.count("entry    sha256") == 2
    js = json.loads(sib("history", "demo", "--json", cwd=deal).stdout)
    assert [e["kind"] for e in js["entries"]] == ["determination", "restatement"]
    assert js["entries"][1]["data"]["restates_submission"] is not None
    unknown = sib("history", "nope", cwd=deal)
    assert unknown.returncode == 1 and "nothing is recorded for 'nope'" in unknown.stderr


def test_export_indigo(deal: Path) -> None:
    r = sib("export", "demo.yaml", "--format", "indigo", cwd=deal)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["project"]["name"]["value"] == "Demo rate card"
    assert doc["project"]["service_and_beneficiaries"]["actual_number_service_users_or_beneficiaries_total"] == \
        {"value": 40}
    small = json.loads(sib("export", "demo", "--min-cell", "41", cwd=deal).stdout)
    assert "actual_number_service_users_or_beneficiaries_total" not in small["project"]["service_and_beneficiaries"]
    bad = sib("export", "demo", "--format", "csv", cwd=deal)
    assert bad.returncode == 2 and "only format is 'indigo'" in bad.stderr


def test_verify_passes_then_names_a_tampered_amount(deal: Path, tmp_path: Path) -> None:
    ok = sib("verify", cwd=deal)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "ok: every hash matches" in ok.stdout
    copy = tmp_path / "tampered.db"
    with sqlite3.connect(deal / "sib.db") as src, sqlite3.connect(copy) as dst:
        src.backup(dst)
    con = sqlite3.connect(copy)
    con.execute("DROP TRIGGER payment_lines_no_update")
    seq, amount = con.execute("SELECT seq, amount_minor FROM payment_lines ORDER BY seq LIMIT 1").fetchone()
    con.execute("UPDATE payment_lines SET amount_minor = amount_minor * 2 WHERE seq = ?", (seq,))
    con.commit()
    con.close()
    bad = sib("verify", "--db", copy, cwd=deal)
    assert bad.returncode == 5
    assert "MISMATCH" in bad.stdout
    assert f"payment_lines entry seq {seq}: its content does not match its hash" in bad.stdout
    assert f"amount_minor recorded {amount * 2}, recomputed {amount}" in bad.stdout


SCENARIO = """\
format: sib-scenario/1
name: demo view
contract: demo
simulation:
  effects:
    - {metric: job, base: 0.3, effect: {kind: normal, mean: 0.2, sd: 0.1}}
  enrolment: {default_size: 40}
"""


def test_a_simulation_joins_the_deals_ledger_and_it_still_verifies(deal: Path) -> None:
    """After the determination and the restatement above: ``sib simulate`` appends to the same
    hash chain, ``sib history`` lists it in ledger order, ``sib verify`` recomputes the
    determinations across it, and the same simulation again records nothing."""
    (deal / "demo_view.yaml").write_text(SCENARIO, encoding="utf-8")
    args = ("simulate", "demo.yaml", "--scenario", "demo_view.yaml", "--paths", "2000", "--seed", "3")
    r = sib(*args, cwd=deal)
    assert r.returncode == 0, r.stderr
    assert "recorded simulation" in r.stdout and "in sqlite:///sib.db" in r.stdout
    js = json.loads(sib("history", "demo", "--json", cwd=deal).stdout)
    assert [e["kind"] for e in js["entries"]] == ["determination", "restatement", "simulation"]
    sim = js["entries"][2]
    assert sim["seq"] == js["ledger_head"]["seq"] and sim["entry_hash"] == js["ledger_head"]["hash"]
    assert (sim["seed"], sim["worlds"]) == (3, 2000)
    assert sim["contract_hash"] == js["entries"][0]["contract_hash"]
    assert sim["assumptions"]["scenario"]["name"] == "demo view"
    assert sim["summary"]["total_payment"]["mean"] > 0
    assert "scenario 'demo view'" in sib("history", "demo.yaml", cwd=deal).stdout
    ok = sib("verify", cwd=deal)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "2 determination run(s) recomputed" in ok.stdout and "1 simulation(s)" in ok.stdout
    again = sib(*args, cwd=deal)
    assert "nothing new recorded" in again.stdout
    assert len(json.loads(sib("history", "demo", "--json", cwd=deal).stdout)["entries"]) == 3


def test_a_payment_hold_records_the_submission_and_exits_4(tmp_path: Path) -> None:
    (tmp_path / "demo.yaml").write_text(DEMO_TEXT, encoding="utf-8")
    write_csv(demo_frame(10).drop(columns=["cohort"]), tmp_path / "broken.csv")
    r = sib("run", "demo.yaml", "broken.csv", "--demo-key", "--db", "held.db", cwd=tmp_path)
    assert r.returncode == 4, r.stderr
    assert "HOLD" in r.stdout and "nothing was determined" in r.stdout
    con = sqlite3.connect(tmp_path / "held.db")
    assert con.execute("SELECT count(*), sum(hold) FROM data_submissions").fetchone() == (1, 1)
    assert con.execute("SELECT count(*) FROM determination_runs").fetchone() == (0,)


def test_bad_inputs(tmp_path: Path) -> None:
    missing = sib("verify", "--db", tmp_path / "nope.db", cwd=tmp_path)
    assert missing.returncode == 1 and "there is no database" in missing.stderr
    assert not (tmp_path / "nope.db").exists()
    (tmp_path / "demo.yaml").write_text(DEMO_TEXT.replace('"2750.00"', "-5"), encoding="utf-8")
    broken = sib("run", "demo.yaml", "x.csv", "--demo-key", cwd=tmp_path)
    assert broken.returncode == 1 and "demo.yaml:" in broken.stderr
    (tmp_path / "ok.yaml").write_text(DEMO_TEXT, encoding="utf-8")
    nodata = sib("run", "ok.yaml", "x.csv", "--demo-key", cwd=tmp_path)
    assert nodata.returncode == 1 and "x.csv: no such data file" in nodata.stderr


def test_run_and_verify_on_postgresql(tmp_path: Path) -> None:
    if not os.environ.get(PG_ENV):
        pytest.skip("PostgreSQL: set " + PG_ENV)
    for url in postgres_database():
        env = {**ENV, "SIB_DATABASE_URL": url}
        (tmp_path / "demo.yaml").write_text(DEMO_TEXT, encoding="utf-8")
        write_csv(demo_frame(30, seed=4), tmp_path / "q.csv")
        r = sib("run", "demo.yaml", "q.csv", "--demo-key", cwd=tmp_path, env=env)
        assert r.returncode == 0, r.stderr
        assert "database  postgresql+psycopg://" in r.stdout
        v = sib("verify", cwd=tmp_path, env=env)
        assert v.returncode == 0, v.stdout
        h = sib("history", "demo", cwd=tmp_path, env=env)
        assert h.returncode == 0 and "entry    sha256" in h.stdout
        assert not (tmp_path / "sib.db").exists()
