"""Sub-runs driven to their end inside their parent's look: for bodies of quick calls of redoable actions.

A sub-run of such a body needs no driver, thread, claim or commit of its
own: the look (each.py) makes it in memory, runs its machine here (`run`),
calling each action in the look's thread as a driver calls a quick action in
its own, and goes on with the next items for up to `each.BUDGET` seconds;
then one commit writes every sub-run it made, as it is now, and the parent's
history lines about them. This is the driver's
shared-commit guarantee (docs/runtime.md, "Shared commits") applied to whole
sub-runs: a crash before that commit loses at most those seconds of work,
which the next look does again, and calling pure or idempotent actions again
is harmless. A sub-run that neither ended nor paused here (a retry waits for
its backoff) is written as made instead, and queued: a worker (or the pump
of the parent's process) drives it from its start, calling those actions
again. Whoever drives the parent does this, `weft run` or a worker, as long
as its executor runs actions in this process.

A body qualifies (`fits`) when it takes no locks and every step is an
action call with no timeout, no undo and no `concurrency` bound, of a plain
(not async) pure or idempotent action whose calls this process has seen to
be quick (driver.QUICK).
"""

from __future__ import annotations

import os
import time
from typing import Any

from weft.runtime.core import events as ev
from weft.runtime.core.machine import Machine
from weft.runtime.core.states import redoable
from weft.runtime.engine.lease import HOST
from weft.runtime.executors.perform import perform
from weft.runtime.executors.port import Reports, Task, event
from weft.runtime.stores.port import Txn

SLOTS = 1 << 20  # launches a machine may hand out at once here: all that are ready


def fits(body: dict, driver: Any) -> bool:
    """Whether the sub-runs of `body` may be driven inline (see the module docstring); `driver` is the parent's."""
    if body.get("locks"):
        return False  # (taken when a sub-run is written: it must not run before)
    for spec in body["steps"]:
        action = spec["action"]
        if spec["kind"] != "action" or action is None or spec["timeout"] is not None or spec["undo"] is not None:
            return False
        if spec.get("concurrency") or not redoable(action) or not driver.quick_action(action):
            return False
    return True


def store(t: Txn, m: Machine, created: dict) -> None:
    """Write sub-run `m`, made and stopped here, in one go: its plan, its steps and run record as they are now,
    and its history from `created` (its first line) on. It takes no lease, as it stopped already, and leaves
    its parent no request: the look that made it tells the parent (each.py)."""
    m.apply(ev.Driven(os.getpid(), HOST), time.time())
    _, _, events = m.changes()
    rid = m.run["id"]
    t.put_plan(rid, m.plan)
    for sid, rec in m.steps.items():
        t.put_step(rid, sid, rec)
    t.put_run(m.run)
    t.append_events(rid, [created, *events])


def run(m: Machine, took: dict[tuple[str, str], tuple[dict, list[float]]]) -> None:
    """Call what `m` launches until it hands out nothing more (it stopped, or waits for a timer); how long each
    call took goes to `took` ((module, name) -> (action, seconds of each call))."""
    reports = Reports()
    run_id = m.run["id"]
    search_path = list(m.plan.get("search_path") or ())
    now = time.time()
    while launches := m.launches(now, SLOTS):
        for launch in launches:
            task = Task.of(run_id, launch, search_path)
            outcome = perform(task, reports.channel(task))
            took.setdefault((launch.action["module"], launch.action["name"]), (launch.action, []))[1].append(
                outcome.duration
            )
            for report in reports.take(0):
                if report.kind == "log":
                    m.apply(ev.Logged(task.step, report.value, report.at), now)
                elif report.kind == "progress":
                    m.apply(ev.Progressed(task.step, task.attempt, report.value), now)
            m.apply(event(task, outcome), now)
        now = time.time()
