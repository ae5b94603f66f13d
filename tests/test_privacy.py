"""Pseudonymisation: keyed, stable, and no raw identifier anywhere in a result."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sib_engine.loader import load_contract
from sib_engine.privacy import PseudonymKey, PseudonymKeyError
from sib_engine.validation import validate

DATA = Path(__file__).parent / "data"
CONTRACT = load_contract(DATA / "contracts" / "kitchen.yaml")
RAW_IDS = ("A001", "A002", "A003", "B001", "A999", "Zo")


def test_same_key_same_pseudonym_and_different_key_different() -> None:
    k1 = PseudonymKey(b"k" * 32)
    k2 = PseudonymKey(b"k" * 31 + b"x")
    assert k1.pseudonyms(["A001"]) == PseudonymKey(b"k" * 32).pseudonyms(["A001"])
    assert k1.pseudonyms(["A001"]) != k2.pseudonyms(["A001"])
    assert k1.pseudonyms(["A001", "A002"])[0] != k1.pseudonyms(["A002"])[0]
    assert k1.id != k2.id and "k" * 16 not in repr(k1)


def test_pseudonym_is_hmac_sha256() -> None:
    import hashlib
    import hmac

    key = b"0123456789abcdef0123"
    expected = hmac.new(key, b"A001", hashlib.sha256).hexdigest()[:20]
    assert PseudonymKey(key).pseudonyms(["A001"]) == ["ps-" + expected]
    long_key = b"z" * 100
    assert PseudonymKey(long_key).pseudonyms(["A001"]) == [
        "ps-" + hmac.new(long_key, b"A001", hashlib.sha256).hexdigest()[:20]]


def test_demo_key_is_marked() -> None:
    assert PseudonymKey.demo().pseudonyms(["A001"])[0].startswith("demo-")


def test_key_from_environment_and_file(tmp_path: Path) -> None:
    assert PseudonymKey.from_environment({"SIB_PSEUDONYM_KEY": "s" * 20}).origin == "$SIB_PSEUDONYM_KEY"
    f = tmp_path / "key"
    f.write_text("t" * 40 + "\n")
    k = PseudonymKey.from_environment({"SIB_PSEUDONYM_KEY_FILE": str(f)})
    assert k.pseudonyms(["x"]) == PseudonymKey(b"t" * 40).pseudonyms(["x"])
    with pytest.raises(PseudonymKeyError, match="cannot read"):
        PseudonymKey.from_environment({"SIB_PSEUDONYM_KEY_FILE": str(tmp_path / "none")})
    with pytest.raises(PseudonymKeyError, match="at least 16"):
        PseudonymKey.from_environment({"SIB_PSEUDONYM_KEY": "short"})


def test_missing_key_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("SIB_PSEUDONYM_KEY", raising=False)
    monkeypatch.delenv("SIB_PSEUDONYM_KEY_FILE", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(PseudonymKeyError, match="SIB_PSEUDONYM_KEY"):
        validate(CONTRACT, DATA / "valid" / "kitchen.csv")
    monkeypatch.setenv("SIB_PSEUDONYM_KEY", "a-secret-key-for-this-test")
    assert validate(CONTRACT, DATA / "valid" / "kitchen.csv").n_accepted == 16


@pytest.mark.parametrize("name", ["valid/kitchen.csv", "invalid/unknown_municipality.csv",
                                  "invalid/duplicate_participant.csv", "invalid/unknown_participant.csv",
                                  "invalid/mixed_encodings.csv", "invalid/missing_column.csv"])
def test_no_raw_identifier_in_any_output(name: str) -> None:
    r = validate(CONTRACT, DATA / name, key=PseudonymKey.demo())
    texts = [
        r.accepted.to_csv(), r.quarantined.to_csv(), r.failures.to_csv(), r.summary().to_csv(),
        json.dumps(r.to_json()), repr(r), r._repr_html_(), r.checks.to_csv(),
    ] + [r.explain(i) for i in range(1, r.rows + 1)]
    for text in texts:
        for raw in RAW_IDS:
            assert raw not in text, (raw, text[:300])
    pids = set(r.accepted["participant_id"]) | set(r.quarantined["participant_id"].dropna())
    assert all(p.startswith("demo-") for p in pids)
