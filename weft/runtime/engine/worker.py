"""The worker service: drives the runs of a store that need a process, as Dynflow's executor serves Foreman.

A Worker finds work in three places, none of which means scanning every
run: the work queue (detached runs, signals left for them, runs
a stopping worker handed back), the store's timers (due polls,
retries and deadlines of runs no process holds) and the leases of runs whose
owner died (a dead pid on this host, or a heartbeat older than the TTL). It
claims a run in one transaction that takes the lease, dequeues it and
recovers what a dead owner left running, so several workers on one store
never drive a run twice. Each claimed run is driven in a thread until it
ends, pauses, or only waits for a signal or a timer; then it is let go, and
holds no thread while it waits.

`stop()` claims nothing more and lets running steps finish within the grace
period; each run is then let go and queued for another worker. Runs whose
steps outlast the grace lose their lease at once, so the next owner recovers
those steps as after a crash: nothing is lost. A signal handler calls
`signalled()` instead, which only counts and writes a byte to a self-pipe (it
can never block on a lock the interrupted main thread holds); the serving
loop, woken by the pipe, then stops (after a second signal: at once).
"""

from __future__ import annotations

import itertools
import os
import select
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import TYPE_CHECKING

from weft.errors import WeftError
from weft.runtime.core import steering
from weft.runtime.core.machine import Machine
from weft.runtime.core.states import RUN_STOPPED, RunState
from weft.runtime.core.waiting import pending_cancels
from weft.runtime.engine.lease import HEARTBEAT, HOST, Lease, LeaseHeld, LeaseLost, describe, holder_alive
from weft.runtime.engine import remote
from weft.runtime.engine.registry import Announcement, Registry
from weft.runtime.engine.session import check_plan, persist, start_due
from weft.runtime.executors.threads import Threads
from weft.runtime.stores.port import Store, Timer, Txn

if TYPE_CHECKING:
    from weft.runtime.engine.driver import Driver
    from weft.runtime.executors.port import Executor

POLL = 0.25  # seconds between looks at the queue and the timers
TIMER_SCAN = 1000  # due timers read per look
LEASE_SCAN = 1.0  # seconds between looks for runs whose owner died
SCHEDULES = 1.0  # seconds between looks at the schedules
RECHECK = 5.0  # a queued run that another live process drives is looked at again this much later
RETRY_CLAIM = 60.0  # a run whose claim failed (a corrupt record...) is tried again this much later
DEFAULT_RUNS = 8


class WorkerLease(Lease):
    """A worker's lease: letting go of a run that has work left queues it, in the same transaction.

    Work left: the worker is stopping, or a request (a signal) came after the driver's last look.
    A run waiting for a timer needs no entry: the timer index has it.
    """

    def __init__(self, run_id: str, stopping: threading.Event) -> None:
        super().__init__(run_id)
        self.stopping = stopping

    def record(self, now: float) -> dict:
        return {**super().record(now), "worker": True}

    def release(self, txn: Txn) -> None:
        held = (txn.lease(self.run_id) or {}).get("token") == self.token
        super().release(txn)
        run = txn.run(self.run_id)
        unfinished = held and run is not None and run["state"] in ("pending", "running")
        if unfinished and (self.stopping.is_set() or txn.requests(self.run_id)):
            txn.enqueue(self.run_id, time.time())


class Wakeup:
    """A self-pipe: `set()` never blocks (from any thread, or a signal handler); `wait(s)` sleeps until set."""

    def __init__(self) -> None:
        self._read, self._write = os.pipe()
        os.set_blocking(self._read, False)
        os.set_blocking(self._write, False)

    def set(self) -> None:
        try:
            os.write(self._write, b"!")
        except BlockingIOError:  # the pipe is full: a wake-up is pending already
            pass

    def wait(self, timeout: float) -> None:
        """Sleep until `set()` (since the last wait) or `timeout` seconds."""
        select.select([self._read], [], [], max(0.0, timeout))
        try:
            while os.read(self._read, 4096):
                pass
        except BlockingIOError:
            pass

    def __del__(self) -> None:  # only once no thread can call set() any more
        os.close(self._read)
        os.close(self._write)


@dataclass(frozen=True)
class Notice:
    """Something a worker did, for its observer (the CLI prints a log line per notice).

    kinds: "serving", "events" (history events just made durable), "not claimed"
    (`error`), "handed back" (stopping), "waits" (let go until a signal in `names`
    or a timer at `when`), "lost" (`error`: the lease was taken over), "failed"
    (`error`), "trouble" (`error`: not about one run), "stopping" (`count` runs finish their running steps), "cut short"
    (let go with steps `names` still running), "stopped".
    """

    kind: str
    t: float
    run_id: str | None = None
    run: dict | None = None  # the run's record as the worker holds it
    events: tuple[dict, ...] = ()
    error: str | None = None
    names: tuple[str, ...] = ()
    when: float | None = None
    count: int = 0


class Worker:
    """Serves one open store: claims runs that need a process and drives up to `runs` of them at once."""

    def __init__(
        self,
        store: Store,
        driver: type[Driver],
        *,
        runs: int = DEFAULT_RUNS,
        grace: float = 30.0,
        once: bool = False,
        observer: Callable[[Notice], None] | None = None,
        scope: str | None = None,
        kind: str = "worker",
        executor: Executor | None = None,
    ) -> None:
        self.store = store
        self.executor = executor  # where the runs' actions go (None: each driver's own threads)
        self.driver = driver  # the Driver class (passed in: the driver serves child runs with a Worker)
        self.limit = max(1, runs)
        self.grace = grace
        self.once = once
        self._observer = observer
        self.scope = scope  # serve only this run's descendants (the children of a run driven in the foreground)
        self.stopping = threading.Event()
        self.forced = threading.Event()
        self._wake = Wakeup()
        self._signals = 0  # signals counted by `signalled()`
        self._signals_seen = 0
        self.active: dict[str, Driver | None] = {}  # run -> the driver driving it (None: being claimed)
        self._threads = Threads()  # where runs are claimed and driven, a thread each, reused
        self._next_scan = 0.0
        self._failed: dict[str, float] = {}  # run -> when to try again to claim it (its claim raised)
        self._due: dict[str, list[Timer]] = {}  # run -> its due timers, from the last look
        self._spent: set[Timer] = set()  # due timers a claim was tried for: not a reason to claim again
        self.kind = kind  # as its announcement names it: "worker", or "server" (weft serve's own)
        self._registry = Registry(store.path) if scope is None else None  # a scoped worker serves one run's children
        self._started = time.time()
        self._announced = 0.0
        self._next_schedules = 0.0
        self._peers = (0, 0.0)  # other worker processes serving the store, and when they were counted

    def stop(self) -> None:
        """Claim nothing more and let go of every run once its running steps finish; again: at once."""
        if self.stopping.is_set():
            self.forced.set()
        self.stopping.set()
        self._wake.set()

    def wake(self) -> None:
        """Look at the queue now (a run was just queued), not at the next poll."""
        self._wake.set()

    def signalled(self) -> None:
        """For a signal handler: count the signal and wake the serving loop, which stops (a second: at once).

        Does nothing that can block: the handler runs in the main thread, which may hold any lock.
        """
        self._signals += 1
        self._wake.set()

    def _wait(self, seconds: float) -> None:
        """Sleep until woken or `seconds` pass; then act on the signals that came."""
        self._wake.wait(seconds)
        while self._signals_seen < self._signals:
            self._signals_seen += 1
            self.stop()

    def serve(self) -> bool:
        """Serve until stopped (or, with `once`, until nothing needs a process); False if runs were cut short."""
        self._tell("serving", count=self.limit)
        try:
            while not self.stopping.is_set():
                self._announce()
                self._fire_schedules()
                claimed = self._fill()
                if self.once and not claimed and not self.active:
                    break
                self._wait(POLL)
            return self._drain()
        finally:
            self._threads.shutdown(wait=False)
            if self._registry is not None:
                self._registry.leave(os.getpid())

    def _fire_schedules(self) -> None:
        """Start the runs of schedules whose slots came due (at most every SCHEDULES seconds)."""
        now = time.time()
        if self._registry is None or now < self._next_schedules:
            return
        self._next_schedules = now + SCHEDULES
        from weft.runtime.engine import schedules  # a process serving no worker never loads the rules of slots

        try:
            started = schedules.fire_due(self.store, now)
        except WeftError as e:
            self._tell("trouble", error=f"schedules not fired: {e}")
            return
        if started:
            self._wake.set()  # their runs are queued: claim them now

    def _announce(self) -> None:
        """Tell the store's registry this worker serves, and what it drives (at most every HEARTBEAT seconds)."""
        now = time.time()
        if self._registry is None or now - self._announced < HEARTBEAT:
            return
        self._announced = now
        runs = tuple(sorted(self.active))
        try:
            self._registry.announce(Announcement(os.getpid(), HOST, self._started, now, self.limit, runs, self.kind))
        except OSError:
            pass  # only lists of workers miss it: the runs it drives are unaffected

    # -- finding and claiming work --------------------------------------------------------

    def _fill(self) -> int:
        """Claim runs that need a process while there is room; returns how many were claimed.

        Each claim is made in the pooled thread that then drives the run, all at once: their commits share
        one fsync (the store's group commit), which matters for a thousand sub-runs.
        """
        claims: list[Future] = []
        for run_id in self._candidates():
            if self.stopping.is_set() or len(self.active) >= self.limit:
                break
            if run_id not in self.active and self._failed.get(run_id, 0.0) <= time.time():
                self.active[run_id] = None  # its room, held for the claim
                claims.append(future := Future())
                self._threads.run(self._claim_and_drive, run_id, future)
            self._spent.update(self._due.pop(run_id, ()))
        return sum(future.result() for future in claims)

    def _claim_and_drive(self, run_id: str, claimed: Future) -> None:
        try:
            driver = self._claim(run_id)
        except BaseException as e:  # noqa: BLE001 - raised again by `_fill`, in the serving thread
            self.active.pop(run_id, None)
            claimed.set_exception(e)
            return
        if driver is None:
            self.active.pop(run_id, None)
        claimed.set_result(driver is not None)
        if driver is not None:
            self._drive(driver)

    def _candidates(self) -> list[str]:
        """Runs to try to claim: left by a dead owner, with a due timer, or queued; in that order."""
        free = self.limit - len(self.active)
        if free <= 0:
            return []
        now = time.time()
        found = []
        with self.store.read() as t:
            if now >= self._next_scan:
                self._next_scan = now + LEASE_SCAN
                found += [run_id for run_id, _ in t.leases() if _unowned(t, run_id, now)]
            self._due = {}
            seen = set()
            for timer in itertools.islice(t.due(now), TIMER_SCAN):
                seen.add(timer)
                if timer not in self._spent and (timer.run in self._due or _unowned(t, timer.run, now)):
                    self._due.setdefault(timer.run, []).append(timer)
            self._spent &= seen  # forget timers that left the index
            found += self._due
            found += t.due_runs(now, 4 * free + 16)
            if self.scope is not None:
                found = [run_id for run_id in found if below(t, run_id, self.scope)]
        return list(dict.fromkeys(found))

    def _claim(self, run_id: str) -> Driver | None:
        """Own `run_id` if it needs a process and no live one has it; the driver to drive it with."""

        def write(t: Txn) -> tuple[Machine, WorkerLease, list[dict]] | None:
            now = time.time()
            t.dequeue(run_id)
            run = t.run(run_id)
            if run is not None and run["state"] == RunState.SCHEDULED and start_due(t, run, now) != "started":
                return None  # not due yet, its lock is held (queued again), or it missed its start deadline
            if run is None or (run["state"] not in ("pending", "running") and not pending_cancels(t.steps(run_id))):
                return None  # ended or paused (with no external task left to cancel)
            lease = WorkerLease(run_id, self.stopping)
            try:
                previous = lease.acquire(t, now)
            except LeaseHeld:
                holder = t.lease(run_id)
                if not holder.get("worker"):  # a worker queues it again when it lets go; others do not
                    t.enqueue(run_id, now + RECHECK)
                return None
            plan = t.plan(run_id)
            check_plan(plan)
            m = Machine(plan, run, t.steps(run_id), now)
            if previous is not None:
                m.note(now, f"taken over from {describe(previous, now)}")
            if run["state"] in ("pending", "running"):
                steering.recover(m, now)
            remote.refuse_unreachable(m, self.executor is not None)
            events = persist(t, m, lease)
            return m, lease, events

        try:
            claim = self.store.write(write)
        except WeftError as e:
            self._tell("not claimed", run_id=run_id, error=str(e))
            self._failed[run_id] = time.time() + RETRY_CLAIM
            return None
        if claim is None:
            return None
        m, lease, events = claim
        self._tell("events", run_id=run_id, run=m.run, events=tuple(events))
        return self._driver_of(m, lease)

    def _driver_of(self, m: Machine, lease: WorkerLease) -> Driver:
        # (without an executor of its own, the driver's: a partial of Driver may give the one to share)
        shared = {} if self.executor is None else {"executor": self.executor}
        driver = self.driver(
            self.store,
            m,
            lease,
            **shared,
            observer=self._observe,
            until_waiting=True,
            release_polls=True,
            children=False,
        )
        self.active[m.run["id"]] = driver
        if self.stopping.is_set():
            driver.draining.set()
        return driver

    def adopt(self, runs: list[tuple[Machine, WorkerLease]]) -> None:
        """Drive here runs this process already holds (with leases of `lease()`, taken in the transaction that
        made them: sub-runs made by the run this worker serves), as if claimed."""
        for m, lease in runs:
            self._threads.run(self._drive, self._driver_of(m, lease))

    def lease(self, run_id: str) -> WorkerLease:
        """A lease for a run this worker is to `adopt`."""
        return WorkerLease(run_id, self.stopping)

    def room(self) -> int:
        """How many more runs it may drive now (none once stopping)."""
        return 0 if self.stopping.is_set() else max(0, self.limit - len(self.active))

    def share(self, n: int) -> int:
        """Of `n` sub-runs that may run at once, how many this process holds itself when it makes them: all of
        them when no other process serves the store, else its even part (the others are queued for the rest)."""
        count, at = self._peers
        now = time.time()
        if now - at >= HEARTBEAT:  # the registry is refreshed as often
            me = (os.getpid(), HOST)
            try:
                count = sum((a.pid, a.host) != me for a in Registry(self.store.path).live(now))
            except OSError:
                count = 0
            self._peers = (count, now)
        return -(-n // (count + 1))

    def _observe(self, events: list[dict], driver: Driver) -> None:
        self._tell("events", run_id=driver.run_id, run=driver.machine.run, events=tuple(events))

    def _tell(self, kind: str, **fields: object) -> None:
        if self._observer is not None:
            self._observer(Notice(kind, time.time(), **fields))

    def _drive(self, driver: Driver) -> None:
        run = driver.machine.run
        try:
            driver.drive()
            if run["state"] not in RUN_STOPPED:
                self._let_go(driver)
        except LeaseLost as e:
            self._tell("lost", run_id=run["id"], run=run, error=str(e))
        except WeftError as e:
            self._tell("failed", run_id=run["id"], run=run, error=str(e))
        finally:
            self.active.pop(run["id"], None)
            self._wake.set()

    def _let_go(self, driver: Driver) -> None:
        """Say why a run still running was let go."""
        run = driver.machine.run
        if driver.draining.is_set():
            self._tell("handed back", run_id=run["id"], run=run)
            return
        waits = sorted(
            {
                spec["wait"]["signal"]
                for sid, spec in driver.machine.specs.items()
                if spec["kind"] == "wait" and driver.machine.steps[sid]["state"] == "suspended"
            }
        )
        self._tell("waits", run_id=run["id"], run=run, names=tuple(waits), when=driver.machine.next_timer())

    # -- stopping ----------------------------------------------------------------------------

    def _drain(self) -> bool:
        """Let running steps finish within the grace period; then drop the leases of what still runs."""
        if self.active:
            self._tell("stopping", count=len(self.active))
        for driver in list(self.active.values()):
            driver.draining.set()
        end = time.time() + self.grace
        while self.active and time.time() < end and not self.forced.is_set():
            self._wait(min(POLL, max(0.0, end - time.time())))
        left = list(self.active.values())
        if left:
            self.store.write(lambda t: [driver.lease.release(t) for driver in left])
            for driver in left:
                self._tell("cut short", run_id=driver.run_id, names=tuple(sorted(driver.inflight)))
        self._tell("stopped")
        return not left


def _unowned(t: Txn, run_id: str, now: float) -> bool:
    """Whether a run (a child run of an `each` step too) is pending or running and no live process holds it."""
    run = t.run(run_id)
    if run is None or run["state"] not in ("pending", "running"):
        return False
    lease = t.lease(run_id)
    return lease is None or not holder_alive(lease, now)


def below(t: Txn, run_id: str, top: str) -> bool:
    """Whether run `run_id` is a child run of `top`, or a child of one of its children, and so on."""
    seen = set()
    link = (t.run(run_id) or {}).get("parent")
    while link and link["run"] not in seen:
        if link["run"] == top:
            return True
        seen.add(link["run"])
        link = (t.run(link["run"]) or {}).get("parent")
    return False
