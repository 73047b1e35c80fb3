"""`async def` actions (issue 13, item 1): run on the local executor's event loop, with no thread per call.

Flows and their action module are written into a temporary folder and run
through the Client (or `weft run`) on a real LMDB store. A coroutine sees
CancelledError when its run is cancelled or its step times out, and the step
is recorded exactly as its plain (threaded) twin's is. 2,000 calls in flight
hold a handful of OS threads; std.http.request talks to a local server.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from conftest import Weft
from runtime_support.plans import plan, step

from weft.client.operations import Client
from weft.runtime.executors.port import Reports, Task
from weft.runtime.executors.processes import ProcessExecutor
from weft.sdk.testing import run_action
from weft.stdlib_actions import http as std_http

ACTIONS = '''
import asyncio
import threading
import time
from pathlib import Path
from typing import Any, TypedDict

from weft import action
from weft.sdk.context import Context
from weft.sdk.polling import Pending


class Greeting(TypedDict):
    text: str
    loop_thread: bool


@action
async def greet(name: str, *, ctx: Context) -> Greeting:
    """Say hello after a pause, reporting progress and a log line on the way."""
    ctx.progress(0.5)
    ctx.log(f"greeting {name}")
    await asyncio.sleep(0.01)
    return {"text": f"hello {name}", "loop_thread": threading.current_thread().name == "weft-async"}


class Stamps(TypedDict):
    started: float
    ended: float


@action
async def stamped(seconds: float) -> Stamps:
    """When the call began and ended, on this process's monotonic clock."""
    started = time.monotonic()
    await asyncio.sleep(seconds)
    return {"started": started, "ended": time.monotonic()}


CALLED = []


@action
async def blocking(seconds: float) -> None:
    """Hold the loop's thread itself (no await) for `seconds`."""
    time.sleep(seconds)


@action
async def counted() -> None:
    CALLED.append(1)


@action
async def refuse(reason: str) -> None:
    await asyncio.sleep(0)
    raise ValueError(f"refused: {reason}")


@action
async def linger(marker: str, seconds: float = 30.0) -> None:
    """Sleep; write to `marker` whether it finished or was cancelled."""
    try:
        await asyncio.sleep(seconds)
    except asyncio.CancelledError:
        Path(marker).write_text("cancelled")
        raise
    Path(marker).write_text("finished")


@action
def linger_plainly(marker: str, *, ctx: Context) -> None:
    """The threaded twin of `linger`: waits on the context."""
    if ctx.wait(30.0):
        Path(marker).write_text("cancelled")
        raise RuntimeError("cancelled")
    Path(marker).write_text("finished")


@action(poll_every=0.05, poll_max=0.05)
class countdown:
    """Done at the third poll."""

    async def start(self, n: int) -> Any:
        await asyncio.sleep(0)
        return {"n": n}

    async def poll(self, handle: Any, ctx: Context) -> dict[str, int] | Pending:
        await asyncio.sleep(0)
        left = Path(ctx.run_id + ".polls")
        count = int(left.read_text()) + 1 if left.exists() else 1
        left.write_text(str(count))
        return {"polls": count} if count >= handle["n"] else Pending(progress=count / handle["n"])


RUNNING = {"narrow": [0, 0], "narrow_plainly": [0, 0]}  # action -> [calls running now, most at once]
LOCK = threading.Lock()


def _begin(name):
    with LOCK:
        RUNNING[name][0] += 1
        RUNNING[name][1] = max(RUNNING[name])


def _end(name):
    with LOCK:
        RUNNING[name][0] -= 1


@action(concurrency=2)
async def narrow(i: int) -> None:
    _begin("narrow")
    await asyncio.sleep(0.05)
    _end("narrow")


@action(concurrency=1)
def narrow_plainly(i: int) -> None:
    _begin("narrow_plainly")
    time.sleep(0.05)
    _end("narrow_plainly")


class Busiest(TypedDict):
    most: int


@action
def busiest(name: str) -> Busiest:
    return {"most": RUNNING[name][1]}
'''

FLOWS = """
use aio_actions as a

flow hello(name: str) -> (text: str, loop_thread: bool) {
    g = a.greet(name: name)
    return (text: g.text, loop_thread: g.loop_thread)
}

flow stamping(items: list[int]) {
    each i in items concurrency 5 { a.stamped(seconds: 0.01) }
}

flow refusing() {
    r = a.refuse(reason: "no")
}

flow lingering(marker: str) {
    l = a.linger(marker: marker)
}

flow lingering_plainly(marker: str) {
    l = a.linger_plainly(marker: marker)
}

flow timed(marker: str) {
    l = a.linger(marker: marker) timeout 1s
}

flow timed_plainly(marker: str) {
    l = a.linger_plainly(marker: marker) timeout 1s
}

flow counting() -> (polls: int) {
    c = a.countdown(n: 3)
    return (polls: c.polls)
}

flow narrowed() -> (most: int) {
    n1 = a.narrow(i: 1)
    n2 = a.narrow(i: 2)
    n3 = a.narrow(i: 3)
    n4 = a.narrow(i: 4)
    n5 = a.narrow(i: 5)
    n6 = a.narrow(i: 6)
    b = a.busiest(name: "narrow") after n1, n2, n3, n4, n5, n6
    return (most: b.most)
}

flow narrowed_plainly() -> (most: int) {
    n1 = a.narrow_plainly(i: 1)
    n2 = a.narrow_plainly(i: 2)
    n3 = a.narrow_plainly(i: 3)
    n4 = a.narrow_plainly(i: 4)
    b = a.busiest(name: "narrow_plainly") after n1, n2, n3, n4
    return (most: b.most)
}

flow one_after_another(base: str) -> (c: int) {
    sequence {
        a = std.http.request(url: "${base}/a")
        b = std.http.request(url: "${base}/b")
        c = std.http.request(url: "${base}/c")
    }
    return (c: c.status)
}

flow fetch(base: str) -> (a: int, b: any) {
    x = std.http.request(url: "${base}/one")
    y = std.http.request(url: "${base}/two", method: "POST", json: (n: 2))
    return (a: x.status, b: y.json)
}
"""


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    (tmp_path / "aio_actions.py").write_text(ACTIONS)
    (tmp_path / "aio.flow").write_text(FLOWS)
    return tmp_path


@pytest.fixture
def client(folder: Path):
    with Client(folder / "store") as c:
        yield c


def _run(client: Client, folder: Path, flow: str, timeout: float = 30.0, **inputs):
    rid = client.start(str(folder / "aio.flow"), flow, inputs)
    return client.wait(rid, timeout)


def _steps(run) -> dict:
    return {s.id: s for s in run.steps}


def _until(predicate, limit: float = 20.0) -> None:
    end = time.time() + limit
    while not predicate():
        assert time.time() < end, "timed out waiting"
        time.sleep(0.02)


def test_an_async_action_runs_on_the_loop_with_progress_and_log_lines(client, folder):
    run = _run(client, folder, "hello", name="web1")
    assert run.state == "succeeded", run.error
    assert run.result == {"text": "hello web1", "loop_thread": True}
    history = client.events(run.id)
    assert any(e.log == "greeting web1" for e in history)


def test_an_async_action_that_raises_pauses_the_run_with_its_traceback(client, folder):
    run = _run(client, folder, "refusing")
    assert run.state == "paused"
    error = _steps(run)["r"].error
    assert (error.type, error.message) == ("ValueError", "refused: no")
    assert "in refuse" in error.traceback and 'raise ValueError(f"refused: {reason}")' in error.traceback


def test_an_async_polling_action_starts_and_polls_as_coroutines(client, folder, monkeypatch):
    monkeypatch.chdir(folder)  # the poll counts in a file named after the run
    run = _run(client, folder, "counting")
    assert run.state == "succeeded", run.error
    assert run.result == {"polls": 3}


@pytest.mark.parametrize("twin", ["lingering", "lingering_plainly"])
def test_a_cancel_cancels_the_coroutine_and_records_the_step_as_for_a_plain_action(client, folder, twin):
    marker = folder / f"{twin}.marker"
    rid = client.start(str(folder / "aio.flow"), twin, {"marker": str(marker)})
    _until(lambda: _steps(client.get(rid))["l"].state == "running")
    time.sleep(0.2)  # the call is under way
    client.cancel(rid)
    run = client.wait(rid, 20)
    assert run.state == "cancelled"
    _until(marker.exists)
    assert marker.read_text() == "cancelled"
    step_ = _steps(run)["l"]
    assert step_.state == "cancelled"  # with how the call ended, as the action saw it
    expected = ("RuntimeError", "cancelled") if twin == "lingering_plainly" else ("Cancelled", "the call was cancelled")
    assert (step_.error.type, step_.error.message) == expected


@pytest.mark.parametrize("twin", ["timed", "timed_plainly"])
def test_a_timeout_cancels_the_coroutine_and_fails_the_step_as_for_a_plain_action(client, folder, twin):
    marker = folder / f"{twin}.marker"
    t0 = time.time()
    run = _run(client, folder, twin, marker=str(marker))
    assert time.time() - t0 < 10
    assert run.state == "paused"
    error = _steps(run)["l"].error
    assert (error.type, error.message) == ("Timeout", "timed out after 1s")
    _until(marker.exists)
    assert marker.read_text() == "cancelled"


@pytest.mark.parametrize(("flow", "most"), [("narrowed", 2), ("narrowed_plainly", 1)])
def test_an_action_s_concurrency_bounds_its_calls_in_one_executor(client, folder, flow, most):
    run = _run(client, folder, flow)
    assert run.state == "succeeded", run.error
    assert run.result == {"most": most}


def _os_threads() -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("Threads:"))


@pytest.mark.slow
def test_2000_async_calls_in_flight_hold_a_few_os_threads(tmp_path):
    n = 2000
    sleepers = [step(f"s{i}", "sleep", module="weft.stdlib_actions", inputs={"seconds": 1.0}) for i in range(n)]
    sleepers.append(step("plain"))  # a few plain (threaded) steps beside them do not hold them to the thread bound
    before = _os_threads()
    most = 0
    with Client(tmp_path / "store") as client:
        t0 = time.time()
        rid = client.start_plan(plan("sleepers", sleepers))
        while client.get(rid, steps=0).state == "running":
            most = max(most, _os_threads())
            time.sleep(0.05)
        run = client.wait(rid, 60)
        took = time.time() - t0
    assert run.state == "succeeded", run.error
    assert took < 15, took  # in one wave: 2,000 calls one thread each at the 64 threads' bound take 32 s
    assert most - before < 12, (before, most)  # the loop, the driver, its lease's heartbeat, ...


def _loop_outcomes(folder, monkeypatch, calls: list[tuple[str, dict]], cancelled: int = 0) -> dict:
    """The outcomes (by step) of `calls` ((action of aio_actions, inputs)) handed to one AsyncExecutor in order, the
    first `cancelled` of them cancelled before they were handed over."""
    monkeypatch.syspath_prepend(str(folder))
    from weft.runtime.executors.asyncio import AsyncExecutor

    reports, executor = Reports(), AsyncExecutor()
    channels = [
        reports.channel(Task("r", f"s{i}", 1, {"module": "aio_actions", "name": name}, inputs))
        for i, (name, inputs) in enumerate(calls)
    ]
    try:
        for channel in channels[:cancelled]:
            channel.cancel()
        for channel in channels:
            executor.submit(channel.task, channel)
        outcomes = {}
        while len(outcomes) < len(channels):
            outcomes.update((r.task.step, r.value) for r in reports.take(10) if r.kind == "done")
    finally:
        executor.close()
    return outcomes


def test_the_first_calls_of_a_big_batch_end_while_the_last_are_still_being_started(folder, monkeypatch):
    """3,000 calls handed to the loop in one batch (while a call that blocks it runs): the loop starts them a slice
    at a time and looks at its timers and sockets between slices, so calls of 10 ms end before the last ones
    started (before, every call of a batch was started before any could go on)."""
    calls = [("blocking", {"seconds": 0.3})] + [("stamped", {"seconds": 0.01})] * 3000
    outcomes = _loop_outcomes(folder, monkeypatch, calls)
    stamps = [o.outputs for step_, o in outcomes.items() if step_ != "s0"]
    assert all(o.ok for o in outcomes.values())
    assert min(s["ended"] for s in stamps) < max(s["started"] for s in stamps)


_LOOPS_LEFT = """
import sys, threading
from weft.client.operations import Client

with Client(sys.argv[1] + "/store") as client:
    run = client.wait(client.start(sys.argv[1] + "/aio.flow", "stamping", {"items": list(range(20))}), 60)
print(run.state, sum(t.name == "weft-async" for t in threading.enumerate()))
"""


def test_sub_runs_driven_in_threads_of_their_own_share_one_event_loop_and_leave_none_behind(folder):
    """In a fresh process, five sub-runs driven at once from threads of their own make their first async calls
    through the executor they share: they make one event loop, and the run's end closes it. Each of them once made
    a loop of its own that nobody closed, and such a loop crashed its process at exit (`weft run` ended -11 after
    printing its result)."""
    for _ in range(3):  # (the first calls race in about half the processes)
        done = subprocess.run(
            [sys.executable, "-c", _LOOPS_LEFT, str(folder)], cwd=folder, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout.split() == ["succeeded", "0"], done.stdout


def test_a_call_cancelled_before_the_loop_started_it_is_never_made(folder, monkeypatch):
    outcomes = _loop_outcomes(folder, monkeypatch, [("counted", {})] * 500, cancelled=250)
    import aio_actions

    cancelled = {f"s{i}" for i in range(250)}
    assert all(not outcomes[s].ok and outcomes[s].error["type"] == "Cancelled" for s in cancelled)
    assert all(outcomes[s].ok for s in outcomes.keys() - cancelled)
    assert len(aio_actions.CALLED) == 250


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keeps connections open: the pool reuses them
    seen: list[tuple[str, str]] = []
    connections = 0
    in_flight = 0
    most = 0
    lock = threading.Lock()

    def log_message(self, *args):
        pass

    def setup(self):
        super().setup()
        with type(self).lock:
            _Handler.connections += 1

    def _reply(self, status: int, payload: dict) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        cls = type(self)
        with cls.lock:
            cls.in_flight += 1
            cls.most = max(cls.most, cls.in_flight)
        time.sleep(0.1 if self.path.startswith("/slow") else 0)
        with cls.lock:
            cls.in_flight -= 1
            cls.seen.append(("GET", self.path))
        self._reply(200, {"path": self.path})

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).seen.append(("POST", self.path))
        self._reply(201, {"got": body})


@pytest.fixture
def server(monkeypatch):
    for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    _Handler.seen, _Handler.in_flight, _Handler.most, _Handler.connections = [], 0, 0, 0
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


def test_std_http_request_calls_a_local_server_from_a_flow(client, folder, server):
    run = _run(client, folder, "fetch", base=server)
    assert run.state == "succeeded", run.error
    assert run.result == {"a": 200, "b": {"got": {"n": 2}}}
    assert sorted(_Handler.seen) == [("GET", "/one"), ("POST", "/two")]


def test_the_calls_of_a_run_share_their_connections(client, folder, server):
    run = _run(client, folder, "one_after_another", base=server)
    assert run.state == "succeeded", run.error
    assert [path for _, path in _Handler.seen] == ["/a", "/b", "/c"]
    assert _Handler.connections == 1  # the executor's loop has one client: the first call's connection is kept


def test_std_http_request_goes_through_a_proxy_named_in_the_environment(server, monkeypatch):
    for name in ("no_proxy", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", server)  # the local server stands in for the proxy
    out = run_action(std_http.request, url="http://hosts.example.invalid/one")
    assert out["json"] == {"path": "http://hosts.example.invalid/one"}  # the proxy was asked for the whole URL


@pytest.mark.slow
def test_weft_run_concurrency_bounds_the_async_calls_in_flight(folder, server):
    calls = "\n".join(f'    c{i} = std.http.request(url: "${{base}}/slow/{i}")' for i in range(12))
    (folder / "many.flow").write_text(f"flow many(base: str) {{\n{calls}\n}}\n")
    weft = Weft(folder)
    weft("run", "many.flow", "-i", f"base={server}", "--concurrency", "3", code=0)
    assert len(_Handler.seen) == 12
    assert _Handler.most == 3
    done = weft("run", "many.flow", "-i", f"base={server}", "--concurrency", "0", code=2)
    assert done.stderr.strip().splitlines() == ["weft: error: --concurrency must be at least 1, not 0"]
    done = weft("worker", "--once", "--concurrency", "0", code=2)
    assert done.stderr.strip().splitlines() == ["weft: error: --concurrency must be at least 1, not 0"]


def test_perform_runs_an_async_action_to_its_end_in_a_child_process_and_cancels_it_there(folder):
    reports = Reports()
    executor = ProcessExecutor(grace=5.0)
    try:
        marker = folder / "child.marker"
        linger = Task("r", "s", 1, {"module": "aio_actions", "name": "linger"}, {"marker": str(marker)}, None)
        linger.search_path = [str(folder)]
        channel = reports.channel(linger)
        executor.submit(linger, channel)
        time.sleep(0.5)
        channel.cancel()
        done = _finished(reports)
        assert (done.ok, done.error["type"]) == (False, "Cancelled")
        assert marker.read_text() == "cancelled"
        greet = Task("r", "g", 1, {"module": "aio_actions", "name": "greet"}, {"name": "db1"}, None)
        greet.search_path = [str(folder)]
        executor.submit(greet, reports.channel(greet))
        done = _finished(reports)
        assert done.ok and done.outputs == {"text": "hello db1", "loop_thread": False}
    finally:
        executor.close()


def _finished(reports: Reports, limit: float = 20.0):
    end = time.time() + limit
    while time.time() < end:
        for report in reports.take(0.1):
            if report.kind == "done":
                return report.value
    raise AssertionError("no outcome")
