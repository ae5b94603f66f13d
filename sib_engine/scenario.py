"""A scenario file: simulation assumptions kept apart from the contract (layer 1).

The same model as a contract's ``simulation`` section (:class:`~sib_engine.contract.Simulation`),
in a file of its own, read by :func:`sib_engine.loader.load_scenario`::

    format: sib-scenario/1
    name: pessimistic
    contract: reference-deal        # optional: the contract it is written for
    simulation:
      effects:
        - {metric: employed, base: 0.30, effect: {kind: normal, mean: 0.04, sd: 0.05}}
"""

from __future__ import annotations

from sib_engine.contract import Identifier, Model, Simulation

SCENARIO_FORMAT = "sib-scenario/1"
"""The header of a scenario file: ``format: sib-scenario/1``."""


class Scenario(Model):
    """A separate scenario file: simulation assumptions for a contract."""

    format: str
    name: str
    contract: Identifier | None = None
    """The id of the contract the scenario is written for (checked when given)."""
    simulation: Simulation
