"""Bulk runs as child runs, through real `weft` processes on real stores.

An `each` step makes one child run per item in the store and waits for them
without a thread; whoever serves the store drives the children. The four
defects a new user found in bulk runs each have a test here, and the
interrupted-child promise of issue 9 is checked with real SIGKILLs.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from conftest import Weft

from weft.runtime.stores.lmdb.store import Store

FLOW = str(Path(__file__).resolve().parent / "runtime_support" / "bulk.flow")


class Bulk(Weft):
    """`weft` commands on one store in a temp folder, and the side effects of its bulk flow."""

    timeout = 120.0

    def __init__(self, tmp: Path) -> None:
        super().__init__(tmp)
        self.effects = tmp / "effects"

    def run(self, flow: str, *inputs: str, code: int | None = None) -> tuple[str, subprocess.CompletedProcess]:
        return super().run(FLOW, "--flow", flow, *(a for i in inputs for a in ("-i", i)), code=code)

    def read(self, fn):
        with Store(self.store, create=False) as store, store.read() as t:
            return fn(t)

    def children(self, run_id: str, step: str = "runs") -> list[dict]:
        return self.read(lambda t: [t.run(rid) for _, rid in t.children(run_id, step)])

    def lines(self, path: Path | None = None) -> list[str]:
        path = path or self.effects
        return path.read_text().splitlines() if path.exists() else []


@pytest.fixture
def bulk(tmp_path):
    return Bulk(tmp_path)


def items(n: int) -> str:
    return "items=" + json.dumps(list(range(1, n + 1)))


# -- the four defects -----------------------------------------------------------------------------


def test_cancel_cascades_to_paused_children_and_releases_every_lock(bulk):
    marker = f"{bulk.tmp}/m-"
    Path(marker + "b").write_text("x")
    rid, _ = bulk.run("hosts", 'names=["a","b","c"]', f"marker={marker}", code=3)
    children = bulk.children(rid, "each")
    assert [c["state"] for c in children] == ["succeeded", "paused", "succeeded"]
    assert bulk.read(lambda t: t.locks()) == {"host:b": children[1]["id"]}  # the paused child holds its lock
    done = bulk("cancel", rid)
    assert done.returncode == 0, done.stdout + done.stderr
    after = bulk.children(rid, "each")
    assert [c["state"] for c in after] == ["succeeded", "cancelled", "succeeded"]
    assert bulk.read(lambda t: t.locks()) == {}
    assert bulk("run", FLOW, "--flow", "host", "-i", "name=b", "-i", f"marker={marker}x").returncode == 0


def test_cancel_of_a_bulk_run_being_driven_ends_every_child_and_frees_every_lock(bulk):
    marker = f"{bulk.tmp}/m-"
    proc = bulk.start(
        "run", FLOW, "--flow", "hosts", "-i", 'names=["a","b","c","d"]', "-i", f"marker={marker}", "-i", "pause=3"
    )
    rid = proc.stdout.readline().split()[1]
    end = time.time() + 30
    while not bulk.read(lambda t: t.locks()):
        assert time.time() < end
        time.sleep(0.05)
    done = bulk("cancel", rid)
    assert done.returncode in (0, 1), done.stdout + done.stderr
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 1 and f"run {rid} cancelled" in out, out
    states = [c["state"] for c in bulk.children(rid, "each")]
    assert states == ["cancelled", "cancelled"], states  # the two running ones; the others were never made
    assert bulk.read(lambda t: t.locks()) == {}
    assert bulk.read(lambda t: [r for r in t.run_ids() if t.lease(r)]) == []


def test_rollback_of_a_paused_bulk_run_rolls_back_its_paused_children_and_frees_their_locks(bulk):
    marker = f"{bulk.tmp}/m-"
    Path(marker + "b").write_text("x")
    rid, _ = bulk.run("hosts", 'names=["a","b","c"]', f"marker={marker}", code=3)
    done = bulk("rollback", rid, "--force")  # their gate steps have no undo
    assert done.returncode == 0, done.stdout + done.stderr
    assert [c["state"] for c in bulk.children(rid, "each")] == ["failed"] * 3
    assert all(c["rolled_back"] for c in bulk.children(rid, "each"))
    assert bulk.read(lambda t: t.locks()) == {}
    done = [line if line.startswith("undo") else line.split()[1] for line in bulk.lines(Path(marker + "effects"))]
    assert sorted(done) == ["a", "b", "c", "undo a", "undo b", "undo c"]


def test_a_succeeded_bulk_run_rolls_back_its_children_newest_first(bulk):
    rid, _ = bulk.run("in_order", f"path={bulk.effects}", items(4), code=0)
    done = bulk("rollback", rid)
    assert done.returncode == 0, done.stdout + done.stderr
    shown = json.loads(bulk("show", rid, "--json").stdout)
    assert shown["rolled_back"] and shown["steps"][0]["state"] == "undone"
    lines = [line.split(" ", 1)[1] if not line.startswith("undo") else line for line in bulk.lines()]
    assert lines == ["item1 1", "item2 1", "item3 1", "item4 1", "undo item4", "undo item3", "undo item2", "undo item1"]
    assert all(c["rolled_back"] for c in bulk.children(rid))


def test_rollback_without_force_is_refused_while_a_child_has_a_step_without_undo(bulk):
    rid, _ = bulk.run("items", f"path={bulk.effects}", f"marker={bulk.tmp}/none", items(3), code=0)
    done = bulk("rollback", rid)
    assert done.returncode == 2 and "its sub-run " in done.stderr and "step two with no undo" in done.stderr
    assert done.stderr.count("\n") == 1 and bulk.read(lambda t: t.run(rid))["state"] == "succeeded"
    assert not any(line.startswith("undo") for line in bulk.lines())  # nothing was changed
    done = bulk("rollback", rid, "--force")
    assert done.returncode == 0, done.stdout + done.stderr
    assert sorted(line for line in bulk.lines() if line.startswith("undo")) == [
        "undo item1",
        "undo item2",
        "undo item3",
    ]


def test_a_paused_bulk_run_shows_the_progress_of_its_children(bulk):
    marker = f"{bulk.tmp}/m"
    Path(marker + "3").write_text("x")
    rid, _ = bulk.run("items", f"path={bulk.effects}", f"marker={marker}", items(5), code=3)
    shown = json.loads(bulk("show", rid, "--json").stdout)
    assert shown["state"] == "paused" and shown["progress"] == 0.8
    assert "progress 80%" in bulk("show", rid).stdout


def test_resume_of_a_paused_bulk_run_resumes_its_paused_children(bulk):
    marker = f"{bulk.tmp}/m"
    Path(marker + "2").write_text("x")
    Path(marker + "4").write_text("x")
    rid, done = bulk.run("items", f"path={bulk.effects}", f"marker={marker}", items(5), code=3)
    assert "2 of 5 sub-runs did not succeed" in done.stdout
    paused = [c["id"] for c in bulk.children(rid) if c["state"] == "paused"]
    assert len(paused) == 2 and all(c in done.stdout for c in paused)  # the parent names its paused children
    Path(marker + "2").unlink()
    Path(marker + "4").unlink()
    done = bulk("resume", rid)
    assert done.returncode == 0 and done.stdout.splitlines()[-1] == 'result: {"done": 5}', done.stdout
    assert sorted(re.findall(r"item (\d) of 5", done.stdout)) == ["2", "4"]  # only the resumed children ran
    assert Counter(line.split()[1] for line in bulk.lines()) == {f"item{i}": 1 for i in range(1, 6)}


def test_children_record_the_process_that_drove_them(bulk):
    rid, _ = bulk.run("in_order", f"path={bulk.effects}", items(2), code=0)
    drivers = {c["driver"]["pid"] for c in bulk.children(rid)}
    assert len(drivers) == 1 and drivers != {os.getpid()}


# -- issue 9: an interrupted step in a child waits for a person -----------------------------------


def _wait_for_lines(bulk: Bulk, count: int, proc: subprocess.Popen, limit: float = 30.0) -> None:
    end = time.time() + limit
    while len(bulk.lines()) < count:
        assert proc.poll() is None, proc.communicate()
        assert time.time() < end, "no side effect in time"
        time.sleep(0.02)


def _kill(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.communicate()


@pytest.mark.slow
def test_sigkilled_child_steps_are_never_run_again_without_a_person(bulk):
    """The issue's loop: SIGKILL during item 1, resume, SIGKILL again, resume; repeated, counting side effects."""
    rng = random.Random(9)
    for attempt in range(4):  # 8 kills (the worker kill loop below makes 20 more)
        bulk.effects = bulk.tmp / f"effects-{attempt}"
        proc = bulk.start(
            "run", FLOW, "--flow", "execs", "-i", f"path={bulk.effects}", "-i", 'items=["a","b"]', "-i", "pause=0.6"
        )
        _wait_for_lines(bulk, 1, proc)  # item 1's program runs
        rid = proc.stdout.readline().split()[1]
        _kill(proc)
        proc = bulk.start("resume", rid)
        time.sleep(rng.uniform(0.0, 0.4))  # before item 2 could end: the parent cannot have paused yet
        _kill(proc)
        done = bulk("resume", rid)
        assert done.returncode == 3, done.stdout + done.stderr
        assert Counter(bulk.lines()) == {"a": 1, "b": 1} or Counter(bulk.lines()) == {"a": 1}, bulk.lines()
        child = bulk.children(rid, "each")[0]
        assert child["state"] == "paused" and "interrupted" in child["error"]
        shown = bulk("show", rid).stdout
        assert f"{child['id']}, paused: step " in shown and "was interrupted" in shown, shown
        assert bulk("worker", "--once", timeout=60).returncode == 0  # a worker does not resume it either
        assert Counter(bulk.lines())["a"] == 1
        assert bulk.children(rid, "each")[0]["state"] == "paused"


@pytest.mark.slow
def test_a_worker_leaves_an_interrupted_child_for_a_person(bulk):
    proc = bulk.start(
        "run", FLOW, "--flow", "execs", "-i", f"path={bulk.effects}", "-i", 'items=["a","b"]', "-i", "pause=0.5"
    )
    _wait_for_lines(bulk, 1, proc)
    rid = proc.stdout.readline().split()[1]
    _kill(proc)
    assert bulk("worker", "--once", timeout=60).returncode == 0
    assert Counter(bulk.lines()) == {"a": 1, "b": 1}  # item 2 went on, item 1 did not run again
    run = bulk.read(lambda t: t.run(rid))
    assert run["state"] == "paused" and "interrupted" in run["error"] and "1 of 2 sub-runs" in run["error"]


@pytest.mark.slow
def test_a_kill_loop_of_workers_driving_children_never_runs_a_step_twice(bulk):
    """20 SIGKILLs of workers at random moments of a bulk run whose children run a non-idempotent std.exec."""
    names = [f"n{i}" for i in range(8)]
    args = ("run", FLOW, "--flow", "exec_many", "--detach", "-i", f"path={bulk.effects}", "-i", "pause=0.4")
    rid = bulk(*args, "-i", "items=" + json.dumps(names)).stdout.split()[1]
    rng = random.Random(20)
    for _ in range(20):
        worker = bulk.start("worker")
        time.sleep(rng.uniform(0.3, 1.0))
        _kill(worker)
    assert bulk("worker", "--once", timeout=120).returncode == 0
    counts = Counter(bulk.lines())
    assert set(counts.values()) <= {1}, counts  # zero double runs
    children = bulk.children(rid, "each")
    run = bulk.read(lambda t: t.run(rid))
    stuck = [c for c in children if c["state"] != "succeeded"]
    assert all(c["state"] == "paused" and "interrupted" in c["error"] for c in stuck), stuck
    if stuck:
        assert run["state"] == "paused" and all(c["id"] in run["error"] for c in stuck[:5]), run["error"]
    else:
        assert run["state"] == "succeeded" and sorted(counts) == sorted(names)
    print(f"{len(children) - len(stuck)} children succeeded, {len(stuck)} wait for a person")


def _most_at_once(runs: list[dict]) -> int:
    edges = sorted([(r["created"], 1) for r in runs] + [(r["ended"], -1) for r in runs])
    most = now = 0
    for _, step in edges:
        now += step
        most = max(most, now)
    return most


def test_an_item_whose_lock_another_run_holds_is_not_started_and_named(bulk):
    marker = f"{bulk.tmp}/m-"
    Path(marker + "b").write_text("x")
    holder, _ = bulk.run("host", "name=b", f"marker={marker}", code=3)  # paused, holding host:b
    Path(marker + "b").unlink()
    rid, done = bulk.run("hosts", 'names=["a","b","c"]', f"marker={marker}", code=3)
    assert f"1 of 3 sub-runs did not succeed: item 2 (not started: lock 'host:b' is held by run {holder}" in done.stdout
    assert [c["state"] for c in bulk.children(rid, "each")] == ["succeeded", "succeeded"]


# -- many children over three workers -------------------------------------------------------------


@pytest.mark.slow
def test_two_hundred_children_spread_over_three_workers_and_run_once_each(bulk):
    workers = [
        subprocess.Popen(
            [sys.executable, "-m", "weft.cli.main", "worker", "--workers", "8"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env=bulk.env,
            cwd=bulk.tmp,
        )
        for _ in range(3)
    ]
    try:
        time.sleep(0.5)
        args = ("run", FLOW, "--flow", "many", "--detach", "-i", f"path={bulk.effects}", "-i", "pause=0.05")
        done = bulk(*args, "-i", "items=" + json.dumps(list(range(200))))
        rid = done.stdout.split()[1]
        end = time.time() + 240
        while bulk.read(lambda t: t.run(rid))["state"] in ("pending", "running"):
            assert time.time() < end, "the bulk run did not finish"
            time.sleep(0.5)
        assert bulk.read(lambda t: t.run(rid))["state"] == "succeeded"
    finally:
        for w in workers:
            w.send_signal(signal.SIGTERM)
        for w in workers:
            w.wait(timeout=60)
    counts = Counter(line.split()[1] for line in bulk.lines())
    assert counts == {f"item{i}": 1 for i in range(200)}  # every item exactly once
    children = bulk.children(rid, "each")
    pids = Counter(c["driver"]["pid"] for c in children)
    assert set(pids) == {w.pid for w in workers}, pids  # all three drove some
    assert _most_at_once(children) <= 20  # from a child's creation to its end, it holds a slot
    print(f"children per worker: {sorted(pids.values())}")
