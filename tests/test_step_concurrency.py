"""A step's `concurrency N`: at most N calls of it in flight across its run and the run's sub-runs, through `weft run`.

The actions count the calls in flight in a file under a file lock (so the count
holds whichever thread or event loop runs them) and record the most at once.
"""

from __future__ import annotations

import json
import time

import msgpack
import pytest
from conftest import read_until, run_id

from weft.client import Client
from weft.compiler import compile_paths
from weft.runtime.core.events import Launch
from weft.runtime.executors.port import Task

ACTIONS = """
import asyncio
import fcntl
import json
import os
import time

from weft import action

COUNT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "count.json")


def _count(step: int) -> None:
    with open(COUNT + ".lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        seen = json.load(open(COUNT)) if os.path.exists(COUNT) else {"now": 0, "most": 0, "calls": 0}
        seen["now"] += step
        seen["most"] = max(seen["most"], seen["now"])
        seen["calls"] += step > 0
        with open(COUNT, "w") as out:
            json.dump(seen, out)


@action
def enter(i: int, seconds: float = 0.1) -> None:
    _count(1)
    time.sleep(seconds)
    _count(-1)


@action
async def enter_async(i: int, seconds: float = 0.1) -> None:
    _count(1)
    await asyncio.sleep(seconds)
    _count(-1)


RELEASE = os.path.join(os.path.dirname(COUNT), "release")


@action
def hold(i: int) -> None:
    _count(1)
    end = time.time() + 30
    while not os.path.exists(RELEASE) and time.time() < end:  # deaf to the cancel until the test lets it go
        time.sleep(0.02)
    _count(-1)
"""

FLOWS = """use limited as t

flow nested(groups: list[list[int]]) {
    each g in groups concurrency 10 {
        each i in g concurrency 10 {
            t.%(action)s(i: i) concurrency 3
        }
    }
}

flow flat(items: list[int]) {
    each i in items concurrency 12 {
        t.%(action)s(i: i) concurrency 2
        std.log(message: "${i}")
    }
}

flow held(items: list[int]) {
    each i in items concurrency 6 {
        t.hold(i: i) concurrency 1
    }
}
"""


def _folder(tmp_path, action: str = "enter"):
    (tmp_path / "limited.py").write_text(ACTIONS)
    (tmp_path / "limited.flow").write_text(FLOWS % {"action": action})
    return tmp_path


@pytest.fixture(params=["enter", "enter_async"])
def folder(request, tmp_path):
    """The flows with a plain action, then with an `async def` one."""
    return _folder(tmp_path, request.param)


def _counted(folder) -> dict:
    return json.loads((folder / "count.json").read_text())


@pytest.mark.slow
def test_a_limited_step_in_nested_each_bodies_never_has_more_calls_in_flight_than_its_bound(weft, folder):
    groups = json.dumps([[1, 2, 3, 4], [5, 6, 7, 8], [9, 10, 11, 12]])
    rid, _ = weft.run(str(folder / "limited.flow"), "--flow", "nested", "-i", f"groups={groups}", code=0)
    assert weft.show(rid)["state"] == "succeeded"
    counted = _counted(folder)
    assert counted["calls"] == 12 and counted["now"] == 0
    assert 2 <= counted["most"] <= 3, counted  # 12 calls of 0.1 s in 12 sub-runs at once: the bound is reached


@pytest.mark.slow
def test_a_limited_step_beside_an_unlimited_one_holds_its_bound(weft, folder):
    rid, _ = weft.run(
        str(folder / "limited.flow"), "--flow", "flat", "-i", f"items={json.dumps(list(range(12)))}", code=0
    )
    assert weft.show(rid)["state"] == "succeeded"
    counted = _counted(folder)
    assert counted["calls"] == 12 and counted["most"] == 2, counted


@pytest.mark.slow
def test_calls_waiting_for_their_step_s_bound_are_never_made_once_the_run_is_cancelled(weft, tmp_path):
    folder = _folder(tmp_path)
    proc = weft.start(
        "run", str(folder / "limited.flow"), "--flow", "held", "-i", f"items={json.dumps(list(range(6)))}"
    )
    try:
        rid = run_id(read_until(proc, "run "))
        end = time.time() + 20
        while not (folder / "count.json").exists():
            assert time.time() < end and proc.poll() is None
            time.sleep(0.05)
        time.sleep(0.3)  # the other five sub-runs' calls wait in line by now
        weft("cancel", rid, code=0)
        soon = time.time() + 5  # the five whose calls wait end cancelled while the sixth still holds its call
        with Client(weft.store) as client:
            while client.runs(parent=rid, state="cancelled").total < 5:
                assert time.time() < soon, [r.state for r in client.runs(parent=rid).runs]
                time.sleep(0.05)
        (folder / "release").write_text("")
        proc.wait(20)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert weft.show(rid)["state"] == "cancelled"
    counted = _counted(folder)
    assert counted == {"now": 0, "most": 1, "calls": 1}, counted


def test_the_bound_is_in_the_plan_and_on_the_task_and_round_trips(tmp_path):
    comp = compile_paths([str(_folder(tmp_path) / "limited.flow")])
    assert not comp.has_errors, comp.diagnostics
    plan = comp.plan("flat")
    body = plan["steps"][0]["each"]["plan"]["steps"]
    assert [s.get("concurrency") for s in body] == [2, None]
    assert plan["steps"][0]["concurrency"] is None  # the `each` step's own bound is each.concurrency
    assert msgpack.unpackb(msgpack.packb(plan, use_bin_type=True), raw=False) == plan
    launch = Launch(body[0]["id"], 1, body[0]["action"], {"i": 1, "seconds": 0.1}, None)
    task = Task.of("R", launch, [], None, ("ROOT/each/" + body[0]["id"], 2))
    again = Task.from_data(msgpack.unpackb(msgpack.packb(task.to_data()), raw=False))
    assert (again.limit, again.limit_key) == (2, "ROOT/each/" + body[0]["id"])
    assert (Task.of("R", launch, []).limit, Task.from_data({**task.to_data(), "limit": None}).limit) == (None, None)


def test_weft_plan_and_weft_graph_show_a_step_s_bound(weft, tmp_path):
    (tmp_path / "top.flow").write_text(
        'flow f(hosts: list[str]) {\n    a = std.log(message: "x") concurrency 4\n'
        "    each h in hosts concurrency 20 {\n        std.log(message: h) concurrency 10\n    }\n}\n"
    )
    assert "std.log   [concurrency 4]" in weft("plan", str(tmp_path / "top.flow"), code=0).stdout
    weft("graph", str(tmp_path / "top.flow"), "--expand", "-o", str(tmp_path / "top.svg"), code=0)
    drawn = (tmp_path / "top.svg").read_text()
    assert "concurrency 4" in drawn and "concurrency 10" in drawn


def test_a_plan_written_before_the_bound_runs_as_before(tmp_path):
    plan = compile_paths([str(_folder(tmp_path) / "limited.flow")]).plan("flat")
    body = plan["steps"][0]["each"]["plan"]
    for s in body["steps"]:
        del s["concurrency"]
    with Client(tmp_path / "store") as client:
        run = client.wait(client.start_plan(plan, {"items": [1, 2, 3]}), 30)
    assert run.state == "succeeded", run.error
    assert run.steps[0].outputs == {"total": 3, "succeeded": 3, "failed": 0}  # every item's calls made


@pytest.mark.slow
def test_the_bound_holds_for_the_sub_runs_a_weft_worker_drives(weft, tmp_path):
    folder = _folder(tmp_path)
    items = json.dumps(list(range(12)))
    done = weft("run", str(folder / "limited.flow"), "--flow", "flat", "-i", f"items={items}", "--detach", code=0)
    rid = run_id(done.stdout)
    weft("worker", "--once", "--workers", "16", code=0, timeout=60)
    assert weft.show(rid)["state"] == "succeeded"
    counted = _counted(folder)
    assert counted["calls"] == 12 and counted["most"] == 2, counted
