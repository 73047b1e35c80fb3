"""The driver: runs a Machine's launches on an executor and persists every transition.

One loop, in rounds. A round takes every action outcome that arrived, fires
due timers, reads requests (cancel, signal) left by other processes, asks the
machine what to start, and commits all of that in ONE write transaction (group
commit). Only after the commit are the new actions submitted and the
transitions reported, so a step is recorded running before its action is
called and a step's outputs are durable before any dependent starts.

Waiting costs no thread: a suspended polling step is a timer in the machine
until its next poll, which is a short launch like any other (waiting.py).
"""

from __future__ import annotations

import queue
import sys
import threading
import time
from concurrent.futures import Executor, Future
from typing import Callable

from weft.errors import WeftError
from weft.sdk.polling import Pending
from weft.runtime.core import steering
from weft.runtime.core import waiting
from weft.runtime.crash import crash_point
from weft.runtime.engine.each import Each
from weft.runtime.executors.threads import ThreadExecutor, perform
from weft.runtime.engine.lease import Lease
from weft.runtime.core.machine import Launch, Machine
from weft.runtime.executors.polls import Started
from weft.runtime.engine.session import persist
from weft.runtime.core.states import RUN_STOPPED, error_record
from weft.runtime.stores.lmdb.store import Store

DEFAULT_WORKERS = 16
POLL = 0.2  # seconds between looks at requests from other processes
QUICK = 0.001  # an action whose calls average less than this may run in the driver's own thread

Observer = Callable[[list[dict], "Driver"], None]


class Driver:
    """Drives one run owned through `lease`; `observer(events, driver)` sees each commit's events."""

    def __init__(
        self,
        store: Store,
        machine: Machine,
        lease: Lease,
        *,
        workers: int | None = None,
        executor: Executor | None = None,
        observer: Observer | None = None,
        until_waiting: bool = False,
        release_polls: bool = False,
    ) -> None:
        self.store = store
        self.machine = machine
        self.lease = lease
        self.workers = max(1, workers or DEFAULT_WORKERS)
        self.executor = executor or ThreadExecutor()
        self._own_executor = executor is None
        self._local = self.executor if self._own_executor else ThreadExecutor()
        self.observer = observer
        self.until_waiting = until_waiting
        # A worker lets go of a run between polls too: the timer index brings it back.
        self.release_polls = release_polls
        self.draining = threading.Event()  # set by a stopping worker: start nothing, return once nothing runs
        self.run_id = machine.run["id"]
        self.fractions: dict[str, float] = waiting.progress(machine)  # running or polling step -> reported progress
        self.inflight: dict[str, tuple[int, bool, threading.Event]] = {}  # step -> (attempt, undo, cancel)
        self._done: queue.SimpleQueue = queue.SimpleQueue()
        self._logs: queue.SimpleQueue = queue.SimpleQueue()  # log lines from actions
        self._consumed: list[bytes] = []
        self._took: dict[tuple[str, str], float] = {}  # action -> moving average of its call time
        for folder in machine.plan.get("search_path") or ():
            if folder not in sys.path:
                sys.path.append(folder)

    def drive(self) -> dict:
        """Drive the run until it ends or pauses (or, with `until_waiting`, waits for a signal)."""
        self.lease.keep_alive(self.store)
        try:
            return self._loop()
        finally:
            self.lease.stop()
            for _, _, cancel in self.inflight.values():
                cancel.set()
            self._local.shutdown(wait=False)
            if self._own_executor:
                self.executor.shutdown(wait=False)

    def _loop(self) -> dict:
        m = self.machine
        next_poll = 0.0
        arrived: list = []
        while True:
            now = time.time()
            while not self._logs.empty():  # lines an action logged come before its outcome
                m.events.append(self._logs.get_nowait())
            if arrived:
                self._apply(arrived, now)
                crash_point("after-action-before-commit")
            if now >= next_poll:
                self._poll(now)
                next_poll = now + POLL
            draining = self.draining.is_set()
            launches = m.launch(now, 0 if draining else self.workers - len(self.inflight))
            self._abandon_stale()
            stop = m.run["state"] in RUN_STOPPED or (
                not self.inflight
                and not launches
                and (draining or self.until_waiting and m.waiting_only(self.release_polls))
            )
            self._commit(release=stop)
            if stop:
                return m.run
            if len(launches) == 1 and not self.inflight and self._quick(launches[0]):
                arrived = [self._inline(launches[0])]
                continue
            for launch in launches:
                self._submit(launch)
            arrived = self._wait(now)

    # -- one round ----------------------------------------------------------------------

    def _apply(self, arrived: list[tuple[Launch, tuple]], now: float) -> None:
        m = self.machine
        for launch, (ok, payload, took) in arrived:
            entry = self.inflight.get(launch.step)
            if entry is None or entry[:2] != (launch.attempt, launch.undo):
                continue  # abandoned after a timeout; its late answer does not count
            del self.inflight[launch.step]
            if launch.action is not None:
                key = (launch.action["module"], launch.action["name"])
                self._took[key] = took if key not in self._took else (self._took[key] + took) / 2
            if launch.undo:
                if ok:
                    m.undone(launch.step, launch.attempt, now)
                else:
                    m.undo_failed(launch.step, launch.attempt, payload, now)
            elif not ok:
                m.failed(launch.step, launch.attempt, payload, now)
            elif isinstance(payload, Started):
                waiting.started(m, launch.step, launch.attempt, payload.handle, payload.spec, now)
            elif isinstance(payload, Pending):
                waiting.pending(m, launch.step, launch.attempt, payload.progress, now)
            elif launch.poll is not None:
                waiting.polled(m, launch.step, launch.attempt, payload, now)
            else:
                m.succeeded(launch.step, launch.attempt, payload, now)
            if launch.step not in m.polling:
                self.fractions.pop(launch.step, None)

    def _poll(self, now: float) -> None:
        """Act on cancel and signal requests that other processes left for this owner."""
        with self.store.read() as t:
            requests = t.requests(self.run_id)
        for key, req in requests:
            self._consumed.append(key)
            try:
                if req["kind"] == "cancel":
                    self.machine.note(now, f"cancel requested by {req.get('by', 'someone')}")
                    steering.cancel(self.machine, now)
                    for _, _, cancel in self.inflight.values():
                        cancel.set()
                elif req["kind"] == "signal":
                    steering.signal(self.machine, req["name"], req["fields"], now)
            except WeftError as e:
                self.machine.note(now, f"{req['kind']} request ignored: {e}")

    def _abandon_stale(self) -> None:
        """Forget actions whose step is no longer waiting for them (timed out, cancelled)."""
        m = self.machine
        for sid, (attempt, undo, cancel) in list(self.inflight.items()):
            rec = m.steps[sid]
            current = (
                sid in m.undoing if undo else (rec["state"] in ("running", "suspended") and rec["attempts"] == attempt)
            )
            if not current:
                cancel.set()
                del self.inflight[sid]
                self.fractions.pop(sid, None)

    def _commit(self, release: bool) -> None:
        m = self.machine
        if not (m.events or m.dirty or m.run_dirty or release or self._consumed):
            return
        crash_point("before-commit")
        consumed, self._consumed = self._consumed, []
        events = self.store.write(
            lambda t: persist(t, m, self.lease, fractions=self.fractions, release=release, consumed=consumed)
        )
        crash_point("after-commit")
        if self.observer is not None and events:
            self.observer(events, self)

    def _quick(self, launch: Launch) -> bool:
        """Whether to call the action in this thread: no timeout, not a poll, and its calls have been quick."""
        if launch.action is None or launch.poll is not None:
            return False
        took = self._took.get((launch.action["module"], launch.action["name"]))
        return took is not None and took < QUICK and launch.deadline is None and self._own_executor

    def _inline(self, launch: Launch) -> tuple[Launch, tuple]:
        """Call a quick action here, sparing two thread hand-offs (a chain of quick steps gains most)."""
        return launch, perform(
            self.run_id, launch.step, launch.attempt, launch.action, launch.inputs, None, *self._callbacks(launch)
        )

    def _callbacks(self, launch: Launch, local: bool = False) -> tuple:
        """on_progress, on_log and the cancel event of one action; the inflight entry is made here."""
        cancel = threading.Event()
        sid = launch.step
        self.inflight[sid] = (launch.attempt, launch.undo, cancel)
        if not (local or isinstance(self.executor, ThreadExecutor)):
            return None, None, None
        return (
            lambda f: self.fractions.__setitem__(sid, f),
            lambda text: self._logs.put({"t": time.time(), "step": sid, "log": text}),
            cancel,
        )

    def _submit(self, launch: Launch) -> None:
        if launch.items is not None:  # sub-runs need this process's store: always local threads
            job = Each(
                self.store,
                self.machine.run,
                self.machine.specs[launch.step],
                launch.items,
                launch.inputs,
                Driver,
                self.workers,
            )
            future = self._local.submit(job, *self._callbacks(launch, local=True))
        else:
            future = self.executor.submit(
                perform,
                self.run_id,
                launch.step,
                launch.attempt,
                launch.action,
                launch.inputs,
                launch.deadline,
                *self._callbacks(launch),
                poll=launch.poll,
            )
        future.add_done_callback(lambda f: self._done.put((launch, _outcome(f))))

    def _wait(self, now: float) -> list:
        """Block until an action answers, a timer is due, or it is time to poll."""
        due = self.machine.next_timer()
        timeout = POLL if due is None else min(POLL, max(0.0, due - now))
        try:
            arrived = [self._done.get(timeout=timeout)]
        except queue.Empty:
            return []
        while True:
            try:
                arrived.append(self._done.get_nowait())
            except queue.Empty:
                return arrived


def _outcome(future: Future) -> tuple:
    try:
        return future.result()
    except BaseException as e:  # a foreign executor failed to run it
        return False, error_record(type(e).__name__, str(e)), 0.0
