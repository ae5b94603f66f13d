"""The JSON Schema of the contract format (layer 3: edges).

Editors and other tools can check a contract file against this schema as it is typed.  It
is generated from the pydantic models in :mod:`sib_engine.contract`, so it never drifts from
what the loader accepts; a copy is kept in the repository at
``sib_engine/schema/contract.schema.json`` (``make schema`` rewrites it, and a test fails
when it is stale).

The schema checks the *structure* (keys, types, ranges, kinds).  What it cannot express is
left to the loader: checks that compare one part of a contract with another (a trigger
names a metric that exists, shares add up to 1, ...), upper bounds of numbers written in
quotes, and duplicate keys.

>>> schema = contract_json_schema()
>>> schema["$schema"]
'https://json-schema.org/draft/2020-12/schema'
>>> schema["properties"]["format"]["const"]
'sib-contract/1'
"""

from __future__ import annotations

import json
from typing import Any

from sib_engine.contract import FORMAT_VERSION, SUPPORTED_FORMATS, Contract

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
SCHEMA_ID = "https://sib-engine.org/schema/sib-contract-1.json"
SCHEMA_TITLE = f"sib-engine contract ({FORMAT_VERSION})"

_DESCRIPTION = (
    "A social impact bond or other outcomes contract in the sib-engine contract format "
    f"'{FORMAT_VERSION}': who pays whom, for what, how much at most, and when. "
    "This schema checks the structure of a contract file; the sib-engine loader (`sib check`) "
    "also checks that its parts agree with each other (references, shares adding up to 1, "
    "dates in order) and reports every problem with its line."
)

# A number written in quotes (to keep its exact digits): what Python's Decimal accepts,
# without the infinities and NaN that the models refuse.
_DIGITS = r"(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9][0-9_]*)(?:[eE][+-]?[0-9]+)?"
_SIGNED = rf"^\s*[+-]?{_DIGITS}\s*$"
_NOT_NEGATIVE = rf"^\s*\+?{_DIGITS}\s*$"
_ZERO = r"\s*\+?(?:0[0_]*(?:\.[0_]*)?|\.[0_]+)(?:[eE][+-]?[0-9]+)?\s*$"
_POSITIVE = rf"^(?!{_ZERO}){_NOT_NEGATIVE[1:]}"

_NUMBER_AS_TEXT = "a number may be written in quotes to keep its exact digits"


def contract_json_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of the contract format, keys in sorted order.

    Numbers of money, rates and shares may be written plainly or in quotes; a quoted
    number must look like a number, and where the value may not be negative (prices,
    amounts, shares) the quoted form may not carry a minus sign.
    """
    schema = Contract.model_json_schema(mode="validation")
    _tighten_quoted_numbers(schema)
    fmt = schema["properties"]["format"]
    fmt.pop("type", None)
    if len(SUPPORTED_FORMATS) == 1:
        fmt["const"] = SUPPORTED_FORMATS[0]
    else:  # pragma: no cover - one format so far
        fmt["enum"] = list(SUPPORTED_FORMATS)
    schema.update(
        {
            "$schema": SCHEMA_DIALECT,
            "$id": SCHEMA_ID,
            "title": SCHEMA_TITLE,
            "description": _DESCRIPTION,
        }
    )
    result: dict[str, Any] = _sorted(schema)
    return result


def contract_json_schema_text() -> str:
    """The schema as the repository keeps it: 2-space indents, sorted keys, final newline."""
    return json.dumps(contract_json_schema(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def _tighten_quoted_numbers(node: Any) -> None:
    """Give the text branch of every ``number or text`` union a number pattern.

    pydantic describes a ``Decimal`` as ``anyOf: [{type: number, ...}, {type: string}]``;
    left bare, the text branch would accept ``"-5"`` for a price or ``"abc"`` for a rate.
    """
    if isinstance(node, dict):
        branches = node.get("anyOf")
        if isinstance(branches, list):
            numbers = [b for b in branches if isinstance(b, dict) and b.get("type") == "number"]
            texts = [b for b in branches if isinstance(b, dict) and b == {"type": "string"}]
            if numbers and texts:
                texts[0]["pattern"] = _quoted_pattern(numbers[0])
                texts[0]["description"] = _NUMBER_AS_TEXT
        for value in node.values():
            _tighten_quoted_numbers(value)
    elif isinstance(node, list):
        for value in node:
            _tighten_quoted_numbers(value)


def _quoted_pattern(number: dict[str, Any]) -> str:
    if "exclusiveMinimum" in number and number["exclusiveMinimum"] >= 0:
        return _POSITIVE
    if "minimum" in number and number["minimum"] >= 0:
        return _NOT_NEGATIVE
    return _SIGNED


def _sorted(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _sorted(node[k]) for k in sorted(node)}
    if isinstance(node, list):
        return [_sorted(v) for v in node]
    return node
