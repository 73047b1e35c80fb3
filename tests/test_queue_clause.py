"""Routing: a step's `queue` clause and an action's `@action(queue=...)` default, from the compiler to `weft show`.

The queue names where an executor sends a step's action call (a Celery queue);
run locally, the queue is still evaluated and recorded, so these tests need no broker.
"""

from __future__ import annotations

import json
from typing import Any

import msgpack
import pytest
from runtime_support.plans import param, plan, ref, step

from weft import Pending, action
from weft.compiler import compile_paths
from weft.runtime.core.events import Launch, PollStarted, Rollback, Succeeded
from weft.runtime.core.machine import Machine
from weft.runtime.core.states import new_run, new_step
from weft.runtime.executors.port import Task
from weft.sdk.actions import ActionDefinitionError, definition

ACTIONS = """
from typing import Any, TypedDict
from weft import action


class Lease(TypedDict):
    ip: str


@action(queue="proxy")
def reserve(subnet: str) -> Lease:
    return {"ip": subnet + ".7"}


@action
def look(value: Any) -> dict[str, Any]:
    return {"n": 5}
"""

FLOW = """use routed as r

flow host(subnet: str) {
    lease = r.reserve(subnet: subnet)
    near = r.reserve(subnet: subnet) queue "proxy-${subnet}"
    dns = std.echo(value: lease.ip) queue "dns-${lease.ip}"
    plain = std.echo(value: subnet)
    far = std.echo(value: 1) queue lease.ip
}
"""


def compiled(source: str, tmp_path):
    path = str(tmp_path / "q.flow")
    return compile_paths([path], sources={path: source})


def codes(comp) -> list[tuple[str, int, int, str]]:
    return [(d.code, d.span.line, d.span.col, d.message) for d in comp.diagnostics]


# -- the compiler -------------------------------------------------------------------------------


def test_a_queue_that_is_not_a_string_or_reads_an_unknown_name_is_reported_where_it_is(weft):
    (weft.folder / "bad.flow").write_text(
        "flow f(n: int) {\n"
        "    a = std.echo(value: n) queue n\n"
        "    b = std.echo(value: a.value) queue nowhere\n"
        '    c = std.echo(value: 1) queue ["dc1"]\n'
        "}\n"
    )
    out = weft("check", "bad.flow", code=1).stdout
    assert "bad.flow:2:34: error[E107]: queue must be str, but this is int" in out
    assert "bad.flow:3:40: error[E101]: 'nowhere' is not defined" in out
    assert "bad.flow:4:34: error[E107]: queue must be str, but this is list[str]" in out


def test_a_queue_on_a_step_that_calls_no_action_itself_is_E119(tmp_path):
    comp = compiled(
        "flow inner(x: str) {\n"
        "    std.echo(value: x)\n"
        "}\n"
        "flow outer(xs: list[str]) {\n"
        '    w = wait go(ok: bool) queue "a"\n'
        '    e = each x in xs { std.echo(value: x) queue "dc-${x}" } queue "b"\n'
        '    c = inner(x: "s") queue "c"\n'
        "}\n",
        tmp_path,
    )
    assert codes(comp) == [
        ("E119", 5, 27, "`queue` applies to a step that calls an action, not to a `wait`"),
        ("E119", 6, 61, "`queue` applies to a step that calls an action, not to an `each`"),
        ("E119", 7, 23, "`queue` applies to a step that calls an action, not to a call of flow 'inner'"),
    ]
    assert [d.hint for d in comp.diagnostics][1:] == ["give the `queue` to the action steps it runs"] * 2


def test_queue_stays_a_name_where_no_option_can_be_and_a_step_named_so_below_a_step_is_told_why(tmp_path):
    comp = compiled(
        "flow f(queue: str) -> (queue: str) {\n"
        "    q = std.echo(value: (queue: queue))\n"
        "    return (queue: q.value.queue)\n"
        "}\n"
        "flow g() {\n"
        "    queue = std.echo(value: 1)\n"
        "    std.echo(value: queue.value)\n"
        "    queue = std.echo(value: 2)\n"
        "}\n",
        tmp_path,
    )
    assert codes(comp) == [("E001", 8, 11, "unexpected '='; expected an expression")]
    assert (
        comp.diagnostics[0].hint == "after a step, `queue` begins an option of that step: give this step another name"
    )


def test_a_queue_given_twice_is_E119(tmp_path):
    comp = compiled('flow f() {\n    std.echo(value: 1) queue "a" queue "b"\n}\n', tmp_path)
    assert codes(comp) == [("E119", 2, 34, "'queue' is given twice for this step")]


def test_a_queue_reading_a_step_that_may_be_skipped_needs_a_default(tmp_path):
    comp = compiled(
        "flow f(flag: bool) {\n"
        '    n = std.echo(value: "dc1") when flag\n'
        "    std.echo(value: 1) queue n.value\n"
        '    std.echo(value: 2) queue n.value ?? "main"\n'
        "    std.echo(value: 3) queue n.value when flag\n"
        "}\n",
        tmp_path,
    )
    assert codes(comp) == [
        (
            "E126",
            3,
            30,
            "step 'n' is skipped when its `when` is false, and then n.value is absent: "
            "n.value -> the queue of step 'echo'",
        )
    ]


def test_a_queue_reading_a_step_waits_for_it_and_an_inlined_flow_gets_its_callers_arguments(tmp_path):
    comp = compiled(
        "flow site(dc: str) {\n"
        '    std.echo(value: 1) queue "proxy-${dc}"\n'
        "}\n"
        "flow main(region: str) {\n"
        "    pick = std.echo(value: region)\n"
        "    s = site(dc: pick.value)\n"
        '    std.echo(value: 2) queue "fixed"\n'
        "}\n",
        tmp_path,
    )
    assert comp.diagnostics == []
    steps = {s["id"]: s for s in comp.plans["main"]["steps"]}
    inlined = steps["s/echo"]
    assert inlined["queue"] == ["fmt", ["proxy-", ["step", "pick", "value"]]]
    assert inlined["deps"] == ["pick"] and {"from": "pick", "field": "value", "to": "queue"} in inlined["data"]
    assert steps["echo"]["queue"] == ["lit", "fixed"]  # folded
    assert steps["pick"]["queue"] is None


def test_an_action_declares_a_default_queue_and_a_bad_one_is_refused():
    @action(queue="proxy")
    def reserve(subnet: str) -> None: ...

    @action
    def plain() -> None: ...

    @action(queue="repos", poll_every=5)
    class sync:
        def start(self, repo: str) -> str:
            return repo

        def poll(self, handle: str) -> dict[str, Any] | Pending:
            return {}

    assert definition(reserve).queue == "proxy"
    assert definition(sync).queue == "repos" and definition(sync).poll is not None
    assert definition(plain).queue is None
    for bad in ("", 3):
        with pytest.raises(ActionDefinitionError, match="queue must be a non-empty string"):

            @action(queue=bad)
            def broken() -> None: ...


# -- weft plan and weft graph -------------------------------------------------------------------


def test_plan_and_graph_show_the_step_queue_and_the_actions_default_which_a_step_overrides(weft):
    (weft.folder / "routed.py").write_text(ACTIONS)
    (weft.folder / "host.flow").write_text(FLOW)
    steps = {s["id"]: s for s in json.loads(weft("plan", "host.flow", "--json", code=0).stdout)["steps"]}
    assert steps["lease"]["queue"] == ["lit", "proxy"]  # the action's default
    assert steps["near"]["queue"] == ["fmt", ["proxy-", ["param", "subnet"]]]  # the step's clause wins
    assert steps["dns"]["queue"] == ["fmt", ["dns-", ["step", "lease", "ip"]]]
    assert steps["plain"]["queue"] is None
    text = weft("plan", "host.flow", code=0).stdout
    lines = {line.split()[1]: line for line in text.splitlines() if line.startswith(("  * ", "  + "))}
    assert lines["lease"].endswith("[queue proxy]")
    assert lines["near"].endswith("[queue proxy-${subnet}]")
    assert lines["dns"].endswith("[needs lease.ip; queue dns-${lease.ip}]")
    assert "queue" not in lines["plain"]
    assert lines["far"].endswith("[needs lease.ip; queue ${lease.ip}]")
    weft("graph", "host.flow", "-o", "host.dot", code=0)
    dot = (weft.folder / "host.dot").read_text()
    assert "queue: proxy-${subnet}" in dot and "queue: dns-${lease.ip}" in dot and "queue: proxy<" in dot


# -- the runtime --------------------------------------------------------------------------------


def test_show_gives_each_steps_evaluated_queue(weft):
    (weft.folder / "routed.py").write_text(ACTIONS)
    (weft.folder / "host.flow").write_text(FLOW)
    rid, _ = weft.run("host.flow", "-i", "subnet=10.1", code=0)
    shown = weft.show(rid)
    assert {s["id"]: s["queue"] for s in shown["steps"]} == {
        "lease": "proxy",
        "near": "proxy-10.1",
        "dns": "dns-10.1.7",
        "plain": None,
        "far": "10.1.7",
    }
    rows = {line.split()[0]: line.split() for line in weft("show", rid, code=0).stdout.splitlines()[8:14]}
    assert rows["STEP"][6] == "QUEUE"
    assert [rows[s][6] for s in ("lease", "near", "dns", "plain")] == ["proxy", "proxy-10.1", "dns-10.1.7", "-"]
    assert "queue    dns-10.1.7" in weft("show", rid, "dns", code=0).stdout.splitlines()


def test_show_of_a_run_without_queues_has_no_queue_column(weft):
    (weft.folder / "plain.flow").write_text("flow f() {\n    std.echo(value: 1)\n}\n")
    rid, _ = weft.run("plain.flow", code=0)
    assert "QUEUE" not in weft("show", rid, code=0).stdout


def test_a_queue_that_cannot_be_computed_fails_its_step_with_an_error_naming_it(weft):
    (weft.folder / "routed.py").write_text(ACTIONS)
    (weft.folder / "bad.flow").write_text(
        "use routed as r\n"
        "flow f() {\n"
        "    got = r.look(value: 1)\n"
        "    missing = std.echo(value: 1) queue got.where on error skip\n"
        '    number = std.echo(value: 2) queue got["n"]\n'
        "}\n"
    )
    rid, _ = weft.run("bad.flow", code=3)
    shown = weft.show(rid)
    assert shown["state"] == "paused" and shown["error"].startswith("step number failed: ")
    errors = {s["id"]: s["error"] for s in shown["steps"] if s["error"]}
    assert errors["missing"]["type"] == "InputError"
    assert errors["missing"]["message"].startswith("cannot compute the queue of step missing: ")
    assert errors["number"]["message"] == "the queue of step number must be a non-empty string, not int"


def machine(p: dict, inputs: dict | None = None) -> Machine:
    run = new_run("0" * 26, p, inputs or {}, label=None, locks=[], user="test", now=0.0)
    return Machine(p, run, {s["id"]: new_step() for s in p["steps"]}, 0.0)


def test_the_machine_sends_a_steps_polls_and_its_undo_to_the_queue_its_attempt_went_to():
    p = plan(
        "routed",
        [
            step("a", "echo", inputs={"value": param("dc")}, queue=["fmt", ["dc-", param("dc")]], undo=("noop", {})),
            step("b", "noop", queue=["fmt", ["near-", ref("a", "value")]], after=("a",)),
            step("c", "noop"),
        ],
        params=[{"name": "dc", "type": ["str"], "default": None}],
    )
    m = machine(p, {"dc": "1"})
    first = {launch.step: launch for launch in m.launches(0.0, 16)}
    assert (first["a"].queue, first["c"].queue) == ("dc-1", None)
    assert m.steps["a"]["queue"] == "dc-1" and "queue" not in m.steps["c"]
    m.apply(PollStarted("a", 1, {"task": 7}, 1.0, 1.0, 1.0), 0.1)
    (poll,) = m.launches(1.2, 16)
    assert (poll.step, poll.poll["handle"], poll.queue) == ("a", {"task": 7}, "dc-1")
    m.apply(Succeeded("a", 1, {"value": "x"}), 1.3)
    m.apply(Succeeded("c", 1, {}), 1.3)
    (b,) = m.launches(1.4, 16)
    assert b.queue == "near-x"
    m.apply(Succeeded("b", 1, {}), 1.5)
    assert m.launches(1.6, 16) == [] and m.run["state"] == "succeeded"
    m.apply(Rollback(force=True), 2.0)
    undos = {launch.step: launch for launch in m.launches(2.0, 16) if launch.undo}
    assert undos["a"].queue == "dc-1"


def test_a_tasks_queue_comes_from_its_launch_and_round_trips_through_msgpack():
    ref_ = {"module": "m", "name": "a", "idempotent": False, "pure": False}
    assert Task.of("R", Launch("dns", 2, ref_, {"x": 1}, None), []).queue is None
    task = Task.of("R", Launch("dns", 2, ref_, {"x": 1}, None, queue="proxy-dc1"), ["/flows"])
    assert task.queue == "proxy-dc1"
    assert Task.from_data(msgpack.unpackb(msgpack.packb(task.to_data()))) == task
