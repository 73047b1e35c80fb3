"""The orchestrator's pure core, driven by hand: no threads, no store, no clock."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from runtime_support.plans import param, plan, ref, step

from weft.errors import WeftError
from weft.runtime.core.events import (
    Cancel,
    Failed,
    Progressed,
    Recover,
    Resume,
    Rollback,
    Signal,
    Skip,
    Succeeded,
)
from weft.runtime.core.machine import Machine
from weft.runtime.core.states import DONE, StepState, error_record, new_run, new_step
from weft.runtime.records import pack, unpack

RID = "0" * 26


def machine(p: dict, inputs: dict | None = None, now: float = 0.0) -> Machine:
    run = new_run(RID, p, inputs or {}, label=None, locks=[], user="test", now=now)
    return Machine(p, run, {s["id"]: new_step() for s in p["steps"]}, now)


def ids(launches) -> list[str]:
    return [launch.step for launch in launches]


def boom(message: str = "boom") -> dict:
    return error_record("ActionFailed", message)


def test_chain_passes_outputs_and_computes_the_result():
    p = plan(
        "c",
        [
            step("a", "add", inputs={"a": param("x"), "b": 2}),
            step("b", "add", inputs={"a": ref("a", "total"), "b": 10}),
        ],
        params=[{"name": "x", "type": ["int"], "default": None}],
        returns={"sum": ref("b", "total")},
    )
    m = machine(p, {"x": 1})
    (la,) = m.launches(0.0, 16)
    assert (la.step, la.attempt, la.inputs) == ("a", 1, {"a": 1, "b": 2})
    assert m.launches(0.1, 16) == []  # b waits for a
    m.apply(Succeeded("a", 1, {"total": 3}), 1.0)
    (lb,) = m.launches(1.0, 16)
    assert lb.inputs == {"a": 3, "b": 10}
    m.apply(Succeeded("b", 1, {"total": 13}), 2.0)
    m.launches(2.0, 16)
    assert m.run["state"] == "succeeded" and m.run["result"] == {"sum": 13}
    assert m.run["started"] == 0.0 and m.run["ended"] == 2.0


def test_longest_remaining_path_goes_first_and_slots_are_respected():
    p = plan(
        "f",
        [
            step("short", weight=0.5),
            step("long1"),
            step("long2", after=("long1",)),
            step("long3", after=("long2",)),
            step("mid1"),
            step("mid2", after=("mid1",)),
        ],
    )
    m = machine(p)
    assert ids(m.launches(0.0, 2)) == ["long1", "mid1"]
    assert ids(m.launches(0.0, 0)) == []
    m.apply(Succeeded("mid1", 1, {}), 1.0)
    assert ids(m.launches(1.0, 1)) == ["mid2"]


def test_changes_are_reported_once_in_order():
    m = machine(plan("c", [step("a"), step("b", after=("a",))]))
    m.launches(0.0, 16)
    run, steps, events = m.changes()
    assert run["state"] == "running" and [sid for sid, _ in steps] == ["a"]
    assert [(e.get("step"), e["state"]) for e in events] == [(None, "running"), ("a", "running")]
    assert m.changes() == (None, [], [])


def test_a_runs_progress_alone_rewrites_its_record_once_it_moved_by_a_point():
    n = 250  # 0.004 a step
    m = machine(plan("c", [step(f"s{i}", after=(f"s{i - 1}",) if i else ()) for i in range(n)]))
    written, t = [], 0.0
    for i in range(n):
        (launch,) = m.launches(t, 16)
        run, _, _ = m.changes()
        if run is not None:
            written.append(run["progress"])
        assert m.run["progress"] == round(i / n, 4) and m.run["progress"] - written[-1] < 0.01  # stored: < a point off
        m.apply(Succeeded(launch.step, 1, {}), t + 0.5)
        t += 1.0
    m.launches(t, 16)
    final, _, _ = m.changes()
    assert m.run["state"] == "succeeded" and final["progress"] == 1.0
    assert written[0] == 0.0 and len(written) == 1 + (n - 1) // 3  # every third step (0.012), not every step
    assert all(b - a >= 0.01 for a, b in zip(written, written[1:]))


def test_when_false_skips_and_dependents_go_on():
    p = plan(
        "w",
        [
            step("opt", when=["op", "==", param("flag"), ["lit", True]]),
            step("after", after=("opt",)),
        ],
        params=[{"name": "flag", "type": ["bool"], "default": None}],
    )
    m = machine(p, {"flag": False})
    assert ids(m.launches(0.0, 16)) == ["after"]
    assert m.steps["opt"]["state"] == "skipped"


def test_retry_uses_timers_with_doubling_backoff():
    m = machine(plan("r", [step("a", "flaky", retry=3, backoff=2.0)]))
    m.launches(0.0, 16)
    m.apply(Failed("a", 1, boom()), 1.0)
    assert m.steps["a"]["state"] == "pending" and m.steps["a"]["due"] == 3.0
    assert m.launches(2.9, 16) == [] and m.next_timer() == 3.0
    assert [(x.step, x.attempt) for x in m.launches(3.0, 16)] == [("a", 2)]
    m.apply(Failed("a", 2, boom()), 4.0)
    assert m.steps["a"]["due"] == 8.0  # 2s, then 4s
    m.launches(8.0, 16)
    m.apply(Failed("a", 3, boom()), 9.0)
    assert m.steps["a"]["due"] == 17.0
    m.launches(17.0, 16)
    m.apply(Failed("a", 4, boom("last")), 18.0)
    m.launches(18.0, 16)
    assert m.steps["a"]["state"] == "failed" and m.run["state"] == "paused"
    assert m.run["error"] == "step a failed: ActionFailed: last"


def test_timeout_fails_the_step_and_a_late_answer_is_ignored():
    m = machine(plan("t", [step("slow", "hang", timeout=5.0, on_error="fail")]))
    (launch,) = m.launches(0.0, 16)
    assert launch.deadline == 5.0
    m.launches(5.0, 16)
    assert m.steps["slow"]["state"] == "failed"
    assert m.steps["slow"]["error"]["message"] == "timed out after 5s"
    m.apply(Succeeded("slow", 1, {}), 6.0)  # the abandoned worker answers late
    assert m.steps["slow"]["state"] == "failed" and m.run["state"] == "failed"


def test_pause_lets_running_steps_finish_and_starts_nothing_new():
    m = machine(plan("p", [step("a"), step("b"), step("c", after=("a",))]))
    m.launches(0.0, 16)
    m.apply(Failed("b", 1, boom()), 1.0)
    m.apply(Succeeded("a", 1, {}), 1.0)
    assert m.launches(1.0, 16) == []  # c is ready but the run is pausing
    assert m.run["state"] == "paused" and m.steps["c"]["state"] == "pending"


def test_pause_waits_for_the_running_steps():
    m = machine(plan("p", [step("a"), step("b")]))
    m.launches(0.0, 16)
    m.apply(Failed("b", 1, boom()), 1.0)
    m.launches(1.0, 16)
    assert m.run["state"] == "running" and m.halt == "pause"
    m.apply(Succeeded("a", 1, {}), 2.0)
    m.launches(2.0, 16)
    assert m.run["state"] == "paused"


def test_skip_policy_lets_dependents_go_on():
    m = machine(plan("s", [step("a", on_error="skip"), step("b", after=("a",))]))
    m.launches(0.0, 16)
    m.apply(Failed("a", 1, boom()), 1.0)
    assert ids(m.launches(1.0, 16)) == ["b"]
    assert m.steps["a"]["state"] == "skipped" and m.steps["a"]["error"]["message"] == "boom"


def test_fail_policy_runs_failure_hooks_and_fails_the_run():
    p = plan(
        "f",
        [
            step("a", on_error="fail"),
            step("b"),
            step("ok", phase="success"),
            step("alarm", phase="failure"),
        ],
    )
    m = machine(p)
    m.launches(0.0, 16)
    m.apply(Failed("a", 1, boom()), 1.0)
    assert m.launches(1.0, 16) == []
    m.apply(Succeeded("b", 1, {}), 2.0)
    assert ids(m.launches(2.0, 16)) == ["alarm"]
    assert m.run["state"] == "running" and m.run["ending"] == "failed"
    m.apply(Succeeded("alarm", 1, {}), 3.0)
    m.launches(3.0, 16)
    assert m.run["state"] == "failed" and m.steps["ok"]["state"] == "skipped"


def test_finalize_runs_in_order_after_every_run_step_then_success_hooks():
    p = plan(
        "z",
        [
            step("a"),
            step("f1", phase="finalize"),
            step("f2", phase="finalize"),
            step("done", phase="success"),
        ],
    )
    m = machine(p)
    assert ids(m.launches(0.0, 16)) == ["a"]
    m.apply(Succeeded("a", 1, {}), 1.0)
    assert ids(m.launches(1.0, 16)) == ["f1"]
    m.apply(Succeeded("f1", 1, {}), 2.0)
    assert ids(m.launches(2.0, 16)) == ["f2"]
    m.apply(Succeeded("f2", 1, {}), 3.0)
    assert ids(m.launches(3.0, 16)) == ["done"]
    assert m.run["state"] == "running" and m.run["ending"] == "succeeded"
    m.apply(Failed("done", 1, boom()), 4.0)  # a failing hook is recorded; the outcome stands
    m.launches(4.0, 16)
    assert m.run["state"] == "succeeded" and m.steps["done"]["state"] == "failed"


def test_rollback_policy_undoes_in_reverse_dependency_order():
    undo = ("release", {"path": "p", "tag": ref("a", "value")})
    p = plan(
        "r",
        [
            step("a", "effect", undo=undo),
            step("b", "effect", after=("a",), undo=undo),
            step("c", "effect", after=("a",), undo=undo),
            step("d", after=("b", "c"), on_error="rollback"),
        ],
    )
    m = machine(p)
    m.launches(0.0, 16)
    m.apply(Succeeded("a", 1, {"value": "A"}), 1.0)
    m.launches(1.0, 16)
    m.apply(Succeeded("b", 1, {"value": "B"}), 2.0)
    m.apply(Succeeded("c", 1, {"value": "C"}), 2.0)
    m.launches(2.0, 16)
    m.apply(Failed("d", 1, boom()), 3.0)
    undos = m.launches(3.0, 16)
    assert sorted(ids(undos)) == ["b", "c"] and all(u.undo for u in undos)
    assert undos[0].inputs == {"path": "p", "tag": "A"}
    m.apply(Succeeded("b", 1, undo=True), 4.0)
    assert m.launches(4.0, 16) == []  # a waits for c's undo too
    m.apply(Succeeded("c", 1, undo=True), 5.0)
    assert ids(m.launches(5.0, 16)) == ["a"]
    m.apply(Succeeded("a", 1, undo=True), 6.0)
    m.launches(6.0, 16)
    assert m.run["state"] == "failed" and m.run["rolled_back"]
    assert [m.steps[s]["state"] for s in "abcd"] == ["undone", "undone", "undone", "failed"]


def test_failed_undo_leaves_rollback_incomplete():
    p = plan("r", [step("a", "effect", undo=("release", {"path": "p", "tag": "x"}))])
    m = machine(p)
    m.launches(0.0, 16)
    m.apply(Succeeded("a", 1, {}), 1.0)
    m.launches(1.0, 16)
    m.apply(Rollback(force=False), 2.0)
    (u,) = m.launches(2.0, 16)
    m.apply(Failed("a", u.attempt, boom("no"), undo=True), 3.0)
    m.launches(3.0, 16)
    assert m.run["state"] == "failed" and not m.run["rolled_back"]
    assert m.run["error"] == "rollback incomplete: undo of a failed: ActionFailed: no"


def test_rollback_refuses_steps_without_undo_unless_forced():
    m = machine(plan("r", [step("a")]))
    m.launches(0.0, 16)
    m.apply(Succeeded("a", 1, {}), 1.0)
    m.launches(1.0, 16)
    with pytest.raises(WeftError, match="succeeded step a has no undo"):
        m.apply(Rollback(force=False), 2.0)
    assert m.run["state"] == "succeeded"
    m.apply(Rollback(force=True), 2.0)
    m.launches(2.0, 16)
    assert m.run["state"] == "failed" and m.run["rolled_back"] and m.steps["a"]["state"] == "succeeded"


def test_input_error_fails_without_retry():
    m = machine(plan("i", [step("a", "echo", inputs={"value": ["get", param("x"), "nope"]}, retry=5)]), {"x": {"y": 1}})
    assert m.launches(0.0, 16) == []
    assert m.steps["a"]["state"] == "failed" and m.steps["a"]["error"]["type"] == "InputError"
    assert "no field 'nope'" in m.steps["a"]["error"]["message"]


def test_resume_retries_failed_steps_with_a_fresh_retry_budget():
    m = machine(plan("r", [step("a", retry=1), step("b", after=("a",))]))
    m.launches(0.0, 16)
    m.apply(Failed("a", 1, boom()), 1.0)
    m.launches(1.0, 16)
    m.apply(Failed("a", 2, boom()), 2.0)
    m.launches(2.0, 16)
    assert m.run["state"] == "paused"
    assert m.apply(Resume(), 3.0) == ["a"]
    assert [(x.step, x.attempt) for x in m.launches(3.0, 16)] == [("a", 3)]
    m.apply(Failed("a", 3, boom()), 4.0)
    assert m.steps["a"]["state"] == "pending"  # the retry budget was reset
    m.launches(4.0, 16)
    m.apply(Succeeded("a", 4, {}), 5.0)
    m.launches(5.0, 16)
    m.apply(Succeeded("b", 1, {}), 6.0)
    m.launches(6.0, 16)
    assert m.run["state"] == "succeeded" and m.run["error"] is None


def test_skip_gives_hand_made_outputs_to_dependents():
    p = plan("s", [step("a", "echo"), step("b", "echo", inputs={"value": ref("a", "value")})])
    m = machine(p)
    m.launches(0.0, 16)
    m.apply(Failed("a", 1, boom()), 1.0)
    m.launches(1.0, 16)
    with pytest.raises(WeftError, match="step b is pending, not failed"):
        m.apply(Skip("b"), 2.0)
    m.apply(Skip("a", {"value": 42}), 2.0)
    (lb,) = m.launches(2.0, 16)
    assert lb.inputs == {"value": 42} and m.run["state"] == "running"


def test_skip_of_one_failure_keeps_the_run_paused_for_the_other():
    m = machine(plan("s", [step("a"), step("b")]))
    m.launches(0.0, 16)
    m.apply(Failed("a", 1, boom()), 1.0)
    m.apply(Failed("b", 1, boom()), 1.0)
    m.launches(1.0, 16)
    m.apply(Skip("a"), 2.0)
    assert m.launches(2.0, 16) == [] and m.run["state"] == "paused"


def test_cancel_cancels_what_is_not_running_and_ends_when_running_steps_finish():
    m = machine(plan("c", [step("a"), step("b", after=("a",))]))
    m.launches(0.0, 16)
    m.apply(Cancel(), 1.0)
    assert m.steps["b"]["state"] == "cancelled" and m.run["state"] == "running"
    m.apply(Succeeded("a", 1, {}), 2.0)
    assert m.launches(2.0, 16) == []
    assert m.run["state"] == "cancelled" and m.steps["a"]["state"] == "succeeded"
    with pytest.raises(WeftError, match="was cancelled"):
        m.apply(Resume(), 3.0)


def test_recover_reruns_idempotent_steps_and_fails_the_others_for_a_human():
    p = plan("r", [step("idem", "effect_again"), step("once", "effect"), step("next", after=("idem", "once"))])
    m = machine(p)
    m.launches(0.0, 16)
    m.changes()
    # a new process loads the records as they were stored (plain strings, not enum members), both "running"
    stored = unpack(pack({"run": m.run, "steps": m.steps}))
    assert type(stored["steps"]["once"]["state"]) is str and stored["steps"]["once"]["state"] == StepState.RUNNING
    again = Machine(p, stored["run"], stored["steps"], 10.0)
    assert again.running == {"idem", "once"}
    assert again.apply(Recover(), 10.0) == ["once"]
    assert again.steps["once"]["error"]["type"] == "Interrupted"
    assert [(x.step, x.attempt) for x in again.launches(10.0, 16)] == [("idem", 2)]
    again.apply(Succeeded("idem", 2, {}), 11.0)
    again.launches(11.0, 16)
    assert again.run["state"] == "paused"  # interrupted steps wait for a human
    again.apply(Resume(), 12.0)
    assert [(x.step, x.attempt) for x in again.launches(12.0, 16)] == [("once", 2)]


def test_wait_step_suspends_until_signalled():
    fields = ["rec", [["ok", ["bool"], True]]]
    p = plan(
        "w",
        [
            step("approve", wait={"signal": "approval", "fields": fields}, outputs=fields, timeout=60.0),
            step("go", "echo", inputs={"value": ref("approve", "ok")}),
        ],
    )
    m = machine(p)
    assert m.launches(0.0, 16) == []
    assert m.steps["approve"]["state"] == "suspended" and m.steps["approve"]["deadline"] == 60.0
    assert m.waiting_only()
    with pytest.raises(WeftError, match="no step waiting for signal 'other'.*approval"):
        m.apply(Signal("other", {}), 1.0)
    assert m.apply(Signal("approval", {"ok": True}), 1.0) == ["approve"]
    (go,) = m.launches(1.0, 16)
    assert go.inputs == {"value": True}


def test_wait_deadline_fails_the_step():
    fields = ["rec", []]
    m = machine(plan("w", [step("w", wait={"signal": "s", "fields": fields}, timeout=5.0)]))
    m.launches(0.0, 16)
    m.launches(5.0, 16)
    assert m.steps["w"]["state"] == "failed" and "no signal 's' in time" in m.steps["w"]["error"]["message"]
    assert m.run["state"] == "paused"


def test_progress_is_the_weighted_share_done():
    m = machine(plan("p", [step("big", weight=3.0), step("small")]))
    m.launches(0.0, 16)
    assert m.progress() == 0.0
    m.apply(Succeeded("small", 1, {}), 1.0)
    assert m.progress() == 0.25
    m.apply(Progressed("big", 1, 0.5), 1.5)
    assert m.progress() == 0.625
    m.apply(Progressed("big", 2, 0.9), 1.6)  # not the attempt running: ignored
    assert m.progress() == 0.625


def test_a_missing_output_fails_the_result_and_the_run():
    m = machine(plan("r", [step("a", on_error="skip")], returns={"x": ref("a", "value")}))
    m.launches(0.0, 16)
    m.apply(Failed("a", 1, boom()), 1.0)
    m.launches(1.0, 16)
    assert m.run["state"] == "failed" and "cannot compute the result" in m.run["error"]


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_random_dags_respect_dependencies_and_always_end(data):
    n = data.draw(st.integers(1, 14))
    rnd = random.Random(data.draw(st.integers(0, 10**6)))
    steps = []
    for i in range(n):
        after = tuple(f"s{j}" for j in range(i) if rnd.random() < 0.3)
        policy = rnd.choice(["skip", "pause"]) if rnd.random() < 0.4 else None
        steps.append(step(f"s{i}", after=after, retry=rnd.choice([0, 0, 1]), on_error=policy))
    p = plan("h", steps)
    m = machine(p)
    slots = data.draw(st.integers(1, 4))
    running, now = {}, 0.0
    for _ in range(200):
        now += 1.0
        for launch in m.launches(now, slots - len(running)):
            assert launch.step not in running
            assert all(m.steps[d]["state"] in DONE for d in m.deps[launch.step])
            running[launch.step] = launch.attempt
        assert len(running) <= slots
        if m.run["state"] == "paused":
            assert not running
            failed = [s for s in m.specs if m.steps[s]["state"] == "failed"]
            assert failed
            m.apply(Skip(failed[0], None), now)
            continue
        if m.run["state"] != "running":
            break
        if running:
            sid = rnd.choice(sorted(running))
            attempt = running.pop(sid)
            if rnd.random() < 0.3:
                m.apply(Failed(sid, attempt, boom()), now)
            else:
                m.apply(Succeeded(sid, attempt, {}), now)
    assert m.run["state"] == "succeeded"
    assert all(m.steps[s]["state"] in DONE for s in m.specs)


def test_late_answers_change_nothing_and_only_events_are_applied():
    m = machine(plan("l", [step("a", retry=1)]))
    m.launches(0.0, 16)
    m.apply(Failed("a", 1, boom()), 1.0)
    m.changes()
    assert m.awaits("a", 1) is False and m.steps["a"]["state"] == "pending"
    assert m.apply(Succeeded("a", 1, {"late": True}), 1.5) == []  # the first attempt answers after its retry began
    assert m.apply(Progressed("a", 1, 0.5), 1.5) == [] and m.progress() == 0.0
    assert m.changes() == (None, [], [])
    with pytest.raises(TypeError, match="not a machine event"):
        m.apply({"step": "a", "state": "succeeded"}, 2.0)
