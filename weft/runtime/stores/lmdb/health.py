"""`weft doctor` on an LMDB store: every key and value checked against the records, and the repair.

Checks, in order (each a pass over one kind of entry):

- every value decodes (its CRC holds);
- every run record sits under the key its id names;
- every plan, step, event, request and lease names an existing run (a step,
  a step of that run's plan); a run has its plan; a run's events are 1..n;
- indexes and timers are exactly what the run and step records call for, and
  a run's tally (tally.py) counts its step records' states;
- every queue entry has its twin (`at` and `of`) and names a run;
- every lock names an existing run holding it; meta keys are known ones;
- every schedule record sits under its name (moved back where it can be);
- every feed entry parses and sits under its place (moved back, or dropped: the history keeps the event).

A repair puts a misplaced record back where one flipped byte moved it from
(only when exactly one free place fits), renumbers a history whose numbers
lost their order, rebuilds indexes, timers, the queue and a tally that does
not count what it should (from the run's step records), and drops leases,
requests, locks, queue and meta entries that point at nothing. It never
deletes a run, plan, step or event record: what it cannot place stays reported.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any, Callable, Iterable

from weft.runtime import ids
from weft.runtime.core.states import RUN_ENDED
from weft.runtime.stores.lmdb import codec
from weft.runtime.stores.lmdb import keys as K
from weft.runtime.stores.lmdb.keys import run_id_of, shown
from weft.runtime.stores.lmdb.plans import step_ids as plan_step_ids

if TYPE_CHECKING:
    from weft.runtime.stores.lmdb.txn import Txn

META = ("format", "indexes")
_BAD = object()  # a value that does not decode
_RECORDS = ("plans", "steps", "events")  # never deleted by a repair


def _request_name(request: Any) -> str | None:
    """The name a request is stored under, from what it holds (None if it does not say)."""
    if not isinstance(request, dict):
        return None
    kind = request.get("kind")
    if kind == "cancel":
        return "cancel"
    if kind == "signal" and isinstance(request.get("name"), str):
        return "signal\0" + request["name"]
    if kind == "child" and isinstance(request.get("step"), str) and isinstance(request.get("index"), int):
        return f"child\0{request['step']}\0{request['index']}"
    return None


def _one_off(key: bytes, candidates: Iterable[bytes]) -> bytes | None:
    """The one candidate that differs from `key` in exactly one byte, or None (none, or several)."""
    found = [c for c in candidates if len(c) == len(key) and sum(a != b for a, b in zip(c, key)) == 1]
    return found[0] if len(found) == 1 else None


class _Checkup:
    """One pass of checks over a transaction; with `fix`, each problem is repaired where it can be."""

    def __init__(self, t: Txn, fix: bool) -> None:
        self.t, self.fix = t, fix
        self.found: list[str] = []
        self.done: list[str] = []

    def note(self, problem: str, repair: Callable[[], str | None] | None = None) -> None:
        self.found.append(problem)
        if self.fix and repair is not None:
            did = repair()
            if did:
                self.done.append(did)

    def values(self, db: str) -> dict[bytes, Any]:
        out = {}
        for key, raw in self.t.raw_items(db):
            try:
                out[key] = codec.decode(raw)
            except codec.BadValue:
                out[key] = _BAD
        return out

    def move(self, db: str, old: bytes, new: bytes) -> str:
        self.t.put_raw(db, new, self.t.get_raw(db, old))
        self.t.delete(db, old)
        return f"moved {shown(db, old)} to {shown(db, new)}"

    def drop(self, db: str, key: bytes) -> str:
        self.t.delete(db, key)
        return f"dropped {shown(db, key)}"

    # -- the passes ----------------------------------------------------------------------

    def run(self, damage: bool, derived: bool) -> None:
        """The checks of records and keys (`damage`), of indexes, timers and queue (`derived`), or both."""
        if damage:
            for db in K.DATABASES:
                if db == "feed":
                    continue  # its own pass: a feed entry can always be dropped
                for key, value in self.values(db).items():
                    if value is _BAD:
                        self.note(f"corrupt record {shown(db, key)} (its value does not decode)")
            self.runs()
        runs = {
            rid: v
            for k, v in self.values("runs").items()
            if (rid := run_id_of(k)) is not None and len(k) == K.ID_LEN and isinstance(v, dict)
        }
        if damage:
            self.owned(runs)
            self.histories(runs)
            self.locks(runs)
            self.queued(runs)
            self.meta()
            self.feed()
            self.schedules()
        if derived:
            self.derived(runs)
            self.queue(runs)

    def runs(self) -> None:
        records = self.values("runs")
        for key, run in records.items():
            rid = run.get("id") if isinstance(run, dict) else None
            if rid is not None and key == K.run_key(rid):
                continue
            if isinstance(rid, str) and ids.is_id_text(rid) and len(rid) == K.ID_LEN and K.run_key(rid) not in records:
                self.note(
                    f"run record {shown('runs', key)} names run {rid}",
                    lambda k=key, r=rid: self.move("runs", k, K.run_key(r)),
                )
            else:
                self.note(f"run record {shown('runs', key)} is under a key that is not its id")

    def owned(self, runs: dict[str, dict]) -> None:
        """Plans, steps, events, requests, leases and tallies: each names an existing run (and a step of its plan)."""
        plans = self.values("plans")
        step_ids = {
            rid: set(plan_step_ids(plan))
            for rid, plan in ((k.decode(), p) for k, p in plans.items() if run_id_of(k) in runs and isinstance(p, dict))
        }
        requests = self.values("requests")
        for db in ("plans", "steps", "events", "requests", "leases", "tallies"):
            present = set(self.values(db))
            for key in sorted(present):
                if db == "leases" and key.startswith(K.LOCK):
                    continue
                rid = run_id_of(key)
                if rid in runs and (db not in ("plans", "tallies") or len(key) == K.ID_LEN):
                    if db == "steps" and key[K.ID_LEN :].decode("utf-8", "replace") not in step_ids.get(rid, ()):
                        want = [K.step_key(rid, s) for s in step_ids.get(rid, ())]
                        self._orphan(
                            db,
                            key,
                            f"step record {shown(db, key)} is no step of run {rid}'s plan",
                            [w for w in want if w not in present],
                        )
                    elif db == "events" and len(key) != K.ID_LEN + 8:
                        self._orphan(db, key, f"history entry {shown(db, key)} has no event number", [])
                    elif db == "requests" and (name := _request_name(requests.get(key))) is not None:
                        if key != K.request_key(rid, name):
                            self._orphan(
                                db,
                                key,
                                f"request {shown(db, key)} is named for another request",
                                [K.request_key(rid, name)] if K.request_key(rid, name) not in present else [],
                            )
                    continue
                tail = key[K.ID_LEN :]
                want = [K.run_key(r) + tail for r in runs if K.run_key(r) + tail not in present]
                self._orphan(db, key, f"{db} entry {shown(db, key)} names no run", want)
        for rid in runs:
            if K.run_key(rid) not in plans:
                self.note(f"run {rid} has no plan")

    def _orphan(self, db: str, key: bytes, problem: str, candidates: list[bytes]) -> None:
        target = _one_off(key, candidates)
        if target is not None:
            self.note(problem, lambda: self.move(db, key, target))
        elif db in _RECORDS:
            self.note(problem + " (kept: no one place it fits)")
        else:
            self.note(problem, lambda: self.drop(db, key))

    def histories(self, runs: dict[str, dict]) -> None:
        """A run's events are numbered 1..n; events numbered past n fill its gaps, in order."""
        for rid in runs:
            keys = [k for k in self.t.keys("events", K.run_key(rid)) if len(k) == K.ID_LEN + 8]
            seqs = [K.seq_of(k) for k in keys]
            n = len(seqs)
            if seqs == list(range(1, n + 1)):
                continue
            gaps = sorted(set(range(1, n + 1)) - set(seqs))
            extra = sorted(s for s in seqs if s > n)

            def renumber(rid: str = rid, gaps: list[int] = gaps, extra: list[int] = extra) -> str:
                for old, new in zip(extra, gaps):
                    self.move("events", K.seq_key(rid, old), K.seq_key(rid, new))
                return f"renumbered the history of run {rid}: events {extra} are now {gaps}"

            self.note(f"history of run {rid} lacks events {gaps} (it has {extra})", renumber)

    def derived(self, runs: dict[str, dict]) -> None:
        want_index = set()
        for run in runs.values():
            try:
                want_index |= K.index_keys(run)
            except (KeyError, TypeError, AttributeError):
                self.note(f"run record {run.get('id')!r} lacks fields its index entries need")
        want_timers, states = set(), {}
        for key, rec in self.values("steps").items():
            rid = run_id_of(key)
            if rid is not None and isinstance(rec, dict):
                want_timers |= K.timer_keys(rid, key[K.ID_LEN :].decode("utf-8", "replace"), rec)
                states.setdefault(rid, Counter())[rec.get("state")] += 1
        for key, tally in self.values("tallies").items():
            rid = run_id_of(key)
            counted = dict(sorted(states.get(rid, {}).items(), key=lambda kv: str(kv[0])))
            if rid in runs and len(key) == K.ID_LEN and tally != counted:
                self.note(f"stale tally {shown('tallies', key)}", lambda k=key, c=counted: self._recount(k, c))
        for db, what, want in (("indexes", "index entry", want_index), ("timers", "timer", want_timers)):
            have = set(self.t.keys(db))
            for key in sorted(have - want):
                self.note(f"stale {what} {shown(db, key)}", lambda db=db, k=key: self.drop(db, k))
            for key in sorted(want - have):
                self.note(f"missing {what} {shown(db, key)}", lambda db=db, k=key: self._add(db, k))

    def _recount(self, key: bytes, counted: dict) -> str:
        """The run's tally made anew from its step records' states (dropped if one has no state: readers count)."""
        if not all(isinstance(state, str) for state in counted):
            return self.drop("tallies", key)
        self.t.put("tallies", key, counted)
        return f"counted {shown('tallies', key)} anew from its run's step records"

    def _add(self, db: str, key: bytes) -> str:
        self.t.put(db, key, None)
        return f"added {shown(db, key)}"

    def queue(self, runs: dict[str, dict]) -> None:
        """`of<run>` holds the time of the one `at<time><run>`; both name an existing run."""
        entries = self.values("queue")
        of = {}
        for key, at in entries.items():
            if key.startswith(K.QUEUE_OF):
                rid = run_id_of(key[len(K.QUEUE_OF) :])
                if rid is not None and len(key) == len(K.QUEUE_OF) + K.ID_LEN and isinstance(at, int):
                    of[rid] = at
                else:
                    self.note(f"queue entry {shown('queue', key)} names no run", lambda k=key: self.drop("queue", k))
        ats: dict[str, list[int]] = {}
        for key in entries:
            if not key.startswith(K.QUEUE_OF):
                rid = run_id_of(key[-K.ID_LEN :])
                if key.startswith(K.QUEUE_AT) and len(key) == len(K.QUEUE_AT) + 8 + K.ID_LEN and rid is not None:
                    ats.setdefault(rid, []).append(K.queue_time(key))
                else:
                    self.note(
                        f"queue entry {shown('queue', key)} cannot be claimed", lambda k=key: self.drop("queue", k)
                    )
        for rid in sorted(of.keys() | ats.keys()):
            times = ats.get(rid, [])
            if rid in of and times == [of[rid]]:
                continue
            self.note(
                f"queue entries of run {rid} disagree ({times} for {of.get(rid)})",
                lambda rid=rid, times=times: self._requeue(rid, of.get(rid, min(times, default=0)), times),
            )

    def queued(self, runs: dict[str, dict]) -> None:
        """Queue entries name existing runs."""
        for key in list(self.t.keys("queue")):
            rid = run_id_of(key[-K.ID_LEN :])
            if rid is not None and rid not in runs:
                self.note(f"queue entry {shown('queue', key)} names no run", lambda k=key: self.drop("queue", k))

    def _requeue(self, rid: str, at: int, times: list[int]) -> str:
        for old in times:
            self.t.delete("queue", K.queue_at(rid, old))
        self.t.put_raw("queue", K.queue_at(rid, at), codec.encode(None))
        self.t.put("queue", K.queue_of(rid), at)
        return f"queued run {rid} once, for {at / 1_000_000:.6f}"

    def locks(self, runs: dict[str, dict]) -> None:
        """Every lock entry names a run holding it; a run that has not ended holds its locks."""
        entries = self.values("leases")
        for rid, run in runs.items():
            for name in run.get("locks") or () if run.get("state") not in RUN_ENDED else ():
                if K.lock_key(name) not in entries:
                    self.note(
                        f"run {rid} holds lock {name!r}, which has no entry", lambda n=name, r=rid: self._lock(n, r)
                    )
        for key, holder in entries.items():
            if not key.startswith(K.LOCK):
                continue
            name = key[len(K.LOCK) :].decode("utf-8", "replace")
            run = runs.get(holder) if isinstance(holder, str) else None
            if run is None or name not in (run.get("locks") or ()):
                self.note(
                    f"lock entry {shown('leases', key)} names no run holding it", lambda k=key: self.drop("leases", k)
                )

    def _lock(self, name: str, rid: str) -> str:
        self.t.put_lock(name, rid)
        return f"gave lock {name!r} back to run {rid}"

    def feed(self) -> None:
        entries = self.values("feed")
        for key, entry in entries.items():
            span = K.feed_span(entry)
            home = K.feed_key(span) if span is not None else None
            if key == home:
                continue
            fix = (
                (lambda k=key, h=home: self.move("feed", k, h))
                if home is not None and home not in entries
                else (lambda k=key: self.drop("feed", k))
            )
            self.note(f"feed entry {shown('feed', key)} does not parse or is not under its place", fix)

    def schedules(self) -> None:
        entries = self.values("schedules")
        for key, rec in entries.items():
            name = rec.get("name") if isinstance(rec, dict) else None
            if isinstance(name, str) and key == name.encode():
                continue
            home = name.encode() if isinstance(name, str) and name else None
            fix = (
                (lambda k=key, h=home: self.move("schedules", k, h))
                if home is not None and home not in entries
                else None  # a schedule record is never deleted by a repair
            )
            self.note(f"schedule record {shown('schedules', key)} is not under its name", fix)

    def meta(self) -> None:
        entries = self.values("meta")
        for key in entries:
            if key.decode("utf-8", "replace") not in META:
                missing = [K.meta_key(m) for m in META if K.meta_key(m) not in entries]
                target = _one_off(key, missing)
                fix = (
                    (lambda k=key, n=target: self.move("meta", k, n))
                    if target
                    else (lambda k=key: self.drop("meta", k))
                )
                self.note(f"unknown meta entry {shown('meta', key)}", fix)
        if K.meta_key("format") not in entries:
            self.note("the store's format record is missing")


def problems(t: Txn) -> list[str]:
    """Where indexes, timers and the queue disagree with the records."""
    check = _Checkup(t, fix=False)
    check.run(damage=False, derived=True)
    return check.found


def damage(t: Txn) -> list[str]:
    """Records and entries under keys that do not parse or name nothing, values that do not decode."""
    check = _Checkup(t, fix=False)
    check.run(damage=True, derived=False)
    return check.found


def repair(t: Txn) -> list[str]:
    """Repair what `problems` finds where it can (see the module's docstring); what was done."""
    done: list[str] = []
    for _ in range(3):  # a move can make a later pass's finding fixable: go again until nothing changes
        check = _Checkup(t, fix=True)
        check.run(damage=True, derived=True)
        if not check.done:
            break
        done += check.done
    return done
