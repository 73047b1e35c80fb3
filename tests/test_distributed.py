"""Distributed execution (issue 11), through real processes: a real Redis, real `weft agent` processes.

Every test has its own `redis-server` (no persistence) and its own agents,
started in the test's folder with `TEST_AGENT_NAME` set, so an action can
write down which process ran it and that can be held against what `weft
show --json` says (`queue` and `agent` of each step). Side effects go to
files as `<tag> <attempt> <agent>` lines, so that calls can be counted across
processes that die. Heartbeats are short (`WEFT_HEARTBEAT=0.5` s: a call whose
agent went silent for three beats is lost), and so is Redis's redelivery of a
call that a dead agent took before claiming it (`WEFT_REDELIVER=2` s).
"""

from __future__ import annotations

import random
import re
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest
from conftest import run_id
from redis_support import HEARTBEAT, REDELIVER, Agent, Redis, redis  # noqa: F401 (redis: the fixture)
from server_support import EXAMPLES, Server
from test_scenarios import HOST, ORGANIZATION, SUBNET, Scenario, host_inputs, steps

# Actions of the tests; written into each test's folder as `ext_dist.py`, where the agents find it.
EXT = '''
import os, time
from typing import Any, TypedDict
from weft import Context, Pending, action

class Ran(TypedDict):
    agent: str

def me() -> str:
    return os.environ.get("TEST_AGENT_NAME", "local")

def note(path: str, line: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (line + "\\n").encode())
    finally:
        os.close(fd)

@action
def where(path: str, tag: str, ctx: Context) -> Ran:
    """Not idempotent: writes down which agent ran it."""
    note(path, f"{tag} {ctx.attempt} {me()}")
    return {"agent": me()}

@action
def effect(path: str, tag: str, seconds: float, ctx: Context) -> Ran:
    """Not idempotent: `<tag> <attempt> <agent>` once it started, `done <tag> <attempt>` when it ends."""
    note(path, f"{tag} {ctx.attempt} {me()}")
    time.sleep(seconds)
    note(path, f"done {tag} {ctx.attempt}")
    return {"agent": me()}

@action(idempotent=True)
def effect_again(path: str, tag: str, seconds: float, ctx: Context) -> Ran:
    """The idempotent twin of `effect`."""
    note(path, f"{tag} {ctx.attempt} {me()}")
    time.sleep(seconds)
    return {"agent": me()}

@action
def hold(path: str, tag: str, gate: str, ctx: Context) -> None:
    """Logs and reports half way, then holds while `gate` exists (20 s at most) or until the run is cancelled."""
    note(path, f"{tag} {ctx.attempt} {me()}")
    ctx.log(f"{tag} half way on {me()}")
    ctx.progress(0.5)
    end = time.time() + 20
    while os.path.exists(gate) and time.time() < end:
        if ctx.wait(0.05):
            note(path, f"cancelled {tag}")
            return
    ctx.log(f"{tag} done on {me()}")

@action(poll_every=0.05, poll_max=0.1, poll_factor=1.5)
class remote_task:
    """A polling action: `start <agent>` once, `poll <agent>` every look; done at the `polls`-th poll."""

    def start(self, path: str, polls: int, ctx: Context) -> Any:
        note(path, f"start {me()}")
        return {"path": path, "polls": polls}

    def poll(self, handle: Any) -> Ran | Pending:
        note(handle["path"], f"poll {me()}")
        with open(handle["path"]) as f:
            seen = sum(line.startswith("poll ") for line in f)
        if seen < handle["polls"]:
            return Pending(progress=seen / handle["polls"])
        return {"agent": me()}
'''


class Cluster(Scenario):
    """The scenario folder, its Redis, and the agents serving it."""

    def __init__(self, folder: Path, server: Redis) -> None:
        super().__init__(folder)
        self.redis = server
        self.env.update(WEFT_HEARTBEAT=HEARTBEAT, WEFT_REDELIVER=REDELIVER)
        self.env.pop("WEFT_BROKER", None)
        self.agents: list[Agent] = []
        (folder / "ext_dist.py").write_text(EXT)
        self.effects = folder / "effects"

    @property
    def broker(self) -> tuple[str, str]:
        return ("--broker", self.redis.url)

    def start_agent(self, name: str, *queues: str, concurrency: int | None = None) -> Agent:
        """An agent serving `queues` (default: the default queue), started (not ready yet)."""
        agent = Agent.start(self.redis.url, name, queues=queues, concurrency=concurrency, env=self.env, cwd=self.folder)
        self.agents.append(agent)
        return agent

    def agent(self, name: str, *queues: str, concurrency: int | None = None) -> Agent:
        """An agent serving `queues`, once it is ready."""
        return self.start_agent(name, *queues, concurrency=concurrency).ready(queues or ("weft",), self.redis.url)

    def flow(self, name: str, text: str) -> str:
        (self.folder / name).write_text("use ext_dist as x\n\n" + text)
        return name

    def lines(self) -> list[str]:
        return self.effects.read_text().splitlines() if self.effects.exists() else []

    def wait_for_lines(self, test, timeout: float = 30.0) -> list[str]:
        """The effect lines once `test(lines)` holds."""
        end = time.monotonic() + timeout
        while not test(lines := self.lines()):
            assert time.monotonic() < end, lines
            time.sleep(0.02)
        return lines

    def finish(self, proc: subprocess.Popen, timeout: float = 90.0) -> tuple[int, str, str]:
        """A background command's exit code, stdout and stderr once it ended (without a traceback)."""
        out, err = proc.communicate(timeout=timeout)
        assert "Traceback" not in err, err
        return proc.returncode, out, err

    def close(self) -> None:
        for agent in self.agents:
            agent.kill()


@pytest.fixture
def cluster(tmp_path, request) -> Cluster:
    c = Cluster(tmp_path, request.getfixturevalue("redis"))
    yield c
    c.close()


def ran_on(shown: dict) -> dict[str, str | None]:
    """The agent of each step that ran (skipped ones and hooks that did not apply never did)."""
    return {s["id"]: s["agent"] for s in shown["steps"] if s["attempts"]}


def effect_lines(lines: list[str]) -> Counter:
    """(tag, attempt) -> how many times that call started, from `<tag> <attempt> <agent>` lines."""
    started = (x.split() for x in lines if not x.startswith(("done ", "cancelled ")))
    return Counter((tag, int(attempt)) for tag, attempt, _ in started)


def interrupted(shown: dict) -> Counter:
    return Counter(
        e["step"]
        for e in shown["history"]
        if e.get("state") == "failed" and "interrupted" in (e.get("detail") or "").lower()
    )


# -- The scenarios on two agents --------------------------------------------------------------------------


@pytest.mark.slow
def test_foreman_host_creation_on_two_agents(cluster):
    cluster.agent("a1", concurrency=1), cluster.agent("a2", concurrency=1)
    rid, done = cluster.run(HOST, *host_inputs("db01", 1), *cluster.broker)
    assert done.returncode == 0, done.stdout
    shown = cluster.show(rid)
    s = steps(shown)
    assert {k: v["state"] for k, v in s.items()} == dict.fromkeys(("dhcp", "a", "ptr", "log"), "succeeded")
    agents = ran_on(shown)
    assert set(agents.values()) <= {"a1", "a2"}, agents  # every call ran on an agent, none locally
    assert all(v["queue"] is None for v in s.values())  # the default queue
    text = cluster("show", rid, code=0).stdout.splitlines()
    for sid, agent in agents.items():  # `weft show` names the agent on the step's line
        assert any(re.match(rf"^{sid}\s.*\b{agent}\b", line) for line in text), (sid, agent, text)
    ip = s["dhcp"]["outputs"]["ip"]
    assert cluster.state("proxy")["dns"] == {"A": {"db01.example.com": ip}, "PTR": {ip: "db01.example.com"}}


@pytest.mark.slow
def test_katello_organization_on_two_agents(cluster):
    cluster.agent("a1", concurrency=2), cluster.agent("a2", concurrency=2)
    rid, done = cluster.run(ORGANIZATION, "-i", "name=ACME", "-i", "label=acme", *cluster.broker)
    assert done.returncode == 0, done.stdout
    shown = cluster.show(rid)
    assert shown["result"]["activation_key"] == "acme-dev"
    agents = ran_on(shown)
    assert set(agents.values()) == {"a1", "a2"}, agents  # both agents took calls, and nothing ran locally
    history = shown["history"]
    for sid in ("sync_baseos", "sync_appstream", "sync_tools"):  # polled remotely, suspended in between
        assert any(e.get("step") == sid and e.get("state") == "suspended" for e in history), sid
    state = cluster.state("katello")
    assert all(r["packages"] for r in state["repositories"].values())
    assert [k["name"] for k in state["activation_keys"].values()] == ["acme-dev"]


@pytest.mark.slow
def test_weft_serve_with_a_broker_runs_what_the_api_starts_on_agents(cluster):
    cluster.agent("s1")
    env = {k: v for k, v in cluster.env.items() if k != "WEFT_STORE"}  # the server's store is the same folder's
    with Server(cluster.folder, flows=[EXAMPLES / "foreman"], args=cluster.broker, env=env) as server:
        inputs = {"name": "web7", "mac": "52:54:00:aa:00:07", "subnet": SUBNET}
        answer = server.api.post("/api/v1/runs", json={"flow": "create_host", "inputs": inputs})
        assert answer.status_code in (200, 201, 202), answer.text
        rid = answer.json()["id"]
        end = time.monotonic() + 60
        while (state := server.api.get(f"/api/v1/runs/{rid}").json()["state"]) != "succeeded":
            assert state in ("pending", "running") and time.monotonic() < end, state
            time.sleep(0.1)
        first = cluster.show(rid)["steps"][0]["id"]
        page = server.api.get(f"/runs/{rid}", params={"step": first})  # the console's step panel says where it ran
        assert page.status_code == 200 and "<th>Agent</th><td>s1</td>" in page.text, page.text
    assert set(ran_on(cluster.show(rid)).values()) == {"s1"}


# -- Routing ----------------------------------------------------------------------------------------------

ROUTES = """\
use ext_routes as r

flow routed(path: str, n: int = 2) {
    one   = r.where(path: path, tag: "one") queue "dc1"
    two   = r.where(path: path, tag: "two") queue "dc${n}"
    three = r.where_dc2(path: path, tag: "three")             # the action's own queue
    four  = r.where_dc2(path: path, tag: "four") queue "dc1"  # the step's queue comes first
    plain = r.where(path: path, tag: "plain")                 # the default queue
}
"""
ROUTED_ACTIONS = """\
from ext_dist import Context, Ran, action, me, note

@action
def where(path: str, tag: str, ctx: Context) -> Ran:
    note(path, f"{tag} {ctx.attempt} {me()}")
    return {"agent": me()}

@action(queue="dc2")
def where_dc2(path: str, tag: str, ctx: Context) -> Ran:
    note(path, f"{tag} {ctx.attempt} {me()}")
    return {"agent": me()}
"""


@pytest.mark.slow
def test_steps_run_only_on_agents_serving_their_queue(cluster):
    (cluster.folder / "ext_routes.py").write_text(ROUTED_ACTIONS)
    (cluster.folder / "routes.flow").write_text(ROUTES)
    plan = cluster("plan", "routes.flow", code=0).stdout
    assert 'queue "dc1"' in plan or "queue dc1" in plan, plan  # the queue is part of the plan shown
    cluster.agent("east", "dc1", "weft"), cluster.agent("west", "dc2")
    rid, done = cluster.run("routes.flow", "-i", f"path={cluster.effects}", *cluster.broker)
    assert done.returncode == 0, done.stdout
    s = steps(cluster.show(rid))
    expected = {"one": ("dc1", "east"), "two": ("dc2", "west"), "three": ("dc2", "west"), "four": ("dc1", "east")}
    expected["plain"] = (None, "east")
    assert {k: (v["queue"], v["agent"]) for k, v in s.items()} == expected
    # What the actions wrote down agrees: each ran once, in the agent process `weft show` names.
    ran = sorted(line.split() for line in cluster.lines())
    assert ran == sorted([tag, "1", agent] for tag, (_, agent) in expected.items())
    assert {k: v["outputs"]["agent"] for k, v in s.items()} == {k: a for k, (_, a) in expected.items()}


# -- Agents killed ----------------------------------------------------------------------------------------


def kill_flow(lanes: int = 3, depth: int = 6, seconds: float = 0.25) -> str:
    """Lanes of non-idempotent `std.file.append` and `x.effect` steps, and idempotent `x.effect_again` ones."""
    lines = ["flow kills(path: str, appended: str) {"]
    for lane in "abc"[:lanes]:
        for i in range(depth):
            sid, after = f"{lane}{i}", f" after {lane}{i - 1}" if i else ""
            if i % 3 == 0:
                call = f'std.file.append(path: appended, line: "{sid}")'
            elif i % 3 == 1:
                call = f'x.effect(path: path, tag: "{sid}", seconds: {seconds})'
            else:
                call = f'x.effect_again(path: path, tag: "{sid}", seconds: {seconds})'
            lines.append(f"    {sid} = {call}{after}")
    return "\n".join(lines + ["}", ""])


@pytest.mark.slow
def test_twenty_agent_kills_run_no_call_twice_and_every_run_succeeds(cluster):
    flow = cluster.flow("kills.flow", kill_flow())
    live = [cluster.agent("k0", concurrency=3), cluster.agent("k1", concurrency=3), cluster.agent("k2", concurrency=3)]
    rng = random.Random(11)
    runs: list[str] = []  # run n writes effects-n and appended-n
    resumed: Counter = Counter()
    proc, kills = None, 0

    def drive(more: bool) -> subprocess.Popen | None:
        """The orchestrator of the current run: resumed after a pause, or a new run (if `more`) after a success."""
        if proc is not None and proc.poll() is None:
            return proc
        if proc is not None:
            code, out, _ = cluster.finish(proc)
            if code == 3:  # paused: a non-idempotent call was interrupted, and a person resumes the run
                assert "interrupted" in out.lower(), out
                resumed[runs[-1]] += 1
                return cluster.start("resume", runs[-1], *cluster.broker)
            assert code == 0, out
            if not more:
                return None
        n = len(runs)
        files = ("-i", f"path={cluster.folder / f'effects-{n}'}", "-i", f"appended={cluster.folder / f'appended-{n}'}")
        started = cluster.start("run", flow, *files, *cluster.broker)
        runs.append(run_id(started.stdout.readline()))
        return started

    while kills < 20:
        proc = drive(more=True)
        time.sleep(rng.uniform(0.05, 0.8))
        ready = [a for a in live if a.ready_line()]
        if len(ready) < 2:  # one ready agent is left serving; the new ones still start
            continue
        victim = rng.choice(ready)
        victim.kill()  # at a random instant: in a call, between calls, in a report
        live.remove(victim)
        kills += 1
        live.append(cluster.start_agent(f"k{kills + 2}", concurrency=3))
    while proc is not None:  # the last run, to its end
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, _, err = cluster.finish(proc)
            left = [(s["id"], s["state"], s["attempts"], s["agent"]) for s in cluster.show(runs[-1])["steps"]]
            left = [x for x in left if x[1] != "succeeded"]
            alive = [a.name for a in live if a.alive()]
            redis = cluster.redis.summary()
            raise AssertionError(f"run {runs[-1]} stuck 60 s: {left}; agents {alive}; {redis}; {err[-3000:]}") from None
        proc = drive(more=False)

    reruns = 0
    for n, rid in enumerate(runs):
        shown = cluster.show(rid)
        assert shown["state"] == "succeeded", rid
        lost = interrupted(shown)
        assert not lost or resumed[rid], rid  # a person (the test) resumed every interrupted step
        appended = Counter((cluster.folder / f"appended-{n}").read_text().split())
        calls = effect_lines((cluster.folder / f"effects-{n}").read_text().splitlines())
        for s in shown["steps"]:
            sid, attempts = s["id"], s["attempts"]
            assert s["state"] == "succeeded" and s["agent"] is not None, s
            reruns += attempts - 1
            if s["action"].endswith("effect_again"):  # idempotent: re-run, never left for a person
                assert lost[sid] == 0 and calls[(sid, attempts)] >= 1, s
                reruns += sum(calls[(sid, a)] for a in range(1, attempts + 1)) - attempts
                continue
            assert attempts == 1 + lost[sid], s  # a non-idempotent step ran again only once a person resumed it
            if s["action"].endswith("file.append"):
                assert 1 <= appended[sid] <= attempts, (s, appended[sid])  # at most once per attempt
            else:
                assert all(calls[(sid, a)] <= 1 for a in range(1, attempts)) and calls[(sid, attempts)] == 1, s
    assert reruns or sum(resumed.values()), f"no kill of {kills} hit a call in {len(runs)} runs: it proved nothing"


# -- The orchestrator killed, Redis down ------------------------------------------------------------------


@pytest.mark.slow
def test_a_new_owner_collects_the_results_of_fifty_calls_in_flight(cluster):
    body = "\n".join(f'    s{i:02d} = x.effect(path: path, tag: "s{i:02d}", seconds: 5)' for i in range(50))
    flow = cluster.flow("fifty.flow", f"flow fifty(path: str) {{\n{body}\n}}\n")
    cluster.agent("b1", concurrency=25), cluster.agent("b2", concurrency=25)
    proc = cluster.start("run", flow, "-i", f"path={cluster.effects}", *cluster.broker)
    rid = run_id(proc.stdout.readline())
    cluster.wait_for_lines(lambda lines: len(effect_lines(lines)) == 50)
    proc.kill()  # the orchestrator dies with 50 calls running on the agents
    proc.wait()
    assert not [x for x in cluster.lines() if x.startswith("done ")]  # none had ended yet

    done = cluster("resume", rid, *cluster.broker)
    assert done.returncode == 0, done.stdout
    shown = cluster.show(rid)
    assert shown["state"] == "succeeded"
    assert {(s["state"], s["attempts"]) for s in shown["steps"]} == {("succeeded", 1)}  # collected, not sent again
    assert {s["outputs"]["agent"] for s in shown["steps"]} == {"b1", "b2"}
    assert all(s["agent"] == s["outputs"]["agent"] for s in shown["steps"])
    lines = cluster.lines()
    assert effect_lines(lines) == Counter({(f"s{i:02d}", 1): 1 for i in range(50)})  # each call ran once
    assert sorted(x for x in lines if x.startswith("done ")) == [f"done s{i:02d} 1" for i in range(50)]


# A run whose orchestrator died with a call queued for agents, taken over by a process without the broker: an agent
# may still run the call, so a non-idempotent one must not run here too (refused, nothing changed); an idempotent
# one simply runs again here.


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
def test_redis_down_for_five_seconds_loses_nothing(cluster):
    body = "\n".join(
        f'        t{i} = x.{"effect" if i % 2 else "effect_again"}(path: path, tag: "t{i}", seconds: 0.3)'
        for i in range(12)
    )
    flow = cluster.flow("steady.flow", f"flow steady(path: str) {{\n    sequence {{\n{body}\n    }}\n}}\n")
    agents = cluster.agent("r1"), cluster.agent("r2")
    proc = cluster.start("run", flow, "-i", f"path={cluster.effects}", *cluster.broker)
    rid = run_id(proc.stdout.readline())
    cluster.wait_for_lines(lambda lines: len(lines) >= 3)
    cluster.redis.stop()
    time.sleep(5)
    cluster.redis.start()
    code, out, err = cluster.finish(proc)
    assert code == 0, out  # not failed, not paused: it went on once Redis was back
    assert err.count(f"the broker {cluster.redis.url} does not answer") == 1, err  # said once
    shown = cluster.show(rid)
    assert [s["state"] for s in shown["steps"]] == ["succeeded"] * 12
    calls = effect_lines(cluster.lines())
    for s in shown["steps"]:
        started = sum(n for (tag, _), n in calls.items() if tag == s["id"])
        if s["action"].endswith("effect_again"):
            assert started >= 1, s
        else:
            assert started == 1 and s["attempts"] == 1, (s, calls)  # not lost, not run twice
    assert [a.name for a in agents if not a.alive()] == [], [a.errors() for a in agents]  # they came back too


# -- Cancel, progress and logs, polling ----------------------------------------------------------------------


def held_run(cluster: Cluster, steps: int) -> tuple[subprocess.Popen, str]:
    """A `weft run` of `steps` parallel x.hold steps (h0, h1, ...) that hold while the gate file exists; its id."""
    gate = cluster.folder / "gate"
    gate.write_text("")
    body = "\n".join(f'    h{i} = x.hold(path: path, tag: "h{i}", gate: gate)' for i in range(steps))
    flow = cluster.flow("held.flow", f"flow held(path: str, gate: str) {{\n{body}\n}}\n")
    proc = cluster.start("run", flow, "-i", f"path={cluster.effects}", "-i", f"gate={gate}", *cluster.broker)
    return proc, run_id(proc.stdout.readline())


@pytest.mark.slow
def test_cancel_revokes_queued_calls_and_stops_the_running_one(cluster):
    agent = cluster.agent("c1", concurrency=1)
    proc, rid = held_run(cluster, 4)
    (started,) = cluster.wait_for_lines(lambda lines: len(lines) >= 1)
    time.sleep(1.0)  # the other three wait in the queue: the agent's one slot is taken
    assert cluster.lines() == [started]
    cluster("cancel", rid, code=0)
    code, out, _ = cluster.finish(proc)
    assert code == 1 and f"run {rid} cancelled" in out, out
    tag = started.split()[0]
    cluster.wait_for_lines(lambda lines: f"cancelled {tag}" in lines, timeout=10)  # it saw ctx.cancelled
    time.sleep(2.0)  # a queued call that was not revoked would have started by now
    assert cluster.lines() == [started, f"cancelled {tag}"]
    shown = cluster.show(rid)
    assert shown["state"] == "cancelled"
    assert {s["id"]: s["state"] for s in shown["steps"] if s["id"] != tag} == dict.fromkeys(
        sorted({"h0", "h1", "h2", "h3"} - {tag}), "cancelled"
    )
    assert agent.stop() == 0  # SIGTERM: a clean stop


@pytest.mark.slow
def test_a_call_cancelled_while_queued_never_starts_on_an_agent_that_comes_later(cluster):
    """The revoke reached no agent (none was up): the one that takes the messages later finds the cancel keys."""
    proc, rid = held_run(cluster, 3)
    import redis as client  # the package, not the fixture

    queue = client.Redis(port=cluster.redis.port, socket_timeout=2)
    end = time.monotonic() + 10
    while queue.llen("weft") < 3:  # sent: the three wait in the queue
        assert time.monotonic() < end, cluster.redis.summary()
        time.sleep(0.02)
    cluster("cancel", rid, code=0)
    code, out, _ = cluster.finish(proc)
    assert code == 1 and f"run {rid} cancelled" in out, out
    agent = cluster.agent("late", concurrency=1)
    time.sleep(2.0)  # it has taken the three queued messages by now
    assert cluster.lines() == []
    assert {s["state"] for s in cluster.show(rid)["steps"]} == {"cancelled"}
    assert agent.stop() == 0


@pytest.mark.slow
def test_the_orchestrator_enforces_a_remote_steps_timeout(cluster):
    flow = cluster.flow(
        "timed.flow", 'flow timed(path: str) {\n    t = x.effect(path: path, tag: "t", seconds: 4) timeout 1s\n}\n'
    )
    cluster.agent("t1")
    rid, done = cluster.run(flow, "-i", f"path={cluster.effects}", *cluster.broker)
    assert done.returncode == 3 and "step t failed: Timeout: timed out after 1s" in done.stdout, done.stdout
    t = steps(cluster.show(rid))["t"]
    assert t["state"] == "failed" and t["agent"] == "t1"
    assert t["ended"] - t["started"] < 3.0  # the step failed at its deadline, not when the 4 s call ended


LOGGED = """\
flow logged(path: str, gate: str) {
    p = x.hold(path: path, tag: "p", gate: gate)          # logs, reports 0.5, holds
    q = x.effect(path: path, tag: "q", seconds: 1)        # its commit records the run's progress: 0.75
}
"""


@pytest.mark.slow
def test_a_remote_steps_log_lines_and_progress_reach_the_run(cluster):
    gate = cluster.folder / "gate"
    gate.write_text("")
    flow = cluster.flow("logged.flow", LOGGED)
    cluster.agent("l1", concurrency=2)
    rid, _ = cluster.run(flow, "-i", f"path={cluster.effects}", "-i", f"gate={gate}", "--detach", code=0)
    env = {**cluster.env, "WEFT_BROKER": cluster.redis.url}  # `weft worker` finds the broker in the environment
    worker = subprocess.Popen(
        cluster.command("worker"),
        env=env,
        cwd=cluster.folder,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        end = time.monotonic() + 30
        while True:
            shown = cluster.show(rid)
            logged = [e["log"] for e in shown["history"] if e.get("step") == "p" and "log" in e]
            if logged and steps(shown)["q"]["state"] == "succeeded":
                break
            assert time.monotonic() < end, (logged, shown["state"])
            time.sleep(0.1)
        assert logged == ["p half way on l1"]  # said on the agent, in the run's history while the step runs
        assert shown["progress"] == 0.75 and steps(shown)["p"]["state"] == "running"  # q done, p half way
        gate.unlink()
        while (shown := cluster.show(rid))["state"] != "succeeded":
            assert time.monotonic() < end + 30, shown["state"]
            time.sleep(0.1)
    finally:
        worker.send_signal(signal.SIGTERM)
        _, err = worker.communicate(timeout=60)
    assert "Traceback" not in err, err
    assert [e["log"] for e in shown["history"] if "log" in e] == ["p half way on l1", "p done on l1"]
    assert {s["id"]: s["agent"] for s in shown["steps"]} == {"p": "l1", "q": "l1"} and shown["progress"] == 1.0
    text = cluster("show", rid, code=0).stdout
    assert "p | p half way on l1" in text and "p | p done on l1" in text


@pytest.mark.slow
def test_a_polling_actions_start_and_polls_run_on_agents(cluster):
    flow = cluster.flow("polled.flow", "flow polled(path: str) {\n    t = x.remote_task(path: path, polls: 3)\n}\n")
    agents = cluster.agent("p1"), cluster.agent("p2")
    rid, done = cluster.run(flow, "-i", f"path={cluster.effects}", *cluster.broker)
    assert done.returncode == 0, done.stdout
    lines = cluster.lines()
    assert [x.split()[0] for x in lines] == ["start", "poll", "poll", "poll"], lines
    assert {x.split()[1] for x in lines} <= {"p1", "p2"}  # the start and every poll ran on an agent
    shown = cluster.show(rid)
    t = steps(shown)["t"]
    assert t["state"] == "succeeded" and t["outputs"]["agent"] == lines[-1].split()[1]
    assert t["agent"] in {x.split()[1] for x in lines}  # one of the agents that started or polled its task
    assert sum(e.get("step") == "t" and e.get("state") == "suspended" for e in shown["history"]) >= 1
    assert agents[0].stop(signal.SIGINT) == 0 and agents[1].stop() == 0  # SIGINT and SIGTERM: clean stops
