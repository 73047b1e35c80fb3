"""Big runs stay small: the steps of a Plan share the values they have in common (weft.plan.shared), in the
plan cache, in the LMDB store and in memory, and nothing a run does writes into its Plan.

Through the CLI (a plan cache of the test's own: the first `weft run` compiles, the second reads the shared Plan
from the cache) and the Client on LMDB stores in temp folders."""

from __future__ import annotations

import copy
import textwrap

import msgpack

from weft.client import Client
from weft.plan.shared import GROUP, pack_plan, pack_steps, unpack_plan, unpack_steps

STEPS = GROUP * 2 + 44  # three groups (and three chunks of the stored Plan)

ACTIONS = """
from typing import TypedDict

from weft import action, ActionFailed, Context


class Grown(TypedDict):
    n: int


@action(idempotent=True)
def grow(items: list[int]) -> Grown:
    items.append(len(items))  # action code may change what it is given: no other step may see it
    return {"n": len(items)}


@action(idempotent=True)
def count(items: list[int]) -> Grown:
    return {"n": len(items) + 1}


@action
def flaky(ctx: Context) -> Grown:
    if ctx.attempt == 1:
        raise ActionFailed("first attempt")
    return {"n": ctx.attempt}


@action
def boom() -> None:
    raise ActionFailed("no luck")


@action
def unmake(n: int) -> None:
    return None
"""


def exact(value) -> bytes:
    return msgpack.packb(value, use_bin_type=True)


def flow(weft, action: str = "grow", failing: bool = False) -> str:
    lines = [f"    s{i} = a.{action}(items: [1, 2]) undo a.unmake(n: {i})" for i in range(STEPS)]
    lines += [
        "    f = a.flaky() retry 1",
        "    w = std.echo(value: s0.n) when s1.n > 2",
        "    never = std.echo(value: 1.0) when s1.n > 3",
        "    one = std.echo(value: 1)",
        "    yes = std.echo(value: true)",
    ]
    if failing:
        lines.append(f"    broken = a.boom() after s{STEPS - 1}")
    (weft.folder / "bigmem_acts.py").write_text(textwrap.dedent(ACTIONS))
    (weft.folder / "big.flow").write_text("use bigmem_acts as a\n\nflow big() {\n" + "\n".join(lines) + "\n}\n")
    weft.env.update(XDG_CACHE_HOME=str(weft.folder / "cache"), WEFT_PLAN_CACHE="debug")
    return str(weft.folder / "big.flow")


def outcome(client: Client, run_id: str) -> list[tuple]:
    run = client.get(run_id, steps=None)
    return [(s.id, s.state, s.attempts, s.outputs, s.inputs) for s in run.steps]


def test_a_run_of_the_cached_shared_plan_is_the_run_of_the_compiled_one(weft):
    """Compiled without the cache (its steps share nothing), then with it: a miss and a hit (both shared)."""
    path = flow(weft)
    weft.env["WEFT_PLAN_CACHE"] = "off"
    compiled, _ = weft.run(path, code=0)
    weft.env["WEFT_PLAN_CACHE"] = "debug"
    (missed, done), (hit, again) = (weft.run(path, code=0) for _ in range(2))
    assert "plan cache: miss" in done.stderr and "plan cache: hit" in again.stderr
    with Client(weft.store) as client:
        plan = exact(client.diagram(compiled).plan)
        for run_id in (missed, hit):  # the same Plan, to the type of each value, and the same run
            assert exact(client.diagram(run_id).plan) == plan
            assert outcome(client, run_id) == outcome(client, compiled)
        steps = {s[0]: s for s in outcome(client, hit)}
    assert all(steps[f"s{i}"][3] == {"n": 3} for i in range(STEPS))  # each step grew a list of its own
    assert steps["f"][1:3] == ("succeeded", 2) and steps["w"][1] == "succeeded" and steps["never"][1] == "skipped"
    assert [steps[s][3] for s in ("one", "yes")] == [{"value": 1}, {"value": True}]
    assert type(steps["one"][3]["value"]) is int


def test_nothing_a_run_does_writes_into_its_plan(weft):
    """A shared Plan driven to a pause, resumed, rolled back: the Plan given and the one stored are unchanged.
    (An action is given copies of its list and record inputs: test_actions.py holds it to that.)"""
    path = flow(weft, "count", failing=True)
    with Client(weft.store) as client:
        plan = unpack_plan(pack_plan(client.compile(path)))  # as the plan cache gives it
        before = exact(plan)
        run_id = client.start_plan(plan, hold=True)
        assert client.drive(run_id).state == "paused"
        client.resume(run_id)
        assert client.wait(run_id).state == "paused"
        client.rollback(run_id, force=True)
        run = client.wait(run_id)
        assert run.rolled_back and exact(plan) == before
        assert exact(client.diagram(run_id).plan) == before
        assert {s.state for s in run.steps if s.id.startswith("s")} == {"undone"}


def test_packed_steps_read_back_exactly_and_share_only_what_is_the_same():
    def step(i: int, **fields) -> dict:
        return {
            "id": f"s{i}",
            "action": {"module": "m", "name": "echo"},
            "inputs": {"value": ["lit", [1, 2]]},
            "weight": 1.0,
            "backoff": 0.0,
            "span": {"file": "f.flow", "line": i},
            "data": [1, {"a": 0.0}],
            **fields,
        }

    steps = [step(i) for i in range(GROUP + 10)]
    steps[3]["weight"] = 1  # equal to 1.0, and not the same
    steps[4]["weight"] = True
    steps[5]["backoff"] = -0.0
    steps[6]["action"] = {"name": "echo", "module": "m"}  # its keys in another order
    steps[7]["inputs"] = {"value": ["lit", [1.0, 2]]}
    steps[8] = {"extra": None, **step(8)}
    steps[10]["data"] = [1.0, {"a": 0.0}]  # equal to the base's, and not the same: nor the next two
    steps[11]["data"] = [True, {"a": 0.0}]
    steps[12]["data"] = [1, {"a": -0.0}]
    original = copy.deepcopy(steps)
    for equal in (True, False):
        packed = pack_steps(steps, equal=equal)
        assert exact(steps) == exact(original)  # packing changes nothing it is given
        back = unpack_steps(msgpack.unpackb(exact(packed), raw=False))
        assert exact(back) == exact(original)
    back = unpack_steps(msgpack.unpackb(exact(pack_steps(steps, equal=True)), raw=False))
    assert back[1]["action"] is back[2]["action"] is back[9]["action"] and back[1]["span"] is not back[2]["span"]
    assert back[1]["data"] is back[9]["data"] is back[13]["data"]
    assert back[1]["inputs"] == back[2]["inputs"] and back[1]["inputs"] is not back[2]["inputs"]
    assert back[GROUP + 1]["action"] is back[GROUP + 2]["action"]
    again = unpack_steps(pack_steps(back))  # a shared Plan packs as shared without comparing values
    assert again[1]["action"] is back[1]["action"] and exact(again) == exact(original)
