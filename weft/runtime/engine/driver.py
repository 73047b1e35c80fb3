"""The driver: a loop that feeds a Machine what happened and hands its launches to an executor.

One loop, in rounds: collect what the running tasks reported (outcomes,
progress, log lines) and the requests (cancel, signal) other processes left,
apply each to the machine as an event, ask the machine what to start, save
all of that in ONE write transaction (group commit), and only then submit the
new tasks. So a step is recorded running before its action is called and a
step's outputs are durable before any dependent starts.

Actions go through the executor port (executors/port.py) as serializable
Tasks; an `each` step's work (a look at its child runs, their rollback) needs
this process's store and runs in a local thread as an engine job that answers
with the machine's event itself. Waiting costs no thread: a suspended polling
step is a timer in the machine until its next poll, a short task like any
other.
A task the machine stops waiting for (its step timed out, or the run is
cancelled) is cancelled through its channel, and the driver waits, up to ACK
seconds, for it to finish before it saves that round (the step's failure) or
exits: what the action started (std.exec's program) is gone by the time the
step is recorded failed, so a resume cannot start a second copy beside it.
Quick actions (calls averaging under QUICK in this process, no timeout)
are called in the driver's own thread, after the round's other tasks were
handed out: no thread hand-off per step. A round whose launches are all such
calls of pure or idempotent actions, after a round that did nothing else,
may skip its commit (up to SHARE seconds since the last one): those steps'
transitions share the next commit, and a crash loses only work that a
resume does again. Any other step still commits before it is called and its
outcome commits before anything starts after it (docs/runtime.md, "Shared
commits").
An external task the machine no longer waits for (see waiting.py) is
cancelled in a thread of this process with its polling action's `cancel`;
the driver lets go of the run only once each cancel answered (or CANCEL_WAIT
passed).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from functools import partial

from weft.errors import WeftError
from weft.runtime.core import events as ev
from weft.runtime.core.events import CancelTask, Launch
from weft.runtime.core.machine import Machine
from weft.runtime.core.states import RUN_STOPPED, error_record, redoable
from weft.runtime.crash import crash_point
from weft.runtime.engine import collector, each, remote
from weft.runtime.engine.lease import Lease
from weft.runtime.engine.session import persist
from weft.runtime.executors.perform import cancel_task, perform
from weft.runtime.executors.port import Executor, Report, Reports, Task, TaskChannel, event
from weft.runtime.executors.limits import StepLimits
from weft.runtime.executors.local import LocalExecutor
from weft.runtime.executors.threads import Threads
from weft.runtime.stores.port import Store

DEFAULT_WORKERS = 64  # plain actions' calls in flight, one thread each: sized for calls that wait on I/O
DEFAULT_CONCURRENCY = 1000  # `async def` actions' calls in flight on the local executor's event loop
REMOTE_WORKERS = 1000  # calls in flight on agents at once: they hold no thread here
POLL = 0.2  # seconds between looks at requests from other processes
QUICK = 0.001  # an action whose calls average less than this runs in the driver's own thread
SHARE = 0.05  # seconds of pure and idempotent quick steps that may share one commit (lost and redone by a crash)
ACK = 3.0  # seconds a cancelled task may take to finish before the driver goes on without it (> processes.GRACE)
CANCEL_WAIT = 30.0  # seconds an external task's `cancel` may take before it counts as failed

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
        concurrency: int | None = None,
        executor: Executor | None = None,
        observer: Observer | None = None,
        until_waiting: bool = False,
        release_polls: bool = False,
        children: bool = True,
    ) -> None:
        self.store = store
        self.machine = machine
        self.lease = lease
        self.remote = getattr(executor, "remote", False)  # its tasks go to agents: calls recorded before sent
        self.workers = max(1, workers or (REMOTE_WORKERS if self.remote else DEFAULT_WORKERS))
        self.concurrency = max(1, concurrency or DEFAULT_CONCURRENCY)
        self.executor = executor or LocalExecutor()
        self._own_executor = executor is None
        self._jobs = Threads()  # engine jobs of `each` steps: they need this process's store
        self.observer = observer
        self.until_waiting = until_waiting
        # A worker lets go of a run between polls too: the timer index brings it back.
        self.release_polls = release_polls
        # Child runs of its `each` steps are driven here too (a worker serves them on its own: False).
        self.children = children and any(s["kind"] == "each" for s in machine.plan["steps"])
        self.draining = threading.Event()  # set by a stopping worker: start nothing, return once nothing runs
        self.run_id = machine.run["id"]
        self.search_path = list(machine.plan.get("search_path") or ())
        self.inflight: dict[str, TaskChannel] = {}  # step -> the channel of its task now running
        self.calls: dict[str, str] = {}  # step -> the call id recorded for its launch, for a remote executor
        self.limits = StepLimits(store, machine.run, machine.plan)  # steps declaring `concurrency N` (limits.py)
        self._reports = Reports()
        self._early: list[Report] = []  # reports that came while waiting for cancelled tasks: for the next round
        self._consumed: list[str] = []  # names of the requests acted on
        self._inline = isinstance(self.executor, LocalExecutor)  # quick actions may run in this thread
        # calls in flight at once: threads and async calls have bounds of their own on the local executor
        self.room = self.executor.room(machine.plan, self.workers, self.concurrency) if self._inline else self.workers
        self._here: set[int] = set()  # ids of the redoable tasks called in this thread, not applied yet
        self._plain: dict[tuple[str, str], bool] = {}  # (module, action) -> it may be called here (not async)
        self._redoable = True  # nothing since the last commit that a crash may not lose (see `_share`)
        self._committed = time.monotonic()
        self._pump: each.Children | None = None  # this process serving the run's sub-runs
        self._poked = False  # a sub-run driven here stopped: look at the requests now
        self._cancelling: dict[int, tuple[Task, CancelTask, float]] = {}  # external tasks' cancels under way

    def drive(self) -> dict:
        """Drive the run until it ends or pauses (or, with `until_waiting`, waits for a signal).

        What the process holds when it begins (the plan, the machine: some 200,000 containers for 50,000 steps) is
        kept out of the garbage collector's sight while it drives, and young collections are rarer (collector.py).
        """
        with collector.driving():
            return self._drive()

    def _drive(self) -> dict:
        self.lease.keep_alive(self.store)
        sub = partial(Driver, executor=self.executor)  # sub-runs driven here share this driver's executor
        self._pump = each.drive_children(self.store, self, sub) if self.children else None
        remote.reattach(self, time.time())
        try:
            return self._loop()
        finally:
            if self._pump is not None:
                if self.machine.run["state"] == "cancelled":
                    self._pump.settle(CANCEL_WAIT)  # sub-runs cancelled with it between polls: their cancels
                self._pump.stop()
            self.lease.stop()
            for channel in self.inflight.values():
                channel.cancel()
            self._settle(list(self.inflight.values()))
            self._jobs.shutdown(wait=False)
            if self._own_executor:
                self.executor.close()

    def _loop(self) -> dict:
        m = self.machine
        next_poll = 0.0
        reports: list[Report] = []
        while True:
            now = time.time()
            if reports:
                self._apply(reports, now)
                crash_point("after-action-before-commit")
            draining = self.draining.is_set()
            poked = self._poked and not any(m.specs[sid]["kind"] == "each" for sid in self.inflight)  # (no look out)
            if now >= next_poll or draining or poked:  # a stopping driver acts on every request before it lets go
                self._poked = False
                self._poll(now)
                next_poll = now + POLL
            launches = m.launches(now, 0 if draining else self.room - len(self.inflight))
            if self.remote:
                remote.dispatch(self, launches, now)
            self._abandon_stale()
            cancels = m.cancellations()
            self._give_up_cancels(now)
            stop = (
                m.run["state"] in RUN_STOPPED
                or (
                    not self.inflight
                    and not launches
                    and (draining or self.until_waiting and m.waiting_only(self.release_polls))
                )
            ) and not (cancels or self._cancelling)
            here, there = [], []
            for launch in launches:
                (here if self._quick(launch) else there).append(launch)
            if stop or not self._share(launches, here, cancels):
                self._commit(release=stop)
            if stop:
                return m.run
            for launch in there:
                self._submit(launch)
            for order in cancels:
                self._cancel(order)
            for launch in here:
                self._run_here(launch)
            reports = self._collect(now)

    def poke(self) -> None:
        """Look at the requests left for this run now, not at the next POLL (from any thread)."""
        self._poked = True
        self._reports.channel(_POKE).finish(None)  # wakes the loop; answers no task in flight

    # -- one round ----------------------------------------------------------------------

    def _apply(self, reports: list[Report], now: float) -> None:
        m = self.machine
        for report in reports:
            task = report.task
            if id(task) in self._cancelling:  # an external task's cancel answered
                self._redoable = False
                del self._cancelling[id(task)]
                m.apply(report.value, now)
                continue
            if report.kind == "log":  # what an action said is history, even after it was abandoned
                self._redoable = False
                m.apply(ev.Logged(task.step, report.value, report.at), now)
                continue
            channel = self.inflight.get(task.step)
            if channel is None or channel.task is not task:
                continue  # abandoned after a timeout or cancel; its late answer does not count
            if report.kind in ("placed", "lost"):
                remote.apply(self, report, now)
                continue
            if report.kind == "progress":
                self._redoable = False
                m.apply(ev.Progressed(task.step, task.attempt, report.value), now)
                continue
            del self.inflight[task.step]
            if report.kind == "event":  # an engine job answers with the machine's event
                self._redoable = False
                self._poked = True  # the requests of sub-runs that stopped while it looked, now
                if self._pump is not None:
                    self._pump.worker.wake()  # a look may have made sub-runs: claim them now
                m.apply(report.value, now)
                continue
            outcome = report.value
            self.clock(task.action, outcome.duration)
            if id(task) not in self._here:
                self._redoable = False
            self._here.discard(id(task))
            m.apply(event(task, outcome), now)

    def _poll(self, now: float) -> None:
        """Act on cancel and signal requests that other processes left for this owner."""
        with self.store.read() as t:
            requests = t.requests(self.run_id)
        for name, req in requests:
            self._consumed.append(name)
            try:
                if req["kind"] == "cancel":
                    self.machine.apply(ev.Cancel(by=req.get("by", "someone")), now)
                    for channel in self.inflight.values():
                        channel.cancel()
                elif req["kind"] == "signal":
                    self.machine.apply(ev.Signal(req["name"], req["fields"]), now)
                elif req["kind"] == "child" and not each.woken(self.machine, req, now):
                    self._consumed.pop()  # a look at the children is out: this wakes the step once it answers
            except WeftError as e:
                self.machine.note(now, f"{req['kind']} request ignored: {e}")

    def _abandon_stale(self) -> None:
        """Cancel and forget tasks whose step no longer waits for them (timed out, cancelled), once they finished.

        Only a step the machine changed since the last commit can have stopped waiting: those are looked at,
        not every task in flight (10,000 async calls in flight made that scan most of the driver's work).
        """
        m = self.machine
        if not self.inflight:
            return
        stale = []
        for sid in [sid for sid in m.dirty | m.unsaved if sid in self.inflight]:
            channel = self.inflight[sid]
            task = channel.task
            if not m.awaits(sid, task.attempt, task.undo):
                channel.cancel()
                del self.inflight[sid]
                stale.append(channel)
        self._settle(stale)

    def _settle(self, channels: list[TaskChannel]) -> None:
        """Wait, up to ACK seconds, until the cancelled tasks of `channels` finished; keep other reports for later."""
        waiting = {id(channel.task) for channel in channels if channel.task.action is not None}
        end = time.monotonic() + ACK
        while waiting and (left := end - time.monotonic()) > 0:
            for report in self._reports.take(left):
                if report.kind in ("done", "event") and id(report.task) in waiting:
                    waiting.discard(id(report.task))
                else:
                    self._early.append(report)

    def _share(self, launches: list[Launch], here: list[Launch], cancels: list[CancelTask]) -> bool:
        """Whether this round's launches may be called before a commit: each is a pure or idempotent quick step
        called here, nothing since the last commit is more than such steps' outcomes, and that commit is at most
        SHARE seconds old. A crash then loses only work that `weft resume` simply does again (docs/runtime.md)."""
        return (
            self._redoable
            and bool(launches)
            and len(here) == len(launches)
            and not (cancels or self._cancelling or self._consumed)
            and all(redoable(launch.action) and not launch.undo for launch in here)
            and time.monotonic() - self._committed < SHARE
        )

    def _commit(self, release: bool) -> None:
        m = self.machine
        self._redoable, self._committed = True, time.monotonic()
        if not (m.has_changes() or release or self._consumed):
            return
        crash_point("before-commit")
        consumed, self._consumed = self._consumed, []
        events = self.store.write(lambda t: persist(t, m, self.lease, release=release, consumed=consumed))
        crash_point("after-commit")
        if self.observer is not None and events:
            self.observer(events, self)

    # -- handing out work ---------------------------------------------------------------

    def _channel(self, launch: Launch) -> TaskChannel:
        """A new task's channel, recorded as in flight."""
        call, limit = self.calls.pop(launch.step, None), self.limits.of(launch)
        channel = self._reports.channel(Task.of(self.run_id, launch, self.search_path, call, limit))
        self.inflight[launch.step] = channel
        return channel

    def _quick(self, launch: Launch) -> bool:
        """Whether to call the action in this thread: no timeout, not a poll, and its calls have been quick."""
        if launch.action is None or launch.poll is not None or not self._inline or self.limits.limited(launch):
            return False  # (a step's `concurrency` is counted by the executor)
        return launch.deadline is None and self.quick_action(launch.action)

    def quick_action(self, action: dict) -> bool:
        """Whether `action` is a plain (not async) one whose calls have averaged under QUICK in this process."""
        key = action["module"], action["name"]
        plain = self._plain.get(key)
        if plain is None:
            plain = self._plain[key] = self._inline and not self.executor.asynchronous(action, self.search_path)
        if not plain:
            return False  # async: here it would need an event loop of its own (the executor's loop runs it)
        took = _TOOK.get(key)
        return took is not None and took < QUICK

    @staticmethod
    def clock(action: dict, took: float) -> None:
        """A call of `action` took `took` seconds in this process (what `quick_action` goes by)."""
        key = (action["module"], action["name"])
        _TOOK[key] = took if key not in _TOOK else (_TOOK[key] + took) / 2

    def _run_here(self, launch: Launch) -> None:
        """Call a quick action here, sparing two thread hand-offs per step."""
        channel = self._channel(launch)
        if redoable(launch.action) and not launch.undo:
            self._here.add(id(channel.task))
        channel.finish(perform(channel.task, channel))

    def _submit(self, launch: Launch) -> None:
        if self.machine.specs[launch.step]["kind"] == "each":
            job = each.job(self.store, self.machine, launch, self, self._pump)
            self._jobs.run(_engine_job, job, self._channel(launch))
        else:
            channel = self._channel(launch)
            self.executor.submit(channel.task, channel)

    def _cancel(self, order: CancelTask) -> None:
        """Call the `cancel` of an external task in a thread; its TaskCancelled comes back as a report."""
        task = Task(self.run_id, order.step, order.attempt, None, {})
        self._cancelling[id(task)] = (task, order, time.monotonic() + CANCEL_WAIT)
        self._jobs.run(_cancel_job, order, self.search_path, self._reports.channel(task))

    def _give_up_cancels(self, now: float) -> None:
        """A cancel that did not answer within CANCEL_WAIT failed; a late answer does not count."""
        if not self._cancelling:
            return
        late = [key for key, (_, _, until) in self._cancelling.items() if until < time.monotonic()]
        for key in late:
            _, order, _ = self._cancelling.pop(key)
            detail = f"its cancel did not answer within {CANCEL_WAIT:g}s"
            self.machine.apply(ev.TaskCancelled(order.step, order.attempt, "failed", detail), now)

    def _collect(self, now: float) -> list[Report]:
        """Wait until a task reports, a timer is due, or it is time to poll; what arrived."""
        if self._early:
            early, self._early = self._early, []
            return early + self._reports.take(0)
        due = self.machine.next_timer()
        return self._reports.take(POLL if due is None else min(POLL, max(0.0, due - now)))


_POKE = Task("", "", 0, None, {})  # the task of `poke`'s report, which no channel in flight has
_TOOK: dict[tuple[str, str], float] = {}  # (module, action) -> moving average of its call's seconds, in this process


def _cancel_job(order: CancelTask, search_path: list[str], channel: TaskChannel) -> None:
    try:
        answer = cancel_task(order, search_path)
    except Exception as e:  # noqa: BLE001 - a fault in the lookup: the task was not cancelled
        answer = ev.TaskCancelled(order.step, order.attempt, "failed", f"{type(e).__name__}: {e}")
    channel.answer(answer)


def _engine_job(job: Callable[[], ev.Event], channel: TaskChannel) -> None:
    """Run an engine job; a fault in it fails its step like an action's would."""
    try:
        answer = job()
    except Exception as e:  # noqa: BLE001 - any fault of the job fails its step
        task = channel.task
        answer = ev.Failed(task.step, task.attempt, error_record(type(e).__name__, str(e)), undo=task.undo)
    channel.answer(answer)
