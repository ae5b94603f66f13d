"""The readers: CSV in both styles, Parquet, Excel, a SQL table and a folder.  Every row
keeps its file and line; the same data read from every format validate the same way."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sib_engine.loader import load_contract
from sib_engine.outcome_io import (
    OutcomeReadError,
    format_outcomes,
    read_csv_text,
    read_outcomes,
    write_outcomes_csv,
)
from sib_engine.privacy import PseudonymKey
from sib_engine.validation import validate

DATA = Path(__file__).parent / "data"
VALID = DATA / "valid" / "kitchen.csv"
CONTRACT = load_contract(DATA / "contracts" / "kitchen.yaml")
KEY = PseudonymKey.demo()


def typed_frame() -> pd.DataFrame:
    """The valid fixture as a typed frame (dates, numbers)."""
    r = validate(CONTRACT, VALID, key=KEY)
    assert r.n_quarantined == 0
    raw = pd.read_csv(VALID, dtype=str)
    raw["date"] = pd.to_datetime(raw["date"])
    for c in ("contract_version", "value", "age", "prior_months"):
        raw[c] = pd.to_numeric(raw[c])
    return raw


def assert_clean(data: object, rows: int = 16) -> None:
    r = validate(CONTRACT, data, key=KEY)  # type: ignore[arg-type]
    assert (r.rows, r.n_accepted, r.n_quarantined) == (rows, rows, 0), r.failures.to_string()


def test_csv_comma_style() -> None:
    raw = read_outcomes(VALID)
    assert raw.rows == 16
    assert raw.line.tolist() == list(range(2, 18))
    assert not raw.decimal_comma.any()
    assert raw.sources(np.array([0, 15])).tolist() == [f"{VALID}:2", f"{VALID}:17"]
    assert_clean(VALID)


def test_csv_dutch_style_with_bom_and_decimal_comma(tmp_path: Path) -> None:
    frame = typed_frame()
    frame.loc[13, "value"] = 120.5
    path = tmp_path / "nl.csv"
    write_outcomes_csv(frame, path, style="nl")
    data = path.read_bytes()
    assert data.startswith(b"\xef\xbb\xbf") and b";" in data and b"120,5" in data and b"01-02-2024" in data
    raw = read_outcomes(path)
    assert raw.decimal_comma.all() and raw.frame.columns[0] == "contract_id"
    r = validate(CONTRACT, raw, key=KEY)
    assert r.n_quarantined == 0
    assert r.accepted.loc[r.accepted["row"] == 14, "value"].item() == 120.5
    assert r.accepted["date"].min() == pd.Timestamp("2024-02-01")


def test_csv_with_quotes_blank_lines_and_crlf_keeps_line_numbers() -> None:
    text = ('contract_id,participant_id,metric,value\r\n'
            '"x","A, with comma",enrolment,\r\n'
            '\r\n'
            'x,"multi\r\nline",job,1\r\n'
            'x,B,job,"2"\r\n')
    raw = read_csv_text(text, name="q.csv")
    assert raw.rows == 3
    assert raw.line.tolist() == [2, 4, 6]
    assert raw.frame["participant_id"].tolist() == ["A, with comma", "multi\nline", "B"]


def test_semicolon_file_with_point_is_read_as_is() -> None:
    raw = read_csv_text("a;value\nx;1.5\ny;1.234,5\n")
    assert raw.frame["value"].tolist() == ["1.5", "1.234,5"]


def test_parquet(tmp_path: Path) -> None:
    path = tmp_path / "kitchen.parquet"
    typed_frame().to_parquet(path)
    raw = read_outcomes(path)
    assert pd.api.types.is_datetime64_any_dtype(raw.frame["date"])
    assert raw.sources(np.array([0])).tolist() == [f"{path}:row 1"]
    assert_clean(path)


def test_parquet_with_text_columns(tmp_path: Path) -> None:
    path = tmp_path / "text.parquet"
    pd.read_csv(VALID, dtype=str).to_parquet(path)
    assert_clean(path)


def test_excel(tmp_path: Path) -> None:
    path = tmp_path / "kitchen.xlsx"
    frame = typed_frame()
    with pd.ExcelWriter(path, engine="openpyxl") as w:
        frame.to_excel(w, index=False, startrow=2)  # two empty rows above the header
    raw = read_outcomes(path)
    assert raw.rows == 16
    assert raw.line.tolist()[:2] == [4, 5]
    assert raw.frame["date"].iloc[0] == "2024-02-01"
    assert_clean(path)


def test_sql_table_in_sqlite(tmp_path: Path) -> None:
    import sqlalchemy as sa

    url = f"sqlite:///{tmp_path / 'outcomes.db'}"
    engine = sa.create_engine(url)
    frame = typed_frame()
    frame.insert(0, "id", range(1, len(frame) + 1))
    frame = frame.iloc[::-1]  # stored in reverse; read back in primary-key order
    frame.to_sql("measured", engine, index=False, dtype={"id": sa.Integer()})
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE keyed (id INTEGER PRIMARY KEY, participant_id TEXT)")
    engine.dispose()
    raw = read_outcomes(url, table="measured")
    assert raw.rows == 16 and raw.files[0].name.endswith("#measured")
    assert_clean(raw)
    with pytest.raises(OutcomeReadError, match="no table 'nope'"):
        read_outcomes(url, table="nope")


def test_folder_in_name_order(tmp_path: Path) -> None:
    lines = VALID.read_text().splitlines()
    (tmp_path / "b-outcomes.csv").write_text("\n".join([lines[0], *lines[5:]]) + "\n")
    (tmp_path / "a-enrolments.csv").write_text("\n".join(lines[:5]) + "\n")
    (tmp_path / "notes.txt").write_text("not data")
    raw = read_outcomes(tmp_path)
    assert [Path(f.name).name for f in raw.files] == ["a-enrolments.csv", "b-outcomes.csv"]
    assert raw.line.tolist() == [2, 3, 4, 5] + list(range(2, 14))
    assert raw.sources(np.array([4])).tolist() == [f"{tmp_path / 'b-outcomes.csv'}:2"]
    assert_clean(tmp_path)


def test_mixed_formats_in_a_folder(tmp_path: Path) -> None:
    frame = typed_frame()
    write_outcomes_csv(frame.iloc[:4], tmp_path / "1.csv", style="nl")
    frame.iloc[4:].to_parquet(tmp_path / "2.parquet")
    assert_clean(tmp_path)


def test_unreadable_inputs_raise_located_errors(tmp_path: Path) -> None:
    with pytest.raises(OutcomeReadError, match="no such file"):
        read_outcomes(tmp_path / "missing.csv")
    (tmp_path / "x.json").write_text("{}")
    with pytest.raises(OutcomeReadError, match="not a kind of file"):
        read_outcomes(tmp_path / "x.json")
    (tmp_path / "bad.xlsx").write_bytes(b"not a workbook")
    with pytest.raises(OutcomeReadError, match="cannot read the workbook"):
        read_outcomes(tmp_path / "bad.xlsx")
    (tmp_path / "bad.parquet").write_bytes(b"not parquet")
    with pytest.raises(OutcomeReadError, match="cannot read the Parquet"):
        read_outcomes(tmp_path / "bad.parquet")


def test_writer_is_byte_reproducible(tmp_path: Path) -> None:
    frame = typed_frame()
    for style in ("iso", "nl"):
        a, b = tmp_path / f"a-{style}.csv", tmp_path / f"b-{style}.csv"
        write_outcomes_csv(frame, a, style=style)  # type: ignore[arg-type]
        write_outcomes_csv(frame, b, style=style)  # type: ignore[arg-type]
        assert a.read_bytes() == b.read_bytes()
    assert format_outcomes(frame)["value"].iloc[13] == "120"
