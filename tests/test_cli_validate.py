"""``sib validate``: the real command on example and broken data."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parent.parent


def test_example_data_validate_cleanly_with_json_counts(sib: Callable[..., subprocess.CompletedProcess[str]]) -> None:
    r = sib("validate", "contracts/brussels_mentoring_2014.yaml", "outcomes/brussels_mentoring_2014.csv",
            "--demo-key", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["rows"] == out["accepted"] + out["quarantined"] and out["rows"] > 0
    assert out["quarantined"] == 0 and out["reasons"] == {} and out["hold"] is False


def test_broken_data_go_on_hold_with_reasons_and_quarantine_file(sib: Callable[..., subprocess.CompletedProcess[str]], tmp_path: Path) -> None:
    q = tmp_path / "q.csv"
    r = sib("validate", "contracts/utrecht_training_kitchen_2015.yaml",
            "tests/data/invalid/claim_limit_exceeded.csv", "--demo-key", "--json", "--quarantine", str(q))
    assert r.returncode == 4, r.stderr
    out = json.loads(r.stdout)
    assert out["hold"] is True and out["quarantined"] > 0
    assert out["rows"] == out["accepted"] + out["quarantined"]
    assert sum(1 for _ in q.open()) == out["quarantined"] + 1  # header + one line per quarantined row
    assert "Traceback" not in r.stderr


def test_without_a_key_the_command_says_how_to_set_one(sib: Callable[..., subprocess.CompletedProcess[str]]) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "sib_engine", "validate", "contracts/brussels_mentoring_2014.yaml",
         "outcomes/brussels_mentoring_2014.csv"],
        capture_output=True, text=True, cwd=ROOT, timeout=300,
        env={"PATH": "/usr/bin:/bin", "HOME": "/nonexistent"},
    )
    assert r.returncode == 1
    assert "SIB_PSEUDONYM_KEY" in r.stderr and "Traceback" not in r.stderr


def test_missing_data_file_is_a_clear_error(sib: Callable[..., subprocess.CompletedProcess[str]]) -> None:
    r = sib("validate", "contracts/brussels_mentoring_2014.yaml", "outcomes/nope.csv", "--demo-key")
    assert r.returncode == 1
    assert "nope.csv" in r.stderr and "Traceback" not in r.stderr
