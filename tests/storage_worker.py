"""A separate process that records determinations, for the fault and load tests.

    python tests/storage_worker.py DB BASE.parquet [--indices 1,2,3 | --loop START] [--start-at EPOCH]
                                   [--pause SECONDS]

Data ``i`` is the base accepted rows without the jobs of participants whose number is a
multiple of ``i % 9 + 2`` (so every ``i`` gives different data, and its content hash is
``sha256("data-i")``).  For each ``i`` the worker records the contract, the submission and
the determination (as of 2025-06-30), and prints one JSON line after each commit.  With
``--loop`` it goes on until it is killed.  It prints ``ready`` once set up.  ``--pause``
makes every write transaction wait that long after its inserts, before it commits, so that a
kill is likely to land inside one.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from datetime import date
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))

from storagekit import DEMO, DEMO_TEXT, fake_validation  # noqa: E402

from sib_engine.storage import Store  # noqa: E402

AS_OF = date(2025, 6, 30)


def variant(base: pd.DataFrame, i: int) -> pd.DataFrame:
    k = i % 9 + 2
    number = base["participant_id"].str[1:].astype(int)
    drop = (base["metric"] == "job") & (number % k == 0)
    out = base[~drop].reset_index(drop=True)
    out["row"] = range(1, len(out) + 1)
    return out


def content_hash(i: int) -> str:
    return hashlib.sha256(f"data-{i}".encode()).hexdigest()


def record_one(store: Store, base: pd.DataFrame, i: int) -> dict[str, object]:
    crec = store.record_contract(DEMO_TEXT, DEMO, source_name="demo.yaml")
    sub, sub_created = store.record_submission(crec, fake_validation(variant(base, i)), content_hash=content_hash(i),
                                               source=f"data-{i}")
    rec = store.record_determination(crec, DEMO, sub, AS_OF)
    return {"i": i, "run": rec.run.uid, "created": rec.created, "submission": sub.id, "sub_created": sub_created,
            "net": str(rec.run.net)}


def _pause_in_transactions(seconds: float) -> None:
    import sib_engine.storage.store as store_module

    insert_rows = store_module.bulk_insert
    set_head = store_module.Store._set_head

    def slow_insert(*a: object, **k: object) -> None:
        insert_rows(*a, **k)  # type: ignore[arg-type]
        print("in-transaction", flush=True)
        time.sleep(seconds)

    def slow_head(*a: object, **k: object) -> None:
        print("in-transaction", flush=True)
        time.sleep(seconds)
        set_head(*a, **k)  # type: ignore[arg-type]

    store_module.bulk_insert = slow_insert  # type: ignore[assignment]
    store_module.Store._set_head = staticmethod(slow_head)  # type: ignore[method-assign,assignment]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("db")
    ap.add_argument("base", type=Path)
    ap.add_argument("--indices", default="")
    ap.add_argument("--loop", type=int, default=None)
    ap.add_argument("--start-at", type=float, default=0.0)
    ap.add_argument("--pause", type=float, default=0.0)
    args = ap.parse_args()
    if args.pause:
        _pause_in_transactions(args.pause)
    base = pd.read_parquet(args.base)
    store = Store.open(args.db)
    store.record_contract(DEMO_TEXT, DEMO, source_name="demo.yaml")
    from sib_engine.evaluation import evaluate  # warm up: imports and first evaluation
    from sib_engine.storage.frames import stored_form
    evaluate(DEMO, stored_form(variant(base.head(200), 0)), AS_OF)
    print("ready", flush=True)
    delay = args.start_at - time.time()
    if delay > 0:
        time.sleep(delay)
    if args.loop is not None:
        i = args.loop
        while True:
            print(json.dumps(record_one(store, base, i)), flush=True)
            i += 1
    for part in filter(None, args.indices.split(",")):
        print(json.dumps(record_one(store, base, int(part))), flush=True)
    store.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
