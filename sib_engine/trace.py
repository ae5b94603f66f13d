"""How a figure was computed: a small frozen tree (layer 2: pure computation).

Every amount of a determination carries a :class:`Trace`: what it is, its value, the
contract clause it rests on, and the figures it was computed from (metric value,
baseline, effect and interval, tier or price x units, caps, rounding, payer share).

A value an amendment changed cites the amendment too (:func:`cite`): the clause of the
term, ``as amended by`` the clause of the latest amendment in force that changed it, and
the amendment's effective date, e.g. ``Annex 2, row 4 as amended by Amendment 1, clause
4.2 (from 2017-01-01)``.  A value is changed by an amendment whose change (``set`` or
``remove``) names the value's path, a part of it, or an item holding it (a change of
``triggers.card.outcomes.job`` changes ``triggers.card.outcomes.job.price``).

>>> t = Trace("amount", "EUR 5,500.00", "Schedule 1", (Trace("units", 2), Trace("price", "EUR 2,750.00")))
>>> print(t.render())
amount: EUR 5,500.00  [Schedule 1]
  units: 2
  price: EUR 2,750.00
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Iterator

if TYPE_CHECKING:  # pragma: no cover - types only
    from sib_engine.contract import Amendment, Contract

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


# ------------------------------------------------------------------- amendments ---


def _related(changed: str, path: str) -> bool:
    return changed == path or path.startswith(changed + ".") or changed.startswith(path + ".")


def amendment_of(terms: "Contract", *paths: str) -> "Amendment | None":
    """The latest amendment applied to ``terms`` (a view from :meth:`Contract.at`) that
    changed a value at one of ``paths`` (dotted, items named by id, metric or party), or
    None when the value is as signed."""
    best: Amendment | None = None
    for a in terms.applied_amendments:  # applied in order of effective date, ties in file order
        for change in a.changes:
            changed = change.set if change.set is not None else change.remove
            if changed and any(_related(changed, p) for p in paths):
                if best is None or a.effective >= best.effective:
                    best = a
                break
    return best


def amended_by(terms: "Contract", *paths: str) -> str | None:
    """``as amended by <clause> (from <date>)`` for a value an amendment changed, else None."""
    a = amendment_of(terms, *paths)
    return None if a is None else f"as amended by {a.clause} (from {a.effective.isoformat()})"


def cite(terms: "Contract", clause: str | None, *paths: str) -> str | None:
    """``clause`` for a value at ``paths``, with the amendment that changed it if any."""
    by = amended_by(terms, *paths)
    if by is None:
        return clause
    return f"{clause} {by}" if clause else by


def cite_if_amended(terms: "Contract", clause: str | None, *paths: str) -> str | None:
    """As :func:`cite`, but None for a value as signed (for figures that cite nothing then)."""
    return cite(terms, clause, *paths) if amended_by(terms, *paths) else None
