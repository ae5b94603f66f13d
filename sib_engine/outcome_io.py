"""Reading (and writing) measured outcome data: the only module that opens outcome files
(layer 3: edges).

A submission is one file (CSV, Parquet, Excel ``.xlsx``), a folder of such files read in
name order and concatenated, or a table in a SQL database given by a SQLAlchemy URL.
Everything is read as it stands, without judging it: CSV and Excel cells as text, Parquet
and SQL columns with their own types.  Parsing and checking happen in
:mod:`sib_engine.validation`, so that a bad value quarantines its row instead of stopping
the read.  Every row keeps where it came from: the file and its line (CSV) or row number
(Excel, Parquet, SQL), 1-based, the header being line 1.

Problems the reader itself finds are reported, located, never raised as a traceback:

* a line that is not UTF-8 (``bad_encoding``; the rest of the file is read);
* a line with more or fewer fields than the header (``malformed_row``);
* a header without ``,`` or ``;`` (``wrong_delimiter``: the file is one column).

Only a submission that cannot be opened at all (no such path, a corrupt workbook, a
database that refuses the connection) raises :class:`OutcomeReadError`.

CSV: the separator, ``,`` or ``;``, is sniffed from the header; a ``;`` file uses the
decimal comma, as Dutch and Belgian exports do; UTF-8 with or without a byte-order mark.

>>> raw = read_csv_text("contract_id;value\\nx;1,5\\n", name="demo.csv")
>>> raw.rows, raw.frame["value"].tolist(), raw.decimal_comma.tolist()
(1, ['1,5'], [True])
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from datetime import date, datetime, time
from pathlib import Path
from typing import Any, Literal, Sequence

import numpy as np
import pandas as pd

from sib_engine.errors import SibError

SUFFIXES: tuple[str, ...] = (".csv", ".parquet", ".xlsx")
"""File kinds a submission (or a submission folder) may hold."""


class OutcomeReadError(SibError):
    """A submission cannot be opened at all (its rows are unknown)."""

    def __init__(self, source: str, message: str, hint: str = "") -> None:
        self.source = source
        self.message = message
        self.hint = hint
        super().__init__(f"{source}: {message}" + (f" (hint: {hint})" if hint else ""))


@dataclass(frozen=True)
class SourceFile:
    """One file (or table) of a submission."""

    name: str
    first: int
    """Position of its first row in the submission."""
    rows: int
    columns: tuple[str, ...]
    decimal_comma: bool
    problem: tuple[str, str] | None = None
    """A problem of the file's structure, ``(code, message)``: every row of it fails."""
    unit: str = "line"
    """What its row numbers count: ``line`` (CSV) or ``row`` (Excel, Parquet, SQL)."""


@dataclass(frozen=True, eq=False)
class RawOutcomes:
    """A submission as read: cells unjudged, every row located.

    ``frame`` has a RangeIndex (position in the submission) and lower-case column names;
    ``line`` is each row's 1-based line or row number in its file; ``row_problems`` lists
    what the reader found wrong with single rows (columns ``pos``, ``code``, ``column``,
    ``value``, ``message``).
    """

    frame: pd.DataFrame
    line: np.ndarray
    files: tuple[SourceFile, ...]
    row_problems: pd.DataFrame

    @property
    def rows(self) -> int:
        return len(self.frame)

    @property
    def file_of_row(self) -> np.ndarray:
        """Per row, the index of its file in :attr:`files`."""
        return np.repeat(np.arange(len(self.files)), [f.rows for f in self.files])

    @property
    def decimal_comma(self) -> np.ndarray:
        return np.repeat(np.array([f.decimal_comma for f in self.files], dtype=bool),
                         [f.rows for f in self.files])

    def sources(self, positions: np.ndarray) -> pd.Series:
        """``file:line`` (or ``file:row N``) of rows at ``positions``."""
        positions = np.asarray(positions, dtype=np.int64)
        if positions.size == 0:
            return pd.Series([], dtype="str")
        fidx = self.file_of_row[positions]
        names = np.array([f.name + (":" if f.unit == "line" else ":row ") for f in self.files], dtype=object)
        return pd.Series(names[fidx] + self.line[positions].astype(str).astype(object), dtype="str")

    @classmethod
    def from_frame(cls, frame: pd.DataFrame, name: str = "<data frame>") -> "RawOutcomes":
        """A data frame already in memory, rows numbered from 1 in its order."""
        f = frame.reset_index(drop=True)
        f.columns = [_column_name(c) for c in f.columns]
        n = len(f)
        return cls(
            frame=f,
            line=np.arange(1, n + 1, dtype=np.int64),
            files=(SourceFile(name, 0, n, tuple(f.columns), False, None, "row"),),
            row_problems=_no_problems(),
        )


def _no_problems() -> pd.DataFrame:
    return pd.DataFrame({
        "pos": pd.Series([], dtype="int64"),
        "code": pd.Series([], dtype="str"),
        "column": pd.Series([], dtype="str"),
        "value": pd.Series([], dtype="str"),
        "message": pd.Series([], dtype="str"),
    })


def _column_name(c: Any) -> str:
    return str(c).replace("\ufeff", "").strip().lower()


@dataclass
class _Part:
    frame: pd.DataFrame
    line: np.ndarray
    file: SourceFile
    problems: list[tuple[int, str, str, str, str]]


# ------------------------------------------------------------------------------ CSV ---


_UTF8_BOM = b"\xef\xbb\xbf"


def _decode(raw: bytes) -> tuple[str, dict[int, str]]:
    """Text of a CSV file and, per line number that is not UTF-8, a description."""
    bad: dict[int, str] = {}
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        text = raw.decode("utf-16", errors="replace")
        for i in range(1, text.count("\n") + 2):
            bad[i] = "the file is UTF-16"
        return text, bad
    if raw.startswith(_UTF8_BOM):
        raw = raw[len(_UTF8_BOM):]
    try:
        return raw.decode("utf-8"), bad
    except UnicodeDecodeError:
        pass
    lines = raw.split(b"\n")
    out = []
    for i, b in enumerate(lines, start=1):
        try:
            out.append(b.decode("utf-8"))
        except UnicodeDecodeError as exc:
            bad[i] = f"byte 0x{b[exc.start]:02x} at column {exc.start + 1} is not UTF-8"
            out.append(b.decode("cp1252", errors="replace"))
    return "\n".join(out), bad


def read_csv_text(text: str, name: str = "<csv>", bad_lines: dict[int, str] | None = None) -> RawOutcomes:
    """Read CSV text (already decoded); see :func:`read_csv`."""
    part = _csv_part(text, name, bad_lines or {})
    return _combine([part])


def _csv_part(text: str, name: str, bad_lines: dict[int, str]) -> _Part:
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    lines = text.split("\n")
    header_at = next((i for i, ln in enumerate(lines) if ln.strip()), None)
    if header_at is None:
        return _Part(pd.DataFrame(), np.zeros(0, np.int64), SourceFile(name, 0, 0, (), False), [])
    header = lines[header_at]
    commas, semis = header.count(","), header.count(";")
    problem: tuple[str, str] | None = None
    if commas == 0 and semis == 0:
        delim = "\x00"
        seen = "tabs" if "\t" in header else "'|'" if "|" in header else None
        problem = ("wrong_delimiter",
                   "the header is a single column" + (f" separated by {seen}" if seen else "")
                   + "; separate columns with ',' or ';'")
    else:
        delim = ";" if semis > commas else ","
    decimal_comma = delim == ";"
    body_lines = lines[header_at + 1:]
    while body_lines and not body_lines[-1].strip():
        body_lines.pop()
    columns = [_column_name(c) for c in _split_header(header, delim)]
    width = len(columns)
    first_line = header_at + 2
    problems: list[tuple[int, str, str, str, str]] = []

    fast = '"' not in text and all(ln.strip() for ln in body_lines)
    if fast and body_lines and delim != "\x00":
        counts = pd.Series(body_lines, dtype="str").str.count(re.escape(delim)).to_numpy()
        fast = bool((counts == width - 1).all())
    if fast:
        n = len(body_lines)
        if n and delim != "\x00":
            frame = pd.read_csv(
                io.StringIO("\n".join(body_lines)), sep=delim, header=None, names=columns,
                dtype="str", keep_default_na=False, na_filter=False, engine="c",
                quoting=csv.QUOTE_NONE, skip_blank_lines=False,
            )
        else:
            frame = pd.DataFrame({columns[0]: pd.Series(body_lines, dtype="str")}) if n else \
                pd.DataFrame({c: pd.Series([], dtype="str") for c in columns})
        line = np.arange(first_line, first_line + n, dtype=np.int64)
    else:
        records: list[list[str]] = []
        line_list: list[int] = []
        reader = csv.reader(io.StringIO("\n".join(body_lines)), delimiter=delim if delim != "\x00" else "\x01")
        prev = 0
        for rec in reader:
            start = prev + 1
            prev = reader.line_num
            if not rec or (len(rec) == 1 and not rec[0].strip()):
                continue
            ln = start + first_line - 1
            if len(rec) != width:
                problems.append((len(records), "malformed_row", "", f"{len(rec)} fields",
                                 f"the line has {len(rec)} fields, the header {width}; check separators and quotes"))
                rec = (rec + [""] * width)[:width]
            records.append(rec)
            line_list.append(ln)
        frame = pd.DataFrame(records, columns=columns, dtype="str") if records else \
            pd.DataFrame({c: pd.Series([], dtype="str") for c in columns})
        line = np.asarray(line_list, dtype=np.int64)
    for pos, ln in enumerate(line.tolist()) if bad_lines else ():
        if ln in bad_lines:
            problems.append((pos, "bad_encoding", "", "", f"{bad_lines[ln]}; save the file as UTF-8"))
    frame = frame.reset_index(drop=True)
    return _Part(frame, line, SourceFile(name, 0, len(frame), tuple(columns), decimal_comma, problem), problems)


def _split_header(header: str, delim: str) -> list[str]:
    if delim == "\x00":
        return [header]
    return next(csv.reader([header], delimiter=delim))


def read_csv(path: str | Path) -> RawOutcomes:
    """Read one CSV file (``,`` or ``;`` separated, UTF-8 with or without BOM)."""
    return _combine([_read_csv_part(Path(path))])


def _read_csv_part(path: Path) -> _Part:
    raw = _read_bytes(path)
    text, bad = _decode(raw)
    return _csv_part(text, str(path), bad)


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise OutcomeReadError(str(path), "no such file", "check the path") from None
    except OSError as exc:
        raise OutcomeReadError(str(path), f"cannot read the file: {exc.strerror}",
                               "check the path and permissions") from None


# -------------------------------------------------------------------- Excel, Parquet ---


def _cell_text(v: Any) -> str | None:
    if v is None:
        return None
    if isinstance(v, datetime):
        return v.date().isoformat() if v.time() == time(0) else v.isoformat()
    if isinstance(v, date):
        return v.isoformat()
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    text = str(v).strip()
    return text or None


def _read_excel_part(path: Path) -> _Part:
    import openpyxl

    if not path.exists():
        raise OutcomeReadError(str(path), "no such file", "check the path")
    try:
        wb = openpyxl.load_workbook(path, read_only=True, data_only=True)
    except Exception as exc:  # openpyxl raises many kinds for a corrupt workbook
        raise OutcomeReadError(str(path), f"cannot read the workbook: {exc}",
                               "save it again as an Excel .xlsx workbook") from None
    try:
        ws = wb.worksheets[0]
        header: list[str] | None = None
        records: list[list[str | None]] = []
        lines: list[int] = []
        for r, values in enumerate(ws.iter_rows(values_only=True), start=1):
            cells = [_cell_text(v) for v in values]
            if not any(c is not None for c in cells):
                continue
            if header is None:
                header = [_column_name(c or "") for c in cells]
                while header and not header[-1]:
                    header.pop()
                continue
            records.append((cells + [None] * len(header))[: len(header)])
            lines.append(r)
    finally:
        wb.close()
    columns = header or []
    frame = pd.DataFrame(records, columns=columns, dtype="str") if records else \
        pd.DataFrame({c: pd.Series([], dtype="str") for c in columns})
    return _Part(frame, np.asarray(lines, dtype=np.int64),
                 SourceFile(str(path), 0, len(frame), tuple(columns), False, None, "row"), [])


def _read_parquet_part(path: Path) -> _Part:
    import pyarrow.parquet as pq

    if not path.exists():
        raise OutcomeReadError(str(path), "no such file", "check the path")
    try:
        frame = pq.read_table(path).to_pandas(date_as_object=False)
    except Exception as exc:  # pyarrow raises several kinds for a damaged file
        raise OutcomeReadError(str(path), f"cannot read the Parquet file: {exc}",
                               "write it again as Parquet") from None
    frame = frame.reset_index(drop=True)
    frame.columns = [_column_name(c) for c in frame.columns]
    n = len(frame)
    return _Part(frame, np.arange(1, n + 1, dtype=np.int64),
                 SourceFile(str(path), 0, n, tuple(frame.columns), False, None, "row"), [])


# ---------------------------------------------------------------------------- SQL ---


def read_sql(url: str, table: str) -> RawOutcomes:
    """Read a table from the database at SQLAlchemy ``url`` (ordered by its primary key,
    if it has one; otherwise as the database returns it)."""
    import sqlalchemy as sa

    try:
        safe = sa.engine.make_url(url).render_as_string(hide_password=True)
    except Exception:
        raise OutcomeReadError(url.split("@")[-1], "not a database URL",
                               "write a SQLAlchemy URL such as sqlite:///outcomes.db") from None
    name = f"{safe}#{table}"
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            t = sa.Table(table, sa.MetaData(), autoload_with=conn)
            stmt = sa.select(t)
            if t.primary_key.columns:
                stmt = stmt.order_by(*t.primary_key.columns)
            frame = pd.read_sql_query(stmt, conn)
    except sa.exc.NoSuchTableError:
        raise OutcomeReadError(name, f"no table '{table}' in the database", "check the table name") from None
    except sa.exc.SQLAlchemyError as exc:
        raise OutcomeReadError(name, f"cannot read the table: {exc.__class__.__name__}: {exc.args[0] if exc.args else ''}",
                               "check the URL, the credentials and that the server is running") from None
    finally:
        engine.dispose()
    frame = frame.reset_index(drop=True)
    frame.columns = [_column_name(c) for c in frame.columns]
    n = len(frame)
    part = _Part(frame, np.arange(1, n + 1, dtype=np.int64),
                 SourceFile(name, 0, n, tuple(frame.columns), False, None, "row"), [])
    return _combine([part])


# ------------------------------------------------------------------------ dispatch ---


def _read_part(path: Path) -> _Part:
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return _read_csv_part(path)
    if suffix == ".xlsx":
        return _read_excel_part(path)
    if suffix == ".parquet":
        return _read_parquet_part(path)
    raise OutcomeReadError(str(path), f"'{suffix or path.name}' is not a kind of file read here",
                           f"give a {', '.join(SUFFIXES)} file or a folder of them")


def _combine(parts: Sequence[_Part]) -> RawOutcomes:
    files = []
    first = 0
    problems: list[tuple[int, str, str, str, str]] = []
    for p in parts:
        files.append(SourceFile(p.file.name, first, p.file.rows, p.file.columns,
                                p.file.decimal_comma, p.file.problem, p.file.unit))
        problems += [(first + pos, code, col, value, msg) for pos, code, col, value, msg in p.problems]
        first += p.file.rows
    frames = [p.frame for p in parts if len(p.frame.columns)]
    if not frames:
        frame = pd.DataFrame(index=pd.RangeIndex(0))
    elif len(frames) == 1:
        frame = frames[0].reset_index(drop=True)
    else:
        frame = pd.concat(frames, ignore_index=True, sort=False)
    frame.index = pd.RangeIndex(len(frame))
    line = np.concatenate([p.line for p in parts]) if parts else np.zeros(0, np.int64)
    rp = _no_problems() if not problems else pd.DataFrame(
        problems, columns=["pos", "code", "column", "value", "message"]
    ).astype({"pos": "int64", "code": "str", "column": "str", "value": "str", "message": "str"})
    return RawOutcomes(frame=frame, line=line.astype(np.int64), files=tuple(files), row_problems=rp)


def read_outcomes(location: str | Path, *, table: str | None = None) -> RawOutcomes:
    """Read a submission: a ``.csv``, ``.parquet`` or ``.xlsx`` file, a folder of them (read in
    name order), or, with ``table``, a table of the database at SQLAlchemy URL ``location``."""
    if table is not None:
        return read_sql(str(location), table)
    path = Path(location)
    if path.is_dir():
        files = sorted(p for p in path.iterdir()
                       if p.is_file() and p.suffix.lower() in SUFFIXES and not p.name.startswith("."))
        return _combine([_read_part(p) for p in files])
    if not path.exists():
        raise OutcomeReadError(str(path), "no such file or folder", "check the path")
    return _combine([_read_part(path)])


# -------------------------------------------------------------------------- writing ---

Style = Literal["iso", "nl"]


def format_outcomes(frame: pd.DataFrame, style: Style = "iso") -> pd.DataFrame:
    """Text cells of a typed measured-data frame as a CSV file of ``style`` shows them:
    ``iso`` (ISO dates, decimal point) or ``nl`` (DD-MM-YYYY dates, decimal comma)."""
    out: dict[str, pd.Series] = {}
    for name in frame.columns:
        col = frame[name]
        if pd.api.types.is_datetime64_any_dtype(col.dtype):
            fmt = "%d-%m-%Y" if style == "nl" else "%Y-%m-%d"
            text = col.dt.strftime(fmt).astype("str")
        elif pd.api.types.is_float_dtype(col.dtype) or pd.api.types.is_integer_dtype(col.dtype):
            v = col.astype("float64")
            whole = v.notna() & (np.floor(v) == v)
            text = pd.Series(np.where(v.notna(), v.map(lambda x: format(x, ".10g")), ""), index=col.index, dtype="str")
            if whole.any():
                text = text.where(~whole, v.fillna(0).astype("int64").astype("str"))
            if style == "nl":
                text = text.str.replace(".", ",", regex=False)
        else:
            text = col.astype("str")
        out[name] = text.where(col.notna(), "")
    return pd.DataFrame(out, index=frame.index)


def write_outcomes_csv(frame: pd.DataFrame, path: str | Path, *, style: Style = "iso") -> None:
    """Write a typed measured-data frame as CSV: ``iso`` is ``,``-separated UTF-8 with ISO
    dates; ``nl`` is the Dutch/Belgian export style (``;``, decimal comma, DD-MM-YYYY,
    UTF-8 with BOM).  Same frame, same bytes."""
    text = format_outcomes(frame, style)
    sep = ";" if style == "nl" else ","
    body = text.to_csv(sep=sep, index=False, lineterminator="\n", quoting=csv.QUOTE_MINIMAL)
    data = body.encode("utf-8")
    if style == "nl":
        data = _UTF8_BOM + data
    Path(path).write_bytes(data)
