"""Live events over server-sent events from a real `weft serve` (issue 10): runs driven by other processes (a
`weft worker`, a foreground `weft run`) stream just the same, and a client that connects midway, disconnects
and reconnects with Last-Event-ID gets every transition exactly once and in order."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
from conftest import Output, Weft, run_id
from server_support import Server

pytestmark = pytest.mark.slow

SLOWLY = """
flow slowly(n: int = 3) -> (y: int) {
    meta label "slowly ${n}"
    a = std.log(message: "a ${n}")
    b = std.log(message: "b ${n}") after a
    go = wait go() timeout 1h
    s = std.sleep(seconds: 0.3) after go, b
    c = std.log(message: "c ${n}") after s
    d = std.echo(value: n) after c
    return (y: n)
}
"""
LIMIT = 30.0  # seconds any one stream is read at most
TIMEOUT = httpx.Timeout(10.0, read=20.0)  # the server sends a heartbeat comment every 15 s when idle


def messages(response: httpx.Response) -> Iterator[dict]:
    """The SSE messages of a streamed response, as {"id", "event", "data"} (data parsed as JSON)."""
    assert response.status_code == 200, response.read()
    assert response.headers["content-type"].startswith("text/event-stream")
    message: dict = {}
    for line in response.iter_lines():
        if not line:
            if "data" in message:
                message["data"] = json.loads(message["data"])
                yield message
            message = {}
        elif not line.startswith(":"):  # a comment: the greeting and the heartbeats
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            message[name] = message[name] + "\n" + value if name == "data" and name in message else value


def read(server: Server, path: str, until, *, last: str | None = None, params: dict | None = None) -> list[dict]:
    """The messages of the stream at `path` (resumed after `last`) up to the first for which `until` holds."""
    headers = {"Authorization": f"Bearer {server.viewer_token}"}
    if last is not None:
        headers["Last-Event-ID"] = last
    got = []
    end = time.monotonic() + LIMIT
    with httpx.stream("GET", server.url + path, headers=headers, params=params, timeout=TIMEOUT) as response:
        for message in messages(response):
            got.append(message)
            if until(message, got):
                return got
            assert time.monotonic() < end, got
    raise AssertionError(f"the stream ended early: {got}")


def history(server: Server, rid: str) -> list[dict]:
    return server.api.get(f"/api/v1/runs/{rid}/events").json()


def midway(server: Server, rid: str) -> None:
    """Return once the run waits for its signal `go`: the rest of its events come once it is given."""
    end = time.monotonic() + 30
    while server.api.get(f"/api/v1/runs/{rid}").json()["waiting_for"] != ["go"]:
        assert time.monotonic() < end, history(server, rid)
        time.sleep(0.02)


def go(server: Server, rid: str) -> None:
    answer = server.api.post(f"/api/v1/runs/{rid}/signals/go", json={})
    assert answer.status_code == 200, answer.text


def follow_one_run(server: Server, rid: str) -> None:
    """Stream the run's events: connect midway, leave after 3, come back with Last-Event-ID; exactly its history."""
    midway(server, rid)
    path = f"/api/v1/runs/{rid}/stream"
    first = read(server, path, lambda m, got: len(got) == 3)
    go(server, rid)
    time.sleep(0.4)  # events go on meanwhile
    rest = read(server, path, lambda m, got: m.get("event") == "end", last=first[-1]["id"])
    assert rest[-1]["data"] == {"run": rid, "run_state": "succeeded"}
    got = first + rest[:-1]
    expected = history(server, rid)
    assert [int(m["id"]) for m in got] == [e["seq"] for e in expected] == list(range(1, len(expected) + 1))
    for message, event in zip(got, expected, strict=True):
        assert {k: message["data"][k] for k in event} == event
        assert message["data"]["run"] == rid
    assert [m["data"]["log"] for m in got if m["data"]["log"]] == ["a 3", "b 3", "c 3"]
    assert got[-1]["data"]["run_state"] == "succeeded" and got[-1]["data"]["progress"] == 1.0
    again = read(server, path, lambda m, got: m.get("event") == "end", params={"after": len(expected) - 2})
    assert [m.get("id") for m in again] == [str(len(expected) - 1), str(len(expected)), str(len(expected))]


@pytest.fixture
def served(tmp_path) -> Iterator[tuple[Server, Weft]]:
    """A server without a worker, a `weft` in the same folder, and the flow file in `flows/`."""
    (tmp_path / "flows").mkdir()
    (tmp_path / "flows" / "slowly.flow").write_text(SLOWLY)
    with Server(tmp_path, flows=[tmp_path / "flows"], args=("--no-worker",)) as server:
        yield server, Weft(tmp_path)


@pytest.fixture
def worker(served) -> Iterator[Output]:
    """A separate `weft worker` process on the server's store."""
    proc = Output(served[1].start("worker", stderr=None))
    yield proc
    proc.proc.terminate()
    assert proc.proc.wait(30) == 0, proc.lines


def test_a_run_driven_by_a_worker_process_streams_once_and_in_order(served, worker):
    server, _ = served
    response = server.api.post("/api/v1/runs", json={"flow": "slowly"})
    assert response.status_code == 201, response.text
    follow_one_run(server, response.json()["id"])


def test_a_foreground_weft_run_streams_the_same(served):
    server, weft = served
    proc = Output(weft.start("run", str(weft.folder / "flows" / "slowly.flow"), stderr=None))
    try:
        rid = run_id(proc.wait_for(r"^run [0-9A-Z]{26}$"))
        follow_one_run(server, rid)
    finally:
        assert proc.proc.wait(30) == 0, proc.lines


def test_the_stream_of_every_run_resumes_after_its_last_event_id(served, worker):
    server, weft = served
    done = weft("run", str(weft.folder / "flows" / "slowly.flow"), "--detach", "-i", "n=1", code=0)
    first_run = run_id(done.stdout)
    midway(server, first_run)
    go(server, first_run)
    server.wait_for(first_run, ("succeeded",))
    rid = run_id(weft("run", str(weft.folder / "flows" / "slowly.flow"), "--detach", code=0).stdout)
    midway(server, rid)

    def ended(message: dict, got: list) -> bool:  # the run's last event: it succeeded
        data = message["data"]
        return data["run"] == rid and data["state"] == "succeeded" and not data["step"]

    first = read(server, "/api/v1/events", lambda m, got: len(got) == 5, params={"after": 0})
    go(server, rid)
    time.sleep(0.4)
    rest = read(server, "/api/v1/events", ended, last=first[-1]["id"])
    got = first + rest
    places = [int(m["id"]) for m in got]
    assert places == sorted(set(places)), places
    for run in (first_run, rid):
        mine = [m["data"] for m in got if m["data"]["run"] == run]
        assert [m["seq"] for m in mine] == [e["seq"] for e in history(server, run)], (run, got)
    now = read(server, "/api/v1/events", lambda m, got: True, last=str(places[-3]))
    assert [m["id"] for m in now] == [str(places[-2])]
    later = threading.Timer(1.0, lambda: server.api.post("/api/v1/runs", json={"flow": "slowly"}))
    later.start()  # a Last-Event-ID past the feed's end (another store's) counts from the end
    beyond = read(server, "/api/v1/events", lambda m, got: True, last=str(places[-1] + 10**6))
    later.join()
    assert int(beyond[0]["id"]) == places[-1] + 1 and beyond[0]["data"]["state"] == "pending", beyond
    problems = server.viewer.get("/api/v1/events", headers={"Last-Event-ID": "soon"})
    assert problems.status_code == 422 and problems.json()["field"] == "Last-Event-ID"
    assert server.viewer.get("/api/v1/runs/ZZZZZZZZ/stream").status_code == 404
    assert server.anonymous.get("/api/v1/runs/ZZZZZZZZ/stream").status_code == 401
    assert (
        server.viewer.get(f"/api/v1/runs/{rid}/stream", headers={"Last-Event-ID": "²".encode("latin-1")}).status_code
        == 422
    )
    assert server.viewer.get("/api/v1/events", headers={"Last-Event-ID": "9" * 30}).status_code == 422


def test_the_stream_of_a_run_deleted_while_it_is_watched_ends_with_a_gone_event(served):
    """The run a stream follows is deleted from the store (as pruning does): its stream stopped with an
    internal error of the server and no last event; now a `gone` event ends it."""
    from weft.runtime.stores import open_store

    server, _ = served
    rid = server.api.post("/api/v1/runs", json={"flow": "slowly"}).json()["id"]  # no worker: it stays pending
    got: list[dict] = []
    began = threading.Event()

    def until(message: dict, so_far: list[dict]) -> bool:
        began.set()  # its history so far came: it waits for more
        return message.get("event") == "gone"

    reader = threading.Thread(target=lambda: got.extend(read(server, f"/api/v1/runs/{rid}/stream", until)))
    reader.start()
    assert began.wait(LIMIT)
    with open_store(server.store) as store:
        store.write(lambda t: t.delete_run(rid))
    server.api.post("/api/v1/runs", json={"flow": "slowly"})  # a commit: the stream looks again
    reader.join(LIMIT)
    assert got and got[-1]["event"] == "gone" and got[-1]["data"] == {"run": rid, "detail": "the run was deleted"}
    assert server.api.get(f"/api/v1/runs/{rid}/stream").status_code == 404
