"""`each` steps: one child run per item in the store, driven by any process that serves the store.

An `each` step is a polling step whose external task is its set of child
runs. Its start and each of its polls are short jobs in the parent's driver
(`Look`): read the children, make the ones `core/children.py` says to release
(at most `concurrency` active at once; each child its own run record with a
`parent` link, its own copy of the body's plan, its locks and history, queued
on the work queue), and answer like a poll: still going (with the share of
items done), or the step's outcome. Between looks the step is suspended and
holds no thread; a child that stops wakes it (family.py), and the step's poll
timer is the fallback.

Children are driven by whoever claims them from the queue: any `weft worker`
on the store, and the process driving the parent itself (`drive_children`),
which takes those it has room for in the transaction that makes them (their
leases, no claim). Children of a body of quick redoable calls are made and
driven inside the look itself, many to a commit (inline.py).
Nothing here ever resumes a child: a look only counts what the children are,
so a child paused by an interrupted step waits for a person, and the parent
names it when the step fails. `weft resume` of the parent resumes its paused
children (family.py), in the transaction of the resume itself.

Rolling the parent back undoes the children (`Rollback`): newest first, at
most `concurrency` at once, each child rolled back as a run of its own.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, wait
from typing import Any

from weft.errors import WeftError
from weft.plan import expr
from weft.plan.secrets import mask, secret_values
from weft.runtime.core import children as C
from weft.runtime.core import events as ev
from weft.runtime.core.machine import Launch, Machine
from weft.runtime.core.states import RUN_ENDED, RUN_STOPPED, error_record, new_run, new_steps
from weft.runtime.core.waiting import pending_cancels
from weft.runtime.engine import family, inline, session
from weft.runtime.engine.lease import Lease
from weft.runtime.engine.worker import Worker, below
from weft.runtime.executors.threads import Threads
from weft.runtime.ids import new_run_id
from weft.runtime.stores.port import Store, Txn
from weft.sdk.polling import PollSpec

CHILD_RUNS = 32  # children a process drives at once for the run it drives
BUDGET = 0.1  # seconds a look goes on making and driving sub-runs inline before it answers
POLLS = PollSpec(every=0.5, max_every=5.0, factor=1.5)  # the fallback when no child's wake-up arrives


class Look:
    """One look at an `each` step's children: make the ones to release, answer as a poll would."""

    def __init__(self, store: Store, m: Machine, launch: Launch, driver: Any, pump: Children | None = None) -> None:
        rec, spec = m.steps[launch.step], m.specs[launch.step]
        self.store = store
        self.driver = driver  # the parent's
        self.pump = pump  # this process serving the parent's sub-runs: those it has room for are driven there
        self.step = launch.step
        self.attempt = launch.attempt
        self.owner = driver.lease.token  # of the lease its driver holds the parent with
        self.first = launch.poll is None  # the step's start, not one of its polls
        recorded = rec["inputs"] or {}
        self.items = launch.items if launch.items is not None else recorded.get("items") or []
        self.captured = launch.inputs if launch.items is not None else recorded.get("with") or {}
        self.body = spec["each"]["plan"]
        self.var = spec["each"]["var"]
        self.concurrency = spec["each"]["concurrency"]
        self.results = bool(self.body.get("returns"))  # the body returns a result: collect them
        run = m.run
        self.parent = {"id": run["id"], "user": run["user"], "title": run["label"] or run["flow"]}
        self.secrets = secret_values(run)  # masked in the lines it writes to the parent's history

    def __call__(self) -> ev.Event:
        try:
            return self._look()
        except (WeftError, expr.EvalError) as e:
            return ev.Failed(self.step, self.attempt, error_record("SubRunError", str(e)))

    def _look(self) -> ev.Event:
        known = ENDED.of(self.parent["id"], self.step, self.attempt, self.owner)
        with self.store.read() as t:
            found = read_children(t, self.parent["id"], self.step, known)
        total = len(self.items)
        refused: dict[int, str] = {}
        look = found.look(total, self.concurrency, refused, self.results)
        if look.release and inline.fits(self.body, self.driver):
            look = self._here(found, known, look, refused)
            if look is None:
                return ev.Failed(self.step, self.attempt, error_record("Cancelled", "the step stopped waiting"))
        elif look.release:
            answer = self.store.write(lambda t: self._make(t, look.release, refused))
            if answer is None:
                return ev.Failed(self.step, self.attempt, error_record("Cancelled", "the step stopped waiting"))
            made, held = answer
            for child in made.values():
                found.put(child)
                known.open[child.index] = child.run
            if held:
                now = time.time()
                self.pump.worker.adopt(
                    [(Machine(self.body, run, new_steps(self.body), now), lease) for run, lease in held]
                )
            look = found.look(total, self.concurrency, refused, self.results)
        if look.outputs is not None:
            return ev.Succeeded(self.step, self.attempt, look.outputs)
        if look.failure is not None:
            return ev.Failed(
                self.step, self.attempt, {**error_record("SubRunsFailed", look.failure), "progress": look.progress}
            )
        if self.first:
            return ev.PollStarted(self.step, self.attempt, {"items": total}, POLLS.every, POLLS.max_every, POLLS.factor)
        return ev.PollPending(self.step, self.attempt, look.progress)

    def _here(self, found: C.Tally, known: Known, look: C.Look, refused: dict[int, str]) -> C.Look | None:
        """Make sub-runs and drive them here (inline.py) for up to BUDGET seconds, then write them all in one
        commit; the look after them (None if the step no longer waits for them: nothing is written)."""
        total, made, took = len(self.items), [], {}
        end = time.monotonic() + BUDGET
        while look.release and time.monotonic() < end:
            for i in look.release:
                if time.monotonic() > end:
                    break  # the rest are released by the next look
                now = time.time()
                try:
                    args = self._args(i)
                except (WeftError, expr.EvalError) as e:
                    refused[i] = str(e)
                    continue
                run = new_run(new_run_id(now), self.body, user=self.parent["user"], now=now, **args)
                run["detached"] = True
                m = Machine(self.body, run, new_steps(self.body), now)
                inline.run(m, took)
                made.append((args, now, m))
                found.put(_child(i, m.run))
            look = found.look(total, self.concurrency, refused, self.results)
        import statistics  # (here: not loaded at every start-up)

        for action, seconds in took.values():  # the median: one call slowed by a busy machine changes nothing
            self.driver.clock(action, statistics.median(seconds))
        if made and self.store.write(lambda t: self._store(t, made)) is None:
            return None
        for _, _, m in made:
            index = m.run["parent"]["index"]
            if m.run["state"] in RUN_ENDED:
                known.open.pop(index, None)
            else:
                known.open[index] = m.run["id"]
        return look

    def _store(self, t: Txn, made: list[tuple[dict, float, Machine]]) -> bool | None:
        """Write the sub-runs `_here` made and drove: those that stopped as they are now, in one go; the others
        (a retry waits for its backoff) as made, queued for a worker (or the pump) to drive from the start: what
        they did here was only calls of redoable actions."""
        if not self._waits(t):
            return None
        user, total, lines = self.parent["user"], len(self.items), []
        for args, now, m in made:
            run = m.run
            if run["state"] in RUN_STOPPED:
                inline.store(t, m, session.created_event(user, now))
                line = C.item_line(run["parent"]["index"], total, run["id"], run["state"], run.get("error"))
                lines.append({"t": run["ended"] or now, "step": self.step, "log": mask(line, self.secrets)})
            else:
                session.create_in(t, self.body, user=user, now=now, detach=True, run_id=run["id"], **args)
        if lines:  # what the sub-runs' wake-ups would log in the parent (`woken`), and one wake-up: look again
            t.append_events(self.parent["id"], lines)
            last = made[-1][2].run
            index = last["parent"]["index"]
            wake = {"kind": "child", "step": self.step, "index": index, "run": last["id"], "state": last["state"]}
            wake.update(error=last.get("error"), logged=True)
            t.put_request(self.parent["id"], f"{family.CHILD}{self.step}\0{index}", wake)
        return True

    def _waits(self, t: Txn) -> bool:
        """Whether the step still waits for the sub-runs of this look's attempt (LeaseLost if its driver no
        longer holds the run: only the driver holding it makes its sub-runs)."""
        self.driver.lease.check(t)
        rec = t.step(self.parent["id"], self.step)
        return rec is not None and rec["state"] in ("running", "suspended") and rec["attempts"] == self.attempt

    def _make(
        self, t: Txn, release: list[int], refused: dict[int, str]
    ) -> tuple[dict[int, C.Child], list[tuple[dict, Lease]]] | None:
        """Make the children of items `release` (None if the step no longer waits for them): as many as this
        process's pump has room for held by it (their records and leases), the others queued for any worker."""
        if not self._waits(t):
            return None  # cancelled, timed out or retried meanwhile: a late look makes nothing
        room = 0 if self.pump is None else self._room(self.pump.worker)
        made, held = {}, []
        now = time.time()
        for i in release:
            lease = self.pump.worker.lease(new_run_id(now)) if len(held) < room else None
            try:
                args = self._args(i)
            except (WeftError, expr.EvalError) as e:
                refused[i] = str(e)
                continue
            try:
                run = session.create_in(
                    t,
                    self.body,
                    user=self.parent["user"],
                    now=now,
                    detach=True,
                    run_id=None if lease is None else lease.run_id,
                    lease=lease,
                    **args,
                )
            except WeftError as e:  # a lock held by another run
                refused[i] = str(e)
                continue
            made[i] = C.Child(i, run["id"], run["state"], run["label"])
            if lease is not None:
                held.append((run, lease))
        return made, held

    def _room(self, worker: Worker) -> int:
        """How many sub-runs the pump may take now: no more drivers at once than its share of the step's
        `concurrency` (one that ends still holds its thread a moment after the look sees it ended)."""
        return max(0, min(worker.room(), worker.share(C.limit(self.concurrency, len(self.items))) - len(worker.active)))

    def _args(self, index: int) -> dict:
        """What the sub-run of item `index` is made with: its inputs, label, locks and parent link."""
        inputs = {self.var: self.items[index], **self.captured}
        env = expr.Env(inputs)
        body = self.body
        label = expr.show(expr.evaluate(body["label"], env)) if body.get("label") else None
        return {
            "inputs": inputs,
            "label": label or f"{self.parent['title']} [{index + 1}]",
            "locks": [expr.show(expr.evaluate(e, env)) for e in body.get("locks") or ()],
            "parent": {"run": self.parent["id"], "step": self.step, "index": index},
        }


def read_children(t: Txn, run_id: str, step: str, known: Known | None = None) -> C.Tally:
    """The children step `step` of run `run_id` made so far, by item index.

    With `known`, only the children it knows were made and not ended are read (else they are listed, and it
    knows them from then on): an ended run's state is final.
    """
    if known is not None and known.open is not None:
        pairs = list(known.open.items())
    else:
        pairs = t.children(run_id, step)
        if known is not None:
            known.open, known.tally = {}, C.Tally()
    found = C.Tally() if known is None else known.tally
    for index, rid in pairs:
        run = t.run(rid)
        if run is None:
            continue
        child = _child(index, run)
        found.put(child)
        if known is not None:
            if child.state in RUN_ENDED:
                known.open.pop(index, None)
            else:
                known.open[index] = rid
    return found


def _child(index: int, run: dict) -> C.Child:
    """What the parent needs of sub-run `run` of item `index`."""
    return C.Child(
        index,
        run["id"],
        run["state"],
        run["label"],
        run.get("error"),
        run.get("ended"),
        run.get("rolled_back"),
        run.get("result"),
    )


class Known:
    """What one driver's looks at one attempt of an `each` step know of its children: all of them with what
    they were when last read (`tally`), and those not found ended yet (`open`: item -> run id; None until the
    children were listed once)."""

    __slots__ = ("open", "tally")

    def __init__(self) -> None:
        self.open: dict[int, str] | None = None
        self.tally = C.Tally()


class _Ended:
    """What this process's recent looks know of their `each` steps' children (`Known`), so a look at 10,000
    children reads only those still going, and lists them only once (a look at them all takes 0.16 s;
    listing them at every look made a 10,000-item run quadratic).

    Kept per attempt of the step and per owner (the lease token of the driver looking): a person's resume
    or re-run of the step (a new attempt), or another driver of the parent, lists and reads every child
    again, wherever children were made or re-run meanwhile (`weft rerun PARENT STEP --item N` from another
    process); a child that stops again while the step waits (its `child` request) is read again (`forget`).
    Only the driver holding the parent makes its children, so what one owner's looks made is all there is.
    """

    KEPT = 16  # steps remembered

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._steps: dict[tuple[str, str], tuple[tuple[int, str], Known]] = {}

    def of(self, run_id: str, step: str, attempt: int, owner: str) -> Known:
        with self._lock:
            seen, known = self._steps.pop((run_id, step), (None, None))
            if known is None or seen != (attempt, owner):
                known = Known()
                while len(self._steps) >= self.KEPT:
                    del self._steps[next(iter(self._steps))]
            self._steps[(run_id, step)] = ((attempt, owner), known)  # the latest last
            return known

    def forget(self, run_id: str, step: str, index: int) -> None:
        with self._lock:
            found = self._steps.get((run_id, step))
            if found is not None:
                known = found[1]
                child = known.tally.children.get(index)
                if known.open is not None and child is not None:
                    known.open[index] = child.run


ENDED = _Ended()


def job(store: Store, m: Machine, launch: Launch, driver: Any, pump: Children | None = None) -> Any:
    """The callable that does what `launch` asks of an `each` step: a look, or the rollback of its children.

    `driver` is the Driver asking; `pump` this process serving the run's sub-runs, if it does.
    """
    if launch.undo:
        return Rollback(store, m, launch, type(driver))
    return Look(store, m, launch, driver, pump)


class Rollback:
    """Undo the children of an `each` step: newest first, at most `concurrency` at once."""

    def __init__(self, store: Store, m: Machine, launch: Launch, driver: Any) -> None:
        self.store = store
        self.run_id = m.run["id"]
        self.step = launch.step
        self.attempt = launch.attempt
        self.concurrency = m.specs[launch.step]["each"]["concurrency"]
        self.driver = driver  # the Driver class: each child's rollback is driven like any run

    def __call__(self) -> ev.Event:
        with self.store.read() as t:
            found = read_children(t, self.run_id, self.step)
        order = C.to_roll_back(list(found.children.values()))
        width = C.limit(self.concurrency, len(order))
        pool = Threads()
        running: dict[Future, C.Child] = {}
        problems: list[str] = []
        try:
            while order or running:
                while order and len(running) < width:
                    child = order.pop(0)
                    running[pool.submit(self._roll_back, child.run)] = child
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in done:
                    child = running.pop(future)
                    problem = future.result()
                    if problem:
                        problems.append(f"{child.label or f'item {child.index + 1}'} ({child.run}): {problem}")
        finally:
            pool.shutdown(wait=False)
        if problems:
            shown = "; ".join(problems[: C.SHOWN]) + ("; ..." if len(problems) > C.SHOWN else "")
            message = f"{len(problems)} of {len(found.children)} sub-runs were not rolled back: {shown}"
            return ev.Failed(self.step, self.attempt, error_record("SubRunsNotRolledBack", message), undo=True)
        return ev.Succeeded(self.step, self.attempt, {}, undo=True)

    def _roll_back(self, run_id: str) -> str | None:
        """Roll child `run_id` back and drive its undos; why not, or None once it is rolled back."""
        try:
            m, lease, _ = session.take(self.store, run_id, lambda m, now: m.apply(ev.Rollback(force=True), now))
            run = self.driver(self.store, m, lease, children=False).drive()
        except WeftError as e:
            return str(e)
        if run["state"] in RUN_ENDED and run.get("rolled_back"):
            return None
        return run.get("error") or f"it is {run['state']}"


def woken(m: Machine, request: dict, now: float) -> bool:
    """A child run stopped (its `child` request): log it and look at the children now.

    False while a look is out: the request waits for the round that applies the look's answer, as that
    look may have missed it.
    """
    sid = request["step"]
    rec = m.steps.get(sid)
    if sid in m.polls_out or (rec is not None and rec["state"] == "running"):  # its first look is out
        return False
    ENDED.forget(m.run["id"], sid, request["index"])  # what it is now, not what a look saw before (a re-run)
    if rec is not None and rec["state"] in ("suspended", "succeeded", "failed"):  # (a look may have seen it first)
        if not request.get("logged"):  # (a look that drove sub-runs inline wrote their lines)
            total = len((rec["inputs"] or {}).get("items") or ())
            line = C.item_line(request["index"], total, request["run"], request["state"], request.get("error"))
            m.apply(ev.Logged(sid, line, now), now)
        if rec["state"] == "suspended":
            m.apply(ev.Woken(sid), now)
    return True


class Children:
    """This process serving the queued descendants of one run, as a worker would (quietly), in a thread.

    A descendant driven here that stops pokes the driver of its parent run (`top`, or one of the
    descendants' drivers), so the parent's `each` step looks at its sub-runs at once.
    """

    def __init__(self, store: Store, top: Any, runs: int, driver: Any) -> None:
        self.store = store
        self.top = top
        self.worker = Worker(store, driver, runs=runs, scope=top.run_id, observer=self._noticed)
        self.thread = threading.Thread(target=self.worker.serve, name=f"weft-children-{top.run_id}", daemon=True)
        self.thread.start()

    def _noticed(self, notice: Any) -> None:
        run = notice.run
        if notice.kind != "events" or run is None or run["state"] not in RUN_STOPPED or not run.get("parent"):
            return
        parent = run["parent"]["run"]
        driver = self.top if parent == self.top.run_id else self.worker.active.get(parent)
        if driver is not None:
            driver.poke()

    def settle(self, limit: float) -> None:
        """Before stopping, for up to `limit` seconds: claim and drive here the descendants left queued with
        external tasks to cancel (cancelled with the run, between their polls), so their cancels are called."""
        end = time.monotonic() + limit
        while time.monotonic() < end:
            with self.store.read() as t:
                left = [
                    rid
                    for rid in t.due_runs(time.time(), 1000)
                    if below(t, rid, self.top.run_id) and pending_cancels(t.steps(rid))
                ]
            if not left and not self.worker.active:
                return
            self.worker.wake()
            time.sleep(0.02)

    def stop(self) -> None:
        """Claim no more children; let those driven here finish their running steps and hand them back."""
        self.worker.stop()
        self.thread.join()


def drive_children(store: Store, top: Any, driver: Any) -> Children:
    """Serve the children (and their children) of the run Driver `top` drives from this process until `stop()`.

    `driver` makes the Driver of each (the Driver class, or a partial of it).
    """
    return Children(store, top, max(top.workers, CHILD_RUNS), driver)
