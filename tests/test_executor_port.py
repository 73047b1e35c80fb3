"""The executor port: Tasks and Outcomes are plain data, and every executor keeps one contract.

The contract runs against both implementations: threads of this process, and
child processes that receive each Task as msgpack and send back msgpack (so
nothing but what the port carries reaches the action). Then whole runs are
driven on child processes, polling actions included.
"""

from __future__ import annotations

import os
import time

import pytest
from runtime_support.checks import history
from runtime_support.plans import HERE, plan, ref, step

from weft.runtime.core import events as ev
from weft.runtime.engine import session
from weft.runtime.engine.driver import Driver
from weft.runtime.executors.port import Outcome, Reports, Task, event
from weft.runtime.executors.processes import ProcessExecutor
from weft.runtime.executors.threads import ThreadExecutor
from weft.runtime.records import pack, unpack
from weft.runtime.stores.lmdb.store import Store

RID = "0" * 26
GRACE = 0.3  # how long the process executor lets a cancelled action stop before killing its process


def task(action: str, inputs: dict | None = None, **fields) -> Task:
    return Task(RID, "s", 1, {"module": "rt_port", "name": action}, inputs or {}, search_path=[HERE], **fields)


def collect(reports: Reports, limit: float = 10.0) -> list:
    """Every report of one task until it is done: [(kind, value), ...]."""
    found, end = [], time.time() + limit
    while not found or found[-1][0] != "done":
        assert time.time() < end, found
        found += [(r.kind, r.value) for r in reports.take(0.1)]
    return found


def run_one(executor, t: Task, then=None) -> tuple[list, Outcome]:
    """Submit `t`, call `then(channel)` while it runs, and return its reports and Outcome."""
    reports = Reports()
    channel = reports.channel(t)
    executor.submit(t, channel)
    if then is not None:
        then(channel)
    found = collect(reports)
    return found[:-1], found[-1][1]


@pytest.fixture(params=["threads", "processes"])
def executor(request):
    ex = ThreadExecutor() if request.param == "threads" else ProcessExecutor(GRACE)
    yield ex
    ex.close()


# -- plain data --------------------------------------------------------------------------------


def test_tasks_and_outcomes_round_trip_through_msgpack():
    poll = {"handle": {"id": [1, "x"]}, "every": 1.0, "max_every": 4.0, "factor": 2.0, "interval": 2.0}
    tasks = [
        task("where"),
        task("broken", {"key": "boom"}, deadline=1.5e9, undo=True),
        task("countdown", {}, poll={**poll, "polls": 3, "progress": 0.5}),
    ]
    for t in tasks:
        again = Task.from_data(unpack(pack(t.to_data())))
        assert again == t and again.id == t.id
    assert tasks[1].id == f"{RID}/s/1/undo"
    outcomes = [
        Outcome(True, outputs={"n": [1, 2.5, None, {"k": True}]}, duration=0.25),
        Outcome(False, error={"type": "KeyError", "message": "'boom'", "traceback": "Traceback ..."}),
        Outcome(True, poll={"state": "started", "handle": {"task": 7}, "every": 1.0, "max_every": 4.0, "factor": 2.0}),
        Outcome(True, poll={"state": "pending", "progress": 0.4}),
    ]
    for o in outcomes:
        assert Outcome.from_data(unpack(pack(o.to_data()))) == o


def test_an_outcome_becomes_the_machine_event_for_its_task():
    plain, undo = task("where"), task("where", undo=True)
    error = {"type": "ActionFailed", "message": "no", "traceback": None}
    assert event(plain, Outcome(True, outputs={"a": 1})) == ev.Succeeded("s", 1, {"a": 1})
    assert event(undo, Outcome(True)) == ev.Succeeded("s", 1, {}, undo=True)
    assert event(undo, Outcome(False, error=error)) == ev.Failed("s", 1, error, undo=True)
    started = Outcome(True, poll={"state": "started", "handle": "h", "every": 1.0, "max_every": 2.0, "factor": 1.5})
    assert event(plain, started) == ev.PollStarted("s", 1, "h", 1.0, 2.0, 1.5)
    assert event(plain, Outcome(True, poll={"state": "pending", "progress": 0.3})) == ev.PollPending("s", 1, 0.3)


# -- one contract, two executors ---------------------------------------------------------------


def test_progress_and_log_lines_come_before_the_outcome(executor):
    reports, outcome = run_one(executor, task("where"))
    assert reports == [("progress", 0.5), ("log", "half way")]
    assert outcome.ok and outcome.outputs["step"] == "s" and outcome.duration >= 0
    here = outcome.outputs["pid"] == os.getpid()
    assert here == isinstance(executor, ThreadExecutor)


def test_the_action_sees_its_task_in_its_context(executor):
    t = Task("1" * 26, "deploy/db", 3, {"module": "rt_port", "name": "context"}, {}, 1.8e9, search_path=[HERE])
    _, outcome = run_one(executor, t)
    assert outcome.outputs == {"run": "1" * 26, "step": "deploy/db", "attempt": 3, "deadline": 1.8e9}


def test_what_an_action_prints_does_not_garble_the_outcome(executor):
    _, outcome = run_one(executor, task("chatty", {"lines": 200}))
    assert outcome.ok and outcome.outputs["step"] == "chatty"


def test_only_a_failed_lookup_is_action_not_found(executor):
    _, outcome = run_one(executor, task("broken", {"key": "boom"}))
    assert not outcome.ok and outcome.error["type"] == "KeyError" and outcome.error["message"] == "'boom'"
    assert "Traceback" in outcome.error["traceback"] and "in broken" in outcome.error["traceback"]
    _, outcome = run_one(executor, task("no_such_action"))
    assert outcome.error["type"] == "ActionNotFound" and outcome.error["traceback"] is None
    assert "module 'rt_port' has no action 'no_such_action'" in outcome.error["message"]
    _, outcome = run_one(executor, Task(RID, "s", 1, {"module": "no_such_module", "name": "x"}, {}))
    assert outcome.error["type"] == "ActionNotFound" and "cannot import action module" in outcome.error["message"]


def test_a_cancel_reaches_the_running_action(executor):
    reports = Reports()
    t = task("patient", {"seconds": 20.0})
    channel = reports.channel(t)
    executor.submit(t, channel)
    first, end = [], time.time() + 10.0
    while not first:  # the action is waiting (a child process may take a while to start)
        assert time.time() < end
        first = reports.take(0.1)
    assert (first[0].kind, first[0].value) == ("log", "waiting")
    t0 = time.time()
    channel.cancel()
    outcome = collect(reports)[-1][1]
    assert outcome.ok and outcome.outputs == {"cancelled": True} and time.time() - t0 < 5.0


def test_a_polling_action_is_started_then_polled_with_its_handle(executor):
    _, started = run_one(executor, task("countdown", {"seconds": 1.0}))
    assert started.ok and started.outputs is None
    report = started.poll
    assert report["state"] == "started" and (report["every"], report["max_every"]) == (0.02, 0.02)
    poll = {"handle": report["handle"], "every": 0.02, "max_every": 0.02, "factor": 1.5, "interval": 0.02}
    _, pending = run_one(executor, task("countdown", poll=poll))
    assert pending.poll["state"] == "pending" and 0.0 <= pending.poll["progress"] < 1.0
    time.sleep(max(0.0, report["handle"]["until"] - time.time()) + 0.05)
    _, done = run_one(executor, task("countdown", poll=poll))
    assert done.ok and done.poll is None and done.outputs["started_in"] == report["handle"]["pid"]


# -- what only a process executor can do -------------------------------------------------------


def test_a_process_that_dies_fails_its_task_and_the_next_task_gets_a_new_one():
    ex = ProcessExecutor()
    try:
        _, outcome = run_one(ex, task("dies", {"code": 3}))
        assert outcome.error["type"] == "ProcessDied" and "exited (3)" in outcome.error["message"]
        _, outcome = run_one(ex, task("where"))
        assert outcome.ok and outcome.outputs["pid"] in ex.pids()
    finally:
        ex.close()
    assert ex.pids() == []


def test_an_action_that_ignores_its_cancel_is_killed_with_its_process():
    ex = ProcessExecutor(GRACE)
    try:
        _, outcome = run_one(ex, task("where"))
        pid = outcome.outputs["pid"]
        t0 = time.time()
        _, outcome = run_one(ex, task("stubborn", {"seconds": 60.0}), then=lambda ch: ch.cancel())
        assert outcome.error["type"] == "Cancelled" and time.time() - t0 < GRACE + 4.0
        assert pid not in ex.pids()
    finally:
        ex.close()


# -- whole runs through the port ---------------------------------------------------------------


@pytest.fixture
def store(tmp_path):
    with Store(str(tmp_path / "store")) as s:
        yield s


def ported(sid: str, action: str, **options) -> dict:
    s = step(sid, action, **options)
    s["action"]["module"] = "rt_port"
    return s


def drive(store, p, **options) -> tuple[dict, dict]:
    m, lease = session.create(store, p, {}, user="test", label=None, locks=[])
    run = Driver(store, m, lease, **options).drive()
    with store.read() as t:
        return run, t.steps(run["id"])


def test_a_run_is_driven_on_child_processes_polls_included(store):
    p = plan(
        "p",
        [
            ported("a", "where"),
            ported("poll", "countdown", inputs={"seconds": 0.3}, after=("a",)),
            ported("bad", "broken", inputs={"key": "boom"}, on_error="skip"),
            ported("b", "where", after=("poll",)),
        ],
        returns={"pid": ref("b", "pid")},
    )
    ex = ProcessExecutor()
    try:
        run, steps = drive(store, p, executor=ex)
    finally:
        ex.close()
    assert run["state"] == "succeeded" and run["result"]["pid"] != os.getpid()
    assert steps["poll"]["poll"]["polls"] >= 2 and steps["poll"]["outputs"]["polled_in"] != os.getpid()
    assert steps["bad"]["state"] == "skipped" and steps["bad"]["error"]["type"] == "KeyError"
    assert {"step": "a", "log": "half way"}.items() <= next(e for e in history(store, run["id"]) if "log" in e).items()


def test_a_key_error_inside_an_action_is_reported_as_itself(store):
    run, steps = drive(store, plan("k", [ported("bad", "broken", inputs={"key": "boom"})]))
    error = steps["bad"]["error"]
    assert run["state"] == "paused" and run["error"] == "step bad failed: KeyError: 'boom'"
    assert error["type"] == "KeyError" and "Traceback" in error["traceback"]


def test_a_timed_out_action_on_a_child_process_is_stopped(store):
    ex = ProcessExecutor(GRACE)
    try:
        t0 = time.time()
        run, steps = drive(
            store, plan("t", [ported("s", "stubborn", inputs={"seconds": 60.0}, timeout=0.3)]), executor=ex
        )
        assert run["state"] == "paused" and steps["s"]["error"]["type"] == "Timeout"
        end = time.time() + GRACE + 2.0
        while ex.pids() and time.time() < end:  # the abandoned action's process is killed after the grace
            time.sleep(0.05)
        assert ex.pids() == [] and time.time() - t0 < GRACE + 5.0
    finally:
        ex.close()
