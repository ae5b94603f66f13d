"""Opening a database: the URL, the engine, transactions, locks and migrations.

* **Where.**  ``--db URL`` (or a plain file path, taken as a SQLite file), else the environment
  variable ``SIB_DATABASE_URL``, else ``sqlite:///sib.db`` (a file in the working directory).
  ``postgresql://`` URLs use the psycopg (3) driver.
* **SQLite** runs in WAL mode with ``synchronous=FULL``, foreign keys on and a busy timeout
  (60 s by default), and sib-engine emits ``BEGIN`` itself (the ``sqlite3`` module's legacy
  transaction handling is switched off): every read is one consistent snapshot, every write
  transaction starts with ``BEGIN IMMEDIATE`` (one writer at a time; the others wait).
* **PostgreSQL** runs at READ COMMITTED; a write transaction takes a transaction-scoped
  advisory lock first (the ledger's chain head, or the deal's submissions), so that writers
  of the same chain queue up instead of conflicting.
* **Migrations** (alembic, shipped in ``sib_engine/storage/migrations``) are applied when a
  database is opened, with a :class:`alembic.config.Config` built in code (no ``alembic.ini``
  needed), under the same write lock so that two processes opening a new database at once do
  not both create it.
"""

from __future__ import annotations

import io
import os
import zlib
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import ArgumentError

from sib_engine.errors import SibError

ENV_URL = "SIB_DATABASE_URL"
DEFAULT_URL = "sqlite:///sib.db"
MIGRATIONS = Path(__file__).resolve().parent / "migrations"

LEDGER_LOCK = (0x51B, 1)
"""PostgreSQL advisory lock (class, key) held while appending to the hash chain."""
_DEAL_LOCK_CLASS = 0x51B + 1
_MIGRATION_LOCK = (0x51B, 2)


class StorageError(SibError):
    """The database cannot be opened or used (bad URL, unreachable server, ...)."""


def database_url(given: str | None = None, environ: dict[str, str] | None = None) -> str:
    """The database URL to use: ``given`` (a URL or a SQLite file path), else
    ``$SIB_DATABASE_URL``, else ``sqlite:///sib.db``."""
    env = os.environ if environ is None else environ
    raw = given or env.get(ENV_URL) or DEFAULT_URL
    if "://" not in raw:
        raw = "sqlite:///" + raw
    try:
        url = make_url(raw)
    except ArgumentError as exc:
        raise StorageError(f"'{raw}' is not a database URL ({exc}); use e.g. sqlite:///sib.db or "
                           "postgresql://user@host:5432/dbname") from None
    if url.drivername in ("postgresql", "postgres"):
        url = url.set(drivername="postgresql+psycopg")
    if url.get_backend_name() not in ("sqlite", "postgresql"):
        raise StorageError(f"database '{url.get_backend_name()}' is not supported; use SQLite or PostgreSQL")
    return url.render_as_string(hide_password=False)


def display_url(url: str) -> str:
    """The URL with any password hidden, for messages."""
    return make_url(url).render_as_string(hide_password=True)


def sqlite_file_missing(url: str) -> str | None:
    """The path of a SQLite database file that does not exist (None otherwise)."""
    u = make_url(url)
    if u.get_backend_name() != "sqlite":
        return None
    database = u.database or ""
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    path = Path(database).expanduser()
    return None if path.exists() else str(path)


def deal_lock(deal_id: str) -> tuple[int, int]:
    """The advisory lock of a deal's contracts and submissions."""
    return (_DEAL_LOCK_CLASS, zlib.crc32(deal_id.encode("utf-8")) - 2**31)


def create_database_engine(url: str, *, busy_timeout: float = 60.0) -> Engine:
    """An engine for ``url`` set up as described in the module's docstring."""
    u = make_url(url)
    if u.get_backend_name() == "sqlite":
        database = u.database or ""
        if database and database != ":memory:" and not database.startswith("file:"):
            parent = Path(database).expanduser().resolve().parent
            if not parent.is_dir():
                raise StorageError(f"cannot create the database {database}: the folder {parent} does not exist")
        engine = create_engine(u, connect_args={"timeout": busy_timeout})
        ms = int(busy_timeout * 1000)

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_connection: Any, _record: Any) -> None:
            dbapi_connection.isolation_level = None  # sib-engine emits BEGIN itself
            cur = dbapi_connection.cursor()
            cur.execute(f"PRAGMA busy_timeout = {ms}")
            if database != ":memory:":
                cur.execute("PRAGMA journal_mode = WAL")
            cur.execute("PRAGMA synchronous = FULL")
            cur.execute("PRAGMA foreign_keys = ON")
            cur.close()

        @event.listens_for(engine, "begin")
        def _on_begin(conn: Connection) -> None:
            write = conn.get_execution_options().get("sib_write", False)
            conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

        return engine
    return create_engine(u, pool_pre_ping=True, connect_args={"connect_timeout": int(busy_timeout)})


def is_postgres(conn: Connection | Engine) -> bool:
    return conn.dialect.name == "postgresql"


@contextmanager
def write_transaction(engine: Engine, lock: tuple[int, int] | None = None) -> Iterator[Connection]:
    """A write transaction: ``BEGIN IMMEDIATE`` on SQLite; on PostgreSQL the advisory
    ``lock`` (if given) is taken first.  Commits on success, rolls back on any error."""
    with engine.connect() as conn:
        conn.execution_options(sib_write=True)
        with conn.begin():
            if lock is not None and is_postgres(conn):
                conn.execute(text("SELECT pg_advisory_xact_lock(:a, :b)"), {"a": lock[0], "b": lock[1]})
            yield conn


@contextmanager
def read_transaction(engine: Engine) -> Iterator[Connection]:
    """A read-only snapshot (one transaction, rolled back at the end)."""
    with engine.connect() as conn:
        with conn.begin() as tx:
            yield conn
            tx.rollback()


def alembic_config() -> Any:
    """The alembic configuration, built in code."""
    from alembic.config import Config

    cfg = Config(stdout=io.StringIO())
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("path_separator", "os")
    return cfg


def head_revision() -> str:
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


def current_revision(conn: Connection) -> str | None:
    from alembic.runtime.migration import MigrationContext

    return MigrationContext.configure(conn).get_current_revision()


def migrate(engine: Engine) -> str:
    """Bring the schema to the latest migration (a no-op when it is there); returns the
    revision.  Safe when several processes open a new database at once."""
    from alembic import command

    head = head_revision()
    with read_transaction(engine) as conn:
        if current_revision(conn) == head:
            return head
    cfg = alembic_config()
    with write_transaction(engine, _MIGRATION_LOCK) as conn:
        if current_revision(conn) != head:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")
    return head
