"""Run every benchmarks/bench_*.py in turn, each in its own process (``make bench``)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> int:
    failed = 0
    for bench in sorted(HERE.glob("bench_*.py")):
        print(f"== {bench.name}", flush=True)
        failed += subprocess.call([sys.executable, str(bench)]) != 0
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
