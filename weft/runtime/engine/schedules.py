"""Schedules in a store: firing the slots that came due, each in the transaction that starts its run.

`fire_due` is what workers (and `weft serve`) call about once a second. For
each schedule with something due it opens one write transaction that reads
the schedule, decides (weft.runtime.core.schedule), creates the runs of the
slots that fire (queued for workers, each recording its schedule and slot),
asks a run to cancel where the overlap policy says so, and writes the
schedule back with the last slot dealt with. Deciding and starting are one
commit, so a slot fires exactly once however many workers share the store
and whenever one of them is killed.
"""

from __future__ import annotations

import time
from dataclasses import replace

from weft.errors import WeftError
from weft.runtime.core import schedule
from weft.runtime.core.states import RUN_ENDED
from weft.runtime.engine import session
from weft.runtime.stores.port import Store, Txn


def fire_due(store: Store, now: float | None = None) -> list[str]:
    """Fire every schedule's due slots; the ids of the runs started."""
    now = time.time() if now is None else now
    with store.read() as t:
        names = [rec["name"] for rec in t.schedules() if _may_act(rec, now)]
    started: list[str] = []
    for name in names:
        started += store.write(lambda t, name=name: fire_in(t, name, time.time()))
    return started


def _may_act(rec: dict, now: float) -> bool:
    if rec.get("paused"):
        return False
    if rec.get("buffered") is not None:
        return True  # its slot waits for the run before it: look whether that one ended
    due = rec.get("next_due")
    return due is not None and due <= now


def going(t: Txn, rec: dict) -> dict | None:
    """The newest run the schedule started, if it has not ended."""
    run = t.run(rec["last_run"]) if rec.get("last_run") else None
    return run if run is not None and run["state"] not in RUN_ENDED else None


def fire_in(t: Txn, name: str, now: float) -> list[str]:
    """Inside `t`: decide what schedule `name` does with its due slots, and do it; the runs started."""
    rec = t.schedule(name)
    if rec is None or rec.get("paused"):
        return []
    running = going(t, rec)
    d = schedule.decide(rec, now, running is not None)
    runs: dict[float, str] = {}
    acts = []
    for act in d.acts:
        if act.what == "fire":
            try:
                runs[act.slot] = start(t, rec, act.slot, now)
            except WeftError as e:  # a lock held by a run of something else: the slot is skipped, saying why
                act = replace(act, what="skip", note=str(e))
        elif act.what == "cancel" and running is not None:
            t.put_request(running["id"], "cancel", {"kind": "cancel", "by": f"schedule {name}", "t": now})
            t.enqueue(running["id"], now)
        acts.append(act)
    t.put_schedule(schedule.record(rec, replace(d, acts=acts), now, runs))
    return list(runs.values())


def start(t: Txn, rec: dict, slot: float, now: float) -> str:
    """Create the run of schedule `rec` for `slot`, queued for workers; its id."""
    run = session.create_in(
        t,
        rec["plan"],
        rec["inputs"],
        user=rec["user"],
        label=rec["label"],
        locks=rec["locks"],
        parent=None,
        now=now,
        detach=True,
        schedule={"name": rec["name"], "slot": slot},
    )
    return run["id"]


def trigger(t: Txn, name: str, now: float) -> str:
    """One run of schedule `name` now, outside its slots (recorded in its history); its id."""
    rec = t.schedule(name)
    rid = start(t, rec, now, now)
    history = [*rec.get("history", ()), {"slot": now, "t": now, "what": "trigger", "note": None, "run": rid}]
    t.put_schedule({**rec, "last_run": rid, "fired": rec.get("fired", 0) + 1, "history": history[-schedule.HISTORY :]})
    return rid
