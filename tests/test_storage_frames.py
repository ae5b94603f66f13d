"""Determinations are made from the accepted rows in their stored form, so the stored form
must evaluate exactly as the validation's own frame does, for every example deal."""

from __future__ import annotations

from pathlib import Path

import pytest

from sib_engine.evaluation import evaluate
from sib_engine.loader import load_contract
from sib_engine.privacy import PseudonymKey
from sib_engine.storage.frames import frame_hash, stored_form
from sib_engine.validation import validate

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "contracts").glob("*.yaml"))


@pytest.mark.slow
@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_the_stored_form_evaluates_like_the_validated_frame(path: Path) -> None:
    contract = load_contract(path)
    v = validate(contract, ROOT / "outcomes" / f"{path.stem}.csv", key=PseudonymKey.demo())
    stored = stored_form(v.accepted)
    assert evaluate(contract, stored).to_json() == evaluate(contract, v).to_json()
    assert stored_form(stored).equals(stored) and frame_hash(stored_form(stored)) == frame_hash(stored)
