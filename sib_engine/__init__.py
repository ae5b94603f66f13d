"""sib-engine: readable contracts, reproducible determinations and risk models for social
impact bonds and other outcomes contracts.

The public API is small; everything here is typed and documented.

>>> from sib_engine import parse_contract
>>> from sib_engine.loader import EXAMPLE
>>> contract = parse_contract(EXAMPLE)
>>> contract.triggers[0].outcomes[0].price
Decimal('2750.00')

Heavy modules load on first use, so that ``import sib_engine`` and ``sib --help`` stay fast.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS: dict[str, str] = {
    "Contract": "sib_engine.contract",
    "FORMAT_VERSION": "sib_engine.contract",
    "ContractError": "sib_engine.errors",
    "Problem": "sib_engine.errors",
    "SibError": "sib_engine.errors",
    "Evaluation": "sib_engine.evaluation",
    "evaluate": "sib_engine.evaluation",
    "load_contract": "sib_engine.loader",
    "parse_contract": "sib_engine.loader",
    "describe_contract": "sib_engine.render",
    "contract_json_schema": "sib_engine.schema_export",
    "load_scenario": "sib_engine.loader",
    "simulate": "sib_engine.risk",
    "simulate_portfolio": "sib_engine.risk",
    "simulation_json": "sib_engine.risk",
    "SimulationResult": "sib_engine.risk",
    "SimulationError": "sib_engine.risk",
}

__all__ = sorted(_EXPORTS) + ["__version__"]

if TYPE_CHECKING:
    from sib_engine.contract import FORMAT_VERSION, Contract
    from sib_engine.errors import ContractError, Problem, SibError
    from sib_engine.evaluation import Evaluation, evaluate
    from sib_engine.loader import load_contract, load_scenario, parse_contract
    from sib_engine.render import describe_contract
    from sib_engine.risk import SimulationError, SimulationResult, simulate, simulate_portfolio, simulation_json
    from sib_engine.schema_export import contract_json_schema


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'sib_engine' has no attribute '{name}'")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
