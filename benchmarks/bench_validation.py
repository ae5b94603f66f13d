"""Benchmark: validate 1,000,000 participant-outcome rows of an example contract.

Generates the rows with sib_engine.synth (seeded; not timed), validates them once to warm up
(importing great-expectations and building its context: timed apart), then times
validate() on the 1,000,000 rows: the total, the seconds spent inside great-expectations'
``batch.validate`` and our own overhead (parsing, pseudonymising, joining rows to their
enrolment, mapping failures back, building the result), and the peak memory of the process.

Targets (2-core machine): total <= 2.5 s, overhead <= great-expectations time, peak < 2 GB.

    .venv/bin/python benchmarks/bench_validation.py [--rows N] [--contract PATH] [--text]

``--text`` validates the rows as text (as read from a CSV), so that parsing is timed too.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sib_engine.loader import load_contract  # noqa: E402
from sib_engine.measured import plan_checks  # noqa: E402
from sib_engine.outcome_io import RawOutcomes, format_outcomes  # noqa: E402
from sib_engine.privacy import PseudonymKey  # noqa: E402
from sib_engine.synth import synthesise  # noqa: E402
from sib_engine.validation import validate  # noqa: E402

SEED = 1
CONTRACT = ROOT / "contracts" / "utrecht_training_kitchen_2015.yaml"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--contract", type=Path, default=CONTRACT)
    ap.add_argument("--text", action="store_true", help="validate text cells (CSV-like): parsing included")
    args = ap.parse_args()
    contract = load_contract(args.contract)
    key = PseudonymKey.demo()
    n_checks = len(plan_checks(contract))

    t = time.perf_counter()
    small = synthesise(contract, seed=SEED, participants=20)
    rows_per = len(small) / (20 * len(contract.timeline.cohorts))
    per_cohort = int(args.rows / rows_per / len(contract.timeline.cohorts) * 1.05) + 1
    frame = synthesise(contract, seed=SEED, participants=per_cohort).head(args.rows).reset_index(drop=True)
    if args.text:
        frame = format_outcomes(frame)
    gen = time.perf_counter() - t

    t = time.perf_counter()
    validate(contract, small, key=key)
    warm = time.perf_counter() - t

    data = RawOutcomes.from_frame(frame, name="benchmark")
    result = validate(contract, data, key=key)
    tm = result.timings
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    ratio = tm["overhead"] / tm["great_expectations"]
    print(f"bench_validation: contract {contract.id}, {result.rows:,} rows"
          f" ({'text' if args.text else 'typed'} cells), {n_checks} generated checks"
          f" + {len(result.checks) - n_checks} own checks")
    print(f"  generate data          {gen:8.2f} s  (not part of validation)")
    print(f"  warm-up (import GX)    {warm:8.2f} s  (once per process)")
    print(f"  validation total       {tm['total']:8.2f} s  (target <= 2.5 s)")
    print(f"  inside great-expect.   {tm['great_expectations']:8.2f} s")
    print(f"  our overhead           {tm['overhead']:8.2f} s  (ratio overhead/GX {ratio:.2f}, target <= 1)")
    for k, v in tm.items():
        if k.startswith("step_"):
            print(f"    {k[5:]:22s} {v:8.2f} s")
    print(f"  peak memory (maxrss)   {peak_mb:8.0f} MB (target < 2048 MB)")
    print(f"  accepted {result.n_accepted:,}  quarantined {result.n_quarantined:,}  hold {result.hold}")
    ok = tm["total"] <= 2.5 and ratio <= 1 and peak_mb < 2048
    print(f"  targets {'met' if ok else 'NOT met'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
