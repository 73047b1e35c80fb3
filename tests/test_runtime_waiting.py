"""Steps that wait without holding a worker: polling actions, timers, deadlines and signals.

The pure machine by hand; the driver with a real store and real threads; and
real `weft` processes, killed while steps are suspended and resumed.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter

import pytest
from conftest import Weft
from runtime_support.checks import history, index_problems
from runtime_support.plans import HERE, plan, ref, step

from weft.runtime.core.events import Dispatched, Failed, PollPending, PollStarted, Recover, Succeeded
from weft.runtime.core.machine import Machine
from weft.runtime.core.steering import REATTACH_GRACE
from weft.runtime.core.states import new_run, new_step
from weft.runtime.core.timers import step_timers
from weft.runtime.engine import session
from weft.runtime.engine.driver import Driver
from weft.runtime.stores.lmdb.store import Store

if HERE not in sys.path:
    sys.path.append(HERE)  # where the plans' action modules are imported from, as the driver does
import rt_polling

FLOW = os.path.join(os.path.dirname(os.path.abspath(__file__)), "runtime_support", "waiting.flow")


def poller(sid: str, action: str = "counted", **options) -> dict:
    s = step(sid, action, **options)
    s["action"]["module"] = "rt_polling"
    return s


@pytest.fixture
def store(tmp_path):
    with Store(str(tmp_path / "store")) as s:
        yield s


def drive(store, p, **options) -> dict:
    m, lease = session.create(store, p, {}, user="test", label=None, locks=[])
    return Driver(store, m, lease, **options).drive()


# -- the machine, by hand ---------------------------------------------------------------------


def machine(p: dict, now: float = 0.0) -> Machine:
    run = new_run("0" * 26, p, {}, label=None, locks=[], user="test", now=now)
    return Machine(p, run, {s["id"]: new_step() for s in p["steps"]}, now)


def test_a_polling_step_suspends_and_is_polled_on_growing_intervals():
    m = machine(plan("p", [poller("p", timeout=100.0), step("after", inputs={"x": ref("p", "n")})]))
    (start,) = m.launches(0.0, 4)
    assert start.poll is None and m.steps["p"]["deadline"] == 100.0
    m.apply(PollStarted("p", 1, {"task": 7}, 1.0, 4.0, 2.0), 0.5)
    rec = m.steps["p"]
    assert rec["state"] == "suspended" and rec["due"] == 1.5 and rec["poll"]["handle"] == {"task": 7}
    assert m.polling == {"p"} and not m.waiting_only()
    m.changes()
    assert m.launches(1.4, 4) == []
    polls = []
    for now in (1.5, 3.6, 7.7, 11.8):
        (launch,) = m.launches(now, 4)
        assert launch.poll["handle"] == {"task": 7} and launch.deadline == 100.0
        assert m.launches(now, 4) == []  # polled already: no second poll until it answers
        m.apply(PollPending("p", 1, 0.25), now + 0.1)
        polls.append(rec["poll"]["interval"])
        _, steps, events = m.changes()
        assert [sid for sid, _ in steps] == ["p"] and events == []  # a Pending rides along, no history
    assert polls == [2.0, 4.0, 4.0, 4.0] and rec["due"] == 15.9
    assert m.progress() == 0.125
    (launch,) = m.launches(15.9, 4)
    m.apply(Succeeded("p", 1, {"n": 3}), 16.0)
    assert rec["state"] == "succeeded" and rec["poll"]["polls"] == 5 and not m.polling
    assert [launch.step for launch in m.launches(16.0, 4)] == ["after"]


def test_a_poll_out_when_the_owner_died_is_made_again_by_the_next_one():
    p = plan("p", [poller("p")])
    m = machine(p)
    m.launches(0.0, 4)
    m.apply(PollStarted("p", 1, "h", 1.0, 1.0, 1.0), 0.5)
    (launch,) = m.launches(1.5, 4)
    assert launch.poll["handle"] == "h" and m.steps["p"]["due"] == 1.5  # the record still names its poll
    m.apply(PollPending("p", 2, 0.5), 1.6)  # an answer for another attempt changes nothing
    assert m.launches(1.7, 4) == [] and m.progress() == 0.0
    stored = {sid: dict(rec) for sid, rec in m.steps.items()}
    later = Machine(p, dict(m.run), stored, 9.0)  # the owner died while the poll was out
    later.apply(Recover(), 9.0)
    (again,) = later.launches(9.0, 4)
    assert (again.step, again.attempt, again.poll["handle"]) == ("p", 1, "h")


def test_past_its_deadline_a_call_an_agent_holds_is_collected_first_and_a_local_one_redone_only_if_idempotent():
    p = plan(
        "d",
        [step(sid, idempotent=idem, retry=2, timeout=2.0) for sid, idem in (("a", False), ("l", False), ("i", True))],
    )
    m = machine(p)
    m.launches(0.0, 4)
    m.apply(Dispatched("a", 1, "call-1"), 0.0)  # `a` went to an agent; `l` and `i` ran in the process that died
    later = Machine(p, dict(m.run), {sid: dict(rec) for sid, rec in m.steps.items()}, 5.0)
    later.apply(Recover(), 5.0)
    assert later.reattach == ["a"] and later.steps["a"]["state"] == "running"  # not a Timeout: its outcome may
    assert later.steps["a"]["deadline"] == 5.0 + REATTACH_GRACE  # be stored with the agents; collected first
    assert later.steps["l"]["error"]["type"] == "Interrupted"  # not a Timeout its retry would run again
    assert later.steps["i"]["state"] == "pending" and later.steps["i"]["error"]["type"] == "Timeout"  # retried
    later.launches(6.0, 4)
    assert later.steps["a"]["state"] == "running"  # its old deadline's timer fired nothing
    later.launches(5.0 + REATTACH_GRACE, 4)
    assert later.steps["a"]["error"]["type"] == "Timeout"  # no outcome came: it times out as it would have


def test_deadlines_fail_polling_and_waiting_steps_and_hold_across_a_take_over():
    fields = ["rec", [["ok", ["bool"], True]]]
    p = plan(
        "d",
        [
            poller("p", timeout=10.0),
            step("w", wait={"signal": "go", "fields": fields}, timeout=5.0),
            poller("r", timeout=3.0),
        ],
    )
    m = machine(p)
    m.launches(0.0, 4)
    m.apply(PollStarted("p", 1, "h", 1.0, 1.0, 1.0), 0.5)
    stored = {sid: dict(rec) for sid, rec in m.steps.items()}
    # a new owner after the previous one died at t=0.5: `r` was in its start, `p` and `w` were waiting
    later = Machine(p, dict(m.run), stored, 4.0)
    later.apply(Recover(), 4.0)
    # `r`, non-idempotent, may have started its task: interrupted, past its deadline or not (a Timeout lets its
    # retries start it again with nobody asking)
    assert later.steps["r"]["state"] == "failed" and later.steps["r"]["error"]["type"] == "Interrupted"
    assert later.run["halt"] == "pause"
    later.launches(4.0, 4)  # polls `p` (due since 1.5): a poll is no new start, so it goes on while halting
    later.launches(11.0, 4)
    assert later.steps["w"]["error"]["message"] == "no signal 'go' in time"
    assert later.steps["p"]["error"]["message"] == "timed out after 10s"
    assert later.run["state"] == "paused"


def test_a_run_ending_leaves_no_step_waiting():
    fields = ["rec", [["ok", ["bool"], True]]]
    m = machine(
        plan(
            "e", [step("w", wait={"signal": "go", "fields": fields}, timeout=5.0), step("bad", "fail", on_error="fail")]
        )
    )
    m.launches(0.0, 4)
    m.apply(Failed("bad", 1, {"type": "ActionFailed", "message": "no", "traceback": None}), 1.0)
    m.launches(1.0, 4)
    assert m.run["state"] == "failed" and m.steps["w"]["state"] == "cancelled"
    assert all(not step_timers(sid, rec) for sid, rec in m.steps.items())


# -- the driver, in this process ---------------------------------------------------------------


def test_two_thousand_suspended_polling_steps_hold_no_threads(store):
    n, workers = 2000, 4
    rt_polling.THREADS.clear()
    before = threading.active_count(), len(os.listdir("/proc/self/task"))  # what earlier tests left in this process
    p = plan(
        "many", [poller(f"p{i}", "counted_slowly", inputs={"name": f"t{i}", "polls": 3, "gate": n}) for i in range(n)]
    )
    peak = {"polling": 0, "poll timers": 0}

    def observe(events, driver):
        polling = len(driver.machine.polling)
        if polling > peak["polling"]:
            peak["polling"] = polling
            if polling > n - workers:  # near the top: count the persisted poll timers once or twice
                with store.read() as t:
                    peak["poll timers"] = sum(tm.kind == "poll" for tm in t.due(float("inf")))

    t0 = time.perf_counter()
    run = drive(store, p, workers=workers, observer=observe)
    took = time.perf_counter() - t0
    assert run["state"] == "succeeded"
    with store.read() as t:
        steps = t.steps(run["id"])
    assert all(r["attempts"] == 1 and r["outputs"]["polls"] >= 3 for r in steps.values())
    # every task was started before any could finish, so all were suspended at once (but the few
    # polled while the last starts were being recorded), each with its next poll in the store
    assert peak["polling"] > n - workers and peak["poll timers"] >= peak["polling"] - workers
    python_threads, os_threads = (max(column) - start for column, start in zip(zip(*rt_polling.THREADS), before))
    calls = len(rt_polling.THREADS)
    print(
        f"\n{n} polling steps, {workers} workers: {took:.1f}s, {calls} calls, at most {peak['polling']} "
        f"suspended at once, at most {os_threads} OS threads more ({python_threads} Python threads)"
    )
    # the workers, and a few threads of a fixed number (the lease heartbeat, engine jobs): none per suspended step
    assert os_threads <= workers + 3 and python_threads <= workers + 3
    assert index_problems(store) == []
    with store.read() as t:
        assert t.next_due() is None


def test_a_failed_poll_polls_the_same_task_again_and_a_timeout_fails_the_step(store):
    p = plan(
        "f",
        [
            poller("flaky", inputs={"name": "flaky", "polls": 2, "fail_polls": 1}, retry=1),
            poller("forever", inputs={"name": "forever", "polls": 10**6}, timeout=0.3, on_error="skip"),
            step("after", after=("flaky", "forever")),
        ],
    )
    t0 = time.time()
    run = drive(store, p)
    assert run["state"] == "succeeded" and time.time() - t0 < 2.0
    with store.read() as t:
        steps = t.steps(run["id"])
    assert steps["flaky"]["attempts"] == 1 and steps["flaky"]["outputs"] == {"name": "flaky", "polls": 2}
    assert steps["flaky"]["poll"]["handle"]["id"].endswith("/flaky/1")
    assert steps["forever"]["state"] == "skipped"
    assert steps["forever"]["error"] == {"type": "Timeout", "message": "timed out after 0.3s", "traceback": None}
    lines = [e.get("detail", "") for e in history(store, run["id"]) if e.get("step") == "flaky"]
    assert any(d.startswith("poll failed (1 of 3); polls again in 0.01s: ActionFailed: poll 1 of flaky") for d in lines)
    assert index_problems(store) == []


def test_a_pause_waits_for_polling_steps_and_a_cancel_stops_them(store):
    run = drive(
        store, plan("p", [poller("p", inputs={"name": "p", "polls": 5}), step("bad", "fail", inputs={"message": "no"})])
    )
    with store.read() as t:
        steps = t.steps(run["id"])
    assert run["state"] == "paused" and steps["p"]["state"] == "succeeded"

    m, lease = session.create(
        store, plan("c", [poller("p", inputs={"name": "p", "polls": 10**6})]), {}, user="test", label=None, locks=[]
    )
    rid = m.run["id"]
    threading.Timer(0.3, lambda: store.write(lambda t: t.put_request(rid, "cancel", {"kind": "cancel"}))).start()
    assert Driver(store, m, lease).drive()["state"] == "cancelled"
    assert m.steps["p"]["state"] == "cancelled" and m.steps["p"]["poll"]["polls"] > 3
    assert index_problems(store) == []


# -- real processes ----------------------------------------------------------------------------


class Waiting(Weft):
    """`weft` processes against one store; `effects` collects the `timed` tasks' start lines."""

    def __init__(self, tmp_path) -> None:
        super().__init__(tmp_path)
        self.effects = str(tmp_path / "effects")

    def wait_for(self, run_id: str, states: dict[str, str], limit: float = 15.0) -> None:
        end = time.time() + limit
        while {sid: rec["state"] for sid, rec in self.steps(run_id).items() if sid in states} != states:
            assert time.time() < end, self.steps(run_id)
            time.sleep(0.05)

    def starts(self) -> Counter:
        with open(self.effects) as f:
            return Counter(tuple(line.split()[1:]) for line in f)


@pytest.fixture
def weft(tmp_path) -> Waiting:
    return Waiting(tmp_path)


def first_line_run(proc: subprocess.Popen) -> str:
    line = proc.stdout.readline()
    assert re.fullmatch(r"run [0-9A-Z]{26}\n", line), line
    return line.split()[1]


@pytest.mark.slow
def test_sigkill_while_steps_are_suspended_then_resume_finishes_them(weft, tmp_path):
    hold = tmp_path / "hold"
    hold.write_text("")
    owner = weft.start("run", FLOW, "--flow", "tasks", "-i", f"path={weft.effects}", "-i", f"hold={hold}")
    rid = first_line_run(owner)
    weft.wait_for(rid, {"a": "suspended", "b": "suspended", "c": "suspended", "slow": "running"})
    owner.send_signal(signal.SIGKILL)
    owner.wait()
    hold.unlink()
    with Store(weft.store, create=False) as store:
        with store.read() as t:
            kinds = Counter((tm.step, tm.kind) for tm in t.due(float("inf")))
        assert index_problems(store) == []
    assert {k: v for k, v in kinds.items() if k[1] == "poll"} == {(s, "poll"): 1 for s in "abc"}
    done = weft("resume", rid)  # `slow` was inside its start: not idempotent, so interrupted
    assert done.returncode == 3 and f"run {rid} paused: step slow was interrupted" in done.stdout
    assert all(f"{s} succeeded" in done.stdout for s in "abc")
    done = weft("resume", rid)
    assert done.returncode == 0 and done.stdout.splitlines()[-1] == 'result: {"a": "a", "slow": "slow"}'
    assert weft.starts() == Counter({(s, "1"): 1 for s in ("a", "b", "c", "done")} | {("slow", "2"): 1})
    steps = weft.steps(rid)
    assert all(steps[s]["poll"]["polls"] >= 1 and steps[s]["attempts"] == 1 for s in "abc")


@pytest.mark.slow
def test_deadlines_hold_across_a_kill_and_resume(weft):
    owner = weft.start("run", FLOW, "--flow", "overdue", "-i", f"path={weft.effects}")
    rid = first_line_run(owner)
    weft.wait_for(rid, {"task": "suspended", "ask": "suspended"})
    owner.send_signal(signal.SIGKILL)
    owner.wait()
    deadline = max(rec["deadline"] for rec in weft.steps(rid).values())
    time.sleep(max(0.0, deadline - time.time()) + 0.1)
    t0 = time.time()
    done = weft("resume", rid)
    assert done.returncode == 3 and time.time() - t0 < 5.0
    assert "task failed: Timeout: timed out after 2s" in done.stdout
    assert "ask failed: Timeout: no signal 'go' in time" in done.stdout
    assert weft.starts() == Counter({("task", "1"): 1})


def test_signals_are_checked_and_a_foreground_run_waits_for_them(weft):
    owner = weft.start("run", FLOW, "--flow", "gate", "-i", f"path={weft.effects}")
    rid = first_line_run(owner)
    weft.wait_for(rid, {"ask": "suspended"})
    before = json.loads(weft("show", rid, "--json").stdout)["history"]
    for fields, message in [
        (("ok=true", "n=abc", "tags=[]"), "field 'n': 'abc' is not an int"),
        (("ok=true", "n=1", 'tags=["x", 2]'), """field 'tags': '["x", 2]' is not a list[str]"""),
        (("ok=true", "n=1", "tags=[]", "extra=1"), "signal 'approval' has no field 'extra'"),
        (("ok=true",), "needs field 'n' (int), 'tags' (list[str]) as well"),
    ]:
        done = weft("signal", rid, "approval", *fields)
        assert done.returncode == 2 and done.stderr.count("\n") == 1 and message in done.stderr, done.stderr
    time.sleep(0.3)
    assert owner.poll() is None  # still running: a foreground run waits as long as its steps wait
    assert json.loads(weft("show", rid, "--json").stdout)["history"] == before  # nothing changed
    done = weft("signal", rid, "approval", "ok=true", "n=3", 'tags=["a", "b"]')
    assert done.returncode == 0 and "handed to the process driving" in done.stdout
    assert owner.wait(10) == 0
    assert owner.stdout.read().splitlines()[-1] == 'result: {"n": 3, "ok": true, "tags": ["a", "b"]}'
    done = weft("signal", rid, "approval", "ok=true", "n=3", "tags=[]")
    assert done.returncode == 2 and f"run {rid} already succeeded; it cannot be signalled" in done.stderr


def test_a_signal_before_its_wait_is_refused_and_a_wait_times_out(weft):
    owner = weft.start("run", FLOW, "--flow", "later", "-i", f"path={weft.effects}")
    rid = first_line_run(owner)
    weft.wait_for(rid, {"first": "suspended"})
    done = weft("signal", rid, "approval", "ok=true")
    assert done.returncode == 2
    assert f"run {rid} has no step waiting for signal 'approval' now (step ask is pending)" in done.stderr
    assert weft("cancel", rid).returncode == 0 and owner.wait(10) == 1

    t0 = time.time()
    done = weft("run", FLOW, "--flow", "hurry")
    assert done.returncode == 3 and 1.0 <= time.time() - t0 < 10.0
    assert "ask failed: Timeout: no signal 'approval' in time" in done.stdout
