"""The synthetic-data generator: reproducible, and data its contract accepts."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pandas.testing as pdt

from sib_engine.loader import load_contract
from sib_engine.measured import ENROLMENT
from sib_engine.privacy import PseudonymKey
from sib_engine.synth import synthesise
from sib_engine.validation import validate

CONTRACT = load_contract(Path(__file__).parent / "data" / "contracts" / "kitchen.yaml")


def test_same_seed_same_frame_other_seed_other_frame() -> None:
    a = synthesise(CONTRACT, seed=11)
    pdt.assert_frame_equal(a, synthesise(CONTRACT, seed=11))
    assert not a.equals(synthesise(CONTRACT, seed=12))


def test_sizes_and_groups() -> None:
    f = synthesise(CONTRACT, seed=3)
    enr = f[f["metric"] == ENROLMENT]
    # target_size 60 per cohort, and a comparison group of the same size
    assert enr.groupby(["cohort", "group"]).size().to_dict() == {
        ("c1", "comparison"): 60, ("c1", "treatment"): 60, ("c2", "comparison"): 60, ("c2", "treatment"): 60}
    assert enr["age"].between(17, 35).all() and (enr["prior_months"] >= 6).all()
    assert set(enr["municipality"]) == {"GM0344", "GM0356"}
    big = synthesise(CONTRACT, seed=3, participants=500)
    assert (big["metric"] == ENROLMENT).sum() == 2000


def test_generated_data_validate_cleanly_and_show_an_effect() -> None:
    f = synthesise(CONTRACT, seed=5, participants=400)
    r = validate(CONTRACT, f, key=PseudonymKey.demo())
    assert r.n_quarantined == 0 and r.n_flagged == 0 and not r.hold
    a = r.accepted
    days = a[a["metric"] == "benefit_days"].groupby("group")["value"].mean()
    assert days["treatment"] < days["comparison"]  # fewer benefit days: better
    diplomas = a[a["metric"] == "diploma"].groupby("participant_id").size()
    assert diplomas.max() == 2  # claimed twice by some, never more (max_claims: 2)
    comparison = a[a["group"] == "comparison"]
    assert set(comparison["metric"]) == {ENROLMENT, "benefit_days"}


def test_respects_prerequisites_and_windows() -> None:
    f = synthesise(CONTRACT, seed=9, participants=300)
    first = f[f["metric"] != ENROLMENT].groupby(["participant_id", "metric"])["date"].min().unstack()
    both = first.dropna(subset=["completes_25", "completes_50"])
    assert len(both) > 0 and (both["completes_50"] >= both["completes_25"]).all()
    assert pd.isna(first.loc[first["completes_25"].isna(), "completes_50"]).all()
