"""Benchmark: determining payments for 1,000,000 validated records.

4 cohorts, 20 quarterly periods (a determination per period), a rate card of 20 outcomes
with prerequisites, claim limits and caps, plus a threshold trigger against a randomised
comparison group.  Target: at most 3 s for ``evaluate`` on a 2-core machine.

Run: ``.venv/bin/python benchmarks/bench_payments.py`` (``make bench`` runs every benchmark).
"""

from __future__ import annotations

import sys
import time
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sib_engine.contract import Contract  # noqa: E402
from sib_engine.evaluation import evaluate  # noqa: E402

RECORDS = 1_000_000
TARGET_SECONDS = 3.0
N_OUTCOMES = 20
N_COHORTS = 4
N_PERIODS = 20


def contract() -> Contract:
    metrics = [{"id": f"o{i:02d}", "name": f"Outcome {i}", "type": "event"} for i in range(N_OUTCOMES)]
    metrics.append({"id": "bed_days", "name": "Bed days", "type": "count", "better": "lower", "unit": "day"})
    outcomes = []
    for i in range(N_OUTCOMES):
        o: dict[str, object] = {"metric": f"o{i:02d}", "price": f"{100 + 37 * i}.{i:02d}", "max_claims": 1 + i % 3}
        if i % 5 == 4:
            o["requires"] = [f"o{i - 1:02d}"]
        if i % 7 == 0:
            o["cap_units"] = 4000
        outcomes.append(o)
    body = {
        "format": "sib-contract/1",
        "id": "bench",
        "title": "Benchmark: 20-outcome rate card and a comparison-group trigger",
        "currency": "EUR",
        "term": {"start": "2020-01-01", "end": "2024-12-31"},
        "parties": [
            {"id": "city", "name": "City", "role": "payer"},
            {"id": "state", "name": "State", "role": "payer"},
            {"id": "ngo", "name": "Provider", "role": "provider"},
        ],
        "payers": [{"party": "city", "share": "0.6"}, {"party": "state", "share": "0.4"}],
        "metrics": metrics,
        "baselines": [{"id": "rct", "kind": "comparison_group", "metric": "bed_days", "design": "randomised"}],
        "triggers": [
            {"id": "card", "kind": "rate_card", "clause": "Schedule 1", "outcomes": outcomes,
             "cap_per_participant": "25000", "cap_per_period": "2500000"},
            {"id": "beds", "kind": "threshold", "clause": "Schedule 2", "pays": "per_unit",
             "effect": {"metric": "bed_days", "baseline": "rct", "measure": "reduction",
                        "gate": {"test": "welch_t", "level": "0.05", "rule": "lower_bound"}},
             "schedule": {"interpolation": "step", "points": [{"effect": "0", "value": "85"}]}},
        ],
        "caps": {"total": "400000000"},
        "timeline": {
            "periods": {"start": "2020-01-01", "months": 3, "count": N_PERIODS},
            "cohorts": [
                {"id": f"c{i + 1}", "enrolment_start": f"{2020 + i}-01-01", "enrolment_end": f"{2020 + i}-12-31"}
                for i in range(N_COHORTS)
            ],
        },
    }
    return Contract.model_validate(body)


def data(seed: int = 7) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n_treat, n_comp = 24_000, 6_000
    n = n_treat + n_comp
    cohort = rng.integers(0, N_COHORTS, n)
    start = np.array([np.datetime64(f"{2020 + c}-01-01") for c in range(N_COHORTS)])
    enrol_day = start[cohort] + rng.integers(0, 365, n).astype("timedelta64[D]")
    pid = np.array([f"p{i:06d}" for i in range(n)], dtype=object)
    group = np.where(np.arange(n) < n_treat, "treatment", "comparison")
    end = np.datetime64("2024-12-31")
    n_out = RECORDS - n
    n_beds = n  # one bed-day record per participant
    n_events = n_out - n_beds
    who = rng.integers(0, n_treat, n_events)
    metric = rng.integers(0, N_OUTCOMES, n_events)
    span = (end - enrol_day[who]).astype(np.int64)
    day = enrol_day[who] + (rng.random(n_events) * span).astype(np.int64).astype("timedelta64[D]")
    bdays = np.where(group == "treatment", rng.poisson(8, n), rng.poisson(10, n))
    bday = enrol_day + rng.integers(0, 300, n).astype("timedelta64[D]")
    bday = np.minimum(bday, end)
    metric_names = np.array([f"o{i:02d}" for i in range(N_OUTCOMES)], dtype=object)
    frames = [
        pd.DataFrame({"participant_id": pid, "metric": "enrolment", "date": enrol_day, "value": np.nan,
                      "cohort": np.array([f"c{c + 1}" for c in cohort], dtype=object), "group": group}),
        pd.DataFrame({"participant_id": pid[who], "metric": metric_names[metric], "date": day, "value": 1.0}),
        pd.DataFrame({"participant_id": pid, "metric": "bed_days", "date": bday, "value": bdays.astype(float)}),
    ]
    df = pd.concat(frames, ignore_index=True)
    df.insert(0, "contract_version", 1)
    df.insert(0, "contract_id", "bench")
    df["date"] = df["date"].astype("datetime64[s]")
    return df


def main() -> int:
    c = contract()
    t0 = time.perf_counter()
    df = data()
    t1 = time.perf_counter()
    ev = evaluate(c, df, as_of=date(2024, 12, 31))
    t2 = time.perf_counter()
    evaluate(c, df, as_of=date(2024, 12, 31))
    t3 = time.perf_counter()
    best = min(t2 - t1, t3 - t2)
    print(f"bench_payments: {len(df):,} records, {N_COHORTS} cohorts, {N_PERIODS} periods, "
          f"{N_OUTCOMES}-outcome rate card + comparison-group trigger")
    print(f"  data generated in {t1 - t0:.2f} s (not timed)")
    print(f"  evaluate: {t2 - t1:.2f} s (first), {t3 - t2:.2f} s (second); "
          f"{len(ev.determinations)} determinations, {len(ev.lines):,} payment lines, "
          f"total {ev.total:,} {ev.currency}")
    ok = best <= TARGET_SECONDS
    print(f"  target <= {TARGET_SECONDS:.1f} s: {'met' if ok else 'NOT met'} (best {best:.2f} s)")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
