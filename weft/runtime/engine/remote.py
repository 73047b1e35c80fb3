"""The driver's side of remote calls: record each call before it is sent, collect calls a dead owner sent.

With a remote executor (executors/celery.py), every action launch gets a
call id, and a step's attempt is recorded "dispatched (attempt, call id)" in
the round's commit, which comes before the executor sends anything. A new
owner's recovery keeps such a step running (`Machine.reattach`) and the
driver asks its executor to collect the call (`attach`): the call's outcome
if an agent finished it, the agent's beat if one runs it, or the call sent
again if none has it (the agent's claim keeps it from running twice). A
process with no broker cannot reach the call: an idempotent step runs
again here; a non-idempotent one is refused (the agent may run it still),
for a process with the broker to collect.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from weft.errors import WeftError
from weft.runtime.core import events as ev
from weft.runtime.core.events import Launch
from weft.runtime.core.states import redoable
from weft.runtime.executors.port import Report

if TYPE_CHECKING:
    from weft.runtime.core.machine import Machine
    from weft.runtime.engine.driver import Driver


def dispatch(driver: Driver, launches: list[Launch], now: float) -> None:
    """Give each action launch a call id, recorded in the step before the commit that precedes sending."""
    m = driver.machine
    for launch in launches:
        if launch.action is None or m.specs[launch.step]["kind"] == "each":
            continue  # engine jobs run here
        call = driver.executor.call_id()
        driver.calls[launch.step] = call
        if launch.poll is None and not launch.undo:  # a poll is simply made again by a new owner; an undo too
            m.apply(ev.Dispatched(launch.step, launch.attempt, call), now)


def reattach(driver: Driver, now: float) -> None:
    """Collect the calls that agents may still run for the previous owner of the run."""
    m = driver.machine
    steps, m.reattach = m.reattach, []
    for sid in steps:
        rec = m.steps[sid]
        call = rec["call"]["id"]
        if not driver.remote:  # pure or idempotent: run again here
            detail = f"its call {call} went to an agent, and this process has no broker to collect it"
            m.apply(ev.Lost(sid, rec["attempts"], detail), now)
            continue
        launch = Launch(
            sid, rec["attempts"], m.specs[sid]["action"], rec["inputs"] or {}, rec["deadline"], queue=rec.get("queue")
        )
        driver.calls[sid] = call
        channel = driver._channel(launch)
        driver.executor.attach(channel.task, channel)


def refuse_unreachable(m: Machine, remote: bool) -> None:
    """Refuse to own a run whose non-idempotent calls agents may still run, without a broker to collect them."""
    held = [] if remote else [sid for sid in m.reattach if not redoable(m.specs[sid]["action"])]
    if held:  # running it here could run it twice: the agent may run or have run it
        calls = ", ".join(f"step {sid} (call {m.steps[sid]['call']['id']})" for sid in held)
        raise WeftError(
            f"run {m.run['id']} has calls in flight on agents: {calls}; "
            "drive it with --broker (or $WEFT_BROKER) to collect them"
        )


def apply(driver: Driver, report: Report, now: float) -> None:
    """A remote task's "placed" (an agent took the call) or "lost" (its agent died) report, to the machine."""
    task = report.task
    if report.kind == "placed":
        call, agent = report.value
        driver.machine.apply(ev.Placed(task.step, task.attempt, call, agent), now)
    else:
        del driver.inflight[task.step]
        driver.machine.apply(ev.Lost(task.step, task.attempt, report.value), now)
