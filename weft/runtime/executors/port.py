"""The executor port: serializable Tasks go out, serializable Outcomes come back, reports travel on a Channel.

The driver turns each Launch of the machine into a `Task` (plain data: the
action's module and name, its inputs, attempt, deadline, a polling step's
poll record, the folders to import the action module from, its step's bound
on calls in flight) and submits it
with a `Channel`. An executor runs the task wherever it likes (a thread here,
a subprocess, an agent across the network) and reports through the channel:
`progress(f)` and `log(line)` while it runs, `finish(outcome)` once; it looks
at `cancelled()` (or waits on `wait(s)`) to stop early. Tasks and Outcomes
round-trip through msgpack (`to_data` / `from_data`), so a remote executor
sends them as they are; like the machine's events, they are never changed
once made (slotted, not frozen: several are made per step).

On the engine's side, every channel of one driver reports into one `Reports`
queue, which the driver drains each round: it turns a finished Outcome into
the machine's event (`event`), and a cancel into `channel.cancel()`.
"""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, Protocol, TypedDict

from weft.plan.schema import ErrorRecord
from weft.runtime.core import events as ev
from weft.runtime.core.events import Launch
from weft.runtime.core.states import error_record, redoable


class PollReport(TypedDict, total=False):
    """What a polling action said: "started" (with its handle and timer) or "pending" (with its progress)."""

    state: Literal["started", "pending"]
    handle: Any
    every: float
    max_every: float
    factor: float
    progress: float | None


@dataclass(slots=True)
class Task:
    """One call of an action: attempt `attempt` of `step` of run `run` (its undo with `undo`)."""

    run: str
    step: str
    attempt: int
    action: dict[str, str] | None  # {"module", "name"}: `weft.sdk.actions.lookup(module, name)`; None: an engine job
    inputs: dict[str, Any]
    deadline: float | None = None  # epoch seconds; the action sees it as `ctx.deadline`
    undo: bool = False
    poll: dict | None = None  # a polling step's poll record: poll its handle once instead of calling
    search_path: list[str] = field(default_factory=list)  # folders to put on sys.path before the import
    queue: str | None = None  # the executor queue it goes to (a step's `queue`, its action's default); None: default
    redoable: bool = False  # its action is pure or idempotent: a remote executor may send it again
    call: str | None = None  # a remote call's id, recorded in the store before the call is sent
    limit: int | None = None  # its step's `concurrency`: at most this many tasks with its limit_key run at once
    limit_key: str | None = None  # "ROOT/each/.../step", shared by the step's tasks in every sub-run (limits.py)

    @property
    def id(self) -> str:
        return f"{self.run}/{self.step}/{self.attempt}" + ("/undo" if self.undo else "")

    @classmethod
    def of(
        cls, run: str, launch: Launch, search_path: list[str], call: str | None = None, limit: tuple | None = None
    ) -> Task:
        """The task for a machine's Launch (sent as remote call `call`), bounded by `limit` (key, n) if given."""
        action = launch.action
        key, n = limit or (None, None)
        return cls(
            run,
            launch.step,
            launch.attempt,
            None if action is None else {"module": action["module"], "name": action["name"]},
            launch.inputs,
            launch.deadline,
            launch.undo,
            launch.poll,
            list(search_path),
            launch.queue,
            redoable(action),
            call,
            n,
            key,
        )

    def to_data(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> Task:
        return cls(**data)


@dataclass(slots=True)
class Outcome:
    """How a task ended: `outputs` if `ok`, else `error`; `poll` when a polling action goes on."""

    ok: bool
    outputs: dict[str, Any] | None = None
    error: ErrorRecord | None = None
    duration: float = 0.0  # seconds the call took
    poll: PollReport | None = None

    @classmethod
    def cancelled(cls, duration: float = 0.0) -> Outcome:
        """A call cancelled, before or while it ran."""
        return cls(False, error=error_record("Cancelled", "the call was cancelled"), duration=duration)

    def to_data(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> Outcome:
        return cls(**data)


def event(task: Task, outcome: Outcome) -> ev.Event:
    """The machine's event for `outcome` of `task`."""
    if not outcome.ok:
        return ev.Failed(task.step, task.attempt, outcome.error, undo=task.undo)
    poll = outcome.poll
    if poll is None:
        return ev.Succeeded(task.step, task.attempt, outcome.outputs or {}, undo=task.undo)
    if poll["state"] == "started":
        return ev.PollStarted(task.step, task.attempt, poll["handle"], poll["every"], poll["max_every"], poll["factor"])
    return ev.PollPending(task.step, task.attempt, poll.get("progress"))


class Channel(Protocol):
    """What a running task reports through, and learns from that it should stop."""

    def progress(self, fraction: float) -> None: ...

    def log(self, line: str) -> None: ...

    def cancelled(self) -> bool: ...

    def wait(self, seconds: float) -> bool:
        """Sleep up to `seconds`, waking at once on cancellation; True if cancelled."""
        ...

    def finish(self, outcome: Outcome) -> None:
        """The task ended; called once."""
        ...


class Executor(Protocol):
    """Runs tasks; `submit` returns at once and the task reports through `channel`."""

    def submit(self, task: Task, channel: Channel) -> None: ...

    def close(self) -> None:
        """Take no more tasks; tasks still running may be abandoned."""
        ...


@dataclass(slots=True)
class Report:
    """One message from a task: kind "progress" (value: fraction), "log" (line), "done" (Outcome), "event", or, of a
    remote task, "placed" ((call, agent)) and "lost" (why)."""

    task: Task
    kind: str
    value: Any
    at: float


class Reports:
    """The engine's end of its channels: one queue every task of one driver reports into."""

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[Report] = queue.SimpleQueue()

    def channel(self, task: Task) -> TaskChannel:
        return TaskChannel(task, self._queue)

    def take(self, timeout: float) -> list[Report]:
        """The reports that arrived, waiting up to `timeout` seconds for a first one."""
        try:
            found = [self._queue.get(timeout=timeout)] if timeout > 0 else [self._queue.get_nowait()]
        except queue.Empty:
            return []
        while not self._queue.empty():  # (the driver is its one reader: no exception raised per round)
            found.append(self._queue.get_nowait())
        return found


class TaskChannel:
    """The Channel of one task on this side of the port; `cancel()` asks the task to stop.

    Its threading.Event is made on the first `wait` or `cancel`: most tasks never need one.
    """

    __slots__ = ("_cancel", "_sink", "task")

    def __init__(self, task: Task, sink: queue.SimpleQueue[Report]) -> None:
        self.task = task
        self._sink = sink
        self._cancel: threading.Event | None = None

    def _event(self) -> threading.Event:
        if self._cancel is None:
            with _MAKING:  # the task's thread (wait) and the driver's (cancel) must share one Event
                if self._cancel is None:
                    self._cancel = threading.Event()
        return self._cancel

    def progress(self, fraction: float) -> None:
        self._sink.put(Report(self.task, "progress", fraction, time.time()))

    def log(self, line: str) -> None:
        self._sink.put(Report(self.task, "log", line, time.time()))

    def cancelled(self) -> bool:
        return self._cancel is not None and self._cancel.is_set()

    def wait(self, seconds: float) -> bool:
        return self._event().wait(max(0.0, seconds))

    def finish(self, outcome: Outcome) -> None:
        self._sink.put(Report(self.task, "done", outcome, time.time()))

    def answer(self, event: ev.Event) -> None:
        """An engine job's end (an `each` step's look at its child runs): the machine's event itself."""
        self._sink.put(Report(self.task, "event", event, time.time()))

    def placed(self, call: str, agent: str) -> None:
        """A remote task's call `call` was taken by agent `agent`."""
        self._sink.put(Report(self.task, "placed", (call, agent), time.time()))

    def lost(self, detail: str) -> None:
        """A remote task's agent stopped answering while it ran the call: it ends unanswered."""
        self._sink.put(Report(self.task, "lost", detail, time.time()))

    def cancel(self) -> None:
        self._event().set()


_MAKING = threading.Lock()
