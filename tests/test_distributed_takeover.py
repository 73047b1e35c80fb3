"""Orchestrators beside `weft run`: `weft serve --broker`, and a run whose orchestrator died with calls sent to
agents, taken over by a process without the broker.

An agent may still run such a call (here: none has taken it yet, it waits in
the queue). A non-idempotent one must not run here too: the taker refuses,
before it changes anything, and says to drive the run with --broker. An
idempotent one simply runs again here.
"""

from __future__ import annotations

import time

import pytest
from conftest import run_id
from redis_support import redis  # noqa: F401 (the fixture)
from server_support import Server
from test_distributed import cluster, effect_lines  # noqa: F401 (cluster: the fixture)


def _orchestrator_dies_with_a_call_queued(cluster, action: str) -> str:
    flow = cluster.flow(
        "one.flow", f'flow one(path: str) {{\n    s = x.{action}(path: path, tag: "s", seconds: 0)\n}}\n'
    )
    proc = cluster.start("run", flow, "-i", f"path={cluster.effects}", *cluster.broker)
    rid = run_id(proc.stdout.readline())
    end = time.monotonic() + 30
    while cluster.steps(rid)["s"]["state"] != "running":  # recorded dispatched in the same commit, then sent
        assert time.monotonic() < end
        time.sleep(0.05)
    time.sleep(0.3)
    proc.kill()
    proc.wait()
    return rid


@pytest.mark.slow
def test_a_non_idempotent_call_in_flight_is_left_for_a_process_with_the_broker(cluster):
    rid = _orchestrator_dies_with_a_call_queued(cluster, "effect")
    history = cluster.show(rid)["history"]

    refused = cluster("resume", rid, code=2)
    assert f"run {rid} has calls in flight on agents: step s (call " in refused.stderr
    assert "drive it with --broker" in refused.stderr
    assert cluster.show(rid)["history"] == history  # nothing changed: no take-over, no failure recorded

    cluster.agent("c1")  # takes the queued call; the resume below collects it, it does not send it again
    done = cluster("resume", rid, *cluster.broker, code=0)
    assert "succeeded" in done.stdout
    assert effect_lines(cluster.lines()) == {("s", 1): 1}
    assert cluster.show(rid)["steps"][0]["agent"] == "c1"


@pytest.mark.slow
def test_an_idempotent_call_in_flight_runs_again_without_the_broker(cluster):
    rid = _orchestrator_dies_with_a_call_queued(cluster, "effect_again")

    cluster("resume", rid, code=0)
    shown = cluster.show(rid)
    assert shown["state"] == "succeeded"
    assert shown["steps"][0]["agent"] is None  # ran here, as a new attempt (the first never ran: no agent took it)
    assert effect_lines(cluster.lines()) == {("s", 2): 1}
    assert any("no broker to collect it" in (e.get("detail") or "") for e in shown["history"])


@pytest.mark.slow
def test_weft_serve_with_a_broker_runs_the_runs_it_starts_on_agents(cluster):
    flows = cluster.folder / "flows"
    flows.mkdir()
    (flows / "ext_dist.py").write_text((cluster.folder / "ext_dist.py").read_text())
    (flows / "one.flow").write_text(
        'use ext_dist as x\n\nflow one(path: str) {\n    s = x.where(path: path, tag: "s")\n    t = x.where(path: path, tag: "t") after s\n}\n'
    )
    cluster.agent("w1")
    env = {"WEFT_HEARTBEAT": cluster.env["WEFT_HEARTBEAT"], "PYTHONPATH": str(flows)}
    with Server(cluster.folder, flows=[flows], args=cluster.broker, env=env) as server:
        started = server.api.post("/api/v1/runs", json={"flow": "one", "inputs": {"path": str(cluster.effects)}})
        assert started.status_code == 201, started.text
        run = server.wait_for(started.json()["id"], ("succeeded",))
        page = server.api.get(f"/runs/{run['id']}", params={"step": "s"})  # the console's step panel
        assert page.status_code == 200 and "<th>Agent</th><td>w1</td>" in page.text, page.text
    assert [(s["id"], s["agent"]) for s in run["steps"]] == [("s", "w1"), ("t", "w1")]
    assert sorted(cluster.lines()) == ["s 1 w1", "t 1 w1"]
