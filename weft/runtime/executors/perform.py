"""Running one Task in this process: find the action, call it with a Context over the channel, say how it went.

Every executor that runs action code calls `perform`, in a thread of the
driver's process or in a process of its own (the driver calls `cancel_task`
itself, to stop an external task its run no longer waits for): only a failed lookup is
ActionNotFound; whatever the action raises (a KeyError included) fails the
step with its type, message and traceback. Never raises for the action's faults.

An `async def` action runs to completion in the caller's thread, on an event
loop of its own (asyncio.run); the local executor instead awaits
`perform_async` on its one loop. Either way a cancel of the channel cancels
the coroutine (CancelledError inside the action) and so does the task's
deadline (the call then fails with Timeout).

The action's `ctx.cancelled()` turns true when the channel is cancelled or
the task's deadline passes, whichever comes first, so a step's `timeout`
reaches the action where it runs (a thread, a child process, another host)
without waiting for the driver to notice it.
"""

from __future__ import annotations

import sys
import time
import traceback
from collections.abc import Coroutine
from typing import Any

from weft.runtime.core.events import CancelTask, TaskCancelled
from weft.runtime.core.states import error_record
from weft.runtime.executors import polls
from weft.runtime.executors.port import Channel, Outcome, Task
from weft.runtime.records import check_serializable
from weft.sdk import actions
from weft.sdk.context import Context

WATCH = 0.05  # seconds between looks at the channel's cancellation while an async call runs on a loop of its own

_defs: dict[tuple[str, str], actions.ActionDef] = {}


def perform(task: Task, channel: Channel) -> Outcome:
    """Call the action of `task` (start or poll a polling action); its Outcome."""
    started = time.perf_counter()
    defn = _lookup(task, started)
    if isinstance(defn, Outcome):
        return defn
    if defn.asynchronous:
        import asyncio  # here and below: a process that calls no coroutine never imports asyncio

        return asyncio.run(_watched(_call_async(task, channel, defn, started), channel))
    try:
        answer = polls.call(defn, task.inputs, _context_for(defn, task, channel), task.poll)
    except KeyboardInterrupt:  # reaches only an action the driver called in the main thread
        raise
    except BaseException as e:  # noqa: BLE001 - the action's failure, whatever it is, fails the step
        return _failed(e, started)
    return _answered(answer, started)


async def perform_async(task: Task, channel: Channel) -> Outcome:
    """`perform` on the running event loop; cancelling this coroutine cancels the action's."""
    started = time.perf_counter()
    defn = _lookup(task, started)
    if isinstance(defn, Outcome):
        return defn
    return await _call_async(task, channel, defn, started)


async def _call_async(task: Task, channel: Channel, defn: actions.ActionDef, started: float) -> Outcome:
    import asyncio

    deadline = None if task.deadline is None else asyncio.timeout(task.deadline - time.time())
    call = polls.call_async(defn, task.inputs, _context_for(defn, task, channel), task.poll)
    try:
        if deadline is None:  # (most steps: no Timeout to make and enter)
            answer = await call
        else:
            async with deadline:
                answer = await call
    except asyncio.CancelledError:
        return Outcome.cancelled(_since(started))
    except TimeoutError as e:
        if deadline is None or not deadline.expired():
            return _failed(e, started)
        return Outcome(False, error=error_record("Timeout", "the step's deadline passed"), duration=_since(started))
    except BaseException as e:  # noqa: BLE001 - the action's failure, whatever it is, fails the step
        return _failed(e, started)
    return _answered(answer, started)


async def _watched(call: Coroutine[Any, Any, Outcome], channel: Channel) -> Outcome:
    """Await `call`, cancelling it once `channel` is cancelled; then close what its loop shared."""
    import asyncio

    from weft.sdk.loops import close_shared

    running = asyncio.ensure_future(call)
    try:
        while not running.done():
            await asyncio.wait([running], timeout=WATCH)
            if channel.cancelled() and not running.done():
                running.cancel()
                await asyncio.wait([running])
        return running.result()
    finally:
        await close_shared()


def _lookup(task: Task, started: float) -> actions.ActionDef | Outcome:
    """The task's ActionDef, or the Outcome saying it cannot be found."""
    try:
        return action_of(task.action, task.search_path)
    except LookupError as e:
        return Outcome(False, error=error_record("ActionNotFound", str(e)), duration=_since(started))


def _context_for(defn: actions.ActionDef, task: Task, channel: Channel) -> Context | None:
    """The Context of the call, or None when the action takes none (and is no polling action): not made then."""
    if not defn.wants_context and defn.poll is None:
        return None
    return Context(
        task.run,
        task.step,
        task.attempt,
        on_progress=channel.progress,
        on_log=channel.log,
        deadline=task.deadline,
        cancel_event=_Cancellation(channel, task.deadline),
    )


def _failed(e: BaseException, started: float) -> Outcome:
    error = error_record(type(e).__name__, str(e) or type(e).__name__, traceback.format_exc())
    return Outcome(False, error=error, duration=_since(started))


def _answered(answer: polls.Answer, started: float) -> Outcome:
    outputs, poll = answer
    problem = check_serializable(outputs) if outputs else None  # (no outputs, as most steps: nothing to pack)
    if problem:
        error = error_record("OutputError", f"outputs cannot be stored: {problem}")
        return Outcome(False, error=error, duration=_since(started))
    return Outcome(True, outputs=outputs, poll=poll, duration=_since(started))


def _since(started: float) -> float:
    return time.perf_counter() - started


def cancel_task(order: CancelTask, search_path: list[str]) -> TaskCancelled:
    """Stop the external task of `order` with its polling action's `cancel`; how it went."""
    try:
        defn = action_of(order.action, search_path)
    except LookupError as e:
        return TaskCancelled(order.step, order.attempt, "failed", str(e))
    return polls.cancel(defn, order.step, order.attempt, order.handle)


def action_of(ref: dict[str, str], search_path: list[str]) -> actions.ActionDef:
    """The ActionDef of action reference `ref` ({"module", "name"}), importable from `search_path` too."""
    for folder in search_path:
        if folder not in sys.path:
            sys.path.append(folder)
    return definition(ref["module"], ref["name"])


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
