"""The Plan: what the compiler hands the runtime (docs/plan-format.md), from the examples."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import msgpack
import pytest

from weft.compiler import compile_paths
from weft.errors import WeftError
from weft.plan.schema import PLAN_VERSION

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
HOST = str(EXAMPLES / "foreman" / "host.flow")
BULK = str(EXAMPLES / "bulk" / "hosts.flow")
AUDIT = EXAMPLES / "extension"
AUDIT_FLOW = str(AUDIT / "weft_audit" / "audit.flow")

PLAN_KEYS = {
    "format",
    "version",
    "flow",
    "file",
    "search_path",
    "params",
    "results",
    "returns",
    "label",
    "tags",
    "locks",
    "on_error",
    "steps",
    "critical_path",
    "extensions",
}
STEP_KEYS = {
    "id",
    "name",
    "phase",
    "kind",
    "action",
    "inputs",
    "outputs",
    "deps",
    "data",
    "after",
    "retry",
    "backoff",
    "timeout",
    "on_error",
    "when",
    "weight",
    "queue",
    "concurrency",
    "undo",
    "each",
    "wait",
    "origin",
    "span",
    "level",
    "remaining",
    "critical",
    "secret",
}


def plan_of(path: str, extensions=(), flow: str | None = None) -> dict:
    result = compile_paths([path], [str(e) for e in extensions])
    assert [d for d in result.diagnostics if d.severity == "error"] == []
    return result.plan(flow)


def by_id(plan: dict) -> dict[str, dict]:
    return {s["id"]: s for s in plan["steps"]}


def ancestors(steps: dict[str, dict], sid: str) -> set[str]:
    found: set[str] = set()
    todo = list(steps[sid]["deps"])
    while todo:
        d = todo.pop()
        if d not in found:
            found.add(d)
            todo += steps[d]["deps"]
    return found


def walk_plans(plan: dict):
    yield plan
    for s in plan["steps"]:
        if s["each"]:
            yield from walk_plans(s["each"]["plan"])


@pytest.fixture(scope="module")
def host() -> dict:
    return plan_of(HOST)


def test_host_plan_header(host):
    assert set(host) == PLAN_KEYS
    assert (host["format"], host["version"], host["flow"]) == ("weft.plan", PLAN_VERSION, "create_host")
    assert host["file"] == HOST
    assert str(ROOT) in host["search_path"]
    assert [(p["name"], p["type"], p["default"]) for p in host["params"]] == [
        ("name", ["str"], None),
        ("mac", ["str"], None),
        ("subnet", ["str"], None),
        ("domain", ["str"], ["lit", "example.com"]),
    ]
    assert host["results"] == [{"name": "ip", "type": ["str"]}, {"name": "fqdn", "type": ["str"]}]
    assert host["returns"] == {
        "ip": ["step", "dhcp", "ip"],
        "fqdn": ["fmt", [["param", "name"], ".", ["param", "domain"]]],
    }
    assert host["label"] == ["fmt", ["Create host ", ["param", "name"]]]
    assert host["tags"] == ["foreman", "host"]
    assert host["locks"] == [["fmt", ["host:", ["param", "name"]]]]
    assert host["on_error"] == "pause"
    assert host["extensions"] == []


def test_host_plan_steps_deps_and_data_edges(host):
    steps = by_id(host)
    assert list(steps) == ["dhcp", "a", "ptr", "log"]
    for s in host["steps"]:
        assert set(s) == STEP_KEYS, s["id"]
    dhcp, a, ptr, log = steps.values()
    assert [s["deps"] for s in (dhcp, a, ptr)] == [[], ["dhcp"], ["dhcp"]]
    # dhcp.ip -> value: the A record waits for the lease and reads its address.
    assert a["data"] == [{"from": "dhcp", "field": "ip", "to": "value"}]
    assert ptr["data"] == [{"from": "dhcp", "field": "ip", "to": "name"}]
    assert a["inputs"] == {
        "name": ["fmt", [["param", "name"], ".", ["param", "domain"]]],
        "type": ["lit", "A"],
        "value": ["step", "dhcp", "ip"],
    }
    assert all(s["after"] == [] for s in steps.values())
    assert dhcp["action"] == {
        "module": "examples.foreman.proxy",
        "name": "dhcp_reserve",
        "idempotent": True,
        "pure": False,
    }
    assert (dhcp["retry"], dhcp["backoff"]) == (3, 2.0)
    assert dhcp["outputs"] == ["rec", [["ip", ["str"], True], ["subnet", ["str"], True], ["mac", ["str"], True]]]
    assert dhcp["span"] == {"file": HOST, "line": 15, "col": 5}
    assert [s["level"] for s in (dhcp, a, ptr)] == [0, 1, 1]
    assert host["critical_path"] == ["dhcp", "a"]
    assert [s["critical"] for s in (dhcp, a, ptr)] == [True, True, False]


def test_host_plan_undo(host):
    steps = by_id(host)
    assert steps["dhcp"]["undo"] == {
        "action": {"module": "examples.foreman.proxy", "name": "dhcp_release", "idempotent": True, "pure": False},
        "inputs": {"subnet": ["param", "subnet"], "mac": ["param", "mac"]},
    }
    assert steps["ptr"]["undo"]["inputs"] == {"name": ["step", "dhcp", "ip"], "type": ["lit", "PTR"]}
    assert steps["log"]["undo"] is None


def test_host_plan_finalize_phase(host):
    log = by_id(host)["log"]
    assert log["phase"] == "finalize"
    assert log["action"]["module"] == "weft.stdlib_actions" and log["action"]["name"] == "log"
    # deps name steps of the finalize phase only; the data it reads still shows.
    assert log["deps"] == []
    assert log["data"] == [{"from": "dhcp", "field": "ip", "to": "message"}]
    assert log["inputs"]["message"] == [
        "fmt",
        ["host ", ["param", "name"], ".", ["param", "domain"], " is ready at ", ["step", "dhcp", "ip"]],
    ]


def test_plan_round_trips_through_msgpack_and_json(host):
    for plan in (host, plan_of(BULK, [AUDIT]), plan_of(str(EXAMPLES / "katello" / "organization.flow"))):
        packed = msgpack.packb(plan, use_bin_type=True)
        assert msgpack.unpackb(packed, raw=False, strict_map_key=True) == plan
        assert json.loads(json.dumps(plan)) == plan


def test_plan_is_deterministic_across_compiles_and_processes(host):
    assert plan_of(HOST) == host
    script = (
        "import json, sys\n"
        "from weft.compiler import compile_paths\n"
        "r = compile_paths([sys.argv[1]], [sys.argv[2]])\n"
        "print(json.dumps(r.plan(), sort_keys=True))\n"
    )
    outputs = set()
    for seed in ("1", "2"):
        env = dict(os.environ, PYTHONHASHSEED=seed)
        out = subprocess.run(
            [sys.executable, "-c", script, BULK, str(AUDIT)],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        outputs.add(out.stdout)
    assert len(outputs) == 1
    assert json.loads(outputs.pop()) == json.loads(json.dumps(plan_of(BULK, [AUDIT]), sort_keys=True))


def test_every_plan_step_is_consistent():
    """deps, data and after agree with each other and with the step list, in every nested plan."""
    for path, exts in ((HOST, [AUDIT]), (BULK, [AUDIT]), (str(EXAMPLES / "katello" / "organization.flow"), [])):
        for plan in walk_plans(plan_of(path, exts)):
            steps = by_id(plan)
            seen: set[str] = set()
            for s in plan["steps"]:
                assert all(d in seen for d in s["deps"]), (s["id"], s["deps"])  # topological order
                seen.add(s["id"])
                assert all(steps[d]["phase"] == s["phase"] for d in s["deps"])
                same_phase = {d["from"] for d in s["data"] if steps[d["from"]]["phase"] == s["phase"]}
                assert same_phase | set(s["after"]) <= set(s["deps"])
                assert all(d["from"] in steps for d in s["data"])
            assert plan["critical_path"] and all(i in steps for i in plan["critical_path"])


# -- bulk: each with an inlined sub-flow ------------------------------------------------------


def test_bulk_plan_each_inlines_create_host_with_prefixed_ids():
    plan = plan_of(BULK)
    each, log = plan["steps"]
    assert (each["id"], each["kind"], log["phase"]) == ("each", "each", "finalize")
    assert each["each"]["var"] == "h"
    assert each["each"]["items"] == ["param", "hosts"]
    assert each["each"]["concurrency"] == 10
    assert each["inputs"] == {"subnet": ["param", "subnet"]}
    body = each["each"]["plan"]
    assert body["format"] == "weft.plan"
    assert [p["name"] for p in body["params"]] == ["h", "subnet"]
    assert body["params"][0]["type"] == ["rec", [["name", ["str"], True], ["mac", ["str"], True]]]
    steps = by_id(body)
    assert list(steps) == ["create_host/dhcp", "create_host/a", "create_host/ptr", "create_host/log"]
    dhcp = steps["create_host/dhcp"]
    assert dhcp["inputs"] == {"subnet": ["param", "subnet"], "mac": ["get", ["param", "h"], "mac"]}
    assert steps["create_host/a"]["data"] == [{"from": "create_host/dhcp", "field": "ip", "to": "value"}]
    # The sub-flow's default parameter is folded in; its lock comes along with the item's name.
    assert steps["create_host/a"]["inputs"]["name"] == ["fmt", [["get", ["param", "h"], "name"], ".example.com"]]
    assert body["locks"] == [["fmt", ["host:", ["get", ["param", "h"], "name"]]]]
    # The sub-flow's finalize step becomes a body step that waits for all of its run steps.
    fin = steps["create_host/log"]
    assert fin["phase"] == "run"
    assert ancestors(steps, "create_host/log") == {"create_host/dhcp", "create_host/a", "create_host/ptr"}
    assert fin["level"] == 2


# -- extension ----------------------------------------------------------------------------------


def test_extension_adds_audit_with_its_origin():
    plan = plan_of(HOST, [AUDIT])
    steps = by_id(plan)
    audit = steps["audit"]
    assert audit["origin"] == {"extension": AUDIT_FLOW, "line": 8}
    assert audit["action"] == {"module": "weft_audit.audit", "name": "write", "idempotent": False, "pure": False}
    assert (audit["deps"], audit["after"], audit["data"]) == (["a"], ["a"], [])
    assert audit["inputs"] == {"line": ["fmt", ["created ", ["param", "name"], ".", ["param", "domain"]]]}
    assert plan["extensions"] == [{"file": AUDIT_FLOW, "line": 7, "flow": "create_host"}]
    assert plan["critical_path"] == ["dhcp", "a", "audit"]
    assert all(s["origin"] is None for s in plan["steps"] if s["id"] != "audit")
    # Under bulk the extension reaches every sub-run, prefixed like the rest of create_host.
    body = by_id(plan_of(BULK, [AUDIT])["steps"][0]["each"]["plan"])
    assert body["create_host/audit"]["origin"] == {"extension": AUDIT_FLOW, "line": 8}
    assert body["create_host/audit"]["deps"] == ["create_host/a"]


def test_compilation_plan_errors_are_weft_errors(tmp_path):
    broken = tmp_path / "broken.flow"
    broken.write_text("flow f() {\n    std.log(message: nope)\n}\n", encoding="utf-8")
    with pytest.raises(WeftError, match="has errors"):
        compile_paths([str(broken)]).plan()
    with pytest.raises(WeftError, match="create_host"):
        compile_paths([HOST]).plan("create_hots")
    empty = tmp_path / "empty.flow"
    empty.write_text("", encoding="utf-8")
    with pytest.raises(WeftError, match="defines no flow"):
        compile_paths([str(empty)]).plan()


# -- the runtime never needs the compiler ------------------------------------------------------


def test_runtime_never_imports_the_compiler_or_lark():
    runtime = ROOT / "weft" / "runtime"
    modules = sorted(p.stem for p in runtime.glob("*.py") if p.stem != "__init__")
    if not modules:
        pytest.skip("weft/runtime has no modules yet")
    script = (
        "import importlib, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module('weft.runtime.' + name)\n"
        "bad = sorted(m for m in sys.modules if m.startswith(('weft.compiler', 'lark')))\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "", f"weft.runtime imports {out.stdout.strip()}"
