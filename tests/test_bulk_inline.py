"""Sub-runs driven inside their parent's look (engine/inline.py), through the Client and real `weft` processes.

An `each` body of quick calls of pure or idempotent actions is made, driven
and written by its parent's look, many sub-runs to a commit, with no thread
of their own. What a sub-run is in the store must not differ from one a
driver drove; a sub-run that fails pauses for a person as any other; and a
process killed at any instant loses only work that `weft resume` does again,
never making a second sub-run for an item.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest
from conftest import Weft
from test_each_threads import Peak, os_threads

from weft.client import Client
from weft.runtime.stores.lmdb.store import Store

SUPPORT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "runtime_support")

FLOW = """use rt_actions as t

flow echoes(items: list[int]) {
    made = each i in items concurrency 50 {
        e = t.echo(value: i * 2)
        t.say(message: "item ${i}") after e
        return (value: e.value)
    }
}

flow gates(items: list[int], marker: str) {
    each i in items concurrency 20 {
        t.refuse_when_file(path: "${marker}${i}")
    }
}

flow retried(items: list[int], marker: str) {
    each i in items concurrency 20 {
        t.refuse_when_file(path: "${marker}${i}") retry 1 backoff 1s
    }
}

flow effects(items: list[int], path: str) {
    each i in items concurrency 50 {
        t.effect_again(path: path, tag: "item${i}")
    }
}
"""


@pytest.fixture
def flow(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(SUPPORT)
    path = tmp_path / "inline.flow"
    path.write_text(FLOW)
    return str(path)


def _read(store: str, fn):
    with Store(store, create=False) as s, s.read() as t:
        return fn(t)


def _made(store: str, rid: str) -> int:
    """How many sub-runs run `rid` made so far."""
    return _read(store, lambda t: len(t.children(rid)))


def _children(t, rid: str) -> list[tuple[int, dict, dict, list]]:
    """(index, run, steps, history) of every sub-run of step `each` of run `rid`, by index."""
    step = next(s["id"] for s in t.plan(rid)["steps"] if s["kind"] == "each")
    return [(i, t.run(c), t.steps(c), [e for _, e in t.events(c)]) for i, c in t.children(rid, step)]


def test_quick_redoable_sub_runs_are_whole_runs_in_the_store_and_cost_no_thread(tmp_path, flow):
    store = str(tmp_path / "store")
    with Client(store) as client:
        plan = client.compile(flow, flow="echoes")
        client.drive(client.start_plan(plan, {"items": list(range(30))}, hold=True))  # calls learnt quick here
        rid = client.start_plan(plan, {"items": list(range(600))}, hold=True)
        before = os_threads()
        with Peak() as peak:
            run = client.drive(rid)
    assert run.state == "succeeded"
    assert peak.most - before <= 6, (peak.most, before)  # a driver thread per sub-run would be 50 more
    children, leases, checkup = _read(store, lambda t: (_children(t, rid), list(t.leases()), t.store.checkup()))
    assert [i for i, *_ in children] == list(range(600))  # one sub-run per item
    for i, child, steps, history in children:
        assert child["state"] == "succeeded" and child["result"] == {"value": 2 * i}, child
        assert child["parent"] == {"run": rid, "step": child["parent"]["step"], "index": i}
        assert child["driver"]["pid"] == os.getpid()
        assert all(rec["state"] == "succeeded" for rec in steps.values()), steps
        assert history[0]["state"] == "pending" and history[-1].get("state") == "succeeded", history
        assert any(e.get("line") == f"item {i}" or f"item {i}" in str(e) for e in history), history
    assert leases == [] and checkup.healthy, checkup.remaining
    parent = _read(store, lambda t: [e for _, e in t.events(rid)])
    lines = [e for e in parent if "of 600: run" in str(e)]
    assert len(lines) == 600  # the parent's history has a line per item, as when drivers drive them
    (each,) = _read(store, lambda t: list(t.steps(rid).values()))
    assert each["outputs"]["results"] == [{"value": 2 * i} for i in range(600)]


def _paused(client: Client, flow: str, name: str, marker: str, items: int) -> str:
    """A bulk run of flow `name` over `items` items, driven after a warm-up run (its calls are then quick, so its
    sub-runs run inline) until it paused on the one item whose marker file exists; its id."""
    plan = client.compile(flow, flow=name)
    client.drive(client.start_plan(plan, {"items": list(range(30)), "marker": marker}, hold=True))
    rid = client.start_plan(plan, {"items": list(range(items)), "marker": marker}, hold=True)
    run = client.drive(rid)
    assert run.state == "paused" and f"1 of {items} sub-runs did not succeed" in (run.error or ""), run.error
    return rid


def test_an_inline_sub_run_that_fails_pauses_for_a_person_and_resume_goes_on(tmp_path, flow):
    store, marker = str(tmp_path / "store"), f"{tmp_path}/m"
    Path(f"{marker}150").write_text("x")
    with Client(store) as client:
        rid = _paused(client, flow, "gates", marker, 200)
        states = Counter(child["state"] for _, child, _, _ in _read(store, lambda t: _children(t, rid)))
        assert states == {"succeeded": 199, "paused": 1}, states
        Path(f"{marker}150").unlink()
        resumed = client.resume(rid, hold=True)
        run = client.drive(resumed.id)
    assert run.state == "succeeded", run.error
    children = _read(store, lambda t: _children(t, rid))
    assert [i for i, *_ in children] == list(range(200))
    assert all(child["state"] == "succeeded" for _, child, _, _ in children)


def test_an_inline_sub_run_waiting_for_a_retry_goes_to_a_driver_and_pauses_when_its_tries_fail(tmp_path, flow):
    store, marker = str(tmp_path / "store"), f"{tmp_path}/m"
    Path(f"{marker}120").write_text("x")
    with Client(store) as client:
        rid = _paused(client, flow, "retried", marker, 150)
        (_, child, steps, history) = _read(store, lambda t: _children(t, rid))[120]
        # written as made when its first try failed here, then driven from its start by a driver: two tries
        assert child["state"] == "paused" and list(steps.values())[0]["attempts"] == 2, steps
        assert sum("created by" in str(e.get("detail")) for e in history) == 1, history
        Path(f"{marker}120").unlink()
        run = client.drive(client.resume(rid, hold=True).id)
    assert run.state == "succeeded", run.error
    children = _read(store, lambda t: _children(t, rid))
    assert [i for i, *_ in children] == list(range(150))
    assert all(child["state"] == "succeeded" for _, child, _, _ in children)


def test_a_bulk_run_a_worker_serves_drives_quick_sub_runs_in_its_looks_too(tmp_path, flow):
    weft = Weft(tmp_path)
    weft.env["PYTHONPATH"] = os.pathsep.join([SUPPORT, weft.env.get("PYTHONPATH", "")])
    effects = tmp_path / "effects"
    worker = weft.start("worker", stdout=subprocess.DEVNULL)
    try:
        args = ("--flow", "effects", "-i", f"path={effects}", "-i", "items=" + str(list(range(1500))))
        rid = weft("run", flow, *args, "--detach", code=0).stdout.split()[1]
        end = time.time() + weft.timeout
        while _read(weft.store, lambda t: t.run(rid))["state"] in ("pending", "running"):
            assert time.time() < end, "the bulk run did not finish"
            time.sleep(0.2)
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=60)
    children = _read(weft.store, lambda t: _children(t, rid))
    assert _read(weft.store, lambda t: t.run(rid))["state"] == "succeeded"
    assert [i for i, *_ in children] == list(range(1500))
    assert {child["driver"]["pid"] for _, child, _, _ in children} == {worker.pid}
    assert Counter(line.split()[1] for line in effects.read_text().splitlines()) == {f"item{i}": 1 for i in range(1500)}


@pytest.mark.slow
def test_killed_at_random_instants_an_each_of_quick_sub_runs_makes_one_sub_run_per_item(tmp_path, flow):
    weft = Weft(tmp_path)
    weft.env["PYTHONPATH"] = os.pathsep.join([SUPPORT, weft.env.get("PYTHONPATH", "")])
    effects = tmp_path / "effects"
    n, kills = 6000, 0
    args = ("--flow", "effects", "-i", f"path={effects}", "-i", "items=" + str(list(range(n))))
    proc = weft.start("run", flow, *args)
    rid = proc.stdout.readline().split()[1]
    rng = random.Random()
    made = 0
    while kills < 5:  # then it may finish
        while proc.poll() is None and _made(weft.store, rid) <= made:  # strike once this process made some
            time.sleep(0.02)
        time.sleep(rng.uniform(0.0, 0.3))
        if proc.poll() is not None:
            break
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
        if _read(weft.store, lambda t: t.run(rid))["state"] == "succeeded":
            break  # struck after the end
        made = _made(weft.store, rid)
        kills += 1
        proc = weft.start("resume", rid)
    out, err = proc.communicate(timeout=weft.timeout)
    assert proc.returncode in (0, -signal.SIGKILL) and "Traceback" not in err, (out, err)
    assert kills >= 1, "the run ended before a kill struck it"
    children, leases = _read(weft.store, lambda t: (_children(t, rid), list(t.leases())))
    assert [i for i, *_ in children] == list(range(n))  # never a second sub-run for an item
    assert all(child["state"] == "succeeded" for _, child, _, _ in children)
    assert leases == []
    done = Counter(line.split()[1] for line in effects.read_text().splitlines())
    assert set(done) == {f"item{i}" for i in range(n)}  # every item's call made, some again after a kill
    check = subprocess.run(
        [*weft.command("doctor")], env=weft.env, cwd=tmp_path, capture_output=True, text=True, check=False
    )
    assert check.returncode == 0, check.stdout + check.stderr
