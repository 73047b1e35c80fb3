"""`weft rerun RUN STEP [--with-dependents] [--item N]`, `weft skip ... --item N`, `Client.rerun` and
POST /api/v1/runs/{id}/steps/{step}/rerun: a step of a paused or ended run runs again, and the run goes on."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from conftest import run_id

from weft.client import Client, Conflict

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "runtime_support")
FLOW = os.path.join(HERE, "cli.flow")

UNDOS = """use rt_actions as t

flow undos(path: str, marker: str) {
    lock "undos"
    one = t.effect(path: path, tag: "one") undo t.release(path: path, tag: "one")
    two = t.effect(path: path, tag: "two") undo t.fail(message: "cannot release two")
    bad = t.fail_when_file(path: marker) after one, two
}
"""


def attempts(weft, rid: str) -> dict[str, int]:
    return {sid: rec["attempts"] for sid, rec in weft.steps(rid).items()}


def test_rerun_one_step_of_a_succeeded_run_then_it_and_its_dependents(weft, tmp_path):
    rid, _ = weft.run(FLOW, "--flow", "gate", "-i", f"marker={tmp_path / 'absent'}", code=0)
    done = weft("rerun", rid, "first", code=0)
    assert done.stdout.splitlines()[0] == f"run {rid}: re-running first"
    assert done.stdout.splitlines()[-1] == 'result: {"value": "one-ok"}'
    assert attempts(weft, rid) == {"first": 2, "gate": 1, "last": 1}
    done = weft("rerun", rid[:12], "first", "--with-dependents", code=0)
    assert done.stdout.splitlines()[0] == f"run {rid}: re-running first, last"  # the gate does not need first
    assert attempts(weft, rid) == {"first": 3, "gate": 1, "last": 2}
    shown = weft.show(rid)
    assert shown["state"] == "succeeded" and shown["result"] == {"value": "one-ok"}
    notes = [e["note"] for e in shown["history"] if e.get("note")]
    user = shown["user"]
    assert notes == [f"re-run of first, asked by {user}", f"re-run of first and the steps downstream, asked by {user}"]
    assert "rerun" in shown["actions"]


def test_rerun_of_a_paused_run_retries_its_failed_step_too(weft, tmp_path):
    marker = tmp_path / "m"
    marker.write_text("x")
    rid, _ = weft.run(FLOW, "--flow", "gate", "-i", f"marker={marker}", code=3)
    done = weft("rerun", rid, "first", code=3)  # the gate is still shut: it fails again, the run pauses again
    assert "paused: step gate failed" in done.stdout
    assert attempts(weft, rid) == {"first": 2, "gate": 2, "last": 0}
    marker.unlink()
    done = weft("rerun", rid, "gate", code=0)
    assert done.stdout.splitlines()[-1] == 'result: {"value": "one-ok"}'
    assert attempts(weft, rid) == {"first": 2, "gate": 3, "last": 1}


def test_rerun_refusals_are_one_line_and_change_nothing(weft, tmp_path):
    marker = tmp_path / "m"
    marker.write_text("x")
    rid, _ = weft.run(FLOW, "--flow", "gate", "-i", f"marker={marker}", code=3)
    before = weft.show(rid)
    for args, message in (
        (("last",), "step last has not run yet; only a step that succeeded, failed or was skipped re-runs"),
        (("nope",), "has no step 'nope'"),
        (("first", "--item", "1"), "step first of run " + rid + " is not an `each` step"),
    ):
        done = weft("rerun", rid, *args, code=2)
        assert done.stderr.count("\n") == 1 and message in done.stderr, done.stderr
    assert weft.show(rid)["history"] == before["history"]
    weft("cancel", rid, code=0)
    done = weft("rerun", rid, "first", code=2)
    assert f"run {rid} was cancelled; it cannot be re-run" in done.stderr


def test_a_running_run_and_a_step_whose_undo_ran_are_conflicts(weft, tmp_path):
    slow = weft.start("run", FLOW, "--flow", "slow", "-i", "seconds=30")
    rid = run_id(slow.stdout.readline().strip())
    with Client(weft.store) as client:
        for _ in range(200):
            if client.get(rid).state == "running":
                break
            time.sleep(0.05)
        with pytest.raises(Conflict) as refused:
            client.rerun(rid, "s")
        assert refused.value.state == "running" and rid in str(refused.value)
        client.cancel(rid)
    slow.wait(30)

    (tmp_path / "undos.flow").write_text(UNDOS)
    os.symlink(os.path.join(HERE, "rt_actions.py"), tmp_path / "rt_actions.py")
    marker = tmp_path / "m"
    marker.write_text("x")
    rid, _ = weft.run(str(tmp_path / "undos.flow"), "-i", f"path={tmp_path / 'effects'}", "-i", f"marker={marker}")
    weft("rollback", rid, code=1)  # the undo of two fails: the rollback is incomplete
    with Client(weft.store) as client:
        run = client.get(rid)
        assert run.state == "failed" and not run.rolled_back and run.step("one").state == "undone"
        with pytest.raises(Conflict, match="step one was rolled back \\(its undo succeeded\\)"):
            client.rerun(rid, "one")
        with pytest.raises(Conflict, match="step two was rolled back \\(its undo failed\\)"):
            client.rerun(rid, "two")
        assert client.locks() == ()  # the refused re-run took no lock back


def test_rerun_takes_the_locks_of_an_ended_run_back_or_is_refused(weft, tmp_path):
    (tmp_path / "undos.flow").write_text(UNDOS)
    os.symlink(os.path.join(HERE, "rt_actions.py"), tmp_path / "rt_actions.py")
    marker = tmp_path / "absent"
    args = (str(tmp_path / "undos.flow"), "-i", f"path={tmp_path / 'effects'}", "-i", f"marker={marker}")
    first, _ = weft.run(*args, code=0)
    marker.write_text("x")
    second, _ = weft.run(*args, code=3)  # paused: it holds the lock
    done = weft("rerun", first, "bad", code=2)
    assert f"lock 'undos' is held by run {second}" in done.stderr
    marker.unlink()
    weft("resume", second, code=0)
    weft("rerun", first, "bad", code=0)
    with Client(weft.store) as client:
        assert client.locks() == ()  # taken back while it ran, let go when it ended


def test_bulk_items_are_skipped_and_rerun_one_sub_run_at_a_time(weft, tmp_path):
    effects, marker = tmp_path / "effects", tmp_path / "m"
    (tmp_path / "m2").write_text("x")
    args = ("--flow", "bulk", "-i", f"path={effects}", "-i", f"marker={marker}", "-i", "items=[1,2,3]")
    rid, done = weft.run(FLOW, *args, code=3)
    subs = {s["parent"]["index"] + 1: s["id"] for s in weft.show(rid)["steps"][0]["sub_runs"]}
    done = weft("skip", rid, "runs", "--item", "2", code=0)
    assert done.stdout.splitlines()[0] == f"run {subs[2]} (item 2 of {rid} runs): step two skipped"
    assert weft.show(subs[2])["state"] == "succeeded"
    done = weft("resume", rid, code=0)
    assert done.stdout.splitlines()[-1] == 'result: {"done": 3}'

    done = weft("rerun", rid, "runs", "--item", "3", code=0)
    assert done.stdout.splitlines()[0] == f"run {subs[3]} (item 3 of {rid} runs): re-running one, two"
    assert f"{subs[3]} item3 2" in effects.read_text().splitlines()  # its effect, a second time
    assert attempts(weft, subs[3]) == {"one": 2, "two": 2} and attempts(weft, subs[1]) == {"one": 1, "two": 1}
    assert weft.show(rid)["state"] == "succeeded"
    done = weft("rerun", rid, "runs", "--item", "4", code=2)
    assert "made no sub-run for item 4 (it made sub-runs for items 1 to 3)" in done.stderr
    done = weft("skip", rid, "runs", "--item", "1", code=2)
    assert f"sub-run {subs[1]} has no failed step; weft skip {subs[1]} STEP names the one to skip" in done.stderr


def test_rerun_over_http(tmp_path):
    from server_support import Server

    (tmp_path / "flows").mkdir()
    (tmp_path / "flows" / "cli.flow").write_text(Path(FLOW).read_text())
    os.symlink(os.path.join(HERE, "rt_actions.py"), tmp_path / "flows" / "rt_actions.py")
    with Server(tmp_path, flows=[tmp_path / "flows"]) as server:
        made = server.api.post("/api/v1/runs", json={"flow": "basic", "inputs": {"n": 1}})
        assert made.status_code == 201, made.text
        rid = made.json()["id"]
        run = server.wait_for(rid, ("succeeded",))
        assert "rerun" in run["actions"] and run["commands"]["rerun"].startswith(f"weft rerun {rid} STEP")
        answer = server.api.post(f"/api/v1/runs/{rid}/steps/a/rerun", json={"with_dependents": True})
        assert answer.status_code == 200, answer.text
        run = server.wait_for(rid, ("succeeded",))
        with Client(server.store) as client:
            assert [s.attempts for s in client.get(rid).steps] == [2, 2]
        assert any(
            e.get("note") == "re-run of a and the steps downstream, asked by the console (operator)"
            for e in run["history"]
        )
        refused = server.api.post(f"/api/v1/runs/{rid}/steps/a/rerun", json={"item": 1})
        assert refused.status_code == 422 and "not an `each` step" in refused.json()["detail"]
        refused = server.api.post(f"/api/v1/runs/{rid}/steps/zz/rerun", json={})
        assert refused.status_code == 404
        assert server.viewer.post(f"/api/v1/runs/{rid}/steps/a/rerun", json={}).status_code == 403
