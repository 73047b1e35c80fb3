"""Stores on every backend, and their invariants, checked after crashes: history, derived entries."""

from __future__ import annotations

from weft.runtime.stores import open_store
from weft.runtime.stores.port import Store


def index_problems(store: Store) -> list[str]:
    """Where the store's indexes, timers or queue disagree with its records (Txn.problems)."""
    with store.read() as t:
        return t.problems()


def history(store: Store, run_id: str) -> list[dict]:
    """The run's events; asserts their sequence numbers are 1, 2, 3... without gaps."""
    with store.read() as t:
        events = t.events(run_id)
    assert [seq for seq, _ in events] == list(range(1, len(events) + 1)), "history has gaps"
    return [e for _, e in events]


BACKENDS = ("lmdb", "memory")


def new_store(backend: str, folder) -> Store:
    """A fresh store on `backend` ("lmdb": in `folder`; "memory": named after it)."""
    return open_store(str(folder) if backend == "lmdb" else f"memory://{folder}")
