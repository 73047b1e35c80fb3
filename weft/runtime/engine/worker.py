"""The worker service: drives the runs of a store that need a process, as Dynflow's executor serves Foreman.

A Worker finds work in three places, none of which means scanning every
run: the work queue (workqueue.py: detached runs, signals left for them, runs
a stopping worker handed back), the timer index (timers.py: due polls,
retries and deadlines of runs no process holds) and the leases of runs whose
owner died (a dead pid on this host, or a heartbeat older than the TTL). It
claims a run in one transaction that takes the lease, dequeues it and
recovers what a dead owner left running, so several workers on one store
never drive a run twice. Each claimed run is driven in a thread until it
ends, pauses, or only waits for a signal or a timer; then it is let go, and
holds no thread while it waits.

`stop()` (SIGTERM, SIGINT) claims nothing more and lets running steps finish
within the grace period; each run is then let go and queued for another
worker. Runs whose steps outlast the grace lose their lease at once, so the
next owner recovers those steps as after a crash: nothing is lost.
"""

from __future__ import annotations

import itertools
import os
import sys
import threading
import time
from weft.errors import WeftError
from weft.runtime.core import steering
from weft.runtime.stores.lmdb import timers
from weft.runtime.stores.lmdb import workqueue
from weft.runtime.engine.driver import Driver
from weft.runtime.engine.lease import Lease, LeaseHeld, LeaseLost, describe, holder_alive
from weft.runtime.core.machine import Machine
from weft.runtime.engine.session import check_plan, persist
from weft.runtime.core.states import RUN_ENDED, RUN_STOPPED
from weft.runtime.stores.lmdb.store import Store, Txn
from weft.cli.views import clock, duration, event_text

POLL = 0.25  # seconds between looks at the queue and the timers
TIMER_SCAN = 1000  # due timers read per look
LEASE_SCAN = 1.0  # seconds between looks for runs whose owner died
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
            workqueue.enqueue(txn, self.run_id, time.time())


class Log:
    """One flushed line per transition that matters: runs starting and ending, failures, take-overs."""

    def __init__(self) -> None:
        self._lock = threading.Lock()

    def say(self, text: str, t: float | None = None) -> None:
        with self._lock:
            sys.stdout.write(f"{clock(time.time() if t is None else t)} {text}\n")
            sys.stdout.flush()

    def events(self, run: dict, events: list[dict]) -> None:
        for e in events:
            text = _event_line(run, e)
            if text is not None:
                self.say(f"run {run['id']} {text}", e["t"])


def _event_line(run: dict, e: dict) -> str | None:
    """What the log says about one history event, or None when it does not matter."""
    if "log" in e:
        return None
    if "note" in e:
        return f"step {e['step']}: {e['note']}" if e.get("step") else e["note"]
    state, detail = e["state"], e.get("detail")
    if "step" in e:
        retry = state == "pending" and (detail or "").startswith("retry")
        signalled = state == "succeeded" and (detail or "").startswith("signal")
        if state in ("failed", "undo failed", "suspended") or retry or signalled:
            return "step " + event_text(e)
        return None
    if state == "running":
        return f"{run['flow']} " + (f"running ({detail})" if detail else "started")
    if state in RUN_ENDED and not detail:
        took = duration(run["started"], run["ended"])
        return f"{run['flow']} {state}" + (f" in {took}" if took else "")
    return f"{run['flow']} {state}" + (f": {detail}" if detail else "")


class Worker:
    """Serves one open store: claims runs that need a process and drives up to `runs` of them at once."""

    def __init__(self, store: Store, *, runs: int = DEFAULT_RUNS, grace: float = 30.0, once: bool = False) -> None:
        self.store = store
        self.limit = max(1, runs)
        self.grace = grace
        self.once = once
        self.log = Log()
        self.stopping = threading.Event()
        self.forced = threading.Event()
        self._wake = threading.Event()
        self.active: dict[str, Driver] = {}  # run -> the driver driving it, in its own thread
        self._next_scan = 0.0
        self._failed: dict[str, float] = {}  # run -> when to try again to claim it (its claim raised)
        self._due: dict[str, list[timers.Timer]] = {}  # run -> its due timers, from the last look
        self._spent: set[timers.Timer] = set()  # due timers a claim was tried for: not a reason to claim again

    def stop(self) -> None:
        """Claim nothing more and let go of every run once its running steps finish; again: at once."""
        if self.stopping.is_set():
            self.forced.set()
        self.stopping.set()
        self._wake.set()

    def serve(self) -> bool:
        """Serve until stopped (or, with `once`, until nothing needs a process); False if runs were cut short."""
        self.log.say(f"worker {os.getpid()} serving {self.store.path} ({self.limit} runs at once)")
        while not self.stopping.is_set():
            claimed = self._fill()
            if self.once and not claimed and not self.active:
                break
            self._wake.wait(POLL)
            self._wake.clear()
        return self._drain()

    # -- finding and claiming work --------------------------------------------------------

    def _fill(self) -> int:
        """Claim runs that need a process while there is room; returns how many were claimed."""
        claimed = 0
        for run_id in self._candidates():
            if self.stopping.is_set() or len(self.active) >= self.limit:
                break
            if run_id not in self.active and self._failed.get(run_id, 0.0) <= time.time() and self._claim(run_id):
                claimed += 1
            self._spent.update(self._due.pop(run_id, ()))
        return claimed

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
                found += [
                    key.decode()
                    for key, _ in t.scan("leases", b"")
                    if not key.startswith(b"lock\0") and _unowned(t, key.decode(), now)
                ]
            self._due = {}
            seen = set()
            for timer in itertools.islice(timers.due(t, now), TIMER_SCAN):
                seen.add(timer)
                if timer not in self._spent and (timer.run in self._due or _unowned(t, timer.run, now)):
                    self._due.setdefault(timer.run, []).append(timer)
            self._spent &= seen  # forget timers that left the index
            found += self._due
            found += workqueue.due(t, now, 4 * free + 16)
        return list(dict.fromkeys(found))

    def _claim(self, run_id: str) -> bool:
        """Own `run_id` if it needs a process and no live one has it; start driving it."""

        def write(t: Txn) -> tuple[Machine, WorkerLease, list[dict]] | None:
            now = time.time()
            workqueue.dequeue(t, run_id)
            run = t.run(run_id)
            if run is None or run.get("parent") or run["state"] not in ("pending", "running"):
                return None  # ended or paused; a sub-run is driven by its parent's `each` step
            lease = WorkerLease(run_id, self.stopping)
            try:
                previous = lease.acquire(t, now)
            except LeaseHeld:
                holder = t.lease(run_id)
                if not holder.get("worker"):  # a worker queues it again when it lets go; others do not
                    workqueue.enqueue(t, run_id, now + RECHECK)
                return None
            plan = t.plan(run_id)
            check_plan(plan)
            m = Machine(plan, run, t.steps(run_id), now)
            if previous is not None:
                m.note(now, f"taken over from {describe(previous, now)}")
            steering.recover(m, now)
            events = persist(t, m, lease)
            return m, lease, events

        try:
            claim = self.store.write(write)
        except WeftError as e:
            self.log.say(f"run {run_id} not claimed: {e}")
            self._failed[run_id] = time.time() + RETRY_CLAIM
            return False
        if claim is None:
            return False
        m, lease, events = claim
        self.log.events(m.run, events)
        driver = Driver(self.store, m, lease, observer=self._observe, until_waiting=True, release_polls=True)
        self.active[run_id] = driver
        if self.stopping.is_set():
            driver.draining.set()
        threading.Thread(target=self._drive, args=(driver,), name=f"weft-run-{run_id}", daemon=True).start()
        return True

    def _observe(self, events: list[dict], driver: Driver) -> None:
        self.log.events(driver.machine.run, events)

    def _drive(self, driver: Driver) -> None:
        run = driver.machine.run
        try:
            driver.drive()
            if run["state"] not in RUN_STOPPED:
                self.log.say(f"run {run['id']} {self._let_go(driver)}")
        except LeaseLost as e:
            self.log.say(f"run {run['id']} let go: {e}")
        except WeftError as e:
            self.log.say(f"run {run['id']} stopped: {e}")
        finally:
            self.active.pop(run["id"], None)
            self._wake.set()

    def _let_go(self, driver: Driver) -> str:
        """Why a run still running was let go, for the log."""
        if driver.draining.is_set():
            return "handed back to the queue (worker stopping)"
        when = driver.machine.next_timer()
        waits = sorted(
            {
                spec["wait"]["signal"]
                for sid, spec in driver.machine.specs.items()
                if spec["kind"] == "wait" and driver.machine.steps[sid]["state"] == "suspended"
            }
        )
        what = f"waits for signal {', '.join(waits)}" if waits else "waits"
        return what + (f", back at {clock(when)}" if when is not None else "")

    # -- stopping ----------------------------------------------------------------------------

    def _drain(self) -> bool:
        """Let running steps finish within the grace period; then drop the leases of what still runs."""
        if self.active:
            self.log.say(
                f"worker {os.getpid()} stopping: {len(self.active)} run(s) finish their running steps "
                f"(grace {self.grace:g}s)"
            )
        for driver in list(self.active.values()):
            driver.draining.set()
        end = time.time() + self.grace
        while self.active and time.time() < end and not self.forced.is_set():
            self._wake.wait(min(POLL, max(0.0, end - time.time())))
            self._wake.clear()
        left = list(self.active.values())
        if left:
            self.store.write(lambda t: [driver.lease.release(t) for driver in left])
            for driver in left:
                self.log.say(
                    f"run {driver.run_id} let go with step(s) {', '.join(sorted(driver.inflight))} "
                    "still running: the next owner recovers them"
                )
        self.log.say(f"worker {os.getpid()} stopped")
        return not left


def _unowned(t: Txn, run_id: str, now: float) -> bool:
    """Whether a run is pending or running and no live process holds it.

    Sub-runs are left out: their parent's `each` step drives them, and finds them again after a crash.
    """
    run = t.run(run_id)
    if run is None or run.get("parent") or run["state"] not in ("pending", "running"):
        return False
    lease = t.lease(run_id)
    return lease is None or not holder_alive(lease, now)
