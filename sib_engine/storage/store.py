"""The store: record contracts, submissions, determinations and simulations; read the
history; verify everything.

>>> from sib_engine.loader import EXAMPLE, parse_contract
>>> store = Store.open("sqlite://")            # an in-memory database, for the example
>>> rec = store.record_contract(EXAMPLE, parse_contract(EXAMPLE), source_name="demo.yaml")
>>> rec.deal_id, len(rec.content_hash)
('demo', 64)
>>> store.record_contract(EXAMPLE, parse_contract(EXAMPLE), source_name="again.yaml").id == rec.id
True
>>> store.verify().ok
True

Writes follow one rule: **nothing recorded is ever changed**.  A contract or a data file
already recorded (same content hash) is not recorded again; a determination run appends a
run entry, its determinations and the payment lines it adds to the hash chain, in one
transaction, and the funder allocations over the whole ledger as of that run.  Restated data
are evaluated against what the ledger holds (``evaluate(..., previous=...)``), so every
difference becomes an explicit true-up or clawback line.

Concurrency: the expensive work (evaluation, waterfall) runs outside any lock against the
deal's latest run; the short append then checks under the ledger lock that the deal's latest
run is still the same, and starts again if another process recorded in between.
"""

from __future__ import annotations

import hashlib
import platform
import uuid
from datetime import date, datetime, timezone
from decimal import Decimal
from functools import lru_cache
from itertools import repeat
from typing import TYPE_CHECKING, Any, Mapping, Sequence, cast

import pandas as pd
from sqlalchemy import Engine, Table, func, insert, select, update
from sqlalchemy.engine import Connection, RowMapping
from sqlalchemy.exc import DBAPIError, OperationalError

from sib_engine import __version__
from sib_engine.money import from_minor_units
from sib_engine.storage import adapter
from sib_engine.storage.bulk import bulk_insert, copy_csv
from sib_engine.storage.chain import Entry, entry_hash, json_safe, verify_chain
from sib_engine.storage.database import (
    LEDGER_LOCK,
    StorageError,
    create_database_engine,
    database_url,
    deal_lock,
    display_url,
    migrate,
    read_transaction,
    sqlite_file_missing,
    write_transaction,
)
from sib_engine.storage.frames import (
    DB_COLUMNS,
    FRAME_COLUMNS,
    QUARANTINE_FIXED,
    accepted_csv,
    accepted_records,
    frame_from_rows,
    frame_hash,
    quarantined_records,
    stored_form,
)
from sib_engine.storage.models import (
    AcceptedRow,
    AllocationRow,
    Base,
    ContractRow,
    DeterminationRow,
    FunderPositionRow,
    LedgerHeadRow,
    PaymentLineRow,
    ProvenanceRow,
    QuarantinedRow,
    RunRow,
    SimulationRow,
    SubmissionRow,
    ValidationRunRow,
)
from sib_engine.storage.records import (
    ContractRecord,
    History,
    HistoryItem,
    LineSummary,
    Recorded,
    RunRecord,
    SimulationRecord,
    SubmissionRecord,
    VerifyReport,
)

if TYPE_CHECKING:  # pragma: no cover
    from sib_engine.contract import Contract
    from sib_engine.evaluation import Evaluation


def _t(model: type[Base]) -> Table:
    return cast(Table, model.__table__)


CONTRACTS = _t(ContractRow)
SUBMISSIONS = _t(SubmissionRow)
ACCEPTED = _t(AcceptedRow)
QUARANTINED = _t(QuarantinedRow)
PROVENANCE = _t(ProvenanceRow)
VALIDATIONS = _t(ValidationRunRow)
RUNS = _t(RunRow)
DETERMINATIONS = _t(DeterminationRow)
LINES = _t(PaymentLineRow)
SIMULATIONS = _t(SimulationRow)
HEAD = _t(LedgerHeadRow)
ALLOCATIONS = _t(AllocationRow)
POSITIONS = _t(FunderPositionRow)

CHAINED: dict[str, tuple[Table, str]] = {
    "determination_runs": (RUNS, "run"),
    "determinations": (DETERMINATIONS, "determination"),
    "payment_lines": (LINES, "payment_line"),
    "simulation_runs": (SIMULATIONS, "simulation"),
}
_NOT_HASHED = frozenset({"id", "seq", "prev_hash", "entry_hash"})


def _fields(table: Table, values: Mapping[str, Any]) -> dict[str, Any]:
    """The hashed fields of a ledger entry: every column but id, seq and the hashes."""
    return {c.name: values.get(c.name) for c in table.columns if c.name not in _NOT_HASHED}


def _now() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


def text_hash(text: str) -> str:
    """The content hash of a text (SHA-256 of its UTF-8 bytes)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@lru_cache(maxsize=1)
def _packages() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in ("numpy", "pandas", "scipy", "pydantic", "sqlalchemy", "alembic", "great-expectations"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:  # pragma: no cover
            pass
    return out


# ---------------------------------------------------------------------- records ---


def _contract_record(r: RowMapping) -> ContractRecord:
    return ContractRecord(id=r["id"], content_hash=r["content_hash"], deal_id=r["deal_id"], version=r["version"],
                          title=r["title"], currency=r["currency"], source_name=r["source_name"],
                          recorded_at=r["recorded_at"])


def _submission_record(r: RowMapping, validation_run_id: int | None = None) -> SubmissionRecord:
    return SubmissionRecord(
        id=r["id"], contract_id=r["contract_id"], deal_id=r["deal_id"], content_hash=r["content_hash"],
        key_id=r["key_id"], source=r["source"], rows=r["rows"], accepted=r["accepted"],
        quarantined=r["quarantined"], flagged=r["flagged"], hold=bool(r["hold"]),
        hold_reasons=tuple(r["hold_reasons"]), reasons=dict(r["reasons"]), columns=tuple(r["columns"]),
        accepted_hash=r["accepted_hash"], restates_id=r["restates_id"], recorded_at=r["recorded_at"],
        validation_run_id=validation_run_id,
    )


def _run_record(r: RowMapping) -> RunRecord:
    return RunRecord(
        id=r["id"], uid=r["uid"], seq=r["seq"], entry_hash=r["entry_hash"], prev_hash=r["prev_hash"],
        deal_id=r["deal_id"], kind=r["kind"], contract_id=r["contract_id"], submission_id=r["submission_id"],
        previous_run_id=r["previous_run_id"], as_of=r["as_of"], contract_hash=r["contract_hash"],
        data_hash=r["data_hash"], accepted_hash=r["accepted_hash"], engine_version=r["engine_version"],
        currency=r["currency"], n_determinations=r["n_determinations"], n_lines=r["n_lines"],
        net=from_minor_units(int(r["net_minor"]), r["currency"]), recorded_at=r["recorded_at"],
    )


def _simulation_record(r: RowMapping) -> SimulationRecord:
    return SimulationRecord(
        id=r["id"], uid=r["uid"], seq=r["seq"], entry_hash=r["entry_hash"], deal_id=r["deal_id"], seed=r["seed"],
        worlds=r["worlds"], contract_hash=r["contract_hash"], engine_version=r["engine_version"],
        assumptions=dict(r["assumptions"]), summary=dict(r["summary"]), recorded_at=r["recorded_at"],
    )


class _Conflict(Exception):
    """The deal's latest run changed while a determination was being computed."""


# ------------------------------------------------------------------------ store ---


class Store:
    """A sib-engine database (SQLite or PostgreSQL).  Open with :meth:`open`."""

    def __init__(self, engine: Engine, url: str) -> None:
        self.engine = engine
        self.url = url

    # -- opening -------------------------------------------------------------------
    @classmethod
    def open(cls, url: str | None = None, *, busy_timeout: float = 60.0, upgrade: bool = True,
             create: bool = True) -> "Store":
        """Open (and create or migrate) the database at ``url`` (see
        :func:`~sib_engine.storage.database.database_url` for the default).  With
        ``create=False`` a SQLite file that does not exist is an error, not a new database."""
        resolved = database_url(url)
        if not create:
            missing = sqlite_file_missing(resolved)
            if missing is not None:
                raise StorageError(f"there is no database at {missing}: nothing has been recorded there "
                                   "(record with 'sib run CONTRACT DATA', or name the database with --db)")
        try:
            engine = create_database_engine(resolved, busy_timeout=busy_timeout)
            if upgrade:
                migrate(engine)
        except StorageError:
            raise
        except (OperationalError, DBAPIError) as exc:
            raise StorageError(f"cannot open the database {display_url(resolved)}: "
                               f"{str(exc.orig).strip() if exc.orig else exc}") from None
        return cls(engine, resolved)

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Store {display_url(self.url)}>"

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    # -- provenance ----------------------------------------------------------------
    def _provenance(self, conn: Connection, kind: str, contract_hash: str, data_hash: str | None = None,
                    seed: int | None = None, as_of: date | None = None, command: str | None = None) -> int:
        values = {
            "kind": kind, "engine_version": __version__, "contract_hash": contract_hash, "data_hash": data_hash,
            "seed": seed, "as_of": as_of, "python": platform.python_version(), "packages": _packages(),
            "command": command, "created_at": _now(),
        }
        return int(conn.execute(insert(PROVENANCE).values(**values).returning(PROVENANCE.c.id)).scalar_one())

    # -- contracts -----------------------------------------------------------------
    def record_contract(self, text: str, contract: "Contract", *, source_name: str) -> ContractRecord:
        """Record the contract ``text`` (already validated into ``contract``) once."""
        h = text_hash(text)
        with write_transaction(self.engine, deal_lock(contract.id)) as conn:
            found = conn.execute(select(CONTRACTS).where(CONTRACTS.c.content_hash == h)).mappings().first()
            if found is not None:
                return _contract_record(found)
            values = {
                "content_hash": h, "deal_id": contract.id, "version": contract.version,
                "format_version": contract.format, "title": contract.title, "currency": contract.currency,
                "source_name": source_name, "source_text": text,
                "amendments": [{"id": a.id, "effective": a.effective.isoformat(), "clause": a.clause,
                                "summary": a.summary} for a in contract.amendments],
                "recorded_at": _now(),
            }
            new_id = conn.execute(insert(CONTRACTS).values(**values).returning(CONTRACTS.c.id)).scalar_one()
            row = conn.execute(select(CONTRACTS).where(CONTRACTS.c.id == new_id)).mappings().one()
            return _contract_record(row)

    def contract_text(self, contract_id: int) -> str:
        with read_transaction(self.engine) as conn:
            return str(conn.execute(select(CONTRACTS.c.source_text).where(CONTRACTS.c.id == contract_id)).scalar_one())

    def contract_record(self, contract_id: int) -> ContractRecord:
        with read_transaction(self.engine) as conn:
            return _contract_record(conn.execute(select(CONTRACTS).where(CONTRACTS.c.id == contract_id)).mappings().one())

    def latest_contract(self, deal_id: str) -> ContractRecord | None:
        """The contract of the deal's latest run, else the deal's last recorded contract."""
        with read_transaction(self.engine) as conn:
            run = conn.execute(select(RUNS.c.contract_id).where(RUNS.c.deal_id == deal_id)
                               .order_by(RUNS.c.seq.desc()).limit(1)).scalar()
            q = select(CONTRACTS)
            q = q.where(CONTRACTS.c.id == run) if run is not None else \
                q.where(CONTRACTS.c.deal_id == deal_id).order_by(CONTRACTS.c.id.desc()).limit(1)
            row = conn.execute(q).mappings().first()
            return None if row is None else _contract_record(row)

    def deals(self) -> list[str]:
        with read_transaction(self.engine) as conn:
            return [str(d) for d in conn.execute(select(CONTRACTS.c.deal_id).distinct().order_by(CONTRACTS.c.deal_id)).scalars()]

    # -- submissions ---------------------------------------------------------------
    def find_submission(self, contract: ContractRecord, content_hash: str, key_id: str) -> SubmissionRecord | None:
        """The submission of this data (same content hash, contract and key), if recorded."""
        with read_transaction(self.engine) as conn:
            return self._find_submission(conn, contract.id, content_hash, key_id)

    def _find_submission(self, conn: Connection, contract_id: int, content_hash: str,
                         key_id: str) -> SubmissionRecord | None:
        row = conn.execute(select(SUBMISSIONS).where(
            SUBMISSIONS.c.contract_id == contract_id, SUBMISSIONS.c.content_hash == content_hash,
            SUBMISSIONS.c.key_id == key_id)).mappings().first()
        if row is None:
            return None
        vr = conn.execute(select(func.max(VALIDATIONS.c.id)).where(VALIDATIONS.c.submission_id == row["id"])).scalar()
        return _submission_record(row, vr)

    def submission(self, submission_id: int) -> SubmissionRecord:
        with read_transaction(self.engine) as conn:
            row = conn.execute(select(SUBMISSIONS).where(SUBMISSIONS.c.id == submission_id)).mappings().one()
            vr = conn.execute(select(func.max(VALIDATIONS.c.id)).where(VALIDATIONS.c.submission_id == row["id"])).scalar()
            return _submission_record(row, vr)

    def latest_submission(self, deal_id: str) -> SubmissionRecord | None:
        """The submission of the deal's latest run, else the deal's latest submission."""
        with read_transaction(self.engine) as conn:
            sid = conn.execute(select(RUNS.c.submission_id).where(RUNS.c.deal_id == deal_id)
                               .order_by(RUNS.c.seq.desc()).limit(1)).scalar()
            if sid is None:
                sid = conn.execute(select(func.max(SUBMISSIONS.c.id)).where(SUBMISSIONS.c.deal_id == deal_id)).scalar()
            if sid is None:
                return None
        return self.submission(int(sid))

    def record_submission(
        self, contract: ContractRecord, validation: Any, *, content_hash: str, source: str,
        restates: SubmissionRecord | None = None, command: str | None = None,
    ) -> tuple[SubmissionRecord, bool]:
        """Record a validated submission (accepted rows, pseudonymised, and quarantined rows
        with their reasons) once per content hash; returns ``(submission, created)``."""
        facts = adapter.validation_facts(validation)
        stored = stored_form(facts.accepted)
        acc_hash = frame_hash(stored)
        names, columns = accepted_records(stored) if self.dialect != "postgresql" else ([], [])
        q_names, q_rows = quarantined_records(facts.quarantined)
        with write_transaction(self.engine, deal_lock(contract.deal_id)) as conn:
            found = self._find_submission(conn, contract.id, content_hash, facts.key_id)
            if found is not None:
                return found, False
            prov = self._provenance(conn, "validation", contract.content_hash, content_hash, command=command)
            values = {
                "contract_id": contract.id, "deal_id": contract.deal_id, "content_hash": content_hash,
                "key_id": facts.key_id, "source": source, "rows": facts.rows, "accepted": len(stored),
                "quarantined": len(q_rows), "flagged": facts.flagged, "hold": facts.hold,
                "hold_reasons": list(facts.hold_reasons), "reasons": facts.reasons, "columns": list(stored.columns),
                "accepted_hash": acc_hash, "restates_id": restates.id if restates is not None else None,
                "recorded_at": _now(),
            }
            sid = int(conn.execute(insert(SUBMISSIONS).values(**values).returning(SUBMISSIONS.c.id)).scalar_one())
            n = len(stored)
            if conn.dialect.name == "postgresql":
                copy_csv(conn, "accepted_rows", *accepted_csv(stored, sid))
            else:
                bulk_insert(conn, "accepted_rows", names, list(zip(repeat(sid, n), range(n), *columns)))
            bulk_insert(conn, "quarantined_rows", q_names, [(sid, *r) for r in q_rows])
            vr = conn.execute(insert(VALIDATIONS).values(
                submission_id=sid, provenance_id=prov, tolerance=facts.tolerance, hold=facts.hold,
                hold_reasons=list(facts.hold_reasons), reasons=facts.reasons, checks=facts.checks,
                failures=facts.failures, timings=facts.timings, recorded_at=_now(),
            ).returning(VALIDATIONS.c.id)).scalar_one()
            row = conn.execute(select(SUBMISSIONS).where(SUBMISSIONS.c.id == sid)).mappings().one()
            return _submission_record(row, int(vr)), True

    def accepted_frame(self, submission: SubmissionRecord | int) -> pd.DataFrame:
        """The accepted rows of a submission, in stored form (what determinations read)."""
        sid = submission if isinstance(submission, int) else submission.id
        with read_transaction(self.engine) as conn:
            return self._accepted_frame(conn, sid)

    def _accepted_frame(self, conn: Connection, sid: int) -> pd.DataFrame:
        cols = conn.execute(select(SUBMISSIONS.c.columns).where(SUBMISSIONS.c.id == sid)).scalar_one()
        db_of = dict(zip(FRAME_COLUMNS, DB_COLUMNS))
        names = ", ".join(f'"{db_of[c]}"' for c in cols)
        raw: Any = conn.connection.driver_connection
        cur = raw.cursor()
        try:
            mark = "%s" if conn.dialect.name == "postgresql" else "?"
            cur.execute(f"SELECT {names} FROM accepted_rows WHERE submission_id = {mark} ORDER BY pos", (sid,))
            rows = cur.fetchall()
        finally:
            cur.close()
        return frame_from_rows(rows, cols)

    def quarantined_frame(self, submission: SubmissionRecord | int) -> pd.DataFrame:
        sid = submission if isinstance(submission, int) else submission.id
        with read_transaction(self.engine) as conn:
            rows = conn.execute(select(QUARANTINED).where(QUARANTINED.c.submission_id == sid)
                                .order_by(QUARANTINED.c.pos)).mappings().all()
        records = []
        for r in rows:
            rec = {k: r[k] for k in QUARANTINE_FIXED}
            rec.update(r["cells"])
            records.append(rec)
        return pd.DataFrame(records)

    # -- determinations ------------------------------------------------------------
    def deal_head(self, deal_id: str) -> RunRecord | None:
        """The deal's latest determination run."""
        with read_transaction(self.engine) as conn:
            return self._deal_head(conn, deal_id)

    def _deal_head(self, conn: Connection, deal_id: str) -> RunRecord | None:
        row = conn.execute(select(RUNS).where(RUNS.c.deal_id == deal_id).order_by(RUNS.c.seq.desc())
                           .limit(1)).mappings().first()
        return None if row is None else _run_record(row)

    def runs(self, deal_id: str | None = None) -> list[RunRecord]:
        with read_transaction(self.engine) as conn:
            q = select(RUNS).order_by(RUNS.c.seq)
            if deal_id is not None:
                q = q.where(RUNS.c.deal_id == deal_id)
            return [_run_record(r) for r in conn.execute(q).mappings()]

    def _ledger_state(self, conn: Connection, run: RunRecord) -> "Evaluation":
        """The deal's ledger as of ``run`` (its determinations; every line up to it), as an
        evaluation: the ``previous=`` of the next run."""
        c = conn.execute(select(CONTRACTS).where(CONTRACTS.c.id == run.contract_id)).mappings().one()
        dets = [dict(r) for r in conn.execute(select(DETERMINATIONS).where(DETERMINATIONS.c.run_id == run.id)
                                              .order_by(DETERMINATIONS.c.position)).mappings()]
        lines = [dict(r) for r in conn.execute(
            select(LINES).join(RUNS, RUNS.c.id == LINES.c.run_id)
            .where(RUNS.c.deal_id == run.deal_id, RUNS.c.seq <= run.seq).order_by(LINES.c.seq)
        ).mappings()]
        return adapter.rebuild_evaluation(contract_id=run.deal_id, version=c["version"], title=c["title"],
                                          currency=run.currency, as_of=run.as_of, determinations=dets, lines=lines)

    def ledger_evaluation(self, run: RunRecord) -> "Evaluation":
        """Every line the deal's ledger holds up to ``run``, as an evaluation."""
        with read_transaction(self.engine) as conn:
            return self._ledger_state(conn, run)

    def record_determination(
        self, contract_record: ContractRecord, contract: "Contract", submission: SubmissionRecord,
        as_of: date | None = None, *, data: pd.DataFrame | None = None, command: str | None = None,
        attempts: int = 8,
    ) -> Recorded:
        """Evaluate the submission's accepted rows as of ``as_of`` against what the deal's
        ledger holds and append the result; nothing is recorded when the deal's latest run
        had the same contract, data and as-of date.  ``data`` (the accepted rows in stored
        form) saves reading them back."""
        frame = data if data is not None else self.accepted_frame(submission)
        for _ in range(attempts):
            with read_transaction(self.engine) as conn:
                head = self._deal_head(conn, contract_record.deal_id)
                previous = self._ledger_state(conn, head) if head is not None else None
            if head is not None and (head.contract_hash, head.submission_id, head.as_of) == (
                    contract_record.content_hash, submission.id, as_of):
                return Recorded(head, False, None, (), head)
            ev = adapter.evaluate(contract, frame, as_of, previous)
            added = adapter.new_lines(ev, previous)
            allocation = adapter.allocate(contract, ev)
            try:
                run = self._append_run(contract_record, submission, as_of, head, previous, ev, added, allocation,
                                       command)
            except _Conflict:
                continue
            return Recorded(run, True, ev, added, head)
        raise StorageError(f"could not record the determination: the ledger of '{contract_record.deal_id}' "
                           f"changed {attempts} times while it was being computed; try again")

    def _append_run(
        self, c: ContractRecord, sub: SubmissionRecord, as_of: date | None, head: RunRecord | None,
        previous: "Evaluation | None", ev: "Evaluation", added: Sequence[Any], allocation: adapter.Allocation | None,
        command: str | None,
    ) -> RunRecord:
        cur = c.currency
        lines = adapter.line_values(added, cur)
        dets = adapter.determination_values(ev, previous)
        with write_transaction(self.engine, LEDGER_LOCK) as conn:
            now = self._deal_head(conn, c.deal_id)
            if (now.id if now else None) != (head.id if head else None):
                raise _Conflict()
            seq, prev = self._head(conn)
            prov = self._provenance(conn, "determination", c.content_hash, sub.content_hash, as_of=as_of,
                                    command=command)
            if head is not None and head.data_hash != sub.content_hash:
                kind = "restatement"  # new data for the deal
            elif head is not None and head.contract_hash != c.content_hash:
                kind = "amendment"  # the same data under a changed contract text
            else:
                kind = "determination"  # the first run, or the same inputs at a later date
            run_values: dict[str, Any] = {
                "uid": uuid.uuid4().hex, "deal_id": c.deal_id, "kind": kind, "contract_id": c.id,
                "submission_id": sub.id, "validation_run_id": sub.validation_run_id, "provenance_id": prov,
                "previous_run_id": head.id if head else None, "as_of": as_of, "contract_hash": c.content_hash,
                "data_hash": sub.content_hash, "accepted_hash": sub.accepted_hash, "engine_version": __version__,
                "currency": cur, "n_determinations": len(dets), "n_lines": len(lines),
                "net_minor": sum(int(v["amount_minor"]) for v in lines), "rates": adapter.rates_values(ev),
                "notes": adapter.notes_values(ev), "recorded_at": _now(),
            }
            seq, prev = self._chain(RUNS, "run", run_values, seq, prev)
            run_id = int(conn.execute(insert(RUNS).values(**run_values).returning(RUNS.c.id)).scalar_one())
            for v in dets:
                v["run_id"] = run_id
                seq, prev = self._chain(DETERMINATIONS, "determination", v, seq, prev)
            for v in lines:
                v["run_id"] = run_id
                seq, prev = self._chain(LINES, "payment_line", v, seq, prev)
            if dets:
                conn.execute(insert(DETERMINATIONS), dets)
            if lines:
                conn.execute(insert(LINES), lines)
            if allocation is not None:
                if allocation.flows:
                    conn.execute(insert(ALLOCATIONS), [{**f, "run_id": run_id} for f in allocation.flows])
                if allocation.positions:
                    conn.execute(insert(POSITIONS), [{**p, "run_id": run_id} for p in allocation.positions])
            self._set_head(conn, seq, prev)
            row = conn.execute(select(RUNS).where(RUNS.c.id == run_id)).mappings().one()
            return _run_record(row)

    @staticmethod
    def _chain(table: Table, kind: str, values: dict[str, Any], seq: int, prev: str) -> tuple[int, str]:
        """Give ``values`` the next sequence number, the previous hash and its own hash."""
        seq += 1
        h = entry_hash(kind, seq, prev, _fields(table, values))
        values.update(seq=seq, prev_hash=prev, entry_hash=h)
        return seq, h

    @staticmethod
    def _head(conn: Connection) -> tuple[int, str]:
        row = conn.execute(select(HEAD.c.seq, HEAD.c.hash).where(HEAD.c.id == 1)).one()
        return int(row[0]), str(row[1])

    @staticmethod
    def _set_head(conn: Connection, seq: int, h: str) -> None:
        conn.execute(update(HEAD).where(HEAD.c.id == 1).values(seq=seq, hash=h, updated_at=_now()))

    def head(self) -> tuple[int, str]:
        """The ledger head: last sequence number and hash."""
        with read_transaction(self.engine) as conn:
            return self._head(conn)

    def recompute(self, run: RunRecord, contract: "Contract | None" = None,
                  data: pd.DataFrame | None = None) -> "Evaluation":
        """The evaluation ``run`` made, recomputed from its stored inputs (cumulative: every
        line of the deal up to the run)."""
        from sib_engine.loader import parse_contract

        with read_transaction(self.engine) as conn:
            previous = None
            if run.previous_run_id is not None:
                prev_row = conn.execute(select(RUNS).where(RUNS.c.id == run.previous_run_id)).mappings().one()
                previous = self._ledger_state(conn, _run_record(prev_row))
            if contract is None:
                text = conn.execute(select(CONTRACTS.c.source_text).where(CONTRACTS.c.id == run.contract_id)).scalar_one()
                contract = parse_contract(str(text), source=f"<recorded contract {run.contract_hash[:12]}>")
            frame = data if data is not None else self._accepted_frame(conn, run.submission_id)
        return adapter.evaluate(contract, frame, run.as_of, previous)

    def lines(self, run: RunRecord) -> list[dict[str, Any]]:
        """The payment lines ``run`` added (column values; money in minor units)."""
        with read_transaction(self.engine) as conn:
            return [dict(r) for r in conn.execute(select(LINES).where(LINES.c.run_id == run.id)
                                                  .order_by(LINES.c.line_no)).mappings()]

    def deal_lines(self, deal_id: str) -> list[dict[str, Any]]:
        """Every payment line of the deal's ledger, in order."""
        with read_transaction(self.engine) as conn:
            return [dict(r) for r in conn.execute(
                select(LINES).join(RUNS, RUNS.c.id == LINES.c.run_id).where(RUNS.c.deal_id == deal_id)
                .order_by(LINES.c.seq)).mappings()]

    def determinations(self, run: RunRecord) -> list[dict[str, Any]]:
        with read_transaction(self.engine) as conn:
            return [dict(r) for r in conn.execute(select(DETERMINATIONS).where(DETERMINATIONS.c.run_id == run.id)
                                                  .order_by(DETERMINATIONS.c.position)).mappings()]

    def allocations(self, run: RunRecord) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """The waterfall flows and funder positions recorded with ``run``."""
        with read_transaction(self.engine) as conn:
            flows = [dict(r) for r in conn.execute(select(ALLOCATIONS).where(ALLOCATIONS.c.run_id == run.id)
                                                   .order_by(ALLOCATIONS.c.position)).mappings()]
            pos = [dict(r) for r in conn.execute(select(POSITIONS).where(POSITIONS.c.run_id == run.id)
                                                 .order_by(POSITIONS.c.id)).mappings()]
        return flows, pos

    # -- simulations ---------------------------------------------------------------
    def record_simulation(
        self, contract: ContractRecord, *, seed: int, assumptions: Mapping[str, Any], summary: Mapping[str, Any],
        worlds: int | None = None, command: str | None = None,
    ) -> SimulationRecord:
        """Append a simulation run (seed, assumptions, summary statistics) to the ledger."""
        with write_transaction(self.engine, LEDGER_LOCK) as conn:
            return self._append_simulation(conn, contract, seed, worlds, json_safe(dict(assumptions)),
                                           json_safe(dict(summary)), command)

    def record_simulation_once(
        self, contract: ContractRecord, *, seed: int, assumptions: Mapping[str, Any], summary: Mapping[str, Any],
        worlds: int | None = None, command: str | None = None,
    ) -> tuple[SimulationRecord, bool]:
        """Append a simulation run unless the ledger already holds one of the same contract
        text, seed, number of worlds, assumptions and engine version **with the same
        summary**; returns ``(simulation, created)``.

        A simulation is reproducible by its seed, so running it again with the same inputs
        records nothing new (as ``sib run`` with the same contract, data and date).  Should
        the same inputs ever give other figures (another numerical library, a bug), the run
        is recorded: a difference is never hidden."""
        inputs = json_safe(dict(assumptions))
        figures = json_safe(dict(summary))
        with write_transaction(self.engine, LEDGER_LOCK) as conn:
            for found in self._find_simulations(conn, contract, seed, worlds, inputs):
                if found.summary == figures:
                    return found, False
            return self._append_simulation(conn, contract, seed, worlds, inputs, figures, command), True

    def find_simulations(self, contract: ContractRecord, *, seed: int, assumptions: Mapping[str, Any],
                         worlds: int | None = None) -> list[SimulationRecord]:
        """The recorded simulations of this contract text with this seed, number of worlds and
        assumptions, made by this engine version (oldest first)."""
        with read_transaction(self.engine) as conn:
            return self._find_simulations(conn, contract, seed, worlds, json_safe(dict(assumptions)))

    def simulations(self, deal_id: str | None = None) -> list[SimulationRecord]:
        """The recorded simulations (of one deal), in ledger order."""
        with read_transaction(self.engine) as conn:
            q = select(SIMULATIONS).order_by(SIMULATIONS.c.seq)
            if deal_id is not None:
                q = q.where(SIMULATIONS.c.deal_id == deal_id)
            return [_simulation_record(r) for r in conn.execute(q).mappings()]

    @staticmethod
    def _find_simulations(conn: Connection, contract: ContractRecord, seed: int, worlds: int | None,
                          assumptions: Any) -> list[SimulationRecord]:
        q = select(SIMULATIONS).where(
            SIMULATIONS.c.deal_id == contract.deal_id, SIMULATIONS.c.contract_hash == contract.content_hash,
            SIMULATIONS.c.seed == int(seed), SIMULATIONS.c.engine_version == __version__,
            SIMULATIONS.c.worlds.is_(None) if worlds is None else SIMULATIONS.c.worlds == int(worlds),
        ).order_by(SIMULATIONS.c.seq)
        # the assumptions are compared as data, not as JSON text (key order, spacing)
        return [_simulation_record(r) for r in conn.execute(q).mappings() if r["assumptions"] == assumptions]

    def _append_simulation(self, conn: Connection, contract: ContractRecord, seed: int, worlds: int | None,
                           assumptions: Any, summary: Any, command: str | None) -> SimulationRecord:
        seq, prev = self._head(conn)
        prov = self._provenance(conn, "simulation", contract.content_hash, seed=seed, command=command)
        values: dict[str, Any] = {
            "uid": uuid.uuid4().hex, "deal_id": contract.deal_id, "contract_id": contract.id,
            "provenance_id": prov, "contract_hash": contract.content_hash, "engine_version": __version__,
            "seed": int(seed), "worlds": worlds, "assumptions": assumptions, "summary": summary,
            "recorded_at": _now(),
        }
        seq, prev = self._chain(SIMULATIONS, "simulation", values, seq, prev)
        sim_id = conn.execute(insert(SIMULATIONS).values(**values).returning(SIMULATIONS.c.id)).scalar_one()
        self._set_head(conn, seq, prev)
        return _simulation_record(conn.execute(select(SIMULATIONS).where(SIMULATIONS.c.id == sim_id))
                                  .mappings().one())

    # -- history -------------------------------------------------------------------
    def history(self, deal_id: str) -> History:
        """Every determination run, restatement and simulation of a deal, in ledger order."""
        items: list[HistoryItem] = []
        with read_transaction(self.engine) as conn:
            head = self._head(conn)
            for r in conn.execute(select(RUNS).where(RUNS.c.deal_id == deal_id).order_by(RUNS.c.seq)).mappings():
                run = _run_record(r)
                sub = conn.execute(select(SUBMISSIONS).where(SUBMISSIONS.c.id == run.submission_id)).mappings().one()
                dets = conn.execute(select(DETERMINATIONS.c.determination, DETERMINATIONS.c.first_made)
                                    .where(DETERMINATIONS.c.run_id == run.id)
                                    .order_by(DETERMINATIONS.c.position)).all()
                kinds = conn.execute(select(LINES.c.kind, func.count(), func.sum(LINES.c.amount_minor))
                                     .where(LINES.c.run_id == run.id).group_by(LINES.c.kind)).all()
                by = {k: (int(n), from_minor_units(int(s or 0), run.currency)) for k, n, s in kinds}
                summary = LineSummary(
                    payments=by.get("payment", (0, Decimal(0)))[0], true_ups=by.get("true_up", (0, Decimal(0)))[0],
                    clawbacks=by.get("clawback", (0, Decimal(0)))[0], paid=by.get("payment", (0, Decimal(0)))[1],
                    trued_up=by.get("true_up", (0, Decimal(0)))[1], clawed_back=by.get("clawback", (0, Decimal(0)))[1],
                )
                items.append(HistoryItem(
                    seq=run.seq, kind=run.kind, entry_hash=run.entry_hash, recorded_at=run.recorded_at, run=run,
                    submission=_submission_record(sub), lines=summary,
                    determinations=tuple(str(d) for d, first in dets if first),
                    redetermined=tuple(str(d) for d, first in dets if not first),
                ))
            for r in conn.execute(select(SIMULATIONS).where(SIMULATIONS.c.deal_id == deal_id)
                                  .order_by(SIMULATIONS.c.seq)).mappings():
                sim = _simulation_record(r)
                items.append(HistoryItem(seq=sim.seq, kind="simulation", entry_hash=sim.entry_hash,
                                         recorded_at=sim.recorded_at, simulation=sim))
        items.sort(key=lambda i: i.seq)
        return History(deal_id, tuple(items), head)

    # -- verify --------------------------------------------------------------------
    def verify(self, *, recompute: bool = True) -> VerifyReport:
        """Check the hash chain and every stored input, and recompute every recorded
        determination (and its funder allocations) from its stored inputs."""
        from sib_engine.errors import SibError
        from sib_engine.loader import parse_contract

        problems: list[str] = []
        with read_transaction(self.engine) as conn:
            head = self._head(conn)
            entries: list[Entry] = []
            for name, (table, kind) in CHAINED.items():
                for r in conn.execute(select(table)).mappings():
                    entries.append((name, int(r["seq"]), str(r["prev_hash"]), str(r["entry_hash"]),
                                    _fields(table, dict(r)), kind))
            problems += verify_chain(entries, head)

            contracts: dict[int, Any] = {}
            crow = {int(r["id"]): r for r in conn.execute(select(CONTRACTS)).mappings()}
            for cid, r in crow.items():
                if text_hash(r["source_text"]) != r["content_hash"]:
                    problems.append(f"contract #{cid} ({r['deal_id']}): its text does not match its content hash "
                                    f"{r['content_hash'][:16]}... (changed after it was recorded)")
                try:
                    contracts[cid] = parse_contract(r["source_text"], source=f"<recorded contract #{cid}>")
                except SibError as exc:
                    problems.append(f"contract #{cid} ({r['deal_id']}): the recorded text no longer loads: "
                                    f"{str(exc).splitlines()[0]}")

            srow = {int(r["id"]): r for r in conn.execute(select(SUBMISSIONS)).mappings()}
            cache: dict[int, pd.DataFrame] = {}
            seen: set[int] = set()

            def frame_of(sid: int) -> pd.DataFrame:
                """The submission's accepted rows, checked against its counts and hash on first
                reading (one submission is kept in memory at a time)."""
                if sid in cache:
                    return cache[sid]
                cache.clear()
                seen.add(sid)
                r = srow[sid]
                n_acc = conn.execute(select(func.count()).select_from(ACCEPTED)
                                     .where(ACCEPTED.c.submission_id == sid)).scalar_one()
                n_q = conn.execute(select(func.count()).select_from(QUARANTINED)
                                   .where(QUARANTINED.c.submission_id == sid)).scalar_one()
                what = f"submission #{sid} ({r['deal_id']}, data {r['content_hash'][:16]}...)"
                if n_acc != r["accepted"] or n_q != r["quarantined"]:
                    problems.append(f"{what}: {n_acc} accepted and {n_q} quarantined rows stored, but "
                                    f"{r['accepted']} and {r['quarantined']} recorded (a partial submission?)")
                frame = self._accepted_frame(conn, sid)
                if frame_hash(frame) != r["accepted_hash"]:
                    problems.append(f"{what}: the stored accepted rows do not match their hash "
                                    f"{r['accepted_hash'][:16]}... (rows changed after they were recorded)")
                cache[sid] = frame
                return frame

            run_rows = conn.execute(select(RUNS).order_by(RUNS.c.seq)).mappings().all()
            last_of_deal: dict[str, RunRecord] = {}
            for r in run_rows:
                run = _run_record(r)
                what = f"run {run.uid[:12]} (#{run.seq}, {run.deal_id}, as of {run.as_of or 'all'})"
                dets = [dict(x) for x in conn.execute(select(DETERMINATIONS).where(DETERMINATIONS.c.run_id == run.id)
                                                      .order_by(DETERMINATIONS.c.position)).mappings()]
                lines = [dict(x) for x in conn.execute(select(LINES).where(LINES.c.run_id == run.id)
                                                       .order_by(LINES.c.line_no)).mappings()]
                net = sum(int(x["amount_minor"]) for x in lines)
                if (len(dets), len(lines), net) != (run.n_determinations, run.n_lines, int(r["net_minor"])):
                    problems.append(f"{what}: {len(dets)} determinations and {len(lines)} lines (net {net}) stored, "
                                    f"but the run recorded {run.n_determinations} and {run.n_lines} (net "
                                    f"{int(r['net_minor'])}): a partial determination")
                c = crow.get(run.contract_id)
                s = srow.get(run.submission_id)
                if c is None or c["content_hash"] != run.contract_hash:
                    problems.append(f"{what}: its contract hash {run.contract_hash[:16]}... does not match the "
                                    "recorded contract")
                if s is None or (s["content_hash"], s["accepted_hash"]) != (run.data_hash, run.accepted_hash):
                    problems.append(f"{what}: its data hashes do not match the recorded submission")
                before = last_of_deal.get(run.deal_id)
                if (before.id if before else None) != run.previous_run_id:
                    problems.append(f"{what}: it names run #{run.previous_run_id} as the one before it, but the "
                                    f"deal's run before it is #{before.id if before else None}")
                last_of_deal[run.deal_id] = run
                if not recompute or run.contract_id not in contracts or run.submission_id not in srow:
                    continue
                previous = self._ledger_state(conn, before) if before is not None else None
                note = "" if run.engine_version == __version__ else \
                    f" [recorded by sib-engine {run.engine_version}, recomputed by {__version__}]"
                try:
                    ev = adapter.evaluate(contracts[run.contract_id], frame_of(run.submission_id), run.as_of,
                                          previous)
                except SibError as exc:
                    problems.append(f"{what}: cannot be recomputed: {exc}{note}")
                    continue
                problems += _compare(what, "determination", adapter.DETERMINATION_KEY, dets,
                                     adapter.determination_values(ev, previous), note)
                problems += _compare(what, "payment line", adapter.LINE_KEY, lines,
                                     adapter.line_values(adapter.new_lines(ev, previous), run.currency), note)
                flows = [dict(x) for x in conn.execute(select(ALLOCATIONS).where(ALLOCATIONS.c.run_id == run.id)
                                                       .order_by(ALLOCATIONS.c.position)).mappings()]
                positions = [dict(x) for x in conn.execute(select(POSITIONS).where(POSITIONS.c.run_id == run.id)
                                                           .order_by(POSITIONS.c.id)).mappings()]
                alloc = adapter.allocate(contracts[run.contract_id], ev)
                if alloc is not None:
                    problems += _compare(what, "allocation flow", adapter.FLOW_KEY, flows, alloc.flows, note)
                    problems += _compare(what, "funder position", adapter.POSITION_KEY, positions, alloc.positions,
                                         note)
            for sid in srow:
                if sid not in seen:
                    frame_of(sid)
            n_sims = 0
            for r in conn.execute(select(SIMULATIONS).order_by(SIMULATIONS.c.seq)).mappings():
                n_sims += 1
                c = crow.get(int(r["contract_id"]))
                if c is None or c["content_hash"] != r["contract_hash"]:
                    problems.append(f"simulation {str(r['uid'])[:12]} (#{r['seq']}, {r['deal_id']}): its contract "
                                    f"hash {str(r['contract_hash'])[:16]}... does not match the recorded contract")
        return VerifyReport(tuple(problems), len(entries), len(run_rows), len(srow), len(crow), int(n_sims), head)

    # -- export --------------------------------------------------------------------
    def export_indigo(self, deal_id: str, *, min_cell: int | None = None) -> dict[str, Any]:
        """The deal's terms, payments and results in the field names of the INDIGO
        impact-bond data standard (see :mod:`sib_engine.storage.indigo`)."""
        from sib_engine.loader import parse_contract
        from sib_engine.storage.indigo import indigo_project

        rec = self.latest_contract(deal_id)
        if rec is None:
            raise StorageError(f"no contract '{deal_id}' is recorded in {display_url(self.url)}; "
                               "record it with 'sib run CONTRACT DATA' first")
        contract = parse_contract(self.contract_text(rec.id), source=rec.source_name)
        run = self.deal_head(deal_id)
        lines = self.deal_lines(deal_id)
        dets = self.determinations(run) if run else []
        frame = self.accepted_frame(run.submission_id) if run else None
        flows, positions = self.allocations(run) if run else ([], [])
        return indigo_project(contract, rec, run, dets, lines, frame, flows, positions, self.head(),
                              min_cell=min_cell)


def _norm(v: Any) -> Any:
    if isinstance(v, datetime):
        return v
    if isinstance(v, tuple):
        return list(v)
    return v


def _compare(what: str, kind: str, keys: Sequence[str], stored: Sequence[Mapping[str, Any]],
             recomputed: Sequence[Mapping[str, Any]], note: str) -> list[str]:
    """Mismatches between stored and recomputed records, each named."""
    out: list[str] = []
    for i in range(max(len(stored), len(recomputed))):
        if i >= len(stored):
            out.append(f"{what}: {kind} {i + 1} recomputes ({_describe(recomputed[i])}) but is not recorded{note}")
            continue
        if i >= len(recomputed):
            out.append(f"{what}: {kind} {i + 1} is recorded ({_describe(stored[i])}) but does not recompute{note}")
            continue
        diff = [k for k in keys if _norm(stored[i].get(k)) != _norm(recomputed[i].get(k))]
        if diff:
            detail = "; ".join(f"{k} recorded {stored[i].get(k)!r}, recomputed {recomputed[i].get(k)!r}" for k in diff)
            out.append(f"{what}: {kind} {i + 1} ({_describe(stored[i])}): {detail}{note}")
    return out


def _describe(rec: Mapping[str, Any]) -> str:
    parts = [str(rec[k]) for k in ("determination", "kind", "period", "payer", "trigger", "outcome", "party", "source",
                                   "target") if rec.get(k) is not None]
    if "amount_minor" in rec and rec.get("currency"):
        parts.append(f"{from_minor_units(int(rec['amount_minor']), rec['currency'])} {rec['currency']}")
    return " / ".join(parts)


def open_store(url: str | None = None) -> Store:
    """Open the database at ``url`` (default: ``$SIB_DATABASE_URL`` or ``sqlite:///sib.db``)."""
    return Store.open(url)


__all__ = ["Store", "open_store", "StorageError", "text_hash"]
