"""Properties of the contract language and its loader (hypothesis).

(a) Any valid contract survives a round trip through its JSON form unchanged, that JSON
    form satisfies the published JSON Schema, and its YAML form loads back to the same
    contract.
(b) However a valid contract text is damaged, the loader answers with a ContractError (or
    a contract), never a traceback, and every problem it reports points at a line of the
    file (only whole-document problems may have none).
(c) The same holds when the damage is to the data rather than the text: a value replaced
    by another of any type, a key deleted, a list item repeated.  The YAML is then well
    formed, so every problem has a line.
"""

from __future__ import annotations

import json
from datetime import date, timedelta
from decimal import Decimal
from functools import lru_cache
from typing import Any

import jsonschema
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sib_engine import consistency
from sib_engine.contract import FORMAT_VERSION, Contract
from sib_engine.errors import ContractError
from sib_engine.loader import EXAMPLE, parse_contract
from sib_engine.periods import regular_periods

PROPERTY_SETTINGS = settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)

# ------------------------------------------------------------ valid contract dicts ---

IDENT = st.from_regex(r"[a-z][a-z0-9_]{0,10}", fullmatch=True)
WORDS = st.text(
    alphabet=st.characters(categories=("L", "N", "Zs"), exclude_characters="\u2028\u2029\x85"),
    min_size=1,
    max_size=30,
)


def cents(lo: int = 1, hi: int = 10**10) -> st.SearchStrategy[Decimal]:
    """An amount of money with exactly two decimals, e.g. ``Decimal('2750.00')``."""
    return st.integers(lo, hi).map(lambda n: Decimal(n).scaleb(-2))


@st.composite
def shares(draw: st.DrawFn, n: int, scale: int = 4) -> list[Decimal]:
    """``n`` positive exact decimal shares that add up to exactly 1."""
    whole = 10**scale
    cuts = sorted(draw(st.lists(st.integers(1, whole - 1), min_size=n - 1, max_size=n - 1, unique=True)))
    bounds = [0, *cuts, whole]
    return [Decimal(b - a).scaleb(-scale) for a, b in zip(bounds, bounds[1:])]


@st.composite
def date_between(draw: st.DrawFn, lo: date, hi: date) -> date:
    return lo + timedelta(days=draw(st.integers(0, (hi - lo).days)))


def iso(d: date) -> str:
    return d.isoformat()


@st.composite
def valid_contracts(draw: st.DrawFn) -> dict[str, Any]:
    """Plain data (as read from a file) of a contract that passes every check."""
    # Term and measurement periods: the periods lie within the term.
    start = draw(st.dates(date(2000, 1, 1), date(2040, 12, 31)))
    months = draw(st.sampled_from([1, 3, 6, 12]))
    count = draw(st.integers(1, 24))
    last_end = regular_periods(start, months, count)[-1].end
    end = last_end + timedelta(days=draw(st.integers(0, 400)))

    # Parties and payers: fixed shares adding up to exactly 1.
    n_payers = draw(st.integers(1, 4))
    payer_ids = [f"payer{i}" for i in range(n_payers)]
    parties = [{"id": p, "name": draw(WORDS), "role": "payer"} for p in payer_ids]
    parties += [
        {"id": "fund", "name": draw(WORDS), "role": "investor"},
        {"id": "provider", "name": draw(WORDS), "role": "provider"},
    ]
    payers = [{"party": p, "share": str(s)} for p, s in zip(payer_ids, draw(shares(n_payers)))]

    # Metrics priced by a rate card.
    metric_ids = draw(st.lists(IDENT, min_size=1, max_size=5, unique=True))
    metrics = [
        {"id": m, "name": draw(WORDS), "type": draw(st.sampled_from(["event", "binary"]))}
        for m in metric_ids
    ]
    priced = draw(st.lists(st.sampled_from(metric_ids), min_size=1, max_size=len(metric_ids), unique=True))
    outcomes = []
    for m in priced:
        o: dict[str, Any] = {"metric": m, "price": str(draw(cents()))}
        if draw(st.booleans()):
            o["max_claims"] = draw(st.integers(1, 5))
        outcomes.append(o)
    triggers: list[dict[str, Any]] = [
        {"id": "card", "kind": "rate_card", "clause": "Schedule 1", "outcomes": outcomes}
    ]
    baselines: list[dict[str, Any]] = []

    # Optionally, a threshold on a binary rate against a fixed baseline.
    if draw(st.booleans()):
        metrics.append({"id": "rate_metric", "name": "A rate", "type": "binary"})
        baselines.append({"id": "base", "kind": "fixed", "metric": "rate_metric",
                          "value": str(draw(cents(0, 100)) / 100)})
        n_points = draw(st.integers(1, 5))
        steps = draw(st.lists(st.integers(1, 500), min_size=n_points, max_size=n_points))
        rises = draw(st.lists(cents(0, 10**8), min_size=n_points, max_size=n_points))
        effect, value, points = Decimal(0), Decimal(0), []
        for step, rise in zip(steps, rises):
            effect += Decimal(step).scaleb(-4)
            value += rise
            points.append({"effect": str(effect), "value": str(value)})
        triggers.append({
            "id": "rate",
            "kind": "threshold",
            "clause": "Schedule 2",
            "effect": {"metric": "rate_metric", "baseline": "base", "measure": "difference"},
            "schedule": {"interpolation": draw(st.sampled_from(["step", "linear"])) if n_points > 1 else "step",
                         "points": points},
        })

    # Cohorts enrol within the term.
    cohorts = []
    for i in range(draw(st.integers(1, 3))):
        a, b = sorted([draw(date_between(start, end)), draw(date_between(start, end))])
        cohorts.append({"id": f"c{i + 1}", "enrolment_start": iso(a), "enrolment_end": iso(b)})

    data: dict[str, Any] = {
        "format": FORMAT_VERSION,
        "id": draw(IDENT),
        "title": draw(WORDS),
        "currency": draw(st.sampled_from(["EUR", "GBP", "USD", "AUD", "CHF"])),
        "term": {"start": iso(start), "end": iso(end)},
        "parties": parties,
        "payers": payers,
        "metrics": metrics,
        "triggers": triggers,
        "timeline": {"periods": {"start": iso(start), "months": months, "count": count},
                     "cohorts": cohorts},
    }
    if baselines:
        data["baselines"] = baselines
    if draw(st.booleans()):
        cheapest = min(Decimal(o["price"]) for o in outcomes)
        total = cheapest + draw(cents(0))
        data["caps"] = {"total": str(total), "per_participant": str(max(cheapest, total / 2))}
    return data


@lru_cache(maxsize=1)
def schema_validator() -> jsonschema.Draft202012Validator:
    """A validator for the JSON Schema of the contract language, built once."""
    schema = Contract.model_json_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


@PROPERTY_SETTINGS
@given(valid_contracts())
def test_valid_contract_round_trips_through_json(data: dict[str, Any]) -> None:
    contract = Contract.model_validate(data)
    assert consistency.check(contract) == []  # the strategy really makes valid contracts

    dumped = contract.model_dump(mode="json")
    again = Contract.model_validate(dumped)
    assert again == contract
    assert again.model_dump(mode="json") == dumped
    # Through a JSON text as well: nothing depends on Python-only values.
    assert Contract.model_validate(json.loads(json.dumps(dumped))) == contract

    schema_validator().validate(dumped)


def test_the_schema_is_not_vacuous() -> None:
    data = parse_contract(EXAMPLE).model_dump(mode="json")
    schema_validator().validate(data)
    for broken in ({**data, "colour": "blue"}, {**data, "currency": 978}, {**data, "parties": []}):
        assert not schema_validator().is_valid(broken)


@PROPERTY_SETTINGS
@given(valid_contracts())
def test_valid_contract_round_trips_through_yaml(data: dict[str, Any]) -> None:
    contract = Contract.model_validate(data)
    text = yaml.safe_dump(contract.model_dump(mode="json", exclude_defaults=True),
                          allow_unicode=True, sort_keys=False)
    assert parse_contract(text) == contract


# ---------------------------------------------------------------- damaged texts ---

RICH = """\
format: sib-contract/1
id: rich
title: A contract with most parts
currency: GBP
term: {start: 2024-01-01, end: 2027-12-31, clause: "Clause 2"}
eligibility:
  age_min: 18
  age_max: 64
parties:
  - {id: council, name: The Council, role: payer}
  - {id: fund, name: Outcomes Fund, role: top_up_fund}
  - {id: investor, name: The Investor, role: investor}
  - {id: bank, name: The Bank, role: guarantor}
  - {id: charity, name: The Charity, role: provider}
payers:
  - {party: council, share: 1, cap: 2000000}
  - {party: fund, top_up: 0.2}
metrics:
  - {id: enrolled, name: Enrolled in training, type: event}
  - {id: job, name: Job held six months, type: event, requires: [enrolled], window_months: 24}
  - {id: employed, name: In work after a year, type: binary}
baselines:
  - {id: fixed, kind: fixed, metric: employed, value: 0.25}
  - {id: rct, kind: comparison_group, metric: employed, design: randomised}
  - id: blend
    kind: blended
    metric: employed
    components:
      - {baseline: rct, weight: 0.8}
      - {baseline: fixed, weight: 0.2}
triggers:
  - id: card
    kind: rate_card
    clause: Schedule 1
    cap_per_participant: "6000"
    outcomes:
      - {metric: enrolled, price: "500.00"}
      - {metric: job, price: "4730.50", requires: [enrolled], cap_units: 300}
  - id: rate
    kind: threshold
    clause: Schedule 2
    effect:
      metric: employed
      baseline: blend
      measure: difference
      gate: {test: two_proportion_z, level: 0.05}
    schedule:
      interpolation: linear
      points:
        - {effect: 0.05, value: 100000}
        - {effect: 0.15, value: 400000}
caps: {total: 3000000, per_participant: 10000}
timeline:
  periods: {start: 2024-01-01, months: 3, count: 16}
  payment_lag_days: 45
  cohorts:
    - {id: c1, enrolment_start: 2024-01-01, enrolment_end: 2024-12-31, target_size: 200}
    - {id: c2, enrolment_start: 2025-01-01, enrolment_end: 2025-12-31}
  determinations:
    - {id: mid, kind: interim, period: P8}
    - {id: end, kind: final, period: P16, data_cutoff: 2028-01-31}
capital:
  tranches:
    - id: senior
      kind: senior_loan
      funder: investor
      commitment: 900000
      coupon: {rate: 0.06, compounding: quarterly}
      drawdowns:
        - {date: 2024-01-01, amount: 600000}
        - {date: 2025-01-01, amount: 300000}
    - id: fee
      kind: deferred_fee
      funder: charity
      commitment: 100000
  guarantees:
    - {id: g1, guarantor: bank, covers: senior, share: 0.5}
  waterfall:
    - {pay: interest, tranche: senior}
    - {pay: principal, tranche: senior}
    - {pay: principal, tranche: fee}
    - {pay: residual, split: {investor: 0.6, charity: 0.4}}
data_quality:
  tolerance: 0.02
  severity: {ineligible: warning}
amendments:
  - id: a1
    effective: 2025-07-01
    clause: Variation 1
    summary: The job price rises
    changes:
      - {set: triggers.card.outcomes.job.price, to: "5000.00"}
"""

FIXED_TEXTS = (EXAMPLE, RICH)

YAML_BITS = [
    ":", ": ", "- ", "-", "? ", "{", "}", "[", "]", ",", "'", '"', "#", "|", ">", "&a ", "*a",
    "!!str ", "!!python/object:os.system ", "!x ", "<<: ", "%YAML 1.1\n", "---\n", "...\n",
    "\t", "\x00", "\x07", "\ufeff", "\r", "\u2028", "\x85", "\\", "@", "`", "~", "null",
    "yes", ".inf", ".nan", "1e999999999", "-0", "0x1F", "2024-02-30", "9999-12-31",
]


def test_the_texts_to_damage_are_valid() -> None:
    for text in FIXED_TEXTS:
        parse_contract(text)


@st.composite
def mutated_texts(draw: st.DrawFn) -> str:
    """A valid contract text damaged in one to three ways."""
    text = draw(st.one_of(
        st.sampled_from(FIXED_TEXTS),
        valid_contracts().map(lambda d: yaml.safe_dump(d, allow_unicode=True, sort_keys=False)),
    ))
    # Positions are drawn uniformly: hypothesis's own integers favour the first line
    # (the format header), which would stop most texts at the first check.
    rnd = draw(st.randoms(use_true_random=True))
    for _ in range(draw(st.integers(1, 3))):
        lines = text.split("\n")
        i = rnd.randrange(len(lines))
        op = draw(st.sampled_from([
            "delete_line", "duplicate_line", "swap_lines", "replace_char",
            "insert_unicode", "insert_yaml", "indent", "dedent", "truncate",
        ]))
        if op == "delete_line":
            del lines[i]
        elif op == "duplicate_line":
            lines.insert(i, lines[i])
        elif op == "swap_lines":
            j = rnd.randrange(len(lines))
            lines[i], lines[j] = lines[j], lines[i]
        elif op == "indent":
            lines[i] = " " * draw(st.integers(1, 4)) + lines[i]
        elif op == "dedent":
            lines[i] = lines[i][draw(st.integers(1, 4)):]
        if op in ("delete_line", "duplicate_line", "swap_lines", "indent", "dedent"):
            text = "\n".join(lines)
            continue
        pos = rnd.randrange(len(text) + 1)
        if op == "replace_char" and text:
            pos = min(pos, len(text) - 1)
            text = text[:pos] + draw(st.characters()) + text[pos + 1:]
        elif op == "insert_unicode":
            text = text[:pos] + draw(st.text(min_size=1, max_size=5)) + text[pos:]
        elif op == "insert_yaml":
            text = text[:pos] + draw(st.sampled_from(YAML_BITS)) + text[pos:]
        elif op == "truncate":
            text = text[:pos]
    return text


def _last_line(text: str) -> int:
    """The number of the last line of ``text`` as an editor shows it (at least 1)."""
    lines = text.splitlines()
    ends_with_break = bool(text) and text[-1] in "\n\r\x85\u2028\u2029\x0b\x0c\x1c\x1d\x1e"
    return max(1, len(lines) + (1 if ends_with_break else 0))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_texts())
def test_damaged_text_gives_located_contract_error(text: str) -> None:
    try:
        parse_contract(text, source="damaged.yaml")
    except ContractError as exc:
        assert exc.problems, "a ContractError lists at least one problem"
        last = _last_line(text)
        for p in exc.problems:
            if p.line is None:
                assert p.path == (), f"only whole-document problems may lack a line: {p.format()}"
            else:
                assert 1 <= p.line <= last, f"line {p.line} outside a file of {last} lines: {p.format()}"
                assert p.column is not None and p.column >= 1, p.format()
            assert p.format().startswith("damaged.yaml"), p.format()


# ---------------------------------------------------------------- damaged data ---

ANY_VALUE = st.recursive(
    st.none() | st.booleans() | st.integers(-(10**6), 10**6) | st.text(max_size=8)
    | st.sampled_from(["", "-1", "1.5", "20", "2024-02-30", "P99", "job", "card", "city",
                       "senior", "threshold", "blended", "EUR", "x" * 70, "1e999999999"]),
    lambda inner: st.lists(inner, max_size=3)
    | st.dictionaries(st.sampled_from(["id", "kind", "metric", "price", "share", "x"]), inner, max_size=3),
    max_leaves=6,
)


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix] if prefix else []
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, prefix + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _paths(v, prefix + (i,))
    return out


@st.composite
def damaged_data(draw: st.DrawFn) -> str:
    """The YAML text of a valid contract's data with one to three parts damaged."""
    data = draw(st.one_of(
        st.sampled_from(FIXED_TEXTS).map(
            lambda t: parse_contract(t).model_dump(mode="json", exclude_defaults=True)),
        valid_contracts(),
    ))
    rnd = draw(st.randoms(use_true_random=True))
    for _ in range(draw(st.integers(1, 3))):
        path = rnd.choice(_paths(data))
        parent = data
        for part in path[:-1]:
            parent = parent[part]
        op = draw(st.sampled_from(["replace", "delete", "repeat"]))
        if op == "replace":
            parent[path[-1]] = draw(ANY_VALUE)
        elif op == "delete":
            del parent[path[-1]]
        elif isinstance(parent, list):
            parent.append(parent[path[-1]])
    return yaml.safe_dump(data, allow_unicode=True, sort_keys=False)


@PROPERTY_SETTINGS
@given(damaged_data())
def test_damaged_data_gives_located_contract_error(text: str) -> None:
    try:
        parse_contract(text, source="damaged.yaml")
    except ContractError as exc:
        last = _last_line(text)
        for p in exc.problems:
            assert p.line is not None and 1 <= p.line <= last, p.format()
