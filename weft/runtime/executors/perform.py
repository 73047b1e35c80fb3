"""Running one Task in this process: find the action, call it with a Context over the channel, say how it went.

Every executor that runs action code calls `perform`, in a thread of the
driver's process or in a process of its own (the driver calls `cancel_task`
itself, to stop an external task its run no longer waits for): only a failed lookup is
ActionNotFound; whatever the action raises (a KeyError included) fails the
step with its type, message and traceback. Never raises for the action's faults.

The action's `ctx.cancelled()` turns true when the channel is cancelled or
the task's deadline passes, whichever comes first, so a step's `timeout`
reaches the action where it runs (a thread, a child process, another host)
without waiting for the driver to notice it.
"""

from __future__ import annotations

import sys
import time
import traceback

from weft.runtime.core.events import CancelTask, TaskCancelled
from weft.runtime.core.states import error_record
from weft.runtime.executors import polls
from weft.runtime.executors.port import Channel, Outcome, Task
from weft.runtime.records import check_serializable
from weft.sdk import actions
from weft.sdk.context import Context

_defs: dict[tuple[str, str], actions.ActionDef] = {}


def perform(task: Task, channel: Channel) -> Outcome:
    """Call the action of `task` (start or poll a polling action); its Outcome."""
    started = time.perf_counter()
    for folder in task.search_path:
        if folder not in sys.path:
            sys.path.append(folder)
    try:
        defn = definition(task.action["module"], task.action["name"])
    except LookupError as e:
        return Outcome(False, error=error_record("ActionNotFound", str(e)), duration=time.perf_counter() - started)
    ctx = Context(
        task.run,
        task.step,
        task.attempt,
        on_progress=channel.progress,
        on_log=channel.log,
        deadline=task.deadline,
        cancel_event=_Cancellation(channel, task.deadline),
    )
    try:
        outputs, poll = polls.call(defn, task.inputs, ctx, task.poll)
    except KeyboardInterrupt:  # reaches only an action the driver called in the main thread
        raise
    except BaseException as e:  # noqa: BLE001 - the action's failure, whatever it is, fails the step
        error = error_record(type(e).__name__, str(e) or type(e).__name__, traceback.format_exc())
        return Outcome(False, error=error, duration=time.perf_counter() - started)
    problem = None if outputs is None else check_serializable(outputs)
    if problem:
        error = error_record("OutputError", f"outputs cannot be stored: {problem}")
        return Outcome(False, error=error, duration=time.perf_counter() - started)
    return Outcome(True, outputs=outputs, poll=poll, duration=time.perf_counter() - started)


def cancel_task(order: CancelTask, search_path: list[str]) -> TaskCancelled:
    """Stop the external task of `order` with its polling action's `cancel`; how it went."""
    for folder in search_path:
        if folder not in sys.path:
            sys.path.append(folder)
    try:
        defn = definition(order.action["module"], order.action["name"])
    except LookupError as e:
        return TaskCancelled(order.step, order.attempt, "failed", str(e))
    return polls.cancel(defn, order.step, order.attempt, order.handle)


def definition(module: str, name: str) -> actions.ActionDef:
    """The ActionDef of action `name` in `module` (imported once); LookupError if there is none."""
    key = (module, name)
    defn = _defs.get(key)
    if defn is None:
        defn = _defs[key] = actions.lookup(module, name)
    return defn


class _Cancellation:
    """The channel's cancellation, or the task's deadline (epoch seconds) passing, as the event a Context waits on."""

    def __init__(self, channel: Channel, deadline: float | None) -> None:
        self._channel = channel
        self._deadline = deadline

    def is_set(self) -> bool:
        return self._channel.cancelled() or (self._deadline is not None and time.time() >= self._deadline)

    def wait(self, seconds: float) -> bool:
        if self._deadline is not None:
            seconds = min(seconds, self._deadline - time.time())
        return self._channel.wait(max(0.0, seconds)) or self.is_set()
