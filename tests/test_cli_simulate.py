"""``sib simulate``: the real command, reproducible by seed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parent.parent


def test_simulate_json_shape_and_same_seed_same_result(sib: Callable[..., subprocess.CompletedProcess[str]], tmp_path: Path) -> None:
    args = ("simulate", "contracts/brussels_mentoring_2014.yaml", "--paths", "5000", "--seed", "11", "--json")
    first, second = sib(*args), sib(*args)
    assert first.returncode == 0, first.stderr
    out = json.loads(first.stdout)
    assert out["paths"] == 5000 and out["seed"] == 11
    assert {"mean", "p5", "p50", "p95"} <= set(out["total_payment"])
    assert out["funders"] and all("p_loss" in f for f in out["funders"].values())
    assert 0 <= out["risk_transfer"] <= 1 and 0 <= out["p_pay_if_no_effect"] <= 1
    assert first.stdout == second.stdout
    other = sib("simulate", "contracts/brussels_mentoring_2014.yaml", "--paths", "5000", "--seed", "12", "--json")
    assert json.loads(other.stdout)["total_payment"] != out["total_payment"]


def test_simulate_refuses_both_workers_and_scheduler(sib: Callable[..., subprocess.CompletedProcess[str]]) -> None:
    r = sib("simulate", "contracts/brussels_mentoring_2014.yaml", "--workers", "2", "--scheduler", "tcp://127.0.0.1:1")
    assert r.returncode == 2 and "not both" in r.stderr


def test_simulate_without_a_section_is_a_clear_error(sib: Callable[..., subprocess.CompletedProcess[str]]) -> None:
    r = sib("simulate", "contracts/zaanstad_placement_2015.yaml", "--paths", "100")
    assert r.returncode == 1 and "Traceback" not in r.stderr
