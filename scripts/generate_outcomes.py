"""Write the example measured data: outcomes/<contract stem>.csv for every contracts/*.yaml.

The data are synthetic (sib_engine.synth): made-up participants, plausible rates, the
treatment group doing better than any comparison group.  The same contracts give the same
bytes on every run: each file's seed is SEED plus the CRC-32 of the contract's file stem, so
adding a contract does not change the others' data.

    python scripts/generate_outcomes.py            # every contract
    python scripts/generate_outcomes.py contracts/rotterdam_youth_2013.yaml

The Rotterdam and Brussels examples are written in the Dutch/Belgian export style
(';' separator, decimal comma, DD-MM-YYYY dates, UTF-8 with BOM) to show that reader.
"""

from __future__ import annotations

import sys
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sib_engine.loader import load_contract  # noqa: E402
from sib_engine.outcome_io import write_outcomes_csv  # noqa: E402
from sib_engine.synth import synthesise  # noqa: E402

SEED = 20150401
"""The base seed of every example file (stated in outcomes/README.md too)."""

NL_STYLE = ("rotterdam_", "brussels_")
"""Contract stems whose example data are written in the Dutch/Belgian CSV style."""


def seed_for(stem: str) -> int:
    return SEED + zlib.crc32(stem.encode("utf-8"))


def style_for(stem: str) -> str:
    return "nl" if stem.startswith(NL_STYLE) else "iso"


def generate(contract_path: Path, out_dir: Path) -> Path:
    contract = load_contract(contract_path)
    stem = contract_path.stem
    frame = synthesise(contract, seed=seed_for(stem))
    out = out_dir / f"{stem}.csv"
    write_outcomes_csv(frame, out, style=style_for(stem))  # type: ignore[arg-type]
    return out


def main(argv: list[str]) -> int:
    paths = [Path(a) for a in argv] or sorted((ROOT / "contracts").glob("*.yaml"))
    out_dir = ROOT / "outcomes"
    out_dir.mkdir(exist_ok=True)
    for p in paths:
        out = generate(p, out_dir)
        lines = out.read_bytes().count(b"\n") - 1
        print(f"{out.relative_to(ROOT)}: {lines} rows (seed {seed_for(p.stem)}, style {style_for(p.stem)})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
