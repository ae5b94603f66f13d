"""The store on SQLite and on PostgreSQL: schema and migrations, recording, idempotent
ingestion, restatements, the append-only hash-chained ledger, verify, history, export."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from storagekit import DEMO, DEMO_TEXT, db_url, demo_frame, fake_validation, typed  # noqa: F401

from sib_engine.evaluation import evaluate
from sib_engine.privacy import PseudonymKey
from sib_engine.storage import Store, StorageError, database_url
from sib_engine.storage.chain import GENESIS, entry_hash, json_safe, verify_chain
from sib_engine.storage.database import current_revision, head_revision
from sib_engine.storage.frames import frame_hash, stored_form
from sib_engine.storage.models import APPEND_ONLY_TABLES, LEDGER_TABLES, Base
from sib_engine.validation import validate

KEY = PseudonymKey.demo()


def record(store: Store, frame: pd.DataFrame, as_of: date | None = None, *, data_hash: str | None = None,
           text_: str = DEMO_TEXT, contract=DEMO):  # type: ignore[no-untyped-def]
    """Record ``frame`` (measured data, text cells) for the demo contract, validated for real."""
    crec = store.record_contract(text_, contract, source_name="demo.yaml")
    v = validate(contract, frame, key=KEY, previous=None)
    sub, _ = store.record_submission(crec, v, content_hash=data_hash or frame_hash(stored_form(v.accepted)),
                                     source="<test>")
    return store.record_determination(crec, contract, sub, as_of)


@pytest.fixture
def store(db_url: str):  # type: ignore[no-untyped-def]  # noqa: F811
    s = Store.open(db_url)
    yield s
    s.close()


# ---------------------------------------------------------------- schema ---


def test_migrations_create_the_models_schema(store: Store) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    with store.engine.connect() as conn:
        assert current_revision(conn) == head_revision()
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []


def test_opening_again_is_a_no_op(db_url: str) -> None:  # noqa: F811
    with Store.open(db_url) as a:
        crec = a.record_contract(DEMO_TEXT, DEMO, source_name="demo.yaml")
    with Store.open(db_url) as b:
        assert b.latest_contract("demo") == crec
        assert b.head() == (0, GENESIS)


@pytest.mark.parametrize("table", APPEND_ONLY_TABLES)
def test_the_database_refuses_update_and_delete(store: Store, table: str) -> None:
    frame = demo_frame(6)
    frame.loc[1, "metric"] = "no_such_metric"  # one quarantined row
    rec = record(store, frame, date(2024, 12, 31))
    store.record_simulation(store.contract_record(rec.run.contract_id), seed=1, assumptions={}, summary={})
    with store.engine.connect() as conn:
        assert conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one() > 0
    for sql in (f"UPDATE {table} SET {_some_column(table)} = {_some_column(table)}", f"DELETE FROM {table}"):
        with pytest.raises(DBAPIError, match="append-only"):
            with store.engine.begin() as conn:
                conn.execute(text(sql))


def _some_column(table: str) -> str:
    return "pos" if table in ("accepted_rows", "quarantined_rows") else "id"


def test_ledger_tables_are_chained() -> None:
    assert set(LEDGER_TABLES) == {"determination_runs", "determinations", "payment_lines", "simulation_runs"}


# -------------------------------------------------------------- recording ---


def test_record_and_verify(store: Store) -> None:
    rec = record(store, demo_frame(30), date(2024, 12, 31))
    assert rec.created and rec.run.kind == "determination"
    ev = evaluate(DEMO, stored_form(validate(DEMO, demo_frame(30), key=KEY).accepted), date(2024, 12, 31))
    assert rec.run.net == ev.total
    assert rec.run.n_lines == len(ev.lines) > 0
    lines = store.lines(rec.run)
    assert [ln["amount_minor"] for ln in lines] == [int(ln.amount * 100) for ln in ev.lines]
    assert {ln["currency"] for ln in lines} == {"EUR"}
    report = store.verify()
    assert report.ok, report.format()
    assert report.entries == 1 + rec.run.n_determinations + rec.run.n_lines


def test_the_chain_links_every_entry(store: Store) -> None:
    record(store, demo_frame(12), date(2024, 9, 30))
    record(store, demo_frame(12), date(2025, 6, 30))
    with store.engine.connect() as conn:
        rows = []
        for t in LEDGER_TABLES:
            rows += conn.execute(text(f"SELECT seq, prev_hash, entry_hash FROM {t}")).all()
    rows.sort()
    assert [r[0] for r in rows] == list(range(1, len(rows) + 1))
    assert rows[0][1] == GENESIS
    assert all(rows[i][1] == rows[i - 1][2] for i in range(1, len(rows)))
    assert store.head() == (rows[-1][0], rows[-1][2])


def test_same_data_is_recorded_once(store: Store) -> None:
    frame = demo_frame(10)
    first = record(store, frame, date(2024, 12, 31), data_hash="a" * 64)
    again = record(store, frame, date(2024, 12, 31), data_hash="a" * 64)
    assert not again.created and again.run == first.run
    with store.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM data_submissions")).scalar_one() == 1
        assert conn.execute(text("SELECT count(*) FROM determination_runs")).scalar_one() == 1
        assert conn.execute(text("SELECT count(*) FROM accepted_rows")).scalar_one() == len(frame)


def test_a_later_as_of_adds_the_new_determinations_only(store: Store) -> None:
    frame = demo_frame(25, seed=3)
    a = record(store, frame, date(2024, 6, 30), data_hash="b" * 64)
    b = record(store, frame, date(2025, 3, 31), data_hash="b" * 64)
    assert b.created and b.run.kind == "determination" and b.run.previous_run_id == a.run.id
    firsts = {d["determination"]: d["first_made"] for d in store.determinations(b.run)}
    assert firsts["P1"] is False and firsts["P2"] is False and firsts["P5"] is True
    full = evaluate(DEMO, stored_form(validate(DEMO, frame, key=KEY).accepted), date(2025, 3, 31))
    assert sum((ln["amount_minor"] for ln in store.deal_lines("demo")), 0) == int(full.total * 100)
    assert store.verify().ok


def test_a_restatement_becomes_true_ups_and_clawbacks(store: Store) -> None:
    as_of = date(2025, 6, 30)
    before = record(store, demo_frame(40, seed=5), as_of, data_hash="c" * 64)
    restated_frame = demo_frame(40, seed=5, drop_jobs=3, late_jobs=2)
    after = record(store, restated_frame, as_of, data_hash="d" * 64)
    assert after.created and after.run.kind == "restatement"
    kinds = [ln["kind"] for ln in store.lines(after.run)]
    assert "clawback" in kinds
    assert all(ln["note"] == "restated data" for ln in store.lines(after.run))
    fresh = evaluate(DEMO, stored_form(validate(DEMO, restated_frame, key=KEY).accepted), as_of)
    total = sum((ln["amount_minor"] for ln in store.deal_lines("demo")), 0)
    assert total == int(fresh.total * 100)  # what was paid + corrections = what is owed now
    assert after.run.net == fresh.total - before.run.net
    report = store.verify()
    assert report.ok, report.format()


def test_the_previous_ledger_is_what_was_recorded(store: Store) -> None:
    rec = record(store, demo_frame(15), date(2025, 6, 30))
    rebuilt = store.ledger_evaluation(rec.run)
    assert [(ln.key, ln.amount, ln.kind) for ln in rebuilt.lines] == \
        [(ln.key, ln.amount, ln.kind) for ln in rec.evaluation.lines]
    assert [d.id for d in rebuilt.determinations] == [d.id for d in rec.evaluation.determinations]
    again = store.recompute(rec.run)
    assert again.to_json() == rec.evaluation.to_json()


def test_stored_rows_read_back_exactly(store: Store) -> None:
    crec = store.record_contract(DEMO_TEXT, DEMO, source_name="demo.yaml")
    acc = typed(demo_frame(50, seed=9))
    acc.loc[3, "value"] = 0.1 + 0.2  # a float that must survive exactly
    sub, created = store.record_submission(crec, fake_validation(acc), content_hash="e" * 64, source="x")
    assert created
    back = store.accepted_frame(sub)
    expected = stored_form(acc)
    pd.testing.assert_frame_equal(back, expected)
    assert frame_hash(back) == sub.accepted_hash == frame_hash(expected)
    assert back.loc[3, "value"] == 0.1 + 0.2


def test_quarantined_rows_are_recorded_with_reasons(store: Store) -> None:
    frame = demo_frame(12)
    frame.loc[1, "metric"] = "no_such_metric"
    frame.loc[2, "date"] = "2024-02-30"
    crec = store.record_contract(DEMO_TEXT, DEMO, source_name="demo.yaml")
    v = validate(DEMO, frame, key=KEY)
    sub, _ = store.record_submission(crec, v, content_hash="f" * 64, source="bad.csv")
    assert (sub.rows, sub.quarantined) == (len(frame), v.n_quarantined) and sub.quarantined >= 2
    q = store.quarantined_frame(sub)
    assert set(q["reason"]) >= {"unknown_metric", "unparseable_date"}
    assert all(str(p).startswith("demo-") for p in q["participant_id"])  # pseudonymised, never raw
    acc = store.accepted_frame(sub)
    assert not acc["participant_id"].str.startswith("P0").any()


def test_a_payment_hold_is_recorded_and_nothing_determined(store: Store) -> None:
    frame = demo_frame(10).drop(columns=["cohort"])
    crec = store.record_contract(DEMO_TEXT, DEMO, source_name="demo.yaml")
    v = validate(DEMO, frame, key=KEY)
    sub, _ = store.record_submission(crec, v, content_hash="1" * 64, source="hold.csv")
    assert sub.hold and sub.hold_reasons
    assert store.runs("demo") == []


# ------------------------------------------------------------------ tamper ---


def _tamper(store: Store, sql: str, table: str) -> None:
    with store.engine.begin() as conn:
        if store.dialect == "postgresql":
            conn.execute(text(f"ALTER TABLE {table} DISABLE TRIGGER USER"))
        else:
            conn.execute(text(f"DROP TRIGGER {table}_no_update"))
            conn.execute(text(f"DROP TRIGGER {table}_no_delete"))
        conn.execute(text(sql))


def test_verify_names_a_changed_amount(store: Store) -> None:
    rec = record(store, demo_frame(30), date(2024, 12, 31))
    line = store.lines(rec.run)[0]
    _tamper(store, f"UPDATE payment_lines SET amount_minor = amount_minor + 100 WHERE id = {line['id']}",
            "payment_lines")
    report = store.verify()
    assert not report.ok
    text_ = report.format()
    assert f"payment_lines entry seq {line['seq']}: its content does not match its hash" in text_
    assert f"amount_minor recorded {line['amount_minor'] + 100}, recomputed {line['amount_minor']}" in text_


def test_verify_finds_a_removed_last_entry(store: Store) -> None:
    record(store, demo_frame(20), date(2024, 12, 31))
    _tamper(store, "DELETE FROM payment_lines WHERE seq = (SELECT max(seq) FROM payment_lines)", "payment_lines")
    text_ = store.verify().format()
    assert "ledger head" in text_ and "partial determination" in text_


def test_verify_finds_changed_data_and_contract(store: Store) -> None:
    rec = record(store, demo_frame(20), date(2024, 12, 31))
    _tamper(store, "UPDATE accepted_rows SET value = 2 WHERE pos = (SELECT max(pos) FROM accepted_rows "
            "WHERE metric = 'job')", "accepted_rows")
    _tamper(store, "UPDATE contracts SET source_text = replace(source_text, '2750.00', '2751.00')", "contracts")
    text_ = store.verify().format()
    assert f"submission #{rec.run.submission_id}" in text_ and "do not match their hash" in text_
    assert "does not match its content hash" in text_
    assert "recomputed" in text_


# --------------------------------------------------------------- simulation ---


def test_simulations_join_the_chain_and_the_history(store: Store) -> None:
    crec = store.record_contract(DEMO_TEXT, DEMO, source_name="demo.yaml")
    sim = store.record_simulation(crec, seed=42, worlds=1000, assumptions={"effect": Decimal("0.8")},
                                  summary={"irr_mean": 0.051, "p_loss": 0.12, "irr_worst": float("nan")})
    assert sim.seq == 1 and sim.summary["irr_worst"] == "nan"
    record(store, demo_frame(10), date(2024, 12, 31))
    h = store.history("demo")
    assert [i.kind for i in h.items] == ["simulation", "determination"]
    assert "seed 42" in h.format() and sim.entry_hash in h.format()
    assert store.verify().ok


# ------------------------------------------------------------------ history ---


def test_history_lists_runs_with_hashes(store: Store) -> None:
    a = record(store, demo_frame(30, seed=1), date(2025, 6, 30), data_hash="2" * 64)
    b = record(store, demo_frame(30, seed=1, drop_jobs=2), date(2025, 6, 30), data_hash="3" * 64)
    h = store.history("demo")
    assert [i.kind for i in h.items] == ["determination", "restatement"]
    text_ = h.format()
    for r in (a.run, b.run):
        assert r.entry_hash in text_ and r.uid in text_ and r.data_hash in text_
    assert h.items[1].lines.clawbacks >= 1
    js = h.to_json()
    assert js["entries"][1]["kind"] == "restatement" and js["entries"][1]["prev_hash"]


# ------------------------------------------------------------------- export ---


def test_indigo_export_suppresses_small_counts(store: Store) -> None:
    record(store, demo_frame(8), date(2024, 12, 31))
    doc = store.export_indigo("demo")
    project = doc["project"]
    assert project["name"] == {"value": "Demo rate card"}
    assert "actual_number_service_users_or_beneficiaries_total" not in project.get("service_and_beneficiaries", {})
    assert "suppressed" in project["results"][0]["notes"]
    assert project["outcome_pricings"][0]["price_per_unit"]["amount"]["value"] == 2750
    paid = sum(p["money"]["amount"]["value"] for p in project["outcome_payments"])
    assert paid == project["overall_project_finance"]["total_outcome_payments_made"]["amount"]["value"]
    shown = store.export_indigo("demo", min_cell=1)["project"]
    assert shown["service_and_beneficiaries"]["actual_number_service_users_or_beneficiaries_total"] == {"value": 8}
    assert {o["id"] for o in doc["organisations"]} == {"city", "fund", "club"}


def test_export_of_an_unknown_deal_is_an_error(store: Store) -> None:
    with pytest.raises(StorageError, match="no contract 'nope'"):
        store.export_indigo("nope")


# -------------------------------------------------------------------- chain ---


def test_chain_helpers() -> None:
    h1 = entry_hash("payment_line", 1, GENESIS, {"amount_minor": 1})
    h2 = entry_hash("payment_line", 2, h1, {"amount_minor": 2})
    good = [("t", 1, GENESIS, h1, {"amount_minor": 1}, "payment_line"), ("t", 2, h1, h2, {"amount_minor": 2}, "payment_line")]
    assert verify_chain(good, (2, h2)) == []
    assert "changed after it was recorded" in " ".join(verify_chain([good[0], ("t", 2, h1, h2, {"amount_minor": 3},
                                                                             "payment_line")], (2, h2)))
    assert "missing" in " ".join(verify_chain([good[1]], (2, h2)))
    assert "ledger head" in " ".join(verify_chain(good, (1, h1)))
    assert json_safe({"a": float("inf"), "b": Decimal("1.50"), "c": (date(2024, 1, 2),)}) == \
        {"a": "inf", "b": "1.50", "c": ["2024-01-02"]}


def test_database_url() -> None:
    assert database_url(None, {}) == "sqlite:///sib.db"
    assert database_url(None, {"SIB_DATABASE_URL": "sqlite:////tmp/x.db"}) == "sqlite:////tmp/x.db"
    assert database_url("data/ledger.db", {}) == "sqlite:///data/ledger.db"
    assert database_url("postgresql://u:p@h:5432/db", {}) == "postgresql+psycopg://u:p@h:5432/db"
    with pytest.raises(StorageError, match="not supported"):
        database_url("mysql://h/db", {})


def test_a_missing_sqlite_file_is_not_created_for_reading(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="there is no database"):
        Store.open(f"sqlite:///{tmp_path / 'nope.db'}", create=False)
    assert not (tmp_path / "nope.db").exists()


def test_a_changed_contract_text_with_the_same_data_is_an_amendment_run(store: Store) -> None:
    frame = demo_frame(20, seed=8)
    record(store, frame, date(2025, 6, 30), data_hash="4" * 64)
    text_ = DEMO_TEXT.replace('price: "2750.00"', 'price: "3000.00"')
    from sib_engine.loader import parse_contract

    rec = record(store, frame, date(2025, 6, 30), data_hash="4" * 64, text_=text_, contract=parse_contract(text_))
    assert rec.created and rec.run.kind == "amendment"
    assert {ln.kind for ln in rec.lines} == {"true_up"}
    assert store.verify().ok


def test_history_and_report_render_in_notebooks(store: Store) -> None:
    record(store, demo_frame(10), date(2024, 12, 31))
    h = store.history("demo")
    assert repr(h).startswith("<History demo: 1 entries")
    assert list(h.to_frame()["kind"]) == ["determination"] and "<pre>" in h._repr_html_()
    assert repr(store.verify()).startswith("<VerifyReport ok:")
