"""Benchmark: record a determination of 1,000,000 records and about 10,000 payment lines.

A synthetic deal (26 municipalities paying for their residents, a rate card of 10 outcomes,
40 quarterly periods) and 1,000,000 synthetic measured rows (sib_engine.synth, seeded; not
timed) give a determination of about 10,000 payment lines.  For each database (SQLite file;
PostgreSQL when ``SIB_TEST_POSTGRES_URL`` names a server, as ``scripts/with-postgres.sh``
sets it) it times, on a new database:

* ``open``: creating the schema (the migrations);
* ``submission``: recording the 1,000,000 accepted rows (stored form, SHA-256 of the rows,
  bulk insert: ``executemany`` on SQLite, ``COPY`` on PostgreSQL), in one transaction;
* ``determination``: evaluating them, the waterfall, and appending the run, its
  determinations and payment lines to the hash chain (split: evaluate / waterfall / write);
* ``verify``: checking the chain and every stored input, and recomputing the determination.

    .venv/bin/python benchmarks/bench_storage.py [--rows N] [--backend sqlite|postgresql|both]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import uuid
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable, Iterator

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import pandas as pd  # noqa: E402

from sib_engine.contract import Contract  # noqa: E402
from sib_engine.loader import parse_contract  # noqa: E402
from sib_engine.storage import Store  # noqa: E402
from sib_engine.storage import store as store_module  # noqa: E402
from sib_engine.storage.frames import frame_hash, stored_form  # noqa: E402
from sib_engine.synth import synthesise  # noqa: E402

PG_ENV = "SIB_TEST_POSTGRES_URL"
MUNICIPALITIES, OUTCOMES, PERIODS = 26, 10, 40


def bench_contract() -> tuple[str, Contract]:
    m, o = MUNICIPALITIES, OUTCOMES
    lines = ["format: sib-contract/1", "id: storage-bench", "title: Storage benchmark (synthetic)", "currency: EUR",
             "term: {start: 2020-01-01, end: 2029-12-31}", "parties:",
             "  - {id: fund, name: Fund, role: investor}", "  - {id: club, name: Club, role: provider}"]
    lines += [f"  - {{id: m{i:02d}, name: Municipality {i:02d}, role: payer, municipality_code: GM{i:04d}}}"
              for i in range(m)]
    lines += ["payers:"] + [f"  - {{party: m{i:02d}, residence: [GM{i:04d}]}}" for i in range(m)]
    lines += ["metrics:"] + [f"  - {{id: o{j:02d}, name: Outcome {j:02d}, type: event}}" for j in range(o)]
    lines += ["triggers:", "  - id: card", "    kind: rate_card", "    clause: Schedule 1", "    outcomes:"]
    lines += [f"      - {{metric: o{j:02d}, price: \"{100 + j}.00\"}}" for j in range(o)]
    lines += ["timeline:", f"  periods: {{start: 2020-01-01, months: 3, count: {PERIODS}}}", "  cohorts:",
              "    - {id: c1, enrolment_start: 2020-01-01, enrolment_end: 2028-12-31}"]
    text = "\n".join(lines) + "\n"
    return text, parse_contract(text)


def accepted_rows(contract: Contract, rows: int) -> pd.DataFrame:
    per = max(1, int(rows / 8.2) + 1)
    frame = synthesise(contract, seed=7, participants=per).head(rows).reset_index(drop=True)
    frame["date"] = pd.to_datetime(frame["date"])
    frame["row"] = range(1, len(frame) + 1)
    frame["flags"] = ""
    return frame


@contextmanager
def postgres_database(server: str) -> Iterator[str]:
    import psycopg
    from sqlalchemy.engine import make_url

    admin = make_url(server).set(drivername="postgresql").render_as_string(hide_password=False)
    name = f"sib_bench_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield make_url(server).set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def timed(fn: Callable[..., Any], log: dict[str, float], key: str) -> Callable[..., Any]:
    def wrapper(*a: Any, **k: Any) -> Any:
        t = time.perf_counter()
        try:
            return fn(*a, **k)
        finally:
            log[key] = log.get(key, 0.0) + time.perf_counter() - t
    return wrapper


def run(url: str, label: str, text: str, contract: Contract, frame: pd.DataFrame) -> None:
    log: dict[str, float] = {}
    adapter = store_module.adapter
    evaluate, allocate = adapter.evaluate, adapter.allocate
    adapter.evaluate = timed(evaluate, log, "evaluate")  # type: ignore[method-assign]
    adapter.allocate = timed(allocate, log, "waterfall")  # type: ignore[method-assign]
    try:
        t = time.perf_counter()
        store = Store.open(url)
        t_open = time.perf_counter() - t
        crec = store.record_contract(text, contract, source_name="bench.yaml")
        validation = SimpleNamespace(
            rows=len(frame), accepted=frame, quarantined=pd.DataFrame(), n_flagged=0, hold=False, hold_reasons=(),
            reasons={}, checks=pd.DataFrame(), failures=pd.DataFrame(), tolerance="0.05", key_id="bench",
            sources=("bench",), timings={},
        )
        t = time.perf_counter()
        stored = stored_form(frame)
        t_form = time.perf_counter() - t
        t = time.perf_counter()
        frame_hash(stored)
        t_hash = time.perf_counter() - t
        t = time.perf_counter()
        sub, _ = store.record_submission(crec, validation, content_hash="0" * 63 + "1", source="bench")
        t_sub = time.perf_counter() - t
        log.clear()
        t = time.perf_counter()
        rec = store.record_determination(crec, contract, sub, None, data=stored)
        t_det = time.perf_counter() - t
        ev_s, wf_s = log.get("evaluate", 0.0), log.get("waterfall", 0.0)
        log.clear()
        t = time.perf_counter()
        report = store.verify()
        t_verify = time.perf_counter() - t
        store.close()
    finally:
        adapter.evaluate = evaluate  # type: ignore[method-assign]
        adapter.allocate = allocate  # type: ignore[method-assign]
    assert report.ok, report.format()
    print(f"{label}:")
    print(f"  open (create schema)   {t_open:8.2f} s")
    print(f"  submission             {t_sub:8.2f} s  ({len(frame):,} rows; of which stored form ~{t_form:.2f} s, "
          f"SHA-256 of the rows ~{t_hash:.2f} s, the rest the bulk insert)")
    print(f"  determination          {t_det:8.2f} s  ({rec.run.n_lines:,} payment lines, "
          f"{rec.run.n_determinations} determinations, {rec.run.n_lines + rec.run.n_determinations + 1:,} "
          f"chained entries; evaluate {ev_s:.2f} s, waterfall {wf_s:.2f} s, "
          f"reading the ledger and writing {t_det - ev_s - wf_s:.2f} s)")
    print(f"  verify (recompute all) {t_verify:8.2f} s")
    print(f"  total recording        {t_sub + t_det:8.2f} s", flush=True)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--backend", choices=("sqlite", "postgresql", "both"), default="both")
    args = ap.parse_args()
    text, contract = bench_contract()
    t = time.perf_counter()
    frame = accepted_rows(contract, args.rows)
    print(f"generated {len(frame):,} measured rows in {time.perf_counter() - t:.1f} s (not timed below)", flush=True)
    if args.backend in ("sqlite", "both"):
        with tempfile.TemporaryDirectory() as d:
            path = Path(d) / "bench.db"
            run(f"sqlite:///{path}", "SQLite (file, WAL, synchronous=FULL)", text, contract, frame)
            print(f"  database file          {path.stat().st_size / 1e6:8.1f} MB")
    if args.backend in ("postgresql", "both"):
        server = os.environ.get(PG_ENV)
        if not server:
            print(f"PostgreSQL: skipped ({PG_ENV} is not set; run under scripts/with-postgres.sh, as make bench does)")
        else:
            with postgres_database(server) as url:
                run(url, "PostgreSQL (COPY; throwaway server, fsync off)", text, contract, frame)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
