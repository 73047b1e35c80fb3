"""The driver with a real store (on every backend), real actions and real threads, in one process."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import pytest
from runtime_support.checks import BACKENDS, history, index_problems, new_store
from runtime_support.plans import fan, lit, plan, ref, step

from weft.errors import WeftError
from weft.runtime.core import steering
from weft.runtime.engine import session
from weft.runtime.engine.driver import ACK, Driver
from weft.runtime.engine.lease import HOST, LeaseHeld, LeaseLost


@pytest.fixture(params=BACKENDS)
def store(request, tmp_path):
    with new_store(request.param, tmp_path / "store") as s:
        yield s


def drive(store, p, inputs=None, locks=(), **options) -> dict:
    m, lease = session.create(store, p, inputs or {}, user="test", label=None, locks=list(locks))
    return Driver(store, m, lease, **options).drive()


def stored(store, run_id):
    with store.read() as t:
        return t.run(run_id), t.steps(run_id)


def test_outputs_flow_and_everything_is_recorded(store):
    p = plan(
        "c",
        [
            step("a", "add", inputs={"a": 1, "b": 2}),
            step("b", "add", inputs={"a": ref("a", "total"), "b": 10}),
            step("log", "say", inputs={"message": ["fmt", ["total is ", ref("b", "total")]]}, phase="finalize"),
        ],
        returns={"total": ref("b", "total")},
    )
    run = drive(store, p)
    assert run["state"] == "succeeded" and run["result"] == {"total": 13} and run["progress"] == 1.0
    rec, steps = stored(store, run["id"])
    assert rec == run
    assert steps["b"]["inputs"] == {"a": 3, "b": 10} and steps["b"]["outputs"] == {"total": 13}
    assert all(s["attempts"] == 1 and s["started"] <= s["ended"] for s in steps.values())
    events = history(store, run["id"])
    assert {"step": "log", "log": "total is 13"}.items() <= next(e for e in events if "log" in e).items()
    assert index_problems(store) == []
    with store.read() as t:
        assert t.lease(run["id"]) is None


def test_independent_steps_run_concurrently_up_to_the_worker_count(store):
    p = fan(6, "sleep", inputs={"seconds": lit(0.3)})
    t0 = time.time()
    drive(store, p, workers=6)
    assert time.time() - t0 < 1.0
    t0 = time.time()
    run = drive(store, p, workers=2)
    assert time.time() - t0 >= 0.85
    running, most = 0, 0
    for e in history(store, run["id"]):
        if e.get("step", "").startswith("s") and e.get("state") in ("running", "succeeded"):
            running += 1 if e["state"] == "running" else -1
            most = max(most, running)
    assert most == 2


def test_retries_wait_on_timers(store):
    run = drive(store, plan("r", [step("f", "flaky", inputs={"times": 2}, retry=2, backoff=0.05)]))
    _, steps = stored(store, run["id"])
    assert run["state"] == "succeeded" and steps["f"]["attempts"] == 3 and steps["f"]["outputs"] == {"value": 3}


def test_a_timed_out_action_is_abandoned_and_the_step_fails(store):
    """An action that ignores its cancellation is waited for ACK seconds at most, then abandoned."""
    t0 = time.time()
    run = drive(store, plan("t", [step("h", "hang", inputs={"seconds": 30.0}, timeout=0.2, on_error="fail")]))
    assert ACK <= time.time() - t0 < ACK + 1.5
    _, steps = stored(store, run["id"])
    assert run["state"] == "failed" and steps["h"]["error"]["type"] == "Timeout"


def test_action_faults_become_step_errors(store):
    p = plan(
        "e",
        [
            step("huge", "add", inputs={"a": 2**63, "b": 2**63}, on_error="skip"),
            step("huger", "add", inputs={"a": ["op", "*", ["lit", 2**63], ["lit", 4]], "b": 0}, on_error="skip"),
            step("missing", "no_such_action", on_error="skip"),
            step("boom", "fail", inputs={"message": "it broke"}, on_error="skip"),
        ],
    )
    run = drive(store, p)
    _, steps = stored(store, run["id"])
    assert run["state"] == "succeeded"
    assert steps["huge"]["error"]["type"] == "OutputError"
    assert steps["huge"]["error"]["message"] == "outputs cannot be stored: Integer value out of range"
    assert steps["huger"]["error"]["type"] == "InputError"
    assert steps["missing"]["error"]["type"] == "ActionNotFound"
    assert steps["boom"]["error"]["message"] == "it broke" and "Traceback" in steps["boom"]["error"]["traceback"]


def test_a_live_owner_keeps_others_out_and_a_dead_one_is_taken_over(store):
    p = plan("l", [step("a", "fail_when_file", inputs={"path": "/nonexistent"})])
    m, lease = session.create(store, p, {}, user="test", label=None, locks=[])
    rid = m.run["id"]
    with pytest.raises(LeaseHeld, match=f"run {rid} is being driven by pid {os.getpid()} on {HOST}"):
        session.take(store, rid, steering.resume)
    dead = {"pid": 1, "host": "elsewhere", "pid_start": None, "heartbeat": time.time() - 60, "token": "x"}
    store.write(lambda t: t.put_lease(rid, dead))
    m, lease, _ = session.take(store, rid, steering.resume)
    assert Driver(store, m, lease).drive()["state"] == "succeeded"
    notes = [e["note"] for e in history(store, rid) if "note" in e]
    assert notes == ["taken over from pid 1 on elsewhere (heartbeat 60s ago)"]


def test_an_owner_whose_lease_was_taken_stops(store):
    p = plan("l", [step("s", "sleep", inputs={"seconds": 0.5}), step("after", after=("s",))])
    m, lease = session.create(store, p, {}, user="test", label=None, locks=[])
    rid = m.run["id"]
    thief = {"pid": 1, "host": "elsewhere", "pid_start": None, "heartbeat": time.time(), "token": "thief"}
    threading.Timer(0.2, lambda: store.write(lambda t: t.put_lease(rid, thief))).start()
    with pytest.raises(LeaseLost, match="was taken over by pid 1 on elsewhere"):
        Driver(store, m, lease).drive()
    _, steps = stored(store, rid)
    assert steps["after"]["state"] == "pending"


def test_cancel_and_signal_requests_reach_a_live_owner(store):
    fields = ["rec", [["ok", ["bool"], True]]]
    p = plan(
        "w",
        [
            step("ask", wait={"signal": "go", "fields": fields}, outputs=fields),
            step("s", "sleep", inputs={"seconds": 5.0}, after=("ask",)),
            step("after", after=("s",)),
        ],
    )
    m, lease = session.create(store, p, {}, user="test", label=None, locks=[])
    rid = m.run["id"]
    result = {}
    worker = threading.Thread(target=lambda: result.update(Driver(store, m, lease).drive()))
    worker.start()
    time.sleep(0.3)
    signal = ("signal\0go", {"kind": "signal", "name": "go", "fields": {"ok": True}})
    assert session.take(store, rid, request=signal)[0] is None
    time.sleep(0.5)
    t0 = time.time()
    store.write(lambda t: t.put_request(rid, "cancel", {"kind": "cancel", "by": "test"}))
    worker.join(5)
    assert time.time() - t0 < 1.5  # the sleeping action saw the cancellation
    assert result["state"] == "cancelled"
    _, steps = stored(store, rid)
    assert [steps[s]["state"] for s in ("ask", "s", "after")] == ["succeeded", "succeeded", "cancelled"]
    assert steps["ask"]["outputs"] == {"ok": True}
    with store.read() as t:
        assert t.requests(rid) == [] and t.lease(rid) is None


def test_a_lock_is_held_until_its_run_ends(store, tmp_path):
    marker = tmp_path / "marker"
    marker.write_text("x")
    p = plan("k", [step("a", "fail_when_file", inputs={"path": str(marker)})])
    first = drive(store, p, locks=["host:db1"])
    assert first["state"] == "paused"
    held = f"lock 'host:db1' is held by run {first['id']} \\(k, paused\\); nothing was started"
    with pytest.raises(WeftError, match=held):
        session.create(store, p, {}, user="test", label=None, locks=["host:db1"])
    marker.unlink()
    m, lease, _ = session.take(store, first["id"], steering.resume)
    assert Driver(store, m, lease).drive()["state"] == "succeeded"
    assert drive(store, p, locks=["host:db1"])["state"] == "succeeded"


def test_the_runtime_never_imports_the_compiler():
    code = (
        "import sys, weft.runtime.engine.driver, weft.cli.views, weft.cli.console, weft.cli.live, weft.runtime.core.steering;"
        "bad = sorted(m for m in sys.modules if m.startswith('weft.compiler') or m == 'lark');"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
