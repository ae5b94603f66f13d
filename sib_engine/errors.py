"""Errors and located problems (layer 0: standard library only).

Every problem the engine reports about a user's input is a :class:`Problem`: a stable
``code``, the key ``path`` inside the document, a message saying what is wrong, a hint
saying how to fix it, and, once the loader has mapped it onto the source text, the file,
line and column.  All problems of one file are collected in one pass and raised together as
one :class:`ContractError`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Iterable

PathPart = str | int
KeyPath = tuple[PathPart, ...]


def format_path(path: KeyPath) -> str:
    """Render a key path the way a person reads it: ``triggers[0].outcomes[2].price``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else part
    return out or "(document)"


@dataclass(frozen=True)
class Problem:
    """One thing wrong with an input, located as precisely as we can."""

    code: str
    path: KeyPath
    message: str
    hint: str = ""
    file: str | None = None
    line: int | None = None
    column: int | None = None

    def located(self, file: str | None, line: int | None, column: int | None) -> "Problem":
        return replace(self, file=file, line=line, column=column)

    def format(self) -> str:
        """``file:line:col: key.path: message (hint: ...)``."""
        where = self.file or "<contract>"
        if self.line is not None:
            where += f":{self.line}"
            if self.column is not None:
                where += f":{self.column}"
        text = f"{where}: {format_path(self.path)}: {self.message}"
        if self.hint:
            text += f" (hint: {self.hint})"
        return text


class SibError(Exception):
    """Base class of every error the engine raises on purpose."""


class ContractError(SibError):
    """A contract file (or document) is not valid; carries every problem found."""

    def __init__(self, problems: Iterable[Problem]):
        self.problems: tuple[Problem, ...] = tuple(problems)
        super().__init__(self.__str__())

    def __str__(self) -> str:
        n = len(self.problems)
        head = f"{n} problem{'s' if n != 1 else ''} in contract"
        return head + ":\n" + "\n".join("  " + p.format() for p in self.problems)

    @property
    def codes(self) -> tuple[str, ...]:
        return tuple(p.code for p in self.problems)


class AmendmentError(SibError):
    """An amendment cannot be applied to the terms it amends."""

    def __init__(self, message: str, amendment_id: str | None = None, change_index: int | None = None):
        super().__init__(message)
        self.amendment_id = amendment_id
        self.change_index = change_index
