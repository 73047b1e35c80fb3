"""The in-memory store: the port's semantics with no disk, for tests and embedding (`memory://NAME`).

The store's state is a dict of tables that is never changed in place: a
write transaction copies the tables (and the per-run tables inside them) it
changes, and its commit swaps the new state in with one assignment. So a
reader's snapshot is the state it started with, a write that raises leaves
nothing behind, and readers take no lock. Values are kept as msgpack bytes,
as a disk store keeps them: what a read returns is a fresh copy, and a value
that is not plain data fails the write as it would on disk.

Every Store opened on one name in a process shares one state, freed when the
last of them closes. Nothing is durable beyond the process.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Any, Callable, Iterator, TypeVar

from weft.runtime import records
from weft.runtime.core.states import RUN_ENDED, outcome
from weft.runtime.stores import port, query
from weft.runtime.core.timers import Timer, TimerKind, step_timers
from weft.runtime.stores.port import StoreError
from weft.runtime.stores.query import Page, Query, micros

SCHEME = "memory://"
T = TypeVar("T")
_TABLES = (
    "runs",
    "plans",
    "steps",
    "events",
    "leases",
    "locks",
    "requests",
    "queue",
    "timers",
    "meta",
    "feed",
    "schedules",
    "children",
)
_CHUNK = 1024  # feed entries per tuple: an append copies one chunk, not the whole feed
_PER_RUN = frozenset({"steps", "requests", "timers"})  # tables of {run: {key: value}}
# "children" is {parent run: {sub-run: (step as bytes, index)}}, kept by put_run and delete_run


class _Data:
    def __init__(self) -> None:
        self.state: dict[str, dict] = {name: {} for name in _TABLES}
        self.writer = threading.Lock()
        self.handles = 0
        self.decoded: dict[str, tuple[bytes, dict]] = {}  # run id -> (its stored bytes, them decoded), for scans


_stores: dict[str, _Data] = {}
_stores_guard = threading.Lock()


class Store(port.Store):
    """An in-memory store named by `path` (`memory://NAME`)."""

    def __init__(self, path: str, create: bool = True) -> None:
        self.path = path if path.startswith(SCHEME) else SCHEME + path
        with _stores_guard:
            data = _stores.get(self.path)
            if data is None:
                if not create:
                    raise StoreError(f"no store at {self.path}")
                data = _stores[self.path] = _Data()
            data.handles += 1
        self._data: _Data | None = data

    def _opened(self) -> _Data:
        if self._data is None:
            raise StoreError(f"store {self.path} is closed")
        return self._data

    def close(self) -> None:
        data, self._data = self._data, None
        if data is None:
            return
        with _stores_guard:
            data.handles -= 1
            if data.handles == 0:
                del _stores[self.path]

    @contextmanager
    def read(self) -> Iterator[Txn]:
        yield Txn(self, self._opened().state, writable=False)

    def write(self, fn: Callable[[Txn], T]) -> T:
        data = self._opened()
        with data.writer:
            txn = Txn(self, data.state, writable=True)
            try:
                result = fn(txn)
            except records.Unstorable as e:
                raise StoreError(f"cannot write to store {self.path}: value cannot be stored: {e}") from None
            data.state = txn.committed()
            return result


class Txn(port.Txn):
    def __init__(self, store: Store, state: dict[str, dict], writable: bool) -> None:
        self.store = store
        self._base = state
        self._writable = writable
        self._changed: dict[str, dict] = {}  # table -> this transaction's copy
        self._copied: set[tuple[str, str]] = set()  # (per-run table, run) copied already

    def committed(self) -> dict[str, dict]:
        """The state with this transaction's changes."""
        return {**self._base, **self._changed}

    # -- tables ------------------------------------------------------------------------------

    def _table(self, name: str) -> dict:
        table = self._changed.get(name)
        return self._base[name] if table is None else table

    def _mut(self, name: str) -> dict:
        if not self._writable:
            raise StoreError(f"cannot write to store {self.store.path}: a read transaction")
        table = self._changed.get(name)
        if table is None:
            table = self._changed[name] = dict(self._base[name])
        return table

    def _mut_run(self, name: str, run_id: str) -> dict:
        """The writable {key: value} table of one run in a per-run table."""
        table = self._mut(name)
        if (name, run_id) not in self._copied:
            table[run_id] = dict(table.get(run_id) or {})
            self._copied.add((name, run_id))
        return table[run_id]

    def _drop_run(self, name: str, run_id: str) -> None:
        if run_id in self._table(name):
            del self._mut(name)[run_id]
            self._copied.discard((name, run_id))

    def _get(self, name: str, key: str) -> Any:
        raw = self._table(name).get(key)
        return None if raw is None else records.unpack(raw)

    def _put(self, name: str, key: str, value: Any) -> None:
        self._mut(name)[key] = records.pack(value)

    def _runs(self) -> Iterator[dict]:
        """Every run record, decoded once per version: for scans that only read them (never hand them out)."""
        decoded = self.store._opened().decoded
        for run_id, raw in self._table("runs").items():
            hit = decoded.get(run_id)
            if hit is None or hit[0] is not raw:
                hit = decoded[run_id] = (raw, records.unpack(raw))
            yield hit[1]

    # -- runs, plans, steps ------------------------------------------------------------------

    def run(self, run_id: str) -> dict | None:
        return self._get("runs", run_id)

    def put_run(self, run: dict) -> None:
        self._put("runs", run["id"], run)
        above = run.get("parent")
        if above:
            entry = (above["step"].encode(), above["index"])
            if (self._table("children").get(above["run"]) or {}).get(run["id"]) != entry:
                self._mut_run("children", above["run"])[run["id"]] = entry

    def plan(self, run_id: str) -> dict | None:
        return self._get("plans", run_id)

    def put_plan(self, run_id: str, plan: dict) -> None:
        self._put("plans", run_id, plan)

    def steps(self, run_id: str) -> dict[str, dict]:
        steps = self._table("steps").get(run_id) or {}
        plan = self.plan(run_id)
        why = port.unplanned(run_id, steps, None if plan is None else [s["id"] for s in plan.get("steps", ())])
        if why is not None:
            raise port.CorruptRecord(f"corrupt store {self.store.path}: {why}")
        return {sid: records.unpack(steps[sid]) for sid in sorted(steps)}

    def put_step(self, run_id: str, step_id: str, rec: dict) -> None:
        raw = records.pack(rec)
        self._mut_run("steps", run_id)[step_id] = raw
        timers = _timers(step_id, rec)
        if timers:
            self._mut_run("timers", run_id)[step_id] = timers
        elif step_id in (self._table("timers").get(run_id) or {}):
            del self._mut_run("timers", run_id)[step_id]

    def run_ids(self, prefix: str = "") -> Iterator[str]:
        return iter(sorted(rid for rid in self._table("runs") if rid.startswith(prefix)))

    def children(self, parent: str, step: str | None = None) -> list[tuple[int, str]]:
        wanted = None if step is None else step.encode()
        found = sorted(
            (at, index, rid)
            for rid, (at, index) in (self._table("children").get(parent) or {}).items()
            if wanted is None or at == wanted
        )
        return [(index, rid) for _, index, rid in found]

    def index(self, field: str, value: str | None = None, reverse: bool = False) -> Iterator[str]:
        if field in query.NEWEST_FIRST:
            keys = [query.sort_key(r, field) for r in self._runs() if field == "started" or r.get("ended") is not None]
        elif value is None:  # by value, then id
            keys = [(v, r["id"]) for r in self._runs() for v in _values(r, field)]
        else:
            wanted = value.encode()
            keys = [(b"", r["id"]) for r in self._runs() if wanted in _values(r, field)]
        return iter([rid for _, rid in sorted(keys, reverse=reverse)])

    def search(self, q: Query) -> Page:
        query.check(q)
        runs = [r for r in self._runs() if query.fits(r, q)]
        if q.parent is not None:
            parent = self.find_run(q.parent)
            runs = [r for r in runs if (r.get("parent") or {}).get("run") == parent]
        if q.lock is not None:
            holder = self._table("locks").get(q.lock)
            runs = [r for r in runs if r["id"] == holder and r["state"] not in RUN_ENDED]
        found = query.order(runs, q)
        page = [self.run(r["id"]) for r in found[q.offset : q.offset + q.limit]]  # fresh copies, as every read
        return Page(page, len(found), q.offset)

    def delete_run(self, run_id: str) -> None:
        run = self.run(run_id)
        if run is None:
            return
        for name in ("plans", "events", "leases", "queue", *_PER_RUN):
            self._drop_run(name, run_id)
        for name in run.get("locks") or ():
            if self.lock_holder(name) == run_id:
                self.put_lock(name, None)
        above = run.get("parent")
        if above and run_id in (self._table("children").get(above["run"]) or {}):
            del self._mut_run("children", above["run"])[run_id]
        self._drop_run("children", run_id)
        del self._mut("runs")[run_id]
        self.store._opened().decoded.pop(run_id, None)

    # -- history -----------------------------------------------------------------------------

    def last_seq(self, run_id: str) -> int:
        return len(self._table("events").get(run_id, ()))

    def append_events(self, run_id: str, events: list[dict]) -> int:
        packed = tuple(records.pack(e) for e in events)
        table = self._mut("events")
        first = len(table.get(run_id, ())) + 1
        table[run_id] = table.get(run_id, ()) + packed
        feed = self._mut("feed")
        chunks, end = list(feed.get("chunks", ())), feed.get("end", 0)
        for seq in range(first, len(table[run_id]) + 1):
            end += 1
            if not chunks or len(chunks[-1]) >= _CHUNK:
                chunks.append(())
            chunks[-1] += ((end, run_id, seq),)
        feed["chunks"], feed["end"] = tuple(chunks), end
        return len(table[run_id])

    def feed(self, after: int = 0, limit: int = 1000) -> list[tuple[int, str, int]]:
        found: list[tuple[int, str, int]] = []
        for chunk in self._table("feed").get("chunks", ()):
            if len(found) >= limit:
                break
            if chunk and chunk[-1][0] > after:
                found += [entry for entry in chunk if entry[0] > after][: limit - len(found)]
        return found

    def feed_end(self) -> int:
        return self._table("feed").get("end", 0)

    def trim_feed(self, limit: int) -> int:
        entries = [e for chunk in self._table("feed").get("chunks", ()) for e in chunk]
        runs, end = self._table("runs"), self.feed_end()
        gone = 0
        while gone < min(limit, len(entries)) and entries[gone][0] != end and entries[gone][1] not in runs:
            gone += 1
        if gone:
            rest = entries[gone:]
            feed = self._mut("feed")
            feed["chunks"] = tuple(tuple(rest[i : i + _CHUNK]) for i in range(0, len(rest), _CHUNK))
        return gone

    def events(self, run_id: str, after: int = 0, limit: int | None = None) -> list[tuple[int, dict]]:
        stored = self._table("events").get(run_id, ())
        end = len(stored) if limit is None else min(len(stored), after + max(0, limit))
        return [(seq, records.unpack(stored[seq - 1])) for seq in range(after + 1, end + 1)]

    # -- leases, locks, requests -------------------------------------------------------------

    def lease(self, run_id: str) -> dict | None:
        return self._get("leases", run_id)

    def put_lease(self, run_id: str, lease: dict) -> None:
        self._put("leases", run_id, lease)

    def drop_lease(self, run_id: str) -> None:
        self._drop_run("leases", run_id)

    def leases(self) -> Iterator[tuple[str, dict]]:
        table = self._table("leases")
        return iter([(rid, records.unpack(table[rid])) for rid in sorted(table)])

    def lock_holder(self, name: str) -> str | None:
        return self._table("locks").get(name)

    def put_lock(self, name: str, run_id: str | None) -> None:
        if run_id is not None:
            self._mut("locks")[name] = run_id
        elif name in self._table("locks"):
            del self._mut("locks")[name]

    def locks(self) -> dict[str, str]:
        table = self._table("locks")
        return {name: table[name] for name in sorted(table)}

    def requests(self, run_id: str) -> list[tuple[str, dict]]:
        table = self._table("requests").get(run_id) or {}
        return [(name, records.unpack(table[name])) for name in sorted(table)]

    def put_request(self, run_id: str, name: str, request: dict) -> None:
        self._mut_run("requests", run_id)[name] = records.pack(request)

    def drop_request(self, run_id: str, name: str) -> None:
        if name in (self._table("requests").get(run_id) or {}):
            del self._mut_run("requests", run_id)[name]

    # -- the work queue ----------------------------------------------------------------------

    def enqueue(self, run_id: str, when: float) -> None:
        at = int(when * 1_000_000)
        queued = self._table("queue").get(run_id)
        if queued is None or at < queued:
            self._mut("queue")[run_id] = at

    def dequeue(self, run_id: str) -> None:
        self._drop_run("queue", run_id)

    def queued(self, run_id: str) -> float | None:
        at = self._table("queue").get(run_id)
        return None if at is None else at / 1_000_000

    def due_runs(self, now: float, limit: int) -> list[str]:
        waiting = sorted((at, rid) for rid, at in self._table("queue").items() if at <= now * 1_000_000)
        return [rid for _, rid in waiting[:limit]]

    # -- timers ------------------------------------------------------------------------------

    def due(self, now: float) -> Iterator[Timer]:
        entries = sorted(
            (at, run_id, sid, kind)
            for run_id, steps in self._table("timers").items()
            for sid, timers in steps.items()
            for at, kind in timers
        )
        for at, run_id, sid, kind in entries:
            if at / 1_000_000 > now:
                return
            yield Timer(at / 1_000_000, TimerKind(kind), sid, run=run_id)

    # -- meta and checks ---------------------------------------------------------------------

    def schedule(self, name: str) -> dict | None:
        return self._get("schedules", name)

    def put_schedule(self, rec: dict) -> None:
        self._put("schedules", rec["name"], rec)

    def drop_schedule(self, name: str) -> None:
        if name in self._table("schedules"):
            del self._mut("schedules")[name]

    def schedules(self) -> list[dict]:
        return [self._get("schedules", name) for name in sorted(self._table("schedules"))]

    def meta(self, name: str) -> Any:
        return self._get("meta", name)

    def put_meta(self, name: str, value: Any) -> None:
        self._put("meta", name, value)

    def problems(self) -> list[str]:
        return [line for line in self._checkup(fix=False) if line.startswith("timers of")]

    def damage(self) -> list[str]:
        return [line for line in self._checkup(fix=False) if not line.startswith("timers of")]

    def repair(self) -> list[str]:
        return self._checkup(fix=True)

    def _checkup(self, fix: bool) -> list[str]:
        """Keys here are the records' own: what can disagree is timers, and entries naming runs that are gone.

        Without `fix`, the problems; with it, what was repaired.
        """
        found, done = [], []
        runs = self._table("runs")
        timers = self._table("timers")
        for run_id, steps in self._table("steps").items():
            for sid, raw in steps.items():
                want = _timers(sid, records.unpack(raw))
                have = (timers.get(run_id) or {}).get(sid, frozenset())
                if want != have:
                    found.append(f"timers of step {run_id}/{sid}: {sorted(have)}, not {sorted(want)}")
                    if fix and run_id in runs:
                        self.put_step(run_id, sid, records.unpack(raw))
                        done.append(f"rebuilt the timers of step {run_id}/{sid}")
        for name in ("plans", "steps", "events"):
            found += [
                f"{name} of run {rid}, which does not exist (kept)" for rid in self._table(name) if rid not in runs
            ]
        found += [f"run {rid} has no plan" for rid in runs if rid not in self._table("plans")]
        for name in ("leases", "requests", "queue"):
            for rid in [rid for rid in self._table(name) if rid not in runs]:
                found.append(f"{name} entry of run {rid}, which does not exist")
                if fix:
                    self._drop_run(name, rid)
                    done.append(f"dropped {found[-1]}")
        for lock, rid in list(self._table("locks").items()):
            if rid not in runs or lock not in (self.run(rid).get("locks") or ()):
                found.append(f"lock entry {lock!r}: run {rid} does not hold it")
                if fix:
                    self.put_lock(lock, None)
                    done.append(f"dropped {found[-1]}")
        return done if fix else found


def _timers(step_id: str, rec: dict) -> frozenset[tuple[int, str]]:
    """(due µs, kind) of the timers a step record calls for."""
    return frozenset((micros(tm.due), str(tm.kind)) for tm in step_timers(step_id, rec))


def _values(run: dict, field: str) -> list[bytes]:
    """What run `run` has in field `field` of `Txn.index`, as the bytes it sorts by."""
    if field == "result":
        found = outcome(run)
        return [] if found is None else [found.encode()]
    if field == "tag":
        return [tag.encode() for tag in run.get("tags") or ()]
    value = (run.get(field) or "").encode()
    return [value[: query.LABEL_KEY_MAX] if field == "label" else value]
