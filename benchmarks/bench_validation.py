"""Benchmark: validate 1,000,000 participant-outcome rows of an example contract.

Generates the rows with sib_engine.synth (seeded; not timed), validates a small submission
once to warm up (importing great-expectations and building its context: timed apart), then
times one validate() of the 1,000,000 rows in that fresh process, as a user's run would be:

* the total;
* great-expectations' own time: only the time inside ``batch.validate`` (building the
  suite, handing GX the frame with ``get_batch`` -- which fingerprints the whole frame --
  and reading its results back count as our overhead);
* our overhead (total - GX) and its ratio to the GX time;
* the seconds of each stage of validate() (parse, pseudonymise, derive, compact, gx_batch,
  great_expectations, gx_results, map_failures, restatements, assemble);
* peak memory of the process (maxrss) and rows per second.

Targets (2-core machine): total <= 2.5 s, overhead <= great-expectations time, peak < 2 GB.
The machine may be busy with other work: the load average is printed with the figures.

    .venv/bin/python benchmarks/bench_validation.py [--rows N] [--contract PATH] [--text] [--runs K]

``--text`` validates the rows as text (as read from a CSV), so that parsing is timed too.
``--runs K`` repeats the whole measurement in K fresh processes and prints the best and the
median of the totals, overheads and ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
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
TARGET_TOTAL, TARGET_RATIO, TARGET_PEAK_MB = 2.5, 1.0, 2048


def load() -> str:
    return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())


def measure(args: argparse.Namespace) -> dict[str, float]:
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
    before = load()
    cpu = time.process_time()
    result = validate(contract, data, key=key)
    cpu = time.process_time() - cpu
    after = load()
    tm = result.timings
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    gx, total, overhead = tm["great_expectations"], tm["total"], tm["overhead"]
    ratio = overhead / gx
    print(f"bench_validation: contract {contract.id}, {result.rows:,} rows"
          f" ({'text' if args.text else 'typed'} cells), {n_checks} generated checks"
          f" + {len(result.checks) - n_checks} own checks")
    print(f"  {before} (before), {after} (after) on {os.cpu_count()} CPUs")
    print(f"  generate data          {gen:8.2f} s  (not part of validation)")
    print(f"  warm-up (import GX)    {warm:8.2f} s  (once per process)")
    print(f"  validation total       {total:8.2f} s  (target <= {TARGET_TOTAL} s)"
          f"  {result.rows / total:,.0f} rows/s")
    print(f"  validation CPU time    {cpu:8.2f} s  (of this process; wall time above)")
    print(f"  inside great-expect.   {gx:8.2f} s  (only batch.validate)")
    print(f"  our overhead           {overhead:8.2f} s  (ratio overhead/GX {ratio:.2f}, target <= {TARGET_RATIO:g})")
    stages = {k[5:]: v for k, v in tm.items() if k.startswith("step_") and v >= 0.0005}
    print("  stages: " + ", ".join(f"{k} {v:.2f}" for k, v in stages.items()))
    print(f"  peak memory (maxrss)   {peak_mb:8.0f} MB (target < {TARGET_PEAK_MB} MB)")
    print(f"  accepted {result.n_accepted:,}  quarantined {result.n_quarantined:,}  hold {result.hold}")
    ok = total <= TARGET_TOTAL and ratio <= TARGET_RATIO and peak_mb < TARGET_PEAK_MB
    print(f"  targets {'met' if ok else 'NOT met'}", flush=True)
    return {"total": total, "cpu": cpu, "great_expectations": gx, "overhead": overhead, "ratio": ratio,
            "peak_mb": peak_mb}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--contract", type=Path, default=CONTRACT)
    ap.add_argument("--text", action="store_true", help="validate text cells (CSV-like): parsing included")
    ap.add_argument("--runs", type=int, default=1, help="repeat in this many fresh processes; report best and median")
    ap.add_argument("--json", type=Path, help=argparse.SUPPRESS)  # where a child run writes its figures
    args = ap.parse_args()
    if args.runs <= 1:
        figures = measure(args)
        if args.json:
            args.json.write_text(json.dumps(figures))
        return 0
    runs: list[dict[str, float]] = []
    out = Path(os.environ.get("TMPDIR", "/tmp")) / f"bench_validation_{os.getpid()}.json"
    child = [sys.executable, __file__, "--rows", str(args.rows), "--contract", str(args.contract), "--json", str(out)]
    if args.text:
        child.append("--text")
    try:
        for i in range(args.runs):
            print(f"== run {i + 1} of {args.runs}", flush=True)
            subprocess.run(child, check=True)
            runs.append(json.loads(out.read_text()))
    finally:
        out.unlink(missing_ok=True)
    print(f"== {args.runs} runs ({load()}):")
    for name, unit in (("total", "s"), ("cpu", "s"), ("great_expectations", "s"), ("overhead", "s"), ("ratio", ""),
                       ("peak_mb", "MB")):
        values = [r[name] for r in runs]
        print(f"  {name:20s} best {min(values):8.2f} {unit:2s} median {statistics.median(values):8.2f} {unit}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
