"""`weft worker` and `weft run --detach` as real processes on a real store.

Side effects are lines `<run> <tag> <attempt>` that the actions append to one
file, so the tests can tell that no step of any run ran twice, however many
workers served the store and however they were stopped.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter

import pytest
from conftest import Output, Weft
from runtime_support.checks import index_problems

from weft.runtime.engine import session
from weft.runtime.stores.lmdb.store import Store

pytestmark = pytest.mark.slow  # `weft worker` processes

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "runtime_support")
FLOWS = os.path.join(HERE, "worker.flow")
CLI = os.path.join(HERE, "cli.flow")
LINE = re.compile(r"^\d\d:\d\d:\d\d (worker \d+|run [0-9A-Z]{26}) ")


class Worker(Output):
    """A `weft worker` process whose log lines are collected as they come."""

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> tuple[int, float]:
        """Send `sig`; (exit code, seconds it took to exit)."""
        t0 = time.time()
        self.proc.send_signal(sig)
        code = self.proc.wait(timeout)
        self._reader.join(5)
        err = self.proc.stderr.read()
        assert "Traceback" not in err, err
        assert all(LINE.match(x) for x in self.lines), self.lines
        return code, time.time() - t0


class Service(Weft):
    """A store folder, its side-effect file, and the `weft` processes run against it."""

    def __init__(self, tmp_path) -> None:
        super().__init__(tmp_path)
        self.effects = str(tmp_path / "effects")
        self.workers: list[Worker] = []

    def worker(self, *args: str) -> Worker:
        self.workers.append(Worker(self.start("worker", *args)))
        return self.workers[-1]

    def detach(self, *args: str) -> str:
        done = self("run", "--detach", *args)
        assert done.returncode == 0 and re.fullmatch(r"run [0-9A-Z]{26}\n", done.stdout), done
        return done.stdout.split()[1]

    def read(self, fn):
        with Store(self.store, create=False) as store, store.read() as t:
            return fn(t)

    def wait_until(self, fn, timeout: float = 20.0):
        end = time.time() + timeout
        while time.time() < end:
            found = self.read(fn)
            if found:
                return found
            time.sleep(0.05)
        raise AssertionError("timed out")

    def effects_of(self, run_id: str) -> Counter:
        with open(self.effects) as f:
            return Counter(tuple(x.split()[1:]) for x in f if x.startswith(run_id))


@pytest.fixture
def service(tmp_path):
    s = Service(tmp_path)
    yield s
    for w in s.workers:
        if w.proc.poll() is None:
            w.proc.kill()
            w.proc.wait()


def test_a_detached_run_is_queued_and_a_worker_drives_it(service):
    done = service("run", "--detach", FLOWS, "--flow", "chain")
    assert done.returncode == 2 and "missing input 'path'" in done.stderr and done.stdout == ""
    assert not os.path.exists(service.store)
    t0 = time.time()
    rid = service.detach(FLOWS, "--flow", "chain", "-i", f"path={service.effects}", "-i", "pause=0.3")
    assert time.time() - t0 < 5
    run, lease, queued = service.read(lambda t: (t.run(rid), t.lease(rid), t.queued(rid)))
    assert run["state"] == "pending" and run["detached"] and lease is None and queued is not None

    done = service("worker", "--once")
    assert done.returncode == 0, done
    lines = done.stdout.splitlines()
    assert re.fullmatch(r"\d\d:\d\d:\d\d worker \d+ serving .+ \(8 runs at once\)", lines[0])
    assert lines[1].endswith(f" run {rid} chain started")
    assert re.search(f" run {rid} chain succeeded in \\d+\\.\\ds$", lines[2])
    assert re.fullmatch(r"\d\d:\d\d:\d\d worker \d+ stopped", lines[3]) and len(lines) == 4
    assert service.effects_of(rid) == Counter({("one", "1"): 1, ("two", "1"): 1, ("three", "1"): 1})
    assert service.read(lambda t: (t.run(rid)["state"], t.due_runs(time.time() + 1e6, 10))) == ("succeeded", [])


def test_three_workers_share_thirty_runs_and_drive_each_once(service):
    plan = json.loads(service("plan", FLOWS, "--flow", "chain", "--json").stdout)
    workers = [service.worker("--workers", "3") for _ in range(3)]
    for w in workers:
        w.wait_for("serving")
    with Store(service.store) as store:
        ids = [
            session.create(
                store, plan, {"path": service.effects, "pause": 0.05}, user="test", label=None, locks=[], detach=True
            )[0].run["id"]
            for _ in range(30)
        ]
    service.wait_until(lambda t: all(t.run(rid)["state"] == "succeeded" for rid in ids), timeout=30)
    for w in workers:
        assert w.stop()[0] == 0
    started = Counter(x.split()[2] for w in workers for x in w.lines if x.endswith(" chain started"))
    ended = Counter(x.split()[2] for w in workers for x in w.lines if " chain succeeded in " in x)
    assert started == ended == Counter({rid: 1 for rid in ids})
    assert sum(1 for w in workers if any(x.endswith(" chain started") for x in w.lines)) >= 2
    for rid in ids:
        assert service.effects_of(rid) == Counter({("one", "1"): 1, ("two", "1"): 1, ("three", "1"): 1})
    with Store(service.store) as store:
        assert index_problems(store) == []


def test_sigterm_lets_the_running_step_finish_then_resume_completes_the_run(service):
    w = service.worker("--grace", "20s")
    rid = service.detach(FLOWS, "--flow", "slow", "-i", f"path={service.effects}", "-i", "seconds=1.5")
    service.wait_until(lambda t: t.steps(rid)["long"]["state"] == "running")
    code, took = w.stop()
    assert code == 0 and took < 5
    assert any(x.endswith(f"run {rid} handed back to the queue (worker stopping)") for x in w.lines), w.lines
    steps, lease, queued = service.read(lambda t: (t.steps(rid), t.lease(rid), t.queued(rid)))
    assert (steps["long"]["state"], steps["next"]["state"], lease) == ("succeeded", "pending", None)
    assert queued is not None
    done = service("resume", rid)
    assert done.returncode == 0 and f"run {rid} succeeded" in done.stdout, done
    assert service.effects_of(rid) == Counter({("long", "1"): 1, ("next", "1"): 1})


def test_a_step_that_outlasts_the_grace_is_let_go_and_another_worker_recovers_it(service):
    w = service.worker("--grace", "0.3")
    rid = service.detach(FLOWS, "--flow", "slow_again", "-i", f"path={service.effects}", "-i", "seconds=2")
    service.wait_until(lambda t: t.steps(rid)["long"]["state"] == "running")
    code, took = w.stop(signal.SIGINT)
    assert code == 0 and took < 1.5
    assert any(
        x.endswith(f"run {rid} let go with step(s) long still running: the next owner recovers them") for x in w.lines
    ), w.lines
    assert service.read(lambda t: t.lease(rid)) is None
    done = service("worker", "--once")
    assert done.returncode == 0 and f"run {rid} slow_again succeeded" in done.stdout, done
    steps = service.read(lambda t: t.steps(rid))
    assert steps["long"]["attempts"] == 2  # idempotent: it runs again
    assert service.effects_of(rid) == Counter({("long", "2"): 1, ("next", "1"): 1})


def test_a_signal_for_a_detached_run_is_handed_to_the_worker(service):
    w = service.worker()
    rid = service.detach(CLI, "--flow", "approval")
    w.wait_for(f"run {rid} waits for signal approval, back at ")
    assert service.read(lambda t: t.lease(rid)) is None  # a waiting run holds no worker
    done = service("signal", rid, "approval", "ok=true", "who=ann")
    assert done.returncode == 0 and done.stdout == f"signal 'approval' handed to the workers serving run {rid}\n"
    w.wait_for(f"run {rid} approval succeeded in ")
    assert w.stop()[0] == 0
    assert f"run {rid} step ask succeeded (signal 'approval')" in "\n".join(w.lines)
    assert service.read(lambda t: t.run(rid)["result"]) == {"ok": True}


def test_a_signal_reaches_a_run_while_a_worker_drives_it(service):
    w = service.worker()
    rid = service.detach(FLOWS, "--flow", "busy", "-i", f"path={service.effects}")
    service.wait_until(lambda t: t.steps(rid)["long"]["state"] == "running")
    assert service.read(lambda t: t.lease(rid)["pid"]) == w.proc.pid
    assert service("signal", rid, "approval", "ok=false").returncode == 0
    w.wait_for(f"run {rid} step ask succeeded \\(signal 'approval'\\)")
    assert service.read(lambda t: t.steps(rid)["long"]["state"]) == "running"  # delivered while it ran
    w.wait_for(f"run {rid} busy succeeded in ")
    assert w.stop()[0] == 0
    assert service.read(lambda t: t.run(rid)["result"]) == {"ok": False}
    assert service.effects_of(rid) == Counter({("long", "1"): 1, ("last", "1"): 1})


def test_a_worker_fires_the_deadline_of_a_run_it_let_go(service):
    w = service.worker()
    rid = service.detach(FLOWS, "--flow", "deadline")
    w.wait_for(f"run {rid} waits for signal approval, back at ")
    w.wait_for(f"run {rid} step ask failed: Timeout: no signal 'approval' in time")
    w.wait_for(f"run {rid} deadline paused: step ask failed")
    assert w.stop()[0] == 0


def test_a_non_idempotent_step_whose_worker_died_is_interrupted_not_timed_out_and_retried(service):
    """Killed after its work and before its answer, then found past its deadline (`timeout 2s retry 2`) by the next
    worker: it was failed with a Timeout, and its retry ran it again with nobody asking."""
    rid = service.detach(FLOWS, "--flow", "timed", "-i", f"path={service.effects}", "-i", "seconds=1.5")
    worker = service.worker()
    service.wait_until(lambda t: os.path.exists(service.effects) and service.effects_of(rid))
    assert worker.stop(signal.SIGKILL)[0] == -signal.SIGKILL
    time.sleep(max(0.0, service.read(lambda t: t.steps(rid)["long"]["deadline"]) - time.time() + 0.3))
    service("worker", "--once", code=0, timeout=60)
    long = service.read(lambda t: t.steps(rid)["long"])
    assert long["state"] == "failed" and long["error"]["type"] == "Interrupted", long
    assert service.read(lambda t: t.run(rid)["state"]) == "paused"
    assert service.effects_of(rid) == Counter({("long", "1"): 1})  # ("long", "2") too before


def test_a_worker_takes_over_a_run_whose_process_died(service):
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "weft.cli.main",
            "run",
            FLOWS,
            "--flow",
            "slow_again",
            "-i",
            f"path={service.effects}",
            "-i",
            "seconds=1",
        ],
        stdout=subprocess.PIPE,
        text=True,
        env=service.env,
        cwd=service.tmp,
    )
    rid = proc.stdout.readline().split()[1]
    service.wait_until(lambda t: t.steps(rid)["long"]["state"] == "running")
    proc.kill()  # and not reaped yet: a zombie counts as dead too
    done = service("worker", "--once")
    proc.wait()
    proc.stdout.close()
    assert done.returncode == 0, done
    assert re.search(f"run {rid} taken over from pid {proc.pid} on ", done.stdout), done.stdout
    assert f"run {rid} slow_again succeeded" in done.stdout
    assert service.effects_of(rid) == Counter({("long", "2"): 1, ("next", "1"): 1})


def test_a_worker_lets_go_of_runs_between_polls_so_one_slot_serves_many(service):
    """Five runs whose polling step takes a second each, on a worker that drives one
    run at a time: between polls the run is let go (its timers are in the store), so
    the five external tasks run side by side instead of one after another."""
    ids = [
        service.detach(FLOWS, "--flow", "polled", "-i", f"path={service.effects}", "-i", "seconds=1") for _ in range(5)
    ]
    worker = service.worker("--workers", "1")
    service.wait_until(lambda t: all(t.run(rid)["state"] == "succeeded" for rid in ids), timeout=30)
    assert worker.stop()[0] == 0
    steps = service.read(lambda t: [t.steps(rid)["use_"] for rid in ids])
    assert max(s["started"] for s in steps) < min(s["ended"] for s in steps), "served one after another"
    for rid in ids:
        assert service.effects_of(rid) == Counter({("use_", "1"): 1})


EACH_WAITING = """
flow items(names: list[str]) {
    each n in names concurrency 2 {
        ask = wait go(ok: bool)
    }
}
"""


def test_a_run_let_go_with_a_sub_runs_wake_up_unread_is_queued_for_the_next_worker(service):
    """The window of a worker between two polls of a parent run, made by hand: the parent is held (taken here, as a
    worker takes it), its sub-runs end meanwhile (each leaves its wake-up for the holder, not in the queue), and the
    holder lets go without reading them. The run must be queued at once for the next worker; it was left to its
    `each` step's poll timer, and a `weft worker --once` that let go of it so could exit with the run running."""
    flow = os.path.join(service.folder, "items.flow")
    with open(flow, "w") as f:
        f.write(EACH_WAITING)
    parent = service.detach(flow, "-i", 'names=["a", "b"]')
    service("worker", "--once", code=0, timeout=60)  # starts both sub-runs: each waits for its signal
    children = service.read(lambda t: [rid for _, rid in t.children(parent)])
    assert len(children) == 2 and service.read(lambda t: t.run(parent)["state"]) == "running"
    with Store(service.store) as store:
        m, lease, _ = session.take(store, parent)
        for child in children:
            service("signal", child, "go", "ok=true", code=0)  # queued for a worker: this one drives them
        service("worker", "--once", code=0, timeout=60)  # to their end, the parent held here all along
        assert service.read(lambda t: [t.run(child)["state"] for child in children]) == ["succeeded"] * 2
        assert [name for name, _ in service.read(lambda t: t.requests(parent))] != []  # wake-ups, left unread
        assert service.read(lambda t: t.queued(parent)) is None
        let_go = time.time()
        store.write(lambda t: session.persist(t, m, lease, release=True))
    due = service.read(lambda t: t.queued(parent))
    assert due is not None and due <= let_go + 1  # due now, not at its step's next poll
    service("worker", "--once", code=0, timeout=60)
    assert service.read(lambda t: t.run(parent)["state"]) == "succeeded"
