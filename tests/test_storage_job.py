"""The main job in-process on a real example deal: a restated value in a new data file is
flagged as the contract says and becomes clawback lines; the ledger verifies."""

from __future__ import annotations

from pathlib import Path

import pytest

from sib_engine import load_contract
from sib_engine.job import file_hash, run_job
from sib_engine.privacy import PseudonymKey
from sib_engine.storage import Store

ROOT = Path(__file__).resolve().parent.parent
CONTRACT = ROOT / "contracts" / "essex_edge_of_care_2012.yaml"  # restated_row: warning
DATA = ROOT / "outcomes" / "essex_edge_of_care_2012.csv"


@pytest.mark.slow
def test_a_restated_value_is_flagged_and_clawed_back(tmp_path: Path) -> None:
    lines = DATA.read_text(encoding="utf-8-sig").splitlines()
    header = lines[0].split(",")
    metric, value = header.index("metric"), header.index("value")
    restated, changed = [lines[0]], 0
    most = load_contract(CONTRACT).metric("care_days").max_value
    assert most is not None
    for line in lines[1:]:  # participants turn out to have spent 50 more days in care
        cells = line.split(",")
        if cells[metric] == "care_days" and int(cells[value]) + 50 <= most:  # a restated value stays valid
            cells[value] = str(int(cells[value]) + 50)
            changed += 1
        restated.append(",".join(cells))
    path = tmp_path / "restated.csv"
    path.write_text("\n".join(restated) + "\n", encoding="utf-8")
    with Store.open(f"sqlite:///{tmp_path / 'sib.db'}") as store:
        first = run_job(CONTRACT, DATA, store=store, key=PseudonymKey.demo())
        assert first.recorded is not None and first.recorded.created
        second = run_job(CONTRACT, path, store=store, key=PseudonymKey.demo())
        assert second.submission.reasons == {"restated_row": changed} and second.submission.flagged == changed
        assert second.submission.restates_id == first.submission.id
        assert second.submission.content_hash == file_hash(path)
        rec = second.recorded
        assert rec is not None and rec.created and rec.run.kind == "restatement"
        assert rec.lines and {ln.kind for ln in rec.lines} == {"clawback"} and rec.run.net < 0
        assert all(ln.note == "restated data" for ln in rec.lines)
        assert "restatement" in second.summary()
        report = store.verify()
        assert report.ok, report.format()
        again = run_job(CONTRACT, path, store=store, key=PseudonymKey.demo())
        assert again.validation is None and again.recorded is not None and not again.recorded.created
