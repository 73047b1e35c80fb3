"""The store port: every record-level operation the runtime needs, whatever holds the records.

A backend implements Store and Txn (LMDB in lmdb/, in memory in memory.py)
and passes tests/test_store_contract.py. The runtime speaks in records only:
runs, plans, steps, events, leases, locks, requests, the work queue, timers,
queries and pages. How they are keyed and indexed is the backend's business.

Records are plain data (weft.runtime.records): what a read returns is a fresh
copy the caller may change. Promises every backend keeps:

- `write(fn)` runs `fn` in one transaction: its changes are visible to nobody
  until `fn` returns and they are committed (durably, on a backend that keeps
  records beyond the process); if `fn` raises, nothing of it is applied. `fn`
  may be called more than once (a backend may retry). Writes are serialized.
- `read()` gives a consistent snapshot: commits made while it is open are not
  seen. Readers never wait for a writer's commit (LMDB's only pause is while
  it grows its map, a rare doubling).
- Run ids sort in creation order (weft.runtime.ids); lists of runs are in id
  order unless said otherwise, steps in step id order, events in seq order.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, TypeVar

from weft.errors import WeftError
from weft.runtime import ids
from weft.runtime.core.timers import Timer
from weft.runtime.stores.query import Page, Query

T = TypeVar("T")
FIND_SHOWN = 5  # ids an ambiguous prefix error names


class StoreError(WeftError):
    """The store cannot be opened, read or written."""


class CorruptRecord(StoreError):
    """A stored value failed its checksum or does not decode."""


class StoreFull(StoreError):
    """The store reached its maximum size (WEFT_STORE_MAX_MB) or the disk is full."""


def unplanned(run_id: str, steps: dict, want: list[str] | None) -> str | None:
    """Why a run's step records do not match its plan's step ids `want` (a damaged key), or None if they do
    (or the run has no plan: `want` is None)."""
    if want is None:
        return None
    for sid in steps.keys() - set(want):
        return f"run {run_id}'s plan has no step {sid!r}"
    for sid in (s for s in want if s not in steps):
        return f"run {run_id} has no record of step {sid!r}"
    return None


class Outline:
    """The steps of a run's Plan in plan order, without their specs: their ids, and their phases and kinds as
    runs of [value, how many steps in a row] (a 50,000-step fan-out's phases are one run); `steps()` expands
    them."""

    __slots__ = ("ids", "kinds", "phases")

    def __init__(self, ids: list[str], phases: list[list], kinds: list[list]) -> None:
        self.ids, self.phases, self.kinds = ids, phases, kinds

    @classmethod
    def of(cls, specs: list[dict]) -> Outline:
        return cls([s["id"] for s in specs], runs(s["phase"] for s in specs), runs(s["kind"] for s in specs))

    def __len__(self) -> int:
        return len(self.ids)

    def steps(self) -> list[tuple[str, str, str]]:
        """(id, phase, kind) of each step."""
        return list(zip(self.ids, _expand(self.phases), _expand(self.kinds)))


def runs(values: Iterable[str]) -> list[list]:
    """[[value, how many in a row], ...] of `values`."""
    found: list[list] = []
    for v in values:
        if found and found[-1][0] == v:
            found[-1][1] += 1
        else:
            found.append([v, 1])
    return found


def _expand(runs: list[list]) -> list[str]:
    return [v for v, n in runs for _ in range(n)]


class Txn(ABC):
    """One transaction (read-only inside `Store.read()`)."""

    store: Store

    # -- runs, plans, steps ----------------------------------------------------------------

    @abstractmethod
    def run(self, run_id: str) -> dict | None: ...

    @abstractmethod
    def put_run(self, run: dict) -> None:
        """Write a run record (keyed by run["id"]); the backend updates what it derives from it."""

    @abstractmethod
    def plan(self, run_id: str) -> dict | None: ...

    @abstractmethod
    def put_plan(self, run_id: str, plan: dict) -> None: ...

    @abstractmethod
    def steps(self, run_id: str) -> dict[str, dict]:
        """The run's step records by step id, in step id order.

        CorruptRecord if they are not one per step of the run's plan (`unplanned`).
        """

    @abstractmethod
    def put_step(self, run_id: str, step_id: str, rec: dict) -> None:
        """Write a step record; the backend brings the step's timers (core.timers.step_timers) up to date."""

    def put_new_steps(self, run_id: str, step_ids: Iterable[str], rec: dict) -> None:
        """Write record `rec` for each of `step_ids`, none of which has one yet (a new run's steps): as many
        `put_step`s, which a backend may do in one pass (the record encoded once)."""
        for sid in step_ids:
            self.put_step(run_id, sid, rec)

    # Reads of a part of a run, for pages of a big one; a backend may answer them without decoding the rest.

    def step(self, run_id: str, step_id: str) -> dict | None:
        """One step record; None if the run has no step `step_id`."""
        return self.steps(run_id).get(step_id)

    def step_states(self, run_id: str) -> dict[str, str]:
        """The state of each of the run's steps, by step id, in step id order."""
        return {sid: rec["state"] for sid, rec in self.steps(run_id).items()}

    def step_counts(self, run_id: str) -> dict[str, int] | None:
        """How many of the run's step records are in each state, if the backend keeps that count as it writes
        them (else None: count `step_states`). A count that disagrees with the Plan's steps is not to be used."""
        return None

    def plan_outline(self, run_id: str) -> tuple[dict, Outline] | None:
        """The run's Plan without its steps, and the outline of its steps; None if no run."""
        plan = self.plan(run_id)
        if plan is None:
            return None
        return {k: v for k, v in plan.items() if k != "steps"}, Outline.of(plan["steps"])

    def plan_steps(self, run_id: str, step_ids: Iterable[str]) -> dict[str, dict]:
        """The Plan's specs of the steps `step_ids` (those it has), in plan order."""
        want = set(step_ids)
        return {s["id"]: s for s in (self.plan(run_id) or {}).get("steps", ()) if s["id"] in want}

    @abstractmethod
    def run_ids(self, prefix: str = "") -> Iterator[str]:
        """Ids of the runs whose id starts with `prefix`, oldest first."""

    @abstractmethod
    def children(self, parent: str, step: str | None = None) -> list[tuple[int, str]]:
        """(item index, run id) of the sub-runs step `step` of run `parent` made, by index.

        Without `step`, those of every step, by step id, then index.
        """

    @abstractmethod
    def index(self, field: str, value: str | None = None, reverse: bool = False) -> Iterator[str]:
        """Run ids in `field`'s order (`query.sort_key`), or those with `value` in it, in id order.

        Fields: started, ended (ended runs only), state, flow, tag, user, label, result (ended runs only).
        """

    @abstractmethod
    def search(self, q: Query) -> Page:
        """One page of the runs matching every filter of `q`, in its sort order (see query.py)."""

    @abstractmethod
    def delete_run(self, run_id: str) -> None:
        """Remove a run and all it owns: plan, steps, timers, history, lease, requests, queue entry, its locks."""

    def find_run(self, text: str) -> str:
        """The id of the one run whose id is `text` or starts with it; StoreError otherwise."""
        if not isinstance(text, str):
            raise StoreError(f"a run id is text, not {type(text).__name__}")
        prefix = ids.normalize(text)
        if not ids.is_id_text(prefix):
            raise StoreError(f"{text!r} is not a run id")
        found = []
        for run_id in self.run_ids(prefix):
            found.append(run_id)
            if run_id == prefix or len(found) > FIND_SHOWN:
                break
        if prefix in found:
            return prefix
        if len(found) == 1:
            return found[0]
        if not found:
            raise StoreError(f"no run {text!r} in {self.store.path}")
        more = ", ..." if len(found) > FIND_SHOWN else ""
        raise StoreError(f"run id prefix {text!r} is ambiguous: {', '.join(found[:FIND_SHOWN])}{more}")

    # -- history ---------------------------------------------------------------------------

    @abstractmethod
    def last_seq(self, run_id: str) -> int:
        """The seq of the run's last event, 0 before the first."""

    @abstractmethod
    def append_events(self, run_id: str, events: list[dict]) -> int:
        """Append events after the run's last one (seqs 1, 2, 3... without gaps); returns the new last seq.

        Each event also gets the next place in the store's feed (see `feed`), in the same transaction.
        """

    @abstractmethod
    def events(self, run_id: str, after: int = 0, limit: int | None = None) -> list[tuple[int, dict]]:
        """(seq, event) of the run's events with a seq greater than `after`, in order; at most `limit` of them."""

    @abstractmethod
    def feed(self, after: int = 0, limit: int = 1000) -> list[tuple[int, str, int]]:
        """The store's feed: (place, run id, seq) of up to `limit` events of every run, in commit order.

        Places count from 1 and only grow; an event's place is fixed when it is
        appended. Entries stay when their run is deleted (`trim_feed` drops them).
        """

    @abstractmethod
    def feed_end(self) -> int:
        """The place of the last event appended to the feed (0 before the first)."""

    @abstractmethod
    def trim_feed(self, limit: int) -> int:
        """Drop up to `limit` entries at the head of the feed that name runs no longer stored; how many went."""

    # -- ownership: leases, locks, requests ------------------------------------------------

    @abstractmethod
    def lease(self, run_id: str) -> dict | None: ...

    @abstractmethod
    def put_lease(self, run_id: str, lease: dict) -> None: ...

    @abstractmethod
    def drop_lease(self, run_id: str) -> None: ...

    @abstractmethod
    def leases(self) -> Iterator[tuple[str, dict]]:
        """(run id, lease) of every leased run, in id order."""

    @abstractmethod
    def lock_holder(self, name: str) -> str | None: ...

    @abstractmethod
    def put_lock(self, name: str, run_id: str | None) -> None:
        """Record `run_id` as the holder of lock `name`; None releases it."""

    @abstractmethod
    def locks(self) -> dict[str, str]:
        """Every lock name and the run recorded as holding it, by name."""

    @abstractmethod
    def requests(self, run_id: str) -> list[tuple[str, dict]]:
        """(name, request) of the requests left for the run's owner, by name."""

    @abstractmethod
    def put_request(self, run_id: str, name: str, request: dict) -> None: ...

    @abstractmethod
    def drop_request(self, run_id: str, name: str) -> None: ...

    # -- the work queue: runs a worker should pick up, and from when -----------------------

    @abstractmethod
    def enqueue(self, run_id: str, when: float) -> None:
        """Queue `run_id` for `when`; a run queued already keeps the earlier time."""

    @abstractmethod
    def dequeue(self, run_id: str) -> None: ...

    @abstractmethod
    def queued(self, run_id: str) -> float | None:
        """When `run_id` is queued for, or None."""

    @abstractmethod
    def due_runs(self, now: float, limit: int) -> list[str]:
        """Up to `limit` queued runs whose time has come, the longest waiting first (then by id)."""

    # -- timers, derived from the step records ---------------------------------------------

    @abstractmethod
    def due(self, now: float) -> Iterator[Timer]:
        """The timers of every run due at `now`, earliest first (then by run, step, kind); attempt 0.

        Due times are kept to the microsecond.
        """

    def next_due(self) -> Timer | None:
        """The earliest timer in the store, or None."""
        return next(self.due(float("inf")), None)

    # -- meta and checks -------------------------------------------------------------------

    # -- schedules --------------------------------------------------------------------------

    @abstractmethod
    def schedule(self, name: str) -> dict | None:
        """The schedule record named `name` (weft.runtime.core.schedule), None if there is none."""

    @abstractmethod
    def put_schedule(self, rec: dict) -> None:
        """Write a schedule record under its `name`."""

    @abstractmethod
    def drop_schedule(self, name: str) -> None: ...

    @abstractmethod
    def schedules(self) -> list[dict]:
        """Every schedule record, by name."""

    # -- store-wide values ---------------------------------------------------------------------

    @abstractmethod
    def meta(self, name: str) -> Any:
        """A store-wide value (None if never set)."""

    @abstractmethod
    def put_meta(self, name: str, value: Any) -> None: ...

    @abstractmethod
    def problems(self) -> list[str]:
        """What the backend derived (indexes, timers, queue) and disagrees with the records; [] if sound."""

    @abstractmethod
    def damage(self) -> list[str]:
        """Records and entries that name nothing or cannot be read, one line each; [] if none.

        Keys that do not parse, plans, steps, events, leases, requests and locks of no run (or, for a
        step, of no step of its plan), a run without its plan, a history with a gap, values that do not decode.
        """

    @abstractmethod
    def repair(self) -> list[str]:
        """Rebuild what the backend derives (indexes, timers, queue) from the records, put back records a
        damaged key misplaced where that is certain, drop entries pointing at nothing; what was done.

        Never deletes a run, plan, step or event record.
        """


@dataclass(frozen=True)
class Checkup:
    """What `Store.checkup` found (`problems`), did (`repairs`), and what is still wrong (`remaining`)."""

    path: str
    problems: tuple[str, ...]
    repairs: tuple[str, ...] = ()
    remaining: tuple[str, ...] = ()

    @property
    def healthy(self) -> bool:
        return not self.remaining


class Store(ABC):
    """An open store. Use as a context manager, or call close()."""

    path: str

    @abstractmethod
    def read(self) -> AbstractContextManager[Txn]:
        """A consistent read-only snapshot of the store, for the `with` block."""

    @abstractmethod
    def write(self, fn: Callable[[Txn], T]) -> T:
        """Run `fn` in a write transaction and commit it durably; returns what `fn` returned.

        Not from inside a `read()` of the same store in this thread (a backend may wait for its readers).
        """

    @abstractmethod
    def close(self) -> None: ...

    def search(self, q: Query) -> Page:
        """One page of runs for `q` (Txn.search in a snapshot of its own)."""
        with self.read() as t:
            return t.search(q)

    def checkup(self, repair: bool = False) -> Checkup:
        """Check every record and entry against each other (Txn.damage, Txn.problems); with `repair`, repair and check again."""
        with self.read() as t:
            found = tuple(t.damage() + t.problems())
        if not repair or not found:
            return Checkup(self.path, found, (), found)
        done = tuple(self.write(lambda t: t.repair()))
        with self.read() as t:
            return Checkup(self.path, found, done, tuple(t.damage() + t.problems()))

    def hand_over(self, run_id: str, name: str, request: dict) -> None:
        """Leave a request (a signal) for a run that workers serve, and queue the run for them now."""

        def write(t: Txn) -> None:
            t.put_request(run_id, name, request)
            t.enqueue(run_id, time.time())

        self.write(write)

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
