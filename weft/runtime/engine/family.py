"""A run and its sub-runs in one transaction: what a commit of one means for the others.

Called by `session.persist` in the transaction that writes a run's changes,
so a cascade is as durable and atomic as the command that caused it:

- a sub-run that stops (ends or pauses) tells its parent: a `child` request
  for the parent's owner, and the parent queued for a worker when no process
  holds it (`notify`); one that succeeded after its `each` step had (a re-run
  of one item) refreshes its entry of the step's `results`, and the parent's
  result if it ended succeeded;
- an `each` step cancelled with its run cancels every unfinished sub-run,
  paused ones too, so each ends and lets go of its locks; a sub-run that a
  live process drives gets a cancel request instead (`cascade`); one left
  with external tasks to cancel (a polling step between polls) is queued, and
  the process that claims it calls their `cancel` (worker.py);
- an `each` step a person retried (`resume` of the parent: failed -> pending)
  resumes the sub-runs that paused, and queues them (`cascade`). Nothing
  else ever resumes a sub-run: an interrupted step in one waits for a person
  exactly like a top-level one.
- a rollback without `--force` of a run whose sub-runs have succeeded steps
  without an undo is refused, naming them, before anything changed
  (`check_rollback`), as for the run's own steps.

The runs it takes over are returned for the caller to persist in the same
transaction (which may cascade further down).
"""

from __future__ import annotations

import time
from typing import Any

from weft.errors import WeftError
from weft.plan import expr
from weft.runtime.core import events as ev
from weft.runtime.core import steering
from weft.runtime.core.machine import Machine
from weft.runtime.core.states import RUN_ENDED, RUN_STOPPED
from weft.runtime.engine.lease import HOST, Lease, LeaseHeld
from weft.runtime.stores.port import Txn

CHILD = "child\0"  # request names a sub-run leaves for its parent: child\0<step>\0<index>


def stamp(m: Machine, lease: Lease) -> None:
    """Record in the run which process drives it (pid and host), when that changed."""
    m.apply(ev.Driven(lease.pid, HOST), time.time())


def own(t: Txn, run_id: str, now: float) -> tuple[Machine, Lease]:
    """Take run `run_id` over inside `t` and recover what a dead owner left running; LeaseHeld if alive."""
    lease = Lease(run_id)
    lease.acquire(t, now)
    m = Machine(t.plan(run_id), t.run(run_id), t.steps(run_id), now)
    if m.run["state"] in ("running", "pending"):
        m.apply(ev.Recover(), now)
    return m, lease


def notify(t: Txn, run: dict, now: float) -> None:
    """Sub-run `run` stopped: wake its parent's `each` step (see the module docstring)."""
    link = run.get("parent")
    if not link or run["state"] not in RUN_STOPPED:
        return
    held = t.lease(link["run"]) is not None  # its driver reads the request (its record is not read: it holds
    parent = None if held else t.run(link["run"])  # every item of a big bulk run)
    if parent is not None and run["state"] == "succeeded" and parent["state"] in RUN_STOPPED:
        _refresh_result(t, parent, link, run, now)  # (a parent being driven holds its records in memory)
    if not held and (parent is None or parent["state"] not in ("pending", "running")):
        return  # a paused parent looks at every sub-run again when it is resumed
    request = {"kind": "child", "step": link["step"], "index": link["index"], "run": run["id"]}
    request.update(state=run["state"], error=run.get("error"))
    t.put_request(link["run"], f"{CHILD}{link['step']}\0{link['index']}", request)
    if not held:
        t.enqueue(link["run"], now)


def _refresh_result(t: Txn, parent: dict, link: dict, run: dict, now: float) -> None:
    """A sub-run re-run after its `each` step succeeded (`weft rerun PARENT STEP --item N`) succeeded again:
    its entry of the step's `results` becomes what it returned now, and so does the parent's result if it
    ended succeeded (computed again from its plan). Nothing else looks at the sub-runs again."""
    steps = t.steps(parent["id"])
    rec = steps.get(link["step"])
    results = ((rec or {}).get("outputs") or {}).get("results")
    if rec is None or rec["state"] != "succeeded" or not isinstance(results, list) or link["index"] >= len(results):
        return
    if results[link["index"]] == run.get("result"):
        return
    results[link["index"]] = run.get("result")
    t.put_step(parent["id"], link["step"], rec)
    note = f"results of item {link['index'] + 1} refreshed from its sub-run {run['id']}"
    events = [{"t": now, "step": link["step"], "note": note}]
    if parent["state"] == "succeeded":
        m = Machine(t.plan(parent["id"]), parent, steps, now)
        try:
            result = {k: expr.evaluate(e, m.env) for k, e in (m.plan.get("returns") or {}).items()}
        except expr.EvalError as e:
            events.append({"t": now, "note": f"the run's result was not computed again: {e}"})
        else:
            if result != parent.get("result"):
                parent["result"] = result
                t.put_run(parent)
                events.append({"t": now, "note": "the run's result computed again"})
    t.append_events(parent["id"], events)


def forget_wakes(t: Txn, run_id: str) -> None:
    """Drop the `child` requests of a run that stopped: resuming it looks at every sub-run anyway."""
    for name, _ in t.requests(run_id):
        if name.startswith(CHILD):
            t.drop_request(run_id, name)


def cascade(t: Txn, m: Machine, changed: list[tuple[str, dict]], before: dict[str, dict], now: float) -> list:
    """The sub-runs to change because of this commit's `each` step records: [(Machine, Lease)] to persist.

    `before` holds the records of those steps as stored before this commit.
    """
    out: list[tuple[Machine, Lease]] = []
    if not m.each_steps:
        return out
    for sid, rec in changed:
        if m.specs[sid]["kind"] != "each":
            continue
        old = (before.get(sid) or {}).get("state")
        if rec["state"] == "cancelled" and old != "cancelled":
            out += _cancel_children(t, m.run["id"], sid, now)
        elif rec["state"] == "pending" and old == "failed":
            out += _resume_children(t, m.run["id"], sid, now)
    return out


def _children(t: Txn, run_id: str, sid: str) -> list[dict]:
    return [r for r in (t.run(rid) for _, rid in t.children(run_id, sid)) if r is not None]


def _cancel_children(t: Txn, run_id: str, sid: str, now: float) -> list:
    out = []
    for child in _children(t, run_id, sid):
        if child["state"] in RUN_ENDED:
            continue
        try:
            m, lease = own(t, child["id"], now)
        except LeaseHeld:
            t.put_request(child["id"], "cancel", {"kind": "cancel", "by": f"run {run_id}", "t": now})
            continue
        m.note(now, f"cancelled with its parent run {run_id}")
        m.apply(ev.Cancel(by=f"run {run_id}"), now)
        m.launches(now, 0)  # nothing of it runs (no process drives it): it ends cancelled now, not when driven
        if m.to_cancel:  # its external tasks' cancels are left to call: whoever serves the queue calls them
            t.enqueue(child["id"], now)
        out.append((m, lease))
    return out


def _resume_children(t: Txn, run_id: str, sid: str, now: float) -> list:
    out = []
    for child in _children(t, run_id, sid):
        if child["state"] != "paused":
            continue
        try:
            m, lease = own(t, child["id"], now)
        except LeaseHeld:
            continue  # someone drives it: it is not paused for long
        m.apply(ev.Resume(), now)
        m.note(now, f"resumed with its parent run {run_id}")
        t.enqueue(child["id"], now)  # any worker, or the parent's own process, drives it
        out.append((m, lease))
    return out


def check_rollback(t: Txn, m: Machine) -> None:
    """Refuse (WeftError, so nothing of the command is written) a rollback without `--force` of a run whose
    child runs have succeeded steps that no undo can take back, as for the run's own steps."""
    run = m.run
    if run["stage"] != "rollback" or run.get("forced") is not False:
        return
    if (t.run(run["id"]) or {}).get("stage") == "rollback":
        return  # checked when the rollback began
    for sid in sorted(m.to_undo):
        if m.specs[sid]["kind"] != "each":
            continue
        for _, rid in t.children(run["id"], sid):
            child = t.run(rid)
            if child is None or child.get("rolled_back"):
                continue
            missing = steering.without_undo({s["id"]: s for s in t.plan(rid)["steps"]}, t.step_states(rid))
            if missing:
                raise WeftError(
                    f"cannot roll back run {run['id']}: its sub-run {rid} ({child['label'] or child['flow']}) "
                    f"has succeeded step{'s' if len(missing) > 1 else ''} {', '.join(missing)} with no undo "
                    "(--force rolls back the rest and leaves such steps as done)"
                )


def stored_steps(t: Txn, m: Machine, changed: list[tuple[str, Any]]) -> dict[str, dict]:
    """The stored records of the `each` steps among `changed`, read before they are overwritten."""
    specs = m.specs
    if not m.each_steps or not any(specs[sid]["kind"] == "each" for sid, _ in changed):
        return {}
    return {sid: t.step(m.run["id"], sid) for sid, _ in changed if specs[sid]["kind"] == "each"}
