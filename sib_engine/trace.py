"""How a figure was computed: a small frozen tree (layer 2: pure computation).

Every amount of a determination carries a :class:`Trace`: what it is, its value, the
contract clause it rests on, and the figures it was computed from (metric value,
baseline, effect and interval, tier or price x units, caps, rounding, payer share).

>>> t = Trace("amount", "EUR 5,500.00", "Schedule 1", (Trace("units", 2), Trace("price", "EUR 2,750.00")))
>>> print(t.render())
amount: EUR 5,500.00  [Schedule 1]
  units: 2
  price: EUR 2,750.00
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Iterator

TraceValue = Decimal | int | float | str | None


@dataclass(frozen=True)
class Trace:
    label: str
    value: TraceValue = None
    clause: str | None = None
    children: tuple["Trace", ...] = ()

    def lines(self, depth: int = 0) -> Iterator[str]:
        text = "  " * depth + self.label
        if self.value is not None and self.value != "":
            text += f": {self.value}"
        if self.clause:
            text += f"  [{self.clause}]"
        yield text
        for c in self.children:
            yield from c.lines(depth + 1)

    def render(self, depth: int = 0) -> str:
        return "\n".join(self.lines(depth))

    def walk(self) -> Iterator["Trace"]:
        yield self
        for c in self.children:
            yield from c.walk()

    def find(self, label: str) -> "Trace | None":
        """The first node (depth first) whose label starts with ``label``."""
        return next((t for t in self.walk() if t.label.startswith(label)), None)

    def clauses(self) -> tuple[str, ...]:
        seen: dict[str, None] = {}
        for t in self.walk():
            if t.clause:
                seen.setdefault(t.clause)
        return tuple(seen)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"label": self.label}
        if self.value is not None:
            out["value"] = str(self.value)
        if self.clause:
            out["clause"] = self.clause
        if self.children:
            out["children"] = [c.to_dict() for c in self.children]
        return out
