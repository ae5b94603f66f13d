"""The measured-data format and its checks, declared from the contract (layer 2: pure).

This module says *what* is checked; :mod:`sib_engine.validation` says *how* (it runs the
checks as a great-expectations suite and reports them).  Everything here is pure and
vectorised pandas/numpy: no I/O, no great-expectations.

* :data:`COLUMNS` is the measured-data format (see ``docs/measured-data.md``).
* :func:`required_columns` says which columns a contract needs.
* :func:`parse` turns the text columns of a submission into typed columns and reports the
  values that do not parse (``wrong_type``, ``unparseable_date``).
* :func:`plan_checks` generates the checks from the contract: value sets, ranges, pairs of
  dates that must be in order, uniqueness.  Each :class:`Check` names the column of the
  *check frame* it reads, its reason code and a message.
* :func:`check_frame` builds that check frame: the typed columns (one row per input row,
  same positions) plus the columns derived by joining a row to its participant's enrolment
  row (enrolment date, attribution window, prerequisite dates, claim number, ...).  A
  derived column is empty where its check does not apply, and a column read only on
  enrolment rows or only on outcome rows holds just those rows (indexed by position).
* :func:`restated` finds rows whose value differs from an earlier submission.

>>> [c.name for c in COLUMNS][:5]
['contract_id', 'contract_version', 'participant_id', 'metric', 'date']
"""

from __future__ import annotations

from dataclasses import dataclass, field
from dataclasses import replace as _replace
from typing import Any, Collection, Literal

import numpy as np
import pandas as pd

from sib_engine.contract import (
    ComparisonGroupBaseline,
    Contract,
    ExpectedDurationBaseline,
    RateCardTrigger,
)

ENROLMENT = "enrolment"
"""The ``metric`` value of an enrolment row."""

TREATMENT = "treatment"
"""The default ``group``."""

ColumnType = Literal["text", "integer", "decimal", "date"]


@dataclass(frozen=True)
class Column:
    name: str
    type: ColumnType
    required: str
    """When the column must be present: ``always``, or the contract feature needing it."""
    cells: Literal["every row", "outcome rows", "enrolment rows", "optional"]
    """Which rows must fill it in."""
    description: str


COLUMNS: tuple[Column, ...] = (
    Column("contract_id", "text", "always", "every row", "the contract's id"),
    Column("contract_version", "integer", "always", "every row", "the contract's version"),
    Column("participant_id", "text", "always", "every row",
           "the provider's identifier, pseudonymised during validation"),
    Column("metric", "text", "always", "every row", "'enrolment' or a metric id of the contract"),
    Column("date", "date", "always", "every row", "enrolment date, or date of the event or measurement"),
    Column("value", "decimal", "always", "outcome rows",
           "1 for an event, 1/0 for a binary metric, the count or measured value otherwise"),
    Column("cohort", "text", "always", "enrolment rows", "a cohort id of the contract's timeline"),
    Column("group", "text", "a comparison-group baseline", "optional",
           "'treatment' (default) or the comparison group's label"),
    Column("municipality", "text", "payers split by residence", "enrolment rows",
           "municipality code of residence at enrolment"),
    Column("age", "integer", "age eligibility or an expected-duration table", "enrolment rows",
           "age in whole years at enrolment"),
    Column("prior_months", "integer", "prior-duration eligibility or an expected-duration table",
           "enrolment rows", "months on benefits (or out of work) before enrolment"),
)
COLUMN_NAMES: tuple[str, ...] = tuple(c.name for c in COLUMNS)
_TYPES: dict[str, ColumnType] = {c.name: c.type for c in COLUMNS}

# Reason codes that describe the submission's structure: always critical, whatever the
# contract's severity map says (an accepted row needs its columns and types).
STRUCTURAL_CODES: frozenset[str] = frozenset(
    {"empty_submission", "missing_column", "wrong_delimiter", "bad_encoding", "malformed_row",
     "wrong_type", "unparseable_date", "missing_value"}
)

# The order in which a row's reasons are listed; the first critical one is its reason.
REASON_ORDER: tuple[str, ...] = (
    "empty_submission", "wrong_delimiter", "missing_column", "bad_encoding", "malformed_row",
    "missing_value", "wrong_type", "unparseable_date", "wrong_contract", "unknown_metric",
    "unknown_cohort", "unknown_group", "unknown_municipality", "duplicate_participant",
    "ineligible", "negative_value", "value_out_of_range", "event_outside_term",
    "outside_window", "unknown_participant", "event_before_enrolment",
    "prerequisite_out_of_order", "claim_limit_exceeded", "restated_row",
)

NEVER = pd.Timestamp("2200-01-01")
"""Stands for "never happened" where a date must be compared (a missing prerequisite)."""
_MIN_DATE = pd.Timestamp("1900-01-01")


def comparison_groups(contract: Contract) -> tuple[str, ...]:
    """The ``group`` labels of the contract's comparison groups."""
    return tuple(sorted({b.group for b in contract.baselines if isinstance(b, ComparisonGroupBaseline)}))


def residence_codes(contract: Contract) -> tuple[str, ...]:
    """The municipality codes the residence payers pay for (empty: not split by residence)."""
    return tuple(sorted({code for p in contract.payers for code in p.residence}))


def pre_metrics(contract: Contract) -> frozenset[str]:
    """Metrics measured *before* enrolment (difference-in-differences): exempt from the
    checks that an outcome follows enrolment and falls in the term."""
    return frozenset(
        b.pre_metric for b in contract.baselines
        if isinstance(b, ComparisonGroupBaseline) and b.pre_metric is not None
    )


def _needs_age(contract: Contract) -> tuple[bool, bool]:
    e = contract.eligibility
    table = any(isinstance(b, ExpectedDurationBaseline) for b in contract.baselines)
    age = table or (e is not None and (e.age_min is not None or e.age_max is not None))
    prior = table or (e is not None and (e.prior_months_min is not None or e.prior_months_max is not None))
    return age, prior


def required_columns(contract: Contract) -> tuple[str, ...]:
    """The columns a submission for ``contract`` must have, in format order."""
    need = {"contract_id", "contract_version", "participant_id", "metric", "date", "value", "cohort"}
    if comparison_groups(contract):
        need.add("group")
    if residence_codes(contract):
        need.add("municipality")
    age, prior = _needs_age(contract)
    if age:
        need.add("age")
    if prior:
        need.add("prior_months")
    return tuple(c for c in COLUMN_NAMES if c in need)


def requirements(contract: Contract) -> dict[str, tuple[str, ...]]:
    """Metric -> the metrics that must have happened first (metric and rate-card rules)."""
    out: dict[str, set[str]] = {m.id: set(m.requires) for m in contract.metrics}
    for t in contract.triggers:
        if isinstance(t, RateCardTrigger):
            for o in t.outcomes:
                out.setdefault(o.metric, set()).update(o.requires)
    return {k: tuple(sorted(v)) for k, v in out.items() if v}


def claim_limits(contract: Contract) -> dict[str, int]:
    """Metric -> how many times one participant may claim it (rate-card outcomes)."""
    out: dict[str, int] = {}
    for t in contract.triggers:
        if isinstance(t, RateCardTrigger):
            for o in t.outcomes:
                out[o.metric] = max(out.get(o.metric, 0), o.max_claims)
    return out


# --------------------------------------------------------------------------- parsing ---


@dataclass
class Failures:
    """Row failures being collected: each part is a frame of row positions and details."""

    parts: list[pd.DataFrame] = field(default_factory=list)

    def add(
        self,
        rows: np.ndarray,
        column: str,
        values: Any,
        check: str,
        code: str,
        message: Any,
    ) -> None:
        rows = np.asarray(rows, dtype=np.int64)
        if rows.size == 0:
            return
        vals = pd.Series(values, copy=False)
        if len(vals) != rows.size:
            vals = pd.Series([vals.iloc[0] if len(vals) else None] * int(rows.size))
        msg = pd.Series(message, copy=False)
        if len(msg) != rows.size:
            msg = pd.Series(np.repeat(str(msg.iloc[0]), rows.size))
        self.parts.append(pd.DataFrame({
            "row": rows,
            "column": column,
            "value": _show(vals.reset_index(drop=True)),
            "check": check,
            "code": code,
            "message": msg.reset_index(drop=True).astype("str"),
        }))

    def frame(self) -> pd.DataFrame:
        if not self.parts:
            return pd.DataFrame({
                "row": pd.Series([], dtype="int64"),
                "column": pd.Series([], dtype="str"),
                "value": pd.Series([], dtype="str"),
                "check": pd.Series([], dtype="str"),
                "code": pd.Series([], dtype="str"),
                "message": pd.Series([], dtype="str"),
            })
        return pd.concat(self.parts, ignore_index=True)


def _show(values: pd.Series) -> pd.Series:
    """Values as the text shown in a failure table (dates as ISO, integers without .0)."""
    if pd.api.types.is_datetime64_any_dtype(values.dtype):
        return values.dt.strftime("%Y-%m-%d").astype("str")
    if pd.api.types.is_float_dtype(values.dtype):
        v = values.to_numpy(dtype="float64", na_value=np.nan)
        whole = np.isfinite(v) & (np.floor(v) == v) & (np.abs(v) < 1e15)
        out = values.astype("str")
        if whole.any():
            out = out.where(~whole, pd.Series(v, index=values.index).fillna(0).astype("int64").astype("str"))
        return out.where(values.notna(), "")
    return values.astype("str").where(values.notna(), "")


def categorical(codes: np.ndarray, categories: pd.Index, index: pd.Index) -> pd.Series:
    """A categorical Series from integer ``codes`` (-1: missing) and ``categories`` known to be
    distinct.  pandas would check the categories for duplicates by hashing every one of them
    again (as costly as factorizing them); the caller already knows they are distinct."""
    fastpath = getattr(pd.CategoricalDtype, "_from_fastpath", None)
    if fastpath is None:  # pragma: no cover - a pandas without the fast path
        cat = pd.Categorical.from_codes(codes, categories=categories)
    else:
        cat = pd.Categorical.from_codes(codes, dtype=fastpath(categories, ordered=False), validate=False)
    return pd.Series(cat, index=index, copy=False)


def presence(filled: np.ndarray) -> pd.Categorical:
    """A column that is only filled in or not (what a ``not_null`` check reads), as a
    categorical of one category: one byte a row."""
    codes = filled.astype(np.int8)
    codes -= 1
    return pd.Categorical.from_codes(codes, categories=["filled"])


def codes_of(values: pd.Series) -> tuple[np.ndarray, pd.Index]:
    """Integer codes (-1: missing; a categorical column's own, of its integer type) and the
    distinct values of ``values``, in *some* order: a categorical column gives its own
    codes and categories (no hashing); anything else is factorized."""
    if isinstance(values.dtype, pd.CategoricalDtype):
        return values.cat.codes.to_numpy(), values.cat.categories
    c, u = pd.factorize(values, use_na_sentinel=True, size_hint=_HINT)
    return c, pd.Index(u)


def first_appearance(codes: np.ndarray, n_categories: int) -> tuple[np.ndarray, np.ndarray] | None:
    """Codes (-1: missing) of ``n_categories`` categories renumbered as ``pd.factorize``
    numbers them (in order of first appearance, unused categories dropped): the new codes
    and the old code of each new one; ``None`` when they already are (the usual case)."""
    valid = codes if not codes.size or codes.min() >= 0 else codes[codes >= 0]
    if valid.size:
        # in order iff each code is at most one more than every code before it, and all appear
        running = np.maximum.accumulate(valid)
        if valid[0] == 0 and int(running[-1]) + 1 == n_categories \
                and not bool((valid[1:] > running[:-1] + 1).any()):
            return None
    elif n_categories == 0:
        return None
    out = np.full(codes.shape, -1, dtype=np.int64)
    c, order = pd.factorize(valid, size_hint=_HINT)
    out[codes >= 0] = c
    return out, np.asarray(order, dtype=np.int64)


_MIN_FIXED_WIDTH_ROWS = 4096
_HINT = 1 << 16
"""The hash-table size ``pd.factorize`` starts from (it grows as needed).  pandas would
size it for every row being distinct: for a million rows, tens of megabytes that are
mostly never used but all touched (and cache misses on every lookup)."""


def _factorize_fixed_width(values: pd.Series) -> tuple[np.ndarray, pd.Index] | None:
    """``pd.factorize(values)`` (same codes, same uniques in order of first appearance) for
    Arrow-backed text whose values all have the same byte length, as identifiers usually
    do: each value's bytes, read straight from the Arrow buffers, are factorized as 64-bit
    integers, several times faster than hashing the strings.  ``None`` when it does not
    apply (other storage, mixed lengths, long values, few rows)."""
    to_arrow = getattr(values.array, "__arrow_array__", None)
    if to_arrow is None or len(values) < _MIN_FIXED_WIDTH_ROWS:
        return None
    chunked = to_arrow()
    arr = chunked.chunk(0) if chunked.num_chunks == 1 else chunked.combine_chunks()
    kind = str(arr.type)
    if kind not in ("string", "large_string"):
        return None
    n = len(arr)
    buffers = arr.buffers()
    if len(buffers) != 3 or buffers[1] is None or buffers[2] is None:
        return None
    width_t = np.dtype(np.int64 if kind == "large_string" else np.int32)
    offsets = np.frombuffer(buffers[1], dtype=width_t, count=n + 1, offset=arr.offset * width_t.itemsize)
    valid = None if arr.null_count == 0 else values.notna().to_numpy(dtype=bool)
    w = int(offsets[1] - offsets[0]) if valid is None else -1
    if valid is None and 8 <= w <= 64 and int(offsets[-1] - offsets[0]) == n * w \
            and not bool((np.diff(offsets) != w).any()):
        # contiguous values of w >= 8 bytes: 8-byte words read in place (the last one
        # overlapping the one before when w is not a multiple of 8)
        data = np.frombuffer(buffers[2], dtype=np.uint8)
        base = int(offsets[0])
        starts = list(range(0, w - 7, 8)) + ([w - 8] if w % 8 else [])
        words = [np.ndarray((n,), dtype="<u8", buffer=data, offset=base + at, strides=(w,)) for at in starts]
        high = True  # a last, partial word holds its new bytes in its high-order bytes
    else:
        lengths = np.diff(offsets)
        if valid is not None:
            lengths = lengths[valid]
        if not lengths.size:
            return None
        w = int(lengths[0])
        if w == 0 or w > 64 or bool((lengths != w).any()):
            return None
        data = np.frombuffer(buffers[2], dtype=np.uint8)
        starts_at = offsets[:-1] if valid is None else offsets[:-1][valid]
        block = np.zeros((lengths.size, (w + 7) // 8 * 8), dtype=np.uint8)
        block[:, :w] = data[starts_at[:, None] + np.arange(w)]
        keys = block.view(np.uint64)
        words = [keys[:, j] for j in range(keys.shape[1])]
        high = False  # a last, partial word holds its bytes in its low-order bytes (zero-padded)
    # factorize the words in turn, each word's values first mixed by a bijection (the same
    # codes, but hashed evenly: raw text bytes collide a lot in pandas' integer hash table)
    c, _ = pd.factorize(_mix(words[0]), size_hint=_HINT)
    codes = c.astype(np.int64, copy=False)
    for i, word in enumerate(words[1:], start=1):
        tail = w - 8 * i  # bytes of the value this word adds (< 8: the last, overlapping word)
        if tail < 8 and (int(codes.max(initial=0)) + 1) << (8 * tail) < 1 << 62:
            added = np.array(word, dtype=np.uint64)  # a copy (the word may view the input)
            added >>= np.uint64(64 - 8 * tail if high else 0)
            key = codes << (8 * tail)
            key |= added.view(np.int64)  # < 2**56 after the shift: the same value
        else:
            c2, u2 = pd.factorize(_mix(word), size_hint=_HINT)
            key = codes * len(u2) + c2
        c, _ = pd.factorize(key, size_hint=_HINT)
        codes = c.astype(np.int64, copy=False)
    # codes count from 0 in order of first appearance: a code is new where it exceeds all before
    running = np.maximum.accumulate(codes)
    first = np.flatnonzero(np.r_[True, codes[1:] > running[:-1]])
    del running
    rows = first if valid is None else np.flatnonzero(valid)[first]
    uniques = pd.Index(values.array.take(rows))
    if valid is not None:
        full = np.full(n, -1, dtype=np.int64)
        full[valid] = codes
        codes = full
    return codes, uniques


def _mix(word: np.ndarray) -> np.ndarray:
    """A bijection of 64-bit words (an odd multiplier, then an xor-shift) that spreads them
    evenly over a hash table."""
    x = np.ascontiguousarray(word, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)
    x ^= x >> np.uint64(29)
    return x


def as_text(values: pd.Series) -> pd.Series:
    """A column as stripped text, empty cells missing, held as a pandas category (each
    distinct text is handled once: parsing a million rows parses their distinct values)."""
    if isinstance(values.dtype, pd.CategoricalDtype):
        codes = values.cat.codes.to_numpy()
        cats = pd.Series(values.cat.categories)
    else:
        if not (values.dtype == "str" or values.dtype == object):
            values = _show(values).where(values.notna())
        fixed = _factorize_fixed_width(values) if values.dtype == "str" else None
        c, u = fixed if fixed is not None else pd.factorize(values, use_na_sentinel=True, size_hint=_HINT)
        codes = c
        cats = pd.Series(u)
    if cats.dtype == "str":
        # distinct texts, none padded or empty (the usual case): they are the categories
        stripped = cats.str.strip()
        if not bool((stripped != cats).any()) and not bool((cats == "").any()):
            return categorical(codes, pd.Index(cats.array, dtype="str"), values.index)
    codes = codes.astype(np.int64)
    stripped = cats.astype("str").str.strip()
    ucodes, ucats = pd.factorize(stripped, use_na_sentinel=True, size_hint=_HINT)
    keep = np.asarray(ucats != "", dtype=bool)
    renumber = np.cumsum(keep) - 1
    remap = np.where(keep[ucodes], renumber[ucodes], -1) if len(ucodes) else np.zeros(0, np.int64)
    new = np.where(codes >= 0, np.append(remap, -1)[codes], -1)
    categories = pd.Index(np.asarray(ucats)[keep], dtype="str")
    return categorical(new, categories, values.index)


def _cats(text: pd.Series) -> tuple[pd.Series, np.ndarray]:
    """The categories (distinct texts) of an :func:`as_text` column and its codes."""
    return pd.Series(text.cat.categories, dtype="str"), text.cat.codes.to_numpy().astype(np.int64)


def _parse_number(text: pd.Series, decimal_comma: np.ndarray) -> pd.Series:
    cats, codes = _cats(text)

    def numbers(t: pd.Series) -> np.ndarray:
        num = pd.to_numeric(t, errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
        return np.append(np.where(np.isfinite(num), num, np.nan), np.nan)

    plain = numbers(cats)[codes]
    if decimal_comma.any():
        comma = cats.str.replace(".", "", regex=False).str.replace(",", ".", regex=False)
        comma = comma.where(cats.str.contains(",", regex=False), cats)
        plain = np.where(decimal_comma, numbers(comma)[codes], plain)
    return pd.Series(plain, index=text.index)


def _parse_date(text: pd.Series) -> pd.Series:
    cats, codes = _cats(text)
    d = pd.to_datetime(cats, format="%Y-%m-%d", errors="coerce")
    rest = d.isna() & cats.notna()
    if rest.any():
        t = cats[rest]
        iso = t.str.match(r"^\d{4}-\d{2}-\d{2}[T ]\d")
        d2 = pd.Series(pd.NaT, index=t.index, dtype=d.dtype)
        if iso.any():
            d2[iso] = pd.to_datetime(t[iso], format="ISO8601", errors="coerce").dt.tz_localize(None).dt.floor("D")
        dmy = ~iso
        if dmy.any():
            d2[dmy] = pd.to_datetime(t[dmy], format="%d-%m-%Y", errors="coerce")
        d = d.copy()
        d[rest] = d2
    arr = np.append(d.to_numpy(dtype="datetime64[ns]"), np.datetime64("NaT"))
    return pd.Series(arr[codes], index=text.index)


def parse(
    frame: pd.DataFrame, decimal_comma: np.ndarray, failures: Failures
) -> pd.DataFrame:
    """Typed columns of the measured-data format from a submission.

    ``frame`` has a RangeIndex; its columns are text (or already typed, e.g. from Parquet:
    typed columns are kept).  ``decimal_comma`` says, per row, that numbers use a decimal
    comma.  Values that do not parse become missing and are reported to ``failures`` as
    ``wrong_type`` or ``unparseable_date``; empty cells are left to the ``missing_value``
    checks.  Text columns come back stripped, as categories, with empty cells missing; each
    non-text column ``x`` also gets ``x_text``, filled where the cell was.
    """
    n = len(frame)
    out: dict[str, pd.Series] = {}
    for name in COLUMN_NAMES:
        if name not in frame.columns:
            continue
        col = frame[name]
        kind = _TYPES[name]
        if kind == "text":
            out[name] = as_text(col)
        elif kind == "date":
            if pd.api.types.is_datetime64_any_dtype(col.dtype):
                d = col.dt.tz_localize(None) if getattr(col.dt, "tz", None) is not None else col
                if not _whole_days(d.to_numpy()):
                    d = d.dt.floor("D")
                text = None
            else:
                text = as_text(col)
                d = _parse_date(text)
            bad_range = d.notna() & ((d < _MIN_DATE) | (d >= NEVER))
            if text is not None:
                unparsed = (d.isna() & text.notna()).to_numpy()
                if unparsed.any():
                    rows = np.flatnonzero(unparsed)
                    shown = text.iloc[rows].astype("str").reset_index(drop=True)
                    failures.add(rows, name, shown, "date_parses", "unparseable_date",
                                 "'" + shown + "' is not a date;"
                                 " write dates as YYYY-MM-DD (or DD-MM-YYYY in a ';' file)")
            if bad_range.any():
                rows = np.flatnonzero(bad_range.to_numpy())
                failures.add(rows, name, d.iloc[rows], "date_parses", "unparseable_date",
                             "the date is not between 1900 and 2199; check the year")
                d = d.where(~bad_range)
            out[name] = d.astype("datetime64[ns]")
            out[name + "_text"] = text if text is not None else col
        else:
            if pd.api.types.is_numeric_dtype(col.dtype) and not pd.api.types.is_bool_dtype(col.dtype):
                num = col.astype("float64")
                infinite = np.isinf(num.to_numpy())
                if infinite.any():  # (NaN stays NaN)
                    num = num.where(~infinite)
                text = None
            else:
                text = as_text(col)
                num = _parse_number(text, decimal_comma)
            if text is None:
                # a typed column: only an infinite value (now missing) does not parse
                badv = infinite
            else:
                badv = (num.isna() & text.notna()).to_numpy(dtype=bool)
            if kind == "integer":
                frac = _fractional(num.to_numpy())
                if frac.any():
                    badv = badv | frac
                    num = num.where(~frac)
            if badv.any():
                rows = np.flatnonzero(badv)
                shown = _show((text if text is not None else col).iloc[rows].reset_index(drop=True))
                what = "a whole number" if kind == "integer" else "a number"
                commas = shown.str.contains(",", regex=False).fillna(False).to_numpy(dtype=bool)
                hint_s = np.where(commas & ~decimal_comma[rows], " (a ',' file uses '.' as decimal mark)", "")
                msg = ("'" + shown + f"' is not {what}") + pd.Series(hint_s)
                failures.add(rows, name, shown, "type_" + kind, "wrong_type", msg)
            out[name] = num
            out[name + "_text"] = text if text is not None else col
    # copy=False: no consolidation of the columns into 2-d blocks (a copy of every column)
    typed = pd.DataFrame(out, index=pd.RangeIndex(n), copy=False)
    return typed


_BLOCK = 1 << 16
"""Rows per block where a whole-column test would need large temporary arrays."""


def _whole_days(d: np.ndarray) -> bool:
    """Are all the (naive) datetimes ``d`` midnights (or NaT)?  Tested a block at a time,
    without a temporary array as large as the column."""
    if not d.size:
        return True
    unit = np.datetime_data(d.dtype)[0]
    day = int(np.array(1, dtype="timedelta64[D]").astype(f"timedelta64[{unit}]").astype(np.int64))
    v = d.view(np.int64)
    nat = np.iinfo(np.int64).min
    for start in range(0, v.size, _BLOCK):
        block = v[start:start + _BLOCK]
        if bool(((block % day != 0) & (block != nat)).any()):
            return False
    return True


def _fractional(v: np.ndarray) -> np.ndarray:
    """Per value of float array ``v``: is it a number that is not whole?"""
    out = np.zeros(v.size, dtype=bool)
    for start in range(0, v.size, _BLOCK):
        block = v[start:start + _BLOCK]
        out[start:start + _BLOCK] = np.floor(block) != block  # NaN != NaN: excluded below
    out &= ~np.isnan(v)
    return out


# ---------------------------------------------------------------------------- checks ---

CheckKind = Literal["in_set", "between", "not_null", "a_ge_b", "unique"]
Where = Literal["all", "enrolment", "outcome"]


@dataclass(frozen=True)
class Check:
    """One check generated from the contract.

    ``kind`` and ``columns`` say what must hold in the check frame:

    * ``in_set``: every non-empty value of ``columns[0]`` is in ``value_set``;
    * ``between``: every non-empty value of ``columns[0]`` is within ``[low, high]``;
    * ``not_null``: ``columns[0]`` is filled in on the rows ``where`` says;
    * ``a_ge_b``: ``columns[0] >= columns[1]`` wherever both are filled in;
    * ``unique``: the combination of ``columns`` is unique where all are filled in.

    ``report`` is the measured-data column named in the failure table; ``message`` the text
    shown, where ``{value}`` stands for the reported value and ``{other}`` for the value of
    ``columns[1]`` (pairs) .
    """

    id: str
    code: str
    kind: CheckKind
    columns: tuple[str, ...]
    report: str
    description: str
    message: str
    value_set: tuple[Any, ...] = ()
    low: Any = None
    high: Any = None
    where: Where = "all"


def plan_checks(contract: Contract) -> tuple[Check, ...]:
    """Every check the contract implies, in reporting order."""
    c = contract
    metric_ids = tuple(m.id for m in c.metrics)
    cohorts = tuple(k.id for k in c.timeline.cohorts)
    groups = (TREATMENT,) + comparison_groups(c)
    residence = residence_codes(c)
    age, prior = _needs_age(c)
    start, end = pd.Timestamp(c.term.start), pd.Timestamp(c.term.end)
    checks: list[Check] = [
        Check("participant_present", "missing_value", "not_null", ("participant_id",), "participant_id",
              "every row names its participant", "participant_id is empty"),
        Check("metric_present", "missing_value", "not_null", ("metric",), "metric",
              "every row names its metric ('enrolment' or an outcome)", "metric is empty"),
        Check("date_present", "missing_value", "not_null", ("date_text",), "date",
              "every row is dated", "date is empty"),
        Check("contract_present", "missing_value", "not_null", ("contract_id",), "contract_id",
              "every row names the contract", "contract_id is empty"),
        Check("version_present", "missing_value", "not_null", ("contract_version_text",), "contract_version",
              "every row gives the contract version", "contract_version is empty"),
        Check("value_present", "missing_value", "not_null", ("value_text",), "value",
              "every outcome row has a value", "value is empty on an outcome row", where="outcome"),
        Check("cohort_present", "missing_value", "not_null", ("cohort",), "cohort",
              "every enrolment row names its cohort", "cohort is empty on an enrolment row",
              where="enrolment"),
        Check("contract_id", "wrong_contract", "in_set", ("contract_id",), "contract_id",
              f"contract_id is '{c.id}'", f"'{{value}}' is not this contract's id ('{c.id}')",
              value_set=(c.id,)),
        Check("contract_version", "wrong_contract", "in_set", ("contract_version",), "contract_version",
              f"contract_version is {c.version}",
              f"version {{value}} is not this contract's version ({c.version})",
              value_set=(float(c.version),)),
        Check("metric_known", "unknown_metric", "in_set", ("metric",), "metric",
              "metric is 'enrolment' or one of the contract's metrics",
              f"'{{value}}' is not a metric of the contract (known: {', '.join(metric_ids)})",
              value_set=(ENROLMENT,) + metric_ids),
        Check("cohort_known", "unknown_cohort", "in_set", ("cohort",), "cohort",
              "cohort is one of the timeline's cohorts",
              f"'{{value}}' is not a cohort of the contract (known: {', '.join(cohorts)})",
              value_set=cohorts),
        Check("group_known", "unknown_group", "in_set", ("group",), "group",
              "group is 'treatment' or a comparison group's label",
              f"'{{value}}' is not a group of the contract (known: {', '.join(groups)})",
              value_set=groups),
    ]
    if residence:
        checks += [
            Check("municipality_present", "missing_value", "not_null", ("municipality",), "municipality",
                  "every enrolment row gives the municipality of residence",
                  "municipality is empty on an enrolment row", where="enrolment"),
            Check("municipality_known", "unknown_municipality", "in_set", ("municipality",), "municipality",
                  "municipality is one the residence payers pay for",
                  f"'{{value}}' is not a municipality any payer pays for (known: {', '.join(residence)})",
                  value_set=residence),
        ]
    e = c.eligibility
    if age:
        checks.append(Check("age_present", "missing_value", "not_null", ("age_text",), "age",
                            "every enrolment row gives the age", "age is empty on an enrolment row",
                            where="enrolment"))
    if e is not None and (e.age_min is not None or e.age_max is not None):
        lo, hi = e.age_min, e.age_max
        checks.append(Check("age_eligible", "ineligible", "between", ("enr_age",), "age",
                            f"age at enrolment within {lo if lo is not None else '-'}..{hi if hi is not None else '-'}",
                            f"age {{value}} is outside the eligible ages ({lo if lo is not None else ''}-{hi if hi is not None else ''})"
                            + (f" [{e.clause}]" if e.clause else ""),
                            low=None if lo is None else float(lo), high=None if hi is None else float(hi)))
    if prior:
        checks.append(Check("prior_present", "missing_value", "not_null", ("prior_months_text",), "prior_months",
                            "every enrolment row gives the prior months", "prior_months is empty on an enrolment row",
                            where="enrolment"))
    if e is not None and (e.prior_months_min is not None or e.prior_months_max is not None):
        lo, hi = e.prior_months_min, e.prior_months_max
        checks.append(Check("prior_eligible", "ineligible", "between", ("enr_prior",), "prior_months",
                            f"prior months within {lo if lo is not None else '-'}..{hi if hi is not None else '-'}",
                            f"{{value}} prior months is outside the eligible range ({lo if lo is not None else ''}-{hi if hi is not None else ''})"
                            + (f" [{e.clause}]" if e.clause else ""),
                            low=None if lo is None else float(lo), high=None if hi is None else float(hi)))
    checks += [
        Check("participant_unique", "duplicate_participant", "unique", ("enr_pid", "enr_cohort"), "participant_id",
              "one enrolment row per participant and cohort (the first one counts)",
              "the participant is enrolled twice in the same cohort; the first enrolment row counts"),
        Check("value_not_negative", "negative_value", "between", ("value_nonneg",), "value",
              "counts, durations, events and yes/no values are not negative",
              "{value} is negative", low=0.0),
        Check("event_value", "value_out_of_range", "in_set", ("event_value",), "value",
              "an event row has value 1", "an event row has value {value}, not 1", value_set=(1.0,)),
        Check("binary_value", "value_out_of_range", "in_set", ("binary_value",), "value",
              "a yes/no metric has value 1 or 0", "a yes/no value is {value}, not 1 or 0",
              value_set=(0.0, 1.0)),
        Check("value_min", "value_out_of_range", "a_ge_b", ("value_lo", "value_min"), "value",
              "value at least the metric's min_value", "{value} is below the metric's minimum {other}"),
        Check("value_max", "value_out_of_range", "a_ge_b", ("value_max", "value_hi"), "value",
              "value at most the metric's max_value", "{value} is above the metric's maximum {other}"),
        Check("date_in_term", "event_outside_term", "between", ("term_date",), "date",
              f"date within the term {c.term.start}..{c.term.end}",
              f"{{value}} is outside the contract's term ({c.term.start} to {c.term.end})"
              + (f" [{c.term.clause}]" if c.term.clause else ""),
              low=start, high=end),
        Check("enrolment_opens", "outside_window", "a_ge_b", ("enr_date", "cohort_open"), "date",
              "enrolment on or after the cohort's enrolment start",
              "enrolment on {value} is before the cohort's enrolment window opens ({other})"),
        Check("enrolment_closes", "outside_window", "a_ge_b", ("cohort_close", "enr_date"), "date",
              "enrolment on or before the cohort's enrolment end",
              "enrolment on {value} is after the cohort's enrolment window closed ({other})"),
        Check("participant_enrolled", "unknown_participant", "in_set", ("linked",), "participant_id",
              "an outcome row's participant has an enrolment row",
              "the participant has no enrolment row (in this cohort)", value_set=(1.0,)),
        Check("after_enrolment", "event_before_enrolment", "a_ge_b", ("out_date", "enrol_date"), "date",
              "an outcome is dated on or after its participant's enrolment",
              "{value} is before the participant's enrolment on {other}"),
        Check("within_window", "outside_window", "a_ge_b", ("window_end", "out_date"), "date",
              "an outcome falls within its metric's attribution window after enrolment",
              "{value} is after the metric's attribution window ended on {other}"),
        Check("prerequisites_first", "prerequisite_out_of_order", "a_ge_b", ("out_date", "prereq_date"), "date",
              "an outcome comes on or after its prerequisite outcomes",
              "{value} comes before its prerequisite outcome (first possible: {other})"),
        Check("claim_limit", "claim_limit_exceeded", "a_ge_b", ("claim_max", "claim_no"), "metric",
              "a participant claims an outcome at most max_claims times",
              "claim number {other} of '{value}' for this participant exceeds the limit"),
    ]
    types = {m.type for m in c.metrics}
    skip = set()
    if "event" not in types:
        skip.add("event_value")
    if "binary" not in types:
        skip.add("binary_value")
    if all(m.min_value is None for m in c.metrics):
        skip.add("value_min")
    if all(m.max_value is None for m in c.metrics):
        skip.add("value_max")
    if all(m.window_months is None for m in c.metrics):
        skip.add("within_window")
    if not requirements(c):
        skip.add("prerequisites_first")
    if not claim_limits(c):
        skip.add("claim_limit")
    return tuple(_replace(k, where=_WHERE.get(k.id, k.where)) for k in checks if k.id not in skip)


_WHERE: dict[str, Where] = {
    **{k: "enrolment" for k in ("cohort_present", "municipality_present", "age_present", "age_eligible",
                                "prior_present", "prior_eligible", "participant_unique",
                                "enrolment_opens", "enrolment_closes")},
    **{k: "outcome" for k in ("value_present", "value_not_negative", "event_value", "binary_value",
                              "value_min", "value_max", "participant_enrolled", "after_enrolment",
                              "within_window", "prerequisites_first", "claim_limit")},
}
"""The rows each check applies to (the others apply to every row); outcome rows are rows
whose metric is given and is not ``enrolment``."""


# ---------------------------------------------------------------------- check frame ---


def _float_nan(n: int) -> np.ndarray:
    return np.full(n, np.nan)


def _nat(n: int) -> np.ndarray:
    return np.full(n, np.datetime64("NaT"), dtype="datetime64[ns]")


@dataclass(frozen=True)
class Links:
    """How outcome rows attach to enrolment rows (positions in the submission)."""

    enrolment_row: np.ndarray
    """Per row: the position of its enrolment row (itself for an enrolment row), or -1."""
    first_enrolment: np.ndarray
    """Per row: True for an enrolment row that counts (not a later duplicate)."""


def link(typed: pd.DataFrame, pid: np.ndarray, is_enr: np.ndarray | None = None) -> Links:
    """Attach every outcome row to its participant's enrolment row.

    ``pid`` is an integer code per row (-1 when missing); ``is_enr`` (optional) says which
    rows are enrolment rows.  An outcome row naming a cohort
    attaches to the participant's enrolment in that cohort; one without attaches to the
    latest enrolment on or before its date (or the earliest one, if it precedes them all).
    Of several enrolment rows for the same participant and cohort, the first counts.
    """
    n = len(typed)
    if is_enr is None:
        is_enr = enrolment_rows(typed["metric"])
    cohort = typed["cohort"] if "cohort" in typed else pd.Series(pd.NA, index=typed.index, dtype="str")
    ccodes, _ = codes_of(cohort)
    ncoh = int(ccodes.max()) + 2 if ccodes.size else 2
    cand_rows = np.flatnonzero(is_enr & (pid >= 0) & (ccodes >= 0))
    # (participant, cohort) keys, sorted, each with its first enrolment row: the one that counts
    sk, first_idx = _first_of_each(pid[cand_rows] * ncoh + ccodes[cand_rows])
    by_key = cand_rows[first_idx]
    first = np.zeros(n, dtype=bool)
    first[by_key] = True

    enrolment_row = np.full(n, -1, dtype=np.int64)
    enrolment_row[by_key] = by_key
    out_rows = np.flatnonzero(~is_enr & (pid >= 0))
    if out_rows.size and by_key.size:
        e_rows = np.flatnonzero(first)
        # rows naming a cohort: exact (participant, cohort) match
        named = ccodes[out_rows] >= 0
        if named.any():
            q = pid[out_rows[named]] * ncoh + ccodes[out_rows[named]]
            pos = np.searchsorted(sk, q)
            pos_c = np.minimum(pos, sk.size - 1)
            hit = sk[pos_c] == q
            enrolment_row[out_rows[named]] = np.where(hit, by_key[pos_c], -1)
        # the others: the latest enrolment on or before the date, else the earliest
        rest = out_rows[~named]
        if rest.size:
            # most participants have one enrolment: look it up directly
            per_pid = np.bincount(pid[e_rows], minlength=int(pid.max()) + 1)
            only = np.full(per_pid.size, -1, dtype=np.int64)
            single = per_pid[pid[e_rows]] == 1
            only[pid[e_rows][single]] = e_rows[single]
            direct = per_pid[pid[rest]] <= 1
            enrolment_row[rest[direct]] = only[pid[rest[direct]]]
            rest = rest[~direct]
            e_rows = e_rows[per_pid[pid[e_rows]] > 1]
        if rest.size:
            dates = typed["date"].to_numpy(dtype="datetime64[D]")
            base = np.datetime64("1800-01-01", "D")
            span = np.int64(1 << 18)

            def day(rows: np.ndarray) -> np.ndarray:
                d = dates[rows]
                v = (d - base).astype(np.int64)
                v = np.where(np.isnat(d), 0, v)
                return np.clip(v, 0, span - 1)

            e_key = pid[e_rows] * span + day(e_rows)
            order = np.argsort(e_key, kind="stable")
            sk = e_key[order]
            q = pid[rest] * span + np.where(np.isnat(dates[rest]), span - 1, day(rest))
            pos = np.searchsorted(sk, q, side="right") - 1
            pos_c = np.clip(pos, 0, sk.size - 1)
            same = (pos >= 0) & (sk[pos_c] // span == pid[rest])
            # fall back to the participant's earliest enrolment
            first_pos = np.searchsorted(sk, pid[rest] * span)
            first_c = np.minimum(first_pos, sk.size - 1)
            has_any = sk[first_c] // span == pid[rest]
            chosen = np.where(same, pos_c, first_c)
            enrolment_row[rest] = np.where(same | has_any, e_rows[order[chosen]], -1)
    return Links(enrolment_row=enrolment_row, first_enrolment=first)


def _first_of_each(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``np.unique(keys, return_index=True)`` for non-negative integer keys: the distinct
    keys, sorted, and where each first occurs.  When key and position fit in 63 bits
    together, one sort of their values (several times faster than an arg-sort)."""
    if not keys.size:
        return keys.astype(np.int64), np.zeros(0, dtype=np.int64)
    place_bits = int(keys.size - 1).bit_length()
    if int(keys.max()) >= 1 << (63 - place_bits):
        sk, first = np.unique(keys, return_index=True)
        return sk, first
    packed = keys.astype(np.int64) << place_bits
    packed |= np.arange(keys.size, dtype=np.int64)
    packed.sort()
    key = packed >> place_bits
    new = np.empty(keys.size, dtype=bool)
    new[0] = True
    np.not_equal(key[1:], key[:-1], out=new[1:])
    return key[new], packed[new] & ((1 << place_bits) - 1)


def enrolment_rows(metric: pd.Series) -> np.ndarray:
    """Per row: is it an enrolment row (``metric`` is ``enrolment``)?"""
    return np.asarray((metric == ENROLMENT).fillna(False).to_numpy(dtype=bool))


def _add_months(dates: pd.Series, months: int) -> pd.Series:
    return dates + pd.DateOffset(months=months)


def check_frame(
    contract: Contract, typed: pd.DataFrame, pid: np.ndarray, links: Links,
    is_enr: np.ndarray | None = None, columns: Collection[str] | None = None,
) -> dict[str, pd.Series]:
    """The columns the checks of :func:`plan_checks` read (see the module's docstring), by
    name.  A column read on every row is indexed by position in the submission (a
    RangeIndex); a derived column read only on enrolment rows (``enr_*``, ``cohort_open``,
    ``cohort_close``) or only on outcome rows (values, dates and claims of outcomes) holds
    just those rows, indexed by their positions, and is empty on every other row.
    ``is_enr`` (optional) says which rows are enrolment rows; with ``columns``, derived
    columns no check reads are left out.  ``claim_no`` numbers (in date order) the claims
    of a participant who has more claims of a metric than its limit, and is empty on the
    others' (none of theirs can exceed it)."""
    c = contract

    def wanted(*names: str) -> bool:
        return columns is None or any(name in columns for name in names)

    n = len(typed)
    idx = pd.RangeIndex(n)
    metric = typed["metric"]
    if is_enr is None:
        is_enr = enrolment_rows(metric)
    is_out = metric.notna().to_numpy(dtype=bool) & ~is_enr
    e_rows, o_rows = np.flatnonzero(is_enr), np.flatnonzero(is_out)
    e_idx, o_idx = pd.Index(e_rows), pd.Index(o_rows)
    metrics = {m.id: m for m in c.metrics}
    mcodes, muniq = codes_of(metric)
    mlist = [str(x) for x in muniq]
    m_out = mcodes[o_rows]

    def per_metric(values: dict[str, float]) -> np.ndarray:
        """A value per outcome row, by its metric."""
        table = np.array([values.get(m, np.nan) for m in mlist] + [np.nan], dtype="float64")
        out: np.ndarray = table[m_out]  # code -1 takes the trailing NaN
        return out

    date = typed["date"] if "date" in typed else pd.Series(_nat(n), index=idx)
    d = date.to_numpy(dtype="datetime64[ns]")
    value = typed["value"].to_numpy(dtype="float64") if "value" in typed else _float_nan(n)
    pre = pre_metrics(c)
    is_pre = np.isin(mcodes, [i for i, m in enumerate(mlist) if m in pre]) if pre else None

    cf: dict[str, Any] = {}
    on_enrolment: dict[str, Any] = {}
    on_outcome: dict[str, Any] = {}
    for name in ("contract_id", "contract_version", "metric", "cohort", "group", "municipality"):
        if name in typed:
            cf[name] = typed[name]
    cf["participant_id"] = presence(pid >= 0)
    for name in typed.columns:
        if name.endswith("_text"):
            cf[name] = typed[name]
    for name in ("age", "prior_months"):
        if name in typed:
            cf[name] = typed[name]
    if "age" in typed:
        on_enrolment["enr_age"] = typed["age"].to_numpy()[e_rows]
    if "prior_months" in typed:
        on_enrolment["enr_prior"] = typed["prior_months"].to_numpy()[e_rows]
    pid_e = pid[e_rows]
    on_enrolment["enr_pid"] = np.where(pid_e >= 0, pid_e, np.nan)
    if "cohort" in typed:
        on_enrolment["enr_cohort"] = typed["cohort"].array.take(e_rows)
    else:
        on_enrolment["enr_cohort"] = pd.Series(pd.NA, index=e_idx, dtype="str")

    # values, on outcome rows
    v_out = value[o_rows]
    types = {m.id: m.type for m in c.metrics}
    nonneg = per_metric({k: 1.0 for k, t in types.items() if t != "continuous"}) == 1.0
    negative = nonneg & (v_out < 0)
    on_outcome["value_nonneg"] = np.where(nonneg, v_out, np.nan)
    if wanted("event_value"):
        on_outcome["event_value"] = np.where(per_metric({k: 1.0 for k, t in types.items() if t == "event"}) == 1.0,
                                             v_out, np.nan)
    if wanted("binary_value"):
        on_outcome["binary_value"] = np.where(per_metric({k: 1.0 for k, t in types.items() if t == "binary"}) == 1.0,
                                              v_out, np.nan)
    if wanted("value_lo", "value_min"):
        on_outcome["value_lo"] = np.where(~negative, v_out, np.nan)
        on_outcome["value_min"] = per_metric({k: float(m.min_value) for k, m in metrics.items()
                                              if m.min_value is not None})
    if wanted("value_max", "value_hi"):
        on_outcome["value_max"] = per_metric({k: float(m.max_value) for k, m in metrics.items()
                                              if m.max_value is not None})
        on_outcome["value_hi"] = v_out

    # dates
    nat = np.datetime64("NaT")
    cf["term_date"] = d if is_pre is None else np.where(is_pre, nat, d).astype("datetime64[ns]", copy=False)
    cohorts = {k.id: k for k in c.timeline.cohorts}
    if "cohort" in typed:
        ccodes, cuniq = codes_of(typed["cohort"])
        opens = np.array([np.datetime64(cohorts[k].enrolment_start, "ns") if k in cohorts else nat
                          for k in cuniq] + [nat], dtype="datetime64[ns]")
        closes = np.array([np.datetime64(cohorts[k].enrolment_end, "ns") if k in cohorts else nat
                           for k in cuniq] + [nat], dtype="datetime64[ns]")
        c_enr = ccodes[e_rows]
        on_enrolment["cohort_open"] = opens[c_enr]
        on_enrolment["cohort_close"] = closes[c_enr]
    else:
        on_enrolment["cohort_open"] = _nat(e_rows.size)
        on_enrolment["cohort_close"] = _nat(e_rows.size)
    on_enrolment["enr_date"] = d[e_rows]

    # outcome rows joined to their enrolment row
    er = links.enrolment_row[o_rows]
    linked_ok = er >= 0
    on_outcome["linked"] = np.where(pid[o_rows] >= 0, linked_ok.astype("float64"), np.nan)
    enrol_date = np.where(linked_ok, d[np.maximum(er, 0)], nat).astype("datetime64[ns]", copy=False)
    d_out = d[o_rows]
    out_mask = linked_ok if is_pre is None else linked_ok & ~is_pre[o_rows]
    on_outcome["enrol_date"] = np.where(out_mask, enrol_date, nat).astype("datetime64[ns]", copy=False)
    on_outcome["out_date"] = np.where(out_mask, d_out, nat).astype("datetime64[ns]", copy=False)

    # attribution windows, per metric
    window_end = _nat(o_rows.size)
    for m in c.metrics:
        if m.window_months is None or m.id not in mlist:
            continue
        rows = np.flatnonzero(out_mask & (m_out == mlist.index(m.id)))
        if rows.size:
            ends = _add_months(pd.Series(enrol_date[rows]), m.window_months)
            window_end[rows] = ends.to_numpy(dtype="datetime64[ns]")
    on_outcome["window_end"] = window_end

    # prerequisites: the first date of each required metric, per enrolment
    prereq = _nat(o_rows.size)
    reqs = requirements(c)
    usable = out_mask & ~np.isnat(d_out)
    if reqs and usable.any():
        # an outcome row's enrolment row, as its place among the enrolment rows
        place = np.full(n, -1, dtype=np.int32 if n < 1 << 31 else np.int64)
        place[e_rows] = np.arange(e_rows.size, dtype=place.dtype)
        er_place = place[np.maximum(er, 0)]
        del place
        days = d_out.view(np.int64)
        none = np.iinfo(np.int64).max
        firsts: dict[str, np.ndarray] = {}
        for needed in sorted({r for rs in reqs.values() for r in rs}):
            first_day = np.full(e_rows.size, none, dtype=np.int64)  # per enrolment row
            if needed in mlist:
                rows = np.flatnonzero(usable & (m_out == mlist.index(needed)))
                np.minimum.at(first_day, er_place[rows], days[rows])
            firsts[needed] = first_day
        never = NEVER.to_datetime64().astype("datetime64[ns]").view(np.int64)
        for m_id, needed_list in reqs.items():
            if m_id not in mlist:
                continue
            rows = np.flatnonzero(usable & (m_out == mlist.index(m_id)))
            if not rows.size:
                continue
            latest = np.full(rows.size, nat, dtype="datetime64[ns]")
            for needed in needed_list:
                f = firsts[needed][er_place[rows]]
                f = np.where(f == none, never, f).view("datetime64[ns]")
                latest = np.where(np.isnat(latest) | (f > latest), f, latest)
            prereq[rows] = latest
    on_outcome["prereq_date"] = prereq

    # claim limits: number each claim of a limited metric per participant, in date order
    claim_no = _float_nan(o_rows.size)
    claim_max = _float_nan(o_rows.size)
    limits = {k: v for k, v in claim_limits(c).items() if k in mlist}
    if limits:
        lim = per_metric({k: float(v) for k, v in limits.items()})
        rows = np.flatnonzero(usable & ~np.isnan(lim))
        if rows.size:
            pid_out = pid[o_rows]
            claim_max[rows] = lim[rows]
            # only a participant with more claims of a metric than its limit can exceed it:
            # number (a sort) just their claims; the others' claim_no stays empty (they pass)
            n_pid = int(pid.max()) + 1
            m_rows = m_out[rows]
            over = np.zeros(rows.size, dtype=bool)
            for code in np.unique(m_rows):
                mine = np.flatnonzero(m_rows == code)
                who = pid_out[rows[mine]]
                count = np.bincount(who, minlength=n_pid)
                over[mine] = count[who] > lim[rows[mine[0]]]
            rows = rows[over]
        if rows.size:
            dd = d_out[rows].astype("datetime64[D]").astype(np.int64)
            order = _claim_order(rows, dd, m_out[rows], pid_out[rows], len(mlist) + 1)
            srt = rows[order]
            grp = pid_out[srt] * (len(mlist) + 1) + m_out[srt]
            starts = np.r_[True, grp[1:] != grp[:-1]]
            pos = np.arange(srt.size)
            start_pos = np.maximum.accumulate(np.where(starts, pos, 0))
            claim_no[srt] = (pos - start_pos + 1).astype("float64")
    on_outcome["claim_no"] = claim_no
    on_outcome["claim_max"] = claim_max

    def series(values: Any, index: pd.Index) -> pd.Series:
        return values if isinstance(values, pd.Series) else pd.Series(values, index=index, copy=False)

    out = {k: series(v, idx) for k, v in cf.items()}
    out.update({k: series(v, e_idx) for k, v in on_enrolment.items()})
    out.update({k: series(v, o_idx) for k, v in on_outcome.items()})
    return out


def _claim_order(rows: np.ndarray, day: np.ndarray, metric: np.ndarray, pid: np.ndarray, n_metrics: int) -> np.ndarray:
    """The order of ``np.lexsort((rows, day, metric, pid))`` for increasing ``rows`` and
    non-negative ``metric`` and ``pid``: when it fits in 63 bits, one combined key of
    (participant, metric, day, place in ``rows``) is sorted (as values, several times
    faster than an arg-sort) and the place read back from its low bits."""
    if not rows.size:
        return np.zeros(0, dtype=np.int64)
    d0 = day - day.min()
    n_days, n_pid = int(d0.max()) + 1, int(pid.max()) + 1
    place_bits = int(rows.size - 1).bit_length()
    if (n_pid * n_metrics * n_days) << place_bits >= 1 << 63:
        return np.asarray(np.lexsort((rows, day, metric, pid)))
    key = (pid * n_metrics + metric) * n_days + d0
    key <<= place_bits
    key |= np.arange(rows.size, dtype=np.int64)
    key.sort()
    key &= (1 << place_bits) - 1
    return np.asarray(key)


def restated(
    current: pd.DataFrame, previous: pd.DataFrame
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows of ``current`` whose (participant, metric, date) was submitted before with
    another value.

    Both frames hold pseudonymised ``participant_id``, ``metric``, ``date`` and ``value``.
    Returns the positions in ``current``, the earlier values and the earlier ``row``
    numbers (or -1 when ``previous`` has no ``row`` column).
    """
    keys = ["participant_id", "metric", "date"]
    cur = current[keys + ["value"]].copy()
    cur["_pos"] = np.arange(len(cur))
    cur = cur[cur["metric"].ne(ENROLMENT).fillna(False) & cur[keys].notna().all(axis=1)]
    prev = previous[[k for k in keys + ["value", "row"] if k in previous.columns]].copy()
    if "row" not in prev:
        prev["row"] = -1
    prev = prev[prev["metric"].ne(ENROLMENT).fillna(False)]
    prev = prev.drop_duplicates(subset=keys, keep="first")
    prev["date"] = pd.to_datetime(prev["date"]).astype("datetime64[ns]")
    prev["participant_id"] = prev["participant_id"].astype("str")
    prev["metric"] = prev["metric"].astype("str")
    cur["date"] = cur["date"].astype("datetime64[ns]")
    m = cur.merge(prev.rename(columns={"value": "_prev", "row": "_prow"}), on=keys, how="inner")
    a = m["value"].to_numpy(dtype="float64")
    b = m["_prev"].to_numpy(dtype="float64")
    differs = ~((a == b) | (np.isnan(a) & np.isnan(b)))
    differs &= ~(np.isclose(a, b, rtol=0, atol=1e-9))
    m = m[differs]
    return (
        m["_pos"].to_numpy(dtype=np.int64),
        m["_prev"].to_numpy(dtype="float64"),
        m["_prow"].to_numpy(dtype=np.int64),
    )
