"""Shared test fixtures."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Callable

import pytest

ROOT = Path(__file__).resolve().parent.parent
CONTRACTS = sorted((ROOT / "contracts").glob("*.yaml"))


@pytest.fixture
def root() -> Path:
    return ROOT


def _run_sib(*args: str) -> "subprocess.CompletedProcess[str]":
    """The real ``sib`` command (as ``python -m sib_engine``), run from the repository root."""
    return subprocess.run(
        [sys.executable, "-m", "sib_engine", *args], capture_output=True, text=True, cwd=ROOT, timeout=300
    )


@pytest.fixture
def sib() -> Callable[..., "subprocess.CompletedProcess[str]"]:
    return _run_sib
