"""The contract loader: the only module that reads YAML (layer 3: edges).

It reads safely (no tags beyond plain YAML, no anchors or aliases, no duplicate keys),
keeps the line and column of every key and value, dispatches on the ``format`` header,
validates the structure with the pydantic models, runs the consistency checks and tries
every amendment, and reports every problem of the file at once as one
:class:`~sib_engine.errors.ContractError` whose lines read
``path:line:col: key.path: message (hint: ...)``.

>>> c = parse_contract(EXAMPLE)
>>> c.id, c.currency
('demo', 'EUR')
"""

from __future__ import annotations

import difflib
import types
import typing
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Union

import yaml
from pydantic import BaseModel, ValidationError

from sib_engine import consistency
from sib_engine.contract import SUPPORTED_FORMATS, Contract
from sib_engine.scenario import SCENARIO_FORMAT, Scenario
from sib_engine.errors import AmendmentError, ContractError, KeyPath, Problem

MAX_BYTES = 5_000_000
MAX_DEPTH = 64
"""Lists and mappings nest at most this deep (a contract needs about ten levels); deeper
nesting is refused before it reaches any recursive code."""

EXAMPLE = """\
format: sib-contract/1
id: demo
title: Demo rate card
currency: EUR
term: {start: 2024-01-01, end: 2026-12-31}
parties:
  - {id: city, name: City of Example, role: payer}
  - {id: fund, name: Example Fund, role: investor}
  - {id: club, name: Example Club, role: provider}
payers:
  - {party: city, share: 1}
metrics:
  - {id: job, name: Job held six months, type: event}
triggers:
  - id: card
    kind: rate_card
    clause: Schedule 1
    outcomes:
      - {metric: job, price: "2750.00"}
timeline:
  periods: {start: 2024-01-01, months: 3, count: 12}
  cohorts:
    - {id: c1, enrolment_start: 2024-01-01, enrolment_end: 2024-12-31}
"""


@dataclass
class _Positions:
    """Line/column (1-based) of every value and key, by key path."""

    values: dict[KeyPath, tuple[int, int]] = field(default_factory=dict)
    keys: dict[KeyPath, tuple[int, int]] = field(default_factory=dict)

    def locate(self, path: KeyPath, *, key: bool = False) -> tuple[int, int] | None:
        if key and path in self.keys:
            return self.keys[path]
        p = path
        while True:
            if p in self.values:
                if p in self.keys and self.keys[p][0] < self.values[p][0]:
                    return self.keys[p]  # a block list or mapping: point at its key's line
                return self.values[p]
            if not p:
                return None
            p = p[:-1]


_PLAIN_TAGS = {
    "tag:yaml.org,2002:str",
    "tag:yaml.org,2002:int",
    "tag:yaml.org,2002:float",
    "tag:yaml.org,2002:bool",
    "tag:yaml.org,2002:null",
    "tag:yaml.org,2002:timestamp",
    "tag:yaml.org,2002:map",
    "tag:yaml.org,2002:seq",
}


class _Converter:
    """Turns a composed YAML node tree into plain Python values, recording positions."""

    def __init__(self) -> None:
        self.positions = _Positions()
        self.problems: list[Problem] = []
        self._ctor = yaml.constructor.SafeConstructor()

    def _problem(self, code: str, path: KeyPath, mark: Any, message: str, hint: str) -> None:
        self.problems.append(
            Problem(code, path, message, hint, line=mark.line + 1, column=mark.column + 1)
        )

    def convert(self, node: yaml.Node, path: KeyPath) -> Any:
        mark = node.start_mark
        self.positions.values[path] = (mark.line + 1, mark.column + 1)
        if node.tag not in _PLAIN_TAGS:
            written = node.tag.replace("tag:yaml.org,2002:", "!!", 1)
            self._problem(
                "yaml_tag",
                path,
                mark,
                f"the tag '{written}' is not allowed",
                "contract files are plain data: remove the '!' tag",
            )
            return None
        if isinstance(node, yaml.MappingNode):
            out: dict[str, Any] = {}
            for knode, vnode in node.value:
                if knode.tag == "tag:yaml.org,2002:merge":
                    self._problem("yaml_merge", path, knode.start_mark,
                                  "merge keys ('<<') are not allowed", "write the keys out in full")
                    continue
                if not isinstance(knode, yaml.ScalarNode):
                    self._problem("wrong_type", path, knode.start_mark, "a key must be plain text",
                                  "use a simple word as key")
                    continue
                key = str(knode.value)
                kpath = path + (key,)
                if key in out:
                    first = self.positions.keys[kpath]
                    self._problem(
                        "duplicate_key",
                        kpath,
                        knode.start_mark,
                        f"key '{key}' appears twice (first on line {first[0]})",
                        "keep one of them; a later value would silently replace the earlier",
                    )
                    continue
                self.positions.keys[kpath] = (knode.start_mark.line + 1, knode.start_mark.column + 1)
                out[key] = self.convert(vnode, kpath)
            return out
        if isinstance(node, yaml.SequenceNode):
            return [self.convert(item, path + (i,)) for i, item in enumerate(node.value)]
        assert isinstance(node, yaml.ScalarNode)
        return self._scalar(node)

    def _scalar(self, node: yaml.ScalarNode) -> Any:
        tag, text = node.tag, node.value
        if tag == "tag:yaml.org,2002:null":
            return None
        if tag == "tag:yaml.org,2002:bool":
            # YAML 1.1 reads yes/no/on/off as booleans (the "Norway problem"); only
            # true/false are booleans here, anything else stays text.
            low = text.lower()
            return True if low == "true" else False if low == "false" else text
        if tag == "tag:yaml.org,2002:int":
            try:
                return self._ctor.construct_yaml_int(node)
            except ValueError:
                return text  # more digits than Python converts: the models refuse it
        if tag == "tag:yaml.org,2002:float":
            # Exact: the number's own digits, never a binary float.
            try:
                return Decimal(text.replace("_", ""))
            except InvalidOperation:
                return text  # .inf / .nan: the models refuse them with a clear message
        return text  # str and timestamp: pydantic parses dates from ISO text


def _yaml_problem(exc: yaml.YAMLError, text: str) -> Problem:
    if isinstance(exc, yaml.reader.ReaderError):
        # A character YAML refuses anywhere (NUL, a control character): no mark, but the
        # position in the text.
        pos = exc.position
        line_start = text.rfind("\n", 0, pos) + 1
        return Problem(
            "yaml_syntax",
            (),
            f"YAML syntax error: the character U+{exc.character:04X} is not allowed in a YAML file",
            "remove it; contract files are plain text without control characters",
            line=text.count("\n", 0, pos) + 1,
            column=pos - line_start + 1,
        )
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    what = getattr(exc, "problem", None) or str(exc)
    context = getattr(exc, "context", None)
    message = f"YAML syntax error: {what}" + (f" ({context})" if context else "")
    hint = "check the indentation and quoting near this line; quote values containing ': ' or '#'"
    if "\t" in what or "'\\t'" in what:
        hint = "YAML does not allow tabs for indentation; indent with spaces"
    return Problem(
        "yaml_syntax",
        (),
        message,
        hint,
        line=(mark.line + 1) if mark else None,
        column=(mark.column + 1) if mark else None,
    )


def _read_yaml(text: str) -> tuple[Any, _Positions, list[Problem]]:
    conv = _Converter()
    depth = 0
    try:
        # The event stream is read without recursion; composing the tree recurses, so
        # anchors and over-deep nesting are refused first.
        for event in yaml.parse(text, Loader=yaml.SafeLoader):
            if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
                m = event.start_mark
                return None, conv.positions, [
                    Problem("yaml_alias", (), "anchors and aliases ('&', '*') are not allowed",
                            "write each value out in full, so that every term can be read where it stands",
                            line=m.line + 1 if m else None, column=m.column + 1 if m else None)
                ]
            if isinstance(event, yaml.CollectionStartEvent):
                depth += 1
                if depth > MAX_DEPTH:
                    m = event.start_mark
                    return None, conv.positions, [
                        Problem("too_deep", (), f"lists and mappings are nested more than {MAX_DEPTH} levels deep",
                                "a contract never nests this deep: check for unclosed brackets",
                                line=m.line + 1 if m else None, column=m.column + 1 if m else None)
                    ]
            elif isinstance(event, yaml.CollectionEndEvent):
                depth -= 1
        nodes = list(yaml.compose_all(text, Loader=yaml.SafeLoader))
    except yaml.YAMLError as exc:
        return None, conv.positions, [_yaml_problem(exc, text)]
    if len(nodes) != 1 or nodes[0] is None:
        empty = not nodes or nodes[0] is None
        msg = "the file is empty" if empty else "the file holds more than one YAML document; the second starts here"
        m = None if empty else nodes[1].start_mark
        return None, conv.positions, [
            Problem("not_a_contract", (), msg, "a contract file is one YAML mapping starting with 'format: sib-contract/1'",
                    line=m.line + 1 if m else 1, column=m.column + 1 if m else 1)
        ]
    data = conv.convert(nodes[0], ())
    if not isinstance(data, dict):
        m = nodes[0].start_mark
        conv.problems.append(
            Problem("not_a_contract", (), "the file is not a mapping of keys to values",
                    "a contract file starts with 'format: sib-contract/1' and then keys such as id, title, parties",
                    line=m.line + 1, column=m.column + 1)
        )
    return data, conv.positions, conv.problems


# ------------------------------------------------------------- pydantic error mapping ---


def _clean_loc(data: Any, loc: tuple[Any, ...]) -> tuple[KeyPath, bool]:
    """Map a pydantic error location onto the document's key path.

    Drops the tags pydantic adds for tagged unions and validators. Returns the path and
    whether it was fully found in the data (False for a missing or unknown key's last part).
    """
    path: list[str | int] = []
    node = data
    for part in loc:
        if part == "[key]":
            continue
        if isinstance(node, dict) and part in node:
            path.append(part)
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and part < len(node):
            path.append(part)
            node = node[part]
        elif isinstance(node, dict) and isinstance(part, str) and (
            node.get("kind") == part or part.startswith("function-") or "[" in part
        ):
            continue  # a union tag or a validator's name, not a key of the document
        else:
            path.append(part)
            return tuple(path), False
    return tuple(path), True


def _unwrap(tp: Any, data: Any) -> type[BaseModel] | None:
    """The pydantic model a type annotation stands for at a given piece of data."""
    origin = typing.get_origin(tp)
    if origin is typing.Annotated:
        return _unwrap(typing.get_args(tp)[0], data)
    if origin in (Union, types.UnionType):
        members = [a for a in typing.get_args(tp) if a is not type(None)]
        for m in members:
            model = _unwrap(m, data)
            if model is None:
                continue
            kind_field = model.model_fields.get("kind")
            if kind_field is None or (isinstance(data, dict) and data.get("kind") in typing.get_args(kind_field.annotation)):
                return model
        return None
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return tp
    return None


def _fields_at(data: Any, path: KeyPath, root: type[BaseModel] = Contract) -> list[str]:
    """The keys allowed in the mapping at ``path``, for "did you mean" hints."""
    model: type[BaseModel] | None = root
    node = data
    for i, part in enumerate(path):
        if model is None:
            return []
        if isinstance(part, int):
            continue
        f = model.model_fields.get(part)
        if f is None:
            return []
        node = node.get(part) if isinstance(node, dict) else None
        tp = f.annotation
        if typing.get_origin(tp) is tuple or typing.get_origin(tp) is list:
            tp = typing.get_args(tp)[0]
            # The item the path goes on into: its 'kind' says which model it is.
            index = path[i + 1] if i + 1 < len(path) else None
            if isinstance(node, list) and isinstance(index, int) and index < len(node):
                node = node[index]
            else:
                node = None
        model = _unwrap(tp, node)
    return list(model.model_fields) if model is not None else []


_TYPE_WORDS = {
    "decimal": "a number (e.g. 4730 or \"4730.00\")",
    "int": "a whole number",
    "date": "a date written YYYY-MM-DD",
    "string": "text",
    "bool": "true or false",
    "dict": "a mapping of keys to values",
    "model": "a mapping of keys to values",
    "tuple": "a list",
    "list": "a list",
}


def _describe(value: Any) -> str:
    if isinstance(value, Decimal):
        text = str(value)
    elif isinstance(value, (dict, list)):
        text = "a mapping" if isinstance(value, dict) else "a list"
    else:
        text = repr(value)
    return text if len(text) < 60 else text[:57] + "..."


def _as_number(value: Any) -> Decimal | None:
    """The value as an exact number, also when written as quoted text; None if it is not one."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, Decimal)):
        return Decimal(value)
    if isinstance(value, str):
        try:
            number = Decimal(value.strip())
        except InvalidOperation:
            return None
        return number if number.is_finite() else None
    return None


def _problem_from_error(err: Any, data: Any, root: type[BaseModel] = Contract) -> tuple[Problem, bool]:
    etype: str = err["type"]
    path, found = _clean_loc(data, tuple(err["loc"]))
    ctx = err.get("ctx") or {}
    value = err.get("input")
    is_key = False
    if etype == "extra_forbidden":
        is_key = True
        key = path[-1] if path else "?"
        allowed = _fields_at(data, path[:-1], root)
        close = difflib.get_close_matches(str(key), allowed, n=1)
        hint = f"did you mean '{close[0]}'?" if close else (
            f"allowed keys here: {', '.join(allowed)}" if allowed else "remove it"
        )
        return Problem("unknown_key", path, f"unknown key '{key}'", hint), is_key
    if etype == "missing":
        key = path[-1] if path else "?"
        return Problem("missing_key", path, f"required key '{key}' is missing", f"add '{key}: ...' here"), True
    if etype in ("union_tag_invalid", "union_tag_not_found"):
        tags = ctx.get("expected_tags", "")
        return Problem("unknown_kind", path + (("kind",) if etype == "union_tag_invalid" else ()),
                       f"kind {_describe(ctx.get('tag', value))} is not known" if etype == "union_tag_invalid" else "the entry has no 'kind'",
                       f"use one of: {tags}"), False
    if etype.startswith("date") or etype.startswith("datetime"):
        return Problem("bad_date", path, f"{_describe(value)} is not a valid date",
                       "write dates as YYYY-MM-DD, e.g. 2015-04-01"), False
    if etype in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        bound = ctx.get("gt", ctx.get("ge", ctx.get("lt", ctx.get("le"))))
        number = _as_number(value)
        shown = str(number) if number is not None else _describe(value)
        if etype.startswith("greater") and str(bound) == "0" and number is not None and number < 0:
            return Problem("negative_value", path, f"{shown} is negative",
                           "amounts, prices and counts are written as positive numbers"), False
        words = {"greater_than": "more than", "greater_than_equal": "at least",
                 "less_than": "less than", "less_than_equal": "at most"}[etype]
        # Shares and fractions are at most 1, annual rates at most 10 (1000%): a value above
        # is almost always a percentage written as a number.
        if etype.startswith("less") and str(bound) in ("1", "10"):
            hint = "write shares and rates as fractions: 20% is 0.2"
        else:
            hint = f"use a value {words} {bound}"
        return Problem("out_of_range", path, f"{shown} must be {words} {bound}", hint), False
    if etype == "finite_number":
        return Problem("out_of_range", path, "the value must be a finite number", "write a number such as 0.05"), False
    if etype == "literal_error":
        return Problem("invalid_choice", path, f"{_describe(value)} is not allowed here",
                       f"use one of: {ctx.get('expected', '')}"), False
    if etype == "string_pattern_mismatch":
        return Problem("bad_identifier", path, f"{_describe(value)} is not a valid identifier",
                       "ids are lower case: a letter, then letters, digits, '_' or '-'"), False
    if etype in ("too_short", "too_long"):
        return Problem("wrong_length", path, err["msg"].replace("Tuple", "the list").replace("List", "the list"),
                       "add the missing entries" if etype == "too_short" else "remove entries"), False
    if etype == "value_error":
        msg = str(ctx.get("error", err["msg"]))
        code = "bad_currency" if "ISO 4217" in msg else "invalid_value"
        hint = "e.g. EUR, GBP, USD, AUD" if code == "bad_currency" else ""
        return Problem(code, path, msg, hint), False
    expected = next((w for k, w in _TYPE_WORDS.items() if etype.startswith(k)), None)
    hint = ""
    if isinstance(value, str) and "," in value and expected and "number" in expected:
        hint = "use a point as the decimal separator and no thousands separators: 4730.50"
    elif expected:
        hint = f"write {expected}"
    return Problem("wrong_type", path, f"{_describe(value)} is not {expected or 'valid here'}: {err['msg']}", hint), False


def _is_echo(err: Any, data: Any) -> bool:
    """A "too short after validation" error caused only by an invalid item of the list."""
    if err["type"] != "too_short":
        return False
    path, found = _clean_loc(data, tuple(err["loc"]))
    node = data
    for part in path:
        node = node[part]
    min_len = (err.get("ctx") or {}).get("min_length", 0)
    return found and isinstance(node, list) and len(node) >= min_len


def _locate(problems: list[Problem], positions: _Positions, source: str, key_codes: set[int]) -> list[Problem]:
    out = []
    for i, p in enumerate(problems):
        if p.line is not None:
            out.append(p.located(source, p.line, p.column))
            continue
        pos = positions.locate(p.path, key=i in key_codes)
        out.append(p.located(source, pos[0] if pos else None, pos[1] if pos else None))
    return out


# ----------------------------------------------------------------------- public API ---


def parse_contract(text: str, source: str = "<contract>") -> Contract:
    """Validate contract text and return the :class:`Contract`; raise
    :class:`ContractError` listing every problem, located, otherwise."""
    data, positions, yaml_problems = _read_yaml(text)
    if not isinstance(data, dict):
        raise ContractError(_locate(yaml_problems, positions, source, set()))
    # Problems of the YAML itself (a duplicate key, a tag) do not stop the reading: the rest
    # of the file is still checked, so that every problem is reported in one pass.
    fmt = data.get("format")
    if fmt not in SUPPORTED_FORMATS:
        hint = f"start the file with 'format: {SUPPORTED_FORMATS[-1]}'"
        msg = "the format header is missing" if fmt is None else f"format {_describe(fmt)} is not supported"
        p = Problem("unsupported_format", ("format",), msg, hint)
        raise ContractError(_locate(yaml_problems + [p], positions, source, set()))
    try:
        contract = Contract.model_validate(data)
    except ValidationError as exc:
        found: list[Problem] = list(yaml_problems)
        key_idx: set[int] = set()
        seen_paths = {p.path for p in yaml_problems}
        for err in exc.errors(include_url=False):
            if _is_echo(err, data):
                continue
            p, is_key = _problem_from_error(err, data)
            if p.path in seen_paths:
                continue
            if is_key:
                key_idx.add(len(found))
            found.append(p)
        raise ContractError(_locate(found, positions, source, key_idx)) from None
    problems = yaml_problems + consistency.check(contract)
    if not yaml_problems:
        problems += _check_amendments_apply(contract, problems)
    if problems:
        raise ContractError(_locate(problems, positions, source, set()))
    return contract


def _check_amendments_apply(contract: Contract, signed: list[Problem]) -> list[Problem]:
    """Apply each amendment in turn and check the terms it leaves are still consistent.

    A problem the contract as signed already has (``signed``) is not reported again
    against each amendment.
    """
    already = {(p.code, p.path) for p in signed}
    out: list[Problem] = []
    for i, a in enumerate(contract.amendments):
        path: KeyPath = ("amendments", i, "changes")
        try:
            terms = contract.at(a.effective)
        except AmendmentError as exc:
            ids = [x.id for x in contract.amendments]
            if exc.amendment_id in ids and exc.change_index is not None:
                path = ("amendments", ids.index(exc.amendment_id), "changes", exc.change_index)
            out.append(Problem("bad_amendment", path, str(exc),
                               "paths are dotted keys; name list items by id, e.g. triggers.card.outcomes.job.price"))
            break
        except ValidationError as exc:
            err = exc.errors(include_url=False)[0]
            where = ".".join(str(x) for x in err["loc"])
            out.append(Problem("bad_amendment", path,
                               f"amendment '{a.id}' leaves invalid terms: {where}: {err['msg']}",
                               "check the value given in 'to'"))
            break
        for p in consistency.check(terms):
            if (p.code, p.path) in already:
                continue
            out.append(Problem("bad_amendment", path,
                               f"amendment '{a.id}' leaves inconsistent terms: {p.message}", p.hint))
        if out:
            break
    return out


def load_contract(path: str | Path) -> Contract:
    """Read and validate a contract file.

    Raises :class:`ContractError` (never a traceback from the parser) when the file cannot be
    read or is not a valid contract.
    """
    return parse_contract(_read_text(path), source=str(path))


def parse_scenario(text: str, source: str = "<scenario>", contract: Contract | None = None) -> Scenario:
    """Validate scenario text (``format: sib-scenario/1``: a name, optionally the id of
    its contract, and a ``simulation`` section with the model of
    :class:`~sib_engine.contract.Simulation`); with ``contract``, also check the
    assumptions against it.  Raises :class:`ContractError` listing every problem, located.
    """
    data, positions, yaml_problems = _read_yaml(text)
    if not isinstance(data, dict):
        raise ContractError(_locate(yaml_problems, positions, source, set()))
    fmt = data.get("format")
    if fmt != SCENARIO_FORMAT:
        msg = "the format header is missing" if fmt is None else f"format {_describe(fmt)} is not supported"
        p = Problem("unsupported_format", ("format",), msg, f"start the file with 'format: {SCENARIO_FORMAT}'")
        raise ContractError(_locate(yaml_problems + [p], positions, source, set()))
    try:
        scenario = Scenario.model_validate(data)
    except ValidationError as exc:
        found: list[Problem] = list(yaml_problems)
        key_idx: set[int] = set()
        for err in exc.errors(include_url=False):
            if _is_echo(err, data):
                continue
            p, is_key = _problem_from_error(err, data, Scenario)
            if is_key:
                key_idx.add(len(found))
            found.append(p)
        raise ContractError(_locate(found, positions, source, key_idx)) from None
    problems = list(yaml_problems)
    if contract is not None:
        if scenario.contract is not None and scenario.contract != contract.id:
            problems.append(Problem("wrong_contract", ("contract",),
                                    f"the scenario is for contract '{scenario.contract}', not '{contract.id}'",
                                    "use the scenario with its own contract, or correct 'contract:'"))
        problems += consistency.check_simulation(contract, scenario.simulation)
    if problems:
        raise ContractError(_locate(problems, positions, source, set()))
    return scenario


def load_scenario(path: str | Path, contract: Contract | None = None) -> Scenario:
    """Read and validate a scenario file (see :func:`parse_scenario`)."""
    return parse_scenario(_read_text(path), source=str(path), contract=contract)


def _read_text(path: str | Path) -> str:
    p = Path(path)
    source = str(path)
    try:
        raw = p.read_bytes()
    except FileNotFoundError:
        raise ContractError([Problem("file_not_found", (), "no such file", "check the path", file=source)]) from None
    except OSError as exc:
        raise ContractError([Problem("file_unreadable", (), f"cannot read the file: {exc.strerror}",
                                     "check the path and permissions", file=source)]) from None
    if len(raw) > MAX_BYTES:
        raise ContractError([Problem("file_too_large", (), f"the file is {len(raw)} bytes",
                                     f"a contract file is at most {MAX_BYTES} bytes", file=source)])
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        line_start = raw.rfind(b"\n", 0, exc.start) + 1
        column = len(raw[line_start: exc.start].decode("utf-8-sig", "replace")) + 1
        raise ContractError([Problem("bad_encoding", (), f"the file is not UTF-8 text (byte 0x{raw[exc.start]:02x})",
                                     "save the file as UTF-8", file=source, line=line, column=column)]) from None
    return text


def read_contract_data(text: str) -> Any:
    """The plain data of a YAML contract text (no validation), for tools and tests."""
    data, _, problems = _read_yaml(text)
    if problems:
        raise ContractError(problems)
    return data
