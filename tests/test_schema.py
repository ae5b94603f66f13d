"""The contract JSON Schema: kept in the repository, current, and agreeing with the loader."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

import sib_engine
from sib_engine.loader import EXAMPLE, parse_contract, read_contract_data
from sib_engine.schema_export import SCHEMA_ID, contract_json_schema, contract_json_schema_text

SCHEMA_FILE = Path(sib_engine.__file__).parent / "schema" / "contract.schema.json"
HERE = Path(__file__).parent
EVERY_KIND = HERE / "data" / "every_kind.yaml"
EXAMPLES = sorted((HERE.parent / "contracts").glob("*.yaml"))


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(contract_json_schema())


def _errors(validator: jsonschema.Draft202012Validator, data: Any) -> list[str]:
    return [f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(data)]


def _example() -> dict[str, Any]:
    data = read_contract_data(EXAMPLE)
    assert isinstance(data, dict)
    return data


# ------------------------------------------------------------------ the kept copy ---


def test_committed_schema_is_current() -> None:
    assert SCHEMA_FILE.exists(), "the schema file is missing: run `make schema`"
    committed = SCHEMA_FILE.read_text(encoding="utf-8")
    assert committed == contract_json_schema_text(), (
        "sib_engine/schema/contract.schema.json is stale: run `make schema`"
    )


def test_schema_file_is_pretty_sorted_and_ends_with_a_newline() -> None:
    text = SCHEMA_FILE.read_text(encoding="utf-8")
    assert text.endswith("}\n") and not text.endswith("\n\n")
    assert text == json.dumps(json.loads(text), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


# ------------------------------------------------------------------- the schema ---


def test_schema_is_valid_draft_2020_12() -> None:
    schema = contract_json_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"] == SCHEMA_ID
    assert schema["title"] and schema["description"]
    assert schema["additionalProperties"] is False


def test_schema_is_deterministic_with_sorted_keys() -> None:
    first, second = contract_json_schema(), contract_json_schema()
    assert first == second
    assert json.dumps(first) == json.dumps(second)

    def check(node: Any) -> None:
        if isinstance(node, dict):
            assert list(node) == sorted(node)
            for v in node.values():
                check(v)
        elif isinstance(node, list):
            for v in node:
                check(v)

    check(first)


def test_schema_pins_the_format_header() -> None:
    assert contract_json_schema()["properties"]["format"]["const"] == "sib-contract/1"


def test_returned_schema_is_a_fresh_copy() -> None:
    schema = contract_json_schema()
    schema["title"] = "changed"
    assert contract_json_schema()["title"] != "changed"


# ------------------------------------------------------------ valid contracts pass ---


def test_example_contract_validates(validator: jsonschema.Draft202012Validator) -> None:
    assert _errors(validator, _example()) == []


def test_every_kind_contract_validates(validator: jsonschema.Draft202012Validator) -> None:
    data = read_contract_data(EVERY_KIND.read_text(encoding="utf-8"))
    assert _errors(validator, data) == []


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_files_validate(validator: jsonschema.Draft202012Validator, path: Path) -> None:
    assert _errors(validator, read_contract_data(path.read_text(encoding="utf-8"))) == []


# --------------------------------------------------------- invalid contracts fail ---


def _mutated(change: Any) -> dict[str, Any]:
    data = copy.deepcopy(_example())
    change(data)
    return data


def _outcome(data: dict[str, Any]) -> dict[str, Any]:
    outcome: dict[str, Any] = data["triggers"][0]["outcomes"][0]
    return outcome


BAD: dict[str, Any] = {
    "unknown top-level key": lambda d: d.update(sumary="typo"),
    "unknown nested key": lambda d: _outcome(d).update(prise="1"),
    "negative price": lambda d: _outcome(d).update(price=-5),
    "negative quoted price": lambda d: _outcome(d).update(price="-5.00"),
    "zero price": lambda d: _outcome(d).update(price=0),
    "price that is not a number": lambda d: _outcome(d).update(price="a lot"),
    "share above 1": lambda d: d["payers"][0].update(share=2),
    "unknown trigger kind": lambda d: d["triggers"][0].update(kind="lottery"),
    "wrong format header": lambda d: d.update(format="sib-contract/0"),
    "missing title": lambda d: d.pop("title"),
    "bad identifier": lambda d: d.update(id="Not An Id"),
    "empty parties": lambda d: d.update(parties=[]),
}


@pytest.mark.parametrize("change", list(BAD.values()), ids=list(BAD))
def test_invalid_data_is_refused(validator: jsonschema.Draft202012Validator, change: Any) -> None:
    data = _mutated(change)
    assert _errors(validator, data), "the schema accepted it"


@pytest.mark.parametrize("change", list(BAD.values()), ids=list(BAD))
def test_what_the_schema_refuses_the_loader_refuses_too(change: Any) -> None:
    """The schema never refuses what the loader accepts, on these cases: both say no."""
    data = _mutated(change)
    text = json.dumps(data, default=str)  # JSON is YAML
    with pytest.raises(sib_engine.ContractError):
        parse_contract(text)


def test_quoted_numbers_are_accepted() -> None:
    schema = contract_json_schema()
    v = jsonschema.Draft202012Validator(schema)
    for price in ("2750.00", "2750", "1e3", ".5", 12, 0.5):
        assert _errors(v, _mutated(lambda d: _outcome(d).update(price=price))) == [], price
