"""The work queue: runs that a `weft worker` should pick up, and from when.

A run is queued in the same transaction as what makes it need a worker: it
was created with `weft run --detach`, a signal was left for it, a worker let
go of it while it still had work (it stopped, or the run waits for a timer).
Workers read the queue in time order instead of scanning every run, and
dequeue a run in the transaction that gives them its lease.

Keys in the `queue` database, one run at most once:
    at\\0<u64 BE µs><run>    when the run needs a worker
    of\\0<run>               that time (µs), to move or drop the entry
"""

from __future__ import annotations

import struct
import time

from weft.runtime.stores.lmdb.store import ID_LEN, Store, Txn

_MICROS = struct.Struct(">Q")
_AT = b"at\0"
_OF = b"of\0"


def enqueue(t: Txn, run_id: str, when: float) -> None:
    """Queue `run_id` for `when`; a run queued already keeps the earlier time."""
    rid = run_id.encode()
    micros = int(when * 1_000_000)
    queued = t.get("queue", _OF + rid)
    if queued is not None:
        if queued <= micros:
            return
        t.delete("queue", _AT + _MICROS.pack(queued) + rid)
    t.put("queue", _AT + _MICROS.pack(micros) + rid, None)
    t.put("queue", _OF + rid, micros)


def dequeue(t: Txn, run_id: str) -> None:
    rid = run_id.encode()
    queued = t.get("queue", _OF + rid)
    if queued is not None:
        t.delete("queue", _AT + _MICROS.pack(queued) + rid)
        t.delete("queue", _OF + rid)


def due(t: Txn, now: float, limit: int) -> list[str]:
    """Up to `limit` queued runs whose time has come, the longest waiting first."""
    found = []
    for key in t.keys("queue", _AT):
        if _MICROS.unpack_from(key, len(_AT))[0] > now * 1_000_000 or len(found) >= limit:
            break
        found.append(key[-ID_LEN:].decode())
    return found


def queued(t: Txn, run_id: str) -> float | None:
    """When `run_id` is queued for, or None."""
    micros = t.get("queue", _OF + run_id.encode())
    return None if micros is None else micros / 1_000_000


def hand_over(store: Store, run_id: str, name: str, request: dict) -> None:
    """Leave a request (a signal) for a run that workers serve, and queue the run for them now."""

    def write(t: Txn) -> None:
        t.put_request(run_id, name, request)
        enqueue(t, run_id, time.time())

    store.write(write)
