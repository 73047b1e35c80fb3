"""Invariants of a store, checked after crashes: history, indexes, side effects."""

from __future__ import annotations

from weft.runtime.stores.lmdb.store import Store, index_keys


def index_problems(store: Store) -> list[str]:
    """Differences between the index entries and a full scan of the run records."""
    with store.read() as t:
        expected = set()
        for _, run in t.scan("runs", b""):
            expected |= index_keys(run)
        actual = {k for k in t.keys("indexes", b"")}
    return [f"missing {k!r}" for k in expected - actual] + [f"stale {k!r}" for k in actual - expected]


def history(store: Store, run_id: str) -> list[dict]:
    """The run's events; asserts their sequence numbers are 1, 2, 3... without gaps."""
    with store.read() as t:
        events = t.events(run_id)
    assert [seq for seq, _ in events] == list(range(1, len(events) + 1)), "history has gaps"
    return [e for _, e in events]
