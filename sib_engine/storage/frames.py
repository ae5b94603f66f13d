"""Accepted and quarantined rows in their stored form, and the hash of a stored frame.

A determination is recomputed from the accepted rows *as stored*, so the engine evaluates the
same frame it stores: :func:`stored_form` turns a validation's ``accepted`` frame into that
form (text as ``str``/``None``, whole numbers as ``Int64``, dates to the day, values as
``float64``) and :func:`frame_from_rows` rebuilds exactly that frame from database rows.
:func:`frame_hash` is a SHA-256 of a stored frame, column by column, so that a changed cell
in the database is found by ``sib verify``.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Iterable, Iterator, Sequence

import numpy as np
import pandas as pd

# (frame column, database column, kind)
STORED_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("row", "row", "int"),
    ("contract_id", "contract_code", "text"),
    ("contract_version", "contract_version", "int"),
    ("participant_id", "participant_id", "text"),
    ("metric", "metric", "text"),
    ("date", "date", "date"),
    ("value", "value", "float"),
    ("cohort", "cohort", "text"),
    ("group", "group_name", "text"),
    ("municipality", "municipality", "text"),
    ("age", "age", "int"),
    ("prior_months", "prior_months", "int"),
    ("flags", "flags", "text"),
)
FRAME_COLUMNS = tuple(c[0] for c in STORED_COLUMNS)
DB_COLUMNS = tuple(c[1] for c in STORED_COLUMNS)
_KIND = {c[0]: c[2] for c in STORED_COLUMNS}

QUARANTINE_FIXED = ("row", "source", "reason", "reasons", "message", "participant_id")

_EPOCH = np.datetime64("1970-01-01", "D")


def present_columns(frame: pd.DataFrame) -> list[str]:
    """The stored columns ``frame`` carries, in stored order."""
    return [c for c in FRAME_COLUMNS if c in frame.columns]


def _text(s: pd.Series) -> pd.Series:
    """Text as ``str`` objects, missing values as ``None``."""
    values = s.astype(object).to_numpy(dtype=object, copy=True)
    missing = pd.isna(s).to_numpy()
    if pd.api.types.infer_dtype(values[~missing], skipna=True) not in ("string", "empty"):
        values = np.asarray([str(v) for v in values], dtype=object) if len(values) else values
    values[missing] = None
    return pd.Series(values, index=s.index, dtype=object)


def _convert(name: str, s: pd.Series) -> pd.Series:
    kind = _KIND[name]
    if kind == "text":
        return _text(s)
    if kind == "int":
        return pd.Series(pd.array(pd.to_numeric(s.astype(object)), dtype="Int64"), index=s.index)
    if kind == "float":
        return pd.Series(pd.to_numeric(s.astype(object)).astype("float64"), index=s.index)
    # dates: to the day
    d = pd.to_datetime(s)
    return pd.Series(d.dt.floor("D").astype("datetime64[ns]"), index=s.index)


def stored_form(frame: pd.DataFrame, columns: Sequence[str] | None = None) -> pd.DataFrame:
    """``frame`` (a validation's accepted rows) in the form it is stored and read back in."""
    cols = list(columns) if columns is not None else present_columns(frame)
    out = {name: _convert(name, frame[name].reset_index(drop=True)) for name in cols}
    return pd.DataFrame(out, columns=cols)


def frame_hash(stored: pd.DataFrame) -> str:
    """SHA-256 of a frame in stored form: column names, then each column's values in a
    fixed binary or text encoding (missing values marked apart)."""
    h = hashlib.sha256()
    h.update(f"rows={len(stored)};cols={','.join(stored.columns)}".encode())
    for name in stored.columns:
        kind = _KIND[name]
        s = stored[name]
        missing = pd.isna(s).to_numpy()
        h.update(f"\x1d{name}:{kind}".encode())
        h.update(np.packbits(missing).tobytes())
        if kind == "text":
            vals = np.where(missing, "", s.to_numpy(dtype=object))
            h.update("\x1f".join(vals.tolist()).encode("utf-8"))
        elif kind == "int":
            h.update(s.fillna(0).to_numpy(dtype="<i8").tobytes())
        elif kind == "float":
            h.update(np.where(missing, 0.0, s.to_numpy(dtype="<f8")).astype("<f8").tobytes())
        else:
            days = s.to_numpy(dtype="datetime64[D]")
            h.update(np.where(missing, 0, (days - _EPOCH).astype("<i8")).astype("<i8").tobytes())
    return h.hexdigest()


def _py_column(name: str, s: pd.Series) -> list[Any]:
    """Python values for the database: str/None, int/None, float/None, ISO date text/None."""
    kind = _KIND[name]
    missing = pd.isna(s).to_numpy()
    if kind == "text":
        return list(s.to_numpy(dtype=object))
    if kind == "int":
        vals = s.fillna(0).to_numpy(dtype=np.int64).astype(object)
    elif kind == "float":
        vals = s.to_numpy(dtype=np.float64).astype(object)
    else:
        vals = np.datetime_as_string(s.to_numpy(dtype="datetime64[D]"), unit="D").astype(object)
    if missing.any():
        vals[missing] = None
    return list(vals.tolist())


def accepted_records(stored: pd.DataFrame) -> tuple[list[str], list[list[Any]]]:
    """(database columns, one list of values per column) for the ``accepted_rows`` table,
    ``submission_id`` and ``pos`` first (their values are added by the caller); columns the
    frame does not carry are left out (stored as NULL)."""
    db_of = {c[0]: c[1] for c in STORED_COLUMNS}
    names = list(stored.columns)
    return ["submission_id", "pos"] + [db_of[n] for n in names], [_py_column(n, stored[n]) for n in names]


def accepted_csv(stored: pd.DataFrame, submission_id: int, *, chunk: int = 250_000) -> tuple[list[str], Iterator[bytes]]:
    """(database columns, CSV chunks) of the ``accepted_rows`` of a stored frame, for
    PostgreSQL's ``COPY ... WITH (FORMAT csv)``: every value quoted, missing values unquoted
    empty fields (NULL), dates ``YYYY-MM-DD``, floats in their shortest exact form.  Written
    by Apache Arrow's CSV writer."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    n = len(stored)
    db_of = {c[0]: c[1] for c in STORED_COLUMNS}
    arrays: dict[str, Any] = {"submission_id": pa.array(np.full(n, submission_id, dtype=np.int64)),
                              "pos": pa.array(np.arange(n, dtype=np.int64))}
    for name in stored.columns:
        s = stored[name]
        missing = pd.isna(s).to_numpy()
        kind = _KIND[name]
        if kind == "text":
            arr = pa.array(s.to_numpy(dtype=object), type=pa.string(), from_pandas=True)
        elif kind == "int":
            arr = pa.array(s.fillna(0).to_numpy(dtype=np.int64), mask=missing)
        elif kind == "float":
            arr = pa.array(s.to_numpy(dtype=np.float64), mask=missing)
        else:
            arr = pa.array(s.to_numpy(dtype="datetime64[D]"), type=pa.date32(), mask=missing)
        arrays[db_of[name]] = arr
    table = pa.table(arrays)
    options = pacsv.WriteOptions(include_header=False, quoting_style="all_valid")

    def chunks() -> Iterator[bytes]:
        for start in range(0, n, chunk):
            sink = pa.BufferOutputStream()
            pacsv.write_csv(table.slice(start, chunk), sink, options)
            yield bytes(sink.getvalue().to_pybytes())

    return list(arrays), chunks()


def frame_from_rows(rows: Iterable[Sequence[Any]], columns: Sequence[str]) -> pd.DataFrame:
    """The stored-form frame from database rows holding ``columns`` (frame names) in order."""
    cols = list(columns)
    raw = pd.DataFrame.from_records(list(rows), columns=cols) if cols else pd.DataFrame()
    if not len(raw):
        raw = pd.DataFrame({c: pd.Series([], dtype=object) for c in cols})
    out: dict[str, pd.Series] = {}
    for name in cols:
        kind = _KIND[name]
        s = raw[name]
        if kind == "date":
            out[name] = pd.Series(pd.to_datetime(s.astype(object), format="ISO8601")
                                  .astype("datetime64[ns]"), index=raw.index)
        else:
            out[name] = _convert(name, s)
    return pd.DataFrame(out, columns=cols)


QUARANTINE_DB_COLUMNS = ("submission_id", "pos", *QUARANTINE_FIXED, "cells")


def quarantined_records(q: pd.DataFrame) -> tuple[list[str], list[tuple[Any, ...]]]:
    """(database columns, row tuples without ``submission_id``) for ``quarantined_rows``:
    pos, row, source, reason, reasons, message, participant_id, cells (JSON text of the other
    measured-data columns, as submitted)."""
    n = len(q)
    if not n:
        return list(QUARANTINE_DB_COLUMNS), []
    fixed: list[list[Any]] = []
    for name in QUARANTINE_FIXED:
        if name in q.columns:
            s = q[name]
            fixed.append(s.astype("int64").tolist() if name == "row" else _text(s).tolist())
        else:
            fixed.append([None] * n)
    others = [c for c in q.columns if c not in QUARANTINE_FIXED]
    other_vals = [_text(q[c]).tolist() for c in others]
    cells = [json.dumps({c: other_vals[j][i] for j, c in enumerate(others)}, sort_keys=True, ensure_ascii=False)
             for i in range(n)]
    return list(QUARANTINE_DB_COLUMNS), [(i, *[col[i] for col in fixed], cells[i]) for i in range(n)]
