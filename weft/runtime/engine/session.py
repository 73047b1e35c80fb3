"""Getting a run ready to drive, each in one transaction: create it, or take it over.

Taking over resolves the id, takes the lease (refused while a live process
holds it), recovers what the previous owner left running, applies a steering
command (resume, skip, cancel...) and persists all of it at once, so a refused
command changes nothing.
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Callable

from weft.errors import WeftError
from weft.plan.schema import check_plan
from weft.runtime.core import steering
from weft.runtime.core.machine import Machine
from weft.runtime.core.states import RUN_ENDED, RUN_STOPPED, RunState, new_run, new_step, new_steps
from weft.runtime.engine import family
from weft.runtime.engine import remote as remote_calls
from weft.runtime.engine.lease import Lease, LeaseHeld, describe
from weft.runtime.ids import new_run_id
from weft.runtime.stores.port import Store, Txn

LOCK_RECHECK = 5.0  # seconds before a due run whose lock is held tries again


def clock(t: float) -> str:
    """A time for a history line: local ISO date and time to the second."""
    return datetime.fromtimestamp(t).astimezone().isoformat(timespec="seconds")


def persist(
    txn: Txn,
    m: Machine,
    lease: Lease,
    *,
    release: bool = False,
    consumed: list[str] = (),
) -> list[dict]:
    """Write the machine's changes (fenced by the lease); returns the events written."""
    lease.check(txn)
    family.check_rollback(txn, m)
    family.stamp(m, lease)
    run, steps, events = m.changes()
    run_id = m.run["id"]
    before = family.stored_steps(txn, m, steps)
    for sid, rec in steps:
        txn.put_step(run_id, sid, rec)
    if run is not None:
        txn.put_run(run)
    if events:
        txn.append_events(run_id, events)
    for name in consumed:
        txn.drop_request(run_id, name)
    if release:
        lease.release(txn)
        if m.run["state"] in RUN_ENDED:
            for name in m.run["locks"]:
                if txn.lock_holder(name) == run_id:
                    txn.put_lock(name, None)
            for name, _ in txn.requests(run_id):
                txn.drop_request(run_id, name)
        elif m.run["state"] in RUN_STOPPED:
            family.forget_wakes(txn, run_id)
        elif txn.requests(run_id):  # left while it held the run, unread (a sub-run that stopped since its last look
            txn.enqueue(run_id, time.time())  # at its requests): due now, or nobody acts on them until a timer
        family.notify(txn, m.run, time.time())
    for child, child_lease in family.cascade(txn, m, steps, before, time.time()):
        persist(txn, child, child_lease, release=True)
    return events


def create(
    store: Store,
    plan: dict,
    inputs: dict,
    *,
    user: str,
    label: str | None,
    locks: list[str],
    parent: dict | None = None,
    detach: bool = False,
    at: float | None = None,
    start_by: float | None = None,
) -> tuple[Machine, Lease]:
    """Persist a new pending run (its own copy of the plan, its inputs, every step) owned by this process.

    With `detach`, the run is queued for `weft worker` instead, and this process holds no lease; with
    `at`, it is stored scheduled for that time (see `create_in`) and nobody holds it until then.
    """
    check_plan(plan)
    now = time.time()
    run_id = new_run_id(now)
    lease = Lease(run_id)

    def write(t: Txn) -> dict:
        run = create_in(
            t,
            plan,
            inputs,
            user=user,
            label=label,
            locks=locks,
            parent=parent,
            now=now,
            detach=detach,
            run_id=run_id,
            at=at,
            start_by=start_by,
        )
        if not detach and at is None:
            lease.acquire(t, now)
        return run

    run = store.write(write)
    return Machine(plan, run, new_steps(plan), now), lease  # its steps as create_in stored them


def create_in(
    t: Txn,
    plan: dict,
    inputs: dict,
    *,
    user: str,
    label: str | None,
    locks: list[str],
    parent: dict | None,
    now: float,
    detach: bool,
    run_id: str | None = None,
    at: float | None = None,
    start_by: float | None = None,
    schedule: dict | None = None,
    lease: Lease | None = None,
) -> dict:
    """Write a new pending run inside `t` (queued for a worker with `detach`); returns its record.

    With `lease` (of the new run's id), the run is taken by that lease in `t` instead of being queued:
    a sub-run this process drives at once, with no claim of its own.

    With `at`, the run is stored `scheduled` instead and queued for that time:
    it takes its locks when it starts (`start_due`), which must be by
    `start_by` if given. `schedule` ({"name", "slot"}) records the schedule
    that started it. Every lock is checked before anything is written, so a
    refused run leaves no trace in `t`.
    """
    run_id = run_id or new_run_id(now)
    run = new_run(run_id, plan, inputs, label=label, locks=locks, user=user, now=now, parent=parent)
    run["detached"] = detach  # served by `weft worker`: a signal is handed to the workers
    if schedule is not None:
        run["schedule"] = schedule
    if at is None:
        take_locks(t, run_id, locks, parent, "nothing was started")
        created = created_event(user, now)
    else:
        run.update(state=RunState.SCHEDULED, due=at, start_by=start_by)
        created = {"t": now, "state": "scheduled", "detail": f"created by {user}, to start at {clock(at)}"}
    t.put_plan(run_id, plan)
    t.put_new_steps(run_id, [s["id"] for s in plan["steps"]], new_step())
    t.put_run(run)
    t.append_events(run_id, [created])
    if lease is not None and at is None:
        lease.acquire(t, now)
    elif detach or at is not None:
        t.enqueue(run_id, now if at is None else at)
    return run


def created_event(user: str, now: float) -> dict:
    """The first line of a pending run's history."""
    return {"t": now, "state": "pending", "detail": f"created by {user}"}


def take_locks(t: Txn, run_id: str, locks: list[str], parent: dict | None, refused: str) -> None:
    """Give run `run_id` its locks; a WeftError naming the holder (ending in `refused`) if one is held."""
    if not locks:
        return
    above = _ancestors(t, parent)  # (reads the parent's record, big for a bulk run of many items)
    for name in locks:
        holder = t.lock_holder(name)
        other = t.run(holder) if holder else None
        if other is not None and other["state"] not in RUN_ENDED and holder not in above and holder != run_id:
            # (a sub-run works under the lock its parent or grandparent holds)
            raise WeftError(
                f"lock '{name}' is held by run {holder} ({other['label'] or other['flow']}, {other['state']}); {refused}"
            )
    for name in locks:
        if t.lock_holder(name) not in above:
            t.put_lock(name, run_id)


def start_due(t: Txn, run: dict, now: float) -> str:
    """A scheduled run whose time came: "started" (now pending, with its locks), "later" (queued again:
    not due yet, or a lock is held) or "missed" (its start deadline passed: it ended failed)."""
    rid = run["id"]
    if now < run["due"]:
        t.enqueue(rid, run["due"])
        return "later"
    late = run.get("start_by") is not None and now > run["start_by"]
    if not late:
        try:
            take_locks(t, rid, run["locks"], run.get("parent"), "it starts once the lock is free")
        except WeftError:
            t.enqueue(
                rid, now + LOCK_RECHECK if run.get("start_by") is None else min(now + LOCK_RECHECK, run["start_by"])
            )
            return "later"
        run.update(state=RunState.PENDING)
        t.put_run(run)
        t.append_events(rid, [{"t": now, "state": "pending", "detail": f"due at {clock(run['due'])}: starting"}])
        return "started"
    why = (
        f"missed its start deadline: due at {clock(run['due'])}, to start by {clock(run['start_by'])} "
        "(no worker served the store, or its lock was held)"
    )
    run.update(state=RunState.FAILED, ended=now, error=why)
    t.put_run(run)
    t.append_events(rid, [{"t": now, "state": "failed", "detail": why}])
    t.dequeue(rid)
    return "missed"


def _ancestors(t: Txn, parent: dict | None) -> set[str]:
    """The ids of the runs above a new sub-run: its parent, their parent, and so on."""
    found: set[str] = set()
    while parent is not None and parent["run"] not in found:
        found.add(parent["run"])
        above = t.run(parent["run"])
        parent = above.get("parent") if above else None
    return found


def take(
    store: Store,
    text: str,
    apply: Callable[[Machine, float], object] | None = None,
    *,
    request: tuple[str, dict] | None = None,
    check: Callable[[Txn, str], object] | None = None,
    remote: bool = False,
) -> tuple[Machine | None, Lease | None, str]:
    """Own run `text` (an id or unique prefix), recover it, apply a command, persist.

    `remote`: the taker reaches the agents (a broker), so it may collect calls a dead owner left on them.

    With `request` (name, payload), a run driven by a live process gets the
    request instead, for its owner to act on: returns (None, None, run id).
    `check(txn, run_id)` runs first in the same transaction: its refusal
    (a raise) leaves everything as it was, so check-and-act is atomic.
    """

    def write(t: Txn) -> tuple[Machine | None, Lease | None, str]:
        run_id = t.find_run(text)
        if check is not None:
            check(t, run_id)
        now = time.time()
        lease = Lease(run_id)
        try:
            previous = lease.acquire(t, now)
        except LeaseHeld:
            if request is None:
                raise
            t.put_request(run_id, request[0], request[1])
            return None, None, run_id
        plan = t.plan(run_id)
        check_plan(plan)
        m = Machine(plan, t.run(run_id), t.steps(run_id), now)
        if previous is not None:
            m.note(now, f"taken over from {describe(previous, now)}")
        if m.run["state"] == RunState.SCHEDULED and apply is None:
            start_due(t, m.run, now)  # to drive it: it starts if it is due and its locks are free
        if m.run["state"] in ("running", "pending"):
            steering.recover(m, now)
            remote_calls.refuse_unreachable(m, remote)
        if apply is not None:
            apply(m, now)
        stopped = m.run["state"] in RUN_STOPPED and not m.to_cancel  # else: held to cancel external tasks (driver)
        persist(t, m, lease, release=stopped or m.run["state"] == RunState.SCHEDULED)
        return m, lease, run_id

    return store.write(write)
