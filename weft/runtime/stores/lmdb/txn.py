"""One LMDB transaction: the port's record operations over the key schema of keys.py.

`get`, `put`, `delete`, `keys`, `scan`, `walk`, `has` and the `_raw` ones
reach the named databases by key; they are this backend's own (catalog.py,
health.py and LMDB-specific tests use them) and not part of the port.

A key is not covered by a value's checksum, so reads check what they take
from keys: an index, timer, queue or lease entry that names no run, or a key
that does not parse, is skipped and reported once (`corrupt.skipped`) where a
listing can go on; a history with a gap raises CorruptRecord. `weft doctor`
(health.py) finds and repairs every such entry.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from functools import lru_cache, partial
from itertools import islice, takewhile
from typing import TYPE_CHECKING, Any, Iterable, Iterator

import lmdb

from weft.runtime.stores import port
from weft.runtime.stores.lmdb import catalog, codec, corrupt, health, plans
from weft.runtime.stores.lmdb import keys as K
from weft.runtime.stores.lmdb.derived import Derived
from weft.runtime.stores.lmdb.tally import Tally
from weft.runtime.stores.port import CorruptRecord, Timer
from weft.runtime.stores.query import Page, Query

if TYPE_CHECKING:
    from weft.runtime.stores.lmdb.store import Store

_NO_VALUE = codec.encode(None)


@lru_cache(maxsize=1024)
def _lease_of(raw: bytes) -> dict:
    """The lease record stored as `raw` (kept by its bytes: never stale); BadValue if they do not decode."""
    value = codec.decode(raw)
    if not isinstance(value, dict):
        raise codec.BadValue("a lease is a record")
    return value


class Txn(port.Txn):
    __slots__ = ("_big_plan", "_dbs", "_derived", "_raw", "_tally", "store")

    def __init__(self, store: Store, raw: lmdb.Transaction, dbs: dict, derived: dict[str, Derived]) -> None:
        self.store = store
        self._raw = raw
        self._dbs = dbs
        self._derived = derived  # "runs", "steps" -> what their last records' entries are (derived.py)
        self._tally: Tally | None = None  # the step records this write moved between states (tally.py)
        self._big_plan: tuple[str, dict] | None = None  # (run, its chunked plan) as read last: see _part_of_plan

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

    def get_raw(self, db: str, key: bytes) -> bytes | None:
        return self._raw.get(key, db=self._dbs[db])

    def put_raw(self, db: str, key: bytes, raw: bytes) -> None:
        self._raw.put(key, raw, db=self._dbs[db])

    def raw_items(self, db: str) -> list[tuple[bytes, bytes]]:
        """Every (key, stored bytes) of `db`, in key order."""
        with self._raw.cursor(db=self._dbs[db]) as cur:
            return list(cur.iternext())

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

    def _last(self, db: str, low: bytes = b"", high: bytes | None = None) -> bytes | None:
        """The greatest key from `low` (included) to `high` (excluded; None: to the end), or None: two cursor moves
        (every commit appends to a history and the feed after their last keys)."""
        cur = self._raw.cursor(db=self._dbs[db])
        if not (cur.prev() if high is not None and cur.set_range(high) else cur.last()):
            return None
        key = cur.key()
        return key if key >= low else None

    def key_list(self, db: str, low: bytes, high: bytes, limit: int | None = None) -> list[bytes]:
        """Keys from `low` (included) to `high` (excluded), at most `limit`, read in one go: no Python per key."""
        cur = self._raw.cursor(db=self._dbs[db])
        if not cur.set_range(low):
            return []
        return list(islice(takewhile(high.__gt__, cur.iternext(values=False)), limit))

    def key_count(self, db: str, low: bytes, high: bytes) -> int:
        """How many keys lie from `low` (included) to `high` (excluded), counted without holding them."""
        cur = self._raw.cursor(db=self._dbs[db])
        if not cur.set_range(low):
            return 0
        return sum(1 for _ in takewhile(high.__gt__, cur.iternext(values=False)))

    def present(self, db: str, keys: list[bytes]) -> list[bytes]:
        """Those of `keys` stored in `db` (in key order, the lookups touch neighbouring pages)."""
        found = self._raw.cursor(db=self._dbs[db]).set_key
        return [key for key in sorted(keys) if found(key)]

    def keys(self, db: str, prefix: bytes = b"", reverse: bool = False) -> Iterator[bytes]:
        """Keys starting with `prefix`, in key order (or reversed)."""
        return self.walk(db, prefix, K.after(prefix) if prefix else None, reverse)

    def scan_from(self, db: str, low: bytes) -> Iterator[tuple[bytes, Any]]:
        """(key, value) pairs from key `low` on, in key order."""
        cur = self._raw.cursor(db=self._dbs[db])
        if cur.set_range(low):
            for key, raw in cur.iternext():
                yield key, self._decode(db, key, raw)

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
        self._put_derived("runs", K.run_key(run["id"]), run, "indexes", K.index_keys)

    def _stored_plan(self, run_id: str) -> dict | None:
        value = self.get("plans", K.run_key(run_id))
        if value is None and self.has("runs", K.run_key(run_id)):
            raise self._corrupt("plans", K.run_key(run_id), f"run {run_id} has no plan")
        return value

    def plan(self, run_id: str) -> dict | None:
        value = self._stored_plan(run_id)
        return None if value is None else plans.whole(value)

    def put_plan(self, run_id: str, plan: dict) -> None:
        key = K.run_key(run_id)
        self.put("plans", key, plans.stored(plan))
        self._big_plan = None
        if not self.has("tallies", key) and next(self.keys("steps", key), None) is None:  # a new run
            self._moves().begun.add(run_id)

    def _moves(self) -> Tally:
        if self._tally is None:
            self._tally = Tally()
        return self._tally

    def settle(self) -> None:
        """Before this write transaction commits: write the tallies its step records' moves changed."""
        if self._tally is not None:
            self._tally.settle(self)
            self._tally = None

    def plan_outline(self, run_id: str) -> tuple[dict, port.Outline] | None:
        value = self._part_of_plan(run_id)
        return None if value is None else plans.outline(value)

    def plan_steps(self, run_id: str, step_ids: Iterable[str]) -> dict[str, dict]:
        value = self._part_of_plan(run_id)
        return {} if value is None else plans.specs(value, step_ids)

    def _part_of_plan(self, run_id: str) -> dict | None:
        """The stored plan, for reads of a part of it: a big one is read once per transaction (a page reads its
        outline, then its specs: 16 MB of chunks for 50,000 steps, each read hands out copies of its parts)."""
        if self._big_plan is not None and self._big_plan[0] == run_id:
            return self._big_plan[1]
        value = self._stored_plan(run_id)
        if value is not None and plans.chunked(value):
            self._big_plan = (run_id, value)
        return value

    def steps(self, run_id: str) -> dict[str, dict]:
        found = {}
        for key, rec in self.scan("steps", K.run_key(run_id)):
            try:
                found[K.step_of(key)] = rec
            except UnicodeDecodeError:
                raise self._corrupt("steps", key, "the step id does not parse") from None
        value = self.get("plans", K.run_key(run_id))
        why = port.unplanned(run_id, found, None if value is None else plans.step_ids(value))
        if why is not None:
            raise self._corrupt("steps", K.run_key(run_id), why)
        return found

    def step(self, run_id: str, step_id: str) -> dict | None:
        return self.get("steps", K.step_key(run_id, step_id))

    def step_counts(self, run_id: str) -> dict[str, int] | None:
        try:
            return self.get("tallies", K.run_key(run_id))
        except CorruptRecord:  # derived data: the step records are counted instead (`weft doctor` drops it)
            return None

    def step_states(self, run_id: str) -> dict[str, str]:
        """From each record's first field where it is the state (records are written so), else decoded."""
        prefix, found = K.run_key(run_id), {}
        with self._raw.cursor(db=self._dbs["steps"]) as cur:
            pairs = takewhile(lambda kv: kv[0].startswith(prefix), cur.iternext() if cur.set_range(prefix) else ())
            for key, raw, state in codec.leading_texts(pairs, b"state"):
                try:
                    sid = K.step_of(key)
                except UnicodeDecodeError:
                    raise self._corrupt("steps", key, "the step id does not parse") from None
                found[sid] = self._decode("steps", key, raw)["state"] if state is None else state
        return found

    def put_step(self, run_id: str, step_id: str, rec: dict) -> None:
        was = self._put_derived(
            "steps", K.step_key(run_id, step_id), rec, "timers", partial(K.timer_keys, run_id, step_id)
        )
        self._moves().move(run_id, was, rec["state"])

    def put_new_steps(self, run_id: str, step_ids: Iterable[str], rec: dict) -> None:
        """`rec` encoded once and put at every key; a record without timers (a new step's) is then known to the
        writer as one that derives none, so the first change of each step decodes nothing either."""
        if K.timer_keys(run_id, "", rec):
            return super().put_new_steps(run_id, step_ids, rec)
        raw, db = codec.encode(rec), self._dbs["steps"]
        self._derived["steps"].blank = raw, rec["state"]
        for sid in step_ids:
            if not self._raw.put(K.step_key(run_id, sid), raw, db=db, overwrite=False):
                raise ValueError(f"step {sid} of run {run_id} has a record already")
        self._moves().add(run_id, rec["state"], len(step_ids))

    def _put_derived(self, db: str, key: bytes, value: dict, entries_db: str, entries: Callable) -> str | None:
        """Write record `value` at `key` of `db`; the entries of `entries_db` derived from the record
        stored before (`entries(record)`) become those derived from `value`. The state of the record stored
        before (None: there was none), known without decoding it when this process wrote it."""
        raw = self._raw.get(key, db=self._dbs[db])
        known = self._derived[db]
        if raw is None:
            before, state = frozenset(), None
        else:
            found = known.get(key, raw)
            if found is None:
                old = self._decode(db, key, raw)
                found = entries(old), old.get("state")
            before, state = found
        after = entries(value)
        if before or after:
            target = self._dbs[entries_db]
            for k in before - after:
                self._raw.delete(k, db=target)
            for k in after - before:
                self._raw.put(k, _NO_VALUE, db=target)
        raw = codec.encode(value)
        self._raw.put(key, raw, db=self._dbs[db])
        known.put(key, raw, after, value.get("state"))
        return state

    def _timers(self, run_id: str, step_id: str, old: dict | None, new: dict | None) -> None:
        before, after = K.timer_keys(run_id, step_id, old), K.timer_keys(run_id, step_id, new)
        for key in before - after:
            self.delete("timers", key)
        for key in after - before:
            self._raw.put(key, _NO_VALUE, db=self._dbs["timers"])

    def run_ids(self, prefix: str = "") -> Iterator[str]:
        for key in self.keys("runs", prefix.encode()):
            if K.run_id_of(key) is None or len(key) != K.ID_LEN:
                self._skip("runs", key, "the key is not a run id")
            else:
                yield key.decode()

    def names_run(self, db: str, key: bytes, rid: str | None) -> bool:
        """Whether `rid` (read from `key` of `db`) is an existing run's id; if not, the entry is reported."""
        if rid is None:
            self._skip(db, key, "the key does not parse")
            return False
        if not self.has("runs", K.run_key(rid)):
            self._skip(db, key, f"it names run {rid}, which does not exist")
            return False
        return True

    def children(self, parent: str, step: str | None = None) -> list[tuple[int, str]]:
        found = []
        for key in self.keys("indexes", K.child_prefix(parent, step)):
            if len(key) >= len(K.child_prefix(parent)) + 4 + K.ID_LEN:
                index, rid = K.child_of(key)
                if self.names_run("indexes", key, K.run_id_of(rid.encode())):
                    found.append((index, rid))
            else:
                self._skip("indexes", key, "the key does not parse")
        return found

    def index(self, field: str, value: str | None = None, reverse: bool = False) -> Iterator[str]:
        for key in self.keys("indexes", K.index_prefix(field, value), reverse):
            rid = K.run_id_of(key[-K.ID_LEN :])
            if self.names_run("indexes", key, rid):
                yield rid

    def search(self, q: Query) -> Page:
        return catalog.search(self, q)

    def delete_run(self, run_id: str) -> None:
        self._big_plan = None
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
        prefix = K.run_key(run_id)
        key = self._last("events", prefix, K.after(prefix))
        return 0 if key is None else K.seq_of(key)

    def append_events(self, run_id: str, events: list[dict]) -> int:
        """Append `events` to the run's history, and one feed entry that gives them their places."""
        seq = self.last_seq(run_id)
        if not events:
            return seq
        db = self._dbs["events"]
        for event in events:
            seq += 1
            self._raw.put(K.seq_key(run_id, seq), codec.encode(event), db=db, overwrite=False)
        count = len(events)
        last = self.feed_end() + count
        entry = codec.encode(K.feed_entry(run_id, seq - count + 1, last - count + 1, count))
        self._raw.put(K.place_key(last), entry, db=self._dbs["feed"], append=True)
        return seq

    def feed(self, after: int = 0, limit: int = 1000) -> list[tuple[int, str, int]]:
        found: list[tuple[int, str, int]] = []
        if limit <= 0:
            return found
        for key, entry in self.scan_from("feed", K.place_key(after + 1)):  # from the entry holding after + 1
            span = K.feed_span(entry)
            if span is None or key != K.feed_key(span):
                self._skip("feed", key, "the entry does not parse or is not under its place")
                continue
            place, rid, seq, count = span
            for i in range(max(0, after + 1 - place), count):
                found.append((place + i, rid, seq + i))
                if len(found) >= limit:
                    return found
        return found

    def feed_end(self) -> int:
        key = self._last("feed")
        return 0 if key is None else K.place_of(key) or 0

    def trim_feed(self, limit: int) -> int:
        last = K.place_key(self.feed_end())  # kept, whatever it names: places go on from it
        drop = []
        for key, entry in self.scan_from("feed", b""):
            named = isinstance(entry, list) and entry and self.has("runs", K.run_key(str(entry[0])))
            if len(drop) >= limit or key == last or named:
                break
            drop.append(key)
        for key in drop:
            self.delete("feed", key)
        return len(drop)

    def events(self, run_id: str, after: int = 0, limit: int | None = None) -> list[tuple[int, dict]]:
        """The history after `after`; CorruptRecord if its numbers are not after+1, after+2, ... (a damaged key)."""
        low, high = K.seq_key(run_id, after + 1), K.after(K.run_key(run_id))
        found: list[tuple[int, dict]] = []
        for key in self.walk("events", low, high):
            if limit is not None and len(found) >= limit:
                break
            if len(key) != K.ID_LEN + 8 or K.seq_of(key) != after + len(found) + 1:
                missing = after + len(found) + 1
                raise self._corrupt("events", key, f"the history of run {run_id} has no event {missing}")
            found.append((after + len(found) + 1, self.get("events", key)))
        return found

    # -- leases, locks, requests -------------------------------------------------------------

    def lease(self, run_id: str) -> dict | None:
        """A copy of the lease; one whose stored bytes were decoded lately is not decoded again (a driver reads
        its own at every commit, and those bytes change only with each heartbeat)."""
        key = K.run_key(run_id)
        raw = self._raw.get(key, db=self._dbs["leases"])
        if raw is None:
            return None
        try:
            return dict(_lease_of(raw))
        except codec.BadValue:
            return self._decode("leases", key, raw)  # (raises CorruptRecord naming the key)

    def put_lease(self, run_id: str, lease: dict) -> None:
        self.put("leases", K.run_key(run_id), lease)

    def drop_lease(self, run_id: str) -> None:
        self.delete("leases", K.run_key(run_id))

    def leases(self) -> Iterator[tuple[str, dict]]:
        for key, lease in self.scan("leases"):
            if key.startswith(K.LOCK):
                continue
            if K.run_id_of(key) is not None and len(key) == K.ID_LEN:
                yield key.decode(), lease
            else:
                self._skip("leases", key, "the key is not a run id")

    def lock_holder(self, name: str) -> str | None:
        return self.get("leases", K.lock_key(name))

    def put_lock(self, name: str, run_id: str | None) -> None:
        if run_id is None:
            self.delete("leases", K.lock_key(name))
        else:
            self.put("leases", K.lock_key(name), run_id)

    def locks(self) -> dict[str, str]:
        return {key[len(K.LOCK) :].decode("utf-8", "replace"): holder for key, holder in self.scan("leases", K.LOCK)}

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
            if len(key) != len(K.QUEUE_AT) + 8 + K.ID_LEN:
                self._skip("queue", key, "the key does not parse")
                continue
            if K.queue_time(key) > now * 1_000_000 or len(found) >= limit:
                break
            rid = K.run_id_of(key[-K.ID_LEN :])
            if rid is None or self.get("queue", K.queue_of(rid)) != K.queue_time(key):
                self._skip("queue", key, f"run {rid} is not queued for that time, so it cannot be claimed")
                continue
            found.append(rid)
        return found

    # -- timers ------------------------------------------------------------------------------

    def due(self, now: float) -> Iterator[Timer]:
        for key in self.keys("timers"):
            try:
                timer = K.timer_of(key)
            except (ValueError, struct.error):  # UnicodeDecodeError is a ValueError
                self._skip("timers", key, "the key does not parse")
                continue
            if timer.due > now:
                return
            if K.run_id_of(timer.run.encode()) is None:
                self._skip("timers", key, "the key does not parse")
            else:
                yield timer

    # -- meta and checks ---------------------------------------------------------------------

    def schedule(self, name: str) -> dict | None:
        return self.get("schedules", name.encode())

    def put_schedule(self, rec: dict) -> None:
        self.put("schedules", rec["name"].encode(), rec)

    def drop_schedule(self, name: str) -> None:
        self.delete("schedules", name.encode())

    def schedules(self) -> list[dict]:
        found = []
        for key, rec in self.scan("schedules"):
            if isinstance(rec, dict) and rec.get("name", "").encode() == key:
                found.append(rec)
            else:
                self._skip("schedules", key, "the record is not the schedule its key names")
        return found

    def meta(self, name: str) -> Any:
        return self.get("meta", K.meta_key(name))

    def put_meta(self, name: str, value: Any) -> None:
        self.put("meta", K.meta_key(name), value)

    def problems(self) -> list[str]:
        return health.problems(self)

    def damage(self) -> list[str]:
        return health.damage(self)

    def repair(self) -> list[str]:
        return health.repair(self)

    def _corrupt(self, db: str, key: bytes, why: str) -> CorruptRecord:
        return CorruptRecord(corrupt.entry(self.store.path, db, key, why))

    def _skip(self, db: str, key: bytes, why: str) -> None:
        corrupt.skipped(self.store.path, db, key, why)
