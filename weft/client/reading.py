"""The Client's reads: runs, steps, histories, the feed of changes, diagrams, locks and workers.

`Reading` is a part of the Client class (operations.py): each read is one
store transaction, and what it returns is the Client's dataclasses (model.py).
"""

from __future__ import annotations

import time
from abc import abstractmethod
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from weft.client import feed, limits, model, search
from weft.client.errors import InvalidInput, NotFound
from weft.client.model import Event, Page, Progress, Run, StepDetail
from weft.client.redact import Redactor
from weft.errors import WeftError
from weft.runtime.core import steering
from weft.runtime.core.machine import Machine
from weft.runtime.core.rollback import undoable
from weft.runtime.core.states import RUN_ENDED, RUN_STOPPED
from weft.runtime.engine import bulk
from weft.runtime.engine.registry import Registry
from weft.runtime.stores.port import CorruptRecord, Outline, Store, StoreError, Txn, unplanned

if TYPE_CHECKING:
    from weft.client.answers import Change, Changes, Diagram, Lock, RollbackPreview, WorkerProcess

WAIT_STEP = 0.05  # seconds between looks at a run's state while following or waiting for it


class Reading:
    """Reads of one store (the Client's `path`)."""

    path: str

    @abstractmethod
    def _open(self, create: bool = False) -> Store: ...

    def _find(self, t: Txn, text: str) -> str:
        try:
            return t.find_run(text)
        except StoreError as e:
            if type(e) is StoreError:  # not an id, no such run, an ambiguous prefix; not corruption
                raise NotFound(str(e)) from None
            raise

    def resolve(self, run_id: str) -> str:
        """The full id of run `run_id` (an id or a unique prefix of one)."""
        with self._open().read() as t:
            return self._find(t, run_id)

    def runs(self, **filters: Any) -> Page:
        """A page of runs, as `weft list` filters, sorts and pages them.

        Filters: state, result, flow, tag, user, label (contains, any case),
        parent (sub-runs of a run), lock (the run holding it), each a string
        or a list of strings meaning any of them; since and before (seconds
        since the epoch, a duration ago such as "2h", or an ISO date). Also
        sort ("started", "ended", "flow", "state", "user", "label"; "-" prefix
        reverses), reverse, limit (default 50), offset and sub_runs (include
        the sub-runs of `each` steps).
        """
        try:
            base, combos, disjoint = search.queries(**filters)
            for q in combos:
                search.check(q)
            return search.search(self._open(), base, combos, disjoint)
        except (NotFound, InvalidInput):
            raise
        except StoreError as e:
            if type(e) is StoreError:
                raise NotFound(str(e)) from None  # a parent that is no run
            raise
        except WeftError as e:  # a filter, sort or page no store can answer
            raise InvalidInput(str(e)) from None

    def get(self, run_id: str, steps: int | None = None, history: int | None = None, offset: int = 0) -> Run:
        """Run `run_id`, read in one transaction: every step and event, or a page of a big run: `steps` steps
        from `offset` on (failed, running and suspended ones first, then the others in plan order; every step
        from `offset` on in plan order when `steps` is None) and the last `history` events. Its `counts`,
        `steps_total` and `history_total` are of all of them."""
        offset = max(0, offset)
        with self._open().read() as t:
            rid = self._find(t, run_id)
            run, (_, outline) = t.run(rid), t.plan_outline(rid)
            seen = None if steps is None else _tallied(t, rid, outline, max(0, steps), offset)
            if seen is None:
                seen = self._counted(t, rid, outline, steps, offset)
            recs, counts, waits = seen
            specs = t.plan_steps(rid, [*recs, *waits])
            last = t.last_seq(rid)
            events = t.events(rid, 0 if history is None else max(0, last - max(0, history)))
            overview = model.Overview(counts, len(outline), {sid: specs[sid]["wait"]["signal"] for sid in waits}, last)
            shown_specs = [specs[sid] for sid in recs]
            children = _children(t, rid, shown_specs)
            return model.full(run, shown_specs, recs, events, t.lease(rid), children, time.time(), overview)

    def _counted(self, t: Txn, rid: str, outline: Outline, steps: int | None, offset: int) -> Seen:
        """What a page of run `rid` shows, from every step's state: all steps from `offset` on, or `steps` of them."""
        if steps is None:
            recs = t.steps(rid)
            states = {sid: rec["state"] for sid, rec in recs.items()}
            recs = {sid: recs[sid] for sid in outline.ids[offset:]}
        else:
            states = t.step_states(rid)
            why = unplanned(rid, states, outline.ids)
            if why is not None:
                raise CorruptRecord(f"corrupt store {self.path}: {why}")
            recs = {sid: t.step(rid, sid) for sid in page(outline.ids, states, max(0, steps), offset)}
        listed = outline.steps()
        waits = [sid for sid, _, kind in listed if kind == "wait" and states[sid] == "suspended"]
        return recs, model.counts((phase, states[sid]) for sid, phase, _ in listed), waits

    def step(self, run_id: str, step: str) -> StepDetail:
        """Step `step` (its id or name) of run `run_id`: inputs, outputs, error with traceback, its history."""
        with self._open().read() as t:
            rid = self._find(t, run_id)
            run, rec = t.run(rid), t.step(rid, step)  # a step id: only its own records are read
            if rec is None:  # a step name, or none: found by the run's machine
                sid = step_id(Machine(t.plan(rid), run, t.steps(rid), time.time()), step)
                rec = t.step(rid, sid)
            else:
                sid = step
            spec = t.plan_steps(rid, [sid]).get(sid)
            if spec is None:
                raise CorruptRecord(f"corrupt store {self.path}: run {rid}'s plan has no step {sid!r}")
            children = _children(t, rid, [spec]).get(sid)
            hide = Redactor(run)
            shown = model.step(spec, hide.step(spec, rec), children)
            return model.detail(rid, spec, shown, hide.history(t.events(rid)))

    def sub_run(self, run_id: str, step: str, item: int) -> str:
        """The id of the sub-run that `each` step `step` of run `run_id` made for item `item` (from 1)."""
        with self._open().read() as t:
            rid = self._find(t, run_id)
            plan = t.plan(rid)
            sid = step_id(Machine(plan, t.run(rid), t.steps(rid), time.time()), step)
            if next(s for s in plan["steps"] if s["id"] == sid)["kind"] != "each":
                raise InvalidInput(f"step {sid} of run {rid} is not an `each` step; it has no items", field="item")
            made = dict(t.children(rid, sid))
        if not (isinstance(item, int) and item - 1 in made):
            total = f"items 1 to {max(made) + 1}" if made else "no item yet"
            raise NotFound(f"step {sid} of run {rid} made no sub-run for item {item} (it made sub-runs for {total})")
        return made[item - 1]

    def events(self, run_id: str, after: int = 0, limit: int = 1000) -> tuple[Event, ...]:
        """Up to `limit` history events of a run after position `after`, oldest first."""
        with self._open().read() as t:
            rid = self._find(t, run_id)
            history = Redactor(t.run(rid)).history(t.events(rid, limits.place(after, "after"), max(0, limit)))
        return tuple(Event.of(e, seq) for seq, e in history)

    def changes(self, after: int = 0, limit: int = 500) -> Changes:
        """Every run's events after place `after` of the store's feed, in commit order (see `last_change`)."""
        from weft.client.answers import Changes

        with self._open().read() as t:
            found, end = feed.changes(t, limits.place(after, "after"), max(0, limit))
        return Changes(tuple(found), end)

    def last_change(self) -> int:
        """The feed place of the last event committed to the store (0 before the first)."""
        with self._open().read() as t:
            return t.feed_end()

    def run_changes(self, run_id: str, after: int = 0, limit: int = 500) -> tuple[str, tuple[Change, ...]]:
        """The run's state and up to `limit` events of its history after seq `after`."""
        with self._open().read() as t:
            run, found = feed.run_changes(t, self._find(t, run_id), limits.place(after, "after"), limit)
        return run["state"], tuple(found)

    def watch(self, run_id: str, observer: Callable[[Progress], None], after: int = 0) -> Run:
        """Follow a run driven by any process: `observer` sees its events after seq `after` as they are
        committed, until the run has ended or paused; then the run."""
        rid = self.resolve(run_id)
        follower = feed.Follower(rid)
        while True:
            state, found = self.run_changes(rid, after)
            if found:
                observer(follower.progress(found))
                after = found[-1].event.seq
            elif state in RUN_STOPPED:
                return self.get(rid)
            else:
                time.sleep(WAIT_STEP)

    def diagram(self, run_id: str) -> Diagram:
        """What `weft graph RUN` draws: the run's Plan, its steps' states, its sub-runs by state."""
        from weft.client.answers import Diagram

        with self._open().read() as t:
            rid = self._find(t, run_id)
            plan, steps = t.plan(rid), t.steps(rid)
            counts = bulk.each_counts(t, rid, plan, steps)
        return Diagram(plan, {sid: rec["state"] for sid, rec in steps.items()}, counts)

    def rollback_preview(self, run_id: str) -> RollbackPreview:
        """Which steps a rollback of the run would undo now, and which succeeded steps have no undo."""
        from weft.client.answers import RollbackPreview

        with self._open().read() as t:
            rid = self._find(t, run_id)
            specs, states = {s["id"]: s for s in t.plan(rid)["steps"]}, t.step_states(rid)
        undo = tuple(sid for sid, spec in specs.items() if undoable(spec, states[sid]))
        return RollbackPreview(rid, undo, tuple(steering.without_undo(specs, states)))

    def worker_processes(self) -> tuple[WorkerProcess, ...]:
        """The worker processes serving this store now, and the runs each drives."""
        from weft.client.answers import WorkerProcess

        return tuple(
            WorkerProcess(a.pid, a.host, a.kind, a.started, a.heartbeat, a.limit, a.runs)
            for a in Registry(self.path).live()
        )

    def locks(self) -> tuple[Lock, ...]:
        """The locks held by runs that have not ended, by lock name."""
        from weft.client.answers import Lock

        with self._open().read() as t:
            held = [(name, t.run(rid), t.lease(rid)) for name, rid in t.locks().items()]
        now = time.time()
        return tuple(
            Lock(name, model.summary(run, lease, now))
            for name, run, lease in held
            if run and run["state"] not in RUN_ENDED
        )


def _children(t: Txn, run_id: str, specs: list[dict]) -> dict[str, list[dict]]:
    """The sub-run records of each `each` step of `specs`, by item."""
    return {
        s["id"]: [r for r in (t.run(rid) for _, rid in t.children(run_id, s["id"])) if r is not None]
        for s in specs
        if s["kind"] == "each"
    }


FIRST = ("failed", "running", "suspended")  # the states of the steps a page shows before the others
READ_APART = 1000  # steps outside a tallied run's biggest phase whose states a page reads one by one, at most

Seen = tuple[dict[str, dict], dict[str, dict[str, int]], list[str]]  # (shown records, counts, suspended waits)


def _tallied(t: Txn, rid: str, outline: Outline, limit: int, offset: int) -> Seen | None:
    """What a page of run `rid` shows, from the tally of its steps' states the store keeps (without reading
    every step), when no step is failed, running or suspended: `limit` steps from `offset` on in plan order.
    None when there is no such tally, or it does not add up."""
    tally = t.step_counts(rid)
    if tally is None or sum(tally.values()) != len(outline) or any(tally.get(state) for state in FIRST):
        return None
    sizes: dict[str, int] = {}
    for phase, n in outline.phases:
        sizes[phase] = sizes.get(phase, 0) + n
    biggest = max(sizes, key=sizes.__getitem__) if sizes else None
    if len(outline) - sizes.get(biggest, 0) > READ_APART:
        return None
    pairs, rest, at = [], dict(tally), 0
    for phase, n in outline.phases:  # the states of the steps of the other phases, one by one
        for sid in outline.ids[at : at + n] if phase != biggest else ():
            rec = t.step(rid, sid)
            if rec is None or not rest.get(rec["state"]):
                return None
            pairs.append((phase, rec["state"]))
            rest[rec["state"]] -= 1
        at += n
    counts = model.counts(pairs)
    counts = {phase: counts.get(phase, {}) for phase in sizes}  # (in plan order)
    if biggest is not None:
        counts[biggest] = {state: n for state, n in sorted(rest.items()) if n}
    recs = {sid: t.step(rid, sid) for sid in outline.ids[offset : offset + limit]}
    return None if None in recs.values() else (recs, counts, [])


def page(ids: list[str], states: dict[str, str], limit: int, offset: int = 0) -> list[str]:
    """The ids of the `limit` steps of a page from `offset` on, in the order failed, running and suspended
    ones, then the others in plan order (`ids`)."""
    first: dict[str, list[str]] = {state: [] for state in FIRST}
    rest = []
    for sid in ids:
        state = states[sid]
        if state in first:
            first[state].append(sid)
        elif len(rest) < offset + limit:
            rest.append(sid)
    return ([sid for state in FIRST for sid in first[state]] + rest)[offset : offset + limit]


def step_id(m: Machine, name: str) -> str:
    try:
        return steering.find_step(m, name)
    except WeftError as e:
        raise NotFound(str(e)) from None
