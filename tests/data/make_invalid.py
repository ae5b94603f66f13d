"""Write the broken measured-data files of tests/data/invalid/ from tests/data/valid/kitchen.csv.

Each file is the valid submission with one thing broken; the expected reason code and
counts are in tests/test_invalid_data.py.  The files are kept in the repository; rerun this
script (``python tests/data/make_invalid.py``) only to change them.
"""

from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).parent
BASE = (HERE / "valid" / "kitchen.csv").read_text(encoding="utf-8")
HEADER, *ROWS = BASE.strip("\n").split("\n")
OUT = HERE / "invalid"


def write(name: str, lines: list[str], *, header: str = HEADER, encoding: str = "utf-8") -> None:
    (OUT / name).write_bytes(("\n".join([header, *lines]) + "\n").encode(encoding))


def change(row: int, column: str, value: str, lines: list[str] | None = None) -> list[str]:
    """The rows with ``column`` of data row ``row`` (from 1) set to ``value``."""
    cols = HEADER.split(",")
    out = list(lines if lines is not None else ROWS)
    cells = out[row - 1].split(",")
    cells[cols.index(column)] = value
    out[row - 1] = ",".join(cells)
    return out


def main() -> None:
    OUT.mkdir(exist_ok=True)
    cols = HEADER.split(",")
    drop = cols.index("municipality")
    write("missing_column.csv",
          [",".join(c for i, c in enumerate(r.split(",")) if i != drop) for r in ROWS],
          header=",".join(c for i, c in enumerate(cols) if i != drop))
    write("wrong_type_value.csv", change(14, "value", "12x"))
    write("wrong_type_age.csv", change(2, "age", "thirty"))
    write("decimal_comma_in_comma_file.csv", change(14, "value", '"120,5"'))
    write("unparseable_date.csv", change(8, "date", "2025-13-45"))
    write("duplicate_participant.csv", ROWS + ["test-kitchen,2,A001,enrolment,2024-06-01,,c1,treatment,GM0344,22,12"])
    write("event_before_enrolment.csv", change(12, "date", "2025-01-20"))
    write("event_after_term.csv", change(13, "date", "2028-02-01"))
    write("unknown_metric.csv", ROWS + ["test-kitchen,2,A001,salary,2025-05-01,1,,,,,"])
    write("prerequisite_out_of_order.csv", change(7, "date", "2024-04-01"))
    write("unknown_municipality.csv", change(2, "municipality", "GM0363"))
    write("negative_count.csv", change(14, "value", "-5"))
    (OUT / "empty.csv").write_bytes(b"")
    write("header_only.csv", [])
    write("wrong_delimiter.csv", [r.replace(",", "\t") for r in ROWS], header=HEADER.replace(",", "\t"))
    mixed = change(16, "participant_id", "B001-Zo\u00eb")
    (OUT / "mixed_encodings.csv").write_bytes(
        ("\n".join([HEADER, *mixed[:15]]) + "\n").encode("utf-8") + (mixed[15] + "\n").encode("cp1252"))
    write("utf16.csv", ROWS, encoding="utf-16")
    write("restated_row.csv", change(14, "value", "150"))
    write("withdrawn_row.csv", [r for i, r in enumerate(ROWS, 1) if i != 7])
    write("claim_limit_exceeded.csv", ROWS + ["test-kitchen,2,A002,diploma,2025-12-01,1,,,,,"])
    write("unknown_participant.csv", ROWS + ["test-kitchen,2,A999,starts_training,2024-05-01,1,,,,,"])
    write("unknown_cohort.csv", change(4, "cohort", "c9"))
    write("wrong_contract_id.csv", [r.replace("test-kitchen", "other-deal") for r in ROWS])
    write("wrong_contract_version.csv", change(9, "contract_version", "1"))
    write("ineligible_age.csv", change(2, "age", "41"))
    write("ineligible_prior_months.csv", change(4, "prior_months", "3"))
    write("value_out_of_range.csv", change(15, "value", "400"))
    write("event_value_not_one.csv", change(5, "value", "2"))
    write("outside_window.csv", change(9, "date", "2024-11-01"))
    write("enrolment_outside_cohort_window.csv", change(4, "date", "2024-12-20"))
    write("missing_participant.csv", change(10, "participant_id", ""))
    write("missing_value.csv", change(13, "value", ""))
    write("malformed_row.csv", ROWS[:5] + [ROWS[5] + ",extra"] + ROWS[6:])
    write("unknown_group.csv", change(3, "group", "control"))
    write("missing_cohort.csv", change(1, "cohort", ""))
    write("far_future_date.csv", change(16, "date", "9999-01-01"))
    folder = OUT / "folder_missing_column"
    folder.mkdir(exist_ok=True)
    (folder / "01-enrolments.csv").write_text("\n".join([HEADER, *ROWS[:4]]) + "\n", encoding="utf-8")
    (folder / "02-outcomes.csv").write_text(
        "\n".join([",".join(c for i, c in enumerate(cols) if i != drop)]
                  + [",".join(c for i, c in enumerate(r.split(",")) if i != drop) for r in ROWS[4:]]) + "\n",
        encoding="utf-8")


if __name__ == "__main__":
    main()
