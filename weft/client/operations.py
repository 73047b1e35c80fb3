"""The Client: every use case of Weft's runtime in one place, for the CLI, the HTTP server and Python programs.

A Client serves one store folder, opened on first use and held until
`close()`. Runs it starts, resumes, skips, rolls back or signals are driven by
this process: in a background thread by default (so `wait` returns when they
stop), or, with `hold=True`, by whoever calls `drive` next in its own thread
(the CLI, which shows the run live). `detach=True` queues a new run for
`weft worker` processes instead.

Every refusal is a typed error (errors.py): NotFound, Conflict (carrying the
run's state), InvalidInput (naming the field); each is a WeftError.
"""

from __future__ import annotations

import getpass
import os
import threading
import time
from collections.abc import Callable, Iterable
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from weft.client import inputs as checks
from weft.client import limits, many
from weft.client.errors import CompileFailed, Conflict, FlowRequired, InvalidInput, NotFound, steer
from weft.client.model import Event, Progress, Run
from weft.client.reading import WAIT_STEP, Reading, step_id
from weft.client.schedules import Scheduling
from weft.client.redact import Redactor
from weft.client.signals import SIGNAL, first_signal
from weft.errors import WeftError
from weft.plan import types as typesys
from weft.runtime.core import steering
from weft.runtime.core.machine import Machine
from weft.runtime.core.states import RUN_ENDED, RUN_STOPPED, RunState
from weft.runtime.engine import session
from weft.runtime.engine.driver import Driver
from weft.runtime.engine.each import ENDED
from weft.runtime.engine.lease import Lease, LeaseHeld
from weft.runtime.executors.celery_app import broker_url
from weft.runtime.executors.port import Executor
from weft.runtime.stores import open_store, query, store_dir
from weft.runtime.stores.port import Checkup, Store, StoreError, Txn
from weft.runtime.stores.prune import prune as prune_runs

if TYPE_CHECKING:
    from weft.client.answers import Bulk, Delivery, Pruned

Observer = Callable[[Progress], None]


def login() -> str:
    """Who this process runs as: the login name, else $USER, else 'unknown'."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return os.environ.get("USER") or "unknown"


class Client(Reading, Scheduling):
    """Operations on the runs of one store: `store` folder, else $WEFT_STORE, else ./.weft."""

    def __init__(
        self,
        store: str | os.PathLike | None = None,
        *,
        workers: int | None = None,
        broker: str | None = None,
        concurrency: int | None = None,
    ) -> None:
        self.path = store_dir(None if store is None else os.fspath(store))
        self.workers = workers  # action threads per run driven here (default: the driver's)
        self.concurrency = concurrency  # async actions' calls in flight per run driven here (default: the driver's)
        self.broker = broker_url(broker)  # Celery's Redis, else $WEFT_BROKER: actions run on agents; None: here
        self._executor: Executor | None = None
        self._store: Store | None = None
        self._guard = threading.Lock()
        self._held: dict[str, tuple[Machine, Lease, bool]] = {}  # run -> what `drive` takes up
        self._drivers: dict[str, tuple[Driver, threading.Thread]] = {}  # runs driven in the background
        self._failures: dict[str, BaseException] = {}  # background drives that ended in an error

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self, grace: float = 30.0) -> None:
        """Let background drives stop starting steps and finish running ones (up to `grace` seconds); close the store.

        A run still going is left for a later `resume` or a `weft worker`: nothing is lost.
        """
        with self._guard:
            drivers = list(self._drivers.values())
        for driver, _ in drivers:
            driver.draining.set()
        end = time.monotonic() + grace
        for _, thread in drivers:
            thread.join(max(0.0, end - time.monotonic()))
        left = [driver for driver, thread in drivers if thread.is_alive()]
        if left:  # their threads stop at their next commit: the lease is gone
            self._store.write(lambda t: [driver.lease.release(t) for driver in left])
            return
        with self._guard:
            held = list(self._held.values())
            self._held.clear()
            store, self._store = self._store, None
        if store is not None:
            if held:
                store.write(lambda t: [lease.release(t) for _, lease, _ in held])
            store.close()
        if self._executor is not None:
            self._executor.close()
            self._executor = None

    def executor(self) -> Executor | None:
        """Where the actions of the runs driven here go: the broker's agents (one executor per Client), else None."""
        if self.broker is None:
            return None
        with self._guard:
            if self._executor is None:
                from weft.runtime.executors.celery import CeleryExecutor

                self._executor = CeleryExecutor(self.broker)
            return self._executor

    def _open(self, create: bool = False) -> Store:
        with self._guard:
            if self._store is None:
                self._store = open_store(self.path, create=create)
            return self._store

    # -- starting runs ---------------------------------------------------------------------------

    def compile(self, path: str, flow: str | None = None, extensions: Iterable[str] = ()) -> dict:
        """The Plan of `flow` in the .flow file `path` (a file with several flows needs `flow`)."""
        from weft.compiler.cache import compile_cached  # only starting from source needs the compiler

        if not os.path.exists(path):
            raise NotFound(f"{path}: no such file")
        result = compile_cached([path], list(extensions))
        if result.has_errors:
            errors = [d for d in result.diagnostics if d.severity == "error"]
            raise CompileFailed(
                f"{path} has {len(errors)} error{'s' * (len(errors) != 1)}; nothing was run", errors, result.sources
            )
        if flow is None and len(result.flows) > 1:
            raise FlowRequired(
                f"{path} defines {len(result.flows)} flows ({', '.join(result.flows)}); name the one to run",
                tuple(result.flows),
            )
        try:
            return result.plan(flow)
        except WeftError as e:
            raise NotFound(str(e)) from None

    def start(
        self,
        path: str,
        flow: str | None = None,
        inputs: dict[str, Any] | None = None,
        *,
        user: str | None = None,
        detach: bool = False,
        hold: bool = False,
        texts: Iterable[str] = (),
        extensions: Iterable[str] = (),
        at: float | None = None,
        start_before: float | None = None,
    ) -> str:
        """Compile `flow` of `path` and start a run of it; returns the run's id. See `start_plan`."""
        plan = self.compile(path, flow, extensions)
        return self.start_plan(
            plan, inputs, user=user, detach=detach, hold=hold, texts=texts, at=at, start_before=start_before
        )

    def start_plan(
        self,
        plan: dict,
        inputs: dict[str, Any] | None = None,
        *,
        user: str | None = None,
        label: str | None = None,
        detach: bool = False,
        hold: bool = False,
        texts: Iterable[str] = (),
        at: float | None = None,
        start_before: float | None = None,
    ) -> str:
        """Start a run of a compiled Plan; returns the run's id.

        `inputs` are checked against the flow's parameters (defaults filled in);
        `texts` are `K=V` strings as `weft run -i` takes them, parsed by each
        parameter's type, and win over `inputs`. `label` replaces the flow's own.
        The run is driven in a background thread, or queued for `weft worker`
        (`detach`), or held for `drive` (`hold`). Nothing is stored when an
        input is wrong or a lock is held.

        With `at` (seconds since the epoch), the run is stored `scheduled`: a
        worker starts it then (or `drive` does, waiting until then); it takes
        its locks when it starts, and ends failed if it cannot start within
        `start_before` seconds of `at`.
        """
        start = checks.prepare(plan, inputs, texts, user or login(), label)
        if start_before is not None and at is None:
            raise InvalidInput("a start deadline (start_before) needs a start time (at)", field="start_before")
        if at is not None:
            limits.moment(at, "at")
        if start_before is not None and not 0 < start_before <= limits.MAX_START_WITHIN:
            raise InvalidInput(
                f"start_before must be more than 0 and at most {limits.days(limits.MAX_START_WITHIN)}, "
                f"not {start_before:g} seconds",
                field="start_before",
            )
        store = self._open(create=True)
        try:
            m, lease = session.create(
                store,
                plan,
                start.inputs,
                user=start.user,
                label=start.label,
                locks=start.locks,
                detach=detach,
                at=at,
                start_by=None if start_before is None else at + start_before,
            )
        except StoreError:
            raise
        except WeftError as e:  # the plan was checked: what is left is a lock another run holds
            raise Conflict(str(e)) from None
        run_id = m.run["id"]
        if not detach and at is None:
            self._hand(m, lease, hold, until_waiting=False)
        return run_id

    def _hand(self, m: Machine, lease: Lease, hold: bool, until_waiting: bool) -> None:
        """Keep a run this process owns for `drive`, or drive it in a background thread."""
        run_id = m.run["id"]
        if hold:
            with self._guard:
                self._held[run_id] = (m, lease, until_waiting)
            return
        driver = self._driver(m, lease, None, None, until_waiting)
        thread = threading.Thread(target=self._background, args=(driver,), name=f"weft-client-{run_id}", daemon=True)
        with self._guard:
            self._failures.pop(run_id, None)
            self._drivers[run_id] = (driver, thread)
        thread.start()

    def _background(self, driver: Driver) -> None:
        try:
            driver.drive()
        except BaseException as e:  # kept for `wait` to raise in the caller's thread
            with self._guard:
                self._failures[driver.run_id] = e
        finally:
            with self._guard:
                self._drivers.pop(driver.run_id, None)

    def _driver(
        self,
        m: Machine,
        lease: Lease,
        observer: Observer | None,
        workers: int | None,
        until_waiting: bool,
        concurrency: int | None = None,
    ) -> Driver:
        def report(events: list[dict], driver: Driver) -> None:
            observer(_progress(driver, events))

        return Driver(
            self._open(),
            m,
            lease,
            workers=workers or self.workers,
            concurrency=concurrency or self.concurrency,
            executor=self.executor(),
            observer=None if observer is None else report,
            until_waiting=until_waiting,
        )

    def drive(
        self,
        run_id: str,
        *,
        observer: Observer | None = None,
        workers: int | None = None,
        concurrency: int | None = None,
        steps: int | None = None,
        history: int | None = None,
    ) -> Run:
        """Drive a run in the calling thread until it ends or pauses; `observer` sees every commit.

        `workers` bounds the plain actions' calls in flight (threads), `concurrency`
        the `async def` actions' (the Client's, else the driver's defaults). The run
        is returned as `get(run_id, steps, history)` reads it: in full, or a page.

        The run is the one a `hold=True` command left for this call, else it is
        taken over (Conflict while another live process drives it).
        """
        with self._guard:
            held = self._held.pop(run_id, None)
        if held is None:
            m, lease, _ = self._take(run_id, None)
            until_waiting = False
        else:
            m, lease, until_waiting = held
        while m.run["state"] == RunState.SCHEDULED:  # not due yet, or a lock it needs is held: look again
            time.sleep(min(max(0.02, m.run["due"] - time.time()), 1.0))
            m, lease, _ = self._take(m.run["id"], None)
        if m.run["state"] not in RUN_STOPPED or m.to_cancel:  # a paused or ended run was let go as it was taken
            driver = self._driver(m, lease, observer, workers, until_waiting, concurrency)
            driver.drive()  # (unless tasks are to be cancelled)
        return self.get(m.run["id"], steps, history)

    # -- waiting --------------------------------------------------------------------------------------

    def wait(self, run_id: str, timeout: float | None = None) -> Run:
        """The run once it has ended or paused, or as it is after `timeout` seconds.

        An error that stopped this client's background drive of the run is raised here.
        """
        rid = self.resolve(run_id)
        end = None if timeout is None else time.monotonic() + timeout
        while True:
            with self._guard:
                failure = self._failures.pop(rid, None)
                driving = self._drivers.get(rid)
            if failure is not None:
                raise failure
            with self._open().read() as t:
                state = t.run(rid)["state"]
            if state in RUN_STOPPED or (end is not None and time.monotonic() >= end):
                if driving is not None and state in RUN_STOPPED:
                    driving[1].join(5.0)  # the thread lets go right after its last commit
                return self.get(rid)
            time.sleep(WAIT_STEP)

    # -- steering --------------------------------------------------------------------------------------

    def _take(
        self,
        run_id: str,
        apply: Callable[[Machine, float], object] | None,
        request: tuple[str, dict] | None = None,
        check: Callable[[Txn, str], object] | None = None,
    ) -> tuple[Machine | None, Lease | None, str]:
        store = self._open()
        rid = self.resolve(run_id)
        try:
            return session.take(store, rid, apply, request=request, check=check, remote=self.broker is not None)
        except LeaseHeld as e:
            with store.read() as t:
                state = t.run(rid)["state"]
            raise Conflict(str(e), state=state) from None

    def _steered(self, m: Machine, lease: Lease, hold: bool, until_waiting: bool = False) -> Run:
        """Drive a run a command just took, unless it stopped (and has no external task to cancel); the run as the
        command left it."""
        if m.run["state"] not in RUN_STOPPED or m.to_cancel:
            self._hand(m, lease, hold, until_waiting)
        return self.get(m.run["id"])

    def resume(self, run_id: str, *, restart: Iterable[str] = (), hold: bool = False) -> Run:
        """Retry the failed steps of a paused run (or take over a run whose owner died) and go on.

        A failed polling step polls the external task it started again; the steps in `restart` start over.
        """

        def apply(m: Machine, now: float) -> None:
            steer(steering.resume)(m, now, tuple(step_id(m, s) for s in restart))

        m, lease, _ = self._take(run_id, apply)
        return self._steered(m, lease, hold)

    def skip(
        self,
        run_id: str,
        step: str,
        outputs: dict[str, Any] | None = None,
        *,
        texts: Iterable[str] = (),
        item: int | None = None,
        hold: bool = False,
    ) -> Run:
        """Mark failed step `step` skipped, with `outputs` (checked against its output type), and go on.

        With `item` (from 1), `step` is an `each` step of the run, and the skip
        is of the failed step of that item's sub-run (there must be one only).
        """
        texts = list(texts)
        if item is not None:
            run_id = self.sub_run(run_id, step, item)

        def apply(m: Machine, now: float) -> None:
            sid = step_id(m, step) if item is None else _only_failed(m)
            given = None
            if outputs is not None or texts:
                given = checks.record(
                    typesys.from_data(m.specs[sid]["outputs"]), outputs, texts, f"step {sid}", "output"
                )
            steer(steering.skip)(m, sid, given, now)

        m, lease, _ = self._take(run_id, apply)
        return self._steered(m, lease, hold)

    def rerun(
        self,
        run_id: str,
        step: str,
        with_dependents: bool = False,
        *,
        item: int | None = None,
        by: str | None = None,
        hold: bool = False,
    ) -> Run:
        """Run step `step` of a paused, failed or succeeded run again, and go on as `resume` does.

        The step (with `with_dependents`, every step downstream of it too)
        goes back to pending; `by` (default: the login name) is recorded in the
        history. With `item` (from 1), `step` is an `each` step of the run, and
        every step of that item's sub-run runs again. A Conflict while the run
        runs, for a step whose undo has run, or when a lock the run held is
        taken by another run meanwhile.
        """
        who = by or login()
        if item is not None:
            run_id = self.sub_run(run_id, step, item)

        def apply(m: Machine, now: float) -> None:
            if item is None:
                steps: tuple[str, ...] = (step_id(m, step),)
            else:
                steps = tuple(s for s, spec in m.specs.items() if spec["phase"] in ("run", "finalize"))
                steps = tuple(s for s in steps if m.steps[s]["state"] in steering.RERUNNABLE)
            steer(steering.rerun)(m, steps, with_dependents, who, now)

        def relock(t: Txn, rid: str) -> None:  # an ended run let go of its locks: it takes them again
            run = t.run(rid)
            if run["state"] in RUN_ENDED and not run.get("rolled_back"):
                try:
                    session.take_locks(t, rid, run["locks"], run.get("parent"), "it cannot be re-run now")
                except WeftError as e:
                    raise Conflict(str(e), state=run["state"]) from None

        m, lease, _ = self._take(run_id, apply, check=relock)
        if m.run.get("parent"):  # the parent's looks no longer take this sub-run as ended
            link = m.run["parent"]
            ENDED.forget(link["run"], link["step"], link["index"])
        return self._steered(m, lease, hold)

    def cancel(self, run_id: str, *, by: str | None = None, hold: bool = False) -> Delivery:
        """Cancel a run: its steps not running are cancelled, running ones are stopped, then it ends cancelled.

        A run another live process drives is asked to (how "owner": it stays
        running until that process has). Any other run is taken over here (its
        dead owner's steps recovered first) and driven to its end, in the
        background or, with `hold`, by the next `drive` (how "delivered").
        """
        from weft.client.answers import Delivery

        request = ("cancel", {"kind": "cancel", "by": by or login(), "t": time.time()})
        m, lease, rid = self._take(run_id, steer(steering.cancel), request=request)
        if m is None:
            return Delivery(rid, "cancel", "owner", self.get(rid))
        return Delivery(rid, "cancel", "delivered", self._steered(m, lease, hold))

    def rollback(
        self,
        run_id: str,
        force: bool = False,
        *,
        retry_undo: Iterable[str] = (),
        skip_undo: Iterable[str] = (),
        hold: bool = False,
    ) -> Run:
        """Undo every succeeded step in reverse dependency order; `force` goes on past steps without an undo.

        An undo interrupted while it ran waits for a person: the steps in
        `retry_undo` run theirs again, those in `skip_undo` count as undone.
        """

        def apply(m: Machine, now: float) -> None:
            retry = tuple(step_id(m, s) for s in retry_undo)
            skip = tuple(step_id(m, s) for s in skip_undo)
            steer(steering.rollback)(m, now, force, retry, skip)

        m, lease, _ = self._take(run_id, apply)
        return self._steered(m, lease, hold)

    def signal(self, run_id: str, name: str, /, **values: Any) -> Delivery:
        """Deliver signal `name` with fields `values`, checked against what the waiting step declares."""
        return self.deliver(run_id, name, values)

    def deliver(
        self,
        run_id: str,
        name: str,
        values: dict[str, Any] | None = None,
        *,
        texts: Iterable[str] = (),
        hold: bool = False,
    ) -> Delivery:
        """`signal`, with fields also as `K=V` texts; `hold` leaves the run for `drive` (until it waits again)."""
        from weft.client.answers import Delivery

        texts = list(texts)
        with self._open().read() as t:
            rid = self._find(t, run_id)
            m = first_signal(t, rid, name)
        fields: dict[str, Any] = {}
        for sid in steering.waiting_for(m, name):
            wanted = typesys.from_data(m.specs[sid]["wait"]["fields"])
            fields = checks.record(wanted, values, texts, f"signal '{name}'", "field")
        request = (SIGNAL + name, {"kind": "signal", "name": name, "fields": fields})
        if m.run.get("detached") and m.run["state"] == "running":

            def hand_over(t: Txn) -> None:
                first_signal(t, rid, name)
                t.put_request(rid, *request)
                t.enqueue(rid, time.time())

            self._open().write(hand_over)
            return Delivery(rid, name, "workers")
        m, lease, rid = self._take(
            rid,
            steer(lambda m, now: steering.signal(m, name, fields, now)),
            request=request,
            check=lambda t, rid: first_signal(t, rid, name),
        )
        if m is None:
            return Delivery(rid, name, "owner")
        return Delivery(rid, name, "delivered", self._steered(m, lease, hold, until_waiting=True))

    def resume_many(self, ids: Iterable[str] | None = None, **filters: Any) -> Bulk:
        """`resume` each run of `ids`, else each run the `runs()` filters match; refusals do not stop the rest."""
        return many.apply(self, self.resume, ids, filters)

    def cancel_many(self, ids: Iterable[str] | None = None, **filters: Any) -> Bulk:
        """`cancel` each run of `ids`, else each run the `runs()` filters match; refusals do not stop the rest."""
        return many.apply(self, self.cancel, ids, filters)

    def prune(self, older_than: str | timedelta, state: str | None = None, batch: int = 500) -> Pruned:
        """Delete runs that ended more than `older_than` ago ("30d", an ISO date, a timedelta), with their sub-runs."""
        from weft.client.answers import Pruned

        if isinstance(older_than, timedelta):
            cutoff = time.time() - older_than.total_seconds()
        else:
            try:
                cutoff = query.parse_when(older_than, "--older-than")
            except WeftError as e:
                raise InvalidInput(str(e), field="older_than") from None
        limits.page(batch, "batch", least=1)
        if state is not None and state not in RUN_ENDED:
            raise InvalidInput(
                f"prune removes ended runs only: --state takes {', '.join(sorted(RUN_ENDED))}, not {state!r}",
                field="state",
            )
        done = prune_runs(self._open(), cutoff, state, batch=batch)
        return Pruned(done.removed, done.sub_runs, done.kept, cutoff)

    def doctor(self, repair: bool = False) -> Checkup:
        """Check every record and index of the store against each other; `repair` rebuilds what it can.

        A repair never deletes a run, step or event record; `remaining` lists what it could not mend.
        """
        return self._open().checkup(repair=repair)


def _only_failed(m: Machine) -> str:
    """The one failed step of a sub-run (what `skip` with an item skips); a Conflict unless there is exactly one."""
    failed = steering.failed_steps(m)
    if len(failed) != 1:
        rid = m.run["id"]
        which = f"failed steps {', '.join(failed)}" if failed else "no failed step"
        raise Conflict(f"sub-run {rid} has {which}; weft skip {rid} STEP names the one to skip", state=m.run["state"])
    return failed[0]


def _progress(driver: Driver, events: list[dict]) -> Progress:
    m = driver.machine

    def current() -> tuple[tuple[str, ...], dict[str, float], float]:
        fractions = dict(m.fractions)
        return tuple(sorted(driver.inflight.keys() | m.polling)), fractions, m.progress()

    hide = Redactor(m.run)
    return Progress(driver.run_id, tuple(Event.of(hide.event(e)) for e in events), *current(), current=current)
