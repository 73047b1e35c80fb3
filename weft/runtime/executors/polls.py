"""A polling action on a worker: its `start` once, then one `poll` each time the step's timer is due.

`perform` calls `call` (`call_async` on an event loop) with a step's inputs,
or with the step's poll record to poll once. What comes back travels to the
driver in an Outcome like any action's outputs: a "started" PollReport (the
handle and the PollSpec) after `start`, a "pending" one while the external
task goes on, the outputs once it is done. Nothing here sleeps: the waiting
between polls is the driver's timer.

`cancel` stops an external task the machine no longer waits for, with the
action's `cancel(handle)`, and says how that went as a TaskCancelled.
"""

from __future__ import annotations

from typing import Any

from weft.runtime.core.events import TaskCancelled
from weft.runtime.executors.port import PollReport
from weft.runtime.records import check_serializable
from weft.sdk import actions, polling
from weft.sdk.context import Context

Answer = tuple[dict | None, PollReport | None]


def call(defn: actions.ActionDef, inputs: dict, ctx: Context | None, poll: dict | None) -> Answer:
    """(outputs, None) of a plain action or a finished poll; (None, report) when a polling action goes on. `ctx` may
    be None for a plain action that takes no Context."""
    if poll is not None:
        return _polled(polling.poll(defn, _handle(defn, poll), ctx))
    if defn.poll is None:
        return actions.call(defn, inputs, ctx), None
    return None, _started(defn, polling.start(defn, inputs, ctx))


async def call_async(defn: actions.ActionDef, inputs: dict, ctx: Context | None, poll: dict | None) -> Answer:
    """`call` in a coroutine: an `async def` action (or start, or poll) is awaited."""
    if poll is not None:
        return _polled(await polling.poll_async(defn, _handle(defn, poll), ctx))
    if defn.poll is None:
        return await actions.call_async(defn, inputs, ctx), None
    return None, _started(defn, await polling.start_async(defn, inputs, ctx))


def _handle(defn: actions.ActionDef, poll: dict) -> Any:
    if defn.poll is None:
        raise actions.ActionResultError(f"action '{defn.name}' is no longer a polling action; cannot poll it")
    return poll["handle"]


def _polled(result: polling.Pending | dict) -> Answer:
    if isinstance(result, polling.Pending):
        return None, {"state": "pending", "progress": result.progress}
    return result, None


def _started(defn: actions.ActionDef, handle: Any) -> PollReport:
    problem = check_serializable(handle)
    if problem:
        raise actions.ActionResultError(f"action '{defn.name}' started with a handle that cannot be stored: {problem}")
    spec = defn.poll
    return {
        "state": "started",
        "handle": handle,
        "every": spec.every,
        "max_every": spec.max_every,
        "factor": spec.factor,
    }


def cancel(defn: actions.ActionDef, step: str, attempt: int, handle: object) -> TaskCancelled:
    """Call `defn`'s `cancel` with `handle`; never raises for the action's faults."""
    if not polling.cancellable(defn):
        return TaskCancelled(step, attempt, "none", f"action '{defn.name}' defines no cancel(self, handle)")
    try:
        polling.cancel(defn, handle)
    except Exception as e:  # noqa: BLE001 - whatever the action raises, the task was not cancelled
        return TaskCancelled(step, attempt, "failed", f"{type(e).__name__}: {e}" if str(e) else type(e).__name__)
    return TaskCancelled(step, attempt, "cancelled")
