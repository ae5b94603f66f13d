"""Bulk inserts: ``executemany`` on SQLite, ``COPY ... FROM STDIN`` on PostgreSQL."""

from __future__ import annotations

from typing import Any, Iterable, Sequence

from sqlalchemy.engine import Connection

from sib_engine.storage.database import is_postgres


def bulk_insert(conn: Connection, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """Insert ``rows`` (tuples of plain Python values: str, int, float, ``None``, ISO date
    text) into ``table`` within the connection's transaction."""
    if not rows:
        return
    names = ", ".join(f'"{c}"' for c in columns)
    if is_postgres(conn):
        raw: Any = conn.connection.driver_connection
        with raw.cursor() as cur:
            with cur.copy(f"COPY {table} ({names}) FROM STDIN") as copy:
                write = copy.write_row
                for r in rows:
                    write(r)
        return
    marks = ", ".join("?" * len(columns))
    conn.exec_driver_sql(f"INSERT INTO {table} ({names}) VALUES ({marks})", list(rows))


def copy_csv(conn: Connection, table: str, columns: Sequence[str], chunks: Iterable[bytes]) -> None:
    """PostgreSQL: ``COPY table (columns) FROM STDIN WITH (FORMAT csv)`` fed with ``chunks``
    (quoted values; an unquoted empty field is NULL)."""
    if not is_postgres(conn):
        raise ValueError("copy_csv is for PostgreSQL; use bulk_insert")
    names = ", ".join(f'"{c}"' for c in columns)
    raw: Any = conn.connection.driver_connection
    with raw.cursor() as cur:
        with cur.copy(f"COPY {table} ({names}) FROM STDIN WITH (FORMAT csv)") as copy:
            for data in chunks:
                copy.write(data)
