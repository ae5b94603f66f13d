"""Dates and measurement periods (layer 0: standard library only).

>>> add_months(date(2015, 1, 31), 1)
datetime.date(2015, 2, 28)
>>> [p.id for p in regular_periods(date(2015, 1, 1), 3, 3)]
['P1', 'P2', 'P3']
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import date, timedelta


def add_months(d: date, months: int) -> date:
    """The same day ``months`` later, clamped to the end of a shorter month."""
    y, m = divmod(d.month - 1 + months, 12)
    year, month = d.year + y, m + 1
    return date(year, month, min(d.day, calendar.monthrange(year, month)[1]))


@dataclass(frozen=True)
class Period:
    """A measurement period ``[start, end]``, both days included."""

    id: str
    index: int
    start: date
    end: date

    def contains(self, d: date) -> bool:
        return self.start <= d <= self.end


def regular_periods(start: date, months: int, count: int, prefix: str = "P") -> tuple[Period, ...]:
    """``count`` consecutive periods of ``months`` months each, from ``start``."""
    out = []
    for i in range(count):
        s = add_months(start, i * months)
        e = add_months(start, (i + 1) * months) - timedelta(days=1)
        out.append(Period(id=f"{prefix}{i + 1}", index=i, start=s, end=e))
    return tuple(out)
