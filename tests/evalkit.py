"""Builders for evaluation tests: small contracts as Python data, small data frames."""

from __future__ import annotations

import copy
from datetime import date
from decimal import Decimal
from typing import Any, Iterable

import pandas as pd

from sib_engine import consistency
from sib_engine.contract import Contract

BASE: dict[str, Any] = {
    "format": "sib-contract/1",
    "id": "t",
    "title": "Test contract",
    "currency": "EUR",
    "term": {"start": "2024-01-01", "end": "2025-12-31"},
    "parties": [
        {"id": "city", "name": "City", "role": "payer"},
        {"id": "city2", "name": "Second city", "role": "payer"},
        {"id": "fund", "name": "Top-up fund", "role": "top_up_fund"},
        {"id": "inv", "name": "Investor", "role": "investor"},
        {"id": "ngo", "name": "Provider", "role": "provider"},
    ],
    "payers": [{"party": "city", "share": "1"}],
    "metrics": [
        {"id": "start", "name": "Start", "type": "event"},
        {"id": "job", "name": "Job", "type": "event"},
        {"id": "employed", "name": "Employed", "type": "binary"},
        {"id": "bed_days", "name": "Bed days", "type": "count", "better": "lower", "unit": "day"},
        {"id": "pre_bed_days", "name": "Bed days before", "type": "count", "unit": "day"},
    ],
    "triggers": [],
    "timeline": {
        "periods": {"start": "2024-01-01", "months": 3, "count": 8},
        "cohorts": [
            {"id": "c1", "enrolment_start": "2024-01-01", "enrolment_end": "2024-12-31"},
            {"id": "c2", "enrolment_start": "2024-01-01", "enrolment_end": "2024-12-31"},
        ],
    },
}


def contract(**changes: Any) -> Contract:
    """The base contract with top-level keys replaced; checked for consistency."""
    body = copy.deepcopy(BASE)
    body.update(copy.deepcopy(changes))
    c = Contract.model_validate(body)
    problems = consistency.check(c)
    assert not problems, [p.format() for p in problems]
    return c


def frame(rows: Iterable[tuple[Any, ...]], contract_id: str = "t") -> pd.DataFrame:
    """Rows of (participant, metric, date, value, cohort, group, municipality, age, prior_months);
    trailing fields may be left out."""
    cols = ["participant_id", "metric", "date", "value", "cohort", "group", "municipality", "age", "prior_months"]
    full = [tuple(r) + (None,) * (len(cols) - len(r)) for r in rows]
    df = pd.DataFrame(full, columns=cols)
    df.insert(0, "contract_version", 1)
    df.insert(0, "contract_id", contract_id)
    df["date"] = pd.to_datetime(df["date"])
    df["value"] = [None if v is None else Decimal(str(v)) for v in df["value"]]
    return df


def enrol(ids: Iterable[str], cohort: str = "c1", on: str = "2024-01-10", group: str | None = None,
          municipality: str | None = None, age: int | None = None, prior: int | None = None) -> list[tuple[Any, ...]]:
    return [(p, "enrolment", on, None, cohort, group, municipality, age, prior) for p in ids]


def d(s: str) -> date:
    return date.fromisoformat(s)
