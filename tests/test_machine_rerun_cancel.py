"""The pure core's Rerun command and its cancels of external tasks, driven by hand (no threads, store or clock)."""

from __future__ import annotations

import pytest
from runtime_support.plans import plan, ref, step

from weft.errors import WeftError
from weft.runtime.core.events import Cancel, PollStarted, Rerun, Succeeded, TaskCancelled
from weft.runtime.core.machine import Machine
from weft.runtime.core.states import new_run, new_step

RID = "0" * 26


def machine(p: dict, now: float = 0.0) -> Machine:
    run = new_run(RID, p, {}, label=None, locks=[], user="test", now=now)
    return Machine(p, run, {s["id"]: new_step() for s in p["steps"]}, now)


def finish(m: Machine, now: float) -> None:
    """Let every launched action succeed until nothing is left to start."""
    while launches := m.launches(now, 10):
        for launch in launches:
            m.apply(Succeeded(launch.step, launch.attempt, {"value": launch.step}), now)


def test_rerun_of_a_succeeded_run_goes_on_with_the_step_and_what_follows_it():
    p = plan(
        "f",
        [
            step("a", "echo", inputs={"value": 1}),
            step("b", "echo", inputs={"value": ref("a", "value")}),
            step("c", "echo", inputs={"value": 2}),
            step("log", "echo", inputs={"value": 3}, phase="finalize"),
        ],
    )
    m = machine(p)
    finish(m, 1.0)
    assert m.run["state"] == "succeeded"
    assert m.apply(Rerun(("a",), with_dependents=True, by="ann"), 2.0) == ["a", "b", "log"]
    assert m.run["state"] == "running" and m.run["ended"] is None and m.run["result"] is None
    [launch] = m.launches(2.0, 10)
    assert launch.step == "a"
    m.apply(Succeeded("a", launch.attempt, {"value": "a"}), 2.5)
    finish(m, 3.0)
    assert m.run["state"] == "succeeded"
    assert {sid: rec["attempts"] for sid, rec in m.steps.items()} == {"a": 2, "b": 2, "c": 1, "log": 2}
    assert any(e.get("note") == "re-run of a and the steps downstream, asked by ann" for e in m.changes()[2])
    with pytest.raises(WeftError, match="a step re-runs once the run has paused or ended"):
        running = machine(p)
        running.launches(0.0, 10)
        running.apply(Rerun(("a",)), 0.0)


def test_a_task_started_after_its_run_was_cancelled_is_cancelled_with_its_handle():
    p = plan("f", [step("sync", "counted", module="rt_polling", inputs={"name": "x", "polls": 3})])
    m = machine(p)
    [launch] = m.launches(0.0, 10)
    m.apply(Cancel(by="ann"), 0.5)  # while its start runs
    m.apply(PollStarted("sync", launch.attempt, {"task": 7}, 1.0, 1.0, 1.0), 1.0)
    assert m.steps["sync"]["state"] == "cancelled" and m.steps["sync"]["poll"] is None
    [order] = m.cancellations()
    assert (order.step, order.attempt, order.handle, order.action["name"]) == ("sync", 1, {"task": 7}, "counted")
    assert m.cancellations() == []  # handed out once
    again = Machine(p, m.run, m.steps, 2.0)  # a new owner finds the cancel recorded but not answered
    assert [o.handle for o in again.cancellations()] == [{"task": 7}]
    assert again.apply(TaskCancelled("sync", 1, "failed", "the task service is down"), 2.0) == ["sync"]
    assert again.steps["sync"]["cancel"]["state"] == "failed"
    assert again.apply(TaskCancelled("sync", 1, "cancelled"), 2.0) == []  # answered already
    notes = [e["note"] for e in again.changes()[2] if "note" in e]
    assert notes == ["its external task could not be cancelled: the task service is down"]
    assert Machine(p, again.run, again.steps, 3.0).cancellations() == []
