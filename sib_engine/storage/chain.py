"""The hash chain of the ledger: canonical serialisation and SHA-256 (standard library only).

Every ledger entry (a determination run, a determination, a payment line, a simulation run)
is serialised canonically, **including the hash of the entry before it**, and hashed:

    entry_hash = SHA-256( canonical_json({"entry": <kind>, "seq": n, "prev": <hash of n-1>, ...}) )

Canonical JSON: keys sorted, no whitespace (``","`` and ``":"``), UTF-8, no ASCII escaping;
dates as ``YYYY-MM-DD``, instants as ISO 8601, ``Decimal`` as its exact text, money as integer
minor units.  The first entry's ``prev`` is :data:`GENESIS` (64 zeros).  Changing any field of
any entry, removing an entry or reordering entries changes a hash that a later entry (or the
ledger head) records, so :func:`verify_chain` finds it.

>>> h1 = entry_hash("payment_line", 1, GENESIS, {"amount_minor": 550000, "payer": "city"})
>>> h2 = entry_hash("payment_line", 2, h1, {"amount_minor": -1000, "payer": "city"})
>>> verify_chain([("payment_lines", 1, GENESIS, h1, {"amount_minor": 550000, "payer": "city"}, "payment_line"),
...               ("payment_lines", 2, h1, h2, {"amount_minor": -1000, "payer": "city"}, "payment_line")],
...              head=(2, h2))
[]
"""

from __future__ import annotations

import hashlib
import json
import math
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Iterable, Mapping

GENESIS = "0" * 64


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{value} cannot be stored in a ledger entry; use json_safe() first")
    return value


def json_safe(value: Any) -> Any:
    """``value`` as plain JSON data: numpy scalars and arrays to Python, ``Decimal`` to its
    text, dates to ISO text, non-finite floats to ``"nan"``/``"inf"``/``"-inf"``."""
    if value is None or isinstance(value, (bool, str, int)):
        return value
    if isinstance(value, float):
        if math.isfinite(value):
            return value
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [json_safe(v) for v in value]
    tolist = getattr(value, "tolist", None)  # numpy scalars and arrays
    if callable(tolist):
        return json_safe(tolist())
    item = getattr(value, "item", None)
    if callable(item):
        return json_safe(item())
    return str(value)


def canonical(payload: Mapping[str, Any]) -> bytes:
    """The canonical serialisation of an entry (see the module's docstring)."""
    return json.dumps(_plain(payload), sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode("utf-8")


def entry_hash(kind: str, seq: int, prev: str, fields: Mapping[str, Any]) -> str:
    """SHA-256 (hex) of the canonical serialisation of an entry of ``kind`` at ``seq``."""
    payload = dict(fields)
    payload.update({"entry": kind, "seq": seq, "prev": prev})
    return hashlib.sha256(canonical(payload)).hexdigest()


Entry = tuple[str, int, str, str, Mapping[str, Any], str]
"""(table, seq, prev_hash, entry_hash, fields, kind) of one stored entry."""


def verify_chain(entries: Iterable[Entry], head: tuple[int, str] | None) -> list[str]:
    """Problems found in the chain (empty if it is intact).

    ``entries`` are every stored entry of every ledger table (any order); ``head`` is the
    stored ledger head (last ``seq`` and hash).  Checks: sequence numbers run 1, 2, 3, ...
    without gap or repeat; each entry's hash matches its content; each entry records the
    hash of the one before it; the head names the last entry.
    """
    problems: list[str] = []
    ordered = sorted(entries, key=lambda e: e[1])
    expected_prev = GENESIS
    expected_seq = 1
    for table, seq, prev, stored, fields, kind in ordered:
        where = f"{table} entry seq {seq}"
        if seq != expected_seq:
            if seq < expected_seq:
                problems.append(f"{where}: sequence number {seq} appears more than once")
            else:
                problems.append(
                    f"{where}: entries {expected_seq}..{seq - 1} are missing (deleted?)"
                    if seq - 1 > expected_seq else f"{where}: entry {expected_seq} is missing (deleted?)")
            expected_seq = seq
        if prev != expected_prev:
            problems.append(f"{where}: records previous hash {prev[:16]}..., but the entry before it hashes to "
                            f"{expected_prev[:16]}... (an entry was changed, removed or inserted)")
        actual = entry_hash(kind, seq, prev, fields)
        if actual != stored:
            problems.append(f"{where}: its content does not match its hash (stored {stored[:16]}..., "
                            f"content hashes to {actual[:16]}...): the entry was changed after it was recorded")
        expected_prev = stored
        expected_seq = seq + 1
    last = (expected_seq - 1, expected_prev)
    if head is None:
        if ordered:
            problems.append("ledger head: missing")
    elif (head[0], head[1]) != last:
        problems.append(f"ledger head: names entry {head[0]} ({head[1][:16]}...), but the last entry is "
                        f"{last[0]} ({last[1][:16]}...): entries were removed or added around the chain")
    return problems
