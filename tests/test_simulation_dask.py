"""Scale-out on Dask distributed: a real LocalCluster gives the local run's results, bit
for bit, for the same seed."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import pytest

from sib_engine.loader import load_contract
from sib_engine.risk import simulate, simulation_json
from sib_engine.simulation.kernel import ChunkResult

ROOT = Path(__file__).resolve().parent.parent
GATED = ROOT / "tests" / "data" / "simulation" / "gated_shares.yaml"


def _identical(a: ChunkResult, b: ChunkResult) -> None:
    for f in fields(ChunkResult):
        assert getattr(a, f.name).tobytes() == getattr(b, f.name).tobytes(), f.name


@pytest.mark.slow
def test_dask_workers_and_scheduler_give_the_local_results() -> None:
    from sib_engine.risk import local_cluster

    contract = load_contract(GATED)
    local = simulate(contract, 10000, 42, chunk_size=4096, analysis=False, threads=1)
    seen: list[int] = []
    on_two = simulate(contract, 10000, 42, chunk_size=4096, workers=2, analysis=False,
                      progress=lambda done, total: seen.append(done))
    _identical(local.data, on_two.data)
    assert sorted(seen) == seen and seen[-1] == 10000 and len(seen) == 3
    assert on_two.workers == "2 Dask workers"
    with local_cluster(2) as cluster:
        remote = simulate(contract, 10000, 42, chunk_size=8192, scheduler=cluster.scheduler_address,
                          analysis=False)
    _identical(local.data, remote.data)
    a, b = simulation_json(local), simulation_json(remote)
    assert a == b
