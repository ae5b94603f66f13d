"""Published output protection: small counts are suppressed (layer 0: standard library only).

Participant data are personal data.  A published count of fewer than ``min_cell``
participants (default 10) could point at a person, so reports and exports show it as
suppressed instead.  When counts are published with their total, suppressing one cell is
not enough (the total minus the others gives it back): :func:`suppress_counts` then also
suppresses the next smallest cell (secondary suppression).

>>> suppress(7)
>>> suppress(12)
12
>>> suppress_counts({"a": 3, "b": 40, "c": 55}, with_total=True)
{'a': None, 'b': None, 'c': 55}
>>> show_count(None)
'<10 (suppressed)'
"""

from __future__ import annotations

import os
from typing import Mapping, TypeVar

DEFAULT_MIN_CELL = 10
ENV_MIN_CELL = "SIB_MIN_CELL"
"""Environment variable overriding the default minimum cell size."""

K = TypeVar("K")


def min_cell_size(given: int | None = None, environ: Mapping[str, str] | None = None) -> int:
    """The minimum published count: ``given``, else ``$SIB_MIN_CELL``, else 10."""
    if given is None:
        env = os.environ if environ is None else environ
        raw = env.get(ENV_MIN_CELL)
        if raw is None or raw.strip() == "":
            return DEFAULT_MIN_CELL
        try:
            given = int(raw)
        except ValueError:
            raise ValueError(f"{ENV_MIN_CELL}={raw!r} is not a whole number") from None
    if given < 1:
        raise ValueError(f"the minimum cell size must be at least 1, not {given}")
    return given


def suppress(count: int, min_cell: int = DEFAULT_MIN_CELL) -> int | None:
    """``count`` if it may be published (at least ``min_cell``), else ``None``."""
    if count < 0:
        raise ValueError(f"a count cannot be negative: {count}")
    return count if count >= min_cell else None


def suppress_counts(counts: Mapping[K, int], min_cell: int = DEFAULT_MIN_CELL, *,
                    with_total: bool = False) -> dict[K, int | None]:
    """Suppress every count below ``min_cell``; with ``with_total`` (the total of the cells is
    published too), also the smallest remaining cell when exactly one cell was suppressed,
    so that no suppressed cell can be recovered by subtraction."""
    out: dict[K, int | None] = {k: suppress(v, min_cell) for k, v in counts.items()}
    hidden = [k for k, v in out.items() if v is None]
    if with_total and len(hidden) == 1:
        shown = sorted((v, i) for i, (k, v) in enumerate(out.items()) if v is not None)
        if shown:
            keys = list(out)
            out[keys[shown[0][1]]] = None
    return out


def show_count(count: int | None, min_cell: int = DEFAULT_MIN_CELL) -> str:
    """Text for a possibly suppressed count."""
    return f"<{min_cell} (suppressed)" if count is None else f"{count:,}"
