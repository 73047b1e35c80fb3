"""One LMDB transaction: the port's record operations over the key schema of keys.py.

`get`, `put`, `delete`, `keys`, `scan`, `walk` and `has` reach the named
databases by key; they are this backend's own (catalog.py and LMDB-specific
tests use them) and not part of the port.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterator

import lmdb

from weft.runtime.stores import port
from weft.runtime.stores.lmdb import catalog, codec
from weft.runtime.stores.lmdb import keys as K
from weft.runtime.stores.port import CorruptRecord, Timer
from weft.runtime.stores.query import Page, Query

if TYPE_CHECKING:
    from weft.runtime.stores.lmdb.store import Store

_NO_VALUE = codec.encode(None)


class Txn(port.Txn):
    __slots__ = ("store", "_raw", "_dbs")

    def __init__(self, store: Store, raw: lmdb.Transaction, dbs: dict) -> None:
        self.store = store
        self._raw = raw
        self._dbs = dbs

    # -- keys and values (this backend's own) ------------------------------------------------

    def _decode(self, db: str, key: bytes, raw: bytes) -> Any:
        try:
            return codec.decode(raw)
        except codec.BadValue as e:
            shown = key.decode("utf-8", "replace").replace("\0", ":")
            raise CorruptRecord(f"corrupt record {db}:{shown} in {self.store.path} ({e})") from None

    def get(self, db: str, key: bytes) -> Any:
        raw = self._raw.get(key, db=self._dbs[db])
        return None if raw is None else self._decode(db, key, raw)

    def has(self, db: str, key: bytes) -> bool:
        return self._raw.get(key, db=self._dbs[db]) is not None

    def put(self, db: str, key: bytes, value: Any) -> None:
        self._raw.put(key, codec.encode(value), db=self._dbs[db])

    def delete(self, db: str, key: bytes) -> None:
        self._raw.delete(key, db=self._dbs[db])

    def walk(self, db: str, low: bytes = b"", high: bytes | None = None, reverse: bool = False) -> Iterator[bytes]:
        """Keys from `low` (included) to `high` (excluded; None: to the end), in key order or reversed."""
        cur = self._raw.cursor(db=self._dbs[db])
        if not reverse:
            if cur.set_range(low):
                for key in cur.iternext(keys=True, values=False):
                    if high is not None and key >= high:
                        return
                    yield key
            return
        found = cur.set_range(high) if high is not None else False
        if not (cur.prev() if found else cur.last()):
            return
        for key in cur.iterprev(keys=True, values=False):
            if key < low:
                return
            yield key

    def keys(self, db: str, prefix: bytes = b"", reverse: bool = False) -> Iterator[bytes]:
        """Keys starting with `prefix`, in key order (or reversed)."""
        return self.walk(db, prefix, K.after(prefix) if prefix else None, reverse)

    def scan(self, db: str, prefix: bytes = b"") -> Iterator[tuple[bytes, Any]]:
        """(key, value) pairs whose key starts with `prefix`, in key order."""
        cur = self._raw.cursor(db=self._dbs[db])
        if cur.set_range(prefix):
            for key, raw in cur.iternext():
                if not key.startswith(prefix):
                    return
                yield key, self._decode(db, key, raw)

    # -- runs, plans, steps ------------------------------------------------------------------

    def run(self, run_id: str) -> dict | None:
        return self.get("runs", K.run_key(run_id))

    def put_run(self, run: dict) -> None:
        key = K.run_key(run["id"])
        old = self.get("runs", key)
        new_keys = K.index_keys(run)
        old_keys = K.index_keys(old) if old is not None else set()
        indexes = self._dbs["indexes"]
        for k in old_keys - new_keys:
            self._raw.delete(k, db=indexes)
        for k in new_keys - old_keys:
            self._raw.put(k, _NO_VALUE, db=indexes)
        self.put("runs", key, run)

    def plan(self, run_id: str) -> dict | None:
        return self.get("plans", K.run_key(run_id))

    def put_plan(self, run_id: str, plan: dict) -> None:
        self.put("plans", K.run_key(run_id), plan)

    def steps(self, run_id: str) -> dict[str, dict]:
        return {K.step_of(key): rec for key, rec in self.scan("steps", K.run_key(run_id))}

    def put_step(self, run_id: str, step_id: str, rec: dict) -> None:
        key = K.step_key(run_id, step_id)
        self._timers(run_id, step_id, self.get("steps", key), rec)
        self.put("steps", key, rec)

    def _timers(self, run_id: str, step_id: str, old: dict | None, new: dict | None) -> None:
        before, after = K.timer_keys(run_id, step_id, old), K.timer_keys(run_id, step_id, new)
        for key in before - after:
            self.delete("timers", key)
        for key in after - before:
            self._raw.put(key, _NO_VALUE, db=self._dbs["timers"])

    def run_ids(self, prefix: str = "") -> Iterator[str]:
        for key in self.keys("runs", prefix.encode()):
            yield key.decode()

    def children(self, parent: str, step: str | None = None) -> list[tuple[int, str]]:
        return [K.child_of(k) for k in self.keys("indexes", K.child_prefix(parent, step))]

    def index(self, field: str, value: str | None = None, reverse: bool = False) -> Iterator[str]:
        for key in self.keys("indexes", K.index_prefix(field, value), reverse):
            yield key[-K.ID_LEN :].decode()

    def search(self, q: Query) -> Page:
        return catalog.search(self, q)

    def delete_run(self, run_id: str) -> None:
        run = self.run(run_id)
        if run is None:
            return
        for k in K.index_keys(run):
            self.delete("indexes", k)
        for sid, rec in self.steps(run_id).items():
            self._timers(run_id, sid, rec, None)
        self.dequeue(run_id)
        prefix = K.run_key(run_id)
        for db in K.OWNED:
            for k in list(self.keys(db, prefix)):
                self.delete(db, k)
        for name in run.get("locks") or ():
            if self.lock_holder(name) == run_id:
                self.put_lock(name, None)
        self.delete("runs", prefix)

    # -- history -----------------------------------------------------------------------------

    def last_seq(self, run_id: str) -> int:
        for key in self.keys("events", K.run_key(run_id), reverse=True):
            return K.seq_of(key)
        return 0

    def append_events(self, run_id: str, events: list[dict]) -> int:
        seq = self.last_seq(run_id)
        db = self._dbs["events"]
        for event in events:
            seq += 1
            self._raw.put(K.seq_key(run_id, seq), codec.encode(event), db=db, overwrite=False)
        return seq

    def events(self, run_id: str, after: int = 0) -> list[tuple[int, dict]]:
        if not after:
            return [(K.seq_of(k), e) for k, e in self.scan("events", K.run_key(run_id))]
        low, high = K.seq_key(run_id, after + 1), K.after(K.run_key(run_id))
        return [(K.seq_of(k), self.get("events", k)) for k in self.walk("events", low, high)]

    # -- leases, locks, requests -------------------------------------------------------------

    def lease(self, run_id: str) -> dict | None:
        return self.get("leases", K.run_key(run_id))

    def put_lease(self, run_id: str, lease: dict) -> None:
        self.put("leases", K.run_key(run_id), lease)

    def drop_lease(self, run_id: str) -> None:
        self.delete("leases", K.run_key(run_id))

    def leases(self) -> Iterator[tuple[str, dict]]:
        for key, lease in self.scan("leases"):
            if not key.startswith(K.LOCK):
                yield key.decode(), lease

    def lock_holder(self, name: str) -> str | None:
        return self.get("leases", K.lock_key(name))

    def put_lock(self, name: str, run_id: str | None) -> None:
        if run_id is None:
            self.delete("leases", K.lock_key(name))
        else:
            self.put("leases", K.lock_key(name), run_id)

    def locks(self) -> dict[str, str]:
        return {key[len(K.LOCK) :].decode(): holder for key, holder in self.scan("leases", K.LOCK)}

    def requests(self, run_id: str) -> list[tuple[str, dict]]:
        return [(K.request_of(key), req) for key, req in self.scan("requests", K.run_key(run_id))]

    def put_request(self, run_id: str, name: str, request: dict) -> None:
        self.put("requests", K.request_key(run_id, name), request)

    def drop_request(self, run_id: str, name: str) -> None:
        self.delete("requests", K.request_key(run_id, name))

    # -- the work queue ----------------------------------------------------------------------

    def enqueue(self, run_id: str, when: float) -> None:
        at = int(when * 1_000_000)
        queued = self.get("queue", K.queue_of(run_id))
        if queued is not None:
            if queued <= at:
                return
            self.delete("queue", K.queue_at(run_id, queued))
        self._raw.put(K.queue_at(run_id, at), _NO_VALUE, db=self._dbs["queue"])
        self.put("queue", K.queue_of(run_id), at)

    def dequeue(self, run_id: str) -> None:
        queued = self.get("queue", K.queue_of(run_id))
        if queued is not None:
            self.delete("queue", K.queue_at(run_id, queued))
            self.delete("queue", K.queue_of(run_id))

    def queued(self, run_id: str) -> float | None:
        at = self.get("queue", K.queue_of(run_id))
        return None if at is None else at / 1_000_000

    def due_runs(self, now: float, limit: int) -> list[str]:
        found: list[str] = []
        for key in self.keys("queue", K.QUEUE_AT):
            if K.queue_time(key) > now * 1_000_000 or len(found) >= limit:
                break
            found.append(key[-K.ID_LEN :].decode())
        return found

    # -- timers ------------------------------------------------------------------------------

    def due(self, now: float) -> Iterator[Timer]:
        for key in self.keys("timers"):
            timer = K.timer_of(key)
            if timer.due > now:
                return
            yield timer

    # -- meta and checks ---------------------------------------------------------------------

    def meta(self, name: str) -> Any:
        return self.get("meta", K.meta_key(name))

    def put_meta(self, name: str, value: Any) -> None:
        self.put("meta", K.meta_key(name), value)

    def problems(self) -> list[str]:
        want_index: set[bytes] = set()
        want_timers: set[bytes] = set()
        for key, run in self.scan("runs"):
            want_index |= K.index_keys(run)
        for key, rec in self.scan("steps"):
            want_timers |= K.timer_keys(key[: K.ID_LEN].decode(), K.step_of(key), rec)
        found = _differences("index", want_index, set(self.keys("indexes")))
        found += _differences("timer", want_timers, set(self.keys("timers")))
        at = {key for key in self.keys("queue", K.QUEUE_AT)}
        of = {K.queue_at(key[len(K.QUEUE_OF) :].decode(), t) for key, t in self.scan("queue", K.QUEUE_OF)}
        found += _differences("queue entry", of, at)
        return found


def _differences(what: str, expected: set[bytes], actual: set[bytes]) -> list[str]:
    return [f"missing {what} {k!r}" for k in sorted(expected - actual)] + [
        f"stale {what} {k!r}" for k in sorted(actual - expected)
    ]
