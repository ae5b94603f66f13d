"""``sib simulate``: the real command, reproducible by seed, and recorded in the ledger.

Every command here runs in a temporary working folder (the default database is
``./sib.db`` there), never in the repository.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from storagekit import PG_ENV, db_url, postgres_database  # noqa: F401

from sib_engine import __version__
from sib_engine.loader import load_contract
from sib_engine.storage import Store

ROOT = Path(__file__).resolve().parent.parent
BRUSSELS = ROOT / "contracts" / "brussels_mentoring_2014.yaml"
PESSIMISTIC = ROOT / "contracts" / "scenarios" / "brussels_mentoring_pessimistic.yaml"
OUTCOMES = ROOT / "outcomes" / "brussels_mentoring_2014.csv"
ENV = {**os.environ, "PYTHONIOENCODING": "utf-8", "COLUMNS": "120", "NO_COLOR": "1"}
ENV.pop("SIB_DATABASE_URL", None)
OMITTED = {"assumptions", "contract", "engine_version", "paths", "seed"}
"""The fields of ``--json`` that the ledger entry keeps in columns (or as its assumptions)."""


def sib(*args: str | Path, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([sys.executable, "-m", "sib_engine", *map(str, args)], capture_output=True, text=True,
                            encoding="utf-8", env=env or ENV, cwd=cwd, timeout=300)
    assert "Traceback" not in result.stderr + result.stdout, result.stderr
    return result


def simulations(db: Path) -> list[dict[str, Any]]:
    """Every stored simulation entry of a SQLite database, as plain data, in ledger order."""
    con = sqlite3.connect(db)
    con.row_factory = sqlite3.Row
    try:
        rows = [dict(r) for r in con.execute("SELECT * FROM simulation_runs ORDER BY seq")]
    finally:
        con.close()
    for r in rows:
        r["assumptions"], r["summary"] = json.loads(r["assumptions"]), json.loads(r["summary"])
    return rows


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ------------------------------------------------------------------ the figures ---


def test_simulate_json_shape_and_same_seed_same_result(tmp_path: Path) -> None:
    args = ("simulate", BRUSSELS, "--paths", "5000", "--seed", "11", "--json", "--no-record")
    first, second = sib(*args, cwd=tmp_path), sib(*args, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    out = json.loads(first.stdout)
    assert out["paths"] == 5000 and out["seed"] == 11
    assert {"mean", "p5", "p50", "p95"} <= set(out["total_payment"])
    assert out["funders"] and all("p_loss" in f for f in out["funders"].values())
    assert 0 <= out["risk_transfer"] <= 1 and 0 <= out["p_pay_if_no_effect"] <= 1
    assert first.stdout == second.stdout
    other = sib("simulate", BRUSSELS, "--paths", "5000", "--seed", "12", "--json", "--no-record", cwd=tmp_path)
    assert json.loads(other.stdout)["total_payment"] != out["total_payment"]
    assert list(tmp_path.iterdir()) == [], "--no-record wrote a database"


def test_simulate_refuses_both_workers_and_scheduler(tmp_path: Path) -> None:
    r = sib("simulate", BRUSSELS, "--workers", "2", "--scheduler", "tcp://127.0.0.1:1", cwd=tmp_path)
    assert r.returncode == 2 and "not both" in r.stderr
    assert not (tmp_path / "sib.db").exists()


def test_simulate_without_a_section_is_a_clear_error(tmp_path: Path) -> None:
    r = sib("simulate", ROOT / "contracts" / "zaanstad_placement_2015.yaml", "--paths", "100", cwd=tmp_path)
    assert r.returncode == 1 and "no simulation section" in r.stderr
    assert not (tmp_path / "sib.db").exists(), "a database was made for a run that cannot start"


# ------------------------------------------------------------------ recording ---


def test_simulate_records_the_run_once_and_history_and_verify_show_it(tmp_path: Path) -> None:
    r = sib("simulate", BRUSSELS, "--paths", "3000", "--seed", "11", "--json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    figures = json.loads(r.stdout)  # the standard output stays pure JSON; the note goes to stderr
    assert "recorded simulation" in r.stderr and "sqlite:///sib.db" in r.stderr

    [sim] = simulations(tmp_path / "sib.db")
    assert (sim["deal_id"], sim["seed"], sim["worlds"]) == ("brussels-mentoring-2014", 11, 3000)
    assert sim["engine_version"] == __version__ == figures["engine_version"]
    assert sim["contract_hash"] == sha256(BRUSSELS)
    assert sim["assumptions"] == {"source": "contract", "simulation": figures["assumptions"]}
    assert sim["assumptions"]["simulation"]["effects"][0]["effect"]["mean"] == "0.05"  # the contract's section
    assert sim["summary"] == {k: v for k, v in figures.items() if k not in OMITTED}
    assert sim["summary"]["risk_transfer"] == figures["risk_transfer"]
    assert set(sim["summary"]["funders"]) == {"private_consortium", "foundation"}
    assert sim["entry_hash"] in r.stderr

    con = sqlite3.connect(tmp_path / "sib.db")
    kind, seed, contract_hash, version, command = con.execute(
        "SELECT kind, seed, contract_hash, engine_version, command FROM provenance WHERE id = ?",
        (sim["provenance_id"],)).fetchone()
    text, source = con.execute("SELECT source_text, source_name FROM contracts WHERE id = ?",
                               (sim["contract_id"],)).fetchone()
    con.close()
    assert (kind, seed, contract_hash, version) == ("simulation", 11, sha256(BRUSSELS), __version__)
    assert command.startswith("sib simulate ") and "--seed 11" in command
    assert text == BRUSSELS.read_text(encoding="utf-8") and source == str(BRUSSELS)

    # the same inputs again: nothing new (the figures are the same); the text output says so
    again = sib("simulate", BRUSSELS, "--paths", "3000", "--seed", "11", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert f"nothing new recorded: simulation {sim['uid']} (#{sim['seq']})" in again.stdout
    assert len(simulations(tmp_path / "sib.db")) == 1
    # another seed, or another number of worlds, is another run; --no-record records nothing
    assert sib("simulate", BRUSSELS, "--paths", "3000", "--seed", "12", cwd=tmp_path).returncode == 0
    assert sib("simulate", BRUSSELS, "--paths", "4000", "--seed", "11", cwd=tmp_path).returncode == 0
    assert sib("simulate", BRUSSELS, "--paths", "3000", "--seed", "13", "--no-record", cwd=tmp_path).returncode == 0
    stored = simulations(tmp_path / "sib.db")
    assert [(s["seq"], s["seed"], s["worlds"]) for s in stored] == [(1, 11, 3000), (2, 12, 3000), (3, 11, 4000)]
    assert [s["prev_hash"] for s in stored[1:]] == [s["entry_hash"] for s in stored[:-1]]  # one hash chain

    h = sib("history", BRUSSELS, cwd=tmp_path)
    assert h.returncode == 0, h.stderr
    heads = [line for line in h.stdout.splitlines() if line.startswith("#")]
    assert [line.split()[1] for line in heads] == ["simulation"] * 3 and sim["uid"] in heads[0]
    assert "seed 11, 3,000 worlds, sib-engine" in h.stdout
    assert "assumptions: the contract's simulation section" in h.stdout
    assert "risk transfer" in h.stdout and "private_consortium: P(loss)" in h.stdout
    js = json.loads(sib("history", "brussels-mentoring-2014", "--json", cwd=tmp_path).stdout)
    assert [(e["kind"], e["seed"], e["worlds"]) for e in js["entries"]] == \
        [("simulation", 11, 3000), ("simulation", 12, 3000), ("simulation", 11, 4000)]
    assert js["entries"][0]["summary"] == sim["summary"] and js["entries"][0]["entry_hash"] == sim["entry_hash"]

    v = sib("verify", cwd=tmp_path)
    assert v.returncode == 0, v.stdout + v.stderr
    assert "3 simulation(s)" in v.stdout and "ok: every hash matches" in v.stdout


def test_a_scenario_is_recorded_with_its_name_and_hash(tmp_path: Path) -> None:
    r = sib("simulate", BRUSSELS, "--scenario", PESSIMISTIC, "--paths", "3000", "--seed", "11", "--json",
            "--db", "ledger.db", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    figures = json.loads(r.stdout)
    assert not (tmp_path / "sib.db").exists()
    [sim] = simulations(tmp_path / "ledger.db")
    assert sim["assumptions"]["source"] == "scenario"
    assert sim["assumptions"]["scenario"] == {"name": "pessimistic", "contract": "brussels-mentoring-2014",
                                              "sha256": sha256(PESSIMISTIC)}
    assert sim["assumptions"]["simulation"] == figures["assumptions"]
    assert sim["assumptions"]["simulation"]["effects"][0]["effect"]["mean"] == "0.02"  # the scenario's, not the contract's
    # the contract's own assumptions, same seed and worlds: other inputs, so another entry
    assert sib("simulate", BRUSSELS, "--paths", "3000", "--seed", "11", "--db", "ledger.db", cwd=tmp_path).returncode == 0
    assert [s["assumptions"]["source"] for s in simulations(tmp_path / "ledger.db")] == ["scenario", "contract"]
    h = sib("history", BRUSSELS, "--db", "ledger.db", cwd=tmp_path)
    assert f"assumptions: scenario 'pessimistic' (sha256 {sha256(PESSIMISTIC)[:16]}...)" in h.stdout


def test_simulations_and_determinations_share_one_ledger_that_verifies(tmp_path: Path) -> None:
    run = sib("run", BRUSSELS, OUTCOMES, "--demo-key", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    sim = sib("simulate", BRUSSELS, "--paths", "3000", "--seed", "5", cwd=tmp_path)
    assert sim.returncode == 0, sim.stderr
    assert "recorded simulation" in sim.stdout
    h = json.loads(sib("history", BRUSSELS, "--json", cwd=tmp_path).stdout)
    assert [e["kind"] for e in h["entries"]] == ["determination", "simulation"]
    assert h["entries"][0]["contract_hash"] == h["entries"][1]["contract_hash"] == sha256(BRUSSELS)
    con = sqlite3.connect(tmp_path / "sib.db")
    assert con.execute("SELECT count(*) FROM contracts").fetchone() == (1,)  # the same text, recorded once
    con.close()
    v = sib("verify", cwd=tmp_path)
    assert v.returncode == 0, v.stdout + v.stderr
    assert "1 determination run(s) recomputed" in v.stdout and "1 simulation(s)" in v.stdout


def test_verify_names_a_tampered_simulation(tmp_path: Path) -> None:
    assert sib("simulate", BRUSSELS, "--paths", "3000", "--seed", "11", cwd=tmp_path).returncode == 0
    con = sqlite3.connect(tmp_path / "sib.db")
    con.execute("DROP TRIGGER simulation_runs_no_update")
    con.execute("UPDATE simulation_runs SET summary = json_set(summary, '$.risk_transfer', 0.99)")
    con.commit()
    con.close()
    bad = sib("verify", cwd=tmp_path)
    assert bad.returncode == 5, bad.stdout
    assert "simulation_runs entry seq 1: its content does not match its hash" in bad.stdout


@pytest.mark.slow
def test_a_run_on_dask_workers_is_the_same_run(tmp_path: Path) -> None:
    """Same seed, same figures on two Dask workers as locally: the local run after it records nothing."""
    dask = sib("simulate", BRUSSELS, "--paths", "5000", "--seed", "11", "--workers", "2", cwd=tmp_path)
    assert dask.returncode == 0, dask.stderr
    assert "recorded simulation" in dask.stdout
    local = sib("simulate", BRUSSELS, "--paths", "5000", "--seed", "11", cwd=tmp_path)
    assert "nothing new recorded" in local.stdout, local.stdout
    [sim] = simulations(tmp_path / "sib.db")
    con = sqlite3.connect(tmp_path / "sib.db")
    command = con.execute("SELECT command FROM provenance WHERE id = ?", (sim["provenance_id"],)).fetchone()[0]
    con.close()
    assert "--workers 2" in command  # how it was run is provenance, not an input


def test_a_database_that_cannot_be_opened_fails_before_simulating(tmp_path: Path) -> None:
    r = sib("simulate", BRUSSELS, "--paths", "3000", "--db", "sqlite:///no/such/folder/x.db", cwd=tmp_path)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "cannot create the database" in r.stderr and "does not exist" in r.stderr
    assert "SimulationResult" not in r.stdout  # it failed before the work, not after


# ------------------------------------------------------------- the store itself ---


def test_record_simulation_once_on_each_database(db_url: str) -> None:  # noqa: F811
    """SQLite and PostgreSQL: the same inputs and figures are recorded once; other figures
    for the same inputs are recorded (a difference is never hidden); the ledger verifies."""
    contract = load_contract(BRUSSELS)
    text = BRUSSELS.read_text(encoding="utf-8")
    assumptions = {"source": "contract", "simulation": {"effects": [{"metric": "worked_90d", "base": "0.30"}]}}
    summary = {"currency": "EUR", "total_payment": {"mean": 89767.64234, "p5": 0.0, "p50": 0.0, "p95": 286660.06},
               "risk_transfer": 0.782144, "break_even_effect": None}
    with Store.open(db_url) as store:
        crec = store.record_contract(text, contract, source_name="brussels.yaml")
        first, created = store.record_simulation_once(crec, seed=7, worlds=3000, assumptions=assumptions,
                                                      summary=summary, command="sib simulate")
        assert created and first.seq == 1 and first.summary == summary and first.assumptions == assumptions
        again, created = store.record_simulation_once(crec, seed=7, worlds=3000, assumptions=dict(assumptions),
                                                      summary=dict(summary))
        assert not created and again == first
        other_figures, created = store.record_simulation_once(crec, seed=7, worlds=3000, assumptions=assumptions,
                                                              summary={**summary, "risk_transfer": 0.5})
        assert created and other_figures.seq == 2
        for change in ({"seed": 8}, {"worlds": 3001},
                       {"assumptions": {**assumptions, "source": "scenario"}}):
            kwargs: dict[str, Any] = {"seed": 7, "worlds": 3000, "assumptions": assumptions, "summary": summary,
                                      **change}
            assert store.record_simulation_once(crec, **kwargs)[1], change
        assert [s.seq for s in store.find_simulations(crec, seed=7, worlds=3000, assumptions=assumptions)] == [1, 2]
        assert [s.seq for s in store.simulations("brussels-mentoring-2014")] == [1, 2, 3, 4, 5]
        assert store.simulations("another-deal") == []
        report = store.verify()
        assert report.ok, report.problems
        assert report.simulations == 5
        assert "risk transfer 78.2%" in store.history("brussels-mentoring-2014").format()


def test_simulate_records_on_postgresql(tmp_path: Path) -> None:
    if not os.environ.get(PG_ENV):
        pytest.skip("PostgreSQL: set " + PG_ENV)
    for url in postgres_database():
        env = {**ENV, "SIB_DATABASE_URL": url}
        r = sib("simulate", BRUSSELS, "--paths", "3000", "--seed", "11", "--json", cwd=tmp_path, env=env)
        assert r.returncode == 0, r.stderr
        figures = json.loads(r.stdout)
        assert "recorded simulation" in r.stderr and "postgresql+psycopg://" in r.stderr
        again = sib("simulate", BRUSSELS, "--paths", "3000", "--seed", "11", cwd=tmp_path, env=env)
        assert "nothing new recorded" in again.stdout, again.stdout + again.stderr
        with Store.open(url) as store:
            [sim] = store.simulations("brussels-mentoring-2014")
        assert (sim.seed, sim.worlds, sim.contract_hash) == (11, 3000, sha256(BRUSSELS))
        assert sim.summary == {k: v for k, v in figures.items() if k not in OMITTED}
        v = sib("verify", cwd=tmp_path, env=env)
        assert v.returncode == 0 and "1 simulation(s)" in v.stdout, v.stdout
        assert not (tmp_path / "sib.db").exists()
