"""Database rows (SQLAlchemy 2.0 typed ORM).  Rows are their own classes, apart from the
domain models (:mod:`sib_engine.contract`, the evaluation's results) and from the records
the store hands out (:mod:`sib_engine.storage.records`).

Money is an integer number of minor units (``amount_minor``) with its ISO 4217
``currency``: SQLite cannot hold a ``Decimal`` exactly.  Dates are ``DATE``; instants are
naive UTC ``TIMESTAMP``.

**Ledger tables** (:data:`LEDGER_TABLES`) form one hash chain: every row carries a global
sequence number ``seq`` (1, 2, 3, ... across all four tables), the hash of the entry before
it (``prev_hash``) and its own hash (``entry_hash``, SHA-256 of its canonical serialisation,
see :mod:`sib_engine.storage.chain`).  ``ledger_head`` holds the last ``seq`` and hash.

**Append-only tables** (:data:`APPEND_ONLY_TABLES`: every table but ``ledger_head``) refuse
``UPDATE`` and ``DELETE`` in the database itself (triggers created by the migration).

The schema is created by the migrations in ``sib_engine/storage/migrations``, never by
``metadata.create_all``; a test checks that the migrations and these classes agree.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    DateTime,
    Double,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

HASH = 64
"""Length of a SHA-256 hex digest."""

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON}


# ----------------------------------------------------------------------- inputs ---


class ContractRow(Base):
    """A contract file as recorded: its exact text, so a determination can be recomputed."""

    __tablename__ = "contracts"

    id: Mapped[int] = mapped_column(primary_key=True)
    content_hash: Mapped[str] = mapped_column(String(HASH), unique=True)
    """SHA-256 of the contract text (UTF-8, byte-order mark removed)."""
    deal_id: Mapped[str] = mapped_column(String(64), index=True)
    """The contract's ``id`` (one deal may have several recorded versions)."""
    version: Mapped[int] = mapped_column(Integer)
    format_version: Mapped[str] = mapped_column(String(40))
    title: Mapped[str] = mapped_column(Text)
    currency: Mapped[str] = mapped_column(String(3))
    source_name: Mapped[str] = mapped_column(Text)
    source_text: Mapped[str] = mapped_column(Text)
    amendments: Mapped[list[Any]] = mapped_column(JSON)
    """Every amendment: id, effective date, clause, summary."""
    recorded_at: Mapped[datetime] = mapped_column(DateTime)


class SubmissionRow(Base):
    """A data submission for a contract, recorded once per content hash."""

    __tablename__ = "data_submissions"
    __table_args__ = (UniqueConstraint("contract_id", "content_hash", "key_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    contract_id: Mapped[int] = mapped_column(ForeignKey("contracts.id"), index=True)
    deal_id: Mapped[str] = mapped_column(String(64), index=True)
    content_hash: Mapped[str] = mapped_column(String(HASH))
    """SHA-256 of the submitted file (or of the folder's files)."""
    key_id: Mapped[str] = mapped_column(String(64))
    """Fingerprint of the pseudonymisation key (never the key)."""
    source: Mapped[str] = mapped_column(Text)
    rows: Mapped[int] = mapped_column(Integer)
    accepted: Mapped[int] = mapped_column(Integer)
    quarantined: Mapped[int] = mapped_column(Integer)
    flagged: Mapped[int] = mapped_column(Integer)
    hold: Mapped[bool] = mapped_column(Boolean)
    hold_reasons: Mapped[list[Any]] = mapped_column(JSON)
    reasons: Mapped[dict[str, Any]] = mapped_column(JSON)
    columns: Mapped[list[Any]] = mapped_column(JSON)
    """The measured-data columns the accepted rows carry."""
    accepted_hash: Mapped[str] = mapped_column(String(HASH))
    """SHA-256 of the accepted rows in their stored form (:func:`~sib_engine.storage.frames.frame_hash`)."""
    restates_id: Mapped[int | None] = mapped_column(ForeignKey("data_submissions.id"))
    """The deal's latest submission when this one came in (its rows were compared with it)."""
    recorded_at: Mapped[datetime] = mapped_column(DateTime)


class AcceptedRow(Base):
    """An accepted row of a submission, participant pseudonymised, in the measured-data format.

    ``submission_id`` has no foreign key on purpose: the rows are bulk-loaded (a million
    foreign-key checks would take longer than the load itself) in the transaction that
    records their submission, and ``verify`` checks each submission's row count and hash."""

    __tablename__ = "accepted_rows"

    submission_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    pos: Mapped[int] = mapped_column(Integer, primary_key=True)
    """Order of the row among the accepted rows (0-based)."""
    row: Mapped[int] = mapped_column(Integer)
    """Input row number (1-based)."""
    contract_code: Mapped[str | None] = mapped_column(String(64))
    contract_version: Mapped[int | None] = mapped_column(Integer)
    participant_id: Mapped[str | None] = mapped_column(String(64))
    metric: Mapped[str | None] = mapped_column(String(64))
    date: Mapped[date | None] = mapped_column(Date)
    value: Mapped[float | None] = mapped_column(Double)
    cohort: Mapped[str | None] = mapped_column(String(64))
    group_name: Mapped[str | None] = mapped_column(String(64))
    municipality: Mapped[str | None] = mapped_column(String(64))
    age: Mapped[int | None] = mapped_column(Integer)
    prior_months: Mapped[int | None] = mapped_column(Integer)
    flags: Mapped[str | None] = mapped_column(Text)


class QuarantinedRow(Base):
    """A rejected row with its reasons (participant pseudonymised; cells as submitted)."""

    __tablename__ = "quarantined_rows"

    submission_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    """No foreign key, like :attr:`AcceptedRow.submission_id`."""
    pos: Mapped[int] = mapped_column(Integer, primary_key=True)
    row: Mapped[int] = mapped_column(Integer)
    source: Mapped[str | None] = mapped_column(Text)
    reason: Mapped[str | None] = mapped_column(String(64))
    reasons: Mapped[str | None] = mapped_column(Text)
    message: Mapped[str | None] = mapped_column(Text)
    participant_id: Mapped[str | None] = mapped_column(String(64))
    cells: Mapped[dict[str, Any]] = mapped_column(JSON)


# ------------------------------------------------------------------- provenance ---


class ProvenanceRow(Base):
    """What produced a run: engine, inputs' hashes, seed, as-of date, environment."""

    __tablename__ = "provenance"

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(20))
    """``validation``, ``determination`` or ``simulation``."""
    engine_version: Mapped[str] = mapped_column(String(40))
    contract_hash: Mapped[str] = mapped_column(String(HASH))
    data_hash: Mapped[str | None] = mapped_column(String(HASH))
    seed: Mapped[int | None] = mapped_column(BigInteger)
    as_of: Mapped[date | None] = mapped_column(Date)
    python: Mapped[str] = mapped_column(String(40))
    packages: Mapped[dict[str, Any]] = mapped_column(JSON)
    command: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime)


class ValidationRunRow(Base):
    __tablename__ = "validation_runs"

    id: Mapped[int] = mapped_column(primary_key=True)
    submission_id: Mapped[int] = mapped_column(ForeignKey("data_submissions.id"), index=True)
    provenance_id: Mapped[int] = mapped_column(ForeignKey("provenance.id"))
    tolerance: Mapped[str] = mapped_column(String(40))
    hold: Mapped[bool] = mapped_column(Boolean)
    hold_reasons: Mapped[list[Any]] = mapped_column(JSON)
    reasons: Mapped[dict[str, Any]] = mapped_column(JSON)
    checks: Mapped[list[Any]] = mapped_column(JSON)
    failures: Mapped[int] = mapped_column(Integer)
    timings: Mapped[dict[str, Any]] = mapped_column(JSON)
    recorded_at: Mapped[datetime] = mapped_column(DateTime)


# ----------------------------------------------------------------------- ledger ---


class _Chained:
    """Columns of a hash-chained ledger entry."""

    seq: Mapped[int] = mapped_column(BigInteger, unique=True)
    prev_hash: Mapped[str] = mapped_column(String(HASH))
    entry_hash: Mapped[str] = mapped_column(String(HASH), unique=True)


class RunRow(_Chained, Base):
    """A determination run: one evaluation of a submission, as of a date, recorded."""

    __tablename__ = "determination_runs"
    __table_args__ = (Index("ix_determination_runs_deal_seq", "deal_id", "seq"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    uid: Mapped[str] = mapped_column(String(32), unique=True)
    deal_id: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(20))
    """``determination`` (the first run, or the same inputs at a later as-of date),
    ``restatement`` (a new data file) or ``amendment`` (the same data under a changed
    contract text)."""
    contract_id: Mapped[int] = mapped_column(ForeignKey("contracts.id"))
    submission_id: Mapped[int] = mapped_column(ForeignKey("data_submissions.id"))
    validation_run_id: Mapped[int | None] = mapped_column(ForeignKey("validation_runs.id"))
    provenance_id: Mapped[int] = mapped_column(ForeignKey("provenance.id"))
    previous_run_id: Mapped[int | None] = mapped_column(ForeignKey("determination_runs.id"))
    as_of: Mapped[date | None] = mapped_column(Date)
    contract_hash: Mapped[str] = mapped_column(String(HASH))
    data_hash: Mapped[str] = mapped_column(String(HASH))
    accepted_hash: Mapped[str] = mapped_column(String(HASH))
    engine_version: Mapped[str] = mapped_column(String(40))
    currency: Mapped[str] = mapped_column(String(3))
    n_determinations: Mapped[int] = mapped_column(Integer)
    n_lines: Mapped[int] = mapped_column(Integer)
    net_minor: Mapped[int] = mapped_column(BigInteger)
    """Sum of the lines this run added, in minor units."""
    rates: Mapped[list[Any]] = mapped_column(JSON)
    """Return rates set by outcome bands: determination, trigger, tranches, rate, clause."""
    notes: Mapped[list[Any]] = mapped_column(JSON)
    recorded_at: Mapped[datetime] = mapped_column(DateTime)


class DeterminationRow(_Chained, Base):
    """A determination as made by a run (every determination the run's evaluation made)."""

    __tablename__ = "determinations"

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("determination_runs.id"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    determination: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(10))
    period: Mapped[str] = mapped_column(String(64))
    period_start: Mapped[date] = mapped_column(Date)
    period_end: Mapped[date] = mapped_column(Date)
    data_cutoff: Mapped[date] = mapped_column(Date)
    payment_date: Mapped[date] = mapped_column(Date)
    terms_date: Mapped[date] = mapped_column(Date)
    amendments: Mapped[list[Any]] = mapped_column(JSON)
    clause: Mapped[str | None] = mapped_column(Text)
    first_made: Mapped[bool] = mapped_column(Boolean)
    """True if no earlier run of the deal had made this determination."""


class PaymentLineRow(_Chained, Base):
    """A payment, true-up or clawback line added to the ledger by a run."""

    __tablename__ = "payment_lines"

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("determination_runs.id"), index=True)
    line_no: Mapped[int] = mapped_column(Integer)
    determination: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(10))
    period: Mapped[str] = mapped_column(String(64))
    payment_date: Mapped[date] = mapped_column(Date)
    payer: Mapped[str] = mapped_column(String(64))
    trigger: Mapped[str] = mapped_column(String(64))
    outcome: Mapped[str] = mapped_column(Text)
    units: Mapped[str | None] = mapped_column(String(80))
    """Exact decimal text."""
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    clause: Mapped[str] = mapped_column(Text)
    note: Mapped[str] = mapped_column(Text)
    unrounded: Mapped[str | None] = mapped_column(Text)
    """The amount before rounding, exact decimal text."""
    trace: Mapped[str] = mapped_column(Text)
    """How the amount was computed, rendered (see :class:`sib_engine.trace.Trace`)."""


class SimulationRow(_Chained, Base):
    """A simulation run: seed, assumptions and summary statistics."""

    __tablename__ = "simulation_runs"

    id: Mapped[int] = mapped_column(primary_key=True)
    uid: Mapped[str] = mapped_column(String(32), unique=True)
    deal_id: Mapped[str] = mapped_column(String(64), index=True)
    contract_id: Mapped[int] = mapped_column(ForeignKey("contracts.id"))
    provenance_id: Mapped[int] = mapped_column(ForeignKey("provenance.id"))
    contract_hash: Mapped[str] = mapped_column(String(HASH))
    engine_version: Mapped[str] = mapped_column(String(40))
    seed: Mapped[int] = mapped_column(BigInteger)
    worlds: Mapped[int | None] = mapped_column(Integer)
    assumptions: Mapped[dict[str, Any]] = mapped_column(JSON)
    summary: Mapped[dict[str, Any]] = mapped_column(JSON)
    recorded_at: Mapped[datetime] = mapped_column(DateTime)


class LedgerHeadRow(Base):
    """The last entry of the hash chain (one row, ``id = 1``); the only row ever updated."""

    __tablename__ = "ledger_head"

    id: Mapped[int] = mapped_column(primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger)
    hash: Mapped[str] = mapped_column(String(HASH))
    updated_at: Mapped[datetime] = mapped_column(DateTime)


# ------------------------------------------------------------ funder allocations ---


class AllocationRow(Base):
    """A flow of money through the deal's waterfall, over the ledger as of a run."""

    __tablename__ = "funder_allocations"

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("determination_runs.id"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    date: Mapped[date] = mapped_column(Date)
    source: Mapped[str] = mapped_column(String(64))
    target: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(40))
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    tranche: Mapped[str | None] = mapped_column(String(64))
    step: Mapped[int | None] = mapped_column(Integer)
    trigger: Mapped[str | None] = mapped_column(String(64))
    determination: Mapped[str | None] = mapped_column(String(64))
    clause: Mapped[str | None] = mapped_column(Text)
    why: Mapped[str] = mapped_column(Text)


class FunderPositionRow(Base):
    """A funder's (or guarantor's) position and return over the ledger as of a run."""

    __tablename__ = "funder_positions"

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("determination_runs.id"), index=True)
    party: Mapped[str] = mapped_column(String(64))
    role: Mapped[str] = mapped_column(String(20))
    tranches: Mapped[list[Any]] = mapped_column(JSON)
    invested_minor: Mapped[int] = mapped_column(BigInteger)
    received_minor: Mapped[int] = mapped_column(BigInteger)
    guarantee_received_minor: Mapped[int] = mapped_column(BigInteger)
    guarantee_paid_minor: Mapped[int] = mapped_column(BigInteger)
    outstanding_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    irr: Mapped[str | None] = mapped_column(String(60))
    """Annual XIRR as decimal text, or empty when it has no solution."""
    multiple: Mapped[str | None] = mapped_column(String(60))


LEDGER_TABLES: tuple[str, ...] = ("determination_runs", "determinations", "payment_lines", "simulation_runs")
"""The hash-chained tables."""

APPEND_ONLY_TABLES: tuple[str, ...] = (
    "contracts",
    "data_submissions",
    "accepted_rows",
    "quarantined_rows",
    "provenance",
    "validation_runs",
    *LEDGER_TABLES,
    "funder_allocations",
    "funder_positions",
)
"""Tables whose rows are never updated or deleted (the database refuses it)."""
