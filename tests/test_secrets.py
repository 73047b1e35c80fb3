"""`secret str` parameters: marked in the Plan, given to actions as they are, shown as *** everywhere else.

A real `weft run` passes a password with `-i`; an action writes it to a file
(so it got the real value), a step fails for want of a marker file, and
`weft resume` gives the retried step the real value again. Nothing that shows
the run (its output, `show`, `show STEP`, `--json`, `list --json`, `graph`,
the Client's typed results, the history and log lines) holds the password.
"""

from __future__ import annotations

import json
import re

from weft.client import Client
from weft.compiler import compile_paths
from weft.render.graph import to_dot

PASSWORD = "hunter2"

FLOW = r"""
flow create_user(name: str, password: secret str, out: str, marker: str) -> (user: str) {
    meta label "create user ${name}"
    let line = "${name}:${password}"
    save = std.exec(argv: ["sh", "-c", "printf '%s\n' \"$1\" >> \"$2\"", "sh", line, out])
    said = std.log(message: "created ${name} with password ${password}")
    each n in [name] {
        std.log(message: "item ${n}: ${password}")
    }
    again = std.exec(
        argv: ["sh", "-c", "test -e \"$3\" || { echo \"no marker for $1\" >&2; exit 1; }; printf '%s\n' \"$1\" >> \"$2\"",
               "sh", password, out, marker]
    ) after save
    return (user: "${name}/${password}")
}
"""


def plan_of(source: str, flow: str) -> dict:
    path = "/virtual/secrets.flow"
    result = compile_paths([path], sources={path: source})
    assert not [d for d in result.diagnostics if d.severity == "error"], result.diagnostics
    return result.plans[flow]


def test_the_plan_marks_secret_params_and_every_input_computed_from_one():
    source = """
flow outer(name: str, password: secret str, secret: str) {
    let greeting = "hello ${name}, ${password}"
    a = std.log(message: greeting)
    b = std.log(message: secret)
    each n in [name] {
        std.log(message: "${n} ${password}")
    }
    c = inner(pw: name, who: name)
}
flow inner(pw: secret str, who: str) {
    std.log(message: "${who} ${pw}")
    std.log(message: who)
}
"""
    plan = plan_of(source, "outer")
    assert [(p["name"], p["type"], p["secret"]) for p in plan["params"]] == [
        ("name", ["str"], False),
        ("password", ["str"], True),
        ("secret", ["str"], False),  # `secret` stays usable as a name
    ]
    steps = {s["id"]: s for s in plan["steps"]}
    assert steps["a"]["secret"] == ["message"]  # through a let and an interpolation
    assert steps["b"]["secret"] == []
    assert steps["each"]["secret"] == ["password"]
    body = steps["each"]["each"]["plan"]
    assert [(p["name"], p["secret"]) for p in body["params"]] == [("n", False), ("password", True)]
    assert [s["secret"] for s in body["steps"]] == [["message"]]
    # an inlined flow's secret parameter stays secret whatever the caller passes it
    assert steps["c/log"]["secret"] == ["message"] and steps["c/log_2"]["secret"] == []
    text = json.dumps(plan)
    assert "hello" in text and '"password"' in text  # folded where it can be, the secret never is


def test_diagrams_say_a_param_is_secret_and_never_draw_its_default():
    plan = plan_of(FLOW, "create_user")
    assert "password: secret str" in to_dot(plan)
    forged = {**plan, "params": [{**p, "default": ["lit", PASSWORD]} if p["secret"] else p for p in plan["params"]]}
    dot = to_dot(forged)  # a Plan from elsewhere: the compiler never writes a secret's default
    assert "password: secret str" in dot and PASSWORD not in dot


def test_a_secret_reaches_its_action_and_nothing_that_shows_the_run(weft, tmp_path):
    flow, out, marker = tmp_path / "user.flow", tmp_path / "out.txt", tmp_path / "marker"
    flow.write_text(FLOW)
    args = ["-i", "name=alice", "-i", f"password={PASSWORD}", "-i", f"out={out}", "-i", f"marker={marker}"]
    first = weft("run", str(flow), *args)
    assert first.returncode == 3, first.stdout + first.stderr  # paused: no marker yet
    rid = re.fullmatch(r"run (\S+)", first.stdout.splitlines()[0]).group(1)
    assert out.read_text() == f"alice:{PASSWORD}\n"  # the action got the real value
    marker.touch()
    second = weft("resume", rid)
    assert second.returncode == 0, second.stdout + second.stderr
    assert out.read_text() == f"alice:{PASSWORD}\n{PASSWORD}\n"  # and again after the pause

    live = first.stdout + first.stderr + second.stdout + second.stderr
    assert "created alice with password ***" in live  # the log line, masked where it is recorded
    assert "no marker for ***" in live and '"user": "alice/***"' in second.stdout

    show = weft("show", rid).stdout
    assert "password=***" in show and "result   user=alice/***" in show
    step = weft("show", rid, "again").stdout
    assert 'argv = "***"' in step
    data = json.loads(weft("show", rid, "--json").stdout)
    assert data["inputs"]["password"] == "***" and data["inputs"]["name"] == "alice"
    shown = {s["id"]: s["inputs"] for s in data["steps"]}
    assert shown["said"] == {"message": "***"}
    assert shown["each"] == {"items": ["alice"], "with": {"password": "***"}}
    listing = weft("list", "--all", "--json").stdout
    child = next(r["id"] for r in json.loads(listing) if r.get("parent"))
    child_show = weft("show", child).stdout
    assert "password=***" in child_show
    graph = weft("graph", rid, "-o", str(tmp_path / "run.dot"))
    assert graph.returncode == 0, graph.stderr
    dot = (tmp_path / "run.dot").read_text()

    for text in (live, show, step, json.dumps(data), listing, child_show, dot):
        assert PASSWORD not in text

    with Client(tmp_path / "store") as client:
        run = client.get(rid)
        assert run.inputs["password"] == "***" and run.result == {"user": "alice/***"}
        assert run.step("save").inputs == {"argv": "***"}
        detail = client.step(rid, "again")
        typed = repr(run) + repr(detail) + repr(client.events(rid)) + repr(client.runs(sub_runs=True))
        assert PASSWORD not in typed and "***" in typed


def test_a_secret_of_the_wrong_type_is_refused_without_echoing_it(weft, tmp_path):
    flow, given = tmp_path / "user.flow", tmp_path / "inputs.json"
    flow.write_text(FLOW)
    given.write_text(json.dumps({"name": "bob", "password": 123456, "out": "o", "marker": "m"}))
    done = weft("run", str(flow), "--inputs", str(given))
    assert done.returncode == 2 and "input password: expected str (a secret)" in done.stderr
    assert "123456" not in done.stdout + done.stderr


def test_a_worker_drives_a_detached_run_without_printing_its_secret(weft, tmp_path):
    flow, out = tmp_path / "user.flow", tmp_path / "out.txt"
    flow.write_text(FLOW)
    args = ["-i", "name=carol", "-i", f"password={PASSWORD}", "-i", f"out={out}", "-i", f"marker={tmp_path / 'no'}"]
    started = weft("run", str(flow), "--detach", *args)
    assert started.returncode == 0, started.stdout + started.stderr
    served = weft("worker", "--once")
    assert served.returncode == 0, served.stdout + served.stderr
    assert out.read_text() == f"carol:{PASSWORD}\n"
    assert "no marker for ***" in served.stdout
    assert PASSWORD not in started.stdout + started.stderr + served.stdout + served.stderr
