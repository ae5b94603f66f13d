"""Shared helpers of the storage tests: databases (SQLite and PostgreSQL), demo data.

The ``db_url`` fixture runs a test on a SQLite file in ``tmp_path`` and on a fresh database
of the PostgreSQL server named by ``SIB_TEST_POSTGRES_URL`` (``make test`` starts one with
``scripts/with-postgres.sh``); without that variable the PostgreSQL cases are skipped.
"""

from __future__ import annotations

import os
import uuid
from datetime import date, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Iterator

import numpy as np
import pandas as pd
import pytest

from sib_engine.loader import EXAMPLE, parse_contract

PG_ENV = "SIB_TEST_POSTGRES_URL"
PG_SKIP = f"PostgreSQL: set {PG_ENV} (make test starts a throwaway server with scripts/with-postgres.sh)"

# The loader's example contract with a loan funding it, and restated rows taken in (flagged)
# as corrections.
DEMO_TEXT = EXAMPLE + """\
capital:
  tranches:
    - {id: loan, kind: senior_loan, funder: fund, commitment: "20000.00", coupon: {rate: "0.05"}}
  waterfall:
    - {pay: interest, tranche: loan}
    - {pay: principal, tranche: loan}
    - {pay: residual, split: {club: 1}}
data_quality:
  severity: {restated_row: warning}
"""
DEMO = parse_contract(DEMO_TEXT)


def _admin_dsn(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def postgres_database() -> Iterator[str]:
    """A fresh, empty database on the test server (dropped afterwards)."""
    server = os.environ.get(PG_ENV)
    if not server:
        pytest.skip(PG_SKIP)
    import psycopg
    from sqlalchemy.engine import make_url

    name = f"sib_test_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(_admin_dsn(server), autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield make_url(server).set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(_admin_dsn(server), autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'sib.db'}"
    else:
        yield from postgres_database()


def demo_frame(participants: int = 20, *, seed: int = 0, jobs: float = 0.6,
               drop_jobs: int = 0, late_jobs: int = 0) -> pd.DataFrame:
    """Measured data for :data:`DEMO`: participants enrolled in 2024, a share with a job
    (dated 1-200 days later).  ``drop_jobs`` removes the first jobs (a restatement that
    lowers the count); ``late_jobs`` adds jobs for participants who had none."""
    rng = np.random.default_rng(seed)
    start = date(2024, 1, 1)
    rows: list[dict[str, Any]] = []
    has_job: list[int] = []
    for i in range(participants):
        pid = f"P{i:05d}"
        enrol = start + timedelta(days=int(rng.integers(0, 360)))
        rows.append({"participant_id": pid, "metric": "enrolment", "date": enrol, "value": None, "cohort": "c1"})
        if rng.random() < jobs:
            has_job.append(i)
            rows.append({"participant_id": pid, "metric": "job", "date": enrol + timedelta(days=int(rng.integers(1, 200))),
                         "value": 1, "cohort": None})
    frame = pd.DataFrame(rows)
    if drop_jobs:
        gone = {f"P{i:05d}" for i in has_job[:drop_jobs]}
        frame = frame[~((frame["metric"] == "job") & frame["participant_id"].isin(gone))]
    if late_jobs:
        extra = [i for i in range(participants) if i not in set(has_job)][:late_jobs]
        more = [{"participant_id": f"P{i:05d}", "metric": "job", "date": date(2025, 3, 1), "value": 1, "cohort": None}
                for i in extra]
        frame = pd.concat([frame, pd.DataFrame(more)], ignore_index=True)
    frame.insert(0, "contract_version", 1)
    frame.insert(0, "contract_id", "demo")
    frame["date"] = frame["date"].astype(str)
    return frame.reset_index(drop=True)


def write_csv(frame: pd.DataFrame, path: Path) -> Path:
    frame.to_csv(path, index=False)
    return path


def fake_validation(accepted: pd.DataFrame, *, key_id: str = "test-key") -> Any:
    """What the store reads of a validation result, for tests that skip great-expectations
    (``accepted`` must already be typed: dates as datetimes, values as numbers)."""
    return SimpleNamespace(
        rows=len(accepted), accepted=accepted, quarantined=pd.DataFrame(), n_flagged=0, hold=False,
        hold_reasons=(), reasons={}, checks=pd.DataFrame(), failures=pd.DataFrame(), tolerance="0.05",
        key_id=key_id, sources=("<test>",), timings={},
    )


def typed(frame: pd.DataFrame) -> pd.DataFrame:
    """``demo_frame`` typed as a validation's accepted rows would be."""
    out = frame.copy()
    out["date"] = pd.to_datetime(out["date"])
    out["value"] = pd.to_numeric(out["value"])
    out["row"] = np.arange(1, len(out) + 1)
    out["flags"] = ""
    return out
