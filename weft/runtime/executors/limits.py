"""Bounds on the calls in flight in this process: a step's `concurrency N` and an action's `@action(concurrency=N)`.

A step declared `concurrency N` has at most N calls in flight at once across
its run and the run's sub-runs (every item of an `each` whose body holds it):
the driver gives its tasks a `limit` and a `limit_key` naming the root run and
the `each` steps down to the step (`RUN/hosts/dns`), the same in every
sub-run, and the local executor passes them through `STEPS`, the one Gate of
this process, before a thread or the event loop gets them. An action's bound
is its executor's own Gate, keyed by the action. A call that finds no room
waits in line (holding no thread) and starts when an earlier one ends; its
step is running meanwhile, so its timeout counts. A call cancelled while it
waits leaves the line within SWEEP seconds and ends Cancelled, never called
(a sweep thread runs while calls that can be cancelled wait). Several
processes (workers, agents) each keep their own bound.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Hashable
from typing import TYPE_CHECKING

from weft.runtime.executors.port import Channel, Outcome, Task

if TYPE_CHECKING:
    from weft.runtime.core.events import Launch
    from weft.runtime.stores.port import Store

SWEEP = 0.1  # seconds between looks for cancelled calls waiting in a Gate's lines
Start = Callable[[Callable[[], None] | None], None]  # starts a call; the callable it gets is called once it ended
Submit = Callable[[Task, Channel, Callable[[], None] | None], None]  # an executor's submit(task, channel, done)
_Waiter = tuple[Callable[[], None], Callable[[], bool] | None, Callable[[], None] | None]  # start, cancelled, drop


class Gate:
    """At most `limit` calls with one key running at once; the others wait in line, first come first served."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running: dict[Hashable, int] = {}
        self._waiting: dict[Hashable, deque[_Waiter]] = {}
        self._sweeping = False

    def enter(
        self,
        key: Hashable,
        limit: int,
        start: Callable[[], None],
        cancelled: Callable[[], bool] | None = None,
        drop: Callable[[], None] | None = None,
    ) -> None:
        """Call `start()` now if fewer than `limit` calls with `key` run, else once one of them left; or, once
        `cancelled()` while it waits, `drop()` instead (it leaves the line)."""
        with self._lock:
            if self._running.get(key, 0) >= limit:
                self._waiting.setdefault(key, deque()).append((start, cancelled, drop))
                if cancelled is not None and not self._sweeping:
                    self._sweeping = True
                    threading.Thread(target=self._sweep, name="weft-gate", daemon=True).start()
                return
            self._running[key] = self._running.get(key, 0) + 1
        _call(start)

    def _sweep(self) -> None:
        """Every SWEEP seconds while calls that can be cancelled wait: the cancelled ones leave their line."""
        while True:
            time.sleep(SWEEP)
            gone: list[Callable[[], None]] = []
            with self._lock:
                for key, line in self._waiting.items():
                    kept: deque[_Waiter] = deque()
                    for waiter in line:
                        (gone if waiter[1] is not None and waiter[1]() else kept).append(waiter)
                    self._waiting[key] = kept
                waiting = any(cancelled is not None for line in self._waiting.values() for _, cancelled, _ in line)
                if not waiting:
                    self._sweeping = False
            for _, _, drop in gone:
                if drop is not None:
                    drop()
            if not waiting:
                return

    def leave(self, key: Hashable) -> None:
        """A call with `key` ended: the next in line takes its place."""
        with self._lock:
            line = self._waiting.get(key)
            if not line:
                if self._running[key] == 1:
                    del self._running[key]
                else:
                    self._running[key] -= 1
                self._waiting.pop(key, None)
                return
            start = line.popleft()[0]
        _call(start)


_calling = threading.local()


def _call(start: Callable[[], None]) -> None:
    """`start()`; inside a start called here in this thread, after it: a line of cancelled calls, each ending as
    it starts and letting the next in, is drained in a loop, not by recursion."""
    pending = getattr(_calling, "pending", None)
    if pending is not None:
        pending.append(start)
        return
    _calling.pending = pending = deque([start])
    try:
        while pending:
            pending.popleft()()
    finally:
        _calling.pending = None


STEPS = Gate()  # the steps' bounds, one for the process: the sub-runs of a run may be driven by several drivers


def submit_within(gates: list[tuple[Gate, Hashable, int]], submit: Submit, task: Task, channel: Channel) -> None:
    """`submit(task, channel, done)` once each of `gates` (gate, key, limit) let the task in, in order; `done()`
    lets it out of every one. A task cancelled while it waited in line ends Cancelled, never called."""
    if not gates:  # (most tasks: no bound, nothing to wrap)
        submit(task, channel, None)
        return

    def start(done: Callable[[], None] | None) -> None:
        if done is not None and channel.cancelled():
            drop(done)
        else:
            submit(task, channel, done)

    def drop(done: Callable[[], None] | None) -> None:
        channel.finish(Outcome.cancelled())
        if done is not None:
            done()

    _through(gates, start, drop, channel.cancelled, None)


def _through(
    gates: list[tuple[Gate, Hashable, int]],
    start: Start,
    drop: Start,
    cancelled: Callable[[], bool],
    done: Callable[[], None] | None,
) -> None:
    """`start(end)` once each of `gates` let the call in; `end()` lets it out of every one, then calls `done`.
    Cancelled while it waits at a gate: `drop(done)`, which lets it out of the gates it passed."""
    if not gates:
        start(done)
        return
    (gate, key, limit), rest = gates[0], gates[1:]

    def left() -> None:
        gate.leave(key)
        if done is not None:
            done()

    gate.enter(key, limit, lambda: _through(rest, start, drop, cancelled, left), cancelled, lambda: drop(done))


class StepLimits:
    """The steps of one run that declare `concurrency N`, and the key their tasks share with the run's family."""

    def __init__(self, store: Store, run: dict, plan: dict) -> None:
        self.limits = {s["id"]: s["concurrency"] for s in plan["steps"] if s.get("concurrency")}
        self._store = store
        self._run = run
        self._scope: str | None = None

    def limited(self, launch: Launch) -> bool:
        """Whether `launch` is a call its step's bound counts (an undo is not)."""
        return not launch.undo and launch.step in self.limits

    def of(self, launch: Launch) -> tuple[str, int] | None:
        """(key, limit) for the task of `launch`, or None when no bound applies."""
        if not self.limited(launch):
            return None
        if self._scope is None:
            self._scope = scope(self._store, self._run)
        return f"{self._scope}/{launch.step}", self.limits[launch.step]


def scope(store: Store, run: dict) -> str:
    """`ROOT/each/...`: the root run of `run` and the `each` steps from it down to `run` (none for a root)."""
    path: list[str] = []
    seen = {run["id"]}
    root = run["id"]
    parent = run.get("parent")
    with store.read() as t:
        while parent is not None and parent["run"] not in seen:
            path.append(parent["step"])
            root = parent["run"]
            seen.add(root)
            above = t.run(root)
            parent = above.get("parent") if above else None
    return "/".join([root, *reversed(path)])
