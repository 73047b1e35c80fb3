"""The public Python client (weft.client): embedded in a program, its typed results and errors, and the
CLI commands that print what it returns (`weft show RUN STEP`, repeated `list` filters, `--version`)."""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
import textwrap
from datetime import timedelta
from pathlib import Path

import pytest

from weft.client import Client, Conflict, FlowRequired, InvalidInput, NotFound, Page, Run, StepDetail
from weft.errors import WeftError

ROOT = Path(__file__).resolve().parent.parent
CLI_FLOW = str(ROOT / "tests" / "runtime_support" / "cli.flow")
HOST = str(ROOT / "examples" / "foreman" / "host.flow")
BULK = str(ROOT / "examples" / "bulk" / "hosts.flow")

EMBEDDED = """
import json, os, sys
from weft.client import Client

host = sys.argv[1]
out = {}
with Client(os.environ["APP_STORE"]) as client:
    rid = client.start(host, inputs={"name": "web1", "mac": "52:54:00:00:00:01", "subnet": "10.0.0.0/24"}, user="app")
    run = client.wait(rid, timeout=60)
    out["first"] = [run.state, run.result, [s.state for s in run.steps]]

    os.environ["WEFT_PROXY_FAIL"] = "dns_create:PTR"  # the proxy refuses PTR records while this is set
    rid = client.start(host, inputs={"name": "web2", "mac": "52:54:00:00:00:02", "subnet": "10.0.0.0/24"})
    run = client.wait(rid, timeout=60)
    out["paused"] = [run.state, sorted(run.actions), [s.id for s in run.failed_steps], run.step("ptr").error.type]
    del os.environ["WEFT_PROXY_FAIL"]
    client.resume(rid)
    run = client.wait(rid, timeout=60)
    out["resumed"] = [run.state, run.result, run.step("ptr").attempts]
    out["listed"] = [r.label for r in client.runs(flow="create_host", sort="-started").runs]
print(json.dumps(out))
"""


def test_a_plain_python_program_starts_waits_for_and_resumes_the_foreman_example(tmp_path):
    (tmp_path / "app.py").write_text(EMBEDDED)
    env = {k: v for k, v in os.environ.items() if not k.startswith("WEFT_")}
    env.update(APP_STORE=str(tmp_path / "store"), WEFT_PROXY_STATE=str(tmp_path / "proxy.json"), WEFT_PROXY_LATENCY="0")
    done = subprocess.run(
        [sys.executable, "app.py", HOST], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["first"] == [
        "succeeded",
        {"ip": "10.0.0.10", "fqdn": "web1.example.com"},
        ["succeeded"] * 4,
    ]
    assert out["paused"] == ["paused", ["cancel", "rerun", "resume", "rollback", "skip"], ["ptr"], "ActionFailed"]
    assert out["resumed"] == ["succeeded", {"ip": "10.0.0.11", "fqdn": "web2.example.com"}, 2]
    assert out["listed"] == ["Create host web1", "Create host web2"]  # "-started": oldest first
    assert not (tmp_path / ".weft").exists()  # the store named, not the default


# -- in this process -------------------------------------------------------------------------------


@pytest.fixture
def client(tmp_path):
    with Client(tmp_path / "store") as c:
        yield c


def _gate(client: Client, tmp_path: Path, name: str = "m") -> tuple[str, Path]:
    """A run of `gate` paused on its failing middle step."""
    marker = tmp_path / name
    marker.write_text("x")
    rid = client.start(CLI_FLOW, "gate", {"marker": str(marker)})
    assert client.wait(rid, timeout=30).state == "paused"
    return rid, marker


def test_runs_read_back_as_typed_objects(client, tmp_path):
    rid = client.start(CLI_FLOW, "basic", texts=["n=1"], user="ann")
    run = client.wait(rid, timeout=30)
    assert isinstance(run, Run) and run.state == "succeeded" and run.result == {"total": 12}
    assert (run.label, run.tags, run.user, run.inputs) == ("basic hi", ("test", "basic"), "ann", {"n": 1, "word": "hi"})
    assert [(s.id, s.state, s.attempts, s.outputs) for s in run.steps] == [
        ("a", "succeeded", 1, {"total": 2}),
        ("b", "succeeded", 1, {"total": 12}),
    ]
    assert run.actions == ("rerun", "rollback") and run.owner is None and run.outcome == "succeeded"
    assert [e.seq for e in run.history] == list(range(1, len(run.history) + 1))
    assert client.events(rid, after=2, limit=2) == run.history[2:4]
    with pytest.raises(AttributeError):
        run.state = "failed"  # frozen
    b = client.step(rid[:12], "b")
    assert isinstance(b, StepDetail) and b.deps == ("a",) and b.step.inputs == {"a": 2, "b": 10}
    assert [e.state for e in b.history] == ["running", "succeeded"]


def test_a_paused_run_is_resumed_skipped_or_signalled_through_the_client(client, tmp_path):
    rid, _ = _gate(client, tmp_path)
    run = client.get(rid)
    assert run.actions == ("cancel", "rerun", "resume", "rollback", "skip")
    assert run.step("gate").error.message == "m is present"
    run = client.skip(rid, "gate", {"value": "by hand"})
    assert client.wait(rid, timeout=30).result == {"value": "one-by hand"}

    rid = client.start(CLI_FLOW, "approval")
    run = client.wait(rid, timeout=1)
    assert run.state == "running" and run.waiting_for == ("approval",) and "signal" in run.actions
    client.signal(rid, "approval", ok=True, who="ann")
    run = client.wait(rid, timeout=30)
    assert run.state == "succeeded" and run.step("log").outputs == {"value": "ann"}


def test_errors_are_typed_and_name_what_is_wrong(client, tmp_path):
    with pytest.raises(NotFound, match="no such file"):
        client.start(str(tmp_path / "none.flow"))
    with pytest.raises(NotFound, match="no flow named 'nope'"):
        client.start(CLI_FLOW, "nope")
    with pytest.raises(
        FlowRequired, match=r"defines 7 flows \(basic, gate, approval, slow, undoable, bulk, two_gates\)"
    ) as e:
        client.start(CLI_FLOW)
    assert e.value.flows[0] == "basic" and e.value.field == "flow"

    with pytest.raises(InvalidInput) as e:
        client.start(CLI_FLOW, "basic", {"n": "x"})
    assert e.value.field == "n" and "input n: expected int" in str(e.value) and e.value.status == 422
    with pytest.raises(InvalidInput) as e:
        client.start(BULK, inputs={"subnet": "10.0.0.0/24", "hosts": [{"name": "a", "mac": "m"}, {"name": "b"}]})
    assert e.value.field == "hosts[1]" and "missing field 'mac'" in str(e.value)
    with pytest.raises(InvalidInput, match="missing input 'n'") as e:
        client.start(CLI_FLOW, "basic")
    assert e.value.field == "n"
    assert not (tmp_path / "store").exists()  # nothing was stored

    rid, _ = _gate(client, tmp_path)
    with pytest.raises(NotFound, match="no run '01ZZZZ'"):
        client.get("01ZZZZ")
    with pytest.raises(NotFound, match="has no step 'gat'.*did you mean 'gate'"):
        client.step(rid, "gat")
    with pytest.raises(InvalidInput) as e:
        client.skip(rid, "gate", {"valu": "x"})
    assert e.value.field == "valu" and "did you mean 'value'" in str(e.value)
    with pytest.raises(InvalidInput, match="step gate needs output 'value'") as e:
        client.skip(rid, "gate", {})
    assert e.value.field == "value"
    with pytest.raises(Conflict, match="step first is succeeded, not failed") as e:
        client.skip(rid, "first")
    assert e.value.state == "paused" and e.value.status == 409

    done = client.start(CLI_FLOW, "basic", {"n": 2})
    client.wait(done, timeout=30)
    with pytest.raises(Conflict, match="already succeeded; it cannot be resumed") as e:
        client.resume(done)
    assert e.value.state == "succeeded"
    assert all(isinstance(x, WeftError) and x.exit_code == 2 for x in (NotFound("x"), Conflict("x"), InvalidInput("x")))

    waiting = client.start(CLI_FLOW, "approval")
    client.wait(waiting, timeout=0.5)
    with pytest.raises(InvalidInput) as e:
        client.signal(waiting, "approval", ok="yes", who="ann")
    assert e.value.field == "ok"
    with pytest.raises(InvalidInput, match="needs field 'who'"):
        client.signal(waiting, "approval", ok=True)
    with pytest.raises(Conflict, match="no step waiting for signal 'nope'"):
        client.signal(waiting, "nope")
    client.cancel(waiting)
    assert client.wait(waiting, timeout=30).state == "cancelled"


def test_filters_with_several_values_mean_any_and_pages_count_every_match(client, tmp_path):
    done = [client.start(CLI_FLOW, "basic", {"n": n}, user=f"u{n % 2}") for n in range(5)]
    for rid in done:
        client.wait(rid, timeout=30)
    paused = [_gate(client, tmp_path, f"m{i}")[0] for i in range(2)]

    page = client.runs(state=["paused", "succeeded"], limit=3)
    assert isinstance(page, Page) and page.total == 7 and page.more and len(page.runs) == 3
    assert [r.id for r in page.runs] == (done + paused)[::-1][:3]  # newest first, across both states
    rest = client.runs(state=["paused", "succeeded"], limit=3, offset=6)
    assert [r.id for r in rest.runs] == [done[0]] and not rest.more and rest.total == 7
    assert client.runs(state="paused").total == 2
    assert {r.id for r in client.runs(user=["u0", "nobody"]).runs} == {done[0], done[2], done[4]}
    assert client.runs(flow=["gate", "basic"], state=["paused"], sort="started", reverse=True).runs[0].id == paused[0]
    assert client.runs(tag=["test", "basic"]).total == 5  # one run with both tags counts once
    with pytest.raises(InvalidInput, match="no run state 'lost'") as e:
        client.runs(state=["paused", "lost"])
    assert e.value.field == "state"
    with pytest.raises(InvalidInput, match="limit must be from 1 to 1,000,000, not 0") as e:
        client.runs(limit=0)
    assert e.value.field == "limit"
    with pytest.raises(InvalidInput, match="no filter 'colour'"):
        client.runs(colour="red")
    assert client.locks() == ()


# -- the CLI printing it ------------------------------------------------------------------------------


def weft(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, WEFT_STORE=str(tmp_path / "store"))
    done = subprocess.run(
        [sys.executable, "-m", "weft.cli.main", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=60,
    )
    assert "Traceback (most recent call last)" not in done.stderr, done.stderr
    return done


BOOM = """
from weft import action

@action
def boom(key: str) -> None:
    {}[key]
"""


def test_show_run_step_prints_inputs_outputs_and_the_traceback_and_show_run_points_at_it(tmp_path):
    (tmp_path / "boom_actions.py").write_text(BOOM)
    (tmp_path / "boom.flow").write_text(
        textwrap.dedent(
            """
            use boom_actions as b
            flow boom(key: str) {
                first = std.log(message: "about to fail")
                bad = b.boom(key: key) after first
            }
            """
        )
    )
    done = weft(tmp_path, "run", "boom.flow", "-i", "key=missing")
    assert done.returncode == 3
    rid = done.stdout.split()[1]
    assert f"  weft show {rid} bad  its inputs, outputs and traceback" in done.stdout
    shown = weft(tmp_path, "show", rid).stdout
    assert re.search(rf"^  bad: KeyError: 'missing'   weft show {rid} bad$", shown, re.MULTILINE), shown
    step = weft(tmp_path, "show", rid[:10], "bad")
    assert step.returncode == 0
    lines = step.stdout.splitlines()
    assert "inputs" in lines and '  key = "missing"' in lines and "outputs  -" in lines
    assert "error    KeyError: 'missing'" in lines and "traceback" in lines
    assert any(line.strip() == "Traceback (most recent call last):" for line in lines)
    assert any("{}[key]" in line for line in lines)
    data = json.loads(weft(tmp_path, "show", rid, "bad", "--json").stdout)
    assert data["step"]["error"]["type"] == "KeyError" and "{}[key]" in data["step"]["error"]["traceback"]
    assert data["step"]["inputs"] == {"key": "missing"} and data["run_id"] == rid
    missing = weft(tmp_path, "show", rid, "bda")
    assert missing.returncode == 2 and "did you mean 'bad'" in missing.stderr


def test_run_of_a_file_with_several_flows_asks_which(tmp_path):
    done = weft(tmp_path, "run", CLI_FLOW)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr == (
        f"weft: error: {CLI_FLOW} defines 7 flows (basic, gate, approval, slow, undoable, bulk, two_gates); "
        "name the one to run with --flow NAME\n"
    )
    assert not (tmp_path / "store").exists()


def test_repeated_list_filters_combine_and_version_prints(tmp_path):
    (tmp_path / "m").write_text("x")
    ok = weft(tmp_path, "run", CLI_FLOW, "--flow", "basic", "-i", "n=1").stdout.split()[1]
    paused = weft(tmp_path, "run", CLI_FLOW, "--flow", "gate", "-i", f"marker={tmp_path / 'm'}").stdout.split()[1]
    listed = json.loads(weft(tmp_path, "list", "--state", "paused", "--state", "succeeded", "--json").stdout)
    assert [r["id"] for r in listed] == [paused, ok]
    assert [r["id"] for r in json.loads(weft(tmp_path, "list", "--state", "paused", "--json").stdout)] == [paused]
    version = weft(tmp_path, "--version")
    assert version.returncode == 0 and re.fullmatch(r"weft \d+\.\d+\.\d+\S*\n", version.stdout)


def test_a_compiled_plan_starts_runs_locks_are_listed_and_old_runs_pruned(client, tmp_path, monkeypatch):
    rid = client.start_plan(client.compile(CLI_FLOW, "basic"), {"n": 3})
    assert client.wait(rid, timeout=30).result == {"total": 14}

    monkeypatch.setenv("WEFT_PROXY_STATE", str(tmp_path / "proxy.json"))
    monkeypatch.setenv("WEFT_PROXY_LATENCY", "0")
    monkeypatch.setenv("WEFT_PROXY_FAIL", "dns_create:PTR")
    inputs = {"name": "db9", "mac": "52:54:00:00:00:09", "subnet": "10.0.0.0/24"}
    host = client.start(HOST, inputs=inputs)
    assert client.wait(host, timeout=60).state == "paused"
    assert [(lock.name, lock.run.id, lock.run.state) for lock in client.locks()] == [("host:db9", host, "paused")]
    with pytest.raises(Conflict, match=f"lock 'host:db9' is held by run {host}"):
        client.start(HOST, inputs=inputs)
    assert client.cancel(host).run.state == "cancelled" and client.locks() == ()

    pruned = client.prune(timedelta(0))
    assert (pruned.removed, pruned.sub_runs, pruned.kept) == (2, 0, 0)
    assert client.runs().total == 0
    with pytest.raises(InvalidInput, match="prune removes ended runs only"):
        client.prune("1d", state="paused")


def test_the_runtime_imports_neither_the_cli_nor_the_client():
    found = []
    for path in (ROOT / "weft" / "runtime").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.module:
                names.append(node.module)
            found += [f"{path.relative_to(ROOT)}: {n}" for n in names if n.startswith(("weft.cli", "weft.client"))]
    assert found == []


def test_drive_takes_up_a_held_run_in_the_calling_thread_and_reports_every_commit(client, tmp_path):
    rid = client.start(CLI_FLOW, "basic", {"n": 4}, hold=True)
    assert client.get(rid).state == "pending"
    seen = []
    run = client.drive(rid, observer=seen.append)
    assert run.state == "succeeded" and run.result == {"total": 15}
    events = [e for p in seen for e in p.events]
    assert [e.state for e in events if e.step is None][-1] == "succeeded"
    assert seen[-1].done == 1.0 and seen[-1].current()[2] == 1.0
    paused, _ = _gate(client, tmp_path)
    assert client.drive(paused).state == "paused"  # nothing to drive: it is let go as it was
    assert client.get(paused).owner is None
