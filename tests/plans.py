"""Hand-built Plans (docs/plan-format.md) for tests that need no compiler."""

from __future__ import annotations

STR = ["str"]
EMPTY = ["rec", []]


def lit(v):
    return ["lit", v]


def param(name):
    return ["param", name]


def ref(step_id, field=None):
    return ["step", step_id, field]


def fmt(*parts):
    return ["fmt", list(parts)]


def step(
    sid,
    module="examples.foreman.proxy",
    name=None,
    *,
    phase="run",
    inputs=None,
    data=(),
    after=(),
    outputs=EMPTY,
    **fields,
):
    """A step calling `module.name` (default: the id); `data` is (from, field, param) triples."""
    inputs = dict(inputs or {})
    for src, field, to in data:
        inputs.setdefault(to, ref(src, field))
    return {
        "id": sid,
        "name": sid,
        "phase": phase,
        "kind": "action",
        "action": {"module": module, "name": name or sid.rsplit("/", 1)[-1], "idempotent": False},
        "inputs": inputs,
        "outputs": outputs,
        "deps": sorted({src for src, _, _ in data if phase == "run"} | set(after)),
        "data": [{"from": src, "field": field, "to": to} for src, field, to in data],
        "after": list(after),
        "retry": 0,
        "backoff": 0,
        "timeout": None,
        "on_error": "pause",
        "when": None,
        "weight": 1.0,
        "undo": None,
        "each": None,
        "wait": None,
        "origin": None,
        "span": {"file": "/srv/flows/hosts.flow", "line": 1, "col": 5},
        "level": 0,
        "remaining": 1.0,
        "critical": False,
        **fields,
    }


def plan(flow, steps, *, params=(), results=(), **fields):
    """A Plan with `level`, `remaining`, `critical` and `critical_path` worked out from `deps`."""
    by_id = {s["id"]: s for s in steps}
    successors = {s["id"]: [] for s in steps}
    for s in steps:
        s["level"] = max((by_id[d]["level"] + 1 for d in s["deps"]), default=0)
        for d in s["deps"]:
            successors[d].append(s)
    for s in reversed(steps):
        s["remaining"] = s["weight"] + max((t["remaining"] for t in successors[s["id"]]), default=0.0)
    path = []
    candidates = [s for s in steps if s["phase"] == "run" and not s["deps"]]
    while candidates:
        current = max(candidates, key=lambda s: s["remaining"])
        path.append(current["id"])
        candidates = successors[current["id"]]
    for s in steps:
        s["critical"] = s["id"] in path
    return {
        "format": "weft.plan",
        "version": 1,
        "flow": flow,
        "file": "/srv/flows/hosts.flow",
        "search_path": ["/srv/flows"],
        "params": [{"name": n, "type": t, "default": d} for n, t, d in params],
        "results": [{"name": n, "type": t} for n, t in results],
        "returns": {},
        "label": None,
        "tags": [],
        "locks": [],
        "on_error": "pause",
        "steps": steps,
        "critical_path": path,
        "extensions": [],
        **fields,
    }


UNDO_DNS = {
    "action": {"module": "examples.foreman.proxy", "name": "dns_delete", "idempotent": True},
    "inputs": {"name": ref("a", "name")},
}


def create_host(prefix=""):
    """The design's create_host with an extension step and success / failure hooks."""
    p = prefix
    fqdn = fmt(param("name"), ".", param("domain"))
    steps = [
        step(
            f"{p}dhcp",
            name="dhcp_reserve",
            inputs={"subnet": param("subnet"), "mac": param("mac")},
            retry=3,
            backoff=2,
            undo=UNDO_DNS,
            outputs=["rec", [["ip", STR, True]]],
        ),
        step(
            f"{p}a",
            name="dns_create",
            data=[(f"{p}dhcp", "ip", "value")],
            undo=UNDO_DNS,
            inputs={"name": fqdn, "type": lit("A")},
        ),
        step(
            f"{p}ptr",
            name="dns_create",
            data=[(f"{p}dhcp", "ip", "name")],
            undo=UNDO_DNS,
            timeout=30,
            inputs={"value": fqdn, "type": lit("PTR")},
        ),
        step(
            f"{p}audit",
            "acme.audit",
            "write",
            after=[f"{p}a"],
            inputs={"line": fmt("created ", fqdn)},
            origin={"extension": "/srv/ext/audit.flow", "line": 2},
            on_error="skip",
        ),
        step(f"{p}log", "weft.stdlib_actions.std", "log", phase="finalize", data=[(f"{p}dhcp", "ip", "message")]),
    ]
    return steps


def create_host_plan():
    steps = create_host() + [
        step("notify", "acme.chat", "post", phase="success", inputs={"text": lit("done")}),
        step("alert", "acme.chat", "post", phase="failure", inputs={"text": lit('failed "badly" <now>')}),
    ]
    return plan(
        "create_host",
        steps,
        params=[("name", STR, None), ("mac", STR, None), ("subnet", STR, None), ("domain", STR, lit("example.com"))],
        results=[("ip", STR), ("fqdn", STR)],
        extensions=[{"file": "/srv/ext/audit.flow", "line": 1, "flow": "create_host"}],
    )


def bulk_plan():
    """A check, then an `each` whose body inlines create_host, then a report."""
    body = plan(
        "bulk_create.each",
        create_host("create_host/")[:3],
        params=[("h", ["rec", [["name", STR, True], ["mac", STR, True]]], None), ("subnet", STR, None)],
    )
    each = step(
        "each",
        data=[("check", "subnet", "subnet")],
        kind="each",
        action=None,
        each={"var": "h", "items": param("hosts"), "concurrency": 10, "plan": body},
    )
    steps = [
        step("check", name="subnet_check", inputs={"subnet": param("subnet")}),
        each,
        step("report", "weft.stdlib_actions.std", "log", after=["each"], inputs={"message": lit("all done")}),
    ]
    return plan("bulk_create", steps, params=[("hosts", ["list", STR], None), ("subnet", STR, None)])


def approval_plan():
    """A wait for a signal between two steps, with a `when` and a non-default error policy."""
    steps = [
        step("request", "acme.tickets", "open"),
        step(
            "approved",
            kind="wait",
            action=None,
            after=["request"],
            wait={"signal": "approved", "fields": ["rec", [["by", STR, True]]]},
            timeout=86400,
        ),
        step(
            "apply",
            "acme.tickets",
            "apply",
            data=[("approved", "by", "who")],
            when=["op", "!=", ref("approved", "by"), lit("")],
            on_error="rollback",
        ),
    ]
    return plan("approval", steps)


def generated_plan(groups=40, size=50):
    """`groups` inlined sub-flows of `size` chained steps between a start and a done step."""
    steps = [step("start")]
    for g in range(groups):
        prev = "start"
        for i in range(size):
            sid = f"g{g:03}/s{i:02}"
            steps.append(step(sid, data=[(prev, "out", "input")]))
            prev = sid
    steps.append(step("done", after=[f"g{g:03}/s{size - 1:02}" for g in range(groups)]))
    return plan("generated", steps)


def layered_plan(layers=10, width=40):
    """A flat flow too big to draw step by step: `layers` rows of `width` steps, each reading two
    steps of the row above (every fifth also one three rows up), an extension adding two
    audit steps per row, and a finalize step and hooks."""
    ext = {"extension": "/srv/ext/audit.flow", "line": 2}
    steps = []
    for row in range(layers):
        for col in range(width):
            data = []
            if row:
                data = [(f"r{row - 1}c{col}", "out", "input"), (f"r{row - 1}c{(col * 7 + 3) % width}", "out", "extra")]
            if row >= 3 and col % 5 == 0:
                data.append((f"r{row - 3}c{col}", "out", "early"))
            steps.append(step(f"r{row}c{col}", name="work", data=data))
        for n in range(2):
            steps.append(step(f"audit{row}_{n}", "acme.audit", "write", after=[f"r{row}c{n}"], origin=ext))
    steps += [
        step("cleanup", "weft.stdlib_actions.std", "log", phase="finalize", inputs={"message": lit("bye")}),
        step("notify", "acme.chat", "post", phase="success", inputs={"text": lit("done")}),
        step("alert", "acme.chat", "post", phase="failure", inputs={"text": lit("failed")}),
    ]
    return plan("layered", steps, extensions=[{"file": ext["extension"], "line": 1, "flow": "layered"}])


def chain_plan(size=3000):
    """One long chain of steps: the critical path is every step."""
    steps = [step("c0")]
    steps += [step(f"c{i}", name="work", data=[(f"c{i - 1}", "out", "input")]) for i in range(1, size)]
    return plan("chain", steps)
