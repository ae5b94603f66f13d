"""Storage: the database of contracts, submissions, determinations and simulations, its
append-only hash-chained ledger, and provenance (layer 3: edges; SQLAlchemy and alembic).

The public API:

* :class:`Store` (``Store.open(url)``): ``record_contract``, ``record_submission``,
  ``record_determination``, ``record_simulation`` (``record_simulation_once``: not again for
  the same inputs and figures), ``history``, ``verify``, ``recompute``, ``export_indigo``;
  reads: ``accepted_frame``, ``deal_lines``, ``runs``, ``allocations``, ``simulations``,
  ``find_simulations``.
* :func:`database_url`: ``--db``, else ``$SIB_DATABASE_URL``, else ``sqlite:///sib.db``.
* :class:`StorageError`: the database cannot be opened or used.

See ``docs/storage.md`` for the schema, the ledger's rules and the INDIGO mapping.
"""

from __future__ import annotations

from sib_engine.storage.database import DEFAULT_URL, ENV_URL, StorageError, database_url, display_url
from sib_engine.storage.records import (
    ContractRecord,
    History,
    HistoryItem,
    Recorded,
    RunRecord,
    SimulationRecord,
    SubmissionRecord,
    VerifyReport,
)
from sib_engine.storage.store import Store, open_store, text_hash

__all__ = [
    "DEFAULT_URL",
    "ENV_URL",
    "ContractRecord",
    "History",
    "HistoryItem",
    "Recorded",
    "RunRecord",
    "SimulationRecord",
    "StorageError",
    "Store",
    "SubmissionRecord",
    "VerifyReport",
    "database_url",
    "display_url",
    "open_store",
    "text_hash",
]
