"""Polling actions: start an external task, then poll it on a timer.

    @action(poll_every=2.0, poll_max=60.0)
    class sync_repository:
        '''Sync a repository from its upstream.'''

        def start(self, repository_id: int) -> Any:    # the inputs are start's parameters
            return {"task": client.sync(repository_id)}  # a handle: plain data, persisted

        def poll(self, handle: Any, ctx: Context) -> SyncResult | Pending:
            task = client.task(handle["task"])
            return Pending(progress=task.progress) if task.running else SyncResult(...)

        def cancel(self, handle: Any) -> None:         # optional: stop the external task
            client.cancel(handle["task"])

`start`, `poll` and `cancel` may be coroutines (`async def`): the action then
runs on the executor's event loop like any `async def` action.

The runtime persists the handle, holds no worker thread between polls, and
polls again after `poll_every` seconds, growing by `poll_factor` up to
`poll_max`; after a restart, suspended steps go on polling with their handle.
When the runtime stops waiting for a task it started (the run is cancelled,
the step times out, a rollback finds it still going), it calls `cancel` with
the handle; raising says the task could not be cancelled.
"""

from __future__ import annotations

import functools
import inspect
import time
import types
import typing
from dataclasses import dataclass
from typing import Any

from weft.sdk import actions as A
from weft.sdk.context import Context


@dataclass(frozen=True, slots=True)
class PollSpec:
    every: float  # seconds before the first poll
    max_every: float  # the interval grows up to this
    factor: float  # and by this much after each poll

    def next_interval(self, previous: float | None) -> float:
        if previous is None:
            return self.every
        return min(self.max_every, previous * self.factor)


class Pending:
    """What `poll` returns while the external task is still running."""

    __slots__ = ("progress", "message")

    def __init__(self, progress: float | None = None, message: str | None = None) -> None:
        self.progress, self.message = progress, message


def define_poller(cls: type, idempotent: bool, undo: Any, name: str | None, spec: PollSpec) -> A.ActionDef:
    """The ActionDef of a class with `start(...)` and `poll(handle)`; every problem listed at once."""
    name = cls.__name__ if name is None else name
    problems: list[str] = []
    start, poll = (inspect.getattr_static(cls, m, None) for m in ("start", "poll"))
    for method, fn in (("start", start), ("poll", poll)):
        if not inspect.isfunction(fn):
            problems.append(f"a polling action needs a method '{method}'")
    stop = inspect.getattr_static(cls, "cancel", None)
    if stop is not None and not (inspect.isfunction(stop) and _takes_one(stop)):
        problems.append("'cancel' must be a method cancel(self, handle) that stops the external task")
    if not (spec.every > 0 and spec.max_every >= spec.every and spec.factor >= 1):
        problems.append("poll_every must be > 0, poll_max >= poll_every and poll_factor >= 1")
    if not (isinstance(name, str) and name.isidentifier()):
        problems.append(f"name {name!r} is not a plain identifier")
    params, context_param, outputs, open_outputs = (), None, A.typesys.EMPTY, False
    if not problems:
        start_hints = A._hints(start, problems)
        params, context_param = A._params(functools.partial(start, None), start_hints, problems)
        poll_hints = A._hints(poll, problems)
        if "return" in poll_hints:
            poll_hints["return"] = _without_pending(poll_hints["return"])
        outputs, open_outputs = A._outputs(poll_hints, problems)
    undo_name = A._undo_name(cls, undo, problems)
    file, line = _class_location(cls)
    if problems:
        raise A.ActionDefinitionError(
            A._listing(f"invalid polling action {name!r} ({file}:{line})", problems), problems
        )
    return A.ActionDef(
        name=name,
        func=cls,
        module=cls.__module__,
        params=params,
        outputs=outputs,
        open_outputs=open_outputs,
        idempotent=idempotent,
        undo=undo_name,
        doc=A._first_paragraph(cls),
        file=file,
        line=line,
        context_param=context_param,
        poll=spec,
        asynchronous=inspect.iscoroutinefunction(start) or inspect.iscoroutinefunction(poll),
    )


def _takes_one(fn: Any) -> bool:
    """Whether method `fn` takes one argument besides self."""
    try:
        inspect.signature(fn).bind(None, None)
    except TypeError:
        return False
    return True


def _without_pending(hint: Any) -> Any:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        rest = tuple(a for a in typing.get_args(hint) if a is not Pending)
        return rest[0] if len(rest) == 1 else typing.Union[rest]
    return hint


def _class_location(cls: type) -> tuple[str, int]:
    try:
        return inspect.getsourcefile(cls) or "?", inspect.getsourcelines(cls)[1]
    except (OSError, TypeError):
        return "?", 0


def start(defn: A.ActionDef, inputs: dict, ctx: Context | None = None) -> Any:
    """Start the external task; the handle it returns, as plain data."""
    return _handle(defn, A.settled(_start(defn, inputs, ctx)))


async def start_async(defn: A.ActionDef, inputs: dict, ctx: Context | None = None) -> Any:
    """`start` from a coroutine: a coroutine `start` is awaited."""
    return _handle(defn, await A.awaited(_start(defn, inputs, ctx)))


def _start(defn: A.ActionDef, inputs: dict, ctx: Context | None) -> Any:
    kwargs = A._bind(defn, inputs)
    if defn.context_param is not None:
        kwargs[defn.context_param] = ctx or Context("local", defn.name)
    return defn.func().start(**kwargs)


def _handle(defn: A.ActionDef, value: Any) -> Any:
    problems: list[str] = []
    handle = A._plain(value, "handle", problems)
    if problems:
        raise A.ActionResultError(
            A._listing(f"action '{defn.name}' started with a handle that is not plain data", problems)
        )
    return handle


def poll(defn: A.ActionDef, handle: Any, ctx: Context | None = None) -> Pending | dict:
    """Poll once: Pending, or the outputs (checked like any action's)."""
    return _polled(defn, A.settled(_poll(defn, handle, ctx)), ctx)


async def poll_async(defn: A.ActionDef, handle: Any, ctx: Context | None = None) -> Pending | dict:
    """`poll` from a coroutine: a coroutine `poll` is awaited."""
    return _polled(defn, await A.awaited(_poll(defn, handle, ctx)), ctx)


def _poll(defn: A.ActionDef, handle: Any, ctx: Context | None) -> Any:
    method = defn.func().poll
    takes_ctx = len(inspect.signature(method).parameters) > 1
    return method(handle, ctx or Context("local", defn.name)) if takes_ctx else method(handle)


def _polled(defn: A.ActionDef, result: Any, ctx: Context | None) -> Pending | dict:
    if isinstance(result, Pending):
        if ctx is not None and result.progress is not None:
            ctx.progress(result.progress)
        return result
    return A.normalize_outputs(defn, result)


def cancellable(defn: A.ActionDef) -> bool:
    """Whether polling action `defn` can stop the external tasks it starts (it defines `cancel`)."""
    return defn.poll is not None and inspect.getattr_static(defn.func, "cancel", None) is not None


def cancel(defn: A.ActionDef, handle: Any) -> None:
    """Stop the external task `handle`: the action's `cancel` (raising when it could not)."""
    A.settled(defn.func().cancel(handle))


def run_to_end(defn: A.ActionDef, inputs: dict, ctx: Context | None = None) -> dict:
    """Start and poll in this thread until done (for local calls and tests)."""
    handle = start(defn, inputs, ctx)
    interval = None
    while True:
        result = poll(defn, handle, ctx)
        if not isinstance(result, Pending):
            return result
        interval = defn.poll.next_interval(interval)
        time.sleep(interval)
